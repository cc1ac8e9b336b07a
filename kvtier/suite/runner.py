"""Run a suite: jobs over an executor, a progress bar, and a results folder.

A *job* is one (model, target, agent count, estimate variant): it generates (or reuses,
per process) the agent trace and runs every policy x planner on it, returning plain data.
Jobs go to an executor: anything with ``submit(fn, *args) -> concurrent.futures.Future``.
The default is a ``ProcessPoolExecutor``; a cluster engine plugs in the same way, e.g.
Dask's ``distributed.Client(...).get_executor()``, or for Ray a three-line adapter::

    class RayExecutor:
        def submit(self, fn, *args):
            return ray.remote(fn).remote(*args).future()   # a concurrent.futures.Future

Results are sorted by their key, so the files do not depend on completion order.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import functools
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from kvtier.errors import ConfigError
from kvtier.sim import prepare_trace, simulate
from kvtier.sim.metrics import json_clean
from kvtier.suite.config import SuiteConfig, is_target_file
from kvtier.targets import HardwareTarget, load_target
from kvtier.traces import generate_trace
from kvtier.validation import check_choice

#: Context-length bins of the per-context statistics (tokens; the last is open).
CONTEXT_BINS = (0, 16_384, 32_768, 65_536, 98_304, 131_072, 163_840, 196_608, 262_144)
VARIANTS = ("nominal", "low", "high")


# ---------------------------------------------------------------------------------------
# targets, including the ends of their estimate ranges
# ---------------------------------------------------------------------------------------

#: Fields where a larger value is better for the machine (the rest: smaller is better).
_BIGGER_IS_BETTER = {"capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "compute_flops", "efficiency"}


def _at_end(obj, end: str):
    """``obj`` with every estimated field at its pessimistic (``low``) or optimistic
    (``high``) end for the machine."""
    changes = {}
    for e in obj.estimates:
        good = e.high if e.field in _BIGGER_IS_BETTER else e.low
        bad = e.low if e.field in _BIGGER_IS_BETTER else e.high
        v = good if end == "high" else bad
        changes[e.field] = int(v) if e.field == "capacity_bytes" else float(v)
    return dataclasses.replace(obj, **changes) if changes else obj


def target_variant(target: HardwareTarget, variant: str) -> HardwareTarget:
    """``target`` as published (``nominal``), or with every estimate at its pessimistic
    (``low``) or optimistic (``high``) end. ``ConfigError`` if the weights no longer fit."""
    if check_choice(variant, "variant", VARIANTS) == "nominal":
        return target
    kw = {"tiers": tuple(_at_end(t, variant) for t in target.tiers),
          "links": tuple(_at_end(k, variant) for k in target.links)}
    if target.weights_memory is not None:
        kw["weights_memory"] = _at_end(target.weights_memory, variant)
    return _at_end(dataclasses.replace(target, **kw), variant)


def has_estimates(target: HardwareTarget) -> bool:
    parts = (target, *target.tiers, *target.links, *((target.weights_memory,) if target.weights_memory else ()))
    return any(p.estimates for p in parts)


def build_target(name: str, model: str, config: SuiteConfig, variant: str = "nominal") -> HardwareTarget:
    """The suite's target: the preset with ``model`` placed; per-chip presets scaled to
    ``config.chips[name]``, else HBM ones to at least ``config.min_chips`` chips (a node)
    and SRAM ones (wafers) to the fewest that hold the weights. A ``.toml``/``.json``
    entry is a user target file, loaded with ``model`` placed."""
    if is_target_file(name):
        return target_variant(load_target(config.target_path(name), model=model), variant)
    t = HardwareTarget.preset(name, model=model)
    floor = config.min_chips if t.tiers[0].kind != "sram" else 1
    want = config.chips.get(name, max(floor, t.chips))
    if want != t.chips:
        try:
            t = HardwareTarget.preset(name, model=model, chips=want)
        except ConfigError:
            pass  # a fixed-size system keeps its size
    return target_variant(t, variant)


# ---------------------------------------------------------------------------------------
# one job
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _prepared(trace_knobs: str):
    cfg = json.loads(trace_knobs)
    from kvtier.traces import CodingAgentConfig

    return prepare_trace(generate_trace(CodingAgentConfig(**cfg)))


def _pct(x, q):
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def derived_stats(res, long_context_tokens: int) -> dict:
    """Per-context-bin and per-turn statistics of one ``SimResult`` (small, plain data)."""
    r = res.requests
    ctx = r["context_tokens"]
    ttft = r["ttft_s"]
    turn = r["turn_s"]
    tps = r["decode_tokens_per_s"]
    streamed = r["regime"] == 1
    bins = []
    edges = list(CONTEXT_BINS) + [np.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (ctx >= lo) & (ctx < hi)
        if not m.any():
            continue
        bins.append({"lo": lo, "hi": None if hi == np.inf else hi, "requests": int(m.sum()),
                     "ttft_p50_s": _pct(ttft[m], 50), "ttft_p99_s": _pct(ttft[m], 99), "turn_p50_s": _pct(turn[m], 50),
                     "decode_tokens_per_s_p50": _pct(tps[m], 50), "streamed_share": float(streamed[m].mean())})
    names = res.tier_names
    prefix = sum(int(r[f"hit_blocks_{n}"].sum()) for n in names) + int(r["missing_blocks"].sum())
    bb = res.summary["block_bytes"]
    shares = {}
    if prefix:
        shares[f"resident ({names[0]})"] = float(r[f"hit_blocks_{names[0]}"].sum() / prefix)
        held_lower_recomputed = 0
        for n in names[1:]:
            fetched = int(r[f"fetched_bytes_{n}"].sum() // bb)
            shares[f"fetched from {n}"] = fetched / prefix
            held_lower_recomputed += int(r[f"hit_blocks_{n}"].sum()) - fetched
        shares["recomputed (held lower)"] = held_lower_recomputed / prefix
        shares["recomputed (evicted or new)"] = float(r["missing_blocks"].sum() / prefix)
    long = ctx >= long_context_tokens
    short = ctx < 32_768
    # occupancy over simulated time, 40 samples in dispatch order
    order = res.order
    idx = order[np.linspace(0, len(order) - 1, num=min(40, len(order))).astype(np.int64)] if len(order) else order
    occupancy = {"time_s": r["dispatch_s"][idx].tolist(),
                 **{n: (r[f"occupancy_{n}"][idx] * bb).tolist() for n in names}}
    return {
        "by_context": bins, "kv_source_share": shares,
        "long_requests": int(long.sum()), "turn_long_mean_s": float(np.nanmean(turn[long])) if long.any() else None,
        "ttft_long_p50_s": _pct(ttft[long], 50) if long.any() else None,
        "decode_long_tokens_per_s_p50": _pct(tps[long], 50) if long.any() else None,
        "streamed_long_share": float(streamed[long].mean()) if long.any() else None,
        "turn_short_mean_s": float(np.nanmean(turn[short])) if short.any() else None,
        "decode_short_tokens_per_s_p50": _pct(tps[short], 50) if short.any() else None,
        "occupancy_bytes": occupancy,
    }


def _meets_slo(res, slo_s: float) -> bool:
    s = res.summary
    return s["overflow_requests"] == 0 and s["ttft_p99_s"] == s["ttft_p99_s"] and s["ttft_p99_s"] <= slo_s


def run_capacity_job(job: dict) -> dict:
    """The largest agent count in ``1 .. capacity_max_agents`` whose p99 TTFT meets the
    SLO with every request served (headline policy/planner), by bisection (assumes more
    agents never help). Returns plain data with every probe."""
    cfg = SuiteConfig(**job["config"])
    out = {"kind": "capacity", "job": {k: job[k] for k in ("model", "target", "variant")}, "error": None}
    try:
        target = build_target(job["target"], job["model"], cfg, job["variant"])
    except ConfigError as e:
        out["error"] = str(e)
        return out
    probes = {}

    def ok(n: int) -> bool:
        if n not in probes:
            p = _prepared(json.dumps(cfg.trace_config(n).as_dict(), sort_keys=True))
            res = simulate(p, target, policy=cfg.headline_policy, planner=cfg.headline_planner,
                           decode_layer_latency_s=float(cfg.decode_layer_latency_s))
            probes[n] = (_meets_slo(res, cfg.slo_ttft_s), res.summary["ttft_p99_s"], res.summary["overflow_requests"])
        return probes[n][0]

    lo, hi = 0, int(cfg.capacity_max_agents)
    if ok(hi):
        lo = hi
    else:
        while hi - lo > 1:  # invariant: lo passes (or is 0), hi fails
            mid = (lo + hi) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid
    out["capacity"] = {"max_agents": lo, "power_w": target.power_w, "chips": target.chips,
                       "probes": [{"agents": n, "meets_slo": v[0], "ttft_p99_s": v[1], "overflow_requests": v[2]}
                                  for n, v in sorted(probes.items())]}
    return out


def run_job(job: dict) -> dict:
    """Run one job (plain data in, plain data out: safe to ship to another process)."""
    if job.get("kind") == "capacity":
        return run_capacity_job(job)
    t0 = time.perf_counter()
    cfg = SuiteConfig(**job["config"])
    out = {"job": {k: job[k] for k in ("model", "target", "agents", "variant")}, "results": [], "error": None}
    try:
        target = build_target(job["target"], job["model"], cfg, job["variant"])
    except ConfigError as e:
        out["error"] = str(e)
        return out
    trace_cfg = cfg.trace_config(job["agents"])
    p = _prepared(json.dumps(trace_cfg.as_dict(), sort_keys=True))
    out["target"] = {"name": target.name, "chips": target.chips, "power_w": target.power_w,
                     "kv_capacity_bytes": list(target.kv_capacity_bytes), "tiers": [t.name for t in target.tiers],
                     "tier_kinds": [t.kind for t in target.tiers], "weights_bytes": target.weights_bytes,
                     "has_estimates": has_estimates(target)}
    out["trace"] = {"requests": p.num_requests, "sessions": p.trace.num_sessions,
                    "max_context_tokens": int(p.trace.input_lengths.max()),
                    "block_accesses": int(p.trace.num_block_accesses)}
    for policy in job["policies"]:
        for planner in job["planners"]:
            res = simulate(p, target, policy=policy, planner=planner,
                           decode_layer_latency_s=float(cfg.decode_layer_latency_s))
            d = res.as_dict()
            d.update({"target": job["target"], "agents": job["agents"], "variant": job["variant"], "chips": target.chips,
                      "derived": json_clean(derived_stats(res, cfg.long_context_tokens)), "sim_wall_s": res.wall_s})
            out["results"].append(d)
    out["wall_s"] = time.perf_counter() - t0
    return out


def _deployment_key(t: HardwareTarget):
    return (t.chips, t.compute_flops, tuple((x.kind, x.capacity_bytes, x.read_bw_bytes_per_s) for x in t.tiers),
            tuple((k.read_bw_bytes_per_s, k.latency_s) for k in t.links), t.weights_bytes)


def duplicate_targets(config: SuiteConfig) -> dict:
    """``{(model, target): earlier_target}`` for targets that, with this model, build the
    same deployment as a target listed before them (``cerebras-cs3`` scaled to 4 wafers
    for a 70B model is ``cerebras-cs3x4``): they are not simulated twice."""
    out = {}
    for model in config.models:
        seen = {}
        for name in config.targets:
            try:
                key = _deployment_key(build_target(name, model, config))
            except ConfigError:
                continue
            if key in seen:
                out[(model, name)] = seen[key]
            else:
                seen[key] = name
    return out


def make_jobs(config: SuiteConfig) -> list[dict]:
    """Every job of ``config``: the full sweep at nominal figures, and the headline
    policy/planner at both estimate ends. A target that duplicates an earlier one for a
    model (``duplicate_targets``) is skipped."""
    cd = config.as_dict()
    jobs = []
    dups = duplicate_targets(config)
    for model in config.models:
        for target in config.targets:
            if (model, target) in dups:
                continue
            for agents in config.agents:
                jobs.append({"config": cd, "model": model, "target": target, "agents": agents, "variant": "nominal",
                             "policies": list(config.policies), "planners": list(config.planners)})
                if config.estimates:
                    for v in ("low", "high"):
                        jobs.append({"config": cd, "model": model, "target": target, "agents": agents, "variant": v,
                                     "policies": [config.headline_policy], "planners": [config.headline_planner]})
            if config.capacity_max_agents:
                for v in ("nominal", "low", "high") if config.estimates else ("nominal",):
                    jobs.append({"config": cd, "kind": "capacity", "model": model, "target": target, "variant": v,
                                 "agents": config.capacity_max_agents, "policies": [config.headline_policy],
                                 "planners": [config.headline_planner]})
    # biggest first, so the pool's tail is short
    jobs.sort(key=lambda j: (-j["agents"] * len(j["policies"]) * len(j["planners"]), j["model"], j["target"],
                             j["variant"], j.get("kind", "")))
    return jobs


# ---------------------------------------------------------------------------------------
# the whole suite
# ---------------------------------------------------------------------------------------


def git_revision() -> str:
    """The source tree's git revision (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_executor(workers: int | None = None) -> cf.Executor:
    """A process pool over ``workers`` processes (default: the CPUs this process may use)."""
    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return cf.ProcessPoolExecutor(max_workers=max(1, n))


def run_suite(config: SuiteConfig, *, executor=None, workers: int | None = None, progress: bool = True) -> dict:
    """Run every job of ``config``; returns the results document (plain data) that
    ``write_results`` saves. ``executor``: any object with ``submit(fn, *args)`` returning
    a ``concurrent.futures.Future`` (default: a process pool of ``workers``; ``workers=1``
    runs in this process)."""
    from kvtier import __version__

    jobs = make_jobs(config)
    t0 = time.perf_counter()
    outputs = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="kvtier bench", unit="job")
    if executor is None and workers == 1:
        for j in jobs:
            outputs.append(run_job(j))
            if bar:
                bar.update(1)
    else:
        own = executor is None
        if own:
            from kvtier.sim.engine import warm_up

            warm_up()  # compile once here; the workers load the cached code
        ex = default_executor(workers) if own else executor
        try:
            futures = [ex.submit(run_job, j) for j in jobs]
            for f in cf.as_completed(futures):
                outputs.append(f.result())
                if bar:
                    bar.update(1)
        finally:
            if own:
                ex.shutdown()
    if bar:
        bar.close()
    results, unavailable, targets, traces = [], [], {}, {}
    capacity = []
    for o in outputs:
        j = o["job"]
        if o.get("kind") == "capacity":
            if o["error"] is None:  # a target that cannot hold the model is reported by its sweep jobs
                capacity.append({**j, **o["capacity"]})
            continue
        if o["error"]:
            unavailable.append({**j, "reason": o["error"]})
            continue
        results.extend(o["results"])
        targets[f"{j['model']}|{j['target']}|{j['variant']}"] = o["target"]
        traces[str(j["agents"])] = o["trace"]
    for (model, target), same in sorted(duplicate_targets(config).items()):
        unavailable.append({"model": model, "target": target, "agents": None, "variant": "nominal",
                            "reason": f"the same deployment as {same} for this model (not simulated twice)"})
    results.sort(key=lambda r: (r["model"], r["target"], r["agents"], r["variant"], r["policy"], r["planner"]))
    unavailable.sort(key=lambda u: (u["model"], u["target"], u["agents"] or 0, u["variant"]))
    return {
        "meta": {"kvtier_version": __version__, "git_revision": git_revision(), "config": config.as_dict(),
                 "jobs": len(jobs), "simulations": len(results),
                 "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "timing": {"wall_s": time.perf_counter() - t0,
                   "sim_wall_s": float(sum(r["sim_wall_s"] for r in results))},
        "targets": dict(sorted(targets.items())),
        "traces": dict(sorted(traces.items(), key=lambda kv: int(kv[0]))),
        "results": results,
        "capacity": sorted(capacity, key=lambda c: (c["model"], c["target"], c["variant"])),
        "unavailable": unavailable,
    }
