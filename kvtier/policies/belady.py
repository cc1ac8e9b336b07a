"""Belady / OPT: evict the block whose next use is furthest in the future.

Offline: every insert and hit passes ``next_use``, the index of the block's next access in
the trace (``None``: never again). Every miss is admitted (demand paging, as libCacheSim's
``Belady``), so with one tier no online policy that admits every miss gets more hits. Ties
(blocks never used again) go to the least recently used. O(log n) per operation.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class Belady(KernelPolicy):
    name = "belady"
    kind = _k.BELADY
