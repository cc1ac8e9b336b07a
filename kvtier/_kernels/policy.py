"""Eviction-policy kernels: every policy's state is four flat arrays, every operation a kernel.

A policy instance is ``(I, K, F, M)``: ``I`` int32 (links, flags, counters, heap),
``K`` int64 (keys, access stamps, ghost keys), ``F`` float64 (priorities, scalars) and
``M`` int64 (a header of counts, offsets and parameters, indices ``M_*`` below), plus
``m``, the header's offset in ``M``. The header records where the instance's data sit in
``I``/``K``/``F`` (``M_IB``/``M_KB``/``M_FB``), so several instances can share one set of
arrays: ``kvtier._kernels.replay`` concatenates one per tier, and the kernels index with
offsets instead of taking array views (views cost a reference-count update each, which
dominated the replay loop). One layout serves two callers: ``kvtier.policies`` wraps an
instance (``m = 0``) in a class the store's tiers use, and the replay calls the same
kernels from its fused loop. ``policy_new`` builds an instance; the ``policy_*`` functions
dispatch on ``M[m + M_KIND]``.

Operations (``slot`` in ``0 .. n - 1``):

* ``policy_prepare(key)``: a block with ``key`` is about to be admitted (ARC and S3-FIFO
  look it up in their ghost lists here, as libCacheSim does in ``find``); every other
  policy ignores it.
* ``policy_insert(slot, key, depth, next_use, cost)``: the slot becomes evictable.
* ``policy_access(slot, depth, next_use, cost)``: the slot was hit.
* ``policy_remove(slot)``: the slot leaves without being evicted (freed, moved, pinned):
  no ghost entry, no hand movement.
* ``policy_victim()``: the slot ``policy_evict`` would return, or -1; reads only.
* ``policy_evict()``: evict: the victim leaves with every side effect of the policy's
  eviction (a CLOCK/SIEVE hand moving and clearing bits, S3-FIFO moving small-queue
  survivors to main, a ghost entry, GDSF's clock rising); returns its slot, or -1.

``key`` is the block's 64-bit identity as int64 (``NO_KEY`` when unknown: no ghost entry),
``depth`` its position in its request's chain (prefix-LRU), ``next_use`` the index of its
next access (``NEVER`` if none; Belady), ``cost`` its recompute cost per byte (cost-aware).
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.hashtable import ht_delete, ht_find, ht_insert, ht_shift
from kvtier._kernels.heap import heap_push, heap_rekey, heap_remove
from kvtier._kernels.jit import njit
from kvtier._kernels.links import detach, is_linked, link_init, mark_unlinked, oldest, push, unlink
from kvtier._kernels import rules

# Policy kinds (``M[m + M_KIND]``).
LRU = 0
FIFO = 1
CLOCK = 2
SIEVE = 3
S3FIFO = 4
ARC = 5
LFU = 6
COST_AWARE = 7
BELADY = 8
PREFIX_LRU = 9
NUM_KINDS = 10

NEVER = 1 << 62  # next_use of a block never accessed again
NO_KEY = -(1 << 63)  # key of a block whose identity the caller does not pass

# Header layout (offsets from ``m``).
M_KIND = 0
M_N = 1
M_COUNT = 2
M_STAMP = 3
M_HAND = 4  # SIEVE
M_ANCHOR = 5  # prefix-LRU: last slot placed, and its depth
M_LAST_DEPTH = 6
M_Q0 = 7  # S3-FIFO small / ARC T1 member counts
M_Q1 = 8  # S3-FIFO main / ARC T2
M_CAP0 = 9  # S3-FIFO small-queue capacity
M_CAP1 = 10  # S3-FIFO main-queue capacity
M_HAS_EVICTED = 11
M_GHOST_HIT = 12  # set by prepare: S3-FIFO 1 = in ghost; ARC 1 = in B1, 2 = in B2
M_THRESH = 13  # S3-FIFO move-to-main threshold
M_G_POOL = 16  # ghost entries available
M_G_FREE = 17  # entries on the free stack
M_G_COUNT0 = 18  # ghost list 0 (S3-FIFO ghost / ARC B1) members
M_G_COUNT1 = 19  # ARC B2 members
M_G_SHIFT = 20
M_G_CAP = 21  # S3-FIFO ghost capacity (entries)
M_G_I = 22  # where the ghost arrays start in I (absolute)
M_G_K = 23  # where the ghost arrays start in K (absolute)
M_G_HT = 24  # ghost hash-table size
M_IB = 25  # where this instance's data start in I, K, F
M_KB = 26
M_FB = 27
M_SIZE = 32

# Layout in I of a list policy over n slots (W = n + 4: sentinels n .. n + 3 head lists):
#   links[0:2W] (``kvtier._kernels.links``), aux row 0 [2W : 2W+n], aux row 1 [2W+n : 2W+2n],
#   ghost arrays: links of P entries and 2 sentinels, a list byte per entry, a free stack,
#   the ghost table.
# Of a heap policy (``kvtier._kernels.heap``): heap[0:n], pos[n:2n], count of hits[2n:3n];
# in heap order, K: tie stamps, F: priorities, then one scalar (cost-aware's clock L). ARC keeps p in F[0]. S3-FIFO/ARC keep keys in K.


@njit(inline="always")
def _is_heap(kind):
    return kind == LFU or kind == COST_AWARE or kind == BELADY


@njit(_nrt=False, inline="always")
def _list_layout(M, m):
    """``(ib, n, W)`` of a list policy: where its arrays start in ``I``, its slots, and its
    link entries (slots and four sentinels; the aux rows start at ``ib + 2 * W``)."""
    n = M[m + M_N]
    return M[m + M_IB], n, n + 4


@njit
def _pow2_at_least(x):
    size = 16
    while size < x:
        size *= 2
    return size


@njit
def policy_new(kind, n, small_cap, ghost_cap, move_threshold):
    """A fresh, empty instance ``(I, K, F, M)`` (header at ``m = 0``) of policy ``kind``
    over ``n`` slots. ``small_cap``/``ghost_cap``/``move_threshold``: S3-FIFO's small-queue
    size, ghost size (entries) and small-to-main threshold; ignored by other kinds."""
    M = np.zeros(M_SIZE, dtype=np.int64)
    M[M_KIND] = kind
    M[M_N] = n
    M[M_HAND] = -1
    M[M_ANCHOR] = -1
    M[M_LAST_DEPTH] = -2
    if _is_heap(kind):
        I = np.full(3 * n, -1, dtype=np.int32)
        K = np.zeros(n, dtype=np.int64)
        F = np.zeros(n + 1, dtype=np.float64)
        return I, K, F, M
    W = n + 4
    pool = 0
    if kind == S3FIFO:
        pool = ghost_cap
        M[M_CAP0] = small_cap
        M[M_CAP1] = n - small_cap
        M[M_G_CAP] = ghost_cap
        M[M_THRESH] = move_threshold
    elif kind == ARC:
        pool = n + 2
    ht = _pow2_at_least(2 * pool) if pool > 0 else 0
    rows = 2 if kind == S3FIFO else (1 if kind == CLOCK or kind == SIEVE or kind == ARC else 0)
    g_i = 2 * W + rows * n
    g_len = 4 * pool + 4 + ht if pool > 0 else 0
    I = np.full(g_i + g_len, -1, dtype=np.int32)
    I[2 * W : g_i] = 0
    for head in range(n, n + 4):
        link_init(I, 0, head)
    keyed = kind == S3FIFO or kind == ARC
    K = np.zeros((n + pool) if keyed else 1, dtype=np.int64)
    F = np.zeros(1, dtype=np.float64)
    M[M_G_POOL] = pool
    M[M_G_I] = g_i
    M[M_G_K] = n
    M[M_G_HT] = ht
    if pool > 0:
        M[M_G_SHIFT] = ht_shift(ht)
        for head in (pool, pool + 1):
            link_init(I, g_i, head)
        gfree = g_i + 3 * pool + 4
        for e in range(pool):
            I[gfree + e] = pool - 1 - e
        M[M_G_FREE] = pool
    return I, K, F, M


@njit(_nrt=False)
def policy_rebase(M, m, di, dk, df):
    """Shift an instance's data offsets after its arrays were placed at ``di``/``dk``/``df``."""
    M[m + M_IB] += di
    M[m + M_KB] += dk
    M[m + M_FB] += df
    M[m + M_G_I] += di
    M[m + M_G_K] += dk


# -- ghost lists (keys of recently evicted blocks, oldest dropped first) -----------------


@njit(_nrt=False, inline="always")
def _gidx_find(I, K, M, m, key):
    P = M[m + M_G_POOL]
    return ht_find(I, M[m + M_G_I] + 4 * P + 4, M[m + M_G_HT], M[m + M_G_SHIFT], K, M[m + M_G_K], key)


@njit(_nrt=False, inline="always")
def _gidx_delete(I, K, M, m, key):
    P = M[m + M_G_POOL]
    return ht_delete(I, M[m + M_G_I] + 4 * P + 4, M[m + M_G_HT], M[m + M_G_SHIFT], K, M[m + M_G_K], key)


@njit(_nrt=False, inline="always")
def _gidx_insert(I, K, M, m, key, e):
    P = M[m + M_G_POOL]
    ht_insert(I, M[m + M_G_I] + 4 * P + 4, M[m + M_G_HT], M[m + M_G_SHIFT], key, e)


@njit(_nrt=False, inline="always")
def _ghost_unlink_free(I, M, m, e, lst):
    P = M[m + M_G_POOL]
    o = M[m + M_G_I]
    detach(I, o, e)
    I[o + 3 * P + 4 + M[m + M_G_FREE]] = e
    M[m + M_G_FREE] += 1
    M[m + M_G_COUNT0 + lst] -= 1


@njit(_nrt=False, inline="always")
def _ghost_drop_oldest(I, K, M, m, lst):
    P = M[m + M_G_POOL]
    o = M[m + M_G_I]
    e = oldest(I, o, P + lst)
    if e < 0:
        return
    _gidx_delete(I, K, M, m, K[M[m + M_G_K] + e])
    _ghost_unlink_free(I, M, m, e, lst)


@njit(_nrt=False, inline="always")
def _ghost_take(I, K, M, m, key):
    """Remove ``key`` from the ghost lists; returns the list it was in, or -1."""
    P = M[m + M_G_POOL]
    if key == NO_KEY or P == 0:
        return -1
    o = M[m + M_G_I]
    e = _gidx_delete(I, K, M, m, key)
    if e < 0:
        return -1
    lst = I[o + 2 * P + 4 + e]
    _ghost_unlink_free(I, M, m, e, lst)
    return lst


@njit(_nrt=False, inline="always")
def _ghost_find(I, K, M, m, key):
    P = M[m + M_G_POOL]
    if key == NO_KEY or P == 0:
        return -1
    e = _gidx_find(I, K, M, m, key)
    return -1 if e < 0 else I[M[m + M_G_I] + 2 * P + 4 + e]


@njit(_nrt=False, inline="always")
def _ghost_add(I, K, M, m, lst, key):
    P = M[m + M_G_POOL]
    if key == NO_KEY or P == 0:
        return
    _ghost_take(I, K, M, m, key)  # a key is remembered once, at its latest eviction
    if M[m + M_G_FREE] == 0:
        # Pool exhausted (only after removals the policy did not see): forget the oldest.
        _ghost_drop_oldest(I, K, M, m, 1 if M[m + M_G_COUNT1] > 0 else 0)
    o = M[m + M_G_I]
    gk = M[m + M_G_K]
    M[m + M_G_FREE] -= 1
    e = I[o + 3 * P + 4 + M[m + M_G_FREE]]
    K[gk + e] = key
    I[o + 2 * P + 4 + e] = lst
    push(I, o, P + lst, e)
    M[m + M_G_COUNT0 + lst] += 1
    _gidx_insert(I, K, M, m, key, e)


# -- dispatch ---------------------------------------------------------------------------


@njit(_nrt=False)
def _arc_prepare(I, K, F, M, m, key):
    M[m + M_GHOST_HIT] = 0
    lst = _ghost_find(I, K, M, m, key)
    if lst < 0:
        return
    fb = M[m + M_FB]
    F[fb] = rules.arc_adapt(F[fb], M[m + M_G_COUNT0], M[m + M_G_COUNT1], float(M[m + M_N]), lst == 0)
    M[m + M_GHOST_HIT] = 1 if lst == 0 else 2
    _ghost_take(I, K, M, m, key)


@njit(_nrt=False)
def _s3_prepare(I, K, M, m, key):
    M[m + M_GHOST_HIT] = 1 if _ghost_take(I, K, M, m, key) >= 0 else 0


@njit(inline="always")
def has_ghosts(M, m):
    """Whether ``policy_prepare`` does anything for this instance (ARC, S3-FIFO)."""
    kind = M[m + M_KIND]
    return kind == S3FIFO or kind == ARC


@njit(_nrt=False, inline="always")
def policy_prepare(I, K, F, M, m, key):
    """A block with ``key`` is about to be admitted: consult and update the ghosts."""
    kind = M[m + M_KIND]
    if kind == S3FIFO:
        _s3_prepare(I, K, M, m, key)
    elif kind == ARC:
        _arc_prepare(I, K, F, M, m, key)


# -- list policies: LRU, FIFO, prefix-LRU, CLOCK, SIEVE ---------------------------------


@njit(_nrt=False)
def _prefix_place(I, M, m, slot, depth):
    ib = M[m + M_IB]
    anchor = M[m + M_ANCHOR]
    if anchor >= 0 and anchor != slot and depth == M[m + M_LAST_DEPTH] + 1:
        push(I, ib, anchor, slot)  # just older than the anchor
    else:
        push(I, ib, M[m + M_N], slot)
    M[m + M_ANCHOR] = slot
    M[m + M_LAST_DEPTH] = depth


@njit(_nrt=False)
def _list_insert(I, M, m, kind, slot, depth):
    ib, n, W = _list_layout(M, m)
    if kind == PREFIX_LRU:
        _prefix_place(I, M, m, slot, depth)
        return
    push(I, ib, n, slot)
    if kind == CLOCK or kind == SIEVE:
        I[ib + 2 * W + slot] = 0


@njit(_nrt=False)
def _list_access(I, M, m, kind, slot, depth):
    ib, n, W = _list_layout(M, m)
    if kind == LRU:
        unlink(I, ib, slot)
        push(I, ib, n, slot)
    elif kind == PREFIX_LRU:
        unlink(I, ib, slot)
        _prefix_place(I, M, m, slot, depth)
    elif kind == CLOCK or kind == SIEVE:
        I[ib + 2 * W + slot] = 1
    # FIFO: a hit changes nothing


@njit(_nrt=False)
def _list_evict(I, M, m, kind):
    ib, n, W = _list_layout(M, m)
    if kind == CLOCK:
        s = rules.clock_victim(I, ib, n, I, ib + 2 * W)
        detach(I, ib, s)
        return s
    if kind == SIEVE:
        s, M[m + M_HAND] = rules.sieve_victim(I, ib, n, I, ib + 2 * W, M[m + M_HAND])
        detach(I, ib, s)
        return s
    s = I[ib + 2 * n + 1]
    if kind == PREFIX_LRU and s == M[m + M_ANCHOR]:
        M[m + M_ANCHOR] = -1
    detach(I, ib, s)
    return s


@njit(_nrt=False)
def _list_victim(I, M, m, kind):
    ib, n, W = _list_layout(M, m)
    if kind == CLOCK:
        ref = ib + 2 * W
        s = I[ib + 2 * n + 1]
        while s != n:
            if I[ref + s] == 0:
                return s
            s = I[ib + 2 * s + 1]
        return I[ib + 2 * n + 1]
    if kind == SIEVE:
        seen = ib + 2 * W
        start = M[m + M_HAND] if M[m + M_HAND] >= 0 else I[ib + 2 * n + 1]
        s = start
        while s != n and I[seen + s] != 0:
            s = I[ib + 2 * s + 1]
        if s != n:
            return s
        s = I[ib + 2 * n + 1]
        while s != start and I[seen + s] != 0:
            s = I[ib + 2 * s + 1]
        return s
    return I[ib + 2 * n + 1]


# -- S3-FIFO ----------------------------------------------------------------------------


@njit(_nrt=False)
def _s3_insert(I, K, M, m, slot, key):
    ib, n, W = _list_layout(M, m)
    K[M[m + M_KB] + slot] = key
    q = rules.s3_insert_queue(M[m + M_GHOST_HIT] != 0, M[m + M_HAS_EVICTED] != 0, M[m + M_Q0], M[m + M_CAP0])
    M[m + M_GHOST_HIT] = 0
    push(I, ib, n + q, slot)
    I[ib + 2 * W + slot] = q
    I[ib + 2 * W + n + slot] = 0
    M[m + M_Q0 + q] += 1


@njit(_nrt=False)
def _s3_main_victim(I, ib, fq, head):
    """First member (oldest first) with the smallest capped count: it reaches zero first."""
    best = -1
    best_f = rules.S3_MAX_FREQ + 1
    s = I[ib + 2 * head + 1]
    while s != head:
        f = min(I[fq + s], rules.S3_MAX_FREQ)
        if f < best_f:
            best = s
            best_f = f
            if f == 0:
                break
        s = I[ib + 2 * s + 1]
    return best


@njit(_nrt=False)
def _s3_victim(I, M, m):
    ib, n, W = _list_layout(M, m)
    fq = ib + 2 * W + n
    if rules.s3_evicts_from_main(M[m + M_Q0], M[m + M_Q1], M[m + M_CAP1]):
        return _s3_main_victim(I, ib, fq, n + 1)
    s = I[ib + 2 * n + 1]
    while s != n:
        if I[fq + s] < M[m + M_THRESH]:
            return s
        s = I[ib + 2 * s + 1]
    # Every small-queue member moves to main with a zero count, behind main's members.
    s = I[ib + 2 * (n + 1) + 1]
    while s != n + 1:
        if I[fq + s] == 0:
            return s
        s = I[ib + 2 * s + 1]
    return I[ib + 2 * n + 1]


@njit(_nrt=False)
def _s3_evict(I, K, M, m):
    ib, n, W = _list_layout(M, m)
    qa = ib + 2 * W
    fq = qa + n
    M[m + M_HAS_EVICTED] = 1
    if not rules.s3_evicts_from_main(M[m + M_Q0], M[m + M_Q1], M[m + M_CAP1]):
        s, moved = rules.s3_small_victim(I, ib, n, n + 1, I, fq, I, qa, M[m + M_Q0], M[m + M_THRESH])
        M[m + M_Q0] -= moved
        M[m + M_Q1] += moved
        if s >= 0:
            M[m + M_Q0] -= 1
            mark_unlinked(I, ib, s)
            key = K[M[m + M_KB] + s]
            if M[m + M_G_CAP] > 0 and key != NO_KEY:
                if M[m + M_G_COUNT0] >= M[m + M_G_CAP]:
                    _ghost_drop_oldest(I, K, M, m, 0)
                _ghost_add(I, K, M, m, 0, key)
            return s
    s = rules.s3_main_victim(I, ib, n + 1, I, fq)
    mark_unlinked(I, ib, s)
    M[m + M_Q1] -= 1
    return s


# -- ARC --------------------------------------------------------------------------------


@njit(_nrt=False)
def _arc_insert(I, K, M, m, slot, key):
    ib, n, W = _list_layout(M, m)
    K[M[m + M_KB] + slot] = key
    q = 1 if M[m + M_GHOST_HIT] != 0 else 0
    M[m + M_GHOST_HIT] = 0
    push(I, ib, n + q, slot)
    I[ib + 2 * W + slot] = q
    M[m + M_Q0 + q] += 1


@njit(_nrt=False)
def _arc_access(I, M, m, slot):
    ib, n, W = _list_layout(M, m)
    unlink(I, ib, slot)
    push(I, ib, n + 1, slot)
    a = ib + 2 * W + slot
    if I[a] == 0:
        I[a] = 1
        M[m + M_Q0] -= 1
        M[m + M_Q1] += 1


@njit(_nrt=False)
def _arc_case(F, M, m):
    """ARC's eviction step now (``kvtier._kernels.rules.arc_evict_case``)."""
    return rules.arc_evict_case(M[m + M_Q0], M[m + M_Q1], M[m + M_G_COUNT0], M[m + M_G_COUNT1], M[m + M_N],
                          F[M[m + M_FB]], M[m + M_GHOST_HIT])


@njit(_nrt=False)
def _arc_evict(I, K, F, M, m):
    ib = M[m + M_IB]
    n = M[m + M_N]
    lst, trim, ghost = _arc_case(F, M, m)
    if trim >= 0:
        _ghost_drop_oldest(I, K, M, m, trim)
    s = I[ib + 2 * (n + lst) + 1]
    detach(I, ib, s)
    M[m + M_Q0 + lst] -= 1
    if ghost:
        _ghost_add(I, K, M, m, lst, K[M[m + M_KB] + s])
    return s


# -- heap policies: LFU, cost-aware, Belady ---------------------------------------------


@njit(_nrt=False)
def _heap_set(I, K, F, M, m, kind, slot, next_use, cost, first):
    n = M[m + M_N]
    ib = M[m + M_IB]
    kb = M[m + M_KB]
    fb = M[m + M_FB]
    M[m + M_STAMP] += 1
    stamp = M[m + M_STAMP]
    if first:
        f = 1
    else:
        f = I[ib + 2 * n + slot]
        if f < 2147483647:
            f += 1
    I[ib + 2 * n + slot] = f
    if kind == LFU:
        prio = float(f)
    elif kind == COST_AWARE:
        prio = F[fb + n] + f * cost
    else:
        prio = -float(next_use)
    if first:
        heap_push(I, ib, I, ib + n, F, fb, K, kb, M[m + M_COUNT] - 1, slot, prio, stamp)
    else:
        heap_rekey(I, ib, I, ib + n, F, fb, K, kb, M[m + M_COUNT], slot, prio, stamp)


@njit(_nrt=False)
def _heap_evict(I, K, F, M, m, kind):
    n = M[m + M_N]
    ib = M[m + M_IB]
    fb = M[m + M_FB]
    s = I[ib]
    if kind == COST_AWARE:
        F[fb + n] = F[fb]  # GDSF aging: later blocks start from the evicted value
    heap_remove(I, ib, I, ib + n, F, fb, K, M[m + M_KB], M[m + M_COUNT] + 1, s)
    return s


# -- dispatch ---------------------------------------------------------------------------


@njit(_nrt=False, inline="always")
def policy_insert(I, K, F, M, m, slot, key, depth, next_use, cost):
    """``slot`` (untracked) becomes evictable."""
    kind = M[m + M_KIND]
    M[m + M_COUNT] += 1
    if kind == S3FIFO:
        _s3_insert(I, K, M, m, slot, key)
    elif kind == ARC:
        _arc_insert(I, K, M, m, slot, key)
    elif _is_heap(kind):
        _heap_set(I, K, F, M, m, kind, slot, next_use, cost, True)
    else:
        _list_insert(I, M, m, kind, slot, depth)


@njit(_nrt=False, inline="always")
def policy_access(I, K, F, M, m, slot, depth, next_use, cost):
    """``slot`` (tracked) was hit."""
    kind = M[m + M_KIND]
    if kind == S3FIFO:
        a = M[m + M_IB] + 2 * (M[m + M_N] + 4) + M[m + M_N] + slot
        I[a] = rules.s3_hit(I[a])
    elif kind == ARC:
        _arc_access(I, M, m, slot)
    elif _is_heap(kind):
        _heap_set(I, K, F, M, m, kind, slot, next_use, cost, False)
    else:
        _list_access(I, M, m, kind, slot, depth)


@njit(_nrt=False)
def policy_remove(I, K, F, M, m, slot):
    """``slot`` (tracked) stops being evictable without being evicted."""
    kind = M[m + M_KIND]
    n = M[m + M_N]
    ib = M[m + M_IB]
    M[m + M_COUNT] -= 1
    if _is_heap(kind):
        heap_remove(I, ib, I, ib + n, F, M[m + M_FB], K, M[m + M_KB], M[m + M_COUNT] + 1, slot)
        return
    W = n + 4
    if kind == SIEVE and slot == M[m + M_HAND]:
        h = I[ib + 2 * slot + 1]
        M[m + M_HAND] = -1 if h == n else h
    elif kind == PREFIX_LRU and slot == M[m + M_ANCHOR]:
        M[m + M_ANCHOR] = -1
    elif kind == S3FIFO or kind == ARC:
        M[m + M_Q0 + I[ib + 2 * W + slot]] -= 1
    detach(I, ib, slot)


@njit(_nrt=False)
def policy_victim(I, K, F, M, m):
    """The slot ``policy_evict`` would evict now, or -1 when none is tracked. Pure."""
    if M[m + M_COUNT] == 0:
        return -1
    kind = M[m + M_KIND]
    if _is_heap(kind):
        return I[M[m + M_IB]]
    if kind == S3FIFO:
        return _s3_victim(I, M, m)
    if kind == ARC:
        lst, _trim, _ghost = _arc_case(F, M, m)
        return I[M[m + M_IB] + 2 * (M[m + M_N] + lst) + 1]
    return _list_victim(I, M, m, kind)


@njit(_nrt=False, inline="always")
def policy_evict(I, K, F, M, m):
    """Evict the policy's victim with all side effects; returns its slot, or -1."""
    if M[m + M_COUNT] == 0:
        return -1
    kind = M[m + M_KIND]
    M[m + M_COUNT] -= 1
    if kind == S3FIFO:
        return _s3_evict(I, K, M, m)
    if kind == ARC:
        return _arc_evict(I, K, F, M, m)
    if _is_heap(kind):
        return _heap_evict(I, K, F, M, m, kind)
    return _list_evict(I, M, m, kind)


@njit(_nrt=False)
def policy_tracked(I, K, F, M, m, slot):
    """Whether ``slot`` is tracked (evictable)."""
    ib = M[m + M_IB]
    if _is_heap(M[m + M_KIND]):
        return I[ib + M[m + M_N] + slot] != -1
    return is_linked(I, ib, slot)


@njit
def policy_order(I, K, F, M, m):
    """Tracked slots in list order (oldest first, small queue/T1 before main/T2) or heap
    array order: for checks and tests."""
    n = M[m + M_N]
    ib = M[m + M_IB]
    count = M[m + M_COUNT]
    out = np.empty(count, dtype=np.int64)
    if _is_heap(M[m + M_KIND]):
        for i in range(count):
            out[i] = I[ib + i]
        return out
    i = 0
    for head in range(n, n + 2):
        s = I[ib + 2 * head + 1]
        while s != head and i < count:
            out[i] = s
            i += 1
            s = I[ib + 2 * s + 1]
    return out[:i]


@njit
def policy_check(I, K, F, M, m):
    """0 when the instance is consistent, else the number of the first failed check."""
    kind = M[m + M_KIND]
    n = M[m + M_N]
    count = M[m + M_COUNT]
    ib = M[m + M_IB]
    kb = M[m + M_KB]
    fb = M[m + M_FB]
    if count < 0 or count > n:
        return 1
    if _is_heap(kind):
        tracked = 0
        for s in range(n):
            p = I[ib + n + s]
            if p != -1:
                tracked += 1
                if p >= count or I[ib + p] != s:
                    return 2
        if tracked != count:
            return 3
        for i in range(1, count):
            b = (i - 1) >> 1
            if F[fb + i] < F[fb + b] or (F[fb + i] == F[fb + b] and K[kb + i] < K[kb + b]):
                return 4
        return 0
    W = n + 4
    keyed = kind == S3FIFO or kind == ARC
    seen = np.zeros(n, dtype=np.uint8)
    members = 0
    for head in range(n, n + 4):
        s = I[ib + 2 * head + 1]
        last = head
        length = 0
        while s != head:
            if s < 0 or s >= n or seen[s] or I[ib + 2 * s] != last:
                return 5
            seen[s] = 1
            if keyed and I[ib + 2 * W + s] != head - n:
                return 6
            last = s
            s = I[ib + 2 * s + 1]
            length += 1
            members += 1
        if I[ib + 2 * head] != last:
            return 5
        if keyed and head - n < 2 and length != M[m + M_Q0 + head - n]:
            return 7
    if members != count:
        return 8
    for s in range(n):
        if is_linked(I, ib, s) != (seen[s] == 1):
            return 9
    P = M[m + M_G_POOL]
    if P > 0:
        o = M[m + M_G_I]
        gk = M[m + M_G_K]
        total = 0
        for lst in range(2):
            e = I[o + 2 * (P + lst) + 1]
            length = 0
            while e != P + lst:
                if I[o + 2 * P + 4 + e] != lst:
                    return 10
                if _gidx_find(I, K, M, m, K[gk + e]) != e:
                    return 10
                length += 1
                e = I[o + 2 * e + 1]
            if length != M[m + M_G_COUNT0 + lst]:
                return 11
            total += length
        if total + M[m + M_G_FREE] != P:
            return 12
        if kind == S3FIFO and M[m + M_G_COUNT0] > M[m + M_G_CAP]:
            return 13
    return 0
