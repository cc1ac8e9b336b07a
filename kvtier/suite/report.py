"""Findings from a suite's results, and ``report.md`` written in sentences from the numbers.

Every function here reads the results document of ``run_suite`` (plain data) and returns
plain data; ``render_report`` turns it into markdown. Nothing is hard-coded about which
machine wins: the sentences are chosen by comparing the numbers.
"""

from __future__ import annotations

import math

from kvtier.sim import regime_table
from kvtier.suite.runner import build_target, duplicate_targets
from kvtier.suite.config import SuiteConfig

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


def _select(results, **kw):
    return [r for r in results if all(r.get(k) == v for k, v in kw.items())]


def is_sram(doc, model, target) -> bool:
    t = doc["targets"].get(f"{model}|{target}|nominal")
    return bool(t) and t["tier_kinds"][0] == "sram"


def headline_rows(doc, model, agents, variant="nominal") -> list[dict]:
    """Per target: the headline policy/planner's long-context turn cost."""
    cfg = doc["meta"]["config"]
    out = []
    for r in _select(doc["results"], model=model, agents=agents, variant=variant, policy=cfg["headline_policy"],
                     planner=cfg["headline_planner"]):
        d = r["derived"]
        s = r["summary"]
        out.append({"target": r["target"], "sram": is_sram(doc, model, r["target"]),
                    "turn_long_s": d["turn_long_mean_s"], "turn_short_s": d["turn_short_mean_s"],
                    "decode_long": d["decode_long_tokens_per_s_p50"], "decode_short": d["decode_short_tokens_per_s_p50"],
                    "streamed_long": d["streamed_long_share"], "ttft_p99_s": s["ttft_p99_s"],
                    "overflow": s["overflow_requests"], "requests": s["requests"], "tiers": r["tiers"]})
    return sorted(out, key=lambda x: x["target"])


def max_agents_under_slo(doc, model, variant="nominal") -> list[dict]:
    """Per target: the largest agent count whose p99 TTFT meets the SLO with every request
    served (headline policy/planner), and that per kW where power is known: from the
    bisection (``capacity``) when the suite ran it, else from the swept counts."""
    cfg = doc["meta"]["config"]
    slo = cfg["slo_ttft_s"]
    out = []
    cap = [c for c in doc.get("capacity", []) if c["model"] == model and c["variant"] == variant]
    if cap:
        order = {t: i for i, t in enumerate(cfg["targets"])}
        for c in sorted(cap, key=lambda c: order.get(c["target"], 1 << 30)):
            p = c["power_w"]
            out.append({"target": c["target"], "max_agents": c["max_agents"], "power_w": p, "chips": c["chips"],
                        "agents_per_kw": c["max_agents"] / (p / 1000) if p else None,
                        "searched_up_to": cfg["capacity_max_agents"]})
        return out
    for target in cfg["targets"]:
        rows = _select(doc["results"], model=model, target=target, variant=variant, policy=cfg["headline_policy"],
                       planner=cfg["headline_planner"])
        if not rows:
            continue
        ok = [r["agents"] for r in rows
              if r["summary"]["ttft_p99_s"] is not None and r["summary"]["ttft_p99_s"] <= slo
              and r["summary"]["overflow_requests"] == 0]
        best = max(ok) if ok else 0
        t = doc["targets"].get(f"{model}|{target}|{variant}", {})
        power = t.get("power_w")
        out.append({"target": target, "max_agents": best, "power_w": power,
                    "agents_per_kw": best / (power / 1000) if power else None, "chips": t.get("chips")})
    return out


def policy_gap(doc, model, agents) -> list[dict]:
    """Per SRAM target: the best and worst policy x planner by long-context turn time."""
    out = []
    for target in doc["meta"]["config"]["targets"]:
        if not is_sram(doc, model, target):
            continue
        rows = [r for r in _select(doc["results"], model=model, target=target, agents=agents, variant="nominal")
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
        roof = regime_table(t, [p["context_tokens"]], 1)[0]
        row = regime_table(t, [p["context_tokens"]], 1, decode_layer_latency_s=cfg.decode_layer_latency_s)[0]
        sim = row.tokens_per_s_per_agent
        implied = (1.0 / p["tokens_per_s"] - roof.step_s) / t.model.num_layers
        out.append({**p, "simulated_tokens_per_s": sim, "roofline_tokens_per_s": roof.tokens_per_s_per_agent,
                    "ratio": sim / p["tokens_per_s"], "within_30pct": abs(sim / p["tokens_per_s"] - 1) <= 0.3,
                    "roofline_step_s": roof.step_s, "layer_latency_s": cfg.decode_layer_latency_s,
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
            out.append({"target": target, "agents": agents,
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
        why = (f"{100 * r['streamed_long']:.0f}% of those turns stream KV that does not fit the SRAM from "
               f"{r['tiers'][1] if len(r['tiers']) > 1 else 'nowhere'} at every token, so it decodes at "
               f"{_num(r['decode_long'])} tokens/s (vs {_num(r['decode_short'])} tokens/s below 32k)"
               if r["streamed_long"] else
               f"its decode runs at {_num(r['decode_long'])} tokens/s")
        lost = (f"; {r['overflow']} of its {r['requests']:,} turns have more KV than the SRAM holds and nowhere to "
                f"stream it from, so they are not served at all" if r["overflow"] else "")
        lines.append(
            f"- **{r['target']}** pays {_num(r['turn_long_s'])} s per turn at contexts of {L:,}+ tokens, "
            f"{_x(ratio)} the best HBM machine ({best_h['target']}, {_num(best_h['turn_long_s'])} s): {why}{lost}.")
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
    how = (f"searched by bisection over 1..{cfg['capacity_max_agents']} agents (a value of "
           f"{cfg['capacity_max_agents']} means at least that many)" if doc.get("capacity")
           else f"among the swept counts {list(cfg['agents'])}")
    out += ["## Largest number of concurrent agents under the SLO", "",
            f"p99 TTFT <= {slo:g} s with every request served, {how} ({cfg['headline_policy']}, "
            f"{cfg['headline_planner']}). Per kW where the target's power is known.", ""]
    out += ["| model | target | chips | max agents | agents per kW | at low end | at high end |", "|---|---|---|---|---|---|---|"]
    for model in cfg["models"]:
        lo = {r["target"]: r["max_agents"] for r in max_agents_under_slo(doc, model, "low")}
        hi = {r["target"]: r["max_agents"] for r in max_agents_under_slo(doc, model, "high")}
        for r in max_agents_under_slo(doc, model):
            out.append(f"| {model} | {r['target']} | {r['chips']} | {r['max_agents']} | {_num(r['agents_per_kw'])} | "
                       f"{lo.get(r['target'], 'n/a')} | {hi.get(r['target'], 'n/a')} |")
    out += ["", "## Headline numbers per target", "",
            "Where a target has estimated figures, the long-turn time and p99 TTFT show [pessimistic - optimistic] "
            "from the reruns at both ends of the estimate ranges (n/a: the model's weights do not fit at that end).", ""]
    out += ["| model | target | p99 TTFT (s) | turn < 32k (s) | turn >= long (s) | decode < 32k (tok/s) | "
            "decode long (tok/s) | long turns streamed | overflow |", "|---|---|---|---|---|---|---|---|---|"]
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
            out.append(f"| {model} | {r['target']} | {rng(r['target'], 'ttft_p99_s', r['ttft_p99_s'])} | "
                       f"{_num(r['turn_short_s'])} | {rng(r['target'], 'turn_long_s', r['turn_long_s'])} | "
                       f"{_num(r['decode_short'])} | {_num(r['decode_long'])} | {streamed} | {r['overflow']} |")
    out += ["", "## Residency regime as context grows", "",
            "Equal agents each holding the context; R = resident in the compute tier, S = streamed from the next tier "
            "at every decode step, O = overflow (does not fit anywhere it can be read from). Cells: regime and "
            "decode tokens/s per agent (the simulator's decode step for that batch).", ""]
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
            f"Decode steps add {_num(cfg['decode_layer_latency_s'] * 1e6)} us per layer to the bandwidth/compute "
            "roofline (`decode_layer_latency_s`); the roofline alone is shown in parentheses. The default latency is "
            "fitted to these two published figures, so this check shows that one value fits both, not an independent "
            "validation; turns that stream KV over a link are bandwidth-bound and hardly depend on it.", ""]
    for s in sanity_checks(doc):
        verdict = "within 30%" if s["within_30pct"] else "outside 30%"
        out.append(
            f"- {s['target']} ({s['model']}, {s['context_tokens']:,}-token context, one user): simulated "
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
    out += ["", "## Model and caveats", "",
            "- Simulated clock in integer ns; prefills take turns on the compute engine; fetches, streamed KV and "
            "write-backs queue on their links; decode is one continuous batch whose step is the cost model's roofline.",
            "- `low`/`high` rerun every estimated hardware figure at its pessimistic/optimistic end for the machine.",
            "- Cache decisions are the replay engine's (same policy kernels); Belady's future is the trace's order.",
            "- Plots: " + ", ".join(f"`{p}`" for p in doc.get("plots", [])), ""]
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
