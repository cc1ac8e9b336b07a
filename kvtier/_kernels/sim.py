"""The simulator's event loop over arrays: requests dispatched in time order on a
simulated clock, their prefixes looked up in the cache, priced, and decoded.

Wrapped by ``kvtier.sim``; imports only other kernels and numpy. The cache is the replay
core's (``kvtier._kernels.replay.access``, the same step ``replay_trace`` takes for every
block): the same policy kernels called in the same order, over dense block ids, so a test
holds the simulator's hits, evictions, demotions and promotions to the replay engine's
access by access. Prices and decode steps come from ``kvtier._kernels.timing``; the
event queues are ``kvtier._kernels.heap``'s.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.counters import C_DEMOTIONS
from kvtier._kernels.heap import heap_push, heap_remove
from kvtier._kernels.jit import njit
from kvtier._kernels.policy import NEVER
from kvtier._kernels.replay import access, cache_state
from kvtier._kernels.timing import decode_step_s, price_request, to_ns


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


@njit(_nrt=False, inline="always")
def _pop(H, P, A, count):
    """Remove the earliest ``(time, row)`` of an event queue; returns ``(time, row, count)``."""
    time = A[0]
    row = H[0]
    heap_remove(H, 0, P, 0, A, 0, H, 0, count, row)
    return time, row, count - 1


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
    # the replay core's cache (a block's key is its dense id)
    has_next = next_use.shape[0] == ids.shape[0]
    so, free, free_top, loc_vals, loc_shift, slot_key, slot_tier, slot_depth, slot_next, chain = cache_state(
        caps, True, has_next, n_unique)
    no_record = np.zeros((0, T), dtype=np.int32)

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

    # event queues (``kvtier._kernels.heap``, by time then row): the ready queue and the
    # active set (requests whose turn has not ended)
    rq_r = np.empty(n_req, dtype=np.int64)
    rq_p = np.empty(n_req, dtype=np.int64)
    rq_t = np.empty(n_req, dtype=np.int64)
    rq_n = 0
    ac_r = np.empty(n_req, dtype=np.int64)
    ac_p = np.empty(n_req, dtype=np.int64)
    ac_t = np.empty(n_req, dtype=np.int64)
    ac_n = 0
    remaining = dep_count.copy()
    ready = ready0.copy()
    for q in range(n_req):
        if remaining[q] == 0:
            heap_push(rq_r, 0, rq_p, 0, rq_t, 0, rq_r, 0, rq_n, q, ready[q], q)
            rq_n += 1
    held = np.zeros(n_req, dtype=np.float64)  # compute-tier bytes each active request holds
    held_sum = 0.0
    stream_link = tier_link[stream_tier] if stream_tier > 0 else -1
    stream_bw = tier_bw[stream_tier] if stream_tier > 0 else 1.0
    n_done = 0
    while rq_n > 0:
        now, q, rq_n = _pop(rq_r, rq_p, rq_t, rq_n)
        ready_at = now
        order[n_done] = q
        n_done += 1
        # turns that ended by now release their KV and leave the decode batch
        while ac_n > 0 and ac_t[0] <= now:
            _end, e, ac_n = _pop(ac_r, ac_p, ac_t, ac_n)
            held_sum -= held[e]
        # residency: does this turn's KV fit in the compute tier next to the active ones?
        need = ctx_bytes[q]
        admit_wait = np.int64(0)
        if stream_tier <= 0:
            # nowhere to stream from: wait for active turns to end until it fits
            while need > kv0_bytes - held_sum and ac_n > 0 and need <= kv0_bytes:
                end, e, ac_n = _pop(ac_r, ac_p, ac_t, ac_n)
                if end > now:
                    admit_wait += end - now
                    now = end
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
            t = access(np.uint64(ids[k]), k - start, next_use[k] if has_next else NEVER, prefix, k, T, I, K, F, M,
                       loc_vals, loc_shift, so, slot_key, slot_tier, slot_depth, slot_next, free, free_top, chain,
                       costs, counters, no_record, True, False, True, True, has_next, True)
            prefix = prefix and t >= 0
            if k - start < n_in:
                ti[k - start] = t
                if t >= 0:
                    out_tier_hits[q, t] += 1
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
            heap_push(ac_r, 0, ac_p, 0, ac_t, 0, ac_r, 0, ac_n, q, end, q)
            ac_n += 1

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
                heap_push(rq_r, 0, rq_p, 0, rq_t, 0, rq_r, 0, rq_n, c, ready[c], c)
                rq_n += 1
    return n_done
