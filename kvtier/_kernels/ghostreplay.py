"""The replay's path for one tier of ARC or S3-FIFO: ghosts that stay where they were.

ARC and S3-FIFO remember keys they recently evicted (ARC up to ``c`` on its lists B1 and
B2, S3-FIFO up to its ghost capacity on one FIFO) beside the ``c`` blocks they hold. The
list kernel (``kvtier._kernels.listreplay``) gives a ghost an entry of its own, so a miss
costs it up to three table updates: the oldest ghost leaves, the victim's cell passes to
a new ghost, the new block comes in. Here all entries are alike and an entry's list says
what it is (``q``; ARC: 0 T1, 1 T2, 2 B1, 3 B2; S3-FIFO: 0 small, 1 main, 2 ghost): a
victim becomes a ghost where it stands, and a block whose ghost is hit takes the ghost's
entry back. The table then changes only when a key is forgotten (the oldest ghost, or a
victim not remembered) and when a new key arrives: an ordinary miss makes two updates, a
ghost hit at most one (ARC's: none). A key has one entry, so one probe answers hit, ghost
hit or miss. While entry numbers fit, table cells take 2 bytes, so the 64-byte budget
buys a table twice as sparse.

The decisions are the list kernel's (and the store's policies') event for event: ARC's
adaptation of ``p``, choice of victim list and ghost trims; S3-FIFO's small and main
queues, frequency bits and ghost FIFO (a test replays random traces through these kernels
and the general one and compares every counter, hit and eviction); both call the rules of
``kvtier._kernels.rules``. Lists are ``kvtier._kernels.links``' (``lk[2e]`` older,
``lk[2e + 1]`` newer neighbour); sentinels follow the ``P`` entries, one per list;
forgotten entries form a stack linked by ``lk[2e + 1]``.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import NUM_COUNTERS, derive_counters, set_one_tier
from kvtier._kernels.hashtable import ht_delete_entry, ht_home, ht_insert, ht_shift
from kvtier._kernels.jit import njit
from kvtier._kernels.links import link_init, push, unlink
from kvtier._kernels.listreplay import ARC, S3FIFO, TS_CAP, TS_GHOST_CAP, TS_KIND, TS_MAIN_CAP, TS_SMALL_CAP, TS_THRESH
from kvtier._kernels.prefetch import prefetch
from kvtier._kernels import rules
from kvtier._kernels.scan import DEEP_PREFETCH_CELLS, DENSE_TABLE_CELLS, hit, probe


def applies(ts_init, use_keys: bool) -> bool:
    """Whether ``ts_init`` (``listreplay``'s per-tier scalars) is one ARC or S3-FIFO tier
    that sees keys (without keys their ghosts never hit, and the list kernel runs them)."""
    return bool(use_keys) and ts_init.shape[0] == 1 and int(ts_init[0, TS_KIND]) in (ARC, S3FIFO)


@njit
def _layout(ts_init):
    """``(entries, lists, bytes per entry)``. ARC: ``2c`` entries (T1, T2, B1, B2: ARC keeps
    |T1| + |T2| + |B1| + |B2| <= 2c, and a miss frees or reuses an entry before it takes
    one) of key, links and list byte. S3-FIFO: ``c`` + ghost capacity (small, main, ghost),
    with a frequency byte more."""
    c = ts_init[0, TS_CAP]
    if ts_init[0, TS_KIND] == ARC:
        return 2 * c, 4, 17
    return c + ts_init[0, TS_GHOST_CAP], 3, 18


@njit
def _narrow(P):
    """Whether the entry numbers ``0 .. P - 1`` fit 2-byte table cells (-1 marks an empty one)."""
    return P <= (1 << 15) - 1


@njit
def table_cells(ts_init):
    """Cells of the table: the largest power of two that keeps the state within 64 bytes
    per block (from 16 blocks on) and at most 11 cells per entry (the list kernel's
    sparsest); at most 4 per entry once that outgrows half the L2 cache; always more cells
    than entries. Cells take 2 bytes while entry numbers fit (up to 32,767 entries: ARC of
    16,383 blocks, S3-FIFO of 17,246), else 4. Halving the cell buys a table twice as
    sparse within the same budget, and a sparse table is what makes a miss's probes cheap."""
    P, L, per_entry = _layout(ts_init)
    cell = 2 if _narrow(P) else 4
    budget = (64 * ts_init[0, TS_CAP] - per_entry * P - 8 * L) // cell
    size = 16
    while size * 2 <= min(11 * P, budget):
        size *= 2
    if size * cell > 4 * DENSE_TABLE_CELLS:
        size = 16
        while size * 2 <= min(4 * P, budget):
            size *= 2
    while size <= P:  # an empty cell ends every probe (tiny tiers outgrow the budget)
        size *= 2
    return size


@njit
def state_bytes(ts_init):
    """Bytes ``ghost_replay`` allocates (without the per-access ``record`` arrays)."""
    P, L, per_entry = _layout(ts_init)
    return per_entry * P + 8 * L + (2 if _narrow(P) else 4) * table_cells(ts_init)


@njit
def ghost_replay(offsets, hashes, ts_init, record):
    """Replay through one ARC or S3-FIFO tier (``ts_init``: ``listreplay``'s scalars for
    it); returns ``(counters, hit_tier, evictions_at)`` as
    ``kvtier._kernels.replay.replay_trace``."""
    P, L, _ = _layout(ts_init)
    lk = np.empty(2 * (P + L), dtype=np.int32)
    for x in range(P, P + L):
        link_init(lk, 0, x)
    key = np.zeros(P, dtype=np.uint64)
    q = np.zeros(P, dtype=np.int8)
    bit = np.zeros(P if ts_init[0, TS_KIND] == S3FIFO else 0, dtype=np.int8)
    size = table_cells(ts_init)
    counters = np.zeros((1, NUM_COUNTERS), dtype=np.int64)
    n = hashes.shape[0]
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, 1), dtype=np.int32)
    if _narrow(P):
        _run(offsets, hashes, ts_init[0], P, np.full(size, -1, dtype=np.int16), ht_shift(size), key, q, bit, lk,
             counters, hit_tier, evictions_at, record)
    else:
        _run(offsets, hashes, ts_init[0], P, np.full(size, -1, dtype=np.int32), ht_shift(size), key, q, bit, lk,
             counters, hit_tier, evictions_at, record)
    derive_counters(offsets, counters)
    return counters, hit_tier, evictions_at


@njit(_nrt=False, inline="always")
def _forget(vals, shift, key, lk, x, free):
    """Entry ``x`` (unlinked) leaves the table for the free stack; returns the new top."""
    ht_delete_entry(vals, 0, vals.shape[0], shift, key, 0, x)
    lk[2 * x + 1] = free
    return x


@njit(_nrt=False, inline="always")
def _new_entry(vals, shift, key, lk, h, free, used):
    """Enter key ``h`` on a free entry (the stack's top, else the next never used);
    returns ``(entry, free, used)``."""
    if free >= 0:
        e = free
        free = lk[2 * e + 1]
    else:
        e = used
        used += 1
    key[e] = h
    ht_insert(vals, 0, vals.shape[0], shift, h, e)
    return e, free, used


@njit(_nrt=False, inline="always")
def _arc_evict(S, c, p, ghost_hit, t1, t2, b1, b2, vals, shift, key, q, lk, free):
    """ARC makes room: the victim list's oldest leaves T1 or T2 and, remembered, turns ghost
    in place on B1 or B2 (the oldest ghost of the list ``arc_evict_case`` trims is
    forgotten first). Returns ``(free, t1, t2, b1, b2)``."""
    lst, trim, ghost = rules.arc_evict_case(t1, t2, b1, b2, c, p, ghost_hit)
    if trim >= 0:  # forget the oldest ghost of B1 or B2
        g = lk[2 * (S + 2 + trim) + 1]
        unlink(lk, 0, g)
        free = _forget(vals, shift, key, lk, g, free)
        if trim == 0:
            b1 -= 1
        else:
            b2 -= 1
        o = lk[2 * (S + 2 + trim) + 1]
        if o < S:  # the next ghost to go: its table cell
            prefetch(vals, ht_home(key[o], shift))
    s = lk[2 * (S + lst) + 1]
    unlink(lk, 0, s)
    if lst == 0:
        t1 -= 1
    else:
        t2 -= 1
    if ghost:  # the victim's entry stays, on B1 or B2
        q[s] = 2 + lst
        push(lk, 0, S + 2 + lst, s)
        if lst == 0:
            b1 += 1
        else:
            b2 += 1
    else:
        free = _forget(vals, shift, key, lk, s, free)
    o = lk[2 * (S + lst) + 1]
    prefetch(lk, 2 * lk[2 * o + 1])
    return free, t1, t2, b1, b2


@njit(_nrt=False, inline="always")
def _s3_evict(S, main_cap, thresh, ghost_cap, small, main, ghosts, vals, shift, key, q, bit, lk, free):
    """S3-FIFO makes room: small's oldest moves to main if it was used often enough, else it
    leaves and turns ghost in place (the oldest ghost forgotten when the ghost FIFO is
    full); when small runs dry, or main is over its share, main gives the victim.
    Returns ``(free, small, main, ghosts)``."""
    s = -1
    if not rules.s3_evicts_from_main(small, main, main_cap):
        s, moved = rules.s3_small_victim(lk, 0, S, S + 1, bit, 0, q, 0, small, thresh)
        small -= moved
        main += moved
        if s >= 0:
            small -= 1
            if ghost_cap > 0:
                if ghosts >= ghost_cap:  # forget the oldest ghost
                    g = lk[2 * (S + 2) + 1]
                    unlink(lk, 0, g)
                    free = _forget(vals, shift, key, lk, g, free)
                    ghosts -= 1
                q[s] = 2
                push(lk, 0, S + 2, s)
                ghosts += 1
            else:
                free = _forget(vals, shift, key, lk, s, free)
    if s < 0:
        s = rules.s3_main_victim(lk, 0, S + 1, bit, 0)
        main -= 1
        free = _forget(vals, shift, key, lk, s, free)
    return free, small, main, ghosts


@njit(_nrt=False)
def _run(offsets, hashes, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record):
    if ts[TS_KIND] == ARC:
        _arc_loop(offsets, hashes, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record)
    else:
        _s3fifo_loop(offsets, hashes, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record)


@njit(_nrt=False)
def _arc_loop(offsets, hashes, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record):
    _loop(offsets, hashes, True, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record)


@njit(_nrt=False)
def _s3fifo_loop(offsets, hashes, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record):
    _loop(offsets, hashes, False, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record)


@njit(_nrt=False, inline="always")
def _loop(offsets, hashes, arc, ts, P, vals, shift, key, q, bit, lk, counters, hit_tier, evictions_at, record):
    """The replay (inlined into ``_arc_loop`` and ``_s3fifo_loop``, so ``arc`` is a constant
    there and each compiles only its own branches). A hit moves to the front of T2 (ARC) or
    counts (S3-FIFO); a miss makes room if the tier is full and enters, on its ghost's entry
    if it has one: ARC's T1, or T2 after a ghost hit; S3-FIFO's queue by ``s3_insert_queue``. Counts in locals: ``q0``,
    ``q1`` the resident lists (T1, T2 / small, main), ``g0``, ``g1`` the ghost lists (B1,
    B2 / the ghost FIFO)."""
    S = P  # sentinels. ARC: S T1, S + 1 T2, S + 2 B1, S + 3 B2. S3-FIFO: S small, S + 1 main, S + 2 ghost
    c = ts[TS_CAP]
    p = 0.0  # ARC's target size of T1
    q0, q1, g0, g1 = 0, 0, 0, 0
    has_evicted = False
    free, used = -1, 0
    hits, prefix_hits, evictions = 0, 0, 0
    deep = vals.shape[0] * vals.itemsize > 4 * DEEP_PREFETCH_CELLS
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            h, f = probe(hashes, k, vals, shift, key, lk, q, deep)
            qf = q[f] if f >= 0 else 0
            if f >= 0 and qf < 2:  # a hit
                hits, prefix_hits = hit(hits, prefix_hits, prefix, hit_tier, k, 0, record)
                if not arc:
                    bit[f] = rules.s3_hit(bit[f])
                    continue
                unlink(lk, 0, f)
                push(lk, 0, S + 1, f)
                if qf == 0:
                    q[f] = 1
                    q0 -= 1
                    q1 += 1
                continue
            prefix = False
            if record:
                hit_tier[k] = -1
            ghost_hit = 0  # ARC: 1 the key was on B1, 2 on B2
            if f >= 0:  # a ghost: it leaves its list, and the block takes its entry back
                unlink(lk, 0, f)
                if arc:
                    p = rules.arc_adapt(p, g0, g1, float(c), qf == 2)
                    ghost_hit = qf - 1
                if qf == 2:
                    g0 -= 1
                else:
                    g1 -= 1
            if q0 + q1 >= c:
                if arc:
                    free, q0, q1, g0, g1 = _arc_evict(S, c, p, ghost_hit, q0, q1, g0, g1, vals, shift, key, q, lk,
                                                      free)
                else:
                    has_evicted = True
                    free, q0, q1, g0 = _s3_evict(S, ts[TS_MAIN_CAP], ts[TS_THRESH], ts[TS_GHOST_CAP], q0, q1, g0,
                                                 vals, shift, key, q, bit, lk, free)
                evictions += 1
                if record:
                    evictions_at[k, 0] = 1
            if f >= 0:
                e = f
            else:
                e, free, used = _new_entry(vals, shift, key, lk, h, free, used)
            if arc:
                kk = 1 if ghost_hit != 0 else 0
            else:
                kk = rules.s3_insert_queue(f >= 0, has_evicted, q0, ts[TS_SMALL_CAP])
                bit[e] = 0
            q[e] = kk
            push(lk, 0, S + kk, e)
            if kk == 0:
                q0 += 1
            else:
                q1 += 1
    set_one_tier(counters, hits, prefix_hits, evictions)
