"""What a replay counts per tier: the columns of every replay kernel's ``counters[T, NUM_COUNTERS]``.

The general kernel (``kvtier._kernels.replay``) and the simulator count every column as
they go; the fast loops count hits, prefix hits, promotions and evictions and leave the
rest to ``derive_counters``, which follows from those in an exclusive chain.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit

C_HITS = 0
C_PREFIX_HITS = 1  # hits before the request's first miss: KV an engine can reuse
C_MISSES = 2  # accesses that looked in this tier and did not find the block
C_ADMITTED = 3  # blocks that entered this tier (miss, demotion or promotion)
C_EVICTIONS = 4
C_DEMOTIONS = 5
C_PROMOTIONS = 6  # hits here moved up to tier 0
C_DROPS = 7  # victims of the last tier (kept nowhere)
NUM_COUNTERS = 8


@njit(_nrt=False)
def derive_counters(offsets, counters):
    """Fill in the counters a fast replay loop leaves out: it counts hits, prefix hits,
    promotions and evictions per tier; misses, admissions, demotions and drops follow."""
    T = counters.shape[0]
    looked = offsets[-1] - offsets[0]  # accesses that looked in the tier
    for t in range(T):
        looked -= counters[t, C_HITS]
        counters[t, C_MISSES] = looked
        if t + 1 < T:
            counters[t, C_DEMOTIONS] = counters[t, C_EVICTIONS]
            counters[t + 1, C_ADMITTED] = counters[t, C_EVICTIONS]
        else:
            counters[t, C_DROPS] = counters[t, C_EVICTIONS]
    promoted = 0
    for t in range(T):
        promoted += counters[t, C_PROMOTIONS]
    counters[0, C_ADMITTED] = looked + promoted  # misses and promotions enter tier 0


@njit(_nrt=False)
def set_one_tier(counters, hits, prefix_hits, evictions):
    """Store a one-tier loop's counts (kept in locals while it runs) in ``counters``."""
    counters[0, C_HITS] = hits
    counters[0, C_PREFIX_HITS] = prefix_hits
    counters[0, C_EVICTIONS] = evictions
