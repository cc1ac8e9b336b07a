"""The fast replay and the real store make the same decisions, access by access.

One trace goes through ``TieredStore`` with memory tiers (fetch each block; put it on a
miss) and through ``kvtier.replay`` with the same tiers. Per access we compare the tier
that hit (or the miss) and the evictions in every tier; at the end every counter. The
store's tiers give their policies each block's key (for ARC's and S3-FIFO's ghosts) and
nothing else, so the replay runs with ``hints="keys"`` to make the same calls.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier import TierSpec, TieredStore
from kvtier.policies import POLICY_NAMES
from kvtier.replay import ReplayTier, replay

BLOCK_BYTES = 8
KINDS = ("hbm", "dram", "sram")


def agent_like_trace(seed: int, requests: int, vocab: int):
    """Sessions that grow their context, share a system prompt, and sometimes branch."""
    rng = np.random.default_rng(seed)
    contexts = [[1000 + s, 2000] for s in range(4)]
    rows = []
    for _ in range(requests):
        s = int(rng.integers(len(contexts)))
        ctx = contexts[s]
        if rng.random() < 0.15:
            ctx = ctx[: int(rng.integers(1, len(ctx) + 1))]  # branch from an earlier turn
        ctx = ctx + [int(x) for x in rng.integers(0, vocab, size=int(rng.integers(1, 4)))]
        contexts[s] = ctx[-24:]
        rows.append(list(contexts[s]))
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    return offsets, np.concatenate(rows).astype(np.uint64)


def run_store(offsets, hashes, caps, policies):
    specs = [TierSpec(kind=KINDS[i], name=f"t{i}", capacity_bytes=c * BLOCK_BYTES, policy=p)
             for i, (c, p) in enumerate(zip(caps, policies))]
    payload = np.zeros(BLOCK_BYTES, dtype=np.uint8)
    hit_tier = np.empty(hashes.shape[0], dtype=np.int8)
    evictions_at = np.zeros((hashes.shape[0], len(caps)), dtype=np.int32)
    with TieredStore(specs, block_shape=(BLOCK_BYTES,), dtype=np.uint8) as store:
        tiers = store.tiers
        for k, h in enumerate(hashes.tolist()):
            hits_before = [t.stats.hits for t in tiers]
            ev_before = [t.stats.evictions for t in tiers]
            if store.fetch(h) is None:
                store.put(h, payload)
                hit_tier[k] = -1
            else:
                hit_tier[k] = next(i for i, t in enumerate(tiers) if t.stats.hits != hits_before[i])
            evictions_at[k] = [t.stats.evictions - e for t, e in zip(tiers, ev_before)]
        store.check_invariants()
        stats = store.stats()
    return hit_tier, evictions_at, [stats.tiers[f"t{i}"] for i in range(len(caps))]


def assert_same(offsets, hashes, caps, policies):
    s_hit, s_ev, s_stats = run_store(offsets, hashes, caps, policies)
    tiers = [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=c) for i, (c, p) in enumerate(zip(caps, policies))]
    r = replay(offsets, hashes, tiers, block_bytes=BLOCK_BYTES, hints="keys", record=True)
    first = np.flatnonzero((r.hit_tier != s_hit) | np.any(r.evictions_at != s_ev, axis=1))
    assert first.size == 0, (f"first divergence at access {first[0]}: replay hit tier {r.hit_tier[first[0]]}, "
                             f"store {s_hit[first[0]]}")
    for mine, theirs in zip(r.tiers, s_stats):
        for field in ("hits", "misses", "evictions", "demotions", "promotions", "drops"):
            assert getattr(mine, field) == getattr(theirs, field), (mine.name, field)
        assert mine.admitted == theirs.blocks_in
    return r


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_one_tier_matches_store(name):
    offsets, hashes = agent_like_trace(1, 120, 60)
    r = assert_same(offsets, hashes, [23], [name])
    assert r.tiers[0].evictions > 50 and r.block_hits > 100  # the case exercises eviction


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_three_tiers_match_store(name):
    offsets, hashes = agent_like_trace(2, 150, 80)
    r = assert_same(offsets, hashes, [9, 17, 30], [name, "lru", name])
    assert all(t.evictions > 10 for t in r.tiers)
    assert r.tiers[1].promotions > 0 and r.tiers[2].drops > 0


@given(seed=st.integers(0, 10_000), caps=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       policies=st.lists(st.sampled_from(POLICY_NAMES), min_size=3, max_size=3))
@settings(max_examples=15)
def test_random_chains_match_store(seed, caps, policies):
    offsets, hashes = agent_like_trace(seed, 40, 30)
    assert_same(offsets, hashes, caps, policies[: len(caps)])


def test_tier_specs_get_the_slots_the_store_gives_them(tmp_path):
    """A flash slot carries a header and 4 KiB alignment: the replay must size it as the store does."""
    from kvtier import dram, flash, hbm

    block_bytes = 4096
    specs = [hbm(3 * block_bytes), dram(5 * block_bytes), flash(100 * block_bytes, tmp_path)]
    with TieredStore(specs, block_shape=(block_bytes,), dtype=np.uint8) as store:
        store_slots = [t.num_slots for t in store.tiers]
    offsets, hashes = agent_like_trace(3, 200, 200)
    r = replay(offsets, hashes, specs, block_bytes=block_bytes)
    assert [t.capacity_blocks for t in r.tiers] == store_slots == [3, 5, 50]


@pytest.mark.parametrize("offsets,hashes", [([0, 2], [1.5, 2.7]), ([0, 1], [-3]), (["a", "b"], [1])])
def test_malformed_arrays_are_config_errors(offsets, hashes):
    from kvtier import ConfigError

    with pytest.raises(ConfigError, match="block_"):
        replay(offsets, hashes, capacity_blocks=4)
