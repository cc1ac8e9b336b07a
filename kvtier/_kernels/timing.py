"""The simulator's timing formulas over arrays: the numba twin of ``kvtier.cost``.

Each kernel here has its Python face in ``kvtier.cost``, and a test holds the two equal
on random inputs: ``to_ns`` is ``cost.to_ns``, ``batch_step_s`` (over a ``StageModel``) is
``cost.batch_step_s``, ``plan_times`` is ``cost.plan_times_s`` (the planners' schedule)
and ``suffix_counts`` is ``cost.suffix_counts``. ``price_request`` makes the planners'
choice (``kvtier.planners``: always-fetch, always-recompute, threshold, cost-optimal)
over ``plan_times``, so the event loop can price a request without Python; a test checks
it against the planners.
"""

from __future__ import annotations

from collections import namedtuple

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


#: One replica's time model, per pipeline stage (``cost.stage_model`` builds it from a
#: target; figures per family in ``assumptions.json``):
#:
#: * memory: ``weights_bytes`` (a whole copy per replica; a token reads ``active_bytes`` of
#:   it: a mixture of experts' active ones) from the compute tier at ``bw_stage`` (bytes/s,
#:   bandwidth efficiency applied) or, when ``weights_separate``, from their own memory at
#:   ``weights_bw_stage``; tier 1's path over the stage's own links at ``stream_bw_stage``;
#: * compute: a token's linear layers take ``lin_token_s`` (all layers, at one stage's peak)
#:   divided by the GEMM efficiency ``gemm_eff x t / (t + gemm_half_tokens)`` at ``t``
#:   tokens (small batches run below peak); attention comes as seconds already;
#: * per layer, after its kernels: two tensor-parallel all-reduces of ``ar_latency_s`` plus
#:   ``ar_token_s`` per token (ring: ``2 (tp-1)/tp`` of the activations over one chip's
#:   link; 0 without TP), ``elem_token_s`` per token (norms, activations) and a fixed
#:   ``layer_overhead_s`` (launches, synchronisation, chip-to-chip hops);
#: * ``pp`` stages of ``num_layers / pp`` layers each.
#: ``attn_flops_per_s`` is the rate attention FLOPs run at on one stage (callers turn
#: attention FLOPs into the seconds ``batch_step_s`` takes).
StageModel = namedtuple("StageModel", (
    "pp", "num_layers", "weights_bytes", "active_bytes", "weights_separate", "bw_stage", "weights_bw_stage",
    "stream_bw_stage", "lin_token_s", "gemm_eff", "gemm_half_tokens", "attn_flops_per_s", "ar_latency_s",
    "ar_token_s", "elem_token_s", "layer_overhead_s"))


@njit
def batch_step_s(st, num_seqs, num_tokens, kv_bytes, attn_s, stream_bytes):
    """Seconds for every sequence of a batch to advance one step on a replica of
    ``st.pp`` pipeline stages (``StageModel``; ``cost.batch_step_s``): ``num_seqs``
    sequences, ``num_tokens`` tokens in all (one per decode, a chunk per prefill),
    ``kv_bytes`` of KV attention reads (streamed bytes too: they land in the compute
    tier's memory first), ``attn_s`` of attention compute (at one stage's chips, all
    layers) and ``stream_bytes`` read over tier 1's path.

    The batch runs as ``m = min(pp, num_seqs)`` micro-batches. A stage, for each
    micro-batch, reads the weights its tokens use (``min(weights, active x tokens)``) and
    its share of the KV, computes its share of the linear layers and attention, and
    streams its share; the slowest of memory, compute and stream sets its time, then its
    layers' all-reduces, element-wise work and fixed overhead. A token passes the stages
    in turn, so the step is ``pp`` stage times: pipelining adds throughput (``m``
    micro-batches in flight), not latency; tensor parallelism is in the stage's figures."""
    pp = st.pp
    m = num_seqs if num_seqs < pp else pp
    if m < 1:
        m = 1
    tokens = num_tokens / m
    used = st.active_bytes * tokens
    if used > st.weights_bytes:
        used = st.weights_bytes
    w = used / pp
    kv = kv_bytes / (pp * m)
    if st.weights_separate:
        mem = w / st.weights_bw_stage
        if kv / st.bw_stage > mem:
            mem = kv / st.bw_stage
    else:
        mem = (w + kv) / st.bw_stage
    comp = attn_s / m
    if tokens > 0.0:  # t tokens at efficiency eff x t / (t + half): (t + half) x lin / eff
        comp += st.lin_token_s * (tokens + st.gemm_half_tokens) / st.gemm_eff
    comp /= pp
    if comp > mem:
        mem = comp
    if stream_bytes > 0.0:
        sb = stream_bytes / (pp * m) / st.stream_bw_stage
        if sb > mem:
            mem = sb
    per_layer = 2.0 * (st.ar_latency_s + tokens * st.ar_token_s) + tokens * st.elem_token_s + st.layer_overhead_s
    return pp * mem + st.num_layers * per_layer
