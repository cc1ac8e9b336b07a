"""Findings from a suite's results, and ``report.md`` written in sentences from the numbers.

Every function here reads the results document of ``run_suite`` (plain data) and returns
plain data; ``render_report`` turns it into markdown. Nothing is hard-coded about which
machine wins: the sentences are chosen by comparing the numbers.
"""

from __future__ import annotations

import math

from kvtier.sim import regime_table
from kvtier.suite.runner import SENSITIVITY, build_target, duplicate_targets
from kvtier.suite.config import SuiteConfig

#: Fewer samples than this make a p99 an interpolation between a handful of values.
MIN_P99_SAMPLES = 100

#: Published single-user decode speeds at short context (hardware.md §1 notes).
PUBLISHED_DECODE = (
    {"target": "cerebras-cs3x4", "model": "llama-3.1-70b", "context_tokens": 4096, "tokens_per_s": 450.0,
     "source": "Cerebras, Hot Chips 2024: Llama-3.1-70B at 450 tokens/s per user on 4 CS-3"},
    {"target": "groq-lpu-576", "model": "llama-3.1-70b", "context_tokens": 4096, "tokens_per_s": 300.0,
     "source": "Groq, Llama-2-70B at 300 tokens/s per user at 4k context (TechPowerUp); same geometry as Llama-3.1-70B"},
)


def _num(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _x(ratio) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def select(results, **kw):
    """The results whose fields equal ``kw`` (``select(doc["results"], model=..., agents=8)``)."""
    return [r for r in results if all(r.get(k) == v for k, v in kw.items())]



def is_sram(doc, model, target) -> bool:
    t = doc["targets"].get(f"{model}|{target}|nominal")
    return bool(t) and t["tier_kinds"][0] == "sram"


def headline_rows(doc, model, agents, variant="nominal") -> list[dict]:
    """Per target: the headline policy/planner's long-context turn cost."""
    cfg = doc["meta"]["config"]
    out = []
    for r in select(doc["results"], model=model, agents=agents, variant=variant, policy=cfg["headline_policy"],
                     planner=cfg["headline_planner"]):
        d = r["derived"]
        s = r["summary"]
        dep = doc["targets"].get(f"{model}|{r['target']}|nominal", {}).get("deployment", {})
        out.append({"target": r["target"], "sram": is_sram(doc, model, r["target"]),
                    "turn_long_s": d["turn_long_mean_s"], "turn_short_s": d["turn_short_mean_s"],
                    "decode_long": d["decode_long_tokens_per_s_p50"], "decode_short": d["decode_short_tokens_per_s_p50"],
                    "streamed_long": d["streamed_long_share"], "ttft_p99_s": s["ttft_p99_s"],
                    "ttft_samples": s.get("ttft_samples"), "tpot_p50_s": s.get("tpot_p50_s"),
                    "queue_p99_s": s.get("queue_p99_s"), "preemptions": s.get("preemptions", 0),
                    "overflow": s["overflow_requests"], "requests": s["requests"], "tiers": r["tiers"],
                    "deployment": dep.get("describe", ""), "meets_slo": _meets(doc, s)})
    return sorted(out, key=lambda x: x["target"])


def _meets(doc, s) -> bool:
    """The suite's SLO on one summary: every request served, p99 TTFT and p50 TPOT."""
    cfg = doc["meta"]["config"]
    ttft, tpot = s["ttft_p99_s"], s.get("tpot_p50_s")
    return (s["overflow_requests"] == 0 and ttft is not None and ttft <= cfg["slo_ttft_s"]
            and (tpot is None or tpot <= cfg.get("slo_tpot_s", math.inf)))


def max_agents_under_slo(doc, model, variant="nominal") -> list[dict]:
    """Per target: the largest agent count that meets the SLO (headline policy/planner),
    per chip and per kW where power is known, whether the verdict was monotone in the
    agent count, and how many TTFT samples its p99 rests on: from the capacity scan when
    the suite ran it, else from the swept counts."""
    cfg = doc["meta"]["config"]
    out = []
    cap = [c for c in doc.get("capacity", []) if c["model"] == model and c["variant"] == variant]
    if cap:
        order = {t: i for i, t in enumerate(cfg["targets"])}
        for c in sorted(cap, key=lambda c: order.get(c["target"], 1 << 30)):
            p = c["power_w"]
            n = c["max_agents"]
            out.append({"target": c["target"], "max_agents": n, "power_w": p, "chips": c["chips"],
                        "agents_per_chip": n / c["chips"] if c["chips"] else None,
                        "agents_per_kw": n / (p / 1000) if p else None, "first_fail": c.get("first_fail"),
                        "monotone": c.get("monotone", True), "samples": c.get("samples_at_max"),
                        "deployment": c.get("deployment", {}).get("describe", ""),
                        "searched_up_to": cfg["capacity_max_agents"]})
        return out
    for target in cfg["targets"]:
        rows = select(doc["results"], model=model, target=target, variant=variant, policy=cfg["headline_policy"],
                      planner=cfg["headline_planner"])
        if not rows:
            continue
        ok = [r["agents"] for r in rows if _meets(doc, r["summary"])]
        best = max(ok) if ok else 0
        t = doc["targets"].get(f"{model}|{target}|{variant}", {})
        power = t.get("power_w")
        chips = t.get("chips")
        samples = next((r["summary"].get("ttft_samples") for r in rows if r["agents"] == best), None)
        out.append({"target": target, "max_agents": best, "power_w": power, "chips": chips,
                    "agents_per_chip": best / chips if chips else None,
                    "agents_per_kw": best / (power / 1000) if power else None, "first_fail": None, "monotone": True,
                    "samples": samples, "deployment": t.get("deployment", {}).get("describe", "")})
    return out


def sensitivity_rows(doc, model, agents) -> list[dict]:
    """Per ``SENSITIVITY`` variant that ran: the best SRAM and best HBM machine by long-turn
    time and their ratio, the targets meeting the SLO at ``agents``, and whether the
    verdict (which family has the faster long turn; which targets meet the SLO) differs
    from the nominal run's."""
    def verdict(variant):
        rows = [r for r in headline_rows(doc, model, agents, variant) if r["turn_long_s"] is not None]
        sram = sorted((r for r in rows if r["sram"]), key=lambda r: r["turn_long_s"])
        hbm = sorted((r for r in rows if not r["sram"]), key=lambda r: r["turn_long_s"])
        if not rows:
            return None
        return {"best_sram": (sram[0]["target"], sram[0]["turn_long_s"]) if sram else None,
                "best_hbm": (hbm[0]["target"], hbm[0]["turn_long_s"]) if hbm else None,
                "ratio": sram[0]["turn_long_s"] / hbm[0]["turn_long_s"] if sram and hbm else None,
                "passing": sorted(r["target"] for r in headline_rows(doc, model, agents, variant) if r["meets_slo"])}

    base = verdict("nominal")
    if base is None:
        return []
    out = [{"variant": "nominal", "what": "as configured", **base, "flips": []}]
    for v, what in SENSITIVITY.items():
        got = verdict(v)
        if got is None:
            continue
        flips = []
        if got["ratio"] is not None and base["ratio"] is not None and (got["ratio"] > 1) != (base["ratio"] > 1):
            flips.append("faster long turn")
        changed = sorted(set(got["passing"]) ^ set(base["passing"]))
        if changed:
            flips.append("SLO: " + ", ".join(changed))
        out.append({"variant": v, "what": what, **got, "flips": flips})
    return out


def policy_gap(doc, model, agents) -> list[dict]:
    """Per SRAM target: the best and worst policy x planner by long-context turn time."""
    out = []
    for target in doc["meta"]["config"]["targets"]:
        if not is_sram(doc, model, target):
            continue
        rows = [r for r in select(doc["results"], model=model, target=target, agents=agents, variant="nominal")
                if r["derived"]["turn_long_mean_s"] is not None]
        if not rows:
            continue
        rows.sort(key=lambda r: (r["derived"]["turn_long_mean_s"], r["policy"], r["planner"]))
        best, worst = rows[0], rows[-1]
        out.append({"target": target, "best": (best["policy"], best["planner"], best["derived"]["turn_long_mean_s"]),
                    "worst": (worst["policy"], worst["planner"], worst["derived"]["turn_long_mean_s"]),
                    "best_ttft_p99_s": best["summary"]["ttft_p99_s"],
                    "best_streamed_long": best["derived"]["streamed_long_share"] or 0.0})
    return out


def estimate_robustness(doc, model, agents) -> dict:
    """The headline comparison at the nominal figures and at both estimate ends: the
    ranking by long-turn time, the SRAM-vs-HBM ratio and each target's SLO verdict."""
    cfg = doc["meta"]["config"]
    slo = cfg["slo_ttft_s"]
    out = {}
    for v in ("nominal", "low", "high"):
        rows = [r for r in headline_rows(doc, model, agents, v) if r["turn_long_s"] is not None]
        if not rows:
            continue
        rank = [r["target"] for r in sorted(rows, key=lambda r: r["turn_long_s"])]
        sram = [r["turn_long_s"] for r in rows if r["sram"]]
        hbm = [r["turn_long_s"] for r in rows if not r["sram"]]
        out[v] = {"ranking": rank,
                  "sram_over_best_hbm": (min(sram) / min(hbm)) if sram and hbm else None,
                  "slo_pass": {r["target"]: (r["ttft_p99_s"] is not None and r["ttft_p99_s"] <= slo and r["overflow"] == 0)
                               for r in rows}}
    return out


def sanity_checks(doc) -> list[dict]:
    """Simulated single-user decode at short context vs the published per-user speeds."""
    cfg = SuiteConfig(**doc["meta"]["config"])
    out = []
    for p in PUBLISHED_DECODE:
        try:
            t = build_target(p["target"], p["model"], cfg)
        except Exception:  # noqa: BLE001 - a target that cannot hold the model has no check
            continue
        roof = regime_table(t, [p["context_tokens"]], 1, decode_layer_latency_s=0.0)[0]
        row = regime_table(t, [p["context_tokens"]], 1, decode_layer_latency_s=cfg.decode_layer_latency_s)[0]
        sim = row.tokens_per_s_per_agent
        implied = (1.0 / p["tokens_per_s"] - roof.step_s) / t.model.num_layers
        used = cfg.decode_layer_latency_s if cfg.decode_layer_latency_s is not None else t.decode_layer_overhead_s
        out.append({**p, "simulated_tokens_per_s": sim, "roofline_tokens_per_s": roof.tokens_per_s_per_agent,
                    "ratio": sim / p["tokens_per_s"], "within_30pct": abs(sim / p["tokens_per_s"] - 1) <= 0.3,
                    "roofline_step_s": roof.step_s, "layer_latency_s": used, "precision": (
                        t.weights_bytes_per_param, t.model.dtype_bytes),
                    "implied_latency_per_layer_s": implied, "layers": t.model.num_layers})
    return out


def residency_rows(doc, model) -> list[dict]:
    """Per target: the residency regime and per-agent decode speed as context grows."""
    cfg = SuiteConfig(**doc["meta"]["config"])
    contexts = (8_192, 32_768, 65_536, 131_072, 196_608)
    out = []
    skip = {t for (m, t) in duplicate_targets(cfg) if m == model}
    for target in cfg.targets:
        if target in skip:
            continue
        try:
            t = build_target(target, model, cfg)
        except Exception:  # noqa: BLE001
            continue
        for agents in cfg.agents:
            rows = regime_table(t, contexts, agents, decode_layer_latency_s=cfg.decode_layer_latency_s)
            out.append({"target": target, "agents": agents, "replicas": t.num_replicas,
                        "cells": [(r.regime, r.tokens_per_s_per_agent) for r in rows], "contexts": contexts})
    return out


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------


def _answer(doc, model, agents) -> list[str]:
    rows = [r for r in headline_rows(doc, model, agents) if r["turn_long_s"] is not None]
    cfg = doc["meta"]["config"]
    L = cfg["long_context_tokens"]
    sram = sorted([r for r in rows if r["sram"]], key=lambda r: r["turn_long_s"])
    hbm = sorted([r for r in rows if not r["sram"]], key=lambda r: r["turn_long_s"])
    lines = []
    if not sram or not hbm:
        lines.append(f"With {model} and {agents} agents the sweep has no long-context turns on both an SRAM and an HBM "
                     f"machine, so this question has no answer here.")
        return lines
    best_h = hbm[0]
    for r in sram:
        ratio = r["turn_long_s"] / best_h["turn_long_s"]
        why = (f"{100 * r['streamed_long']:.0f}% of those turns have a context larger than a replica's SRAM and "
               f"run alone streaming the rest from {r['tiers'][1] if len(r['tiers']) > 1 else 'nowhere'} at every "
               f"token, so it decodes at {_num(r['decode_long'])} tokens/s (vs {_num(r['decode_short'])} tokens/s "
               f"below 32k)" if r["streamed_long"] else
               f"its decode runs at {_num(r['decode_long'])} tokens/s (vs {_num(r['decode_short'])} below 32k)")
        if r["queue_p99_s"]:
            why += f"; turns wait up to {_num(r['queue_p99_s'])} s (p99) for room or a slot"
        lost = (f"; {r['overflow']} of its {r['requests']:,} turns have more KV than the SRAM holds and nowhere to "
                f"stream it from, so they are not served at all" if r["overflow"] else "")
        lines.append(
            f"- **{r['target']}** ({r['deployment']}) pays {_num(r['turn_long_s'])} s per turn at contexts of "
            f"{L:,}+ tokens, {_x(ratio)} the best HBM machine ({best_h['target']}, {best_h['deployment']}, "
            f"{_num(best_h['turn_long_s'])} s): {why}{lost}.")
    worst_h = hbm[-1]
    lines.append(f"- Among HBM machines the long-context turn takes {_num(best_h['turn_long_s'])} s "
                 f"({best_h['target']}) to {_num(worst_h['turn_long_s'])} s ({worst_h['target']}).")
    return lines


def render_report(doc) -> str:
    """``report.md``: the answer in sentences, the tables behind it, and the caveats."""
    cfg = doc["meta"]["config"]
    meta = doc["meta"]
    slo = cfg["slo_ttft_s"]
    agents = cfg["headline_agents"] if cfg["headline_agents"] in cfg["agents"] else max(cfg["agents"])
    out = [f"# kvtier bench: {cfg['name']}", ""]
    out.append(f"kvtier {meta['kvtier_version']}, git {meta['git_revision']}, {meta['created_utc']}; "
               f"{meta['simulations']} simulations in {doc['timing']['wall_s']:.1f} s "
               f"(the configuration is in results.json).")
    traces = ", ".join(f"{a} agent(s): {t['requests']:,} requests, contexts up to {t['max_context_tokens']:,} tokens"
                       for a, t in doc["traces"].items())
    out += ["", f"Workload: synthetic coding agents ({cfg['workload']['workload']}, closed loop); {traces}.", ""]
    out += ["## The question", "",
            "Once a coding agent's context outgrows on-chip SRAM, what do the SRAM machines (Cerebras, Groq) pay per "
            "turn compared with HBM machines (NVIDIA, Etched, MatX), and which policies close the gap? "
            f"(Headline: {cfg['headline_policy']} eviction, {cfg['headline_planner']} planner, {agents} concurrent "
            "agents; a turn is its time to first token plus its decode.)", ""]
    out += ["## Deployments and precision", "",
            f"Every target serves the model at the same precision: weights {cfg.get('weights_precision', 'bf16')}, "
            f"KV cache {cfg.get('kv_precision', 'bf16')} (suite.weights_precision, suite.kv_precision). Chips form "
            "data-parallel replicas of TP x PP chips, each with a copy of the weights, its own scheduler "
            f"(max {cfg.get('max_num_batched_tokens')} batched tokens, {cfg.get('max_num_seqs')} sequences, chunked "
            f"prefill, preemption by {cfg.get('preemption')}, residency {cfg.get('residency')}) and its share of "
            f"every tier and link; requests are routed by {cfg.get('routing')}"
            + (f"; {cfg['prefill_replicas']} replica(s) of each target that has several only prefill and move each "
               "prompt's KV to a decode replica (disaggregated serving)" if cfg.get("prefill_replicas") else "")
            + ". (est.) marks a split that is not published.", "",
            "| model | target | family | chips | deployment | KV room per replica (GB) | power (kW) |",
            "|---|---|---|---|---|---|---|"]
    for model in cfg["models"]:
        for target in cfg["targets"]:
            t = doc["targets"].get(f"{model}|{target}|nominal")
            if not t:
                continue
            d = t.get("deployment", {})
            out.append(f"| {model} | {target} | {d.get('family', '')} | {t['chips']} | {d.get('describe', '')} | "
                       f"{_num(t['kv_capacity_bytes'][0] / 1e9)} | {_num(t['power_w'] / 1e3) if t['power_w'] else 'n/a'} |")
    out.append("")
    for model in cfg["models"]:
        out += [f"### {model}", ""]
        for a in sorted({agents, *([1] if 1 in cfg["agents"] else [])}):
            out += [f"**With {a} concurrent agent{'s' if a > 1 else ''}:**", ""]
            out += _answer(doc, model, a)
            out.append("")
        out += [f"**Policies and estimate ranges ({agents} agents):**", ""]
        for g in policy_gap(doc, model, agents):
            (bp, bpl, bt), (wp, wpl, wt) = g["best"], g["worst"]
            out.append(f"- On {g['target']} the best policy/planner is {bp} + {bpl} at {_num(bt)} s per long turn, "
                       f"{100 * (1 - bt / wt):.0f}% less than the worst ({wp} + {wpl}, {_num(wt)} s)"
                       + ("; no policy removes the streaming cost, which is set by the link bandwidth."
                          if g["best_streamed_long"] > 0.5 and _hbm_best(doc, model, agents)
                          and bt > 1.5 * _hbm_best(doc, model, agents) else "."))
        rob = estimate_robustness(doc, model, agents)
        out += _robustness_sentences(rob)
        out.append("")
    tpot = cfg.get("slo_tpot_s")
    how = (f"scanned at {list(cfg.get('capacity_agents', []))} agents up to {cfg['capacity_max_agents']} (every count "
           f"simulated, so a verdict that is not monotone shows; {cfg['capacity_max_agents']} means at least that many)"
           if doc.get("capacity") else f"among the swept counts {list(cfg['agents'])}")
    out += ["## Largest number of concurrent agents under the SLO", "",
            f"p99 TTFT <= {slo:g} s and p50 TPOT <= {_num(tpot)} s ({_num(1 / tpot) if tpot else 'n/a'} tokens/s per "
            f"agent) with every request served, {how} ({cfg['headline_policy']}, {cfg['headline_planner']}). Per chip, "
            "and per kW where the target's power is known; `first fail` is the smallest count that misses the SLO "
            f"(a pass above it is marked *not monotone*); a p99 from fewer than {MIN_P99_SAMPLES} TTFT samples is "
            "marked *few samples* (it interpolates between a handful of turns).", ""]
    out += ["| model | target | deployment | max agents | per chip | per kW | first fail | at low end | at high end |",
            "|---|---|---|---|---|---|---|---|---|"]
    for model in cfg["models"]:
        lo = {r["target"]: r["max_agents"] for r in max_agents_under_slo(doc, model, "low")}
        hi = {r["target"]: r["max_agents"] for r in max_agents_under_slo(doc, model, "high")}
        for r in max_agents_under_slo(doc, model):
            flags = []
            if not r["monotone"]:
                flags.append("not monotone")
            if r["max_agents"] and r["samples"] is not None and r["samples"] < MIN_P99_SAMPLES:
                flags.append(f"few samples ({r['samples']})")
            mark = f" ({', '.join(flags)})" if flags else ""
            out.append(f"| {model} | {r['target']} | {r['deployment']} | {r['max_agents']}{mark} | "
                       f"{_num(r['agents_per_chip'])} | {_num(r['agents_per_kw'])} | {r['first_fail'] or '-'} | "
                       f"{lo.get(r['target'], 'n/a')} | {hi.get(r['target'], 'n/a')} |")
    if cfg.get("sensitivity"):
        out += ["", f"## Which assumptions flip the verdict ({agents} agents)", "",
                "The headline rerun with one assumption changed at a time. Verdict: which family has the faster "
                "long-context turn (best SRAM over best HBM machine) and which targets meet the SLO at this agent "
                "count.", "",
                "| model | change | best SRAM (long turn s) | best HBM (long turn s) | SRAM / HBM | meet the SLO | flips |",
                "|---|---|---|---|---|---|---|"]
        for model in cfg["models"]:
            for r in sensitivity_rows(doc, model, agents):
                bs = f"{r['best_sram'][0]} ({_num(r['best_sram'][1])})" if r["best_sram"] else "n/a"
                bh = f"{r['best_hbm'][0]} ({_num(r['best_hbm'][1])})" if r["best_hbm"] else "n/a"
                ratio = _x(r["ratio"]) if r["ratio"] is not None else "n/a"
                out.append(f"| {model} | {r['what']} | {bs} | {bh} | {ratio} | {', '.join(r['passing']) or 'none'} | "
                           f"{'; '.join(r['flips']) or 'no'} |")
    out += ["", "## Headline numbers per target", "",
            "Where a target has estimated figures, the long-turn time and p99 TTFT show [pessimistic - optimistic] "
            "from the reruns at both ends of the estimate ranges (n/a: the model's weights do not fit at that end).", ""]
    out += ["| model | target | p99 TTFT (s) | p50 TPOT (ms) | turn < 32k (s) | turn >= long (s) | decode < 32k (tok/s) | "
            "decode long (tok/s) | long turns streamed | preemptions | overflow |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in cfg["models"]:
        ends = {v: {r["target"]: r for r in headline_rows(doc, model, agents, v)} for v in ("low", "high")}

        def rng(target, key, value):
            lo, hi = ends["low"].get(target), ends["high"].get(target)
            t = doc["targets"].get(f"{model}|{target}|nominal", {})
            if not t.get("has_estimates") or (lo is None and hi is None):
                return _num(value)
            return (f"{_num(value)} [{'n/a' if lo is None else _num(lo[key])} - "
                    f"{'n/a' if hi is None else _num(hi[key])}]")

        for r in headline_rows(doc, model, agents):
            streamed = "n/a" if r["streamed_long"] is None else f"{100 * r['streamed_long']:.0f}%"
            few = (" (few samples)" if r["ttft_samples"] is not None and r["ttft_samples"] < MIN_P99_SAMPLES else "")
            tpot_ms = None if r["tpot_p50_s"] is None else r["tpot_p50_s"] * 1e3
            out.append(f"| {model} | {r['target']} | {rng(r['target'], 'ttft_p99_s', r['ttft_p99_s'])}{few} | "
                       f"{_num(tpot_ms)} | {_num(r['turn_short_s'])} | "
                       f"{rng(r['target'], 'turn_long_s', r['turn_long_s'])} | {_num(r['decode_short'])} | "
                       f"{_num(r['decode_long'])} | {streamed} | {r['preemptions']} | {r['overflow']} |")
    out += ["", "## Residency regime as context grows", "",
            "Equal agents each holding the context, spread over the replicas; R = all resident in the compute tier, "
            "Q = only some fit at once and the rest queue, S = larger than a replica's room: runs alone and streams "
            "the rest from the next tier at every step, O = overflow (does not fit anywhere it can be read from). "
            "Cells: regime and decode tokens/s per agent (the engine's step for the running batch, shared among the "
            "agents that take turns).", ""]
    for model in cfg["models"]:
        rows = residency_rows(doc, model)
        if not rows:
            continue
        ctxs = rows[0]["contexts"]
        out += [f"**{model}**", "", "| target | agents | " + " | ".join(f"{c // 1024}k" for c in ctxs) + " |",
                "|---|---|" + "---|" * len(ctxs)]
        for r in rows:
            cells = " | ".join(f"{reg[0].upper()} {_num(tps)}" for reg, tps in r["cells"])
            out.append(f"| {r['target']} | {r['agents']} | {cells} |")
        out.append("")
    out += ["## Sanity check against published speeds", "",
            "Decode steps add each family's per-layer overhead to the bandwidth/compute roofline (assumptions.json "
            "`families`; the roofline alone in parentheses). The SRAM families' overheads are fitted to these "
            "published speeds (their rooflines are microseconds), so this check shows the fit, not an independent "
            "validation; the GPU family's comes from NVIDIA's aisimulate (measured vLLM kernels).", ""]
    for s in sanity_checks(doc):
        verdict = "within 30%" if s["within_30pct"] else "outside 30%"
        out.append(
            f"- {s['target']} ({s['model']}, {s['context_tokens']:,}-token context, one user, "
            f"{_num(s['layer_latency_s'] * 1e6)} us per layer): simulated "
            f"{_num(s['simulated_tokens_per_s'])} tokens/s (roofline alone {_num(s['roofline_tokens_per_s'])}) vs "
            f"published {_num(s['tokens_per_s'])} ({s['source']}): {_num(s['ratio'], 2)}x, {verdict}.")
        if not s["within_30pct"]:
            out.append(
                f"  The gap: the roofline step is {_num(s['roofline_step_s'] * 1e6)} us per token; the published speed "
                f"implies {_num(s['implied_latency_per_layer_s'] * 1e6)} us per layer per token of latency the roofline "
                f"does not see (pipeline synchronisation and chip-to-chip hops across {s['layers']} layers), against the "
                f"{_num(s['layer_latency_s'] * 1e6)} us assumed here, so this machine's short-context decode is "
                f"{'over' if s['ratio'] > 1 else 'under'}stated by {_num(s['ratio'], 2)}x; long-context turns that "
                f"stream KV are bandwidth-bound and barely move.")
    if doc["unavailable"]:
        out += ["", "## Not simulated", ""]
        seen = set()
        nominal_out = {(u["model"], u["target"]) for u in doc["unavailable"] if u["variant"] == "nominal"}
        for u in doc["unavailable"]:
            key = (u["model"], u["target"])
            if u["variant"] != "nominal" and key in nominal_out:
                continue
            if (key, u["variant"]) in seen:
                continue
            seen.add((key, u["variant"]))
            which = "" if u["variant"] == "nominal" else f" (at the {u['variant']} end of its estimates)"
            out.append(f"- {u['model']} on {u['target']}{which}: {u['reason']}")
    fit = sum(r["derived"].get("streamed_turns_that_fit_alone", 0) for r in doc["results"])
    streamed = sum(r["derived"].get("streamed_turns", 0) for r in doc["results"])
    out += ["", "## Model and caveats", "",
            f"- Residency: {streamed:,} turns streamed KV over a link in this sweep, and {fit:,} of them had a context "
            "that a replica's compute tier could hold alone"
            + (" (the default residency streams only a context larger than the compute tier)."
               if cfg.get("residency", "auto") == "auto" else f" (residency = {cfg.get('residency')!r})."),
            "- Simulated clock in integer ns; each replica schedules steps as vLLM v1 does (running requests first, then "
            "the queue FCFS under a token budget, chunked prefill), admits a request only when its KV fits the compute "
            "tier and preempts the newest when running requests cannot grow; a step's time is the batch's (weights, KV, "
            "compute and streamed KV per pipeline stage, plus a per-layer overhead); fetches, swaps, streamed KV and "
            "write-backs queue on their links.",
            "- A replica's prefix cache has the compute tier's whole KV room; the KV of running requests is counted "
            "against the same room by admission (vLLM's running blocks are the prefix cache's most recent ones).",
            "- `low`/`high` rerun every estimated hardware figure at its pessimistic/optimistic end for the machine.",
            "- Cache decisions are the replay engine's (same policy kernels); Belady's future is the trace's order.",
            ""]
    if doc.get("plots"):
        out += ["## Plots", ""]
        for p in doc["plots"]:
            out += [f"![{p}]({p})", ""]
    return "\n".join(out)


def _hbm_best(doc, model, agents):
    rows = [r["turn_long_s"] for r in headline_rows(doc, model, agents) if not r["sram"] and r["turn_long_s"] is not None]
    return min(rows) if rows else None


def _robustness_sentences(rob: dict) -> list[str]:
    if "nominal" not in rob:
        return []
    lines = []
    nom = rob["nominal"]
    ends = [v for v in ("low", "high") if v in rob]
    if not ends:
        return ["- No estimate reruns in this sweep."]
    same_rank = all(rob[v]["ranking"] == nom["ranking"] for v in ends)
    first_same = all(rob[v]["ranking"][:1] == nom["ranking"][:1] for v in ends)
    if same_rank:
        lines.append("- Estimate ranges: the ranking of targets by long-turn time holds at both ends of every estimate.")
    else:
        diffs = []
        for v in ends:
            moved = [t for i, t in enumerate(rob[v]["ranking"]) if i >= len(nom["ranking"]) or nom["ranking"][i] != t]
            if moved:
                diffs.append(f"at the {v} end {', '.join(moved[:4])} change places")
        lines.append("- Estimate ranges: the ranking of targets by long-turn time flips within the ranges ("
                     + "; ".join(diffs) + ")" + ("; the fastest target stays the same." if first_same else
                                                 "; even the fastest target changes."))
    r_nom = nom["sram_over_best_hbm"]
    rs = [rob[v]["sram_over_best_hbm"] for v in ends if rob[v]["sram_over_best_hbm"] is not None]
    if r_nom is not None and rs:
        holds = all((x > 1) == (r_nom > 1) for x in rs)
        lines.append(f"- The best SRAM machine's long turn is {_x(r_nom)} the best HBM machine's at nominal figures "
                     f"({' and '.join(_x(x) for x in rs)} at the ends): the conclusion that SRAM machines pay "
                     f"{'more' if r_nom > 1 else 'less'} per long turn "
                     + ("holds across the range." if holds else "flips within the range."))
    flips = [t for t, ok in nom["slo_pass"].items() if any(rob[v]["slo_pass"].get(t, ok) != ok for v in ends)]
    if flips:
        lines.append(f"- The SLO verdict flips within the estimate range for: {', '.join(flips)}.")
    else:
        lines.append("- Every target's SLO verdict at this agent count holds across the estimate range.")
    return lines
