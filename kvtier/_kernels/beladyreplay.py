"""The replay's Belady path: one tier, evicting the block whose next use is furthest away.

The general kernel (``kvtier._kernels.replay``) runs Belady as a heap policy over float
priorities behind a kind dispatch; this one orders the slots in the kernels' heap
(``kvtier._kernels.heap``) by one packed int64 key, negated so that the top is the
furthest next use: ``-(next_use << 32 | (2**32 - 1 - stamp))`` (among equal next uses,
blocks never used again, the least recently stamped first). A miss in a full tier replaces
the top (the victim) by the new block and sifts it down once. Decisions, and so every
counter, equal the general kernel's: ties fall only among blocks never used again, and
which of those leaves changes no later hit. Blocks are found through the kernels' table
(``kvtier._kernels.hashtable``).
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import NUM_COUNTERS, derive_counters, set_one_tier
from kvtier._kernels.hashtable import ht_home, ht_probe, ht_rekey, ht_shift
from kvtier._kernels.heap import heap_push, heap_sift_down, heap_sift_up
from kvtier._kernels.jit import njit
from kvtier._kernels.prefetch import prefetch
from kvtier._kernels.scan import PREFETCH_AHEAD, hit

_LOW = (1 << 32) - 1

#: Longest trace this kernel packs (next uses and stamps in 31 and 32 bits).
MAX_ACCESSES = (1 << 31) - 2


@njit
def table_cells(cap):
    """The largest power of two of cells <= 8 per slot (at most 1/4 full)."""
    size = 16
    while size * 2 <= 8 * cap:
        size *= 2
    return size


def state_bytes(cap: int, accesses: int) -> tuple[int, int]:
    """``(bytes per slot in all, bytes per access)`` ``belady_replay`` and its caller use:
    key 8, heap key 8, heap slot 4, heap position 4 and the table per slot; the dense id
    (4) and next use (8) per access."""
    return 24 * cap + 4 * int(table_cells(cap)), 12 * accesses


@njit
def belady_replay(offsets, hashes, next_use, cap, never, record):
    """One tier of ``cap`` slots under Belady; ``next_use[k]``: the index of access
    ``k``'s block's next access, or ``never``. Returns ``(counters, hit_tier,
    evictions_at)`` as ``kvtier._kernels.replay.replay_trace`` does (one tier)."""
    n = hashes.shape[0]
    size = table_cells(cap)
    vals = np.full(size, -1, dtype=np.int32)
    key = np.zeros(cap, dtype=np.uint64)
    hkey = np.zeros(cap, dtype=np.int64)
    hslot = np.zeros(cap, dtype=np.int32)
    pos = np.zeros(cap, dtype=np.int32)
    counters = np.zeros((1, NUM_COUNTERS), dtype=np.int64)
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, 1), dtype=np.int32)
    _loop(offsets, hashes, next_use, cap, never, vals, ht_shift(size), key, hkey, hslot, pos, counters, hit_tier,
          evictions_at, record)
    return counters, hit_tier, evictions_at


@njit(_nrt=False)
def _loop(offsets, hashes, next_use, cap, never, vals, shift, key, hkey, hslot, pos, counters, hit_tier,
          evictions_at, record):
    n = hashes.shape[0]
    last = n  # the next use of a block never used again: after every real one
    count = 0
    hits = 0
    prefix_hits = 0
    evictions = 0
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            if k + PREFETCH_AHEAD < n:
                prefetch(vals, ht_home(hashes[k + PREFETCH_AHEAD], shift))
            h = hashes[k]
            nu = next_use[k]
            # Negated: the min-heap's top is the furthest next use.
            prio = -(((last if nu == never else nu) << 32) | (_LOW - k))
            i = ht_probe(vals, 0, vals.shape[0], shift, key, 0, h)
            s = vals[i]
            if s >= 0:
                hits, prefix_hits = hit(hits, prefix_hits, prefix, hit_tier, k, 0, record)
                p = pos[s]
                hkey[p] = prio  # a later next use, a smaller negated key: it can only rise
                heap_sift_up(hslot, 0, pos, 0, hkey, 0, hkey, 0, p)
                continue
            prefix = False
            if record:
                hit_tier[k] = -1
            if count < cap:
                s = count
                key[s] = h
                vals[i] = s
                heap_push(hslot, 0, pos, 0, hkey, 0, hkey, 0, count, s, prio, prio)
                count += 1
                continue
            s = hslot[0]  # the victim: the furthest next use
            evictions += 1
            if record:
                evictions_at[k, 0] = 1
            ht_rekey(vals, 0, vals.shape[0], shift, key, 0, s, h)
            hkey[0] = prio
            heap_sift_down(hslot, 0, pos, 0, hkey, 0, hkey, 0, 0, count)
    set_one_tier(counters, hits, prefix_hits, evictions)
    derive_counters(offsets, counters)
