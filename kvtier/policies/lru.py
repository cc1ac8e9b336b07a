"""LRU: evict the least recently inserted-or-hit slot (a doubly linked list, O(1))."""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class LRU(KernelPolicy):
    """Least recently used. Matches libCacheSim's ``LRU`` miss for miss."""

    name = "lru"
    kind = _k.LRU
