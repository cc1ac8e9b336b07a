"""A conformance check for eviction policies, built-in or a user's own.

``check_policy_conformance(policy)`` drives the policy through random sequences of
insert / access / remove / victim / evict calls and checks the contract every tier relies
on: ``victim()`` names a tracked slot (or -1 exactly when nothing is tracked) and does not
change anything; ``len`` and ``in`` agree with what was inserted and removed; the policy's
own ``check_invariants()`` holds after every call; and, given a ``reference`` (a slower
obvious twin), the victims agree at every step. It then runs the policy inside a
``TieredStore`` with pins, checking that capacity is never exceeded and that no pinned
block is ever evicted.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.policies import POLICIES, EvictionPolicy, make_policy, register_policy
from kvtier.store import TieredStore
from kvtier.tiers import dram, hbm

PolicyLike = str | type[EvictionPolicy] | Callable[[int], EvictionPolicy]

_OPS = st.lists(
    st.tuples(st.sampled_from(["insert", "access", "remove", "victim", "evict"]), st.integers(0, 63)),
    max_size=120,
)


def _factory(policy: PolicyLike) -> Callable[[int], EvictionPolicy]:
    if isinstance(policy, str):
        return lambda n: make_policy(policy, n)
    return policy


def _policy_name(policy: PolicyLike) -> str | None:
    if isinstance(policy, str):
        return policy
    if isinstance(policy, type) and issubclass(policy, EvictionPolicy):
        if POLICIES.get(policy.name) is not policy:
            register_policy(policy)
        return policy.name
    return None


def check_policy_sequence(factory: Callable[[int], EvictionPolicy], num_slots: int, ops,
                          reference: Callable[[int], EvictionPolicy] | None = None) -> None:
    """Apply ``ops`` ((name, slot) pairs; slots taken modulo ``num_slots``) and check the contract."""
    p = factory(num_slots)
    ref = reference(num_slots) if reference is not None else None
    tracked: set[int] = set()
    for op, x in ops:
        slot = x % num_slots
        if op == "insert" and slot in tracked:
            op = "access"
        if op in ("access", "remove") and slot not in tracked:
            op = "insert"
        if op in ("insert", "access", "remove"):
            for q in (p, ref):
                if q is not None:
                    getattr(q, op)(slot)
            if op == "insert":
                tracked.add(slot)
            elif op == "remove":
                tracked.discard(slot)
        elif op == "evict":
            v = p.victim()
            got = p.evict()
            assert got == v, f"evict() took slot {got}, victim() named {v}"
            if v >= 0:
                if ref is not None:
                    assert ref.victim() == v, f"victim {v} differs from the reference's {ref.victim()}"
                    ref.evict()
                tracked.discard(v)
        v = p.victim()
        assert (v == -1) == (not tracked), f"victim() = {v} with {len(tracked)} tracked slots"
        assert v == -1 or v in tracked, f"victim() = {v} is not a tracked slot"
        assert p.victim() == v, "victim() changed when called twice"
        assert len(p) == len(tracked), f"len = {len(p)}, expected {len(tracked)}"
        assert all((s in p) == (s in tracked) for s in range(num_slots)), "__contains__ disagrees with inserts"
        if ref is not None:
            assert ref.victim() == v, f"victim {v} differs from the reference's {ref.victim()}"
        p.check_invariants()


def check_policy_in_store(name: str, ops, *, capacity_blocks: int = 3) -> None:
    """Run a policy (by registry name) in a two-tier store with pins; check capacity and pins."""
    shape, dtype = (8,), np.dtype(np.float32)
    store = TieredStore([hbm(capacity_blocks * 32, policy=name), dram(capacity_blocks * 32, policy=name)],
                        block_shape=shape, dtype=dtype)
    pinned: dict[int, int] = {}
    for op, x in ops:
        h = x % 16
        if op in ("insert", "access"):
            store.put(h, np.full(shape, h, dtype))
        elif op == "victim":
            got = store.fetch(h)
            assert got is None or got[0] == h
        elif op == "evict" and store.contains(h) and sum(pinned.values()) < capacity_blocks:
            store.pin(h)
            pinned[h] = pinned.get(h, 0) + 1
        elif op == "remove" and pinned.get(h):
            store.unpin(h)
            pinned[h] -= 1
        store.check_invariants()
        for b, n in pinned.items():
            assert n == 0 or store.contains(b), f"pinned block {b} was evicted"


def check_policy_conformance(policy: PolicyLike, *, reference: Callable[[int], EvictionPolicy] | None = None,
                             max_examples: int | None = None) -> None:
    """Check ``policy`` (a registry name, an ``EvictionPolicy`` subclass, or a factory
    ``num_slots -> policy``) against the interface contract; raises ``AssertionError``
    with the shrunk failing sequence. A subclass that is not registered yet is registered
    under its ``name`` so the store can build it. Policies that need hints (Belady's next
    use) are checked with the defaults the store passes."""
    factory = _factory(policy)
    name = _policy_name(policy)
    cfg = settings(max_examples=max_examples) if max_examples else settings()

    @cfg
    @given(num_slots=st.integers(1, 8), ops=_OPS)
    def sequences(num_slots, ops):
        check_policy_sequence(factory, num_slots, ops, reference)

    sequences()
    if name is not None:

        @cfg
        @given(capacity=st.integers(1, 4), ops=_OPS)
        def in_store(capacity, ops):
            check_policy_in_store(name, ops, capacity_blocks=capacity)

        in_store()
