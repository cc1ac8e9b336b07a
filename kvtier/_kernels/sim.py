"""The simulator's numba kernels: plan pricing and the fused time-driven event loop.

Wrapped by ``kvtier.sim``; imports only other kernels and numpy.

``price_request`` is the planners' schedule (``kvtier.policies.planners``: one formula for
every plan, ``_Request.times``) over arrays, so the event loop can price a request without
Python; a test checks it against the planners on random inputs.

``simulate_kernel`` runs the whole simulation. The cache decisions are the replay core's:
the same per-tier policy kernels, admitted and demoted by ``kvtier._kernels.replay._admit``
in the same order as ``replay_trace`` would for the rows in dispatch order, so the
simulator's hits equal the replay engine's (a test proves it).

The cache loop is the replay core's (``kvtier._kernels.replay``): the same policy kernels
called in the same order (prepare, evict while full, insert; access on a hit; remove and
re-admit on a promotion), over dense block ids, so a test can hold the two to the same
hits, evictions, demotions and promotions access by access.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kvtier._kernels.jit import njit
from kvtier._kernels.timing import (  # noqa: F401  (re-exported for kvtier.sim)
    PLAN_ALWAYS_FETCH,
    PLAN_ALWAYS_RECOMPUTE,
    PLAN_COST_OPTIMAL,
    PLAN_THRESHOLD,
    decode_step_s,
    price_request,
    to_ns,
)
from kvtier._kernels.policy import (
    M_SIZE,
    NEVER,
    policy_access,
    policy_evict,
    policy_insert,
    policy_prepare,
    policy_remove,
)

# Per-tier counters: the replay engine's columns.
from kvtier._kernels.replay import (  # noqa: E402
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



def _drop_stale_cache() -> None:
    """Numba's disk cache of this module is keyed on this file alone, but the event loop
    inlines the replay and policy kernels: when those change, the cached machine code is
    stale (and may crash). Drop it whenever the kernels' sources change."""
    try:
        kernels = Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for f in sorted(kernels.glob("*.py")):
            digest.update(f.name.encode() + f.read_bytes())
        stamp = digest.hexdigest()
        cache = Path(__file__).resolve().parent / "__pycache__"
        marker = cache / "sim.deps"
        if marker.exists() and marker.read_text() == stamp:
            return
        for f in cache.glob("sim.*.nb[ic]"):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        marker.write_text(stamp)
    except OSError:  # a read-only install keeps whatever cache it has
        pass


_drop_stale_cache()


REGIME_RESIDENT = 0  # the turn's KV sits in the compute tier for its decode
REGIME_STREAMED = 1  # part of it is read over a link at every decode step
REGIME_OVERFLOW = 2  # it fits nowhere it can be read from: the request is not served

# Columns of the per-request int64 output.
O_DISPATCH = 0  # ns: the request is ready and looks up its prefix
O_START = 1  # ns: its prefill gets the compute engine
O_FIRST_TOKEN = 2  # ns
O_END = 3  # ns: last output token
O_RECOMPUTE_BLOCKS = 4  # prefix blocks recomputed (missing or chosen)
O_MISSING_BLOCKS = 5  # prefix blocks found in no tier
O_SPLIT = 6  # the plan's split block
O_REGIME = 7
O_STREAM_BYTES = 8  # bytes per decode step read over a link (residency)
O_ADMIT_WAIT = 9  # ns waited for compute-tier room (SRAM-only targets)
NUM_I_OUT = 10

# Columns of the per-request float64 output.
F_PLAN_TTFT = 0  # s: the plan's predicted TTFT once it has the compute engine
F_STEP = 1  # s per decode step (output token)
F_COMPUTE = 2  # s of prefill compute
NUM_F_OUT = 3


# ---------------------------------------------------------------------------------------
# small heaps keyed by (time, row)
# ---------------------------------------------------------------------------------------


@njit
def _hless(tk, rk, i, j):
    return tk[i] < tk[j] or (tk[i] == tk[j] and rk[i] < rk[j])


@njit
def _hpush(tk, rk, count, time, row):
    i = count
    tk[i] = time
    rk[i] = row
    while i > 0:
        p = (i - 1) >> 1
        if not _hless(tk, rk, i, p):
            break
        tk[i], tk[p] = tk[p], tk[i]
        rk[i], rk[p] = rk[p], rk[i]
        i = p
    return count + 1


@njit
def _hpop(tk, rk, count):
    """Remove the minimum (read ``tk[0], rk[0]`` before calling); returns the new count."""
    count -= 1
    tk[0] = tk[count]
    rk[0] = rk[count]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= count:
            break
        if c + 1 < count and _hless(tk, rk, c + 1, c):
            c += 1
        if not _hless(tk, rk, c, i):
            break
        tk[i], tk[c] = tk[c], tk[i]
        rk[i], rk[c] = rk[c], rk[i]
        i = c
    return count


@njit
def to_ns(s):
    if s <= 0.0:
        return np.int64(0)
    return np.int64(np.ceil(s * 1e9 - 1e-6))


# ---------------------------------------------------------------------------------------
# the cache: admit with demotion down the chain (the replay core's rule)
# ---------------------------------------------------------------------------------------


@njit
def _admit(b, num_tiers, I, K, F, M, slot_id, so, free, free_top, loc_tier, loc_slot, id_depth, id_next, costs,
           counters):
    """Admit block ``b`` to tier 0; a full tier evicts its policy's victim, which is
    admitted to the next tier the same way, or dropped from the last."""
    carry = b
    t = 0
    last_cost = costs.shape[0] - 1
    while True:
        m = t * M_SIZE
        key = np.int64(carry)
        policy_prepare(I, K, F, M, m, key)
        victim = -1
        if free_top[t] == 0:
            s = policy_evict(I, K, F, M, m)
            victim = slot_id[so[t] + s]
            free[so[t] + free_top[t]] = s
            free_top[t] += 1
            loc_tier[victim] = -1
            counters[t, C_EVICTIONS] += 1
        free_top[t] -= 1
        s = free[so[t] + free_top[t]]
        d = id_depth[carry]
        policy_insert(I, K, F, M, m, s, key, d, id_next[carry], costs[min(d, last_cost)])
        slot_id[so[t] + s] = carry
        loc_tier[carry] = t
        loc_slot[carry] = s
        counters[t, C_ADMITTED] += 1
        if victim < 0:
            return
        if t + 1 == num_tiers:
            counters[t, C_DROPS] += 1
            return
        counters[t, C_DEMOTIONS] += 1
        carry = victim
        t += 1


# ---------------------------------------------------------------------------------------
# the event loop
# ---------------------------------------------------------------------------------------


@njit
def simulate_kernel(
    offsets, ids, n_price, next_use, costs, n_unique, caps, I, K, F, M,
    ready0, dep_count, child_offsets, child_rows, child_delay_ns, child_dispatch,
    c_new, r_depth, ctx_bytes, dec_flops_s, out_tokens,
    tier_bw, tier_lat, tier_link, tier_wbw, tier_wlat, num_links, kv0_bytes, block_bytes, weights_s, weights_in_tier0,
    bw0, stream_tier, num_layers, layerwise, planner, subsets, threshold_tokens, block_tokens, step_latency_s,
    out_i, out_f, out_tier_hits, out_fetch_blocks, out_occupancy, counters, link_bytes, link_busy_ns, order,
):
    """Simulate every request. Rows are dispatched in (ready time, row) order; ``order``
    receives the dispatch order. See ``kvtier.sim.engine`` for the model; outputs are
    written into the ``out_*`` arrays, ``counters`` (replay's per-tier counters),
    ``link_bytes[link, 0/1]`` (read toward compute / written away) and
    ``link_busy_ns[link, 0/1]`` (time each direction was held)."""
    n_req = ready0.shape[0]
    T = caps.shape[0]
    # replay-core cache state (as replay_trace lays it out)
    so = np.zeros(T + 1, dtype=np.int64)
    for t in range(T):
        so[t + 1] = so[t] + caps[t]
    slot_id = np.empty(so[T], dtype=np.int32)
    free = np.empty(so[T], dtype=np.int32)
    free_top = np.empty(T, dtype=np.int64)
    for t in range(T):
        for i in range(caps[t]):
            free[so[t] + i] = caps[t] - 1 - i
        free_top[t] = caps[t]
    loc_tier = np.full(n_unique, -1, dtype=np.int8)
    loc_slot = np.zeros(n_unique, dtype=np.int32)
    id_depth = np.zeros(n_unique, dtype=np.int32)
    id_next = np.full(n_unique, NEVER, dtype=np.int64)
    has_next = next_use.shape[0] == ids.shape[0]

    max_n = 1
    for q in range(n_req):
        if n_price[q] + 1 > max_n:
            max_n = n_price[q] + 1
    ti = np.empty(max_n, dtype=np.int64)
    scratch = np.empty((5, max_n), dtype=np.float64)
    scratch_cnt = np.empty((T, max_n), dtype=np.int64)
    busy_s = np.zeros(max(num_links, 1), dtype=np.float64)
    read_free = np.zeros(max(num_links, 1), dtype=np.int64)
    write_free = np.zeros(max(num_links, 1), dtype=np.int64)
    link_fetch_blocks = np.zeros(max(num_links, 1), dtype=np.int64)
    link_lat = np.zeros(max(num_links, 1), dtype=np.float64)
    compute_free = np.int64(0)
    dem_before = np.zeros(T, dtype=np.int64)

    # ready queue and the active set (requests whose turn has not ended)
    rq_t = np.empty(n_req + 1, dtype=np.int64)
    rq_r = np.empty(n_req + 1, dtype=np.int64)
    rq_n = 0
    ac_t = np.empty(n_req + 1, dtype=np.int64)
    ac_r = np.empty(n_req + 1, dtype=np.int64)
    ac_n = 0
    remaining = dep_count.copy()
    ready = ready0.copy()
    for q in range(n_req):
        if remaining[q] == 0:
            rq_n = _hpush(rq_t, rq_r, rq_n, ready[q], q)
    held = np.zeros(n_req, dtype=np.float64)  # compute-tier bytes each active request holds
    held_sum = 0.0
    stream_link = tier_link[stream_tier] if stream_tier > 0 else -1
    stream_bw = tier_bw[stream_tier] if stream_tier > 0 else 1.0
    n_done = 0
    while rq_n > 0:
        now = rq_t[0]
        ready_at = now
        q = rq_r[0]
        rq_n = _hpop(rq_t, rq_r, rq_n)
        order[n_done] = q
        n_done += 1
        # turns that ended by now release their KV and leave the decode batch
        while ac_n > 0 and ac_t[0] <= now:
            e = ac_r[0]
            ac_n = _hpop(ac_t, ac_r, ac_n)
            held_sum -= held[e]
        # residency: does this turn's KV fit in the compute tier next to the active ones?
        need = ctx_bytes[q]
        admit_wait = np.int64(0)
        if stream_tier <= 0:
            # nowhere to stream from: wait for active turns to end until it fits
            while need > kv0_bytes - held_sum and ac_n > 0 and need <= kv0_bytes:
                e = ac_r[0]
                if ac_t[0] > now:
                    admit_wait += ac_t[0] - now
                    now = ac_t[0]
                ac_n = _hpop(ac_t, ac_r, ac_n)
                held_sum -= held[e]
        room = kv0_bytes - held_sum
        if room < 0.0:
            room = 0.0
        if need <= room:
            regime = REGIME_RESIDENT
            stream_b = 0.0
            held[q] = need
        elif stream_tier > 0:
            regime = REGIME_STREAMED
            stream_b = need - room
            held[q] = room
        else:
            regime = REGIME_OVERFLOW
            stream_b = 0.0
            held[q] = 0.0
        out_i[q, O_DISPATCH] = ready_at
        out_i[q, O_ADMIT_WAIT] = admit_wait
        out_i[q, O_REGIME] = regime

        # cache: the replay core's loop over this row's blocks
        for t in range(T):
            dem_before[t] = counters[t, C_DEMOTIONS]
        start = offsets[q]
        n_in = n_price[q]
        prefix = True
        for k in range(start, offsets[q + 1]):
            b = ids[k]
            dd = k - start
            id_depth[b] = dd
            if has_next:
                id_next[b] = next_use[k]
            t = loc_tier[b]
            if k - start < n_in:
                ti[k - start] = t
                if t >= 0:
                    out_tier_hits[q, t] += 1
            if t >= 0:
                counters[t, C_HITS] += 1
                if prefix:
                    counters[t, C_PREFIX_HITS] += 1
                for u in range(t):
                    counters[u, C_MISSES] += 1
                m = t * M_SIZE
                s = loc_slot[b]
                if t > 0:
                    counters[t, C_PROMOTIONS] += 1
                    policy_remove(I, K, F, M, m, s)
                    free[so[t] + free_top[t]] = s
                    free_top[t] += 1
                    loc_tier[b] = -1
                    _admit(b, T, I, K, F, M, slot_id, so, free, free_top, loc_tier, loc_slot, id_depth, id_next,
                           costs, counters)
                else:
                    policy_access(I, K, F, M, m, s, dd, id_next[b], costs[min(dd, costs.shape[0] - 1)])
            else:
                prefix = False
                for u in range(T):
                    counters[u, C_MISSES] += 1
                _admit(b, T, I, K, F, M, slot_id, so, free, free_top, loc_tier, loc_slot, id_depth, id_next, costs,
                       counters)
        for t in range(T):
            out_occupancy[q, t] = caps[t] - free_top[t]
        missing = 0
        for i in range(n_in):
            if ti[i] < 0:
                missing += 1
        out_i[q, O_MISSING_BLOCKS] = missing

        # plan: the compute engine is first-come first-served; links carry earlier transfers
        cstart = now if now > compute_free else compute_free
        for link in range(num_links):
            busy_s[link] = (read_free[link] - cstart) / 1e9 if read_free[link] > cstart else 0.0
        ttft_s, split, mask = price_request(ti, n_in, planner, subsets, threshold_tokens, block_tokens, r_depth,
                                            c_new[q], tier_bw, tier_lat, tier_link, num_links, busy_s, block_bytes,
                                            num_layers, layerwise, scratch_cnt, scratch)
        if regime == REGIME_OVERFLOW:
            out_i[q, O_START] = cstart
            out_i[q, O_FIRST_TOKEN] = -1
            out_i[q, O_END] = -1
            out_f[q, F_PLAN_TTFT] = np.nan
            out_f[q, F_STEP] = np.nan
        else:
            first = cstart + to_ns(ttft_s)
            compute_free = first
            # the fetched blocks, per link: the plan books them behind earlier transfers
            recompute = 0
            comp_s = c_new[q]
            for link in range(num_links):
                link_fetch_blocks[link] = 0
                link_lat[link] = 0.0
            for i in range(n_in):
                t = ti[i]
                if t == 0:
                    continue
                if t > 0 and i >= split and (mask >> t) & 1:
                    out_fetch_blocks[q, t] += 1
                else:
                    recompute += 1
                    comp_s += r_depth[i]
            for t in range(1, T):
                if out_fetch_blocks[q, t] > 0:
                    link = tier_link[t]
                    link_fetch_blocks[link] += out_fetch_blocks[q, t]
                    link_lat[link] += tier_lat[t]
            for link in range(num_links):
                if link_fetch_blocks[link] == 0:
                    continue
                dur = link_lat[link]
                nbytes = 0.0
                for t in range(1, T):
                    if tier_link[t] == link and out_fetch_blocks[q, t] > 0:
                        dur += out_fetch_blocks[q, t] * block_bytes / tier_bw[t]
                        nbytes += out_fetch_blocks[q, t] * block_bytes
                s0 = cstart if cstart > read_free[link] else read_free[link]
                d_ns = to_ns(dur)
                read_free[link] = s0 + d_ns
                link_busy_ns[link, 0] += d_ns
                link_bytes[link, 0] += nbytes
            out_i[q, O_RECOMPUTE_BLOCKS] = recompute
            out_i[q, O_SPLIT] = split
            out_i[q, O_START] = cstart
            out_i[q, O_FIRST_TOKEN] = first
            out_f[q, F_PLAN_TTFT] = ttft_s
            out_f[q, F_COMPUTE] = comp_s

            # decode: one continuous batch; its step (at this turn's first token) reads the
            # weights once and every running sequence's KV, streams their non-resident
            # parts, and computes one token each
            kv_sum = ctx_bytes[q]
            flops_sum = dec_flops_s[q]
            stream_sum = stream_b
            for j in range(ac_n):
                if ac_t[j] > first:
                    e = ac_r[j]
                    kv_sum += ctx_bytes[e]
                    flops_sum += dec_flops_s[e]
                    stream_sum += out_i[e, O_STREAM_BYTES]
            step = decode_step_s(kv_sum, weights_s, weights_in_tier0, bw0, stream_sum, stream_bw, flops_sum,
                                 step_latency_s)
            out_f[q, F_STEP] = step
            end = first + to_ns(out_tokens[q] * step)
            if stream_b > 0.0 and out_tokens[q] > 0:
                nb = stream_b * out_tokens[q]
                s0 = first if first > read_free[stream_link] else read_free[stream_link]
                d_ns = to_ns(nb / stream_bw)
                read_free[stream_link] = s0 + d_ns
                link_busy_ns[stream_link, 0] += d_ns
                link_bytes[stream_link, 0] += nb
                if read_free[stream_link] > end:
                    end = read_free[stream_link]
            out_i[q, O_END] = end
            out_i[q, O_STREAM_BYTES] = np.int64(stream_b)
            held_sum += held[q]
            ac_n = _hpush(ac_t, ac_r, ac_n, end, q)

        # demotions this request caused are written down their tier's path (in the background)
        for t in range(1, T):
            moved = counters[t - 1, C_DEMOTIONS] - dem_before[t - 1]
            if moved > 0:
                link = tier_link[t]
                nbytes = moved * block_bytes
                s0 = now if now > write_free[link] else write_free[link]
                d_ns = to_ns(tier_wlat[t] + nbytes / tier_wbw[t])
                write_free[link] = s0 + d_ns
                link_busy_ns[link, 1] += d_ns
                link_bytes[link, 1] += nbytes
        # release dependents
        done_ns = out_i[q, O_END] if out_i[q, O_END] >= 0 else now
        for j in range(child_offsets[q], child_offsets[q + 1]):
            c = child_rows[j]
            base = now if child_dispatch[j] else done_ns
            cand = base + child_delay_ns[j]
            if cand > ready[c]:
                ready[c] = cand
            remaining[c] -= 1
            if remaining[c] == 0:
                rq_n = _hpush(rq_t, rq_r, rq_n, ready[c], c)
    return n_done
