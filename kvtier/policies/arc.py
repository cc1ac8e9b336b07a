"""ARC (Megiddo and Modha, FAST'03), as libCacheSim's ``ARC`` implements it.

T1 (seen once) and T2 (seen again) are LRU lists of resident slots; B1 and B2 are ghost
lists of keys evicted from them. ``prepare(key)`` finds a returning key in B1 (grow the
target ``p`` of T1 by max(|B2|/|B1|, 1)) or B2 (shrink it by max(|B1|/|B2|, 1)); ``p`` is
a float capped to [0, c]. A block whose key was a ghost enters T2, else T1; a hit moves
it to T2's newest end. Eviction (REPLACE): T1's oldest when T1 is non-empty and larger
than ``p`` (or equal to ``p`` for a B2 hit), or T2 is empty; else T2's oldest; the victim
joins B1 or B2. On a plain miss, first trim the ghosts: when |T1| + |B1| would exceed c,
drop B1's oldest (or, B1 being empty, evict T1's oldest without a ghost); else when all
four lists hold 2c, drop B2's oldest. Without keys the ghosts never hit.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class ARC(KernelPolicy):
    name = "arc"
    kind = _k.ARC
