"""Fault injection: under every fault the store returns the right bytes or "missing",
keeps its invariants, keeps serving, and counts the fault. Frees are in the mix: a block
freed and put again carries new bytes, and the old ones must never come back."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from kvtier import ConfigError, KvtierError, dram, flash, hbm
from kvtier.errors import TierIOError
from kvtier.testing import FAULT_KINDS, FaultRates, FaultyFileIO
from kvtier.tiers import FileIO
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192
NUM_HASHES = 40


def version_bytes(h: int, version: int) -> np.ndarray:
    return payload(h * 1000 + version)


def run_workload(store, steps: int, seed: int, *, free_share: float = 0.1) -> dict:
    """Seeded puts, fetches and frees over 40 block ids; every fetched block is checked.

    Each put of a block that is not stored carries new bytes (a new version), so a block
    that was freed or dropped and put again must come back with its newest bytes:
    ``stale`` counts fetches that returned an older version, ``wrong`` any other bytes
    (both must stay 0). A free the device fails raises ``TierIOError`` and must leave the
    block stored (``free_errors``)."""
    rng = np.random.default_rng(seed)
    versions = dict.fromkeys(range(NUM_HASHES), 0)
    model: dict[int, int] = {}  # block -> the version the store holds (if it still does)
    out = {"served": 0, "wrong": 0, "stale": 0, "missing": 0, "frees": 0, "free_errors": 0}
    for _ in range(steps):
        h = int(rng.integers(NUM_HASHES))
        u = rng.random()
        if u < free_share:
            try:
                out["frees"] += store.free(h)
            except TierIOError:
                out["free_errors"] += 1
                assert store.contains(h), "a free the device failed lost the block"
                continue
            model.pop(h, None)
        elif u < (1 + free_share) / 2:
            versions[h] += 1
            res = store.put(h, version_bytes(h, versions[h]))
            if res.stored and not res.already_present:
                model[h] = versions[h]
            elif not res.stored:
                model.pop(h, None)
        else:
            got = store.fetch(h)
            if got is None:
                out["missing"] += 1
                model.pop(h, None)
            elif h in model and same_bytes(got, version_bytes(h, model[h])):
                out["served"] += 1
            elif any(same_bytes(got, version_bytes(h, v)) for v in range(1, versions[h] + 1)):
                out["stale"] += 1
            else:
                out["wrong"] += 1
        store.check_invariants()
    out["model"] = model
    return out


def check_left_on_flash(store, result) -> None:
    """Read back everything still on flash (so torn writes are found too): the newest bytes or nothing."""
    for h in store.tier("flash").hashes():
        got = store.fetch(h, promote=False)
        assert got is None or same_bytes(got, version_bytes(h, result["model"][h]))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_survived_and_counted(tmp_path, kind):
    io = FaultyFileIO(FaultRates(**{kind: 0.3}), seed=7)
    store = make_store([hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES), flash(12 * SLOT, tmp_path)], flash_io=io)
    result = run_workload(store, 600, seed=1)
    assert result["wrong"] == 0 and result["stale"] == 0
    assert result["served"] > 50 and result["frees"] > 10  # it kept serving (and freeing) through the faults
    check_left_on_flash(store, result)
    store.check_invariants()
    injected = io.injected[kind]
    assert injected > 5
    io.armed = False  # and it still works once the device behaves
    for h in range(100, 114):
        store.put(h, payload(h))
    assert all(same_bytes(store.fetch(h), payload(h)) for h in range(100, 114))
    f = store.stats().tiers["flash"]
    if kind in ("write_enospc", "write_eio", "header_eio"):
        assert f.write_errors == injected  # every failed write counted once
        assert f.drops >= 1
    elif kind == "read_eio":
        assert f.read_errors == injected
    elif kind == "bitflip":
        assert f.corrupt == injected  # every flip lands in verified bytes and is read at once
    else:  # torn: found when read; a torn block evicted unread is never served either
        assert 0 < f.corrupt <= injected
    if kind == "header_eio":
        assert result["free_errors"] > 0
    store.close()  # retries what failed; nothing left to report


def test_all_faults_at_once_then_reopen(tmp_path):
    rates = FaultRates(write_enospc=0.05, write_eio=0.05, torn_write=0.1, header_eio=0.05, read_eio=0.05,
                       bitflip=0.1)
    io = FaultyFileIO(rates, seed=3)
    tiers = [hbm(2 * BLOCK_BYTES), flash(16 * SLOT, tmp_path, codec="lz4")]
    store = make_store(tiers, flash_io=io)
    result = run_workload(store, 800, seed=2)
    assert result["wrong"] == 0 and result["stale"] == 0
    io.armed = False
    store.close()
    again = make_store(tiers)  # a clean reopen: whatever was torn or rotted is dropped, not served
    for h in again.tier("flash").hashes():
        got = again.fetch(h, promote=False)
        assert got is None or (h in result["model"] and same_bytes(got, version_bytes(h, result["model"][h])))
    again.check_invariants()
    assert sum(io.injected.values()) > 50


def test_schedule_is_deterministic(tmp_path):
    def run(sub):
        io = FaultyFileIO(FaultRates(write_eio=0.2, bitflip=0.2), seed=11)
        store = make_store([hbm(BLOCK_BYTES), flash(8 * SLOT, tmp_path / sub)], flash_io=io)
        r = run_workload(store, 300, seed=5)
        return r, dict(io.injected), store.stats().tiers["flash"].as_dict()

    a, b = run("a"), run("b")
    assert a[0] == b[0] and a[1] == b[1]
    assert {k: v for k, v in a[2].items() if not k.endswith("_ns")} == {k: v for k, v in b[2].items() if not k.endswith("_ns")}


def test_fault_rates_are_validated():
    with pytest.raises(ConfigError, match="bitflip"):
        FaultRates(bitflip=1.5)
    with pytest.raises(ConfigError, match="must not exceed 1"):
        FaultRates(write_eio=0.6, torn_write=0.6)


class SwitchableIO(FileIO):
    """Real I/O, except that fdatasync, slot writes or header writes fail with EIO while switched on."""

    def __init__(self) -> None:
        self.fail_syncs = self.fail_slot_writes = self.fail_header_writes = False

    def fdatasync(self, fd):
        if self.fail_syncs:
            raise OSError(errno.EIO, "Input/output error (test)")
        super().fdatasync(fd)

    def pwritev(self, fd, buffers, offset):
        if self.fail_slot_writes:
            raise OSError(errno.EIO, "Input/output error (test)")
        return super().pwritev(fd, buffers, offset)

    def pwrite(self, fd, data, offset):
        if self.fail_header_writes:
            raise OSError(errno.EIO, "Input/output error (test)")
        return super().pwrite(fd, data, offset)


def test_close_releases_every_file_when_the_final_sync_fails(tmp_path):
    io = SwitchableIO()
    tiers = [flash(4 * SLOT, tmp_path / "a", name="fa"), flash(4 * SLOT, tmp_path / "b", name="fb")]
    store = make_store(tiers, flash_io=io)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.tier("fb").admit(9, store.tier("fb").encode(payload(9).reshape(-1).view(np.uint8)))  # both files dirty
    io.fail_syncs = True
    with pytest.raises(TierIOError, match=r"flush of flash tier 'fa': fdatasync of '.*fa.kvt' failed") as e:
        store.close()
    assert isinstance(e.value, KvtierError) and e.value.errno == errno.EIO
    assert any("'fb'" in note for note in e.value.__notes__)  # the second tier's failure is reported too
    assert all(t.fd == -1 for t in store.tiers)  # both files closed and unlocked anyway
    io.fail_syncs = False
    again = make_store(tiers)  # was: ConfigError, the files still locked by the half-closed store
    assert same_bytes(again.fetch(1), payload(1)) and same_bytes(again.fetch(9), payload(9))
    again.close()


def test_a_failed_put_on_a_flash_only_store_counts_as_a_drop(tmp_path):
    io = SwitchableIO()
    store = make_store([flash(4 * SLOT, tmp_path)], flash_io=io)
    io.fail_slot_writes = True
    assert store.put(1, payload(1)).tier is None
    s = store.stats()
    assert s.puts_dropped == 1 and s.tiers["flash"].write_errors == 1 and s.tiers["flash"].drops == 1
    store.check_invariants()


def test_free_under_fsync_always_syncs_and_reports_a_failed_sync(tmp_path):
    io = SwitchableIO()
    store = make_store([flash(4 * SLOT, tmp_path, fsync="always")], flash_io=io)
    store.put(1, payload(1))
    io.fail_syncs = True
    with pytest.raises(TierIOError, match=r"free of block 0x1 .*fdatasync.*not durable yet"):
        store.free(1)
    assert not store.contains(1) and store.stats().tiers["flash"].write_errors == 1
    with pytest.raises(TierIOError, match="flush of flash tier 'flash'"):
        store.flush()
    io.fail_syncs = False
    store.flush()
    store.check_invariants()
    store.close()
    assert not make_store([flash(4 * SLOT, tmp_path)]).contains(1)
