"""The simulator's timing formulas over arrays: the numba twin of ``kvtier.cost``.

Each kernel here has its Python face in ``kvtier.cost``, and a test holds the two equal
on random inputs: ``to_ns`` is ``cost.to_ns``, ``decode_step_s`` is
``cost.decode_step_s``, ``plan_times`` is ``cost.plan_times_s`` (the planners' schedule)
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
def decode_step_s(kv_bytes, weights_s, weights_in_tier0, bw0, stream_bytes, stream_bw, flops_s, step_latency_s):
    """Seconds of one decode step of a batch: the weights read once (from the compute tier,
    or over their own path at the same time, ``weights_in_tier0`` False), every sequence's
    ``kv_bytes`` read from the compute tier at ``bw0``, ``stream_bytes`` read over a link at
    ``stream_bw`` and ``flops_s`` of compute, the slowest of these setting the step, plus a
    fixed ``step_latency_s`` (``cost.decode_step_s``)."""
    step = kv_bytes / bw0
    if weights_in_tier0:
        step += weights_s
    elif weights_s > step:
        step = weights_s
    if stream_bytes > 0.0 and stream_bytes / stream_bw > step:
        step = stream_bytes / stream_bw
    if flops_s > step:
        step = flops_s
    return step + step_latency_s
