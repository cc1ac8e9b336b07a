"""The replay's fast path: a chain of tiers whose policies are all list policies.

For LRU, FIFO, CLOCK, SIEVE, S3-FIFO and ARC the order of a tier's blocks is all that
matters, never which slot holds them, so this kernel gives every resident block one
*entry* for as long as it stays in the chain: a demotion or a promotion moves the entry
from one tier's lists to another's and touches no table. One open-addressing table
(4-byte cells) maps a block hash to its entries: the resident one and, for ARC and
S3-FIFO, at most one ghost per tier (a ghost is an entry too, in its own range, on its
tier's ghost lists), so the lookup an access does anyway also finds the first tier's
ghost, and a ghost costs no second table.

The decisions are ``kvtier._kernels.replay``'s (and so the store's), event for event:
each tier's policy sees prepare, evict, insert in the same order, with the same list
rules as ``kvtier._kernels.policy`` (a test replays random traces through both kernels
and compares every counter, hit and eviction). Layout:

* entries ``0 .. R - 1`` resident (``R`` = the tiers' total slots), ``R .. R + G - 1``
  ghosts (tier ``t`` owns ``gb[t] .. gb[t + 1] - 1``); ``key[e]``, ``tier[e]`` (owner),
  ``q[e]`` (list: S3-FIFO small/main, ARC T1/T2 or B1/B2), ``bit[e]`` (CLOCK/SIEVE
  reference, S3-FIFO hit count);
* ``prv``/``nxt`` link entries into doubly linked lists with sentinels ``R + G + 4t + j``:
  ``j`` = 0, 1 resident lists, 2, 3 ghost lists; ``nxt[head]`` is the oldest member,
  ``prv[head]`` the newest;
* per tier ``ts[t, TS_*]`` int64 scalars and ``arc_p[t]``.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit
from kvtier._kernels.policy import ARC, CLOCK, FIFO, LRU, S3FIFO, SIEVE
from kvtier._kernels.replay import (
    C_ADMITTED,
    C_DEMOTIONS,
    C_DROPS,
    C_EVICTIONS,
    C_HITS,
    C_MISSES,
    C_PREFIX_HITS,
    C_PROMOTIONS,
    NUM_COUNTERS,
)

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
TS_GFREE = 14  # ghost entries on the tier's free stack
TS_GBASE = 15  # first ghost entry of the tier
TS_GPOOL = 16  # ghost entries the tier owns
TS_HEAD = 17  # the tier's first sentinel
TS_SIZE = 18


# -- lists ------------------------------------------------------------------------------


@njit(_nrt=False, inline="always")
def _push(prv, nxt, head, x):
    newest = prv[head]
    nxt[newest] = x
    prv[x] = newest
    nxt[x] = head
    prv[head] = x


@njit(_nrt=False, inline="always")
def _unlink(prv, nxt, x):
    p = prv[x]
    q = nxt[x]
    nxt[p] = q
    prv[q] = p


# -- the table (hash -> entries; several entries may share a key) -----------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _t_home(h, size):
    """A key's home cell: the top 32 bits of a Fibonacci hash scaled to ``size`` (any size)."""
    return np.int64((((np.uint64(h) * _GOLDEN) >> np.uint64(32)) * np.uint64(size)) >> np.uint64(32))


@njit(inline="always")
def _t_next(i, size):
    i += 1
    return i if i < size else 0



@njit(_nrt=False, inline="always")
def _t_insert(vals, size, h, e):
    i = _t_home(h, size)
    while vals[i] != -1:
        i = _t_next(i, size)
    vals[i] = e


@njit(_nrt=False, inline="always")
def _t_delete(vals, size, key, e):
    """Remove entry ``e`` (indexed under ``key[e]``), shifting its cluster back."""
    i = _t_home(key[e], size)
    while vals[i] != e:
        i = _t_next(i, size)
    j = i
    while True:
        j = _t_next(j, size)
        f = vals[j]
        if f == -1:
            break
        home = _t_home(key[f], size)
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            vals[i] = f
            i = j
    vals[i] = -1


@njit(_nrt=False, inline="always")
def _t_find_ghost(vals, size, key, tier, R, h, t):
    """Tier ``t``'s ghost entry for ``h``, or -1."""
    i = _t_home(h, size)
    while True:
        e = vals[i]
        if e == -1:
            return -1
        if e >= R and key[e] == h and tier[e] == t:
            return e
        i = _t_next(i, size)


# -- ghosts -----------------------------------------------------------------------------


@njit(_nrt=False)
def _ghost_take(ts, t, g, vals, size, key, q, prv, nxt, gstack):
    """Forget ghost entry ``g`` of tier ``t``; returns the list it was on."""
    lst = q[g]
    _t_delete(vals, size, key, g)
    _unlink(prv, nxt, g)
    gstack[ts[t, TS_GBASE] + ts[t, TS_GFREE]] = g
    ts[t, TS_GFREE] += 1
    ts[t, TS_G0 + lst] -= 1
    return lst


@njit(_nrt=False)
def _ghost_drop_oldest(ts, t, lst, vals, size, key, q, prv, nxt, gstack):
    head = ts[t, TS_HEAD] + 2 + lst
    g = nxt[head]
    if g != head:
        _ghost_take(ts, t, g, vals, size, key, q, prv, nxt, gstack)


@njit(_nrt=False)
def _ghost_add(ts, t, lst, h, vals, size, key, tier, q, prv, nxt, gstack, R):
    if ts[t, TS_GPOOL] == 0:
        return
    old = _t_find_ghost(vals, size, key, tier, R, h, t)
    if old >= 0:  # a key is remembered once, at its latest eviction
        _ghost_take(ts, t, old, vals, size, key, q, prv, nxt, gstack)
    if ts[t, TS_GFREE] == 0:
        # Pool exhausted (only after removals the policy did not see): forget the oldest.
        _ghost_drop_oldest(ts, t, 1 if ts[t, TS_G1] > 0 else 0, vals, size, key, q, prv, nxt, gstack)
    ts[t, TS_GFREE] -= 1
    g = gstack[ts[t, TS_GBASE] + ts[t, TS_GFREE]]
    key[g] = h
    q[g] = lst
    _push(prv, nxt, ts[t, TS_HEAD] + 2 + lst, g)
    ts[t, TS_G0 + lst] += 1
    _t_insert(vals, size, h, g)


# -- policy operations on tier t --------------------------------------------------------


@njit(_nrt=False)
def _prepare(ts, arc_p, t, g, vals, size, key, q, prv, nxt, gstack):
    """Tier ``t`` is about to admit a block whose ghost entry there is ``g`` (or -1)."""
    kind = ts[t, TS_KIND]
    ts[t, TS_GHOST_HIT] = 0
    if g < 0:
        return
    if kind == S3FIFO:
        ts[t, TS_GHOST_HIT] = 1
    else:
        b1 = ts[t, TS_G0]
        b2 = ts[t, TS_G1]
        c = float(ts[t, TS_CAP])
        if q[g] == 0:
            arc_p[t] = min(arc_p[t] + max(b2 / b1, 1.0), c)
            ts[t, TS_GHOST_HIT] = 1
        else:
            arc_p[t] = max(arc_p[t] - max(b1 / b2, 1.0), 0.0)
            ts[t, TS_GHOST_HIT] = 2
    _ghost_take(ts, t, g, vals, size, key, q, prv, nxt, gstack)


@njit(_nrt=False, inline="always")
def _insert(ts, t, e, q, bit, prv, nxt):
    kind = ts[t, TS_KIND]
    head = ts[t, TS_HEAD]
    ts[t, TS_COUNT] += 1
    if kind == S3FIFO:
        if ts[t, TS_GHOST_HIT] != 0:
            k = 1
        elif ts[t, TS_HAS_EVICTED] == 0 and ts[t, TS_Q0] >= ts[t, TS_SMALL_CAP]:
            k = 1
        else:
            k = 0
        ts[t, TS_GHOST_HIT] = 0
        _push(prv, nxt, head + k, e)
        q[e] = k
        bit[e] = 0
        ts[t, TS_Q0 + k] += 1
    elif kind == ARC:
        k = 1 if ts[t, TS_GHOST_HIT] != 0 else 0
        ts[t, TS_GHOST_HIT] = 0
        _push(prv, nxt, head + k, e)
        q[e] = k
        ts[t, TS_Q0 + k] += 1
    else:
        _push(prv, nxt, head, e)
        bit[e] = 0


@njit(_nrt=False, inline="always")
def _access(ts, t, e, q, bit, prv, nxt):
    kind = ts[t, TS_KIND]
    if kind == LRU:
        _unlink(prv, nxt, e)
        _push(prv, nxt, ts[t, TS_HEAD], e)
    elif kind == CLOCK or kind == SIEVE:
        bit[e] = 1
    elif kind == S3FIFO:
        if bit[e] < 3:
            bit[e] += 1
    elif kind == ARC:
        _unlink(prv, nxt, e)
        _push(prv, nxt, ts[t, TS_HEAD] + 1, e)
        if q[e] == 0:
            q[e] = 1
            ts[t, TS_Q0] -= 1
            ts[t, TS_Q1] += 1
    # FIFO: a hit changes nothing


@njit(_nrt=False)
def _remove(ts, t, e, q, prv, nxt):
    """``e`` leaves tier ``t`` without being evicted (a promotion)."""
    kind = ts[t, TS_KIND]
    ts[t, TS_COUNT] -= 1
    if kind == SIEVE and e == ts[t, TS_HAND]:
        h = nxt[e]
        ts[t, TS_HAND] = -1 if h == ts[t, TS_HEAD] else h
    elif kind == S3FIFO or kind == ARC:
        ts[t, TS_Q0 + q[e]] -= 1
    _unlink(prv, nxt, e)


@njit(_nrt=False)
def _s3_evict(ts, t, vals, size, key, tier, q, bit, prv, nxt, gstack, R):
    head = ts[t, TS_HEAD]
    ts[t, TS_HAS_EVICTED] = 1
    while True:
        if ts[t, TS_Q1] > ts[t, TS_MAIN_CAP] or ts[t, TS_Q0] == 0:
            while True:
                s = nxt[head + 1]
                f = bit[s]
                _unlink(prv, nxt, s)
                if f >= 1:
                    _push(prv, nxt, head + 1, s)
                    bit[s] = min(f, 3) - 1
                else:
                    ts[t, TS_Q1] -= 1
                    return s
        while ts[t, TS_Q0] > 0:
            s = nxt[head]
            _unlink(prv, nxt, s)
            ts[t, TS_Q0] -= 1
            if bit[s] >= ts[t, TS_THRESH]:
                _push(prv, nxt, head + 1, s)
                q[s] = 1
                bit[s] = 0
                ts[t, TS_Q1] += 1
            else:
                if ts[t, TS_GHOST_CAP] > 0:
                    if ts[t, TS_G0] >= ts[t, TS_GHOST_CAP]:
                        _ghost_drop_oldest(ts, t, 0, vals, size, key, q, prv, nxt, gstack)
                    _ghost_add(ts, t, 0, key[s], vals, size, key, tier, q, prv, nxt, gstack, R)
                return s


@njit(_nrt=False, inline="always")
def _arc_replace_list(ts, arc_p, t):
    t1 = ts[t, TS_Q0]
    t2 = ts[t, TS_Q1]
    p = arc_p[t]
    if (t1 > 0 and (t1 > p or (t1 == p and ts[t, TS_GHOST_HIT] == 2))) or t2 == 0:
        return 0
    return 1


@njit(_nrt=False)
def _arc_evict(ts, arc_p, t, vals, size, key, tier, q, prv, nxt, gstack, R):
    n = ts[t, TS_CAP]
    ghost = True
    trim = -1
    if ts[t, TS_GHOST_HIT] != 0:
        lst = _arc_replace_list(ts, arc_p, t)
    else:
        t1 = ts[t, TS_Q0]
        t2 = ts[t, TS_Q1]
        b1 = ts[t, TS_G0]
        b2 = ts[t, TS_G1]
        if t1 + b1 + 1 > n:
            if b1 > 0:
                lst = _arc_replace_list(ts, arc_p, t)
                trim = 0
            else:
                lst = 0
                ghost = False
        else:
            lst = _arc_replace_list(ts, arc_p, t)
            if t1 + b1 + t2 + b2 >= 2 * n and b2 > 0:
                trim = 1
    if trim >= 0:
        _ghost_drop_oldest(ts, t, trim, vals, size, key, q, prv, nxt, gstack)
    s = nxt[ts[t, TS_HEAD] + lst]
    _unlink(prv, nxt, s)
    ts[t, TS_Q0 + lst] -= 1
    if ghost:
        _ghost_add(ts, t, lst, key[s], vals, size, key, tier, q, prv, nxt, gstack, R)
    return s


@njit(_nrt=False, inline="always")
def _evict(ts, arc_p, t, vals, size, key, tier, q, bit, prv, nxt, gstack, R):
    """Evict tier ``t``'s victim (the tier is full, so it has one); returns its entry."""
    kind = ts[t, TS_KIND]
    head = ts[t, TS_HEAD]
    ts[t, TS_COUNT] -= 1
    if kind == S3FIFO:
        return _s3_evict(ts, t, vals, size, key, tier, q, bit, prv, nxt, gstack, R)
    if kind == ARC:
        return _arc_evict(ts, arc_p, t, vals, size, key, tier, q, prv, nxt, gstack, R)
    s = nxt[head]
    if kind == CLOCK:
        while bit[s] != 0:
            bit[s] -= 1
            _unlink(prv, nxt, s)
            _push(prv, nxt, head, s)
            s = nxt[head]
    elif kind == SIEVE:
        if ts[t, TS_HAND] >= 0:
            s = ts[t, TS_HAND]
        while bit[s] != 0:
            bit[s] = 0
            s = nxt[s]
            if s == head:
                s = nxt[head]
        h = nxt[s]
        ts[t, TS_HAND] = -1 if h == head else h
    _unlink(prv, nxt, s)
    return s


# -- the replay -------------------------------------------------------------------------


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
    G = 0
    for t in range(T):
        n = ts[t, TS_CAP]
        R += n
        pool = 0
        if use_keys and ts[t, TS_KIND] == S3FIFO:
            pool = ts[t, TS_GHOST_CAP]
        elif use_keys and ts[t, TS_KIND] == ARC:
            pool = n + 2
        ts[t, TS_GPOOL] = pool
        G += pool
    E = R + G
    gb = R
    for t in range(T):
        ts[t, TS_GBASE] = gb - R  # offset into gstack
        ts[t, TS_GFREE] = ts[t, TS_GPOOL]
        ts[t, TS_HAND] = -1
        ts[t, TS_HEAD] = E + 4 * t
        gb += ts[t, TS_GPOOL]
    prv = np.empty(E + 4 * T, dtype=np.int32)
    nxt = np.empty(E + 4 * T, dtype=np.int32)
    for x in range(E, E + 4 * T):
        prv[x] = x
        nxt[x] = x
    key = np.zeros(E, dtype=np.uint64)
    tier = np.zeros(E, dtype=np.int8)
    q = np.zeros(E, dtype=np.int8)
    bit = np.zeros(R, dtype=np.int8)
    gstack = np.empty(max(G, 1), dtype=np.int32)
    for t in range(T):
        base = ts[t, TS_GBASE]
        pool = ts[t, TS_GPOOL]
        for i in range(pool):
            g = R + base + pool - 1 - i
            gstack[base + i] = g
            tier[g] = t
    # Load at most 1/8 (1/2.5 with ghosts, which would cost too many bytes per resident
    # block): short probe runs are what make a miss cheap.
    size = max(16, 8 * E if G == 0 else (5 * E + 1) // 2)
    vals = np.full(size, -1, dtype=np.int32)
    arc_p = np.zeros(T, dtype=np.float64)
    counters = np.zeros((T, NUM_COUNTERS), dtype=np.int64)
    n = hashes.shape[0]
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, T), dtype=np.int32)
    _loop(offsets, hashes, ts, arc_p, T, R, vals, size, key, tier, q, bit, prv, nxt, gstack,
          counters, hit_tier, evictions_at, promote, record, use_keys)
    return counters, hit_tier, evictions_at


@njit(_nrt=False, inline="always")
def _admit(ts, arc_p, T, R, e, h, vals, size, key, tier, q, bit, prv, nxt, gstack, used, counters,
           evictions_at, k, record, use_keys, g0):
    """Admit block ``h`` to tier 0, demoting victims down the chain: entry ``e`` (a
    promotion), or -1 (a miss: the next unused entry or, every entry being used, the one
    the last tier drops). ``g0``: tier 0's ghost of ``h``, or -1. Returns the number of
    entries used after.

    Entries are never freed otherwise: a block is dropped only when every tier on its way
    down was full, and then every entry is in use and the new block takes it."""
    late = False  # the new block takes the dropped entry once the chain has settled
    if e < 0:
        if used < R:
            e = used
            used += 1
            key[e] = h
            _t_insert(vals, size, h, e)
        else:
            late = True
    t = 0
    x = e
    g = g0
    while True:
        kind = ts[t, TS_KIND]
        if kind == S3FIFO or kind == ARC:
            if t > 0 and use_keys:
                g = _t_find_ghost(vals, size, key, tier, R, key[x], t)
            _prepare(ts, arc_p, t, g, vals, size, key, q, prv, nxt, gstack)
        v = -1
        if ts[t, TS_COUNT] >= ts[t, TS_CAP]:
            v = _evict(ts, arc_p, t, vals, size, key, tier, q, bit, prv, nxt, gstack, R)
            counters[t, C_EVICTIONS] += 1
            if record:
                evictions_at[k, t] += 1
        if x >= 0:
            tier[x] = t
            _insert(ts, t, x, q, bit, prv, nxt)
            counters[t, C_ADMITTED] += 1
        if v < 0:
            return used
        if t + 1 == T:
            counters[t, C_DROPS] += 1
            _t_delete(vals, size, key, v)
            # late holds here (see above): the new block takes the dropped entry.
            key[v] = h
            _t_insert(vals, size, h, v)
            tier[v] = 0
            _insert(ts, 0, v, q, bit, prv, nxt)
            counters[0, C_ADMITTED] += 1
            return used
        counters[t, C_DEMOTIONS] += 1
        x = v
        t += 1


@njit(_nrt=False)
def _loop(offsets, hashes, ts, arc_p, T, R, vals, size, key, tier, q, bit, prv, nxt, gstack,
          counters, hit_tier, evictions_at, promote, record, use_keys):
    used = 0
    ghosts0 = use_keys and (ts[0, TS_KIND] == S3FIFO or ts[0, TS_KIND] == ARC)
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            h = hashes[k]
            # One probe finds the resident entry and tier 0's ghost.
            i = _t_home(h, size)
            e = -1
            g0 = -1
            while True:
                f = vals[i]
                if f == -1:
                    break
                if key[f] == h:
                    if f < R:
                        e = f
                        break
                    if ghosts0 and tier[f] == 0:
                        g0 = f
                i = _t_next(i, size)
            t = -1
            if e >= 0:
                t = tier[e]
                counters[t, C_HITS] += 1
                if prefix:
                    counters[t, C_PREFIX_HITS] += 1
                for u in range(t):
                    counters[u, C_MISSES] += 1
                if t > 0 and promote:
                    counters[t, C_PROMOTIONS] += 1
                    _remove(ts, t, e, q, prv, nxt)
                    if ghosts0:
                        g0 = _t_find_ghost(vals, size, key, tier, R, h, 0)
                    used = _admit(ts, arc_p, T, R, e, h, vals, size, key, tier, q, bit, prv, nxt, gstack,
                                   used, counters, evictions_at, k, record, use_keys, g0)
                else:
                    _access(ts, t, e, q, bit, prv, nxt)
            else:
                prefix = False
                for u in range(T):
                    counters[u, C_MISSES] += 1
                used = _admit(ts, arc_p, T, R, -1, h, vals, size, key, tier, q, bit, prv, nxt, gstack,
                                   used, counters, evictions_at, k, record, use_keys, g0)
            if record:
                hit_tier[k] = t
