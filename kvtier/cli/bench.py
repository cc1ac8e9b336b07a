"""``kvtier bench``: the main job.

The simulator suite (traces x targets x policies) is not built yet; until it is, the main
job is the store demonstration, which exercises every tier with real bytes.
"""

from __future__ import annotations

from kvtier.cli.demo import add_demo_arguments, run_demo


def run_bench(args) -> int:
    print("kvtier bench: store demonstration (HBM -> DRAM -> lz4 flash, then restart and verify)")
    return run_demo(args)


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run the main job on its embedded default")
    add_demo_arguments(p)
    p.set_defaults(func=run_bench)
