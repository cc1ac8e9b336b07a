"""The fused metadata-only replay loop: a trace's block accesses through a chain of tiers.

Where a block lives is one open-addressing index table from its 64-bit hash to a global
slot (``so[t] + slot`` of tier ``t``; the slot's hash is in ``slot_key``), sized by the
tiers' total capacity, as libCacheSim's table is: it holds resident blocks only, so it stays in cache however many distinct
blocks the trace has, and no remapping pass over the trace is needed. Each tier has
``caps[t]`` slots, a stack of free slots and one eviction-policy instance from
``kvtier._kernels.policy`` (the same kernels the store's tiers run); the instances share four
concatenated arrays, tier ``t``'s header at ``M[t * M_SIZE]``.

The decisions are the store's (``TieredStore`` with exclusive placement, a fetch per
block and a put on a miss): a hit in tier ``t > 0`` is promoted (removed from ``t``,
admitted to tier 0); a miss is admitted to tier 0; admitting to a full tier evicts its
policy's victim, which is demoted to the next tier (admitted there the same way) or,
from the last tier, dropped. Within each tier the policy sees the same operations in the
same order as the store's: prepare, evict (as needed), insert.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import C_ADMITTED, C_DEMOTIONS, C_DROPS, C_EVICTIONS, C_HITS, C_MISSES, C_PREFIX_HITS
from kvtier._kernels.counters import C_PROMOTIONS, NUM_COUNTERS
from kvtier._kernels.hashtable import ht_cell, ht_delete, ht_find, ht_insert, ht_shift
from kvtier._kernels.jit import njit
from kvtier._kernels.policy import (
    M_SIZE,
    NEVER,
    NO_KEY,
    has_ghosts,
    policy_access,
    policy_evict,
    policy_insert,
    policy_prepare,
    policy_remove,
)


@njit(_nrt=False, inline="always")
def _loc_find(loc_vals, loc_shift, slot_key, h, dense):
    """The global slot of block ``h``, or -1. ``dense``: keys are dense ids and the
    location table is an array indexed by them (the simulator's); else a hash table."""
    if dense:
        return np.int64(loc_vals[h])
    return ht_find(loc_vals, 0, loc_vals.shape[0], loc_shift, slot_key, 0, h)


@njit(_nrt=False, inline="always")
def _loc_enter(loc_vals, loc_shift, h, g, dense):
    """Block ``h`` (not located) is now at global slot ``g``."""
    if dense:
        loc_vals[h] = g
    else:
        ht_insert(loc_vals, 0, loc_vals.shape[0], loc_shift, h, g)


@njit(_nrt=False, inline="always")
def _loc_move(loc_vals, loc_shift, slot_key, h, g, dense):
    """Block ``h`` moves to global slot ``g`` (its old slot still holds its key)."""
    if dense:
        loc_vals[h] = g
    else:
        loc_vals[ht_cell(loc_vals, 0, loc_vals.shape[0], loc_shift, slot_key, 0, h)] = g


@njit(_nrt=False, inline="always")
def _loc_forget(loc_vals, loc_shift, slot_key, h, dense):
    """Block ``h`` is no longer located (its slot still holds its key)."""
    if dense:
        loc_vals[h] = -1
    else:
        ht_delete(loc_vals, 0, loc_vals.shape[0], loc_shift, slot_key, 0, h)


@njit(_nrt=False, inline="always")
def _admit(t0, h, depth, nu, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key, slot_tier,
           slot_depth, slot_next, free, free_top, chain, costs, counters, evictions_at, k, record, use_keys,
           use_depth, has_next, dense):
    """Admit block ``h`` (not in the location table) to tier ``t0``, demoting victims down.

    Top-down, each tier on the way prepares for its incoming block and evicts a victim if
    it is full; then bottom-up, each incoming block takes its tier's freed slot. Every
    tier's policy still sees prepare, evict, insert in that order (tiers are independent),
    and a demoted block keeps its location cell: only the slot it points to changes.
    """
    # chain[j] = (block hash bits, depth, next use, slot) of the j-th block placed.
    last_cost = costs.shape[0] - 1
    t = t0
    j = 0
    chain[0, 0] = np.int64(h)
    chain[0, 1] = depth
    chain[0, 2] = nu
    while True:
        m = t * M_SIZE
        if has_ghosts(M, m):
            policy_prepare(I, K, F, M, m, chain[j, 0] if use_keys else NO_KEY)
        if free_top[t] > 0:
            free_top[t] -= 1
            chain[j, 3] = free[so[t] + free_top[t]]
            break
        s = policy_evict(I, K, F, M, m)
        chain[j, 3] = s
        g = so[t] + s
        counters[t, C_EVICTIONS] += 1
        if record:
            evictions_at[k, t] += 1
        if t + 1 == num_tiers:
            counters[t, C_DROPS] += 1
            _loc_forget(loc_vals, loc_shift, slot_key, slot_key[g], dense)
            break
        counters[t, C_DEMOTIONS] += 1
        j += 1
        chain[j, 0] = np.int64(slot_key[g])
        chain[j, 1] = slot_depth[g] if use_depth else 0
        chain[j, 2] = slot_next[g] if has_next else NEVER
        t += 1
    while j >= 0:
        t = t0 + j
        m = t * M_SIZE
        s = chain[j, 3]
        g = so[t] + s
        b = np.uint64(chain[j, 0])
        d = chain[j, 1]
        key = chain[j, 0] if use_keys else NO_KEY
        policy_insert(I, K, F, M, m, s, key, d, chain[j, 2], costs[min(d, last_cost)])
        if j == 0:
            slot_key[g] = b
            _loc_enter(loc_vals, loc_shift, b, g, dense)
        else:
            # b still owns its old slot in tier t - 1 (filled after this), so its cell is found.
            _loc_move(loc_vals, loc_shift, slot_key, b, g, dense)
            slot_key[g] = b
        slot_tier[g] = t
        if use_depth:
            slot_depth[g] = d
        if has_next:
            slot_next[g] = chain[j, 2]
        counters[t, C_ADMITTED] += 1
        j -= 1


@njit
def cache_state(caps, use_depth, has_next, dense_ids):
    """Fresh cache state for tiers of ``caps`` slots: ``(so, free, free_top, loc_vals,
    loc_shift, slot_key, slot_tier, slot_depth, slot_next, chain)``, as ``access`` takes it.

    ``so[t]``: tier ``t``'s first global slot; ``free``/``free_top``: each tier's stack of
    free slots (slot 0 handed out first, as the store does); ``loc_vals``: the location
    table (``kvtier._kernels.hashtable``) from a block's hash to its global slot or, when
    the keys are dense ids below ``dense_ids`` (> 0; the simulator's), an array by id;
    the slot's hash, tier, chain depth (``use_depth``) and next use (``has_next``) are
    ``slot_*``; ``chain``: scratch for one admission's demotions."""
    num_tiers = caps.shape[0]
    so = np.zeros(num_tiers + 1, dtype=np.int64)
    for t in range(num_tiers):
        so[t + 1] = so[t] + caps[t]
    total = so[num_tiers]
    free = np.empty(total, dtype=np.int32)
    free_top = np.empty(num_tiers, dtype=np.int64)
    for t in range(num_tiers):
        for i in range(caps[t]):
            free[so[t] + i] = caps[t] - 1 - i
        free_top[t] = caps[t]
    if dense_ids > 0:  # keys are ids 0 .. dense_ids - 1: the table is an array by id
        loc_size = dense_ids
    else:
        loc_size = 16
        while loc_size < 2 * total:
            loc_size *= 2
    loc_vals = np.full(loc_size, -1, dtype=np.int32)
    slot_key = np.zeros(total, dtype=np.uint64)
    slot_tier = np.zeros(total, dtype=np.int8)
    slot_depth = np.zeros(total if use_depth else 1, dtype=np.int32)
    slot_next = np.zeros(total if has_next else 1, dtype=np.int64)
    chain = np.zeros((num_tiers, 4), dtype=np.int64)
    return so, free, free_top, loc_vals, ht_shift(loc_size), slot_key, slot_tier, slot_depth, slot_next, chain


@njit(_nrt=False, inline="always")
def access(h, d, nu, prefix, k, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key, slot_tier, slot_depth,
           slot_next, free, free_top, chain, costs, counters, evictions_at, promote, record, use_keys, use_depth,
           has_next, dense):
    """One block access, the store's decisions: block ``h`` (chain depth ``d``, next use
    ``nu``; access ``k``; ``prefix``: its request has missed nothing yet; ``dense``: the
    location table is an array by id, as ``cache_state`` made it). A hit in tier 0
    (or anywhere, without ``promote``) touches the block; a hit in tier ``t > 0`` promotes
    it (removed from ``t``, admitted to tier 0); a miss admits it to tier 0 (as after
    recomputing it). Admitting demotes victims down the chain (``_admit``). Counts into
    ``counters``; returns the tier that hit, or -1."""
    g = _loc_find(loc_vals, loc_shift, slot_key, h, dense)
    if g < 0:
        for u in range(num_tiers):
            counters[u, C_MISSES] += 1
        _admit(0, h, d, nu, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key, slot_tier,
               slot_depth, slot_next, free, free_top, chain, costs, counters, evictions_at, k, record, use_keys,
               use_depth, has_next, dense)
        return -1
    t = slot_tier[g]
    counters[t, C_HITS] += 1
    if prefix:
        counters[t, C_PREFIX_HITS] += 1
    for u in range(t):
        counters[u, C_MISSES] += 1
    m = t * M_SIZE
    s = g - so[t]
    if t > 0 and promote:
        counters[t, C_PROMOTIONS] += 1
        policy_remove(I, K, F, M, m, s)
        free[so[t] + free_top[t]] = s
        free_top[t] += 1
        _loc_forget(loc_vals, loc_shift, slot_key, h, dense)
        _admit(0, h, d, nu, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key, slot_tier,
               slot_depth, slot_next, free, free_top, chain, costs, counters, evictions_at, k, record, use_keys,
               use_depth, has_next, dense)
    else:
        policy_access(I, K, F, M, m, s, d, nu, costs[min(d, costs.shape[0] - 1)])
        if use_depth:
            slot_depth[g] = d
        if has_next:
            slot_next[g] = nu
    return t


@njit
def replay_trace(offsets, hashes, next_use, costs, caps, I, K, F, M, promote, record, use_keys, use_depth):
    """Replay every request's blocks (uint64 ``hashes``, CSR by ``offsets``) in order.

    ``next_use``: per access, the index of the next access to the same block (or empty:
    none); ``costs``: recompute cost per byte by chain depth (last entry for deeper
    blocks). ``use_keys``/``use_depth``: pass block keys (for ghost lists) and chain
    depths to the policies; without them (and an empty ``next_use``) every policy sees
    slots only, exactly as the store's tiers call them.

    Returns ``(counters int64[T, NUM_COUNTERS], hit_tier int8[N or 0],
    evictions_at int32[N or 0, T])``; the last two only when ``record``.
    """
    num_tiers = caps.shape[0]
    n = hashes.shape[0]
    has_next = next_use.shape[0] == n
    so, free, free_top, loc_vals, loc_shift, slot_key, slot_tier, slot_depth, slot_next, chain = cache_state(
        caps, use_depth, has_next, 0)
    counters = np.zeros((num_tiers, NUM_COUNTERS), dtype=np.int64)
    hit_tier = np.empty(n if record else 0, dtype=np.int8)
    evictions_at = np.zeros((n if record else 0, num_tiers), dtype=np.int32)
    _replay_loop(offsets, hashes, next_use, costs, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key,
                 slot_tier, slot_depth, slot_next, free, free_top, chain, counters, hit_tier, evictions_at, promote,
                 record, use_keys, use_depth, has_next)
    return counters, hit_tier, evictions_at


@njit(_nrt=False)
def _replay_loop(offsets, hashes, next_use, costs, num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key,
                 slot_tier, slot_depth, slot_next, free, free_top, chain, counters, hit_tier, evictions_at, promote,
                 record, use_keys, use_depth, has_next):
    # No allocation here: compiled without reference counting, so handing the arrays to
    # the policy kernels costs nothing per access.
    for r in range(offsets.shape[0] - 1):
        prefix = True
        start = offsets[r]
        for k in range(start, offsets[r + 1]):
            t = access(hashes[k], k - start if use_depth else 0, next_use[k] if has_next else NEVER, prefix, k,
                       num_tiers, I, K, F, M, loc_vals, loc_shift, so, slot_key, slot_tier, slot_depth, slot_next,
                       free, free_top, chain, costs, counters, evictions_at, promote, record, use_keys, use_depth,
                       has_next, False)
            prefix = prefix and t >= 0
            if record:
                hit_tier[k] = t
