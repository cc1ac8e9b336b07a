"""``kvtier demo``: the store demonstration (``kvtier.demo``)."""

from __future__ import annotations

import dataclasses
import json
import tempfile

from kvtier.cli._help import with_example
from kvtier.demo import DemoConfig, run_store_demo


def add_demo_arguments(p) -> None:
    p.add_argument("--dir", help="directory for the flash tier's file (default: a temporary one)")
    p.add_argument("--agents", type=int, default=DemoConfig.agents)
    p.add_argument("--turns", type=int, default=DemoConfig.turns)
    p.add_argument("--seed", type=int, default=DemoConfig.seed)
    p.add_argument("--json", action="store_true", help="print the result as JSON at the end")


def run_demo(args) -> int:
    cfg = DemoConfig(agents=args.agents, turns=args.turns, seed=args.seed)
    if args.dir:
        result = run_store_demo(cfg, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kvtier-demo-") as d:
            result = run_store_demo(cfg, d)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), default=str))
    bad = sum(r.corrupt_or_wrong for r in result.rows)
    return 0 if bad == 0 and result.reopened_verified == result.reopened_blocks else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the tiered-store demonstration",
                              **with_example("kvtier demo --agents 2 --turns 4 --json"))
    add_demo_arguments(p)
    p.set_defaults(func=run_demo)
