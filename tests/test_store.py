"""TieredStore unit tests: placement, eviction cascade, promotion, pins, errors, statistics."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import kvtier.tiers.flash_tier as flash_mod
from kvtier import (
    BlockNotFoundError,
    BlockPinnedError,
    ConfigError,
    PayloadError,
    TieredStore,
    TierSpec,
    UnknownNameError,
    dram,
    flash,
    hbm,
    sram,
)
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

FLASH_SLOT = 8192  # 64-byte header + 4096 payload, aligned to 4096


def three_tier(tmp_path, hbm_blocks=2, dram_blocks=2, flash_blocks=4, **kw):
    return make_store(
        [hbm(hbm_blocks * BLOCK_BYTES), dram(dram_blocks * BLOCK_BYTES), flash(flash_blocks * FLASH_SLOT, tmp_path)], **kw
    )


@pytest.mark.parametrize("tier", [sram, hbm, dram])
def test_roundtrip_memory_tiers(tier):
    store = make_store([tier(4 * BLOCK_BYTES)])
    for h in range(4):
        assert store.put(h, payload(h)).tier == tier(BLOCK_BYTES).name
    for h in range(4):
        assert same_bytes(store.fetch(h), payload(h))
    store.check_invariants()


@pytest.mark.parametrize("tier", [sram, hbm, dram])
def test_memory_tier_slabs_start_on_a_page(tier):
    """Block copies out of a slab into an aligned buffer run at full speed only when both
    start at the same offset in a cache line (glibc's ``rep movsb``; see ``aligned_empty``)."""
    from kvtier.buffers import PAGE_ALIGN_BYTES
    from kvtier.tiers import make_tier

    t = make_tier(tier(5 * BLOCK_BYTES + 3), BLOCK_BYTES)
    assert t.slab.ctypes.data % PAGE_ALIGN_BYTES == 0
    assert t.slab.shape == (5, BLOCK_BYTES) and t.slab.flags.c_contiguous


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_roundtrip_flash(tmp_path, codec):
    store = make_store([flash(4 * FLASH_SLOT, tmp_path, codec=codec)])
    for h in range(4):
        store.put(h, payload(h, compressible=h % 2 == 0))
    for h in range(4):
        assert same_bytes(store.fetch(h), payload(h, compressible=h % 2 == 0))
    store.check_invariants()
    store.close()


def test_overflow_cascades_down_in_lru_order(tmp_path):
    store = three_tier(tmp_path)
    for h in range(8):
        store.put(h, payload(h))
        store.check_invariants()
    # Newest two in HBM, the two before in DRAM, the oldest four in flash.
    assert store.lookup(range(8)).tier_index.tolist() == [2, 2, 2, 2, 1, 1, 0, 0]
    s = store.stats()
    assert s.tiers["hbm"].evictions == 6 and s.tiers["hbm"].demotions == 6
    assert s.tiers["dram"].demotions == 4 and s.tiers["flash"].drops == 0
    store.put(8, payload(8))  # flash is full: its LRU block (0) is dropped
    assert store.lookup([0]).tier_index.tolist() == [-1]
    assert store.stats().tiers["flash"].drops == 1
    for h in range(1, 9):
        assert same_bytes(store.fetch(h, promote=False), payload(h))


def test_hit_changes_eviction_order():
    store = make_store([hbm(3 * BLOCK_BYTES)])
    for h in (1, 2, 3):
        store.put(h, payload(h))
    store.fetch(1)
    store.put(4, payload(4))  # evicts 2, the least recently used
    assert [store.contains(h) for h in (1, 2, 3, 4)] == [True, False, True, True]
    assert store.stats().tiers["hbm"].drops == 1


def test_promotion_exclusive_moves_block_up(tmp_path):
    store = three_tier(tmp_path)
    for h in range(6):
        store.put(h, payload(h))
    assert store.lookup([0]).tier_names[store.lookup([0]).tier_index[0]] == "flash"
    assert same_bytes(store.fetch(0), payload(0))
    res = store.lookup(range(6))
    assert res.tier_of(0) == "hbm"
    # 0 moved up; HBM's victim 4 went to DRAM, whose victim 2 went to flash.
    assert [sorted(t.hashes()) for t in store.tiers] == [[0, 5], [3, 4], [1, 2]]
    s = store.stats()
    assert s.tiers["flash"].promotions == 1 and s.tiers["flash"].hits == 1
    assert s.tiers["hbm"].misses == 1 and s.tiers["dram"].misses == 1
    store.check_invariants()


def test_no_promotion_when_disabled(tmp_path):
    store = three_tier(tmp_path, promote_on_hit=False)
    for h in range(6):
        store.put(h, payload(h))
    store.fetch(0)
    assert store.lookup([0]).tier_of(0) == "flash"
    store.fetch(1, promote=True)
    assert store.lookup([1]).tier_of(0) == "hbm"


def test_inclusive_keeps_lower_copy_and_demotes_for_free(tmp_path):
    store = three_tier(tmp_path, placement="inclusive")
    for h in range(6):
        store.put(h, payload(h))
    store.fetch(0)
    assert 0 in store.tier("hbm") and 0 in store.tier("flash")
    written = store.stats().tiers["dram"].bytes_written
    store.put(6, payload(6))
    store.put(7, payload(7))  # pushes block 0 out of HBM; its flash copy makes that free
    assert 0 not in store.tier("hbm") and 0 not in store.tier("dram") and 0 in store.tier("flash")
    assert store.stats().tiers["dram"].bytes_written == written + BLOCK_BYTES  # only block 5 was written
    assert same_bytes(store.fetch(0, promote=False), payload(0))
    store.check_invariants()


def test_put_of_stored_block_is_an_access():
    store = make_store([hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES)])
    for h in range(4):
        store.put(h, payload(h))
    res = store.put(0, payload(0))
    assert res.already_present and res.tier == "hbm"
    assert store.stats().put_hits == 1
    assert same_bytes(store.fetch(0), payload(0))


def test_pinned_blocks_are_never_evicted():
    store = make_store([hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES)])
    store.put(1, payload(1))
    assert store.pin(1) == "hbm"
    for h in range(2, 10):
        store.put(h, payload(h))
        store.check_invariants()
    assert store.lookup([1]).tier_of(0) == "hbm"
    assert store.pins(1) == 1
    with pytest.raises(BlockPinnedError, match="1 pin"):
        store.free(1)
    store.unpin(1)
    with pytest.raises(BlockNotFoundError, match="not pinned"):
        store.unpin(1)
    assert store.free(1) is True and store.free(1) is False


def test_put_falls_through_pinned_tiers_and_drops_when_all_pinned():
    store = make_store([hbm(1 * BLOCK_BYTES), dram(1 * BLOCK_BYTES)])
    store.put(1, payload(1))
    store.pin(1)
    assert store.put(2, payload(2)).tier == "dram"
    store.pin(2)
    res = store.put(3, payload(3))
    assert res.tier is None and not res.stored
    assert store.stats().puts_dropped == 1
    assert same_bytes(store.fetch(1), payload(1)) and same_bytes(store.fetch(2), payload(2))
    store.check_invariants()


def test_pinned_block_keeps_its_pins_when_promoted():
    store = make_store([hbm(1 * BLOCK_BYTES), dram(2 * BLOCK_BYTES)])
    store.put(1, payload(1))
    store.put(2, payload(2))  # 1 demoted to DRAM
    store.pin(1)
    store.fetch(1)  # promoted; 2 demoted
    assert store.lookup([1]).tier_of(0) == "hbm" and store.pins(1) == 1
    store.put(3, payload(3))  # HBM holds only pinned 1: 3 goes to DRAM
    assert store.lookup([1, 3]).tier_index.tolist() == [0, 1]
    store.check_invariants()


def test_lookup_is_pure_and_reports_prefix():
    store = make_store([hbm(3 * BLOCK_BYTES)])
    for h in (10, 11, 13):
        store.put(h, payload(h))
    before = store.stats().as_dict()
    res = store.lookup([10, 11, 12, 13])
    assert res.tier_index.tolist() == [0, 0, -1, 0] and res.prefix_blocks == 2
    assert res.counts() == {"hbm": 3, "missing": 1}
    assert store.stats().as_dict() == before
    store.put(14, payload(14))  # lookup did not refresh 10: it is still the LRU victim
    assert not store.contains(10)


def test_fetch_into_out_buffer_and_miss():
    store = make_store([hbm(2 * BLOCK_BYTES)])
    store.put(5, payload(5))
    out = np.zeros_like(payload(0))
    assert store.fetch(5, out=out) is out and same_bytes(out, payload(5))
    assert store.fetch(6) is None
    assert store.stats().fetch_misses == 1


def test_statistics_add_up(tmp_path):
    store = three_tier(tmp_path, flash_blocks=3)
    for h in range(10):
        store.put(h, payload(h))
        if h % 3 == 0:
            store.fetch(h // 2)
    store.free(9)
    store.check_invariants()  # blocks/bytes in - out == resident, per tier
    s = store.stats()
    assert s.puts == 10 and s.fetches == 4
    total_resident = sum(t.blocks_in - t.blocks_out for t in s.tiers.values())
    assert total_resident == len(store)


def test_lz4_measures_ratio_and_time(tmp_path):
    store = make_store([hbm(BLOCK_BYTES), flash(4 * FLASH_SLOT, tmp_path, codec="lz4")])
    for h in range(4):
        store.put(h, payload(h, compressible=True))
    f = store.stats().tiers["flash"]
    assert f.compression_ratio > 10 and f.compress_ns > 0
    assert f.stored_bytes_written < f.bytes_written == 3 * BLOCK_BYTES


def test_lz4_keeps_incompressible_blocks_raw():
    store = make_store([hbm(2 * BLOCK_BYTES, codec="lz4")])
    store.put(1, payload(1))
    t = store.stats().tiers["hbm"]
    assert t.stored_bytes_written == BLOCK_BYTES and t.compression_ratio == 1.0
    assert same_bytes(store.fetch(1), payload(1))


def test_memory_checksum_turns_corruption_into_a_miss():
    store = make_store([hbm(2 * BLOCK_BYTES, checksum=True)])
    store.put(1, payload(1))
    tier = store.tier("hbm")
    tier.slab[tier.hash_to_slot[1], 100] ^= 0xFF
    assert store.fetch(1) is None
    assert store.stats().tiers["hbm"].corrupt == 1 and not store.contains(1)
    store.check_invariants()


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,match",
    [(np.zeros((2, 2, 16, 2, 8), np.float64), "kv.dtype"), (np.zeros((2, 2, 8, 2, 8), np.float32), "kv.shape"),
     ([1, 2, 3], "kv: got list")],
)
def test_bad_payload_is_rejected_and_loses_nothing(bad, match):
    store = make_store([hbm(2 * BLOCK_BYTES)])
    store.put(1, payload(1))
    with pytest.raises(PayloadError, match=match):
        store.put(2, bad)
    assert not store.contains(2) and same_bytes(store.fetch(1), payload(1))
    store.check_invariants()


def test_non_contiguous_payload_is_accepted():
    store = make_store([hbm(2 * BLOCK_BYTES)])
    p = payload(3)
    strided = np.asfortranarray(p)
    store.put(3, strided)
    assert same_bytes(store.fetch(3), p)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "x", True])
def test_bad_hash_is_rejected(bad):
    store = make_store([hbm(2 * BLOCK_BYTES)])
    with pytest.raises(ConfigError, match="block_hash"):
        store.put(bad, payload(0))


def test_capacity_smaller_than_one_block():
    with pytest.raises(ConfigError, match="capacity_bytes.*4096"):
        make_store([hbm(BLOCK_BYTES - 1)])
    with pytest.raises(ConfigError, match="capacity_bytes"):
        TierSpec(kind="hbm", capacity_bytes=0)


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="kind"):
        TierSpec(kind="tape", capacity_bytes=1 << 20)
    with pytest.raises(UnknownNameError, match="codec"):
        hbm(1 << 20, codec="zstd")
    with pytest.raises(UnknownNameError, match="policy.*lru"):
        make_store([hbm(1 << 20, policy="nope")])
    with pytest.raises(UnknownNameError, match="fsync"):
        flash(1 << 20, "/tmp", fsync="sometimes")


def test_bad_tier_lists():
    with pytest.raises(ConfigError, match="unique"):
        make_store([hbm(1 << 20), hbm(1 << 20)])
    with pytest.raises(ConfigError, match="empty"):
        make_store([])
    with pytest.raises(ConfigError, match="placement"):
        make_store([hbm(1 << 20)], placement="both")
    with pytest.raises(ConfigError, match="bandwidth|read_bw"):
        hbm(1 << 20, read_bw_bytes_per_s=0)
    with pytest.raises(ConfigError, match="path"):
        TierSpec(kind="flash", capacity_bytes=1 << 20)


def test_unwritable_flash_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="TierSpec.path.*a-file.*writable directory"):
        make_store([flash(1 << 20, blocker / "sub")])


def test_failed_flash_write_drops_the_block_and_keeps_the_rest(tmp_path, monkeypatch):
    store = make_store([hbm(BLOCK_BYTES), flash(4 * FLASH_SLOT, tmp_path)])
    store.put(1, payload(1))
    store.put(2, payload(2))  # 1 demoted to flash
    real = flash_mod.os.pwritev

    def enospc(fd, bufs, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(flash_mod.os, "pwritev", enospc)
    store.put(3, payload(3))  # 2 must be demoted; the write fails; 2 is dropped, reported
    f = store.stats().tiers["flash"]
    assert f.write_errors == 1 and store.stats().tiers["hbm"].drops == 1
    assert not store.contains(2) and store.fetch(2) is None
    store.check_invariants()
    monkeypatch.setattr(flash_mod.os, "pwritev", real)
    assert same_bytes(store.fetch(1, promote=False), payload(1)) and same_bytes(store.fetch(3), payload(3))
    # The slot whose write failed is free and usable again.
    store.put(4, payload(4))
    assert same_bytes(store.fetch(3, promote=False), payload(3))


def test_failed_write_with_flash_only_reports_put_dropped(tmp_path, monkeypatch):
    store = make_store([flash(2 * FLASH_SLOT, tmp_path)])
    monkeypatch.setattr(flash_mod.os, "pwritev", lambda fd, b, o: 10)  # a short write
    res = store.put(1, payload(1))
    assert res.tier is None and store.stats().puts_dropped == 1 and len(store) == 0
    store.check_invariants()


def test_store_is_a_context_manager(tmp_path):
    with make_store([flash(2 * FLASH_SLOT, tmp_path)]) as store:
        store.put(1, payload(1))
    assert store.tier("flash")._fd == -1  # closed (and so flushed and unlocked)
    with make_store([flash(2 * FLASH_SLOT, tmp_path)]) as again:
        assert same_bytes(again.fetch(1), payload(1))


def test_a_flash_file_has_one_store_at_a_time(tmp_path):
    first = make_store([flash(2 * FLASH_SLOT, tmp_path)])
    with pytest.raises(ConfigError, match="already open by another store"):
        make_store([flash(2 * FLASH_SLOT, tmp_path)])
    first.close()
    make_store([flash(2 * FLASH_SLOT, tmp_path)]).close()


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(tiers=5), "tiers"), (dict(dtype=object), "dtype"), (dict(block_shape=(4.5,)), "block_shape")],
)
def test_bad_store_arguments(kwargs, match):
    args = dict(tiers=[hbm(1 << 16)], block_shape=(16,), dtype=np.float32)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        TieredStore(args.pop("tiers"), **args)
    with pytest.raises(ConfigError, match="block_hashes"):
        make_store([hbm(1 << 16)]).lookup(5)


def test_put_of_stored_block_never_rewrites_it():
    """Found by the state machine: a put-hit in a lower tier promoted the caller's bytes."""
    store = make_store([hbm(3 * BLOCK_BYTES), dram(3 * BLOCK_BYTES)])
    store.put(7, payload(7))
    for h in range(3):
        store.put(h, payload(h))  # 7 demoted to DRAM
    assert store.put(7, payload(8)).already_present
    assert store.lookup([7]).tier_of(0) == "hbm"
    assert same_bytes(store.fetch(7), payload(7))
