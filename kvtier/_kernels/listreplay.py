"""The replay's fast path: a chain of tiers whose policies are all list policies.

For LRU, FIFO, CLOCK, SIEVE, S3-FIFO and ARC the order of a tier's blocks is all that
matters, never which slot holds them, so this kernel gives every resident block one
*entry* for as long as it stays in the chain: a demotion or a promotion moves the entry
from one tier's lists to another's and touches no table. One open-addressing table
(4-byte cells, linear probing, deletion by shifting back) maps a block hash to its
entries: the resident one and, for ARC and S3-FIFO, at most one ghost per tier (a ghost
is an entry too, in its tier's range, on its tier's ghost lists), so the lookup an access
does anyway also finds the first tier's ghost, and ghosts cost no second table. When a
victim leaves the chain and is remembered, its ghost takes its table cell; a returning
ghost's cell passes to the new block.

The decisions are ``kvtier._kernels.replay``'s (and so the store's), event for event:
each tier's policy sees prepare, evict, insert in the same order, with the same list
rules as ``kvtier._kernels.policy`` (a test replays random traces through both kernels
and compares every counter, hit and eviction). Layout:

* entries ``0 .. R - 1`` resident (``R``: the tiers' total slots), then each ghost tier's
  range ``TS_GLO .. TS_GHI - 1``, then one scratch entry; ``key[e]``; ``tier[e]`` of a
  resident entry; ``q[e]`` its list (S3-FIFO small/main, ARC T1/T2; a ghost's B1/B2);
  ``bit[e]`` (CLOCK/SIEVE reference, S3-FIFO hit count);
* ``lk`` links entries into circular doubly linked lists, an entry's two links side by
  side (one cache line): ``lk[2e]`` its older neighbour, ``lk[2e + 1]`` its newer one.
  Sentinels are ``E + 4t + j`` (``E``: entries): ``j`` = 0, 1 resident lists, 2, 3 ghost
  lists; a sentinel's newer neighbour is its list's oldest member, its older one the
  newest. Free ghost entries are a stack linked by ``lk[2e + 1]``;
* per tier ``ts[t, TS_*]`` int64 scalars and ``arc_p[t]``;
* the table ``vals``: a power of two of cells, at most 2/11 full (with ghosts 4/7, so
  that S3-FIFO and ARC stay within 64 bytes per resident block), short probe runs being
  what makes a miss cheap; at most 1/2 full once that would outgrow half the L2 cache,
  where fewer cache misses are worth more than shorter runs. Cells are prefetched ahead
  of the accesses that read them, and for large tables the entries they name too;
* one tier of LRU, FIFO, CLOCK or SIEVE runs a shorter path (no chain, no ghosts, counters
  in locals), and a chain of them a shorter admission (``_admit_plain``).

Everything but ``_ghost_drop_oldest`` is inlined into one loop (numba's
``inline="always"``): a call that passes this many arrays costs more than the work it
does. (Inlining that one too gained nothing measurable and made the compile much longer.)
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import C_EVICTIONS, C_HITS, C_PREFIX_HITS, C_PROMOTIONS, NUM_COUNTERS, derive_counters
from kvtier._kernels.counters import set_one_tier
from kvtier._kernels.hashtable import (
    ht_delete_entry,
    ht_find_in,
    ht_home,
    ht_insert,
    ht_rekey,
    ht_replace,
    ht_shift,
)
from kvtier._kernels.jit import njit
from kvtier._kernels.links import link_init, push, unlink
from kvtier._kernels.policy import ARC, CLOCK, FIFO, LRU, S3FIFO, SIEVE
from kvtier._kernels.prefetch import prefetch
from kvtier._kernels import rules
from kvtier._kernels.scan import DEEP_PREFETCH_CELLS, prefetch_ahead, table_cells

#: Policy kinds this kernel runs.
LIST_KINDS = (LRU, FIFO, CLOCK, SIEVE, S3FIFO, ARC)

# Per-tier scalars (columns of ``ts``).
TS_KIND = 0
TS_CAP = 1
TS_COUNT = 2
TS_Q0 = 3  # S3-FIFO small / ARC T1 members
TS_Q1 = 4  # S3-FIFO main / ARC T2 members
TS_SMALL_CAP = 5
TS_MAIN_CAP = 6
TS_THRESH = 7
TS_GHOST_CAP = 8  # S3-FIFO ghost capacity
TS_HAS_EVICTED = 9
TS_GHOST_HIT = 10  # set by prepare: S3-FIFO 1; ARC 1 = in B1, 2 = in B2
TS_HAND = 11  # SIEVE
TS_G0 = 12  # ghost list 0 members (S3-FIFO ghost / ARC B1)
TS_G1 = 13  # ARC B2
TS_GFREE = 14  # top of the tier's stack of free ghost entries, or -1
TS_GLO = 15  # the tier's ghost entries: TS_GLO .. TS_GHI - 1
TS_GHI = 16
TS_HEAD = 17  # the tier's first sentinel
TS_RELABELED = 18  # the victim's table cell went to its ghost (the victim is dropped)
TS_SIZE = 19


# -- ghosts -----------------------------------------------------------------------------


@njit(_nrt=False, inline="always")
def _ghost_free(ts, t, g, q, lk):
    """Ghost entry ``g`` leaves its list for tier ``t``'s free stack (its cell is the caller's)."""
    unlink(lk, 0, g)
    ts[t, TS_G0 + q[g]] -= 1
    lk[2 * g + 1] = ts[t, TS_GFREE]
    ts[t, TS_GFREE] = g


@njit(_nrt=False, inline="always")
def _ghost_take(ts, t, g, vals, shift, key, q, lk):
    """Forget ghost entry ``g`` of tier ``t``."""
    ht_delete_entry(vals, 0, vals.shape[0], shift, key, 0, g)
    _ghost_free(ts, t, g, q, lk)


@njit(_nrt=False)
def _ghost_drop_oldest(ts, t, lst, vals, shift, key, q, lk):
    head = ts[t, TS_HEAD] + 2 + lst
    g = lk[2 * head + 1]
    if g != head:
        _ghost_take(ts, t, g, vals, shift, key, q, lk)


@njit(_nrt=False, inline="always")
def _ghost_add(ts, t, lst, s, drop, vals, shift, key, q, lk):
    """Remember the key of ``s``, just evicted from tier ``t``, on ghost list ``lst``.

    A key has no ghost in a tier while it is resident there (admission takes it), so no
    older ghost of it is looked for. ``drop``: ``s`` leaves the chain, and its table cell
    passes to the ghost (``TS_RELABELED`` tells the caller not to delete it)."""
    if ts[t, TS_GHI] == ts[t, TS_GLO]:
        return
    if ts[t, TS_GFREE] < 0:
        # Pool exhausted (only after removals the policy did not see): forget the oldest.
        _ghost_drop_oldest(ts, t, 1 if ts[t, TS_G1] > 0 else 0, vals, shift, key, q, lk)
    g = ts[t, TS_GFREE]
    ts[t, TS_GFREE] = lk[2 * g + 1]
    key[g] = key[s]
    q[g] = lst
    push(lk, 0, ts[t, TS_HEAD] + 2 + lst, g)
    ts[t, TS_G0 + lst] += 1
    if drop:
        ht_replace(vals, 0, vals.shape[0], shift, key, 0, s, g)
        ts[t, TS_RELABELED] = 1
    else:
        ht_insert(vals, 0, vals.shape[0], shift, key[g], g)


# -- policy operations on tier t --------------------------------------------------------


@njit(_nrt=False, inline="always")
def _prepare(ts, arc_p, t, g, cell, vals, shift, key, q, lk):
    """Tier ``t`` is about to admit a block whose ghost entry there is ``g`` (or -1).
    ``cell`` >= 0: the ghost's table cell, which passes to the scratch entry (a new block
    not yet in the table); else the ghost's cell is deleted."""
    kind = ts[t, TS_KIND]
    ts[t, TS_GHOST_HIT] = 0
    if g < 0:
        return
    if kind == S3FIFO:
        ts[t, TS_GHOST_HIT] = 1
    else:
        arc_p[t] = rules.arc_adapt(arc_p[t], ts[t, TS_G0], ts[t, TS_G1], float(ts[t, TS_CAP]), q[g] == 0)
        ts[t, TS_GHOST_HIT] = 1 if q[g] == 0 else 2
    if cell >= 0:
        vals[cell] = key.shape[0] - 1
        _ghost_free(ts, t, g, q, lk)
    else:
        _ghost_take(ts, t, g, vals, shift, key, q, lk)


@njit(_nrt=False, inline="always")
def _insert(ts, t, e, q, bit, lk):
    kind = ts[t, TS_KIND]
    head = ts[t, TS_HEAD]
    ts[t, TS_COUNT] += 1
    if kind == S3FIFO:
        k = rules.s3_insert_queue(ts[t, TS_GHOST_HIT] != 0, ts[t, TS_HAS_EVICTED] != 0, ts[t, TS_Q0], ts[t, TS_SMALL_CAP])
        ts[t, TS_GHOST_HIT] = 0
        push(lk, 0, head + k, e)
        q[e] = k
        bit[e] = 0
        ts[t, TS_Q0 + k] += 1
    elif kind == ARC:
        k = 1 if ts[t, TS_GHOST_HIT] != 0 else 0
        ts[t, TS_GHOST_HIT] = 0
        push(lk, 0, head + k, e)
        q[e] = k
        ts[t, TS_Q0 + k] += 1
    else:
        _place(kind, head, e, bit, lk)


@njit(_nrt=False, inline="always")
def _place(kind, head, e, bit, lk):
    """Insert for LRU, FIFO, CLOCK and SIEVE (list at sentinel ``head``)."""
    push(lk, 0, head, e)
    if kind != LRU:
        bit[e] = 0


@njit(_nrt=False, inline="always")
def _touch(kind, head, e, bit, lk):
    """Access for LRU, FIFO, CLOCK and SIEVE."""
    if kind == LRU:
        unlink(lk, 0, e)
        push(lk, 0, head, e)
    elif kind == CLOCK or kind == SIEVE:
        bit[e] = 1
    # FIFO: a hit changes nothing


@njit(_nrt=False, inline="always")
def _access(ts, t, e, q, bit, lk):
    kind = ts[t, TS_KIND]
    if kind == S3FIFO:
        bit[e] = rules.s3_hit(bit[e])
    elif kind == ARC:
        unlink(lk, 0, e)
        push(lk, 0, ts[t, TS_HEAD] + 1, e)
        if q[e] == 0:
            q[e] = 1
            ts[t, TS_Q0] -= 1
            ts[t, TS_Q1] += 1
    else:
        _touch(kind, ts[t, TS_HEAD], e, bit, lk)


@njit(_nrt=False, inline="always")
def _remove(ts, t, e, q, lk):
    """``e`` leaves tier ``t`` without being evicted (a promotion)."""
    kind = ts[t, TS_KIND]
    ts[t, TS_COUNT] -= 1
    if kind == SIEVE and e == ts[t, TS_HAND]:
        h = lk[2 * e + 1]
        ts[t, TS_HAND] = -1 if h == ts[t, TS_HEAD] else h
    elif kind == S3FIFO or kind == ARC:
        ts[t, TS_Q0 + q[e]] -= 1
    unlink(lk, 0, e)


@njit(_nrt=False, inline="always")
def _s3_evict(ts, t, drop, vals, shift, key, q, bit, lk):
    head = ts[t, TS_HEAD]
    ts[t, TS_HAS_EVICTED] = 1
    if not rules.s3_evicts_from_main(ts[t, TS_Q0], ts[t, TS_Q1], ts[t, TS_MAIN_CAP]):
        s, moved = rules.s3_small_victim(lk, 0, head, head + 1, bit, 0, q, 0, ts[t, TS_Q0], ts[t, TS_THRESH])
        ts[t, TS_Q0] -= moved
        ts[t, TS_Q1] += moved
        if s >= 0:
            ts[t, TS_Q0] -= 1
            if ts[t, TS_GHOST_CAP] > 0:
                if ts[t, TS_G0] >= ts[t, TS_GHOST_CAP]:
                    _ghost_drop_oldest(ts, t, 0, vals, shift, key, q, lk)
                _ghost_add(ts, t, 0, s, drop, vals, shift, key, q, lk)
            return s
    ts[t, TS_Q1] -= 1
    return rules.s3_main_victim(lk, 0, head + 1, bit, 0)


@njit(_nrt=False, inline="always")
def _arc_evict(ts, arc_p, t, drop, vals, shift, key, q, lk):
    lst, trim, ghost = rules.arc_evict_case(ts[t, TS_Q0], ts[t, TS_Q1], ts[t, TS_G0], ts[t, TS_G1], ts[t, TS_CAP],
                                      arc_p[t], ts[t, TS_GHOST_HIT])
    if trim >= 0:
        _ghost_drop_oldest(ts, t, trim, vals, shift, key, q, lk)
    s = lk[2 * (ts[t, TS_HEAD] + lst) + 1]
    unlink(lk, 0, s)
    ts[t, TS_Q0 + lst] -= 1
    if ghost:
        _ghost_add(ts, t, lst, s, drop, vals, shift, key, q, lk)
    return s


@njit(_nrt=False, inline="always")
def _evict_plain(ts, t, kind, head, vals, shift, key, bit, lk):
    """The victim of a tier of LRU, FIFO, CLOCK or SIEVE (sentinel ``head``), unlinked."""
    if kind == CLOCK:
        s = rules.clock_victim(lk, 0, head, bit, 0)
    elif kind == SIEVE:
        s, ts[t, TS_HAND] = rules.sieve_victim(lk, 0, head, bit, 0, ts[t, TS_HAND])
    else:
        s = lk[2 * head + 1]
    unlink(lk, 0, s)
    # Walk the prefetches up the list: the next victim's links and key came with the last
    # eviction; now its table cell (for a drop), and the links and key of the one after.
    o = lk[2 * head + 1]
    if o != head:
        prefetch(vals, ht_home(key[o], shift))
        o2 = lk[2 * o + 1]
        prefetch(lk, 2 * o2)
        prefetch(key, o2)
    return s


@njit(_nrt=False, inline="always")
def _evict(ts, arc_p, t, drop, vals, shift, key, q, bit, lk):
    """Evict tier ``t``'s victim (the tier is full, so it has one); returns its entry.
    ``drop``: the victim leaves the chain (``t`` is the last tier)."""
    kind = ts[t, TS_KIND]
    ts[t, TS_COUNT] -= 1
    if kind == S3FIFO:
        return _s3_evict(ts, t, drop, vals, shift, key, q, bit, lk)
    if kind == ARC:
        return _arc_evict(ts, arc_p, t, drop, vals, shift, key, q, lk)
    return _evict_plain(ts, t, kind, ts[t, TS_HEAD], vals, shift, key, bit, lk)


# -- the replay -------------------------------------------------------------------------


@njit
def ghost_pool(ts, t, use_keys):
    """Ghost entries tier ``t`` keeps: S3-FIFO its ghost capacity, ARC ``c + 2`` (B1 and B2
    hold at most ``c`` keys; two spare for removals ARC does not see)."""
    if use_keys and ts[t, TS_KIND] == S3FIFO:
        return ts[t, TS_GHOST_CAP]
    if use_keys and ts[t, TS_KIND] == ARC:
        return ts[t, TS_CAP] + 2
    return 0


@njit
def state_bytes(ts_init, use_keys):
    """Bytes ``list_replay`` allocates for the tiers of ``ts_init`` (without the per-access
    ``record`` arrays): keys, links, tier/list/bit bytes and the table."""
    T = ts_init.shape[0]
    R = 0
    E = 0
    for t in range(T):
        R += ts_init[t, TS_CAP]
        E += ts_init[t, TS_CAP] + ghost_pool(ts_init, t, use_keys)
    return 8 * (E + 1) + 8 * (E + 4 * T) + R + E + R + 4 * table_cells(R, E) + 8 * T * (TS_SIZE + 1)


@njit
def list_replay(offsets, hashes, ts_init, promote, record, use_keys):
    """Replay every request's blocks through the tiers described by ``ts_init``
    (int64[T, TS_SIZE]: kind, capacity and S3-FIFO parameters filled in; the rest is
    set here). ``use_keys`` False: policies see no keys, so ghosts never hit.

    Returns ``(counters, hit_tier, evictions_at)`` as ``kvtier._kernels.replay.replay_trace``.
    """
    T = ts_init.shape[0]
    ts = ts_init.copy()
    R = 0
    for t in range(T):
        R += ts[t, TS_CAP]
    E = R
    for t in range(T):
        pool = ghost_pool(ts, t, use_keys)
        ts[t, TS_GLO] = E
        ts[t, TS_GHI] = E + pool
        E += pool
    lk = np.empty(2 * (E + 4 * T), dtype=np.int32)
    for x in range(E, E + 4 * T):
        link_init(lk, 0, x)
    for t in range(T):
        ts[t, TS_HAND] = -1
        ts[t, TS_HEAD] = E + 4 * t
        ts[t, TS_GFREE] = -1
        for g in range(ts[t, TS_GHI] - 1, ts[t, TS_GLO] - 1, -1):
            lk[2 * g + 1] = ts[t, TS_GFREE]
            ts[t, TS_GFREE] = g
    key = np.zeros(E + 1, dtype=np.uint64)  # entry E: scratch for a new block's key
    tier = np.zeros(R, dtype=np.int8)
    q = np.zeros(E, dtype=np.int8)
    bit = np.zeros(R, dtype=np.int8)
    size = table_cells(R, E)
    vals = np.full(size, -1, dtype=np.int32)
    arc_p = np.zeros(T, dtype=np.float64)
    counters = np.zeros((T, NUM_COUNTERS), dtype=np.int64)
    n = hashes.shape[0]
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, T), dtype=np.int32)
    _loop(offsets, hashes, ts, arc_p, T, R, vals, ht_shift(size), key, tier, q, bit, lk, counters, hit_tier,
          evictions_at, promote, record, use_keys)
    derive_counters(offsets, counters)
    return counters, hit_tier, evictions_at


@njit(_nrt=False, inline="always")
def _admit(ts, arc_p, T, R, e, h, vals, shift, key, tier, q, bit, lk, used, counters, evictions_at, k,
           record, use_keys, g0, g0_cell):
    """Admit block ``h`` to tier 0, demoting victims down the chain: entry ``e`` (a
    promotion: the block is in the table), or -1 (a miss: the block takes the next unused
    entry or, every entry being used, the one the last tier drops, and enters the table
    once the chain has settled). ``g0``: tier 0's ghost of ``h`` or -1, at table cell
    ``g0_cell`` (a miss) or -1. Returns the number of entries used after.

    Entries are never freed otherwise: a block is dropped only when every tier on its way
    down was full, and then every entry is in use."""
    new = e < 0
    if new and used < R:
        e = used
        used += 1
        key[e] = h
    scratch = key.shape[0] - 1
    pending = False  # the new block's cell holds the scratch entry (its ghost's old cell)
    t = 0
    x = e  # -1: the new block, until the dropped entry is known
    g = g0
    while True:
        kind = ts[t, TS_KIND]
        if kind == S3FIFO or kind == ARC:
            cell = -1
            if t == 0:
                if new and g >= 0:
                    key[scratch] = h
                    cell = g0_cell
                    pending = True
            elif use_keys:
                g = ht_find_in(vals, 0, vals.shape[0], shift, key, 0, key[x], ts[t, TS_GLO], ts[t, TS_GHI])
            _prepare(ts, arc_p, t, g, cell, vals, shift, key, q, lk)
        last = t + 1 == T
        v = -1
        if ts[t, TS_COUNT] >= ts[t, TS_CAP]:
            v = _evict(ts, arc_p, t, last, vals, shift, key, q, bit, lk)
            counters[t, C_EVICTIONS] += 1
            if record:
                evictions_at[k, t] += 1
        if x >= 0:
            tier[x] = t
            _insert(ts, t, x, q, bit, lk)
        if v < 0:
            break
        if last:
            if ts[t, TS_RELABELED] != 0:
                ts[t, TS_RELABELED] = 0  # its cell went to its ghost
            else:
                ht_delete_entry(vals, 0, vals.shape[0], shift, key, 0, v)
            if e < 0:
                e = v
                key[v] = h
                tier[v] = 0
                _insert(ts, 0, v, q, bit, lk)
            break
        x = v
        t += 1
    if new:
        if pending:
            ht_replace(vals, 0, vals.shape[0], shift, key, 0, scratch, e)
        else:
            ht_insert(vals, 0, vals.shape[0], shift, h, e)
    return used


@njit(_nrt=False, inline="always")
def _admit_plain(ts, T, R, e, h, vals, shift, key, tier, bit, lk, used, counters, evictions_at, k, record):
    """``_admit`` for a chain of LRU, FIFO, CLOCK and SIEVE tiers: no ghosts, no relabelled
    cells, no dispatch on ARC or S3-FIFO at each step (7-9% faster on a 3-tier LRU chain,
    measured interleaved against ``_admit`` in one process)."""
    new = e < 0
    if new and used < R:
        e = used
        used += 1
        key[e] = h
    t = 0
    x = e
    while True:
        kind = ts[t, TS_KIND]
        head = ts[t, TS_HEAD]
        v = -1
        if ts[t, TS_COUNT] >= ts[t, TS_CAP]:
            v = _evict_plain(ts, t, kind, head, vals, shift, key, bit, lk)
            counters[t, C_EVICTIONS] += 1
            if record:
                evictions_at[k, t] += 1
        else:
            ts[t, TS_COUNT] += 1
        if x >= 0:
            tier[x] = t
            _place(kind, head, x, bit, lk)
        if v < 0:
            break
        if t + 1 == T:
            ht_delete_entry(vals, 0, vals.shape[0], shift, key, 0, v)
            if e < 0:
                e = v
                key[v] = h
                tier[v] = 0
                _place(ts[0, TS_KIND], ts[0, TS_HEAD], v, bit, lk)
            break
        x = v
        t += 1
    if new:
        ht_insert(vals, 0, vals.shape[0], shift, h, e)
    return used


@njit(_nrt=False)
def _loop(offsets, hashes, ts, arc_p, T, R, vals, shift, key, tier, q, bit, lk, counters, hit_tier,
          evictions_at, promote, record, use_keys):
    used = 0
    mask = vals.shape[0] - 1
    ghosts0 = use_keys and (ts[0, TS_KIND] == S3FIFO or ts[0, TS_KIND] == ARC)
    glo0 = ts[0, TS_GLO]
    ghi0 = ts[0, TS_GHI]
    # One tier of LRU, FIFO, CLOCK or SIEVE: no chain, no ghosts; counted in locals.
    plain = T == 1 and not (ts[0, TS_KIND] == S3FIFO or ts[0, TS_KIND] == ARC)
    chain_plain = True
    for t in range(T):
        if ts[t, TS_KIND] == S3FIFO or ts[t, TS_KIND] == ARC:
            chain_plain = False
    kind0 = ts[0, TS_KIND]
    head0 = ts[0, TS_HEAD]
    hits0 = 0
    prefix0 = 0
    evictions0 = 0
    deep = vals.shape[0] > DEEP_PREFETCH_CELLS
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            prefetch_ahead(hashes, k, vals, shift, key, lk, tier, deep)
            h = hashes[k]
            # One probe finds the resident entry and tier 0's ghost.
            i = ht_home(h, shift)
            e = -1
            g0 = -1
            g0_cell = -1
            while True:
                f = vals[i]
                if f == -1:
                    break
                if key[f] == h:
                    if f < R:
                        e = f
                        break
                    if ghosts0 and glo0 <= f < ghi0:
                        g0 = f
                        g0_cell = i
                i = (i + 1) & mask
            if plain:
                hit = e >= 0
                if hit:
                    hits0 += 1
                    if prefix:
                        prefix0 += 1
                    _touch(kind0, head0, e, bit, lk)
                else:
                    prefix = False
                    if used < R:
                        e = used
                        used += 1
                        key[e] = h
                        ht_insert(vals, 0, vals.shape[0], shift, h, e)
                    else:
                        e = _evict_plain(ts, 0, kind0, head0, vals, shift, key, bit, lk)
                        evictions0 += 1
                        if record:
                            evictions_at[k, 0] = 1
                        ht_rekey(vals, 0, vals.shape[0], shift, key, 0, e, h)
                    _place(kind0, head0, e, bit, lk)
                if record:
                    hit_tier[k] = 0 if hit else -1
                continue
            t = -1
            admit = True
            if e >= 0:
                t = tier[e]
                counters[t, C_HITS] += 1
                if prefix:
                    counters[t, C_PREFIX_HITS] += 1
                if t > 0 and promote:
                    counters[t, C_PROMOTIONS] += 1
                    _remove(ts, t, e, q, lk)
                    if ghosts0:
                        g0 = ht_find_in(vals, 0, vals.shape[0], shift, key, 0, h, ts[0, TS_GLO], ts[0, TS_GHI])
                else:
                    _access(ts, t, e, q, bit, lk)
                    admit = False
            else:
                prefix = False
            if admit and chain_plain:
                used = _admit_plain(ts, T, R, e, h, vals, shift, key, tier, bit, lk, used, counters, evictions_at,
                                    k, record)
            elif admit:  # one call site: the admission chain is inlined once
                used = _admit(ts, arc_p, T, R, e, h, vals, shift, key, tier, q, bit, lk, used, counters,
                              evictions_at, k, record, use_keys, g0, g0_cell)
            if record:
                hit_tier[k] = t
    if plain:
        set_one_tier(counters, hits0, prefix0, evictions0)
