"""``kvtier example``: the numpy transformer whose paged attention reads KV from kvtier.

Runs ``kvtier.examples.agent_loop``: calibrates a ``local-cpu`` target on this machine,
checks the cost model against real fetches and recomputes, then runs multi-turn agent
sessions with a small HBM, DRAM and lz4 flash, printing per turn the hits per tier, the
planner's fetch/recompute decisions and predicted vs measured times; finally it compares
the logits with an unlimited-HBM run, bit for bit. Exit status 1 if they differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time

import numpy as np

from kvtier.cli._help import with_example
from kvtier.cost import break_even_fetch_bw_bytes_per_s
from kvtier.examples.agent_loop import (
    TIER_NAMES,
    AgentLoopConfig,
    calibrate,
    calibration_check,
    compare_runs,
    error_summary,
    local_cpu_target,
    run_agent_loop,
    turn_header,
)
from kvtier.examples.agent_loop.config import FLASH_CODECS
from kvtier.examples.transformer import Transformer, TransformerConfig
from kvtier.planners import planner_names


def _pct(x: float) -> str:
    return f"{x:+.0%}" if np.isfinite(x) else "-"


def _describe_model(cfg: AgentLoopConfig) -> str:
    m = cfg.model
    spec = m.model_spec()
    return (f"model: numpy transformer, {m.num_layers} layers, d_model {m.d_model}, {m.num_q_heads} query / "
            f"{m.num_kv_heads} KV heads x {m.head_dim}, {m.params_per_token / 1e6:.1f}M matmul params, seed {m.seed}; "
            f"{cfg.block_tokens}-token blocks of {spec.block_bytes(cfg.block_tokens) / 1024:.1f} KiB (float32)")


def _describe_calibration(cal, target) -> list[str]:
    oh = cal.fetch_overhead_s
    lz4 = (f"lz4 ratio {cal.lz4_ratio:.2f} on model KV, decode {cal.lz4_decode_bw_bytes_per_s / 1e9:.1f} GB/s"
           if cal.lz4_decode_bw_bytes_per_s else f"lz4 ratio {cal.lz4_ratio:.2f} on model KV (stored raw)")
    paths = ", ".join(
        f"{name} {target.fetch_path(t).read_bw_bytes_per_s / 1e9:.1f} GB/s + {target.fetch_path(t).latency_s * 1e6:.1f} us"
        for t, name in enumerate(TIER_NAMES))
    return [
        f"measured here: memcpy {cal.memcpy_bw_bytes_per_s / 1e9:.1f} GB/s, file read {cal.file_read_bw_bytes_per_s / 1e9:.1f}"
        f" GB/s (page cache), CRC32C {cal.crc_bw_bytes_per_s / 1e9:.1f} GB/s, {lz4}; "
        f"achieved {cal.achieved_flops / 1e9:.1f} GFLOP/s; store cost per fetch: "
        + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in oh.items()),
        f"target local-cpu: fetch {paths}; compute {target.effective_flops / 1e9:.1f} GFLOP/s",
    ]


def _print_ops(title: str, ops) -> None:
    print(title)
    print(f"  {'operation':<40} {'predicted ms':>12} {'measured ms':>12} {'error':>7}")
    for op in ops:
        if op.kind == "fetch":
            what = f"fetch {op.blocks} blocks from {op.tier}"
        else:
            what = f"{op.kind} {op.tokens} tokens after {op.context_tokens}"
        print(f"  {what:<40} {op.predicted_s * 1e3:>12.2f} {op.measured_s * 1e3:>12.2f} {_pct(op.error):>7}")


def _print_run(result, reference) -> dict:
    turns = result.turns
    found = {k: sum(t.found[k] for t in turns) for k in (*TIER_NAMES, "missing")}
    fetched = {k: sum(t.fetched.get(k, 0) for t in turns) for k in TIER_NAMES[1:]}
    recomputed = sum(t.recomputed_blocks for t in turns)
    verified = sum(t.recompute_verified for t in turns)
    mismatched = sum(t.recompute_mismatched for t in turns)
    print(f"planner {result.config.planner}: {len(turns)} turns in {result.seconds:.1f} s; prefix blocks found "
          + ", ".join(f"{k} {v}" for k, v in found.items())
          + "; decisions: fetch " + ", ".join(f"{k} {v}" for k, v in fetched.items())
          + f", recompute {recomputed} ({verified} checked equal to the stored copy, {mismatched} differ)")
    print("  cost model vs measured, per turn and tier (group totals; ops predicted >= 1 ms judged at 30%):")
    for e in error_summary(result):
        judged = (f"{e.within_30pct}/{e.judged} within 30%, worst {_pct(e.worst_error)}" if e.judged
                  else "none predicted >= 1 ms")
        print(f"    {e.group:<12} {e.ops:>3} ops: predicted {e.predicted_s * 1e3:8.2f} ms, measured {e.measured_s * 1e3:8.2f} ms "
              f"({_pct(e.total_error)}); {judged}")
    for name, t in result.stats["tiers"].items():
        print(f"    store {name:>5}: hits {t['hits']:>4}, blocks in {t['blocks_in']:>4}, evictions {t['evictions']:>4}, "
              f"demotions {t['demotions']:>4}, promotions {t['promotions']:>4}, drops {t['drops']:>3}, "
              f"written {t['bytes_written'] / 1e6:6.1f} MB (lz4 ratio {t['compression_ratio']:.2f})")
    eq = compare_runs(result, reference) if reference is not None else None
    if eq is not None:
        if eq.bitwise:
            print(f"  vs unlimited HBM: logits of {eq.turns_equal}/{eq.turns} turns and all tokens bitwise equal")
        else:
            print(f"  vs unlimited HBM: DIFFERENT: logits bitwise equal in {eq.turns_equal}/{eq.turns} turns (max |diff| "
                  f"{eq.max_abs_diff:g}), tokens {'equal' if eq.tokens_equal else 'differ'}")
    return {
        "planner": result.config.planner, "seconds": result.seconds, "found": found, "fetched": fetched,
        "recomputed_blocks": recomputed, "recompute_verified": verified, "recompute_mismatched": mismatched,
        "measured_ttft_s": sum(t.measured_ttft_s for t in turns), "predicted_ttft_s": sum(t.plan_ttft_s for t in turns),
        "equal_to_unlimited_hbm": None if eq is None else eq.bitwise,
        "errors": [e._asdict() | {"total_error": e.total_error} for e in error_summary(result)],
        "turns": [dataclasses.asdict(t) | {"ops": [o._asdict() for o in t.ops]} for t in turns],
        "stats": result.stats,
    }


def run_example(args) -> int:
    model_cfg = TransformerConfig.tiny(seed=args.seed) if args.tiny else TransformerConfig(seed=args.seed)
    planners = planner_names() if args.planner == "all" else [args.planner]
    base = AgentLoopConfig(
        model=model_cfg, block_tokens=args.block_tokens, sessions=args.sessions, turns=args.turns,
        turn_tokens=args.turn_tokens, generate_tokens=args.generate_tokens, hbm_blocks=args.hbm_blocks,
        dram_blocks=args.dram_blocks, flash_blocks=args.flash_blocks, flash_codec=args.flash_codec,
        fork_turn=args.fork_turn if args.sessions >= 2 and args.fork_turn and args.fork_turn < args.turns else None,
        planner=planners[0], seed=args.seed,
    )
    model = Transformer(model_cfg)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(_describe_model(base))
    report = {"config": dataclasses.asdict(base), "runs": []}
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kvtier-example-", dir=args.dir) as d:
        cal = calibrate(model, base.block_tokens, flash_dir=d, flash_codec=base.flash_codec, clock=clock)
        target = local_cpu_target(cal, **base.tier_bytes()._asdict())
        for line in _describe_calibration(cal, target):
            print(line)
        spec = base.model.model_spec()
        even = break_even_fetch_bw_bytes_per_s(spec, target)
        slowest = min(target.fetch_path(t).read_bw_bytes_per_s for t in range(len(TIER_NAMES)))
        print(f"  fetching a block beats recomputing it above {even / 1e6:.1f} MB/s of fetch bandwidth; the slowest tier here "
              f"reads at {slowest / 1e9:.1f} GB/s" + (", so cost-optimal fetches whatever is stored" if slowest > even else ""))
        check = calibration_check(model, target, base.block_tokens, flash_dir=d, flash_codec=base.flash_codec,
                                  clock=clock)
        _print_ops("calibration check (cost model on local-cpu vs a real store and the model):", check)
        report["calibration"] = dataclasses.asdict(cal)
        report["calibration_check"] = [o._asdict() | {"error": o.error} for o in check]
        reference = None
        if not args.no_reference:
            reference = run_agent_loop(base.unlimited_hbm(), flash_dir=d, calibration=cal, model=model, clock=clock)
        s = base.sessions
        fork = f", session {s - 1} forks from session 0 at turn {base.fork_turn}" if base.fork_turn else ""
        print(f"\n{s} sessions x {base.turns} turns{fork}; +{base.turn_tokens} tokens a turn (mean), "
              f"{base.generate_tokens} generated; HBM {base.hbm_blocks} blocks, DRAM {base.dram_blocks}, "
              f"flash {base.flash_blocks} ({base.flash_codec})")
        ok = True
        for name in planners:
            cfg = dataclasses.replace(base, planner=name)
            print(f"\n[{name}]")
            print(turn_header())
            result = run_agent_loop(cfg, flash_dir=d, calibration=cal, model=model, clock=clock, log=print)
            summary = _print_run(result, reference)
            report["runs"].append(summary)
            ok &= summary["recompute_mismatched"] == 0 and summary["equal_to_unlimited_hbm"] is not False
        if len(planners) > 1:
            print(f"\n{'planner':<18} {'fetched':>8} {'recomputed':>10} {'TTFT plan s':>12} {'TTFT measured s':>16} {'equal':>6}")
            for r in report["runs"]:
                print(f"{r['planner']:<18} {sum(r['fetched'].values()):>8} {r['recomputed_blocks']:>10} "
                      f"{r['predicted_ttft_s']:>12.3f} {r['measured_ttft_s']:>16.3f} {str(r['equal_to_unlimited_hbm']):>6}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    return 0 if ok else 1


def register(subparsers) -> None:
    d = AgentLoopConfig()
    p = subparsers.add_parser("example", help="a numpy transformer whose paged attention reads its KV from kvtier",
                              **with_example("kvtier example --tiny --planner all"))
    p.add_argument("--planner", default=d.planner, choices=[*planner_names(), "all"],
                   help=f"recompute-vs-fetch planner (default {d.planner}; 'all' runs each)")
    p.add_argument("--turns", type=int, default=d.turns)
    p.add_argument("--sessions", type=int, default=d.sessions)
    p.add_argument("--turn-tokens", type=int, default=d.turn_tokens, help="mean tokens a turn appends")
    p.add_argument("--generate-tokens", type=int, default=d.generate_tokens)
    p.add_argument("--fork-turn", type=int, default=d.fork_turn,
                   help="turn at which the last session forks from session 0 (0 or >= turns: no fork)")
    p.add_argument("--block-tokens", type=int, default=d.block_tokens)
    p.add_argument("--hbm-blocks", type=int, default=d.hbm_blocks)
    p.add_argument("--dram-blocks", type=int, default=d.dram_blocks)
    p.add_argument("--flash-blocks", type=int, default=d.flash_blocks)
    p.add_argument("--flash-codec", default=d.flash_codec, choices=list(FLASH_CODECS))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time with the wall clock (default) or this process's CPU time (steadier on a shared machine)")
    p.add_argument("--tiny", action="store_true", help="use the 2-layer test model (fast)")
    p.add_argument("--no-reference", action="store_true", help="skip the unlimited-HBM run (no equality check)")
    p.add_argument("--dir", help="directory for the flash files (default: a temporary one)")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.set_defaults(func=run_example)
