"""Lazy exports for a package ``__init__`` (PEP 562): names that load from their module
when first used, so that importing a light part of a package does not load a heavy one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(namespace: dict, table: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose globals are ``namespace``:
    a name in ``table`` imports its module (``table[name]``) on first access and is then
    kept in ``namespace``; any other missing name is an ``AttributeError``."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        try:
            module = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
