"""The replay's path for one ARC tier: ghosts that stay where they were.

ARC remembers up to ``c`` keys it recently evicted (its ghost lists B1 and B2) beside the
``c`` blocks it holds (T1 and T2). The list kernel (``kvtier._kernels.listreplay``) gives
a ghost an entry of its own, so every miss costs it three table updates: the oldest ghost
leaves, the victim's cell passes to a new ghost, the new block comes in. Here the ``2c +
2`` entries are all alike and an entry's list says what it is (``q``: 0 T1, 1 T2, 2 B1, 3
B2): a victim becomes a ghost where it stands, and a block whose ghost is hit takes the
ghost's entry back. The table then changes only when a ghost is forgotten and a new key
arrives, two updates on an ordinary miss and none on a ghost hit, and a key has one
entry, so one probe answers hit, ghost hit or miss.

The decisions are the list kernel's (and the store's ARC policy's) event for event: the
same adaptation of ``p``, the same choice of victim list and the same ghost trims (a test
replays random traces through both and compares every counter, hit and eviction). Links
are ``listreplay``'s (``lk[2e]`` older, ``lk[2e + 1]`` newer neighbour); sentinels
``P .. P + 3`` head T1, T2, B1, B2; forgotten entries form a stack linked by ``lk[2e + 1]``.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit
from kvtier._kernels.listreplay import (
    ARC,
    DEEP_PREFETCH_CELLS,
    DENSE_TABLE_CELLS,
    PREFETCH_AHEAD,
    TS_CAP,
    TS_KIND,
    _push,
    _t_delete,
    _t_home,
    _t_insert,
    _unlink,
    derive_counters,
)
from kvtier._kernels.prefetch import prefetch
from kvtier._kernels.replay import C_EVICTIONS, C_HITS, C_PREFIX_HITS, NUM_COUNTERS


def applies(ts_init, use_keys: bool) -> bool:
    """Whether ``ts_init`` (``listreplay``'s per-tier scalars) is one ARC tier that sees keys."""
    return bool(use_keys) and ts_init.shape[0] == 1 and int(ts_init[0, TS_KIND]) == ARC


@njit
def _entries(c):
    return 2 * c + 2


@njit
def _entry_bytes(P):
    return 8 * P + 8 * (P + 4) + P  # key, links (and the sentinels'), list


@njit
def _narrow(P):
    """Whether entry numbers fit 2-byte table cells (-1 marks an empty one)."""
    return P < (1 << 15) - 1


@njit
def table_cells(c, P):
    """Cells of the table for ``c`` blocks and ``P`` entries: the largest power of two that
    keeps the state within 64 bytes per block and at most 11 cells per entry (the list
    kernel's sparsest); at most 4 per entry once that outgrows half the L2 cache. Cells
    take 2 bytes while entry numbers fit (ARC of up to 16,382 blocks), else 4: the same
    budget then buys a table twice as sparse, which is what a miss's probes cost."""
    cell = 2 if _narrow(P) else 4
    budget = (64 * c - _entry_bytes(P)) // cell
    size = 16
    while size * 2 <= min(11 * P, budget):
        size *= 2
    if size * cell > 4 * DENSE_TABLE_CELLS:
        size = 16
        while size * 2 <= min(4 * P, budget):
            size *= 2
    return size


@njit
def state_bytes(ts_init):
    """Bytes ``arc_replay`` allocates (without the per-access ``record`` arrays)."""
    c = ts_init[0, TS_CAP]
    P = _entries(c)
    return _entry_bytes(P) + (2 if _narrow(P) else 4) * table_cells(c, P)


@njit
def arc_replay(offsets, hashes, ts_init, record):
    """Replay through one ARC tier of ``ts_init[0, TS_CAP]`` blocks; returns ``(counters,
    hit_tier, evictions_at)`` as ``kvtier._kernels.replay.replay_trace``."""
    c = ts_init[0, TS_CAP]
    P = _entries(c)
    lk = np.empty(2 * (P + 4), dtype=np.int32)
    for x in range(P, P + 4):
        lk[2 * x] = x
        lk[2 * x + 1] = x
    key = np.zeros(P, dtype=np.uint64)
    q = np.zeros(P, dtype=np.int8)
    size = table_cells(c, P)
    bits = 0
    while (1 << bits) < size:
        bits += 1
    counters = np.zeros((1, NUM_COUNTERS), dtype=np.int64)
    n = hashes.shape[0]
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, 1), dtype=np.int32)
    if _narrow(P):
        vals16 = np.full(size, -1, dtype=np.int16)
        _loop(offsets, hashes, c, P, vals16, 64 - bits, key, q, lk, counters, hit_tier, evictions_at, record)
    else:
        vals32 = np.full(size, -1, dtype=np.int32)
        _loop(offsets, hashes, c, P, vals32, 64 - bits, key, q, lk, counters, hit_tier, evictions_at, record)
    derive_counters(offsets, counters)
    return counters, hit_tier, evictions_at


@njit(_nrt=False, inline="always")
def _victim_list(t1, t2, p, ghost_hit):
    """ARC's REPLACE: 0 evicts from T1, 1 from T2 (``ghost_hit`` 2: the key was in B2)."""
    if (t1 > 0 and (t1 > p or (t1 == p and ghost_hit == 2))) or t2 == 0:
        return 0
    return 1


@njit(_nrt=False)
def _loop(offsets, hashes, c, P, vals, shift, key, q, lk, counters, hit_tier, evictions_at, record):
    S = P  # sentinels: S T1, S + 1 T2, S + 2 B1, S + 3 B2
    mask = vals.shape[0] - 1
    cf = float(c)
    p = 0.0
    t1 = 0
    t2 = 0
    b1 = 0
    b2 = 0
    free = -1
    used = 0
    hits = 0
    prefix_hits = 0
    evictions = 0
    n = hashes.shape[0]
    deep = vals.shape[0] * vals.itemsize > 4 * DEEP_PREFETCH_CELLS
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            if k + 2 * PREFETCH_AHEAD < n:
                prefetch(vals, _t_home(hashes[k + 2 * PREFETCH_AHEAD], shift))
            if deep and k + PREFETCH_AHEAD < n:
                x = vals[_t_home(hashes[k + PREFETCH_AHEAD], shift)]
                if x >= 0:
                    prefetch(key, x)
                    prefetch(lk, 2 * x)
            h = hashes[k]
            i = _t_home(h, shift)
            f = -1
            while True:
                x = vals[i]
                if x == -1:
                    break
                if key[x] == h:
                    f = x
                    break
                i = (i + 1) & mask
            qf = 0
            if f >= 0:
                qf = q[f]
                if qf < 2:  # a hit: to the front of T2
                    hits += 1
                    if prefix:
                        prefix_hits += 1
                    if record:
                        hit_tier[k] = 0
                    _unlink(lk, f)
                    _push(lk, S + 1, f)
                    if qf == 0:
                        q[f] = 1
                        t1 -= 1
                        t2 += 1
                    continue
            prefix = False
            if record:
                hit_tier[k] = -1
            ghost_hit = 0
            if f >= 0:  # a ghost: adapt p, and the block takes the ghost's entry back
                _unlink(lk, f)
                if qf == 2:
                    p = min(p + max(b2 / b1, 1.0), cf)
                    ghost_hit = 1
                    b1 -= 1
                else:
                    p = max(p - max(b1 / b2, 1.0), 0.0)
                    ghost_hit = 2
                    b2 -= 1
            if t1 + t2 >= c:
                ghost = True
                trim = -1
                if ghost_hit != 0:
                    lst = _victim_list(t1, t2, p, ghost_hit)
                elif t1 + b1 + 1 > c:
                    if b1 > 0:
                        lst = _victim_list(t1, t2, p, 0)
                        trim = 0
                    else:
                        lst = 0
                        ghost = False
                else:
                    lst = _victim_list(t1, t2, p, 0)
                    if t1 + b1 + t2 + b2 >= 2 * c and b2 > 0:
                        trim = 1
                if trim >= 0:  # forget the oldest ghost of B1 or B2
                    g = lk[2 * (S + 2 + trim) + 1]
                    _unlink(lk, g)
                    _t_delete(vals, shift, key, g)
                    if trim == 0:
                        b1 -= 1
                    else:
                        b2 -= 1
                    lk[2 * g + 1] = free
                    free = g
                    o = lk[2 * (S + 2 + trim) + 1]
                    if o < P:  # the next ghost to go: its table cell
                        prefetch(vals, _t_home(key[o], shift))
                s = lk[2 * (S + lst) + 1]
                _unlink(lk, s)
                if lst == 0:
                    t1 -= 1
                else:
                    t2 -= 1
                if ghost:  # the victim's entry stays, on B1 or B2
                    q[s] = 2 + lst
                    _push(lk, S + 2 + lst, s)
                    if lst == 0:
                        b1 += 1
                    else:
                        b2 += 1
                else:
                    _t_delete(vals, shift, key, s)
                    lk[2 * s + 1] = free
                    free = s
                o = lk[2 * (S + lst) + 1]
                prefetch(lk, 2 * lk[2 * o + 1])
                evictions += 1
                if record:
                    evictions_at[k, 0] = 1
            if f >= 0:
                e = f
            else:
                if free >= 0:
                    e = free
                    free = lk[2 * e + 1]
                else:
                    e = used
                    used += 1
                key[e] = h
                _t_insert(vals, shift, h, e)
            if ghost_hit != 0:
                q[e] = 1
                _push(lk, S + 1, e)
                t2 += 1
            else:
                q[e] = 0
                _push(lk, S, e)
                t1 += 1
    counters[0, C_HITS] = hits
    counters[0, C_PREFIX_HITS] = prefix_hits
    counters[0, C_EVICTIONS] = evictions
