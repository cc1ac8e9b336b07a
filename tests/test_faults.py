"""Fault injection: under every fault the store returns the right bytes or "missing",
keeps its invariants, keeps serving, and counts the fault."""

from __future__ import annotations

import numpy as np
import pytest

from kvtier import ConfigError, dram, flash, hbm
from kvtier.testing import FAULT_KINDS, FaultRates, FaultyFileIO
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192


def run_workload(store, steps: int, seed: int) -> dict:
    """Seeded puts and fetches over 40 block ids; every fetched block is checked."""
    rng = np.random.default_rng(seed)
    served = wrong = missing = 0
    for _ in range(steps):
        h = int(rng.integers(40))
        if rng.random() < 0.5:
            store.put(h, payload(h))
        else:
            got = store.fetch(h)
            if got is None:
                missing += 1
            elif same_bytes(got, payload(h)):
                served += 1
            else:
                wrong += 1
        store.check_invariants()
    return {"served": served, "wrong": wrong, "missing": missing}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_survived_and_counted(tmp_path, kind):
    io = FaultyFileIO(FaultRates(**{kind: 0.3}), seed=7)
    store = make_store([hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES), flash(12 * SLOT, tmp_path)], flash_io=io)
    result = run_workload(store, 600, seed=1)
    assert result["wrong"] == 0
    assert result["served"] > 50  # it kept serving through the faults
    # Read back everything still on flash, so torn writes are found too.
    for h in store.tier("flash").hashes():
        got = store.fetch(h, promote=False)
        assert got is None or same_bytes(got, payload(h))
    store.check_invariants()
    injected = io.injected[kind]
    assert injected > 5
    io.armed = False  # and it still works once the device behaves
    for h in range(100, 114):
        store.put(h, payload(h))
    assert all(same_bytes(store.fetch(h), payload(h)) for h in range(100, 114))
    f = store.stats().tiers["flash"]
    if kind in ("write_enospc", "write_eio"):
        assert f.write_errors == injected
    elif kind == "read_eio":
        assert f.read_errors == injected
    elif kind == "bitflip":
        assert f.corrupt == injected  # every flip lands in verified bytes and is read at once
    else:  # torn: found when read; a torn block evicted unread is never served either
        assert 0 < f.corrupt <= injected
    store.close()


def test_all_faults_at_once_then_reopen(tmp_path):
    rates = FaultRates(write_enospc=0.05, write_eio=0.05, torn_write=0.1, read_eio=0.05, bitflip=0.1)
    io = FaultyFileIO(rates, seed=3)
    tiers = [hbm(2 * BLOCK_BYTES), flash(16 * SLOT, tmp_path, codec="lz4")]
    store = make_store(tiers, flash_io=io)
    assert run_workload(store, 800, seed=2)["wrong"] == 0
    store.close()
    again = make_store(tiers)  # a clean reopen: whatever was torn or rotted is dropped, not served
    for h in again.tier("flash").hashes():
        got = again.fetch(h, promote=False)
        assert got is None or same_bytes(got, payload(h))
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
