"""The suite's PNG plots (matplotlib, headless): one message per plot, labelled axes.

* ``ttft_vs_context_<model>.png`` — median TTFT per context-length bin, one line per target;
* ``decode_vs_context_<model>.png`` — median decode tokens/s per agent per bin (the
  residency cliff);
* ``kv_sources_<model>.png`` — where each turn's prefix KV came from, per target;
* ``link_bytes_<model>.png`` — GB moved per turn on each link (read and write), per target;
* ``max_agents_<model>.png`` — the largest agent count under the SLO (p99 TTFT, p50 TPOT), and per kW;
* ``timeline_<model>.png`` — one agent's session per target, turn by turn: waiting in the
  queue, prefill (fetches included) to the first token, decode, the tool wait before its
  next turn; turns that fetched or streamed KV over a link, or were preempted, are marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kvtier.suite.report import is_sram, max_agents_under_slo, select


def _meta(doc) -> dict:
    m = doc["meta"]
    return {"Software": f"kvtier {m['kvtier_version']} (git {m['git_revision']})",
            "Description": f"kvtier bench suite {m['config']['name']!r}; config in results.json"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _headline(doc, model, agents):
    cfg = doc["meta"]["config"]
    return sorted(select(doc["results"], model=model, agents=agents, variant="nominal", policy=cfg["headline_policy"],
                          planner=cfg["headline_planner"]), key=lambda r: r["target"])


def _style(doc, model, target):
    return "-" if is_sram(doc, model, target) else "--"


def _by_context_plot(doc, model, agents, key, ylabel, title, path, log=True):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in _headline(doc, model, agents):
        bins = [b for b in r["derived"]["by_context"] if b[key] is not None]
        if not bins:
            continue
        x = [((b["lo"] + (b["hi"] if b["hi"] is not None else b["lo"] * 1.25)) / 2) / 1024 for b in bins]
        y = [b[key] for b in bins]
        ax.plot(x, y, _style(doc, model, r["target"]), marker="o", label=r["target"] + (" (SRAM)" if is_sram(doc, model, r["target"]) else ""))
    ax.set_xlabel("context length (thousands of tokens)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_meta(doc))
    plt.close(fig)


def plot_all(doc, out_dir) -> list[str]:
    """Write every plot for every model; returns the file names."""
    out = Path(out_dir)
    cfg = doc["meta"]["config"]
    agents = cfg["headline_agents"] if cfg["headline_agents"] in cfg["agents"] else max(cfg["agents"])
    names = []
    for model in cfg["models"]:
        if not _headline(doc, model, agents):
            continue
        tag = model.replace(".", "_")
        sub = f"{model}, {agents} agents, {cfg['headline_policy']} + {cfg['headline_planner']}"
        f = f"ttft_vs_context_{tag}.png"
        _by_context_plot(doc, model, agents, "ttft_p50_s", "median time to first token (s)",
                         f"Time to first token vs context length\n({sub})", out / f)
        names.append(f)
        f = f"decode_vs_context_{tag}.png"
        _by_context_plot(doc, model, agents, "decode_tokens_per_s_p50", "median decode speed per agent (tokens/s)",
                         f"Decode speed falls where KV no longer fits the compute tier\n({sub})", out / f)
        names.append(f)
        names.append(_kv_sources(doc, model, agents, sub, out / f"kv_sources_{tag}.png"))
        names.append(_link_bytes(doc, model, agents, sub, out / f"link_bytes_{tag}.png"))
        names.append(_max_agents(doc, model, out / f"max_agents_{tag}.png"))
        if any(r["derived"].get("timeline") for r in _headline(doc, model, agents)):
            names.append(_timeline(doc, model, agents, sub, out / f"timeline_{tag}.png"))
    return names


_PHASES = (("queue", "#bbbbbb"), ("prefill (fetch + compute)", "#e76f51"), ("decode", "#2a9d8f"),
           ("tool wait", "#f1f1f1"))


def _timeline(doc, model, agents, sub, path):
    """One agent's session on each target as bars over simulated time."""
    plt = _plt()
    rows = [r for r in _headline(doc, model, agents) if r["derived"].get("timeline")]
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(rows) + 2.2))
    for y, r in enumerate(rows):
        turns = r["derived"]["timeline"]["turns"]
        for i, t in enumerate(turns):
            end = t["end_s"] if t["end_s"] is not None else t["admit_s"]
            spans = [(t["ready_s"], t["admit_s"], 0), (t["admit_s"], t["first_s"] or t["admit_s"], 1),
                     (t["first_s"] or end, end, 2)]
            if i + 1 < len(turns):
                spans.append((end, turns[i + 1]["ready_s"], 3))
            for a, b, k in spans:
                if b > a:
                    ax.barh(y, b - a, left=a, color=_PHASES[k][1], edgecolor="none", height=0.6)
            mark = "S" if t["streamed_bytes_per_token"] else ("F" if t["fetched_bytes"] else "")
            mark += "P" if t["preemptions"] else ""
            if mark:
                ax.text(t["admit_s"], y - 0.38, mark, fontsize=6, color="#264653")
    ax.set_yticks(range(len(rows)), [r["target"] for r in rows], fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=color, edgecolor="#999999", label=name) for name, color in _PHASES]
    ax.set_xlabel("simulated time (s); marks: F fetched KV over a link, S streamed KV, P preempted")
    ax.set_title(f"One agent's session (the one reaching the longest context), turn by turn\n({sub})", fontsize=11)
    ax.legend(handles=handles, fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_meta(doc))
    plt.close(fig)
    return path.name


def _kv_sources(doc, model, agents, sub, path):
    plt = _plt()
    rows = _headline(doc, model, agents)
    cats = []
    for r in rows:
        for k in r["derived"]["kv_source_share"]:
            key = "fetched from lower tiers" if k.startswith("fetched") else ("resident (compute tier)" if k.startswith("resident") else k)
            if key not in cats:
                cats.append(key)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2))
    left = np.zeros(len(rows))
    colors = {"resident (compute tier)": "#2a9d8f", "fetched from lower tiers": "#e9c46a",
              "recomputed (held lower)": "#f4a261", "recomputed (evicted or new)": "#e76f51"}
    for c in cats:
        vals = []
        for r in rows:
            sh = r["derived"]["kv_source_share"]
            if c == "fetched from lower tiers":
                vals.append(sum(v for k, v in sh.items() if k.startswith("fetched")))
            elif c == "resident (compute tier)":
                vals.append(sum(v for k, v in sh.items() if k.startswith("resident")))
            else:
                vals.append(sh.get(c, 0.0))
        vals = 100 * np.asarray(vals)
        ax.barh([r["target"] for r in rows], vals, left=left, label=c, color=colors.get(c))
        left += vals
    ax.set_xlabel("share of prefix KV blocks (%)")
    ax.set_title(f"Where each turn's prefix KV came from\n({sub})", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_meta(doc))
    plt.close(fig)
    return path.name


def _link_bytes(doc, model, agents, sub, path):
    plt = _plt()
    rows = _headline(doc, model, agents)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2))
    y = np.arange(len(rows))
    read = np.array([sum(r["summary"]["link_read_bytes"].values()) / max(1, r["summary"]["requests"]) / 1e9 for r in rows])
    write = np.array([sum(r["summary"]["link_write_bytes"].values()) / max(1, r["summary"]["requests"]) / 1e9 for r in rows])
    ax.barh(y - 0.2, read, height=0.4, label="read toward compute (fetch + streamed KV)", color="#264653")
    ax.barh(y + 0.2, write, height=0.4, label="written away (demotions)", color="#e76f51")
    ax.set_yticks(y, [f"{r['target']} ({', '.join(r['links']) or 'no link'})" for r in rows], fontsize=8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("GB per turn over the target's links")
    ax.set_title(f"Bytes moved per turn on the target's links\n({sub})", fontsize=11)
    ax.legend(fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_meta(doc))
    plt.close(fig)
    return path.name


def _max_agents(doc, model, path):
    plt = _plt()
    rows = max_agents_under_slo(doc, model)
    cfg = doc["meta"]["config"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 2), sharey=True)
    names = [r["target"] for r in rows]
    a1.barh(names, [r["max_agents"] for r in rows], color="#2a9d8f")
    a1.set_xlabel(f"most concurrent agents with p99 TTFT <= {cfg['slo_ttft_s']:g} s"
                  + (f" and p50 TPOT <= {cfg['slo_tpot_s'] * 1e3:g} ms" if cfg.get("slo_tpot_s") else ""))
    a1.set_title(f"Agents served under the SLO ({model})")
    per_kw = [r["agents_per_kw"] if r["agents_per_kw"] is not None else 0.0 for r in rows]
    a2.barh(names, per_kw, color="#e9c46a")
    for i, r in enumerate(rows):
        if r["agents_per_kw"] is None:
            a2.text(0, i, " power not known", va="center", fontsize=8)
    a2.set_xlabel("agents per kW")
    a2.set_title("... per kW of system power")
    a1.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_meta(doc))
    plt.close(fig)
    return path.name
