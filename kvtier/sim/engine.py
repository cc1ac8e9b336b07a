"""The simulator: a trace's requests served by a target's replicas, step by step, deterministically.

The model is a serving engine's, the vLLM v1 scheduler's in particular (simulated clock in
integer nanoseconds; never the wall clock):

* **Deployment.** The target's chips form replicas of ``tp x pp`` chips
  (``target.serving``; presets carry what each vendor runs): each has a copy of the
  weights, its own scheduler, cache and share of every tier and link
  (``kvtier.sim.resources``). A router sends each request to a replica: by session
  (``routing="session"``, the default: a session's turns, and its sub-agents', share one
  replica's prefix cache) or round robin.
* **Arrival.** Open loop: a request is ready at its trace timestamp. Closed loop (the
  default when the trace has dependencies): a request with dependencies is ready when each
  has completed (or been dispatched, per its trigger) plus its delay (the agent's tool
  wait). A ready request joins its replica's queue.
* **Steps.** A replica runs one step at a time. Each step packs the running requests
  first (one token per decode, a chunk of each unfinished prefill) and then admits
  queued requests first come first served, under a budget of ``max_num_batched_tokens``
  tokens and ``max_num_seqs`` sequences; chunked prefill is on by default
  (``chunked_prefill``). The step takes ``kvtier.cost.batch_step_s`` of that mixed
  batch: per pipeline stage the weights and every byte of KV attention reads, the
  batch's compute and any streamed KV, the slowest setting the time, plus a per-layer
  overhead; a token passes the ``pp`` stages in turn. The step that finishes a prompt
  samples its first token; decode steps change as the batch does. Steps with only
  decodes repeat unchanged until a turn ends, room runs out, a fetch lands or a request
  arrives, and are taken together (the step time at the middle of the window).
* **Admission and preemption (memory).** A request is admitted when its KV (the
  context's blocks, cached ones promoted and new ones) can be allocated in the compute
  tier next to what the running requests hold; otherwise it waits, and so does every
  request behind it (FCFS). When the running requests cannot grow by a token, the newest
  is preempted: by recompute (its KV dropped; it queues first and prefills its whole
  context again, vLLM's default) or by swap (``preemption="swap"``: its KV written to
  tier 1 over that link, and read back before it resumes).
* **Residency.** With ``residency="auto"`` (the default) nothing streams while it fits:
  only a context larger than the compute tier's whole KV room runs, alone, holding that
  room and reading the rest over tier 1's path at every step. ``residency="stream"``
  admits without waiting and streams whatever does not fit next to the others.
* **Lookup and plan.** At its first admission a request's blocks go through the replay
  core (``kvtier._kernels.replay``): the same policy kernels, hits promoted to the
  compute tier, misses admitted there, victims demoted down the chain or dropped. A
  request's row is its input blocks followed by the blocks its output completes (taken
  from the session's next turn), so decode-generated KV is found by the next turn. The
  planner (``kvtier.planners``) chooses per prefix block to fetch or recompute, with each
  link's earlier transfers as its busy time; fetches are booked on the replica's links
  and the request computes once its KV has landed (with ``layerwise``, once the first
  layer's share has: vLLM's connectors load before the forward; LMCache's layer-wise mode
  overlaps them). The recomputed blocks and the new tokens (at least one) are its prefill.
* **Write-backs.** Demotions are written down their tier's path in the background.

TTFT = first token - ready; TPOT = (last token - first token) / (output tokens - 1).
Everything is deterministic: the same trace, target and config give the same result,
bit for bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import numpy as np

from kvtier._kernels.hashtable import next_use_index
from kvtier._kernels.policy import NEVER
from kvtier._kernels.replay import cache_state
from kvtier.cost import attention_flops, recompute_time_s
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.policies import POLICIES, KernelPolicy
from kvtier.planners import PLANNERS
from kvtier.replay import densify, policy_state, recompute_cost_per_byte
from kvtier._kernels import sim as _k
from kvtier._kernels import timing as _kt
from kvtier.sim.metrics import SimResult
from kvtier.sim.resources import replica_arrays
from kvtier.validation import check_bool, check_choice, check_int, check_number
from kvtier.targets import HardwareTarget
from kvtier.traces import RELATION_SEQUENCE, Trace

PLANNER_CODES = {
    "always-fetch": _kt.PLAN_ALWAYS_FETCH,
    "always-recompute": _kt.PLAN_ALWAYS_RECOMPUTE,
    "cost-optimal": _kt.PLAN_COST_OPTIMAL,
    "threshold": _kt.PLAN_THRESHOLD,
}


PREEMPTION_MODES = ("recompute", "swap")
RESIDENCY_MODES = ("auto", "stream")
ROUTING_MODES = ("session", "round-robin")


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """What to simulate besides the trace and target.

    ``policy``: eviction policy of every tier (registry name). ``planner``: recompute-vs-
    fetch planner (``always-fetch``, ``always-recompute``, ``cost-optimal``,
    ``threshold`` with ``threshold_tokens``). ``closed_loop``: re-time dependent requests
    from simulated completions (ignored when the trace has no dependencies).
    ``layerwise``: a request computes once the first layer's share of its fetch has landed
    (and the planner prices that overlap). The scheduler, per replica:
    ``max_num_batched_tokens`` and ``max_num_seqs`` per step (vLLM's names and defaults
    for its OpenAI server on large GPUs), ``chunked_prefill``, ``preemption``
    (``recompute`` or ``swap``), ``residency`` (``auto``: wait for room, stream only a
    context larger than the compute tier; ``stream``: never wait, stream what does not
    fit), ``routing`` (``session`` or ``round-robin``). ``decode_layer_latency_s``
    overrides the target family's fixed time per layer per step (None keeps it).
    ``prefill_replicas`` > 0 disaggregates serving (the Mooncake / Dynamo design): that many
    replicas only prefill, the others decode, and each prompt's KV moves from one to the
    other at ``kv_transfer_bw_bytes_per_s`` per replica (default: Mooncake's transfer engine,
    190 GB/s measured on 8 x 400 Gb/s, per 8 chips) with ``kv_transfer_latency_s`` each.
    """

    policy: str = "lru"
    planner: str = "cost-optimal"
    closed_loop: bool = True
    layerwise: bool = True
    threshold_tokens: int = 256
    decode_layer_latency_s: float | None = None
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    chunked_prefill: bool = True
    preemption: str = "recompute"
    residency: str = "auto"
    routing: str = "session"
    prefill_replicas: int = 0
    kv_transfer_bw_bytes_per_s: float | None = None
    kv_transfer_latency_s: float = 3e-6

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UnknownNameError(f"SimConfig.policy: got {self.policy!r}, expected one of {sorted(POLICIES)}")
        if not issubclass(POLICIES[self.policy], KernelPolicy):
            raise ConfigError(f"SimConfig.policy: {self.policy!r} has no kernels, so the simulator cannot run it")
        if self.planner not in PLANNER_CODES or self.planner not in PLANNERS:
            raise UnknownNameError(f"SimConfig.planner: got {self.planner!r}, expected one of {sorted(PLANNER_CODES)}")
        for name in ("closed_loop", "layerwise", "chunked_prefill"):
            check_bool(getattr(self, name), f"SimConfig.{name}")
        if self.decode_layer_latency_s is not None:
            check_number(self.decode_layer_latency_s, "SimConfig.decode_layer_latency_s", minimum=0, maximum=1)
        check_int(self.threshold_tokens, "SimConfig.threshold_tokens", minimum=0)
        check_int(self.max_num_batched_tokens, "SimConfig.max_num_batched_tokens", minimum=1)
        check_int(self.max_num_seqs, "SimConfig.max_num_seqs", minimum=1)
        check_choice(self.preemption, "SimConfig.preemption", PREEMPTION_MODES)
        check_choice(self.residency, "SimConfig.residency", RESIDENCY_MODES)
        check_choice(self.routing, "SimConfig.routing", ROUTING_MODES)
        check_int(self.prefill_replicas, "SimConfig.prefill_replicas", minimum=0)
        if self.kv_transfer_bw_bytes_per_s is not None:
            check_number(self.kv_transfer_bw_bytes_per_s, "SimConfig.kv_transfer_bw_bytes_per_s", minimum=0,
                         min_exclusive=True)
        check_number(self.kv_transfer_latency_s, "SimConfig.kv_transfer_latency_s", minimum=0, maximum=1)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PreparedTrace:
    """A trace turned into the kernel's arrays (shared by every simulation of it).

    ``offsets``/``ids``: per request, its input blocks then the blocks its output
    completes, as dense ids (the cache's access rows). ``n_price``: whole input blocks
    (the prefix the planner prices). Dependencies reversed into a children CSR."""

    trace: Trace
    offsets: np.ndarray
    ids: np.ndarray
    n_unique: int
    n_price: np.ndarray
    n_input_blocks: np.ndarray
    timestamps_ns: np.ndarray
    dep_count: np.ndarray
    child_offsets: np.ndarray
    child_rows: np.ndarray
    child_delay_ns: np.ndarray
    child_dispatch: np.ndarray
    next_use: np.ndarray  # per access in row order (Belady's future); computed on demand

    @property
    def num_requests(self) -> int:
        return self.trace.num_requests


def output_blocks(trace: Trace) -> list[np.ndarray]:
    """Per request, the block ids its output tokens complete: the blocks of the session's
    next turn (its ``sequence`` dependant) covering tokens ``[in // B, (in + out) // B)``,
    when that turn continues this one's context (its block before them is this one's);
    empty otherwise."""
    n = trace.num_requests
    out = [np.zeros(0, np.uint64)] * n
    if not trace.has_dependencies:
        return out
    B = trace.block_tokens
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(trace.dep_offsets))
    seq = trace.dep_relations == RELATION_SEQUENCE
    for dst, src in zip(rows[seq].tolist(), trace.dep_requests[seq].tolist()):
        if out[src].shape[0]:
            continue
        lo = int(trace.input_lengths[src]) // B
        hi = (int(trace.input_lengths[src]) + int(trace.output_lengths[src])) // B
        db = trace.blocks(dst)
        sb = trace.blocks(src)
        if hi <= lo or db.shape[0] < hi or sb.shape[0] < lo:
            continue
        if lo > 0 and db[lo - 1] != sb[lo - 1]:
            continue
        out[src] = db[lo:hi]
    return out


def prepare_trace(trace: Trace) -> PreparedTrace:
    """Validate ``trace`` and build the arrays every simulation of it shares."""
    if not isinstance(trace, Trace):
        raise ConfigError(f"trace: got {type(trace).__name__}, expected a kvtier.traces.Trace")
    if trace.num_requests == 0:
        raise ConfigError("trace: got 0 requests, expected at least one")
    n = trace.num_requests
    B = trace.block_tokens
    extra = output_blocks(trace)
    n_in = np.diff(trace.block_offsets)
    n_out = np.fromiter((e.shape[0] for e in extra), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(n_in + n_out, out=offsets[1:])
    parts = []
    for i in range(n):
        parts.append(trace.block_hashes[trace.block_offsets[i]: trace.block_offsets[i + 1]])
        if n_out[i]:
            parts.append(extra[i])
    hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    ids, unique = densify(hashes)
    n_price = np.minimum(n_in, trace.input_lengths // B).astype(np.int64)
    ts = np.round(trace.timestamps_ms * 1e6).astype(np.int64)
    dep_count = np.diff(trace.dep_offsets).astype(np.int64)
    m = trace.dep_requests.shape[0]
    if m:
        rows = np.repeat(np.arange(n, dtype=np.int64), dep_count)
        order = np.argsort(trace.dep_requests, kind="stable")
        child_rows = rows[order]
        child_offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(trace.dep_requests, minlength=n), out=child_offsets[1:])
        child_delay = np.round(trace.dep_delay_ms[order] * 1e6).astype(np.int64)
        child_dispatch = trace.dep_triggers[order] == 1
    else:
        child_rows = np.zeros(0, np.int64)
        child_offsets = np.zeros(n + 1, np.int64)
        child_delay = np.zeros(0, np.int64)
        child_dispatch = np.zeros(0, np.bool_)
    return PreparedTrace(trace=trace, offsets=offsets, ids=ids, n_unique=int(unique.shape[0]), n_price=n_price,
                         n_input_blocks=n_in.astype(np.int64), timestamps_ns=ts, dep_count=dep_count,
                         child_offsets=child_offsets, child_rows=child_rows, child_delay_ns=child_delay,
                         child_dispatch=child_dispatch, next_use=np.empty(0, np.int64))


def _next_use(p: PreparedTrace) -> np.ndarray:
    if p.next_use.shape[0] != p.ids.shape[0]:
        object.__setattr__(p, "next_use", next_use_index(p.ids, p.n_unique, NEVER))
    return p.next_use


def cache_slots(target, block_bytes: int, n_unique: int) -> list[int]:
    """Blocks each tier of one replica holds (``target``: a ``HardwareTarget``, taken as
    one replica, or ``ReplicaArrays``): KV capacity after weights // block bytes, at least
    one, and at most the trace's distinct blocks (a tier that holds them all never
    evicts, so a larger one decides the same)."""
    caps = target.replica().kv_capacity_bytes if isinstance(target, HardwareTarget) else target.kv_capacity_bytes
    return [max(1, min(int(c) // block_bytes, max(1, n_unique))) for c in caps]


def planner_subsets(num_tiers: int) -> np.ndarray:
    """Bitmasks of lower tiers in the cost-optimal planner's order (more tiers first)."""
    lower = list(range(1, num_tiers))
    out = []
    for r in range(len(lower), -1, -1):
        for subset in itertools.combinations(lower, r):
            out.append(sum(1 << t for t in subset))
    return np.asarray(out, dtype=np.int64)


def session_ranks(trace: Trace) -> np.ndarray:
    """Per request, its session's rank for session affinity: sessions (a sub-agent's under
    its parent's) in order of first appearance; the engine deals the ranks round the
    replicas (rank mod replicas)."""
    root = np.where(trace.parent_session_ids >= 0, trace.parent_session_ids, trace.session_ids)
    _, first, inverse = np.unique(root, return_index=True, return_inverse=True)
    rank = np.empty(first.shape[0], np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    return rank[inverse].astype(np.int64)


#: Mooncake's transfer engine: 190 GB/s measured on 8 x 400 Gb/s (hardware.json
#: generic_tiers mooncake_transfer_engine_8x400g), per chip.
_XFER_PER_CHIP = 190e9 / 8


def simulate(trace, target: HardwareTarget, config: SimConfig | None = None, **overrides) -> SimResult:
    """Simulate ``trace`` (a ``Trace`` or a ``PreparedTrace``) on ``target`` (a
    ``HardwareTarget`` with its model placed, served as ``target.serving`` says).
    ``config`` or keyword overrides (``policy="arc"``) choose policy, planner and
    scheduler. Returns a ``SimResult``."""
    if config is None:
        config = SimConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config: got {type(config).__name__}, expected a SimConfig")
    p = trace if isinstance(trace, PreparedTrace) else prepare_trace(trace)
    tr = p.trace
    ra = replica_arrays(target, layer_overhead_s=config.decode_layer_latency_s)
    st = ra.stage
    model = target.model
    B = tr.block_tokens
    n = tr.num_requests
    T = len(ra.tier_names)
    R = ra.replicas
    block_bytes = int(model.block_bytes(B))

    t_wall = time.perf_counter()
    caps = cache_slots(ra, block_bytes, p.n_unique)
    I, K, F, M = policy_state([config.policy] * len(caps), caps)
    caps_a = np.asarray(caps, np.int64)
    state = cache_state(caps_a, True, config.policy == "belady", p.n_unique)  # one replica's, by dense id
    next_use = _next_use(p) if config.policy == "belady" else np.empty(0, np.int64)
    max_depth = int(np.max(np.diff(p.offsets))) if n else 0
    costs = (recompute_cost_per_byte(model, B, max(0, max_depth - 1)) if config.policy == "cost-aware"
             else np.ones(1, np.float64))

    def stack(a):  # one copy per replica
        return np.repeat(np.asarray(a)[None], R, axis=0)

    so, free, free_top, loc_vals, loc_shift, slot_key, slot_tier, slot_depth, slot_next, chain = state
    counters = np.zeros((T, 8), np.int64)
    cache = _k.SimCache(caps_a, stack(I), stack(K), stack(F), stack(M), stack(so), stack(free), stack(free_top),
                        stack(loc_vals), loc_shift, stack(slot_key), stack(slot_tier), stack(slot_depth),
                        stack(slot_next), stack(chain), costs, counters)

    inp = tr.input_lengths.astype(np.int64)
    outp = tr.output_lengths.astype(np.int64)
    cached = p.n_price * B
    new_tokens = np.maximum(inp - cached, 1)
    new_f, cached_f = new_tokens.astype(np.float64), cached.astype(np.float64)
    new_plan = np.asarray(recompute_time_s(model, target, new_f, cached_f), dtype=np.float64).reshape(-1)
    new_attn = np.asarray(attention_flops(model, new_f, cached_f), dtype=np.float64).reshape(-1) / st.attn_flops_per_s
    dmax = int(p.n_price.max()) + 1
    depth = np.arange(dmax, dtype=np.float64) * B
    block_plan = np.asarray(recompute_time_s(model, target, np.full(dmax, float(B)), depth), np.float64).reshape(-1)
    block_attn = (np.asarray(attention_flops(model, np.full(dmax, float(B)), depth), np.float64).reshape(-1)
                  / st.attn_flops_per_s)
    closed = config.closed_loop and tr.has_dependencies
    if closed:
        dep_count = p.dep_count
        ready0 = np.where(dep_count == 0, p.timestamps_ns, 0).astype(np.int64)
        child = (p.child_offsets, p.child_rows, p.child_delay_ns, p.child_dispatch)
    else:
        dep_count = np.zeros(n, np.int64)
        ready0 = p.timestamps_ns.copy()
        child = (np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.bool_))
    route = session_ranks(tr) if config.routing == "session" else np.full(n, -1, np.int64)
    P = int(config.prefill_replicas)
    if P and P >= R:
        raise ConfigError(f"SimConfig.prefill_replicas: got {P}, expected fewer than the target's {R} replicas "
                          "(some must decode)")
    xfer_bw = (float(config.kv_transfer_bw_bytes_per_s) if config.kv_transfer_bw_bytes_per_s is not None
               else _XFER_PER_CHIP * ra.tp * ra.pp)
    trace_rec = _k.SimTrace(p.offsets, p.ids, p.n_price, inp, outp, ready0, dep_count, *child, next_use, route,
                            new_plan, new_attn)
    L = len(ra.link_names)
    hw = _k.SimHardware(ra.tier_bw, ra.tier_lat, ra.tier_link, ra.tier_wbw, ra.tier_wlat, L,
                        float(ra.kv_capacity_bytes[0]), float(block_bytes), float(model.kv_bytes_per_token), st,
                        block_plan, block_attn, float(model.attention_flops_coef) / st.attn_flops_per_s)
    sched = _k.SimSchedule(R, int(config.max_num_batched_tokens), int(config.max_num_seqs),
                           bool(config.chunked_prefill), config.preemption == "swap", config.residency == "stream",
                           PLANNER_CODES[config.planner], planner_subsets(T), int(config.threshold_tokens),
                           bool(config.layerwise), B, P, xfer_bw, float(config.kv_transfer_latency_s))
    out_i = np.zeros((n, _k.NUM_I_OUT), np.int64)
    out_i[:, _k.O_FIRST_TOKEN] = -1
    out_i[:, _k.O_END] = -1
    out = _k.SimOutput(out_i, np.zeros((n, _k.NUM_F_OUT), np.float64), np.zeros((n, T), np.int64),
                       np.zeros((n, T), np.int64), np.zeros((n, T), np.int64), np.zeros((max(L, 1), 2), np.float64),
                       np.zeros((max(L, 1), 2), np.int64), np.full(n, -1, np.int64))
    n_done = _k.simulate_kernel(trace_rec, hw, sched, cache, out)
    seconds = time.perf_counter() - t_wall
    if n_done != n:
        raise ConfigError(f"trace: {n - n_done} requests never became ready (a dependency cycle?)")
    return SimResult.build(
        trace=tr, target=target, config=config, closed_loop=bool(closed), block_bytes=block_bytes, caps=caps,
        tier_names=ra.tier_names, link_names=ra.link_names, out=out, counters=counters, new_tokens=new_tokens,
        wall_s=seconds, replicas=R, tp=ra.tp, pp=ra.pp,
    )


def price_plan(tier_index, *, target: HardwareTarget, planner: str, block_tokens: int, new_tokens: int,
               link_busy_s: dict | None = None, layerwise: bool = True, threshold_tokens: int = 256):
    """The kernel's pricing of one request on one replica, for checking it against
    ``kvtier.planners``: returns ``(ttft_s, split_block, fetched_tiers)`` for
    ``tier_index`` (per prefix block, -1 missing) with ``new_tokens`` after the prefix."""
    ra = replica_arrays(target)
    if planner not in PLANNER_CODES:
        raise UnknownNameError(f"planner: got {planner!r}, expected one of {sorted(PLANNER_CODES)}")
    ti = np.asarray(tier_index, dtype=np.int64).reshape(-1)
    T = len(ra.tier_names)
    if ti.size and (ti.min() < -1 or ti.max() >= T):
        raise ConfigError(f"tier_index: got values outside -1..{T - 1}")
    model = target.model
    n = int(ti.size)
    r = np.asarray(recompute_time_s(model, target, np.full(n + 1, float(block_tokens)),
                                    np.arange(n + 1, dtype=np.float64) * block_tokens), dtype=np.float64)
    c_new = float(recompute_time_s(model, target, new_tokens, n * block_tokens))
    busy = np.zeros(max(1, len(ra.link_names)))
    for name, v in (link_busy_s or {}).items():
        busy[ra.link_names.index(name)] = float(v)
    scratch = np.empty((5, n + 1))
    cnt = np.empty((T, n + 1), np.int64)
    ttft, split, mask = _kt.price_request(np.append(ti, 0), n, PLANNER_CODES[planner], planner_subsets(T),
                                         threshold_tokens, block_tokens, r, c_new, ra.tier_bw, ra.tier_lat,
                                         ra.tier_link, len(ra.link_names), busy, float(model.block_bytes(block_tokens)),
                                         model.num_layers, layerwise, cnt, scratch)
    return float(ttft), int(split), frozenset(t for t in range(1, T) if (mask >> t) & 1)


def warm_up() -> float:
    """Compile (or load from numba's disk cache) the simulation kernels on a tiny trace;
    returns the seconds it took. The suite calls it once before starting worker processes
    so that they load the compiled code instead of each compiling it."""
    from kvtier.targets import LinkSpec, TargetTier
    from kvtier.model import ModelSpec
    from kvtier.traces import TraceBuilder

    t0 = time.perf_counter()
    model = ModelSpec(name="warm-up", num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=4, active_params=0.5)
    tiers = (TargetTier(name="a", kind="hbm", capacity_bytes=4096, read_bw_bytes_per_s=1e12, write_bw_bytes_per_s=1e12),
             TargetTier(name="b", kind="dram", capacity_bytes=1 << 20, read_bw_bytes_per_s=1e10,
                        write_bw_bytes_per_s=1e10, link="l"))
    target = HardwareTarget(name="warm-up", tiers=tiers, links=(LinkSpec(name="l", read_bw_bytes_per_s=1e10,
                                                                          write_bw_bytes_per_s=1e10),),
                            compute_flops=1e12, model=model)
    b = TraceBuilder()
    for i in range(3):
        b.add(timestamp_ms=float(i), session_id=0, input_length=8, output_length=2, block_hashes=[1, 2 + i],
              deps=[(i - 1, 1.0, 0, RELATION_SEQUENCE)] if i else [])
    simulate(b.build(block_tokens=4), target)
    return time.perf_counter() - t0
