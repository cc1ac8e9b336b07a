"""Cost-aware (GDSF-style): keep the blocks whose recomputation costs most per byte held.

Each slot's value is ``H = L + count * cost``, where ``cost`` is the block's recompute
cost per byte (passed on insert and on each hit; all blocks of a tier have the same
size) and ``count`` its hits since insertion (1 on insert). The victim is the smallest
``H`` (ties: least recently used). Aging: on each eviction the clock ``L`` rises to the
victim's ``H``, so a block that stops being used is overtaken by newer ones and leaves
even if it was once expensive. Without a cost hint (``cost=1``) it is LFU with aging.
O(log n) per operation (indexed heap).
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class CostAware(KernelPolicy):
    name = "cost-aware"
    kind = _k.COST_AWARE
