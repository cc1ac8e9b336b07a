"""Access to the sourced figures kvtier ships (``kvtier/data/hardware.json``).

The file is the project's research record (a copy of ``shared/data/hardware.json``):
every hardware and model figure kvtier uses comes from it, with its source URL. It is
read once, lazily, and never written.
"""

from __future__ import annotations

import functools
import json
from importlib import resources


@functools.cache
def hardware_data() -> dict:
    """The parsed ``hardware.json``: keys ``meta``, ``targets``, ``generic_tiers``, ``models``..."""
    text = resources.files("kvtier").joinpath("data/hardware.json").read_text(encoding="utf-8")
    return json.loads(text)
