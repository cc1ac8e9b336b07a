"""``kvtier trace convert|gen|stats``: move traces between formats, generate, summarise."""

from __future__ import annotations

import argparse
import json
import os
import sys

from kvtier.cli._help import with_example
from kvtier.errors import ConfigError


def register(subparsers) -> None:
    from kvtier.traces import READ_FORMATS, WORKLOADS, WRITE_FORMATS

    p = subparsers.add_parser("trace", help="convert, generate and summarise traces",
                              description="Convert, generate and summarise request traces (see traces/README.md). "
                              "Any input may be gzip- or zstd-compressed (.jsonl.gz, a folder of *.json.gz).",
                              **with_example("kvtier trace stats traces/coding-agent-1.kvtrace"))
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser("convert", help="rewrite a trace in another format",
                       **with_example("kvtier trace convert traces/coding-agent-small-2.jsonl "
                                      "/tmp/agents.dynamo-v2.jsonl --to dynamo-v2"))
    c.add_argument("input", metavar="IN")
    c.add_argument("output", metavar="OUT")
    c.add_argument("--to", required=True, choices=WRITE_FORMATS, help="output format")
    c.add_argument("--format", default="auto", choices=("auto", *READ_FORMATS), help="input format (default: auto)")
    c.add_argument("--block-tokens", type=int, default=None, help="tokens per block, for inputs that do not say")
    c.set_defaults(func=_convert)

    g = sub.add_parser("gen", help="generate a synthetic coding-agent trace",
                       **with_example("kvtier trace gen --workload coding-agent --agents 8 --seed 1 "
                                      "--out /tmp/agents.kvtrace"))
    g.add_argument("--workload", default=None, choices=sorted(WORKLOADS),
                   help="named workload (default: the config file's \"workload\", else coding-agent)")
    g.add_argument("--agents", type=int, default=None, help="concurrent agents (num_agents)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--config", default=None, help="JSON file of generator knobs (overrides the workload's)")
    g.add_argument("--out", required=True, help="output path")
    g.add_argument("--to", default=None, choices=WRITE_FORMATS,
                   help="output format (default: kvtier for .jsonl, else kvtier-bin)")
    g.set_defaults(func=_gen)

    s = sub.add_parser("stats", help="requests, sessions, reuse and length percentiles of a trace",
                       **with_example("kvtier trace stats traces/tool-agent-100.jsonl --json"))
    s.add_argument("path", metavar="PATH", help="trace file, or folder of kv-cache-tester sessions")
    s.add_argument("--format", default="auto", choices=("auto", *READ_FORMATS))
    s.add_argument("--block-tokens", type=int, default=None)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--no-progress", action="store_true", help="no progress bar while reading the trace")
    s.set_defaults(func=_stats)


def _out_format(path: str, to: str | None) -> str:
    if to is not None:
        return to
    return "kvtier" if path.endswith(".jsonl") else "kvtier-bin"


def _convert(args: argparse.Namespace) -> int:
    from kvtier.traces import read_trace, write_trace

    trace = read_trace(args.input, args.format, block_tokens=args.block_tokens)
    write_trace(trace, args.output, args.to)
    print(f"wrote {args.output}: {trace.num_requests} requests, {trace.num_block_accesses} block accesses "
          f"({args.to})")
    return 0


def _gen(args: argparse.Namespace) -> int:
    from kvtier.traces import generate_trace, write_trace

    overrides = {}
    workload = args.workload
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                overrides = json.load(f)
        except OSError as e:
            raise ConfigError(f"--config: cannot read {args.config}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: {args.config} line {e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(overrides, dict):
            raise ConfigError(f"--config: {args.config}: expected a JSON object of generator knobs")
        workload = workload or overrides.pop("workload", None)
        overrides.pop("workload", None)
    if args.agents is not None:
        overrides["num_agents"] = args.agents
    if args.seed is not None:
        overrides["seed"] = args.seed
    trace = generate_trace(workload=workload or "coding-agent", **overrides)
    fmt = _out_format(args.out, args.to)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_trace(trace, args.out, fmt)
    print(f"wrote {args.out}: {trace.num_requests} requests, {trace.num_sessions} sessions, "
          f"{trace.num_block_accesses} block accesses, seed {trace.meta['seed']} ({fmt})")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from kvtier.traces import detect_format, read_trace, trace_stats

    trace = read_trace(args.path, args.format, block_tokens=args.block_tokens, progress=not args.no_progress)
    st = trace_stats(trace).as_dict()
    if args.json:
        json.dump(st, sys.stdout, sort_keys=True)
        print()
        return 0
    fmt = detect_format(args.path) if args.format == "auto" else args.format
    print(f"{args.path} ({fmt}, {st['block_tokens']}-token blocks)")
    for key in ("requests", "sessions", "unique_blocks", "block_accesses"):
        print(f"  {key:36s} {st[key]:,}")
    for key in ("infinite_cache_block_hit_ratio", "token_hit_ratio", "session_prefix_reuse_median",
                "session_prefix_reuse_token_weighted"):
        print(f"  {key:36s} {st[key]:.4f}")
    for key in ("input_tokens", "output_tokens", "reuse_distance_blocks"):
        d = st[key]
        print(f"  {key:36s} " + "  ".join(f"{k} {v:,.0f}" for k, v in d.items()))
    print(f"  {'duration_s':36s} {st['duration_s']:,.1f}")
    return 0
