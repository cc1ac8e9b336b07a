"""The flash tier's file: reopen and recovery, corruption on disk, format checks."""

from __future__ import annotations

import errno
import gc
import os
import resource

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvtier import ConfigError, FlashFormatError, PayloadError, flash, hbm
from kvtier.codec import CODEC_NONE, checksum
from kvtier.errors import TierIOError
from kvtier.tiers import FileIO
from kvtier.tiers.flash_format import (
    FILE_HEADER_BYTES,
    SLOT_HEADER_BYTES,
    STATE_OFFSETS,
    pack_geometry,
    pack_slot_header,
    parse_geometry,
    parse_slot_header,
    parse_slot_headers,
    parse_state,
    state_offset,
)
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192


def flash_store(path, blocks=8, io=None, **kw):
    return make_store([flash(blocks * SLOT, path, **kw)], flash_io=io)


class SwitchableIO(FileIO):
    """Real I/O, except that header writes (``pwrite``: tombstones, the state record) or
    syncs fail with EIO while switched on; counts slot-header reads."""

    def __init__(self) -> None:
        self.fail_header_writes = False
        self.fail_syncs = False
        self.preads = 0
        self.bytes_read = 0

    def pwrite(self, fd, data, offset):
        if self.fail_header_writes:
            raise OSError(errno.EIO, "Input/output error (test)")
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd):
        if self.fail_syncs:
            raise OSError(errno.EIO, "Input/output error (test)")
        super().fdatasync(fd)

    def pread(self, fd, size, offset):
        self.preads += 1
        data = super().pread(fd, size, offset)
        self.bytes_read += len(data)
        return data


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


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
        f.write(pack_slot_header(CODEC_NONE, 1, 10 if newer == "first" else 3, BLOCK_BYTES, BLOCK_BYTES, crc))
        f.seek(dst)
        f.write(pack_slot_header(CODEC_NONE, 1, 10 if newer == "second" else 3, BLOCK_BYTES, BLOCK_BYTES, crc)
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


def slot_header(path, slot):
    with open(path, "rb") as f:
        f.seek(FILE_HEADER_BYTES + slot * SLOT)
        return parse_slot_header(f.read(SLOT_HEADER_BYTES))


# -- frees (issue 19, failure 1) ---------------------------------------------------------


def test_a_free_the_device_fails_raises_and_keeps_the_block(tmp_path):
    io = SwitchableIO()
    store = flash_store(tmp_path, io=io)
    store.put(1, payload(1))
    io.fail_header_writes = True
    with pytest.raises(TierIOError, match=r"free of block 0x1 in flash tier 'flash'.*slot 0.*still stored"):
        store.free(1)
    f = store.stats().tiers["flash"]
    assert f.write_errors == 1 and f.frees == 0
    assert same_bytes(store.fetch(1), payload(1))  # not freed, not lost
    store.check_invariants()
    io.fail_header_writes = False
    assert store.free(1) is True
    store.close()
    again = flash_store(tmp_path)
    assert not again.contains(1) and again.tier("flash").recovery.lost == 0


@pytest.mark.parametrize("verify_on_open", [True, False])
def test_an_older_copy_never_stands_in_for_a_newer_one_that_rotted(tmp_path, verify_on_open):
    """Block 1 was put (slot 0), its free did not reach the file, and it was put again with
    new bytes (slot 1), which then rotted: the old bytes must not come back."""
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.close()
    path = tmp_path / "flash.kvt"
    newer = slot_header(path, 1)
    new_bytes = payload(100).tobytes()
    write_at(path, FILE_HEADER_BYTES + SLOT, pack_slot_header(CODEC_NONE, 1, newer.seq, BLOCK_BYTES, BLOCK_BYTES,
                                                              checksum(new_bytes)) + new_bytes)
    write_at(path, FILE_HEADER_BYTES + SLOT + SLOT_HEADER_BYTES + 7, b"\xff")  # the newer copy rots
    again = flash_store(tmp_path, verify_on_open=verify_on_open)
    rec = again.tier("flash").recovery
    assert again.fetch(1) is None
    assert rec.duplicate_slots == [0]
    if verify_on_open:
        assert rec.corrupt_slots == [1]
    else:
        assert again.stats().tiers["flash"].corrupt == 1  # found at the read
    again.close()
    assert not flash_store(tmp_path).contains(1)  # and it stays gone


def test_a_release_that_fails_is_retried_at_flush(tmp_path):
    io = SwitchableIO()
    store = flash_store(tmp_path, io=io)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.flush()
    flip_byte(tmp_path / "flash.kvt", slot_offset(store, 1) + SLOT_HEADER_BYTES + 9)
    io.fail_header_writes = True
    assert store.fetch(1) is None  # found corrupt and removed; its tombstone fails
    assert store.stats().tiers["flash"].write_errors == 1
    with pytest.raises(TierIOError, match="could not be marked free.*slots \\[0\\]"):
        store.flush()
    store.check_invariants()
    io.fail_header_writes = False
    store.flush()  # the retry lands
    store.close()
    again = flash_store(tmp_path)
    assert again.tier("flash").recovery.lost == 0 and again.tier("flash").hashes() == [2]


# -- release of the file (failure 4) ---------------------------------------------------


def test_a_store_dropped_without_close_releases_its_file(tmp_path):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    del store
    gc.collect()
    again = flash_store(tmp_path)  # was: ConfigError, the file still locked by the lost store
    assert same_bytes(again.fetch(1), payload(1))
    again.close()
    again.close()  # closing twice is harmless


# -- nothing lost without a report (failure 5) -------------------------------------------


def test_truncation_reports_every_block_past_the_cut(tmp_path):
    store = flash_store(tmp_path)
    for h in range(6):
        store.put(h, payload(h))
    store.close()
    os.truncate(tmp_path / "flash.kvt", FILE_HEADER_BYTES + 2 * SLOT + 100)  # inside slot 2's payload
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert again.stats().tiers["flash"].corrupt == 4  # was 1: only the cut slot
    assert rec.recovered == 2 and rec.corrupt_slots == [2] and rec.missing_slots == [3, 4, 5] and rec.lost == 4
    for h in range(6):
        got = again.fetch(h)
        assert (got is not None and same_bytes(got, payload(h))) == (h < 2)
    for h in range(10, 16):  # the file is whole again and takes new blocks
        again.put(h, payload(h))
    again.check_invariants()
    again.close()
    third = flash_store(tmp_path)
    assert third.tier("flash").recovery.lost == 0 and sorted(third.tier("flash").hashes()) == [0, 1, *range(10, 16)]


def test_a_zeroed_slot_header_is_reported_not_taken_for_free(tmp_path):
    store = flash_store(tmp_path)
    for h in range(3):
        store.put(h, payload(h))
    off = slot_offset(store, 1)
    store.close()
    write_at(tmp_path / "flash.kvt", off, bytes(SLOT_HEADER_BYTES))
    rec = flash_store(tmp_path).tier("flash").recovery
    assert rec.corrupt_slots == [1] and rec.recovered == 2


def test_a_freed_slot_is_not_reported(tmp_path):
    store = flash_store(tmp_path)
    for h in range(3):
        store.put(h, payload(h))
    store.free(1)
    store.close()
    again = flash_store(tmp_path)
    assert again.tier("flash").recovery.lost == 0 and sorted(again.tier("flash").hashes()) == [0, 2]


@pytest.mark.parametrize("same_hash", [True, False])
def test_two_records_with_one_sequence_number_are_corrupt(tmp_path, same_hash):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.close()
    path = tmp_path / "flash.kvt"
    seq = slot_header(path, 0).seq
    h = 1 if same_hash else 2
    data = payload(h).tobytes()
    write_at(path, FILE_HEADER_BYTES + SLOT, pack_slot_header(CODEC_NONE, h, seq, BLOCK_BYTES, BLOCK_BYTES,
                                                              checksum(data)) + data)
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.corrupt_slots == [0, 1] and rec.recovered == 0
    assert again.fetch(1) is None and again.fetch(2) is None


def test_a_rolled_back_state_record_loses_nothing(tmp_path):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.flush()
    old_page = (tmp_path / "flash.kvt").read_bytes()[:FILE_HEADER_BYTES]  # high-water mark 1
    for h in range(2, 5):
        store.put(h, payload(h))
    store.close()
    write_at(tmp_path / "flash.kvt", 0, old_page)  # the device lost the later header writes
    again = flash_store(tmp_path)
    assert again.tier("flash").recovery.recovered == 4 and again.tier("flash").recovery.lost == 0
    assert again.tier("flash").high_water == 4


def test_one_damaged_state_record_copy_loses_nothing(tmp_path):
    store = flash_store(tmp_path)
    for h in range(5):
        store.put(h, payload(h))
    store.close()
    page = (tmp_path / "flash.kvt").read_bytes()[:FILE_HEADER_BYTES]
    newest = parse_state(page, 8)
    assert newest.high_water == 5
    write_at(tmp_path / "flash.kvt", state_offset(newest.record_no) + 3, b"\xee")  # the newest copy rots
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.recovered == 5 and rec.lost == 0 and rec.state_damaged  # all there, and the damage is said
    again.close()
    assert not flash_store(tmp_path).tier("flash").recovery.state_damaged  # both copies rewritten


def test_with_a_damaged_state_record_a_zeroed_header_below_the_last_block_is_still_damage(tmp_path):
    store = flash_store(tmp_path)
    for h in range(5):
        store.put(h, payload(h))
    store.close()
    page = (tmp_path / "flash.kvt").read_bytes()[:FILE_HEADER_BYTES]
    write_at(tmp_path / "flash.kvt", state_offset(parse_state(page, 8).record_no), b"\0" * 8)
    write_at(tmp_path / "flash.kvt", FILE_HEADER_BYTES + 2 * SLOT, bytes(SLOT_HEADER_BYTES))
    rec = flash_store(tmp_path).tier("flash").recovery
    assert rec.state_damaged and rec.recovered == 4 and rec.corrupt_slots == [2]


def test_both_state_record_copies_damaged_is_reported_and_scanned(tmp_path):
    store = flash_store(tmp_path)
    for h in range(3):
        store.put(h, payload(h))
    store.close()
    for off in STATE_OFFSETS:
        write_at(tmp_path / "flash.kvt", off, b"\0" * 8)
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.state_damaged and rec.recovered == 3
    again.close()
    assert not flash_store(tmp_path).tier("flash").recovery.state_damaged  # rewritten


def test_a_version_1_file_is_read_and_upgraded(tmp_path):
    """kvtier 0.1.0's format: no state record, no tombstones (a freed slot is zeroed)."""
    path = tmp_path / "flash.kvt"
    with open(path, "wb") as f:
        f.write(pack_geometry(1, SLOT, 8, BLOCK_BYTES).ljust(FILE_HEADER_BYTES, b"\0"))
        f.truncate(FILE_HEADER_BYTES + 8 * SLOT)
    for slot, (h, seq) in {0: (5, 0), 2: (6, 1), 3: (7, 2)}.items():
        data = payload(h).tobytes()
        write_at(path, FILE_HEADER_BYTES + slot * SLOT,
                 pack_slot_header(CODEC_NONE, h, seq, BLOCK_BYTES, BLOCK_BYTES, checksum(data)) + data)
    store = flash_store(tmp_path)
    assert store.tier("flash").recovery.recovered == 3 and store.tier("flash").recovery.corrupt_slots == []
    store.put(8, payload(8))  # takes the free slot 1
    store.close()
    assert parse_geometry(path.read_bytes())["version"] == 2
    again = flash_store(tmp_path)
    rec = again.tier("flash").recovery
    assert rec.recovered == 4 and rec.lost == 0 and not rec.state_damaged
    assert all(same_bytes(again.fetch(h), payload(h)) for h in (5, 6, 7, 8))


# -- errors outside kvtier's set (failure 6) ----------------------------------------------


@pytest.mark.parametrize("kind", ["hbm", "flash"])
def test_masked_arrays_are_payload_errors(tmp_path, kind):
    store = make_store([hbm(4 * BLOCK_BYTES) if kind == "hbm" else flash(4 * SLOT, tmp_path)])
    store.put(1, payload(1))
    p = payload(2)
    for mask in (False, True):
        masked = np.ma.masked_array(p, mask=np.full(p.shape, mask))
        with pytest.raises(PayloadError, match=r"^kv: got a numpy.ma.MaskedArray of shape \(2, 2, 16, 2, 8\)"):
            store.put(2, masked)
        with pytest.raises(PayloadError, match=r"^out: got a numpy.ma.MaskedArray"):
            store.fetch(1, out=masked)
    assert store.stats().puts == 1 and same_bytes(store.fetch(1), payload(1))
    store.check_invariants()


def test_a_forged_write_sequence_is_reported_and_puts_go_on(tmp_path):
    store = flash_store(tmp_path)
    store.put(1, payload(1))
    store.close()
    data = payload(1).tobytes()
    write_at(tmp_path / "flash.kvt", FILE_HEADER_BYTES,
             pack_slot_header(CODEC_NONE, 1, 2**64 - 1, BLOCK_BYTES, BLOCK_BYTES, checksum(data)))
    again = flash_store(tmp_path)
    assert again.tier("flash").recovery.corrupt_slots == [0] and not again.contains(1)
    for h in range(2, 10):
        again.put(h, payload(h))  # was: struct.error on every put
    again.check_invariants()
    assert all(same_bytes(again.fetch(h, promote=False), payload(h)) for h in again.tier("flash").hashes())


class NoSpaceIO(FileIO):
    def pwrite(self, fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_no_space_for_a_new_file_is_a_config_error_and_leaves_no_file(tmp_path):
    with pytest.raises(ConfigError, match=r"TierSpec.path of tier 'flash': '.*flash.kvt': creating it failed "
                                          r"\(No space left on device\)"):
        flash_store(tmp_path, io=NoSpaceIO())
    assert os.listdir(tmp_path) == []
    flash_store(tmp_path).close()  # and the directory is usable once there is room


def test_a_file_size_limit_is_a_config_error_and_leaves_no_file(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, hard))
    try:
        with pytest.raises(ConfigError, match=r"TierSpec.capacity_bytes of tier 'flash': got 33554432, .*"
                                              r"file-size limit of 16777216 bytes"):
            make_store([flash(32 << 20, tmp_path)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert os.listdir(tmp_path) == []


def test_a_flash_file_that_is_a_device_is_a_config_error(tmp_path):
    os.symlink(os.devnull, tmp_path / "flash.kvt")
    with pytest.raises(ConfigError, match=r"TierSpec.path of tier 'flash': '.*flash.kvt' is a character device; "
                                          r"expected a regular file"):
        flash_store(tmp_path)
    os.symlink(tmp_path / "missing", tmp_path / "sub.kvt")
    with pytest.raises(ConfigError, match="symbolic link to a missing file"):
        make_store([flash(4 * SLOT, tmp_path, name="sub")])
    assert sorted(os.listdir(tmp_path)) == ["flash.kvt", "sub.kvt"]  # nothing created


def test_a_nul_in_the_flash_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"TierSpec.path: got '.*a\\x00b', expected a directory path"):
        flash(4 * SLOT, f"{tmp_path}/a\0b")


def test_an_empty_file_is_a_format_error_not_a_new_tier(tmp_path):
    (tmp_path / "flash.kvt").write_bytes(b"")  # a file cut to nothing: its blocks are gone, say so
    with pytest.raises(FlashFormatError, match="flash.kvt: the file is empty"):
        flash_store(tmp_path)


# -- opening costs what the file holds (failure 8) ---------------------------------------


def test_opening_reads_what_the_file_holds_not_its_capacity(tmp_path):
    io = SwitchableIO()
    store = make_store([flash(10 << 30, tmp_path)], flash_io=io)  # 1.31M slots
    assert store.tier("flash").num_slots == 1310720
    assert io.bytes_read == 0  # a new file: nothing to read (it was 1.31M slot headers)
    for h in range(3):
        store.put(h, payload(h))
    store.close()
    io = SwitchableIO()
    again = make_store([flash(10 << 30, tmp_path)], flash_io=io)
    assert again.tier("flash").recovery.recovered == 3
    # The header page, the three slots written and the first one never written.
    assert io.bytes_read <= FILE_HEADER_BYTES + 4 * SLOT
    again.close()


# -- the header parsers agree -------------------------------------------------------------

valid_headers = st.builds(
    lambda codec, h, seq, raw, stored, crc, flags: pack_slot_header(codec, h, seq, raw, stored, crc, flags),
    st.sampled_from([0, 1, 2]), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 7),
)


@given(headers=st.lists(st.one_of(valid_headers, st.binary(min_size=64, max_size=64)), min_size=1, max_size=8),
       flips=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 63), st.integers(1, 255)), max_size=3))
def test_the_vectorised_header_parser_agrees_with_the_scalar_one(headers, flips):
    rows = np.frombuffer(b"".join(headers), dtype=np.uint8).reshape(len(headers), 64).copy()
    for r, c, x in flips:
        rows[r % len(headers), c] ^= x
    fields, ok = parse_slot_headers(rows)
    for i in range(len(headers)):
        one = parse_slot_header(rows[i].tobytes())
        assert ok[i] == (one is not None)
        if one is not None:
            got = fields[i]
            assert (int(got["codec"]), int(got["block_hash"]), int(got["seq"]), int(got["raw_len"]),
                    int(got["stored_len"]), int(got["crc"]), int(got["flags"])) == tuple(one)
