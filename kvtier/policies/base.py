"""The eviction-policy interface and the registry of policies by name.

A policy orders the *evictable* slots of one tier. It sees slot indices only: never a
payload byte, never a statistic. The tier calls ``insert`` when a slot starts holding a
block, ``access`` on a hit, ``remove`` when the block leaves (or is pinned: pinned blocks
leave the eviction order and come back through ``insert`` when the last pin goes), and
``victim`` to learn which slot it would evict. ``victim`` never mutates, so a caller can
ask, decide not to evict, and ask again. The shared loop (find, evict until room, insert)
lives in the tier, not in the policy, as in libCacheSim and cachetools.

Optional hints ride on ``insert``/``access`` as keyword arguments; a caller that passes
none gets a sensible policy anyway: ``key`` (the block's 64-bit identity: ARC and S3-FIFO
remember evicted keys in ghost lists, and consult them in ``prepare(key)`` before making
room for a new block), ``depth`` (the block's position in its request's chain:
prefix-LRU), ``next_use`` (the index of the block's next access: Belady) and ``cost``
(recompute cost per byte held: cost-aware).

Every policy except the abstract base keeps its state in the arrays of
``kvtier._kernels.policy`` (``KernelPolicy``), so the metadata-only replay runs the very
same kernels without Python in the loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from kvtier._kernels import policy as _k
from kvtier._kernels.gather import access_slots, admit_slots
from kvtier.errors import ConfigError
from kvtier.registry import Registry
from kvtier.validation import check_int, is_int


class EvictionPolicy(ABC):
    """Eviction order over the slots ``0 .. num_slots - 1`` of one tier."""

    #: Registry name (command line and ``TierSpec.policy``).
    name: ClassVar[str]

    def __init__(self, num_slots: int) -> None:
        self.num_slots = check_int(num_slots, "num_slots")

    @abstractmethod
    def insert(self, slot: int, *, key: int | None = None, depth: int = 0, next_use: int | None = None,
               cost: float = 1.0) -> None:
        """``slot`` (not tracked) becomes evictable, as a new or just-unpinned block.
        The keyword hints are optional (see the module docstring)."""

    @abstractmethod
    def access(self, slot: int, *, depth: int = 0, next_use: int | None = None, cost: float = 1.0) -> None:
        """``slot`` (tracked) was hit."""

    def prepare(self, key: int | None) -> None:
        """A block with ``key`` is about to be admitted (call before making room for it).
        Policies with ghost lists (ARC, S3-FIFO) look the key up here; others ignore it."""

    def evict(self) -> int:
        """Evict the slot ``victim()`` names, with the policy's eviction side effects (a
        CLOCK hand moves, a ghost entry is made); its slot, or -1 when nothing is tracked.
        The default, for policies without such side effects, is ``remove(victim())``."""
        slot = self.victim()
        if slot >= 0:
            self.remove(slot)
        return slot

    @abstractmethod
    def remove(self, slot: int) -> None:
        """``slot`` (tracked) stops being evictable without being evicted: freed, moved up,
        or pinned. No eviction side effects."""

    @abstractmethod
    def victim(self) -> int:
        """The slot this policy would evict next, or -1 when it tracks none. Pure."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of tracked slots."""

    @abstractmethod
    def __contains__(self, slot: int) -> bool:
        """Whether ``slot`` is tracked."""

    def access_many(self, slots: np.ndarray, pins: np.ndarray) -> None:
        """``access`` of every slot of ``slots`` (int64), in order, whose ``pins[slot]`` is 0
        (a pinned slot is not tracked). ``KernelPolicy`` runs the loop compiled."""
        for slot in slots.tolist():
            if pins[slot] == 0:
                self.access(slot)

    def insert_many(self, slots: np.ndarray, keys: np.ndarray) -> None:
        """``prepare(keys[j])`` then ``insert(slots[j], key=keys[j])`` for every ``j``, in
        order, as the store admits new blocks into free slots (keys: int64, each >= 0)."""
        for slot, key in zip(slots.tolist(), keys.tolist()):
            self.prepare(key)
            self.insert(slot, key=key)

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the policy's internal state is inconsistent."""


_REGISTRY: Registry[type[EvictionPolicy]] = Registry("policy")

#: Policy classes by registry name: a read-only view (``register_policy`` adds to it).
POLICIES = _REGISTRY.view


def register_policy(cls: type[EvictionPolicy]) -> type[EvictionPolicy]:
    """Class decorator: make ``cls`` available under ``cls.name`` (``ConfigError`` if a
    different class holds that name)."""
    return _REGISTRY.register(cls.name, cls)


def make_policy(name: str, num_slots: int) -> EvictionPolicy:
    """A fresh policy by registry name; ``UnknownNameError`` names the valid choices."""
    return _REGISTRY.get(name)(num_slots)


def _as_key(key) -> int:
    """A block identity as the kernels' int64 (``None`` means unknown)."""
    if type(key) is int and 0 <= key < 2**63:  # the common case, checked cheaply
        return key
    if key is None:
        return _k.NO_KEY
    if not is_int(key) or not -(2**63) < int(key) < 2**64:
        raise ConfigError(f"key: got {key!r}, expected None or an integer in (-2**63, 2**64)")
    key = int(key)
    return key - 2**64 if key >= 2**63 else key


class KernelPolicy(EvictionPolicy):
    """A policy whose state is ``kvtier._kernels.policy`` arrays (subclasses set ``kind``).

    ``victim()`` is pure (its answer is cached until the next change); ``evict()`` runs
    the policy's real eviction of that slot; ``remove()`` is always a plain removal.
    """

    kind: ClassVar[int]

    def __init__(self, num_slots: int) -> None:
        super().__init__(num_slots)
        self._state = _k.policy_new(self.kind, num_slots, *self.kernel_params(num_slots, **self.kernel_options()))
        self._pending = -1
        self._uses_keys = self.kind in (_k.S3FIFO, _k.ARC)  # only ghost lists read keys

    @classmethod
    def kernel_params(cls, num_slots: int, **options) -> tuple[int, int, int]:
        """The kernel parameters of this policy over ``num_slots`` slots with ``options``
        (the constructor's keyword arguments; defaults when none): ``(small-queue capacity,
        ghost capacity, move threshold)``, S3-FIFO's; ``(0, 0, 0)`` for the others. The
        replay and the simulator size their kernels with it, without making an instance."""
        return (0, 0, 0)

    def kernel_options(self) -> dict:
        """The options this instance was made with, as ``kernel_params`` takes them."""
        return {}

    def _check_slot(self, slot) -> int:
        if type(slot) is int and 0 <= slot < self.num_slots:
            return slot
        return check_int(slot, "slot", minimum=0, maximum=self.num_slots - 1)

    def prepare(self, key: int | None) -> None:
        if self._uses_keys:
            self._pending = -1
            _k.policy_prepare(*self._state, 0, _as_key(key))

    def insert(self, slot: int, *, key: int | None = None, depth: int = 0, next_use: int | None = None,
               cost: float = 1.0) -> None:
        slot = self._check_slot(slot)  # tracked-ness is the caller's contract: see check_invariants()
        self._pending = -1
        nu = _k.NEVER if next_use is None else int(next_use)
        _k.policy_insert(*self._state, 0, slot, _as_key(key) if self._uses_keys else _k.NO_KEY, int(depth), nu,
                         float(cost))

    def access(self, slot: int, *, depth: int = 0, next_use: int | None = None, cost: float = 1.0) -> None:
        slot = self._check_slot(slot)
        self._pending = -1
        nu = _k.NEVER if next_use is None else int(next_use)
        _k.policy_access(*self._state, 0, slot, int(depth), nu, float(cost))

    def access_many(self, slots: np.ndarray, pins: np.ndarray) -> None:
        if type(self).access is not KernelPolicy.access:
            return super().access_many(slots, pins)  # a subclass's own access must see each one
        self._pending = -1
        access_slots(*self._state, slots, pins)

    def insert_many(self, slots: np.ndarray, keys: np.ndarray) -> None:
        if type(self).insert is not KernelPolicy.insert or type(self).prepare is not KernelPolicy.prepare:
            return super().insert_many(slots, keys)
        self._pending = -1
        admit_slots(*self._state, slots, keys)

    def remove(self, slot: int) -> None:
        slot = self._check_slot(slot)
        _k.policy_remove(*self._state, 0, slot)
        self._pending = -1

    def victim(self) -> int:
        if self._pending < 0:
            self._pending = int(_k.policy_victim(*self._state, 0))
        return self._pending

    def evict(self) -> int:
        self._pending = -1
        return int(_k.policy_evict(*self._state, 0))

    def _tracked(self, slot: int) -> bool:
        return bool(_k.policy_tracked(*self._state, 0, slot))

    def __len__(self) -> int:
        return int(self._state[3][_k.M_COUNT])

    def __contains__(self, slot: int) -> bool:
        return 0 <= slot < self.num_slots and self._tracked(int(slot))

    def order(self) -> list[int]:
        """Tracked slots: list policies oldest first (S3-FIFO small then main, ARC T1 then
        T2); heap policies in heap-array order. For checks and tests."""
        return _k.policy_order(*self._state, 0).tolist()

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The kernel arrays ``(I, K, F, M)`` (read them; mutate only through the methods)."""
        return self._state

    def check_invariants(self) -> None:
        code = int(_k.policy_check(*self._state, 0))
        assert code == 0, f"{self.name}: policy state failed consistency check #{code}"
        if self._pending >= 0:
            assert self._pending == _k.policy_victim(*self._state, 0), f"{self.name}: remembered victim is stale"
