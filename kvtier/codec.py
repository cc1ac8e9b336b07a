"""Per-tier payload codecs (none, lz4) and the CRC32C checksum of stored bytes.

A block travels between tiers as an ``Encoded`` value: the stored bytes, the codec that
produced them, the raw length and (when computed) their CRC32C. Two tiers with the same
codec pass the stored bytes through untouched; compression happens once. The codec names
and ids are ``kvtier.codec_ids``' table, re-exported here.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import fastcrc as _fastcrc
import lz4.block
import numpy as np

from kvtier.codec_ids import CODEC_IDS, CODEC_LZ4, CODEC_NAMES, CODEC_NONE, codec_id  # noqa: F401  (the table lives there)


#: ``checksum`` without the Python call around it, for loops over many blocks.
crc32c = _fastcrc.crc32.iscsi


def checksum(data) -> int:
    """CRC32C (Castagnoli) of a contiguous bytes-like object, with ``fastcrc``'s SIMD code
    (about twice the speed of the ``crc32c`` package's: docs/performance.md). Whether a call
    lets other Python threads run depends on the length (for the lengths of KV blocks it
    mostly does not), so the flash tier's read threads leave the CRCs to the calling thread."""
    return _fastcrc.crc32.iscsi(data)


class Encoded(NamedTuple):
    """A block's payload as some tier stores it."""

    codec: int
    raw_len: int
    data: object  # bytes-like: bytes, memoryview or a uint8 numpy array
    crc: int | None = None
    #: The backend already checked ``crc`` against the stored bytes (a batched read whose
    #: copy into ``data`` is deferred, or whose CRC an I/O thread computed).
    verified: bool = False


class CodecTimer:
    """Real time and bytes spent in a codec (what the store reports as ratio and cost)."""

    __slots__ = ("compress_ns", "decompress_ns", "raw_bytes", "stored_bytes")

    def __init__(self) -> None:
        self.compress_ns = 0
        self.decompress_ns = 0
        self.raw_bytes = 0
        self.stored_bytes = 0


def encode(raw: np.ndarray, codec: int, timer: CodecTimer) -> Encoded:
    """Encode a flat uint8 view of a block. Keeps it raw when lz4 would not shrink it."""
    if codec == CODEC_LZ4:
        t0 = time.perf_counter_ns()
        packed = lz4.block.compress(raw, store_size=False)
        timer.compress_ns += time.perf_counter_ns() - t0
        timer.raw_bytes += raw.nbytes
        if len(packed) < raw.nbytes:
            timer.stored_bytes += len(packed)
            return Encoded(CODEC_LZ4, raw.nbytes, packed)
        timer.stored_bytes += raw.nbytes
    return Encoded(CODEC_NONE, raw.nbytes, raw)


def decode_into(enc: Encoded, out: np.ndarray, timer: CodecTimer | None = None) -> None:
    """Write the raw bytes of ``enc`` into ``out`` (a flat uint8 array of ``raw_len``)."""
    if enc.codec == CODEC_NONE:
        data = enc.data
        if data is out:
            return  # the backend read the payload in place
        out[:] = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8, count=enc.raw_len)
        return
    t0 = time.perf_counter_ns()
    raw = lz4.block.decompress(enc.data, uncompressed_size=enc.raw_len)
    if timer is not None:
        timer.decompress_ns += time.perf_counter_ns() - t0
    out[:] = np.frombuffer(raw, dtype=np.uint8)
