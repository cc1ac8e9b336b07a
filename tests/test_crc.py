"""The CRC32C paths agree: the table-driven kernel for many short rows, the library CRC
that checks payloads, and the batched check of raw slot headers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kvtier._kernels.crc import crc32c_rows, crc32c_table
from kvtier.codec import CODEC_NONE, checksum
from kvtier.tiers.flash_format import SLOT_HEADER_BYTES, SLOT_HEADER_USED_BYTES, pack_slot_header, raw_headers_verify

TABLE = crc32c_table()


def test_the_known_check_value():
    # CRC-32C/ISCSI's catalogue check value: the CRC of the ASCII digits 1..9.
    digits = np.frombuffer(b"123456789", dtype=np.uint8).reshape(1, 9)
    assert crc32c_rows(digits, 9, TABLE)[0] == 0xE3069283 == checksum(b"123456789")


@given(data=st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=6), cut=st.integers(0, 80))
def test_the_row_kernel_agrees_with_the_library(data, cut):
    width = max(len(d) for d in data)
    rows = np.zeros((len(data), width), dtype=np.uint8)
    for i, d in enumerate(data):
        rows[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
    nbytes = min(cut, width)
    got = crc32c_rows(rows, nbytes, TABLE)
    assert got.tolist() == [checksum(rows[i, :nbytes].tobytes()) for i in range(len(data))]


def raw_heads(hashes, payload_crcs, block_bytes):
    return np.frombuffer(b"".join(pack_slot_header(CODEC_NONE, h, 7 + i, block_bytes, block_bytes, c)
                                  for i, (h, c) in enumerate(zip(hashes, payload_crcs))),
                         dtype=np.uint8).reshape(len(hashes), SLOT_HEADER_BYTES).copy()


# up to 24 headers: batches under 16 are parsed one at a time, larger ones as arrays
hashes_and_crcs = st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=24)


@example(pairs=[(i, i) for i in range(20)], flip=(19, 0, 0))
@given(pairs=hashes_and_crcs, flip=st.tuples(st.integers(0, 23), st.integers(0, SLOT_HEADER_USED_BYTES - 1),
                                             st.integers(0, 7)))
def test_a_batch_of_raw_headers_verifies_until_any_bit_of_one_changes(pairs, flip):
    hashes = np.array([h for h, _ in pairs], dtype=np.uint64)
    crcs = np.array([c for _, c in pairs], dtype=np.int64)
    heads = raw_heads(hashes.tolist(), crcs.tolist(), 4096)
    assert raw_headers_verify(heads, hashes, 4096, crcs)
    row, byte, bit = flip
    heads[row % len(pairs), byte] ^= 1 << bit  # the fields and their CRC: any one bit is caught
    assert not raw_headers_verify(heads, hashes, 4096, crcs)


@given(pairs=hashes_and_crcs, which=st.integers(0, 23), what=st.sampled_from(["hash", "crc", "size"]))
def test_raw_headers_must_name_the_expected_block_length_and_payload(pairs, which, what):
    hashes = np.array([h for h, _ in pairs], dtype=np.uint64)
    crcs = np.array([c for _, c in pairs], dtype=np.int64)
    heads = raw_heads(hashes.tolist(), crcs.tolist(), 4096)
    i = which % len(pairs)
    if what == "hash":
        hashes[i] ^= np.uint64(1)
    elif what == "crc":
        crcs[i] ^= 1
    assert not raw_headers_verify(heads, hashes, 8192 if what == "size" else 4096, crcs)


def test_the_row_kernel_refuses_a_length_past_the_row():
    with pytest.raises(ValueError, match="nbytes"):
        crc32c_rows(np.zeros((2, 8), dtype=np.uint8), 9, TABLE)
