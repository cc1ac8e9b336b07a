"""One registry of named entries: eviction policies, planners and hardware presets.

A ``Registry`` maps names to entries in registration order. ``register`` refuses a
second, different entry under a name already taken (registering the same entry again is
a no-op, so a module may be imported twice); ``get`` raises ``UnknownNameError`` naming
the valid choices; ``view`` is a read-only live mapping (``types.MappingProxyType``) that
modules export as their table (``POLICIES``, ``PLANNERS``), so callers may index, test
membership and iterate but never write past ``register``.

This module imports nothing from kvtier but its exceptions and checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.validation import check_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` (``"policy"``, ``"planner"``, ``"target"``) by name."""

    def __init__(self, kind: str) -> None:
        self.kind = check_name(kind, "Registry.kind")
        self._entries: dict[str, T] = {}
        self.view: Mapping[str, T] = MappingProxyType(self._entries)

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` and return it. ``ConfigError`` if ``name`` already
        holds a different entry."""
        check_name(name, f"{self.kind} name")
        held = self._entries.get(name)
        if held is not None and held is not entry:
            by = getattr(held, "__name__", repr(held))
            raise ConfigError(f"{self.kind} name {name!r} is already registered by {by}")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry under ``name``; ``UnknownNameError`` listing the names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"{self.kind}: got {name!r}, expected one of {sorted(self._entries)}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["Registry"]
