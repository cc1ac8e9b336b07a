"""The eviction-policy interface and the registry of policies by name.

A policy orders the *evictable* slots of one tier. It sees slot indices only: never a
payload byte, never a statistic. The tier calls ``insert`` when a slot starts holding a
block, ``access`` on a hit, ``remove`` when the block leaves (or is pinned: pinned blocks
leave the eviction order and come back through ``insert`` when the last pin goes), and
``victim`` to learn which slot it would evict. ``victim`` never mutates, so a caller can
ask, decide not to evict, and ask again. The shared loop (find, evict until room, insert)
lives in the tier, not in the policy, as in libCacheSim and cachetools.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from kvtier.errors import ConfigError, UnknownNameError


class EvictionPolicy(ABC):
    """Eviction order over the slots ``0 .. num_slots - 1`` of one tier."""

    #: Registry name (command line and ``TierSpec.policy``).
    name: ClassVar[str]

    def __init__(self, num_slots: int) -> None:
        if isinstance(num_slots, bool) or not isinstance(num_slots, int) or num_slots <= 0:
            raise ConfigError(f"num_slots: got {num_slots!r}, expected a positive integer")
        self.num_slots = num_slots

    @abstractmethod
    def insert(self, slot: int) -> None:
        """``slot`` (not tracked) becomes evictable, as a new or just-unpinned block."""

    @abstractmethod
    def access(self, slot: int) -> None:
        """``slot`` (tracked) was hit."""

    @abstractmethod
    def remove(self, slot: int) -> None:
        """``slot`` (tracked) stops being evictable: evicted, freed, moved or pinned."""

    @abstractmethod
    def victim(self) -> int:
        """The slot this policy would evict next, or -1 when it tracks none. Pure."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of tracked slots."""

    @abstractmethod
    def __contains__(self, slot: int) -> bool:
        """Whether ``slot`` is tracked."""

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the policy's internal state is inconsistent."""


POLICIES: dict[str, type[EvictionPolicy]] = {}


def register_policy(cls: type[EvictionPolicy]) -> type[EvictionPolicy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in POLICIES and POLICIES[cls.name] is not cls:
        raise ConfigError(f"policy name {cls.name!r} is already registered by {POLICIES[cls.name].__name__}")
    POLICIES[cls.name] = cls
    return cls


def make_policy(name: str, num_slots: int) -> EvictionPolicy:
    """A fresh policy by registry name; ``UnknownNameError`` names the valid choices."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise UnknownNameError(f"policy: got {name!r}, expected one of {sorted(POLICIES)}") from None
    return cls(num_slots)
