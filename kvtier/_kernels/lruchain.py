"""The replay's path for a chain of LRU tiers: one LRU list cut into segments.

In a chain of LRU tiers that demote their victims and take blocks in at the front, every
block keeps its place in one recency order across the whole chain: a block entering tier
``t`` goes to the front of ``t``, which is just behind the back of tier ``t - 1``, where
it was; a promotion or a miss puts a block at the front of tier 0, the front of all. So
the chain is one LRU list of the tiers' total size, cut into segments of the tiers'
capacities (tiers fill in order, and once tier ``t + 1`` holds anything tier ``t`` stays
full). A demotion is then no list surgery but a moved boundary: the segment's back
pointer steps one block forward and the block's tier changes. Without promotion a lower
hit goes to the front of its own segment, just behind the back of the one above.

Decisions, hits and evictions equal the list kernel's and the general kernel's event for
event (a test replays random chains through them). Blocks are found through the kernels'
table (``kvtier._kernels.hashtable``, sized as the list kernel's: ``scan.table_cells``);
entries ``0 .. R - 1`` are the blocks, ``R`` the list's sentinel, linked as
``kvtier._kernels.links`` lays lists out (``lk[2e]`` an entry's older neighbour,
``lk[2e + 1]`` its newer one; the sentinel's older neighbour is the newest block and its
newer one the oldest: the list is a ring).
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import C_EVICTIONS, C_HITS, C_PREFIX_HITS, C_PROMOTIONS, NUM_COUNTERS, derive_counters
from kvtier._kernels.hashtable import ht_home, ht_insert, ht_rekey, ht_shift
from kvtier._kernels.jit import njit
from kvtier._kernels.links import link_init, push, unlink
from kvtier._kernels.listreplay import LRU, TS_CAP, TS_KIND
from kvtier._kernels.prefetch import prefetch
from kvtier._kernels.scan import DEEP_PREFETCH_CELLS, probe, table_cells


def applies(ts_init) -> bool:
    """Whether ``ts_init`` (``listreplay``'s per-tier scalars) is a chain of LRU tiers (one
    LRU tier is a chain of one: the same decisions as the list kernel, and a kernel that
    compiles in a few seconds, which a first ``kvtier replay --policy lru`` waits for)."""
    return ts_init.shape[0] >= 1 and bool(np.all(ts_init[:, TS_KIND] == LRU))


@njit
def state_bytes(ts_init):
    """Bytes ``lru_chain_replay`` allocates (without the per-access ``record`` arrays)."""
    R = 0
    for t in range(ts_init.shape[0]):
        R += ts_init[t, TS_CAP]
    T = ts_init.shape[0]
    return 8 * R + 8 * (R + 1) + R + 4 * table_cells(R, R) + 8 * 3 * T


@njit
def lru_chain_replay(offsets, hashes, ts_init, promote, record):
    """Replay through the chain of LRU tiers ``ts_init`` (see ``applies``); returns
    ``(counters, hit_tier, evictions_at)`` as ``kvtier._kernels.replay.replay_trace``."""
    T = ts_init.shape[0]
    cap = np.empty(T, dtype=np.int64)
    R = 0
    for t in range(T):
        cap[t] = ts_init[t, TS_CAP]
        R += cap[t]
    lk = np.empty(2 * (R + 1), dtype=np.int32)
    link_init(lk, 0, R)
    key = np.zeros(R, dtype=np.uint64)
    tier = np.zeros(R, dtype=np.int8)
    size = table_cells(R, R)
    vals = np.full(size, -1, dtype=np.int32)
    counters = np.zeros((T, NUM_COUNTERS), dtype=np.int64)
    n = hashes.shape[0]
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, T), dtype=np.int32)
    count = np.zeros(T, dtype=np.int64)  # blocks per tier
    tail = np.full(T, -1, dtype=np.int64)  # each tier's oldest block
    _loop(offsets, hashes, cap, count, tail, R, vals, ht_shift(size), key, tier, lk, counters, hit_tier, evictions_at,
          promote, record)
    derive_counters(offsets, counters)
    return counters, hit_tier, evictions_at


@njit(_nrt=False, inline="always")
def _step_back(tail, t, tier, lk, counters, evictions_at, k, record):
    """Tier ``t``'s oldest block moves into tier ``t + 1`` (an eviction of ``t``); its
    back pointer steps to the block in front, whose links are fetched for the next step."""
    y = tail[t]
    z = lk[2 * y + 1]
    tail[t] = z
    prefetch(lk, 2 * z)
    tier[y] = t + 1
    counters[t, C_EVICTIONS] += 1
    if record:
        evictions_at[k, t] += 1
    return y


@njit(_nrt=False)
def _loop(offsets, hashes, cap, count, tail, R, vals, shift, key, tier, lk, counters, hit_tier, evictions_at, promote,
          record):
    T = cap.shape[0]
    S = R  # the sentinel
    used = 0
    deep = vals.shape[0] > DEEP_PREFETCH_CELLS
    for r in range(offsets.shape[0] - 1):
        prefix = True
        for k in range(offsets[r], offsets[r + 1]):
            h, e = probe(hashes, k, vals, shift, key, lk, tier, deep)
            if e >= 0:
                j = np.int64(tier[e])
                counters[j, C_HITS] += 1
                if prefix:
                    counters[j, C_PREFIX_HITS] += 1
                if record:
                    hit_tier[k] = j
                if j > 0 and not promote:
                    # To the front of its own segment: just behind the back of the one above.
                    a = tail[j - 1]
                    if lk[2 * a] != e:
                        if e == tail[j]:
                            tail[j] = lk[2 * e + 1]
                        unlink(lk, 0, e)
                        b = lk[2 * a]
                        lk[2 * a] = e
                        lk[2 * e + 1] = a
                        lk[2 * e] = b
                        lk[2 * b + 1] = e
                    continue
                if lk[2 * S] != e:  # not already the newest
                    if e == tail[j]:
                        tail[j] = lk[2 * e + 1]
                    unlink(lk, 0, e)
                    push(lk, 0, S, e)
                if j == 0:
                    continue
                counters[j, C_PROMOTIONS] += 1
                count[j] -= 1
                tier[e] = 0
                x = e
            else:
                prefix = False
                if record:
                    hit_tier[k] = -1
                if used == R:
                    # Every tier is full: each passes its oldest block on, the last drops
                    # its own (the oldest of all), whose entry the new block takes.
                    v = lk[2 * S + 1]
                    unlink(lk, 0, v)
                    ht_rekey(vals, 0, vals.shape[0], shift, key, 0, v, h)
                    push(lk, 0, S, v)
                    tier[v] = 0
                    for t in range(T - 1):
                        _step_back(tail, t, tier, lk, counters, evictions_at, k, record)
                    o = lk[2 * S + 1]
                    tail[T - 1] = o
                    counters[T - 1, C_EVICTIONS] += 1
                    if record:
                        evictions_at[k, T - 1] += 1
                    # The next drop reads the new oldest block's key, links and table cell.
                    prefetch(key, o)
                    prefetch(lk, 2 * lk[2 * o + 1])
                    prefetch(vals, ht_home(key[o], shift))
                    continue
                x = used
                used += 1
                key[x] = h
                ht_insert(vals, 0, vals.shape[0], shift, h, x)
                push(lk, 0, S, x)
                tier[x] = 0
            # Block x entered tier 0 at the front of all: cascade the overflow down.
            t = 0
            while count[t] >= cap[t]:
                x = _step_back(tail, t, tier, lk, counters, evictions_at, k, record)
                t += 1
            count[t] += 1
            if count[t] == 1:
                tail[t] = x
