"""What a simulation measured: per request, and aggregated; plain data for JSON and CSV.

Per request (``SimResult.requests``, numpy arrays, trace row order): ``dispatch_s``,
``ttft_s`` (NaN when not served), ``tpot_s`` (time per output token after the first),
``queue_s`` (ready to first admitted: waiting for room, a sequence slot or the step
budget), ``room_wait_s`` (of which at the head of the queue waiting for compute-tier
room), ``preemptions``, ``swap_bytes``, ``replica``, ``decode_tokens_per_s``,
``context_tokens``, ``new_tokens``, ``recomputed_tokens`` (prefix blocks recomputed x
block tokens), ``hit_blocks_<tier>`` (input blocks found in each tier),
``fetched_bytes_<tier>``, ``end_s`` (last token), ``turn_s`` (ready to last token), ``plan_ttft_s`` (the planner's
predicted TTFT once admitted), ``prefill_compute_s`` (its prefill's compute alone),
``regime`` (0 resident, 1 streamed, 2 overflow), ``streamed_bytes_per_token``,
``occupancy_<tier>`` (blocks held after its lookup).

Aggregates (``SimResult.summary``): TTFT, TPOT, turn and queue percentiles (with the
sample counts behind them: a p99 of fewer than 100 samples is interpolated), hit ratio
per tier, bytes per link and direction, link utilisation, regime shares, preemptions,
throughput, the deployment.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from kvtier._kernels import sim as _k

NS = 1e9


def _pct(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    return float(np.percentile(x, q))


def json_clean(v):
    """JSON-safe scalars: NaN/inf become None."""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {k: json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


@dataclass
class SimResult:
    """One simulation: identification, ``summary`` (scalars and small dicts) and
    ``requests`` (per-request arrays). ``wall_s`` is the only non-deterministic field."""

    target: str
    model: str
    policy: str
    planner: str
    closed_loop: bool
    tier_names: tuple[str, ...]
    link_names: tuple[str, ...]
    summary: dict
    requests: dict = field(repr=False)
    order: np.ndarray = field(repr=False)  # rows in dispatch order
    wall_s: float = 0.0

    @classmethod
    def build(cls, *, trace, target, config, closed_loop, block_bytes, caps, tier_names, link_names, out, counters,
              new_tokens, wall_s, replicas, tp, pp):
        out_i, out_f = out.req_i, out.req_f
        tier_hits, fetch_blocks, occupancy = out.tier_hits, out.fetch_blocks, out.occupancy
        link_bytes, link_busy_ns = out.link_bytes[:len(link_names)], out.link_busy_ns[:len(link_names)]
        B = trace.block_tokens
        served = out_i[:, _k.O_REGIME] != _k.REGIME_OVERFLOW
        first = out_i[:, _k.O_FIRST_TOKEN]
        disp = out_i[:, _k.O_DISPATCH]
        end = out_i[:, _k.O_END]
        ttft = np.where(served, (first - disp) / NS, np.nan)
        queue = (out_i[:, _k.O_START] - disp) / NS
        dec_s = np.where(served, (end - first) / NS, np.nan)
        outp = trace.output_lengths
        with np.errstate(divide="ignore", invalid="ignore"):
            tps = np.where(served & (dec_s > 0), (outp - 1) / dec_s, np.nan)
        tpot = np.where(served & (outp > 1), out_f[:, _k.F_STEP], np.nan)
        turn = np.where(served, (end - disp) / NS, np.nan)
        req = {
            "dispatch_s": disp / NS,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "queue_s": queue,
            "room_wait_s": out_i[:, _k.O_ROOM_WAIT] / NS,
            "preemptions": out_i[:, _k.O_PREEMPTIONS],
            "swap_bytes": out_f[:, _k.F_SWAP_BYTES],
            "transfer_bytes": out_f[:, _k.F_XFER_BYTES],
            "replica": out_i[:, _k.O_REPLICA],
            "decode_tokens_per_s": tps,
            "end_s": np.where(served, end / NS, np.nan),
            "turn_s": turn,
            "plan_ttft_s": out_f[:, _k.F_PLAN_TTFT],
            "prefill_compute_s": out_f[:, _k.F_COMPUTE],
            "context_tokens": trace.input_lengths.astype(np.int64),
            "output_tokens": outp.astype(np.int64),
            "new_tokens": np.asarray(new_tokens, np.int64),
            "recomputed_tokens": out_i[:, _k.O_RECOMPUTE_BLOCKS] * B,
            "missing_blocks": out_i[:, _k.O_MISSING_BLOCKS],
            "regime": out_i[:, _k.O_REGIME].astype(np.int8),
            "streamed_bytes_per_token": out_i[:, _k.O_STREAM_BYTES],
        }
        for t, name in enumerate(tier_names):
            req[f"hit_blocks_{name}"] = tier_hits[:, t]
            req[f"fetched_bytes_{name}"] = fetch_blocks[:, t] * block_bytes
            req[f"occupancy_{name}"] = occupancy[:, t]
        n = trace.num_requests
        prefix_blocks = int(np.minimum(np.diff(trace.block_offsets), trace.input_lengths // B).sum())
        makespan = (max(int(end.max()), int(disp.max())) - int(disp.min())) / NS if n else 0.0
        regimes = out_i[:, _k.O_REGIME]
        rep = target.replica()
        summary = {
            "requests": n,
            "served": int(served.sum()),
            "overflow_requests": int((~served).sum()),
            "block_tokens": B,
            "block_bytes": block_bytes,
            "deployment": {"tp": tp, "pp": pp, "replicas": replicas, "chips": target.chips,
                           "prefill_replicas": int(config.prefill_replicas),
                           "chips_used": tp * pp * replicas, "estimate": bool(rep.serving.estimate),
                           "weights_bytes_per_param": target.weights_bytes_per_param,
                           "kv_bytes_per_element": target.model.dtype_bytes},
            "cache_slots": {name: int(c) for name, c in zip(tier_names, caps)},
            "kv_capacity_bytes": {name: int(c) for name, c in zip(tier_names, rep.kv_capacity_bytes)},
            "ttft_samples": int(np.isfinite(ttft).sum()),
            "ttft_p50_s": _pct(ttft, 50), "ttft_p90_s": _pct(ttft, 90), "ttft_p99_s": _pct(ttft, 99),
            "ttft_mean_s": float(np.nanmean(ttft)) if served.any() else math.nan,
            "tpot_samples": int(np.isfinite(tpot).sum()),
            "tpot_p50_s": _pct(tpot, 50), "tpot_p99_s": _pct(tpot, 99),
            "turn_p50_s": _pct(turn, 50), "turn_p99_s": _pct(turn, 99),
            "queue_p50_s": _pct(queue, 50), "queue_p99_s": _pct(queue, 99),
            "room_wait_total_s": float(req["room_wait_s"].sum()),
            "preemptions": int(req["preemptions"].sum()),
            "preempted_requests": int((req["preemptions"] > 0).sum()),
            "swap_bytes": float(req["swap_bytes"].sum()),
            "prefill_decode_transfer_bytes": float(req["transfer_bytes"].sum()),
            "decode_tokens_per_s_p50": _pct(tps, 50),
            "decode_tokens_per_s_mean": float(np.nanmean(tps)) if np.isfinite(tps).any() else math.nan,
            "hit_ratio": {name: float(tier_hits[:, t].sum() / prefix_blocks) if prefix_blocks else 0.0
                          for t, name in enumerate(tier_names)},
            "miss_ratio": float(out_i[:, _k.O_MISSING_BLOCKS].sum() / prefix_blocks) if prefix_blocks else 0.0,
            "fetched_bytes": {name: int(fetch_blocks[:, t].sum()) * block_bytes for t, name in enumerate(tier_names)},
            "recomputed_tokens": int(req["recomputed_tokens"].sum()),
            "new_tokens": int(req["new_tokens"].sum()),
            "output_tokens": int(outp.sum()),
            "link_read_bytes": {name: float(link_bytes[i, 0]) for i, name in enumerate(link_names)},
            "link_write_bytes": {name: float(link_bytes[i, 1]) for i, name in enumerate(link_names)},
            "link_read_utilisation": {name: float(link_busy_ns[i, 0] / NS / makespan / replicas) if makespan else 0.0
                                      for i, name in enumerate(link_names)},
            "regime_share": {nm: float(np.mean(regimes == k)) for k, nm in enumerate(("resident", "streamed", "overflow"))},
            "evictions": {name: int(counters[t, 4]) for t, name in enumerate(tier_names)},
            "demotions": {name: int(counters[t, 5]) for t, name in enumerate(tier_names)},
            "promotions": {name: int(counters[t, 6]) for t, name in enumerate(tier_names)},
            "block_hits": {name: int(counters[t, 0]) for t, name in enumerate(tier_names)},
            "makespan_s": makespan,
            "throughput_output_tokens_per_s": float(outp[served].sum() / makespan) if makespan else 0.0,
            "peak_occupancy_blocks": {name: int(occupancy[:, t].max()) if n else 0 for t, name in enumerate(tier_names)},
        }
        return cls(target=target.name, model=target.model.name, policy=config.policy, planner=config.planner,
                   closed_loop=closed_loop, tier_names=tuple(tier_names), link_names=tuple(link_names),
                   summary=summary, requests=req, order=out.order, wall_s=wall_s)

    # ------------------------------------------------------------------ serialisation
    def key(self) -> dict:
        return {"target": self.target, "model": self.model, "policy": self.policy, "planner": self.planner,
                "closed_loop": self.closed_loop}

    def as_dict(self, *, per_request: bool = False, timing: bool = False) -> dict:
        """Plain data (JSON-safe: NaN becomes null), deterministic unless ``timing`` adds
        ``wall_s``. ``per_request`` adds the arrays."""
        d = {**self.key(), "tiers": list(self.tier_names), "links": list(self.link_names),
             "summary": json_clean(self.summary)}
        if timing:
            d["wall_s"] = self.wall_s
        if per_request:
            d["requests"] = {k: json_clean(v.tolist()) for k, v in self.requests.items()}
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.as_dict(**kw), sort_keys=True)

    def flat_summary(self) -> dict:
        """One CSV row: the key and every summary scalar, dicts flattened as ``name.key``."""
        row = dict(self.key())
        for k, v in self.summary.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    row[f"{k}.{kk}"] = vv
            else:
                row[k] = v
        return row

    def requests_csv(self) -> str:
        """The per-request arrays as CSV text (one row per request, trace order)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        keys = list(self.requests)
        w.writerow(["row", *keys])
        cols = [self.requests[k] for k in keys]
        for i in range(len(cols[0])):
            w.writerow([i, *[repr(float(c[i])) if c.dtype.kind == "f" else int(c[i]) for c in cols]])
        return buf.getvalue()
