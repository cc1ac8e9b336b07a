"""The bandwidth/compute cost model: pure functions of (bytes, link) and (tokens, target).

* ``transfer_time_s(num_bytes, link)`` = ``latency + bytes / bandwidth`` (0 for 0 bytes);
  ``to_ns`` rounds seconds up to the simulated clock's whole nanoseconds.
* ``LinkQueue`` — a link as a resource: transfers take turns in submission order on an
  integer-nanosecond simulated clock (two transfers on one link never overlap).
* ``recompute_time_s(model, target, new, cached)`` = prefill FLOPs (linear + attention
  term, ``ModelSpec.prefill_flops``) / (peak x efficiency).
* ``batch_step_s(stage_model(target), n, kv_bytes, flops, stream_bytes)`` — one step of a
  batch on a replica of ``tp x pp`` chips: per stage the slowest of memory (weights and
  KV), compute and streamed KV, plus a per-layer overhead; stages in turn for a token.
  ``decode_step_time_s(model, target, context_tokens)`` prices a decode batch with it.
* ``plan_times_s`` — the planners' schedule: the time to first token of a request for
  every split between recomputing from the front and fetching from the back
  (``kvtier.planners`` documents it; every planner prices its plans with it).
* ``layerwise_overlap_time_s(load_s, compute_s, num_layers)`` — loading layer l+1's KV
  while layer l computes: ``L + (n-1) * max(L, P) + P`` with per-layer load ``L`` and
  compute ``P``.
* ``break_even_fetch_bw_bytes_per_s`` — the tier bandwidth above which fetching a token's
  KV beats recomputing it (hardware.md §4).

Every function takes scalars or numpy arrays (broadcast) and returns the same shape; a
scalar input gives a Python float. Negative sizes raise ``ConfigError``.

``kvtier._kernels.timing`` is the numba twin of ``to_ns``, ``batch_step_s`` and
``plan_times_s`` (the simulator's event loop calls it); tests hold the two equal.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier._kernels import timing as _kt
from kvtier._kernels.timing import StageModel
from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget, LinkSpec
from kvtier.validation import check_int

NS_PER_S = 1_000_000_000


def _out(x):
    x = np.asarray(x)
    return x if x.ndim else float(x)


def _nonneg(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ConfigError(f"{name}: got {value!r}, expected finite values >= 0")
    return a


def transfer_time_s(num_bytes, link: LinkSpec, direction: str = "read"):
    """Seconds to move ``num_bytes`` over ``link`` alone: ``latency + bytes / bandwidth``.

    ``direction`` ``"read"`` is toward the compute tier (a fetch), ``"write"`` away (an
    offload). Zero bytes cost zero (no transfer is issued). Monotone in bytes.
    """
    b = _nonneg("num_bytes", num_bytes)
    bw = link.bw_bytes_per_s(direction)
    return _out(np.where(b > 0, link.latency_s + b / bw, 0.0))


def to_ns(seconds):
    """``seconds`` rounded up to whole nanoseconds (int64; 0 for ``<= 0``): the simulator's
    clock unit. A float a hair above a whole ns (1e-6 ns) does not round up. ``ConfigError``
    for 2**62 ns or more."""
    t = np.ceil(np.asarray(seconds, dtype=np.float64) * NS_PER_S - 1e-6)
    if np.any(t >= 2.0**62):
        raise ConfigError(f"seconds: got {seconds!r}, expected less than 2**62 ns")
    t = np.maximum(t, 0).astype(np.int64)
    return t if t.ndim else int(t)


def transfer_time_ns(num_bytes, link: LinkSpec, direction: str = "read"):
    """``transfer_time_s`` rounded up to whole nanoseconds (``to_ns``)."""
    try:
        return to_ns(transfer_time_s(num_bytes, link, direction))
    except ConfigError:
        raise ConfigError(f"num_bytes: got {num_bytes!r}, a transfer on {link.name!r} longer than 2**62 ns") from None


class Transfer(NamedTuple):
    """When a queued transfer starts and ends on its link (simulated ns): ints from
    ``submit``, int64 arrays from ``submit_many``."""

    start_ns: int | np.ndarray
    end_ns: int | np.ndarray


class LinkQueue:
    """A link as a first-come-first-served resource on a simulated integer-ns clock.

    ``submit(ready_ns, num_bytes)`` books a transfer that may start at ``ready_ns``: it
    starts when the link is free (after every transfer booked before it) and holds the
    link for ``transfer_time_ns``. Deterministic: no wall clock. ``busy_until_ns`` is the
    end of the last booked transfer.
    """

    def __init__(self, link: LinkSpec, *, direction: str = "read", busy_until_ns: int = 0) -> None:
        if not isinstance(link, LinkSpec):
            raise ConfigError(f"link: got {link!r}, expected a LinkSpec")
        link.bw_bytes_per_s(direction)  # validates direction
        self.link = link
        self.direction = direction
        self.busy_until_ns = check_int(busy_until_ns, "busy_until_ns", minimum=0)
        self.bytes_moved = 0
        self.transfers = 0

    def submit(self, ready_ns: int, num_bytes: int) -> Transfer:
        """Book one transfer; returns its start and end. Zero bytes: an empty interval at
        ``max(ready, busy)`` that does not hold the link."""
        start = max(check_int(ready_ns, "ready_ns", minimum=0), self.busy_until_ns)
        dur = transfer_time_ns(num_bytes, self.link, self.direction)
        if dur == 0:
            return Transfer(start, start)
        self.busy_until_ns = start + dur
        self.bytes_moved += int(num_bytes)
        self.transfers += 1
        return Transfer(start, self.busy_until_ns)

    def submit_many(self, ready_ns, num_bytes) -> Transfer:
        """Book transfers in array order (vectorised ``submit``); returns int64 arrays.

        Each end is ``C_i + max(busy, max_{j<=i}(ready_j - C_{j-1}))`` with ``C`` the
        running sum of durations: the closed form of "start when ready and the link is free".
        """
        ready = np.asarray(ready_ns)
        b = np.asarray(num_bytes)
        if ready.shape != b.shape or ready.ndim != 1:
            raise ConfigError(f"submit_many: got shapes {ready.shape} and {b.shape}, expected two equal 1-d arrays")
        if ready.size and (not np.issubdtype(ready.dtype, np.integer) or ready.min() < 0):
            raise ConfigError("ready_ns: expected integers >= 0")
        if ready.size == 0:
            return Transfer(np.zeros(0, np.int64), np.zeros(0, np.int64))
        dur = np.asarray(transfer_time_ns(b, self.link, self.direction), dtype=np.int64)
        ready = ready.astype(np.int64)
        held = dur > 0
        csum = np.cumsum(dur)
        prev = csum - dur
        # Empty transfers hold nothing, so they must not gate the ones after them.
        gate = np.maximum.accumulate(np.where(held, ready - prev, np.iinfo(np.int64).min // 2))
        end = csum + np.maximum(gate, self.busy_until_ns)
        # The link is free, before transfer i, at the end of the last held transfer before it.
        free = np.maximum.accumulate(np.where(held, end, self.busy_until_ns))
        free_before = np.concatenate(([self.busy_until_ns], free[:-1]))
        end = np.where(held, end, np.maximum(ready, free_before))
        start = end - dur
        self.busy_until_ns = int(free[-1])
        self.bytes_moved += int(b[held].sum())
        self.transfers += int(np.count_nonzero(held))
        return Transfer(start, end)


def recompute_time_s(model: ModelSpec, target: HardwareTarget, new_tokens, cached_tokens=0):
    """Seconds to prefill ``new_tokens`` on top of ``cached_tokens`` of KV, one sequence on
    one replica (its stages in turn), from the time model's parts (``stage_model``): the
    linear layers at the GEMM efficiency, attention at its own, and per token per layer
    the all-reduces' bytes and the element-wise work. Per-step fixed costs (all-reduce
    latency, the per-layer overhead) are left out: a plan's blocks are priced apart. A
    target without those parts prices ``model.prefill_flops / (peak x efficiency)``."""
    new = _nonneg("new_tokens", new_tokens)
    cached = _nonneg("cached_tokens", cached_tokens)
    c = compute_parts(model, target)
    attn = np.asarray(attention_flops(model, new, cached), dtype=np.float64)
    return _out(new * _per_token_s(c) + attn / c.attn_flops_per_s)


def layerwise_overlap_time_s(load_s, compute_s, num_layers):
    """Time to load KV and compute over ``num_layers`` equal layers when layer l+1's KV
    loads while layer l computes: ``L + (n-1) * max(L, P) + P`` with ``L = load/n``,
    ``P = compute/n``. One layer gives ``load + compute``; many give ``max(load, compute)``
    plus one layer of the other. Broadcasts over arrays."""
    load = _nonneg("load_s", load_s)
    comp = _nonneg("compute_s", compute_s)
    n = np.asarray(num_layers)
    if not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
        raise ConfigError(f"num_layers: got {num_layers!r}, expected integers >= 1")
    per_l, per_p = load / n, comp / n
    return _out(per_l + (n - 1) * np.maximum(per_l, per_p) + per_p)


#: Bytes per activation element a tensor-parallel all-reduce moves (bf16).
ACTIVATION_BYTES = 2


class ComputeParts(NamedTuple):
    """The compute side of a replica's stage (``stage_model``'s, without the memories)."""

    lin_token_s: float  # a token's linear layers at one stage's peak (all layers)
    gemm_eff: float
    gemm_half_tokens: float
    attn_flops_per_s: float
    ar_latency_s: float
    ar_token_s: float  # per token per all-reduce
    elem_token_s: float
    num_layers: int


def compute_parts(model: ModelSpec, target: HardwareTarget) -> ComputeParts:
    """``model``'s compute on one pipeline stage of one replica of ``target`` (``tp`` of
    its chips): linear layers at the GEMM efficiency, attention at its own, the
    tensor-parallel all-reduces (a ring moves ``2 (tp-1)/tp`` of a token's activations
    over one chip's link) and the element-wise work."""
    d = target.serving
    tp = d.tp
    peak = target.compute_flops * tp / target.chips
    link = target.tp_link_bw_bytes_per_s
    ring = 2.0 * (tp - 1) / tp
    return ComputeParts(
        lin_token_s=model.linear_flops_per_token / peak, gemm_eff=float(target.efficiency),
        gemm_half_tokens=float(target.gemm_half_tokens),
        attn_flops_per_s=peak * (target.attention_efficiency or target.efficiency),
        ar_latency_s=float(target.tp_allreduce_latency_s) if tp > 1 else 0.0,
        ar_token_s=(ring * model.num_q_heads * model.head_dim * ACTIVATION_BYTES / link
                    if tp > 1 and link is not None else 0.0),
        elem_token_s=float(target.elementwise_s_per_token_layer), num_layers=int(model.num_layers))


def _per_token_s(c: ComputeParts) -> float:
    """A prefill token's time outside attention, without per-step fixed costs."""
    return c.lin_token_s / c.gemm_eff + c.num_layers * (2.0 * c.ar_token_s + c.elem_token_s)


def stage_model(target: HardwareTarget, *, layer_overhead_s=None) -> StageModel:
    """The ``StageModel`` of one replica of ``target`` (a model placed): its ``pp`` stages of
    ``tp`` chips with the target's time-model parts (``kvtier.targets.spec.TIME_PARTS``);
    ``layer_overhead_s`` overrides the family's ``decode_layer_overhead_s``."""
    if target.model is None:
        raise ConfigError(f"target {target.name!r}: got no model, expected a target with a model placed")
    model = target.model
    rep = target.replica()
    pp = rep.serving.pp
    eff = rep.bw_efficiency
    wm = rep.weights_memory
    stream = rep.fetch_path(1).read_bw_bytes_per_s / pp if len(rep.tiers) > 1 else 1.0
    c = compute_parts(model, target)
    return StageModel(
        pp=pp, num_layers=c.num_layers, weights_bytes=float(rep.weights_bytes),
        active_bytes=float(min(rep.weights_bytes, model.active_params * rep.weights_bytes_per_param)),
        weights_separate=wm is not None, bw_stage=rep.tiers[0].read_bw_bytes_per_s * eff / pp,
        weights_bw_stage=wm.read_bw_bytes_per_s * eff / pp if wm is not None else 1.0,
        stream_bw_stage=float(stream), lin_token_s=c.lin_token_s, gemm_eff=c.gemm_eff,
        gemm_half_tokens=c.gemm_half_tokens, attn_flops_per_s=c.attn_flops_per_s, ar_latency_s=c.ar_latency_s,
        ar_token_s=c.ar_token_s, elem_token_s=c.elem_token_s,
        layer_overhead_s=float(rep.decode_layer_overhead_s if layer_overhead_s is None else layer_overhead_s),
    )


def attention_flops(model: ModelSpec, new_tokens, cached_tokens=0):
    """The attention part of ``model.prefill_flops(new, cached)`` (the rest is linear)."""
    return _out(np.asarray(model.prefill_flops(new_tokens, cached_tokens))
                - np.asarray(new_tokens, dtype=np.float64) * model.linear_flops_per_token)


def batch_step_s(stage: StageModel, num_seqs, kv_bytes, attn_flops, stream_bytes=0.0, num_tokens=None):
    """Seconds for every sequence of a batch to advance one step on a replica: ``num_seqs``
    sequences (``num_tokens`` tokens in all, default one each) reading ``kv_bytes`` of KV
    from the compute tier, computing ``attn_flops`` of attention besides their linear
    layers, and streaming ``stream_bytes`` over tier 1's path. Pipeline stages run in turn
    for one token and overlap across micro-batches; tensor parallelism is in each stage's
    figures (``_kernels.timing.batch_step_s``, whose Python face this is)."""
    n = check_int(num_seqs, "num_seqs", minimum=0)
    tokens = n if num_tokens is None else check_int(num_tokens, "num_tokens", minimum=0)
    kv = float(_nonneg("kv_bytes", kv_bytes))
    attn = float(_nonneg("attn_flops", attn_flops)) / stage.attn_flops_per_s
    st = float(_nonneg("stream_bytes", stream_bytes))
    return float(_kt.batch_step_s(stage, n, tokens, kv, attn, st))


def decode_step_time_s(model: ModelSpec, target: HardwareTarget, context_tokens, kv_tier=None, *,
                       layer_overhead_s=None):
    """Seconds for one decode step of a batch on one replica of ``target``: one new token
    per sequence (``batch_step_s`` of ``stage_model``).

    ``context_tokens``: per sequence, the tokens already in its KV (a 1-d array, or a
    scalar for a batch of one). ``kv_tier``: per sequence, the tier its KV is read from
    (default 0, the compute tier); KV in a lower tier is streamed over that tier's path
    at every step (the residency regime of DESIGN.md) and still read from the compute
    tier's memory it lands in. The step reads the weights and every sequence's KV,
    computes ``prefill_flops(1, C)`` per sequence, and streams the lower tiers' part;
    ``layer_overhead_s`` overrides the family's per-layer overhead.
    """
    ctx = _nonneg("context_tokens", context_tokens).reshape(-1)
    tiers = np.zeros(ctx.shape, np.int64) if kv_tier is None else np.asarray(kv_tier, dtype=np.int64).reshape(-1)
    if tiers.shape != ctx.shape:
        raise ConfigError(f"kv_tier: got shape {tiers.shape}, expected one tier per sequence {ctx.shape}")
    if tiers.size and (tiers.min() < 0 or tiers.max() >= len(target.tiers)):
        raise ConfigError(f"kv_tier: got values outside 0..{len(target.tiers) - 1}")
    target = target if target.model is model else target.with_model(model)
    stage = stage_model(target, layer_overhead_s=layer_overhead_s)
    kv_bytes = np.asarray(model.kv_bytes(ctx), dtype=np.float64).reshape(-1)
    flops = float(np.sum(attention_flops(model, np.ones_like(ctx), ctx))) if ctx.size else 0.0
    # KV streamed from tier t counts as tier 1's bytes at the ratio of the two paths
    stream = 0.0
    for t in np.unique(tiers[tiers > 0]):
        ratio = target.fetch_path(1).read_bw_bytes_per_s / target.fetch_path(int(t)).read_bw_bytes_per_s
        stream += float(kv_bytes[tiers == t].sum()) * ratio
    return batch_step_s(stage, int(ctx.size), float(kv_bytes.sum()), flops, stream)


def break_even_fetch_bw_bytes_per_s(model: ModelSpec, target: HardwareTarget, context_tokens=0):
    """The fetch bandwidth above which loading a token's KV is faster than recomputing it:
    ``kv_bytes_per_token`` / the time to recompute one token at position
    ``context_tokens`` (``recompute_time_s``'s parts; 0 gives hardware.md §4's
    short-context, attention-free figure; longer contexts lower the threshold)."""
    ctx = _nonneg("context_tokens", context_tokens)
    c = compute_parts(model, target)
    return _out(model.kv_bytes_per_token / (_per_token_s(c) + model.attention_flops_coef * ctx / c.attn_flops_per_s))


class PlanTimes(NamedTuple):
    """``plan_times_s``'s answer, every array over the split ``k = 0..n``."""

    ttft_s: np.ndarray  # the predicted time to first token
    front_s: np.ndarray  # Cf: compute of the non-resident blocks before k
    tail_s: np.ndarray  # Ct: compute after the loads (tail blocks, then the new tokens)
    link_load_s: np.ndarray  # [num_links, n + 1]: busy + latency + transfer per link; 0 where it carries none


def suffix_counts(mask) -> np.ndarray:
    """For each ``k = 0..n``, how many of ``mask[k:]`` are true (int64, length ``n + 1``)."""
    mask = np.asarray(mask, dtype=bool)
    return np.concatenate((np.cumsum(mask[::-1])[::-1], [0])).astype(np.int64)


def plan_times_s(tier_index, block_compute_s, new_compute_s, fetch_tiers, *, path_read_bw, path_latency_s, path_link,
                 link_busy_s, block_bytes, num_layers, layerwise=True) -> PlanTimes:
    """The planners' schedule (``kvtier.planners``): for every split ``k``, the time to
    first token when non-resident blocks before ``k`` are recomputed first and blocks from
    ``k`` on held in a tier of ``fetch_tiers`` are fetched meanwhile.

    ``tier_index[i]``: the tier of prefix block ``i`` (0 resident, -1 missing).
    ``block_compute_s[i]``: seconds to recompute block ``i`` (it needs the KV before it);
    ``new_compute_s``: seconds for the new tokens after the prefix. Per tier ``t``:
    ``path_read_bw[t]``/``path_latency_s[t]`` of its path to the compute tier and
    ``path_link[t]``, the index of the link it comes over; ``link_busy_s[l]``: seconds
    link ``l`` is held by earlier transfers. A fetch of ``c`` blocks of tier ``t`` holds
    its link for ``c * block_bytes / path_read_bw[t]`` after the tier's latency, once per
    tier; tiers on one link take turns. With ``L = num_layers``, ``Cf`` the front compute,
    ``Ct`` the tail's and per link ``a`` (busy + latencies) and ``D`` (transfer):
    ``max(Cf + Ct, max_l(a + D/L + Ct), max_l(a + D + Ct/L))`` layer by layer, else
    ``max(Cf, max_l(a + D)) + Ct``.
    """
    ti = np.asarray(tier_index, dtype=np.int64)
    r = np.asarray(block_compute_s, dtype=np.float64)
    n = int(ti.size)
    fetch = sorted(int(t) for t in fetch_tiers)
    nonres = ti != 0
    fetched = np.isin(ti, fetch) if fetch else np.zeros(n, bool)
    tail_compute = nonres & ~fetched  # blocks >= k that are computed in the tail
    cf = np.concatenate(([0.0], np.cumsum(np.where(nonres, r, 0.0))))
    rt = np.where(tail_compute, r, 0.0)
    ct = new_compute_s + np.concatenate((np.cumsum(rt[::-1])[::-1], [0.0]))
    t = cf + ct if layerwise else cf.copy()
    busy = np.asarray(link_busy_s, dtype=np.float64)
    loads = np.zeros((busy.size, n + 1))
    for link in range(busy.size):
        on_link = [tier for tier in fetch if path_link[tier] == link]
        if not on_link:
            continue
        a = np.full(n + 1, busy[link])
        d = np.zeros(n + 1)
        for tier in on_link:
            cnt = suffix_counts(ti == tier)
            d += cnt * (block_bytes / path_read_bw[tier])
            a += np.where(cnt > 0, path_latency_s[tier], 0.0)
        active = d > 0
        loads[link] = np.where(active, a + d, 0.0)
        if layerwise:
            t = np.maximum(t, np.where(active, a + d / num_layers + ct, 0.0))
            t = np.maximum(t, np.where(active, a + d + ct / num_layers, 0.0))
        else:
            t = np.maximum(t, np.where(active, a + d, 0.0))
    if not layerwise:
        t = t + ct
    return PlanTimes(ttft_s=t, front_s=cf, tail_s=ct, link_load_s=loads)
