"""The flash tier's file: reopen and recovery, corruption on disk, format checks."""

from __future__ import annotations

import os

import pytest

from kvtier import FlashFormatError, flash, hbm
from kvtier.codec import CODEC_NONE, checksum
from kvtier.tiers.flash_tier import FILE_HEADER_BYTES, SLOT_HEADER_BYTES, _pack_slot_header
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192


def flash_store(path, blocks=8, **kw):
    return make_store([flash(blocks * SLOT, path, **kw)])


def slot_offset(store, block_hash):
    tier = store.tier("flash")
    return FILE_HEADER_BYTES + tier.hash_to_slot[block_hash] * tier.slot_stride


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


@pytest.mark.parametrize("codec", ["none", "lz4"])
@pytest.mark.parametrize("fsync", ["always", "flush", "never"])
def test_close_reopen_reads_back_bit_identical(tmp_path, codec, fsync):
    store = flash_store(tmp_path, codec=codec, fsync=fsync)
    for h in range(6):
        store.put(1000 + h, payload(h, compressible=h % 2 == 0))
    store.close()
    again = flash_store(tmp_path, codec=codec, fsync=fsync)
    assert again.tier("flash").recovery.recovered == 6
    assert again.stats().tiers["flash"].recovered == 6
    for h in range(6):
        assert same_bytes(again.fetch(1000 + h), payload(h, compressible=h % 2 == 0))
    again.check_invariants()
    again.close()


def test_hbm_plus_flash_overflow_survives_restart(tmp_path):
    """The README example: HBM overflows to flash; after a restart flash still has its blocks."""
    store = make_store([hbm(2 * BLOCK_BYTES), flash(8 * SLOT, tmp_path, codec="lz4")])
    for h in range(6):
        store.put(h, payload(h))
    on_flash = sorted(store.tier("flash").hashes())
    assert on_flash == [0, 1, 2, 3]
    store.close()
    again = make_store([hbm(2 * BLOCK_BYTES), flash(8 * SLOT, tmp_path, codec="lz4")])
    assert again.lookup(range(6)).tier_index.tolist() == [1, 1, 1, 1, -1, -1]
    for h in on_flash:
        assert same_bytes(again.fetch(h), payload(h))


def test_recovered_blocks_keep_write_order_for_lru(tmp_path):
    store = flash_store(tmp_path, blocks=3)
    for h in (7, 8, 9):
        store.put(h, payload(h))
    store.close()
    again = flash_store(tmp_path, blocks=3)
    again.put(10, payload(10))  # evicts the oldest write, 7
    assert [again.contains(h) for h in (7, 8, 9, 10)] == [False, True, True, True]


def test_payload_corruption_on_disk_is_reported_at_reopen(tmp_path):
    store = flash_store(tmp_path)
    for h in range(4):
        store.put(h, payload(h))
    off = slot_offset(store, 2) + SLOT_HEADER_BYTES + 123
    store.close()
    flip_byte(tmp_path / "flash.kvt", off)
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.recovered == 3 and len(rec.corrupt_slots) == 1
    assert again.stats().tiers["flash"].corrupt == 1
    assert again.fetch(2) is None
    for h in (0, 1, 3):
        assert same_bytes(again.fetch(h), payload(h))
    again.close()
    # The bad slot was zeroed: a second reopen finds nothing more to report.
    third = flash_store(tmp_path)
    assert third.tier("flash").recovery.corrupt_slots == []


def test_header_corruption_is_reported(tmp_path):
    store = flash_store(tmp_path)
    store.put(5, payload(5))
    off = slot_offset(store, 5) + 10  # inside the block hash field
    store.close()
    flip_byte(tmp_path / "flash.kvt", off)
    again = flash_store(tmp_path)
    assert again.tier("flash").recovery.corrupt_slots == [0]
    assert again.fetch(5) is None and len(again) == 0


def test_corruption_while_open_is_a_miss_not_wrong_bytes(tmp_path):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.flush()
    flip_byte(tmp_path / "flash.kvt", slot_offset(store, 1) + SLOT_HEADER_BYTES + 4000)
    assert store.fetch(1) is None
    assert store.stats().tiers["flash"].corrupt == 1 and not store.contains(1)
    assert same_bytes(store.fetch(2), payload(2))
    store.check_invariants()


def test_lazy_verification_catches_corruption_at_first_read(tmp_path):
    store = flash_store(tmp_path, verify_on_open=False)
    store.put(1, payload(1))
    off = slot_offset(store, 1) + SLOT_HEADER_BYTES + 1
    store.close()
    flip_byte(tmp_path / "flash.kvt", off)
    again = flash_store(tmp_path, verify_on_open=False)
    assert again.tier("flash").recovery.recovered == 1  # header was fine
    assert again.fetch(1) is None and again.stats().tiers["flash"].corrupt == 1


def test_torn_write_is_never_served(tmp_path):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    off = slot_offset(store, 1)
    store.close()
    # Half the payload of a newer write landed over the old block's bytes.
    with open(tmp_path / "flash.kvt", "r+b") as f:
        f.seek(off + SLOT_HEADER_BYTES + BLOCK_BYTES // 2)
        f.write(payload(99).tobytes()[: BLOCK_BYTES // 2])
    again = flash_store(tmp_path)
    assert again.fetch(1) is None and len(again.tier("flash").recovery.corrupt_slots) == 1


@pytest.mark.parametrize("newer", ["first", "second"])
def test_duplicate_copies_keep_the_newest(tmp_path, newer):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.put(2, payload(2))
    tier = store.tier("flash")
    src_slot, dst_slot = tier.hash_to_slot[1], tier.hash_to_slot[2]
    src, dst = slot_offset(store, 1), slot_offset(store, 2)
    store.close()
    # A crash between writing a block's new slot and zeroing its old one leaves two copies;
    # the one with the higher write sequence number is the newer.
    crc = checksum(payload(1).tobytes())
    new_slot, old_slot = (dst_slot, src_slot) if newer == "second" else (src_slot, dst_slot)
    with open(tmp_path / "flash.kvt", "r+b") as f:
        f.seek(src)
        f.write(_pack_slot_header(CODEC_NONE, 1, 10 if newer == "first" else 3, BLOCK_BYTES, BLOCK_BYTES, crc))
        f.seek(dst)
        f.write(_pack_slot_header(CODEC_NONE, 1, 10 if newer == "second" else 3, BLOCK_BYTES, BLOCK_BYTES, crc)
                + payload(1).tobytes())
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.recovered == 1 and rec.duplicate_slots == [old_slot]
    assert again.tier("flash").hash_to_slot[1] == new_slot
    assert same_bytes(again.fetch(1), payload(1))
    again.check_invariants()


def test_geometry_mismatch_is_a_clear_error(tmp_path):
    flash_store(tmp_path, blocks=8).close()
    with pytest.raises(FlashFormatError, match="num_slots=8.*num_slots=4"):
        flash_store(tmp_path, blocks=4)


def test_foreign_file_is_rejected(tmp_path):
    (tmp_path / "flash.kvt").write_bytes(b"hello world" * 1000)
    with pytest.raises(FlashFormatError, match="not a kvtier flash file"):
        flash_store(tmp_path)


def test_file_is_preallocated_to_capacity(tmp_path):
    flash_store(tmp_path, blocks=5).close()
    assert os.path.getsize(tmp_path / "flash.kvt") == FILE_HEADER_BYTES + 5 * SLOT
