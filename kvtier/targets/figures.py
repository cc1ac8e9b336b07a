"""The figures targets are built from: hardware.json by key path, and kvtier's own
assumptions (``kvtier/data/assumptions.json``) with their ranges and reasons.

``hardware.json`` is the research record (a copy of ``shared/data/hardware.json``) and is
never edited here. What kvtier assumes on top of it (a figure that is not published, the
plausible range of an estimate, a system's size) lives in ``assumptions.json``: per entry
``value``, ``low``, ``high`` (numbers, or null and named by ``value_from``/``low_from``/
``high_from`` key paths into hardware.json), ``per`` (what the numbers count),
``reason`` and ``sources`` (keys of hardware.json's ``meta.sources``).

A key path is dotted; inside a list of tiers, an entry is named by its ``name``:
``"targets.etched_sohu.tiers.hbm3e.read_bw_bytes_per_s"``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import NamedTuple

from kvtier._data import hardware_data


class Figure(NamedTuple):
    """One assumption, resolved: ``value`` (None when the entry has none), the range
    ``low``..``high`` (None when it has none), the reason and the source keys."""

    value: float | None
    low: float | None
    high: float | None
    reason: str
    sources: tuple[str, ...]


@functools.cache
def assumptions_data() -> dict:
    """The parsed ``assumptions.json`` (read once)."""
    text = resources.files("kvtier").joinpath("data/assumptions.json").read_text(encoding="utf-8")
    return json.loads(text)


def hardware_value(path: str):
    """The hardware.json value at dotted key ``path`` (list entries by their ``name``);
    ``KeyError`` naming the path when it is not there."""
    node = hardware_data()
    for key in path.split("."):
        if isinstance(node, list):
            node = next((x for x in node if isinstance(x, dict) and x.get("name") == key), None)
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            node = None
        if node is None:
            raise KeyError(f"hardware.json has no {path!r} (at {key!r})")
    return node


def _resolve(entry: dict, field: str):
    value = entry.get(field)
    if value is None and entry.get(f"{field}_from") is not None:
        value = hardware_value(entry[f"{field}_from"])
    return value


def assumption(*keys: str) -> Figure:
    """The entry at ``keys`` of ``assumptions.json`` (``assumption("latency_ranges", "hbm")``),
    its ``value``/``low``/``high`` resolved from hardware.json where they name a key path."""
    entry = assumptions_data()
    for key in keys:
        entry = entry[key]
    return Figure(
        value=_resolve(entry, "value"), low=_resolve(entry, "low"), high=_resolve(entry, "high"),
        reason=entry["reason"], sources=tuple(entry["sources"]),
    )


__all__ = ["Figure", "assumption", "assumptions_data", "hardware_value"]
