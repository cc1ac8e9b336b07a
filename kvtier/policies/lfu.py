"""LFU: evict the slot with the fewest accesses since it was inserted.

Tie rule: among slots with the same count, the one used (inserted or hit) least recently
goes first. A slot's count starts at 1 on insert and is forgotten when it leaves. An
indexed binary heap keyed by (count, last-use stamp): O(log n) per operation.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class LFU(KernelPolicy):
    name = "lfu"
    kind = _k.LFU
