"""The simulator's timing formulas over arrays: the numba twin of ``kvtier.cost``.

Each kernel here has its Python face in ``kvtier.cost``, and a test holds the two equal
on random inputs: ``to_ns`` is ``cost.to_ns``, ``batch_step_s`` is
``cost.batch_step_s``, ``plan_times`` is ``cost.plan_times_s`` (the planners' schedule)
and ``suffix_counts`` is ``cost.suffix_counts``. ``price_request`` makes the planners'
choice (``kvtier.planners``: always-fetch, always-recompute, threshold, cost-optimal)
over ``plan_times``, so the event loop can price a request without Python; a test checks
it against the planners.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit

PLAN_ALWAYS_FETCH = 0
PLAN_ALWAYS_RECOMPUTE = 1
PLAN_COST_OPTIMAL = 2
PLAN_THRESHOLD = 3


@njit
def plan_times(ti, n, mask, r, c_new, tier_bw, tier_lat, tier_link, num_links, busy, block_bytes, num_layers,
                layerwise, cnt, cf, ct, t, d, a):
    """TTFT for every split k = 0..n fetching blocks >= k of tiers in bitmask ``mask``
    (into ``t[:n+1]``; ``cf``/``ct`` get the front and tail compute): ``cost.plan_times_s``.
    ``cnt`` holds ``suffix_counts`` of ``ti``."""
    T = tier_bw.shape[0]
    cf[0] = 0.0
    for i in range(n):
        cf[i + 1] = cf[i] + (r[i] if ti[i] != 0 else 0.0)
    # suffix sums accumulate from the end, as numpy's reversed cumsum does
    acc = 0.0
    ct[n] = c_new + 0.0
    for i in range(n - 1, -1, -1):
        tier = ti[i]
        if tier != 0 and not (tier > 0 and (mask >> tier) & 1):
            acc += r[i]
        ct[i] = c_new + acc
    for k in range(n + 1):
        t[k] = cf[k] + ct[k] if layerwise else cf[k]
    for link in range(num_links):
        any_tier = False
        for tier in range(1, T):
            if tier_link[tier] == link and (mask >> tier) & 1:
                any_tier = True
        if not any_tier:
            continue
        for k in range(n + 1):
            d[k] = 0.0
            a[k] = busy[link]
        for tier in range(1, T):
            if tier_link[tier] != link or not (mask >> tier) & 1:
                continue
            per = block_bytes / tier_bw[tier]
            for k in range(n + 1):
                c = cnt[tier, k]
                d[k] += c * per
                if c > 0:
                    a[k] += tier_lat[tier]
        for k in range(n + 1):
            if d[k] > 0:
                if layerwise:
                    x = a[k] + d[k] / num_layers + ct[k]
                    if x > t[k]:
                        t[k] = x
                    x = a[k] + d[k] + ct[k] / num_layers
                    if x > t[k]:
                        t[k] = x
                else:
                    x = a[k] + d[k]
                    if x > t[k]:
                        t[k] = x
    if not layerwise:
        for k in range(n + 1):
            t[k] = t[k] + ct[k]


@njit
def suffix_counts(ti, n, T, cnt):
    """``cnt[tier, k]``: how many of the blocks ``k..n-1`` sit in ``tier`` (``cost.suffix_counts``)."""
    for tier in range(T):
        cnt[tier, n] = 0
    for i in range(n - 1, -1, -1):
        for tier in range(T):
            cnt[tier, i] = cnt[tier, i + 1]
        if ti[i] >= 0:
            cnt[ti[i], i] += 1


@njit
def price_request(ti, n, planner, subsets, threshold_tokens, block_tokens, r, c_new, tier_bw, tier_lat, tier_link,
                  num_links, busy, block_bytes, num_layers, layerwise, scratch_cnt, scratch):
    """Choose a plan for one request: ``(ttft_s, split, fetch_mask)``.

    ``ti[:n]``: tier per prefix block (-1 missing). ``subsets``: bitmasks of lower tiers
    to try, in the cost-optimal planner's order (more tiers first). ``busy``: seconds each
    link is held by earlier transfers. ``scratch``: float64[5, >= n+1].
    """
    T = tier_bw.shape[0]
    suffix_counts(ti, n, T, scratch_cnt)
    cf, ct, t, d, a = scratch[0], scratch[1], scratch[2], scratch[3], scratch[4]
    all_lower = 0
    for tier in range(1, T):
        all_lower |= 1 << tier
    if planner == PLAN_THRESHOLD:
        lower = 0
        for i in range(n):
            if ti[i] > 0:
                lower += 1
        if lower > 0 and lower * block_tokens >= threshold_tokens:
            planner = PLAN_ALWAYS_FETCH
        else:
            planner = PLAN_ALWAYS_RECOMPUTE
    if planner == PLAN_ALWAYS_FETCH:
        plan_times(ti, n, all_lower, r, c_new, tier_bw, tier_lat, tier_link, num_links, busy, block_bytes,
                    num_layers, layerwise, scratch_cnt, cf, ct, t, d, a)
        return t[0], 0, all_lower
    if planner == PLAN_ALWAYS_RECOMPUTE:
        plan_times(ti, n, 0, r, c_new, tier_bw, tier_lat, tier_link, num_links, busy, block_bytes,
                    num_layers, layerwise, scratch_cnt, cf, ct, t, d, a)
        return t[n], n, 0
    best = np.inf
    best_k = 0
    best_mask = 0
    for s in range(subsets.shape[0]):
        mask = subsets[s]
        plan_times(ti, n, mask, r, c_new, tier_bw, tier_lat, tier_link, num_links, busy, block_bytes,
                    num_layers, layerwise, scratch_cnt, cf, ct, t, d, a)
        k_min = 0
        for k in range(1, n + 1):
            if t[k] < t[k_min]:
                k_min = k
        if t[k_min] < best:
            best = t[k_min]
            best_k = k_min
            best_mask = mask
    return best, best_k, best_mask


@njit
def to_ns(s):
    """Seconds rounded up to whole nanoseconds, 0 for ``s <= 0`` (``cost.to_ns``)."""
    if s <= 0.0:
        return np.int64(0)
    return np.int64(np.ceil(s * 1e9 - 1e-6))


@njit
def batch_step_s(pp, weights_bytes, active_bytes, weights_separate, bw_stage, weights_bw_stage, stream_bw_stage,
                 layer_overhead_s, num_layers, num_seqs, num_tokens, kv_bytes, work_s, stream_bytes):
    """Seconds for every sequence of a batch to advance one step on a replica of ``pp``
    pipeline stages, each ``tp`` chips wide (``cost.batch_step_s``).

    The batch runs as ``m = min(pp, num_seqs)`` micro-batches of ``num_tokens / m``
    tokens. A stage holds ``1/pp`` of the weights and layers; for each micro-batch it reads
    the weights its tokens use (all of them for a dense model; for a mixture of experts
    ``active_bytes`` per token, at most all: ``min(weights, active x tokens)``) and its
    share of the micro-batch's KV (``kv_bytes``: every byte attention reads this step,
    streamed bytes too: they land in the compute tier's memory before attention reads them) at
    ``bw_stage`` (the weights at ``weights_bw_stage`` at the same time when they live in
    their own memory), computes its share of ``work_s`` (seconds of the whole batch's
    FLOPs at one stage's rate), and reads its share of ``stream_bytes`` over its own
    chips' links (``stream_bw_stage``); the slowest sets the stage's time, plus
    ``layer_overhead_s`` for each of its layers. A token passes the stages in turn, so the
    step is ``pp`` stage times: pipelining adds throughput (``m`` micro-batches in
    flight), not latency; tensor parallelism is in the stage's bandwidth and compute."""
    m = num_seqs if num_seqs < pp else pp
    if m < 1:
        m = 1
    part = 1.0 / (pp * m)
    used = active_bytes * num_tokens / m
    if used > weights_bytes:
        used = weights_bytes
    w = used / pp
    kv = kv_bytes * part
    if weights_separate:
        mem = w / weights_bw_stage
        if kv / bw_stage > mem:
            mem = kv / bw_stage
    else:
        mem = (w + kv) / bw_stage
    comp = work_s * part
    if comp > mem:
        mem = comp
    if stream_bytes > 0.0:
        st = stream_bytes * part / stream_bw_stage
        if st > mem:
            mem = st
    return pp * (mem + layer_overhead_s * num_layers / pp)
