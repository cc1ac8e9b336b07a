"""The time-driven simulator: a trace's requests on one hardware target, deterministically.

Model (simulated clock in integer nanoseconds; never the wall clock):

* **Arrival.** Open loop: a request is ready at its trace timestamp. Closed loop (the
  default when the trace has dependencies): a request with dependencies is ready when each
  has completed (or been dispatched, per its trigger) plus its delay (the agent's tool
  wait); one without is ready at its timestamp. Ready requests are dispatched in
  (ready time, row) order.
* **Lookup and cache.** At dispatch the request's blocks go through the replay core
  (``kvtier._kernels.replay``): the same policy kernels, hits promoted to the compute
  tier, misses admitted there, victims demoted down the chain or dropped. A request's
  row is its input blocks followed by the blocks its output completes (taken from the
  session's next turn), so decode-generated KV is inserted and found by the next turn.
  The tier each input block was found in is what the planner prices.
* **Plan and prefill.** The compute engine serves prefills first-come first-served: a
  prefill starts when the engine is free (queue wait) and holds it until its first token.
  The planner (``kvtier.planners``'s schedule, priced in the kernel) chooses per
  block to fetch or recompute, with each link's earlier transfers as its busy time; the
  plan's fetches are booked on their links. TTFT = queue wait + the plan's TTFT. Prefix
  blocks are the request's whole blocks; the tokens after them (at least one, as engines
  recompute the last token) are new.
* **Residency.** A turn holds its whole KV (input + output) in the compute tier while it
  runs, next to what the other active turns hold (``kvtier.sim.residency``): resident,
  streamed (the part that does not fit is read over the next tier's link at every decode
  step, booked on that link) or, with no lower tier, waiting for room / overflow.
* **Decode (batching model).** Continuous batching: every active turn is in one decode
  batch. When a turn starts decoding, its per-token step time is the batch's step at
  that moment (``kvtier.cost.decode_step_time_s``'s roofline: weights read once, every
  sequence's KV from the compute tier, streamed KV over its link, one token of compute
  per sequence; the longest wins; plus ``decode_layer_latency_s`` per layer) and is held
  for its output tokens. Decode and prefill do not slow each other (a decode-priority /
  disaggregated approximation); a streamed turn also holds its link for the bytes it
  streams and cannot end before they arrive.
* **Write-backs.** Demotions caused by a request are written down their tier's path in
  the background (the write direction of the link), counted as bytes per link.
* Completion releases the session's next turn (closed loop).

Everything is deterministic: the same trace, target and config give the same result, bit
for bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import numpy as np

from kvtier._kernels.hashtable import next_use_index
from kvtier._kernels.policy import NEVER
from kvtier.cost import recompute_time_s
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.policies import POLICIES, KernelPolicy
from kvtier.planners import PLANNERS
from kvtier.replay import densify, policy_state, recompute_cost_per_byte
from kvtier._kernels import sim as _k
from kvtier._kernels import timing as _kt
from kvtier.sim.metrics import SimResult
from kvtier.sim.resources import target_arrays
from kvtier.validation import check_bool, check_int, check_number
from kvtier.targets import HardwareTarget
from kvtier.traces import RELATION_SEQUENCE, Trace

PLANNER_CODES = {
    "always-fetch": _kt.PLAN_ALWAYS_FETCH,
    "always-recompute": _kt.PLAN_ALWAYS_RECOMPUTE,
    "cost-optimal": _kt.PLAN_COST_OPTIMAL,
    "threshold": _kt.PLAN_THRESHOLD,
}


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """What to simulate besides the trace and target.

    ``policy``: eviction policy of every tier (registry name). ``planner``: recompute-vs-
    fetch planner (``always-fetch``, ``always-recompute``, ``cost-optimal``,
    ``threshold`` with ``threshold_tokens``). ``closed_loop``: re-time dependent requests
    from simulated completions (ignored when the trace has no dependencies).
    ``layerwise``: price loads as overlapping compute layer by layer (the planners'
    default). ``decode_layer_latency_s``: a fixed latency per layer added to every decode
    step (synchronisation and chip-to-chip hops that a bandwidth/compute roofline does not
    see); 0 keeps the step equal to ``kvtier.cost.decode_step_time_s``.
    """

    policy: str = "lru"
    planner: str = "cost-optimal"
    closed_loop: bool = True
    layerwise: bool = True
    threshold_tokens: int = 256
    decode_layer_latency_s: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UnknownNameError(f"SimConfig.policy: got {self.policy!r}, expected one of {sorted(POLICIES)}")
        if not issubclass(POLICIES[self.policy], KernelPolicy):
            raise ConfigError(f"SimConfig.policy: {self.policy!r} has no kernels, so the simulator cannot run it")
        if self.planner not in PLANNER_CODES or self.planner not in PLANNERS:
            raise UnknownNameError(f"SimConfig.planner: got {self.planner!r}, expected one of {sorted(PLANNER_CODES)}")
        for name in ("closed_loop", "layerwise"):
            check_bool(getattr(self, name), f"SimConfig.{name}")
        check_number(self.decode_layer_latency_s, "SimConfig.decode_layer_latency_s", minimum=0)
        check_int(self.threshold_tokens, "SimConfig.threshold_tokens", minimum=0)

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


def cache_slots(target: HardwareTarget, block_bytes: int, n_unique: int) -> list[int]:
    """Blocks each tier holds: KV capacity after weights // block bytes, at least one, and
    at most the trace's distinct blocks (a tier that holds them all never evicts, so a
    larger one decides the same)."""
    return [max(1, min(int(c) // block_bytes, max(1, n_unique))) for c in target.kv_capacity_bytes]


def planner_subsets(num_tiers: int) -> np.ndarray:
    """Bitmasks of lower tiers in the cost-optimal planner's order (more tiers first)."""
    lower = list(range(1, num_tiers))
    out = []
    for r in range(len(lower), -1, -1):
        for subset in itertools.combinations(lower, r):
            out.append(sum(1 << t for t in subset))
    return np.asarray(out, dtype=np.int64)


def simulate(trace, target: HardwareTarget, config: SimConfig | None = None, **overrides) -> SimResult:
    """Simulate ``trace`` (a ``Trace`` or a ``PreparedTrace``) on ``target`` (a
    ``HardwareTarget`` with its model placed). ``config`` or keyword overrides
    (``policy="arc"``) choose policy and planner. Returns a ``SimResult``."""
    if config is None:
        config = SimConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config: got {type(config).__name__}, expected a SimConfig")
    p = trace if isinstance(trace, PreparedTrace) else prepare_trace(trace)
    tr = p.trace
    ta = target_arrays(target)
    model = target.model
    B = tr.block_tokens
    n = tr.num_requests
    T = len(ta.tier_names)
    block_bytes = int(model.block_bytes(B))

    t_wall = time.perf_counter()
    caps = cache_slots(target, block_bytes, p.n_unique)
    I, K, F, M = policy_state([config.policy] * len(caps), caps)
    next_use = _next_use(p) if config.policy == "belady" else np.empty(0, np.int64)
    max_depth = int(np.max(np.diff(p.offsets))) if n else 0
    costs = (recompute_cost_per_byte(model, B, max(0, max_depth - 1)) if config.policy == "cost-aware"
             else np.ones(1, np.float64))
    inp = tr.input_lengths
    outp = tr.output_lengths
    cached = p.n_price * B
    new_tokens = np.maximum(inp - cached, 1)
    c_new = np.asarray(recompute_time_s(model, target, new_tokens.astype(np.float64), cached.astype(np.float64)),
                       dtype=np.float64).reshape(-1)
    dmax = int(p.n_price.max()) + 1
    r_depth = np.asarray(recompute_time_s(model, target, np.full(dmax, float(B)), np.arange(dmax, dtype=np.float64) * B),
                         dtype=np.float64).reshape(-1)
    ctx_bytes = np.asarray(model.kv_bytes(inp + outp), dtype=np.float64).reshape(-1)
    dec_flops = np.asarray(recompute_time_s(model, target, np.ones(n), (inp + outp / 2.0).astype(np.float64)),
                           dtype=np.float64).reshape(-1)
    closed = config.closed_loop and tr.has_dependencies
    if closed:
        dep_count = p.dep_count
        ready0 = np.where(dep_count == 0, p.timestamps_ns, 0).astype(np.int64)
        child = (p.child_offsets, p.child_rows, p.child_delay_ns, p.child_dispatch)
    else:
        dep_count = np.zeros(n, np.int64)
        ready0 = p.timestamps_ns.copy()
        child = (np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.bool_))
    num_links = len(ta.link_names)
    out_i = np.zeros((n, _k.NUM_I_OUT), np.int64)
    out_f = np.zeros((n, _k.NUM_F_OUT), np.float64)
    hits = np.zeros((n, T), np.int64)
    fetch = np.zeros((n, T), np.int64)
    occ = np.zeros((n, T), np.int64)
    counters = np.zeros((T, 8), np.int64)
    link_bytes = np.zeros((max(num_links, 1), 2), np.float64)
    link_busy = np.zeros((max(num_links, 1), 2), np.int64)
    order = np.full(n, -1, np.int64)
    n_done = _k.simulate_kernel(
        p.offsets, p.ids, p.n_price, next_use, costs, p.n_unique, np.asarray(caps, np.int64), I, K, F, M,
        ready0, dep_count, *child, c_new, r_depth, ctx_bytes, dec_flops, outp.astype(np.int64),
        ta.tier_bw, ta.tier_lat, ta.tier_link, ta.tier_wbw, ta.tier_wlat, num_links,
        float(ta.kv_capacity_bytes[0]), float(block_bytes), ta.weights_s, ta.weights_in_tier0, ta.bw0_bytes_per_s,
        1 if T > 1 else 0, model.num_layers, config.layerwise, PLANNER_CODES[config.planner],
        planner_subsets(T), int(config.threshold_tokens), B,
        float(config.decode_layer_latency_s) * model.num_layers,
        out_i, out_f, hits, fetch, occ, counters, link_bytes, link_busy, order)
    seconds = time.perf_counter() - t_wall
    if n_done != n:
        raise ConfigError(f"trace: {n - n_done} requests never became ready (a dependency cycle?)")
    return SimResult.build(
        trace=tr, target=target, config=config, closed_loop=bool(closed), block_bytes=block_bytes, caps=caps,
        tier_names=ta.tier_names, link_names=ta.link_names, out_i=out_i, out_f=out_f, tier_hits=hits,
        fetch_blocks=fetch, occupancy=occ, counters=counters, link_bytes=link_bytes[:num_links],
        link_busy_ns=link_busy[:num_links], order=order, new_tokens=new_tokens, wall_s=seconds,
    )


def price_plan(tier_index, *, target: HardwareTarget, planner: str, block_tokens: int, new_tokens: int,
               link_busy_s: dict | None = None, layerwise: bool = True, threshold_tokens: int = 256):
    """The kernel's pricing of one request, for checking it against ``kvtier.planners``:
    returns ``(ttft_s, split_block, fetched_tiers)`` for ``tier_index`` (per prefix block,
    -1 missing) with ``new_tokens`` after the prefix."""
    ta = target_arrays(target)
    if planner not in PLANNER_CODES:
        raise UnknownNameError(f"planner: got {planner!r}, expected one of {sorted(PLANNER_CODES)}")
    ti = np.asarray(tier_index, dtype=np.int64).reshape(-1)
    T = len(ta.tier_names)
    if ti.size and (ti.min() < -1 or ti.max() >= T):
        raise ConfigError(f"tier_index: got values outside -1..{T - 1}")
    model = target.model
    n = int(ti.size)
    r = np.asarray(recompute_time_s(model, target, np.full(n + 1, float(block_tokens)),
                                    np.arange(n + 1, dtype=np.float64) * block_tokens), dtype=np.float64)
    c_new = float(recompute_time_s(model, target, new_tokens, n * block_tokens))
    busy = np.zeros(max(1, len(ta.link_names)))
    for name, v in (link_busy_s or {}).items():
        busy[ta.link_names.index(name)] = float(v)
    scratch = np.empty((5, n + 1))
    cnt = np.empty((T, n + 1), np.int64)
    ttft, split, mask = _kt.price_request(np.append(ti, 0), n, PLANNER_CODES[planner], planner_subsets(T),
                                         threshold_tokens, block_tokens, r, c_new, ta.tier_bw, ta.tier_lat,
                                         ta.tier_link, len(ta.link_names), busy, float(model.block_bytes(block_tokens)),
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
