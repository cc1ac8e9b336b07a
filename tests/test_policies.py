"""Eviction policies: each against its naive twin, golden eviction orders, properties."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.policies import POLICIES, POLICY_NAMES, EvictionPolicy, make_policy
from tests.naive import run_kernel_policy, run_naive

ONLINE = [name for name in POLICY_NAMES if name != "belady"]


def test_registry_has_the_ten_policies():
    assert set(POLICY_NAMES) <= set(POLICIES)
    for name in POLICY_NAMES:
        policy = make_policy(name, 4)
        assert isinstance(policy, EvictionPolicy) and policy.name == name and len(policy) == 0
    with pytest.raises(UnknownNameError, match="lru"):
        make_policy("nope", 4)
    with pytest.raises(ConfigError, match="num_slots"):
        make_policy("lru", 0)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_bad_slot_is_a_config_error(name):
    policy = make_policy(name, 3)
    with pytest.raises(ConfigError, match="slot"):
        policy.insert(3)
    with pytest.raises(ConfigError, match="slot"):
        policy.access(-1)


# -- golden eviction orders on tiny cases -----------------------------------------------

TINY = [1, 2, 3, 1, 4, 1, 5, 2, 6, 1, 3, 7, 2, 1, 8, 4, 1, 2]
TINY_DEPTHS = [0, 1, 2, 0, 1, 0, 1, 0, 1, 0, 1, 2, 0, 0, 1, 2, 0, 1]
TINY_COSTS = [1.0, 2.0, 3.0, 1.0, 4.0, 1.0, 1.0, 2.0, 5.0, 1.0, 3.0, 1.0, 2.0, 1.0, 1.0, 4.0, 1.0, 2.0]

GOLDEN_EVICTIONS = {  # capacity 3; lru, fifo and prefix-lru checked by hand
    "lru": [2, 3, 4, 1, 5, 2, 6, 1, 3, 7, 2, 8],
    "fifo": [1, 2, 3, 4, 1, 5, 2, 6, 1, 3, 7, 2, 1],
    "lfu": [2, 3, 4, 5, 2, 6, 3, 7, 2, 8],
    "clock": [2, 3, 4, 5, 2, 6, 1, 3, 7, 2, 8],
    "sieve": [2, 3, 4, 5, 2, 6, 3, 7, 2, 8],
    "s3fifo": [1, 4, 2, 5, 2, 6, 7, 2, 8, 4],
    "arc": [2, 3, 4, 5, 2, 6, 3, 7, 2, 8],
    "prefix-lru": [3, 2, 4, 5, 6, 2, 7, 3, 2, 4],
    "cost-aware": [2, 3, 5, 1, 4, 2, 1, 7, 3, 6, 2, 8],
    "belady": [3, 4, 5, 6, 3, 7, 8],
}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_golden_eviction_order(name):
    hits, evicted = run_kernel_policy(make_policy(name, 3), TINY, TINY_DEPTHS, TINY_COSTS)
    assert evicted == GOLDEN_EVICTIONS[name]
    naive_hits, naive_evicted = run_naive(name, 3, TINY, TINY_DEPTHS, TINY_COSTS)
    assert (hits, evicted) == (naive_hits, naive_evicted)


def test_prefix_lru_evicts_chain_tails_first():
    # One request of a 4-block chain, then a second request: the chain leaves tail first.
    policy = make_policy("prefix-lru", 8)
    for depth, slot in enumerate([0, 1, 2, 3]):
        policy.insert(slot, depth=depth)
    policy.insert(4, depth=0)
    assert policy.order() == [3, 2, 1, 0, 4]
    policy.access(1, depth=0)  # a later request hits only the second block: newest again
    assert policy.order() == [3, 2, 0, 4, 1]


def test_cost_aware_keeps_expensive_blocks_until_they_age_out():
    policy = make_policy("cost-aware", 4)
    policy.insert(0, cost=10.0)
    for slot in (1, 2, 3):
        policy.insert(slot, cost=1.0)
    assert policy.evict() == 1  # cheapest first
    # Each eviction raises the clock; cheap blocks inserted later overtake the old one.
    free = 1
    for _ in range(60):
        policy.insert(free, cost=1.0)
        free = policy.evict()
        if free == 0:
            break
    else:
        pytest.fail("an expensive block that is never used again must eventually leave")


# -- against the naive twins ------------------------------------------------------------

keys_st = st.lists(st.integers(0, 11), min_size=1, max_size=120)


@pytest.mark.parametrize("name", POLICY_NAMES)
@given(keys=keys_st, capacity=st.integers(1, 7), data=st.data())
@settings(max_examples=40)
@example(keys=[0, 1, 0, 2, 3, 0, 1, 4, 0, 1], capacity=2, data=None)
def test_matches_naive_twin(name, keys, capacity, data):
    if data is None:
        depths, costs = None, None
    else:
        depths = data.draw(st.lists(st.integers(0, 3), min_size=len(keys), max_size=len(keys)))
        costs = data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 7.0]), min_size=len(keys), max_size=len(keys)))
    got = run_kernel_policy(make_policy(name, capacity), keys, depths, costs)
    assert got == run_naive(name, capacity, keys, depths, costs)


@given(keys=st.lists(st.integers(0, 40), min_size=1, max_size=300), capacity=st.integers(10, 30))
@settings(max_examples=20)
def test_s3fifo_and_arc_match_twins_with_ghost_traffic(keys, capacity):
    for name in ("s3fifo", "arc"):
        assert run_kernel_policy(make_policy(name, capacity), keys) == run_naive(name, capacity, keys)


# -- properties -------------------------------------------------------------------------


@given(keys=keys_st, capacity=st.integers(1, 6))
@settings(max_examples=30)
def test_no_online_policy_beats_belady(keys, capacity):
    best = sum(run_kernel_policy(make_policy("belady", capacity), keys)[0])
    for name in ONLINE:
        assert sum(run_kernel_policy(make_policy(name, capacity), keys)[0]) <= best, name


@pytest.mark.parametrize("name", POLICY_NAMES)
@given(keys=keys_st, capacity=st.integers(2, 6), pinned=st.sets(st.integers(0, 11), max_size=3))
@settings(max_examples=25)
def test_never_evicts_a_pinned_block(name, keys, capacity, pinned):
    _hits, evicted = run_kernel_policy(make_policy(name, capacity), keys, pinned=pinned)
    assert not set(evicted) & pinned


ops_st = st.lists(
    st.tuples(st.sampled_from(["insert", "access", "remove", "evict", "victim", "prepare"]), st.integers(0, 5),
              st.integers(0, 9)),
    max_size=80,
)


@pytest.mark.parametrize("name", POLICY_NAMES)
@given(ops=ops_st)
@settings(max_examples=30)
def test_any_operation_sequence_keeps_invariants(name, ops):
    """Arbitrary interleavings (removals that are not evictions, victim() without an
    eviction, prepare() without an insert) keep the state consistent, never exceed the
    slots, and victim() is pure: it names what evict() then evicts."""
    policy = make_policy(name, 6)
    tracked: set[int] = set()
    for op, slot, key in ops:
        if op == "insert" and slot not in tracked:
            policy.insert(slot, key=key, depth=key % 3, next_use=key * 7, cost=1.0 + key)
            tracked.add(slot)
        elif op == "access" and slot in tracked:
            policy.access(slot, depth=key % 3, next_use=key * 5, cost=1.0 + key)
        elif op == "remove" and slot in tracked:
            policy.remove(slot)
            tracked.discard(slot)
        elif op == "evict":
            before = policy.victim()
            assert policy.victim() == before
            got = policy.evict()
            assert got == before
            tracked.discard(got)
        elif op == "victim":
            v = policy.victim()
            assert (v == -1) == (not tracked) and (v == -1 or v in tracked)
        elif op == "prepare":
            policy.prepare(key)
        policy.check_invariants()
        assert len(policy) == len(tracked) <= policy.num_slots
        assert all(s in policy for s in tracked)
    assert sorted(policy.order()) == sorted(tracked)


def test_evict_runs_the_hand_and_remove_does_not():
    # CLOCK: evict() runs the hand (clears the bit it passes); remove() never does, even of
    # the slot victim() just named (asking victim() has no side effect).
    a = make_policy("clock", 3)
    for s in range(3):
        a.insert(s)
    a.access(0)
    v = a.victim()
    assert v == 1
    assert a.evict() == v
    assert a.order() == [2, 0]  # slot 0 had its second chance and moved behind
    b = make_policy("clock", 3)
    for s in range(3):
        b.insert(s)
    b.access(0)
    assert b.victim() == 1
    b.remove(1)  # a plain removal
    assert b.order() == [0, 2]


def test_s3fifo_parameters_are_validated():
    from kvtier.policies import S3FIFO

    with pytest.raises(ConfigError, match="small_ratio"):
        S3FIFO(10, small_ratio=1.5)
    with pytest.raises(ConfigError, match="move_threshold"):
        S3FIFO(10, move_threshold=0)
    from kvtier._kernels.policy import M_CAP0, M_CAP1, M_G_CAP

    m = S3FIFO(100).state[3]
    assert (m[M_CAP0], m[M_CAP1], m[M_G_CAP]) == (10, 90, 90)  # libCacheSim's sizes for 100 objects
