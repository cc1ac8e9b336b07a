"""FIFO: evict the slot inserted longest ago; a hit changes nothing. O(1)."""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class FIFO(KernelPolicy):
    """First in, first out. Matches libCacheSim's ``FIFO``."""

    name = "fifo"
    kind = _k.FIFO
