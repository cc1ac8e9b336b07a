"""Run a suite: jobs over an executor, a progress bar, and a results folder.

A *job* is one (model, target, agent count, estimate variant): it generates (or reuses,
per process) the agent trace and runs every policy x planner on it, returning plain data.
Jobs go to an executor: anything with ``submit(fn, *args) -> concurrent.futures.Future``.
The default is a ``ProcessPoolExecutor``; ``make_executor("dask", address)`` gives Dask's
(``distributed.Client(address).get_executor()``, a ``LocalCluster`` without an address) and
``make_executor("ray", address)`` Ray's (``RayExecutor``); ``kvtier bench --executor dask
--scheduler tcp://host:8786`` runs a sweep on a cluster. The simulator is deterministic,
so any executor gives the same results bit for bit.

With a ``job_dir``, each job's output is written there as it arrives (one JSON file per
job, named by a hash of the job), and a rerun with ``resume`` reuses the files of the
jobs that finished: an interrupted sweep (Ctrl-C, a lost worker) keeps them.

Results are sorted by their key, so the files do not depend on completion order.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import functools
import hashlib
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
from kvtier.model import ModelSpec
from kvtier.targets import Deployment, HardwareTarget, load_target, precision_bytes, precision_name
from kvtier.traces import generate_trace
from kvtier.validation import check_choice

#: Context-length bins of the per-context statistics (tokens; the last is open).
CONTEXT_BINS = (0, 16_384, 32_768, 65_536, 98_304, 131_072, 163_840, 196_608, 262_144)

#: The sensitivity reruns of the headline: one assumption changed at a time.
SENSITIVITY = {
    "kv-precision": "KV cache at the other precision (bf16 <-> fp8)",
    "weights-precision": "weights at the other precision (bf16 <-> fp8)",
    "sram-link-half": "SRAM machines' link to their next tier (MemoryX, Groq host DRAM) at half its bandwidth",
    "sram-link-double": "SRAM machines' link to their next tier at twice its bandwidth",
    "mfu-low": "GEMM and attention efficiency (prefill MFU) at the low end of each family's range",
    "mfu-high": "GEMM and attention efficiency (prefill MFU) at the high end of each family's range",
    "overhead-low": "per-layer decode overhead at the low end of each family's range",
    "overhead-high": "per-layer decode overhead at the high end of each family's range",
    "tool-tail": "a heavier tool-result tail (lognormal sigma 1.1 -> 1.5)",
}
#: Workload knobs a sensitivity variant changes.
_WORKLOAD_VARIANTS = {"tool-tail": {"tool_result_tokens_sigma": 1.5}}
VARIANTS = ("nominal", "low", "high", *SENSITIVITY)


# ---------------------------------------------------------------------------------------
# targets, including the ends of their estimate ranges
# ---------------------------------------------------------------------------------------

#: Fields where a larger value is better for the machine (the rest: smaller is better).
_BIGGER_IS_BETTER = {"capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "compute_flops", "efficiency",
                     "bw_efficiency", "attention_efficiency", "tp_link_bw_bytes_per_s"}


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
    if check_choice(variant, "variant", ("nominal", "low", "high")) == "nominal":
        return target
    kw = {"tiers": tuple(_at_end(t, variant) for t in target.tiers),
          "links": tuple(_at_end(k, variant) for k in target.links)}
    if target.weights_memory is not None:
        kw["weights_memory"] = _at_end(target.weights_memory, variant)
    return _at_end(dataclasses.replace(target, **kw), variant)


def _field_at(target: HardwareTarget, field: str, end: str) -> HardwareTarget:
    """``target`` with ``field`` (a target-level estimate) at the ``low`` or ``high`` value of its range."""
    e = target.estimate_of(field)
    return target if e is None else dataclasses.replace(target, **{field: e.low if end == "low" else e.high})


def _scaled_links(target: HardwareTarget, f: float) -> HardwareTarget:
    """``target`` with its links and lower tiers' bandwidths times ``f`` (estimates dropped:
    the variant is itself the assumption)."""
    def scale(x):
        return dataclasses.replace(x, read_bw_bytes_per_s=x.read_bw_bytes_per_s * f,
                                   write_bw_bytes_per_s=x.write_bw_bytes_per_s * f,
                                   estimates=tuple(e for e in x.estimates if not e.field.endswith("bw_bytes_per_s")))
    return dataclasses.replace(target, tiers=(target.tiers[0], *(scale(t) for t in target.tiers[1:])),
                               links=tuple(scale(k) for k in target.links))


def sensitivity_variant(target: HardwareTarget, variant: str) -> HardwareTarget:
    """``target`` under a ``SENSITIVITY`` variant that changes the hardware (the precision and
    workload variants are applied where the target and trace are built)."""
    if variant in ("mfu-low", "mfu-high"):
        return _field_at(_field_at(target, "efficiency", variant[4:]), "attention_efficiency", variant[4:])
    if variant in ("overhead-low", "overhead-high"):
        return _field_at(target, "decode_layer_overhead_s", variant[9:])
    if variant in ("sram-link-half", "sram-link-double") and target.tiers[0].kind == "sram" and len(target.tiers) > 1:
        return _scaled_links(target, 0.5 if variant.endswith("half") else 2.0)
    return target


def has_estimates(target: HardwareTarget) -> bool:
    parts = (target, *target.tiers, *target.links, *((target.weights_memory,) if target.weights_memory else ()))
    return any(p.estimates for p in parts)


def build_target(name: str, model: str, config: SuiteConfig, variant: str = "nominal") -> HardwareTarget:
    """The suite's target: the preset with ``model`` placed at the suite's precisions
    (weights, KV); per-chip presets scaled to ``config.chips[name]``, else HBM ones to at
    least ``config.min_chips`` chips (a node) and SRAM ones (wafers) to the fewest that
    hold the weights; deployed as the preset says or ``config.deployments[name]``. A
    ``.toml``/``.json`` entry is a user target file, loaded with ``model`` placed. Then
    ``variant``: an estimate end (``low``, ``high``) or a ``SENSITIVITY`` rerun."""
    check_choice(variant, "variant", VARIANTS)
    wb = precision_bytes(config.weights_precision, "suite.weights_precision")
    kvb = precision_bytes(config.kv_precision, "suite.kv_precision")
    if variant == "weights-precision":
        wb = 3 - wb  # bf16 (2) <-> fp8 (1)
    if variant == "kv-precision":
        kvb = 3 - kvb
    spec = ModelSpec.preset(model).with_dtype_bytes(kvb)
    if is_target_file(name):
        t = load_target(config.target_path(name), model=spec)
        t = t.with_model(spec, weights_bytes_per_param=wb)
    else:
        t = HardwareTarget.preset(name, model=spec, weights_bytes_per_param=wb)
        floor = config.min_chips if t.tiers[0].kind != "sram" else 1
        want = config.chips.get(name, max(floor, t.chips))
        if want != t.chips:
            try:
                t = HardwareTarget.preset(name, model=spec, chips=want, weights_bytes_per_param=wb)
            except ConfigError:
                pass  # a fixed-size system keeps its size
    if name in config.deployments:
        t = dataclasses.replace(t, deployment=Deployment(**config.deployments[name], note="suite.deployments"))
    t.replica()  # ConfigError when one replica cannot hold the weights
    if variant in ("low", "high", "nominal"):
        return target_variant(t, variant)
    return sensitivity_variant(t, variant)


def deployment_of(t: HardwareTarget) -> dict:
    """How ``t`` serves: chips, the split, replicas and precisions (plain data for the report)."""
    d = t.serving
    return {"chips": t.chips, "tp": d.tp, "pp": d.pp, "replicas": t.num_replicas, "estimate": d.estimate,
            "describe": d.describe(t.chips), "note": d.note, "family": t.family,
            "weights": precision_name(t.weights_bytes_per_param), "kv": precision_name(t.model.dtype_bytes)}


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
    # the default residency streams only a context the compute tier cannot hold alone
    per_token = res.summary["block_bytes"] / res.summary["block_tokens"]
    room = res.summary["kv_capacity_bytes"][names[0]]
    fits_alone = (ctx + r["output_tokens"]) * per_token <= room
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
        "streamed_turns": int(streamed.sum()),
        "streamed_turns_that_fit_alone": int((streamed & fits_alone).sum()),
    }


def session_timeline(res, trace, max_turns: int = 40) -> dict:
    """Where one agent's time goes: the turns of the session with the longest context (up
    to ``max_turns`` of them), each with its ready time, when it was admitted, its first
    and last token, the bytes it fetched and streamed, and whether it was preempted."""
    r = res.requests
    sessions = trace.session_ids
    pick = int(sessions[int(r["context_tokens"].argmax())]) if len(sessions) else 0
    rows = [int(i) for i in np.flatnonzero(sessions == pick)][:max_turns]
    fetched = sum(r[f"fetched_bytes_{n}"] for n in res.tier_names[1:]) if len(res.tier_names) > 1 else None

    def t(x):
        return float(x) if x == x else None

    turns = []
    for i in rows:
        disp = float(r["dispatch_s"][i])
        turns.append({"ready_s": disp, "admit_s": disp + float(r["queue_s"][i]), "first_s": t(disp + r["ttft_s"][i]),
                      "end_s": t(r["end_s"][i]), "context_tokens": int(r["context_tokens"][i]),
                      "fetched_bytes": int(fetched[i]) if fetched is not None else 0,
                      "streamed_bytes_per_token": int(r["streamed_bytes_per_token"][i]),
                      "preemptions": int(r["preemptions"][i])})
    return {"session": pick, "turns": turns}


def meets_slo(summary: dict, slo_ttft_s: float, slo_tpot_s: float) -> bool:
    """Every request served, p99 TTFT <= ``slo_ttft_s`` and p50 TPOT <= ``slo_tpot_s``."""
    ttft, tpot = summary["ttft_p99_s"], summary["tpot_p50_s"]
    return (summary["overflow_requests"] == 0 and ttft == ttft and ttft <= slo_ttft_s
            and (tpot != tpot or tpot <= slo_tpot_s))


def scan_capacity(probe, counts) -> dict:
    """Scan ``counts`` (ascending agent counts) with ``probe(n) -> bool`` (meets the SLO)
    and summarise: ``max_agents`` (the largest passing count, 0 if none),
    ``first_fail`` (the smallest failing count, None if none) and ``monotone`` (no count
    passes above one that fails). Every count is probed: no monotonicity is assumed."""
    results = {n: bool(probe(n)) for n in counts}
    passing = [n for n, ok in results.items() if ok]
    failing = [n for n, ok in results.items() if not ok]
    first_fail = min(failing) if failing else None
    best = max(passing) if passing else 0
    return {"max_agents": best, "first_fail": first_fail,
            "monotone": first_fail is None or best < first_fail, "results": results}


def _sim(p, target, cfg: SuiteConfig, policy: str, planner: str):
    return simulate(p, target, policy=policy, planner=planner, **cfg.sim_options(target.num_replicas))


def run_capacity_job(job: dict) -> dict:
    """Scan ``config.capacity_counts()`` agents (headline policy/planner) for the most
    agents the target serves under the SLO; plain data with every probe. A verdict that
    is not monotone in the agent count (a pass above a failure) is reported, not hidden."""
    cfg = SuiteConfig(**job["config"])
    out = {"kind": "capacity", "job": {k: job[k] for k in ("model", "target", "variant")}, "error": None}
    try:
        target = build_target(job["target"], job["model"], cfg, job["variant"])
    except ConfigError as e:
        out["error"] = str(e)
        return out
    probes = {}

    def ok(n: int) -> bool:
        p = _prepared(json.dumps(cfg.trace_config(n).as_dict(), sort_keys=True))
        s = _sim(p, target, cfg, cfg.headline_policy, cfg.headline_planner).summary
        good = meets_slo(s, cfg.slo_ttft_s, cfg.slo_tpot_s)
        probes[n] = {"agents": n, "meets_slo": good, "ttft_p99_s": s["ttft_p99_s"], "tpot_p50_s": s["tpot_p50_s"],
                     "ttft_samples": s["ttft_samples"], "overflow_requests": s["overflow_requests"],
                     "preemptions": s["preemptions"]}
        return good

    scan = scan_capacity(ok, cfg.capacity_counts())
    best = scan["max_agents"]
    out["capacity"] = {"max_agents": best, "first_fail": scan["first_fail"], "monotone": scan["monotone"],
                       "power_w": target.power_w, "chips": target.chips, "deployment": deployment_of(target),
                       "samples_at_max": probes[best]["ttft_samples"] if best else 0,
                       "probes": [probes[n] for n in sorted(probes)]}
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
    trace_cfg = cfg.trace_config(job["agents"], _WORKLOAD_VARIANTS.get(job["variant"]))
    p = _prepared(json.dumps(trace_cfg.as_dict(), sort_keys=True))
    out["target"] = {"name": target.name, "chips": target.chips, "power_w": target.power_w,
                     "deployment": deployment_of(target),
                     "kv_capacity_bytes": list(target.replica().kv_capacity_bytes),
                     "tiers": [t.name for t in target.tiers],
                     "tier_kinds": [t.kind for t in target.tiers], "weights_bytes": target.weights_bytes,
                     "has_estimates": has_estimates(target)}
    out["trace"] = {"requests": p.num_requests, "sessions": p.trace.num_sessions,
                    "max_context_tokens": int(p.trace.input_lengths.max()),
                    "block_accesses": int(p.trace.num_block_accesses)}
    for policy in job["policies"]:
        for planner in job["planners"]:
            res = _sim(p, target, cfg, policy, planner)
            d = res.as_dict()
            derived = derived_stats(res, cfg.long_context_tokens)
            if policy == cfg.headline_policy and planner == cfg.headline_planner and job["variant"] == "nominal":
                derived["timeline"] = session_timeline(res, p.trace)
            d.update({"target": job["target"], "agents": job["agents"], "variant": job["variant"], "chips": target.chips,
                      "derived": json_clean(derived), "sim_wall_s": res.wall_s})
            out["results"].append(d)
    out["wall_s"] = time.perf_counter() - t0
    return out


def _deployment_key(t: HardwareTarget):
    return (t.chips, t.serving.tp, t.serving.pp, t.num_replicas, t.compute_flops,
            tuple((x.kind, x.capacity_bytes, x.read_bw_bytes_per_s) for x in t.tiers),
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
            if config.sensitivity:
                for v in SENSITIVITY:
                    jobs.append({"config": cd, "model": model, "target": target, "agents": config.headline_agents,
                                 "variant": v, "policies": [config.headline_policy],
                                 "planners": [config.headline_planner]})
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


class RayExecutor:
    """Ray as an executor: ``submit(fn, *args)`` runs ``fn`` as a Ray task and returns a
    ``concurrent.futures.Future``."""

    def __init__(self, address: str | None = None):
        import ray

        ray.init(address=address, ignore_reinit_error=True)
        self._ray = ray

    def submit(self, fn, *args):
        return self._ray.remote(fn).remote(*args).future()

    def shutdown(self):
        self._ray.shutdown()


class DaskExecutor:
    """Dask's ``Client.get_executor()``, closing the client (and the ``LocalCluster`` it
    made when no address was given) on ``shutdown``."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        from distributed import Client, LocalCluster

        self._cluster = None
        if address is None:
            self._cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
        self._client = Client(address if address is not None else self._cluster)
        self._ex = self._client.get_executor()

    def submit(self, fn, *args):
        return self._ex.submit(fn, *args)

    def shutdown(self):
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


EXECUTORS = ("process", "dask", "ray")


def make_executor(kind: str, address: str | None = None, workers: int | None = None):
    """An executor by name: ``process`` (a local process pool of ``workers``), ``dask``
    (a Dask cluster at ``address``, or a ``LocalCluster`` of ``workers``) or ``ray``."""
    check_choice(kind, "executor", EXECUTORS)
    if kind == "process":
        return default_executor(workers)
    try:
        return DaskExecutor(address, workers) if kind == "dask" else RayExecutor(address)
    except ImportError as e:
        extra = "pip install 'kvtier[bench]'" if kind == "dask" else "pip install ray"
        raise ConfigError(f"executor: {kind!r} needs {e.name} ({extra})") from None


def job_key(job: dict) -> str:
    """A stable name for ``job`` (its config, model, target, agents, variant and kind)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:24]


def _save_job(job_dir: Path, job: dict, out: dict) -> None:
    path = job_dir / f"{job_key(job)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_clean(out), sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _load_job(job_dir: Path, job: dict) -> dict | None:
    try:
        return json.loads((job_dir / f"{job_key(job)}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def default_executor(workers: int | None = None) -> cf.Executor:
    """A process pool over ``workers`` processes (default: the CPUs this process may use)."""
    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return cf.ProcessPoolExecutor(max_workers=max(1, n))


def run_suite(config: SuiteConfig, *, executor=None, workers: int | None = None, progress: bool = True,
              job_dir=None, resume: bool = False) -> dict:
    """Run every job of ``config``; returns the results document (plain data) that
    ``write_results`` saves. ``executor``: any object with ``submit(fn, *args)`` returning
    a ``concurrent.futures.Future`` (default: a process pool of ``workers``; ``workers=1``
    runs in this process). ``job_dir``: write each job's output there as it finishes;
    ``resume``: reuse the outputs already there and run only the other jobs."""
    from kvtier import __version__

    jobs = make_jobs(config)
    t0 = time.perf_counter()
    outputs = []
    todo = jobs
    if job_dir is not None:
        job_dir = Path(job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            todo = []
            for j in jobs:
                saved = _load_job(job_dir, j)
                if saved is None:
                    todo.append(j)
                else:
                    outputs.append(saved)
    resumed = len(outputs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=resumed, desc="kvtier bench", unit="job")

    def finished(job, out):
        if job_dir is not None:
            _save_job(job_dir, job, out)
        outputs.append(json.loads(json.dumps(json_clean(out))) if job_dir is not None else out)
        if bar:
            bar.update(1)

    if executor is None and workers == 1:
        for j in todo:
            finished(j, run_job(j))
    else:
        own = executor is None
        if own:
            from kvtier.sim.engine import warm_up

            warm_up()  # compile once here; the workers load the cached code
        ex = default_executor(workers) if own else executor
        try:
            futures = {ex.submit(run_job, j): j for j in todo}
            for f in cf.as_completed(futures):
                finished(futures[f], f.result())
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
        if j["variant"] not in _WORKLOAD_VARIANTS:
            traces[str(j["agents"])] = o["trace"]
    for (model, target), same in sorted(duplicate_targets(config).items()):
        unavailable.append({"model": model, "target": target, "agents": None, "variant": "nominal",
                            "reason": f"the same deployment as {same} for this model (not simulated twice)"})
    results.sort(key=lambda r: (r["model"], r["target"], r["agents"], r["variant"], r["policy"], r["planner"]))
    unavailable.sort(key=lambda u: (u["model"], u["target"], u["agents"] or 0, u["variant"]))
    return {
        "meta": {"kvtier_version": __version__, "git_revision": git_revision(), "config": config.as_dict(),
                 "jobs": len(jobs), "jobs_resumed": resumed, "simulations": len(results),
                 "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "timing": {"wall_s": time.perf_counter() - t0,
                   "sim_wall_s": float(sum(r["sim_wall_s"] for r in results))},
        "targets": dict(sorted(targets.items())),
        "traces": dict(sorted(traces.items(), key=lambda kv: int(kv[0]))),
        "results": results,
        "capacity": sorted(capacity, key=lambda c: (c["model"], c["target"], c["variant"])),
        "unavailable": unavailable,
    }
