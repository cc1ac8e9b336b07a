"""``kvtier bench``: the main job — simulate coding agents on every hardware target.

With no arguments it runs the embedded default suite (``kvtier.suite.DEFAULT_SUITE``);
``--quick`` a small one; ``--config FILE`` a TOML sweep. Results go to
``results/<run-id>/`` (or ``--out DIR``): results.json, results.csv, report.md, PNGs.
The store demonstration that ``bench`` used to run is ``kvtier demo``.
"""

from __future__ import annotations

from pathlib import Path

from kvtier.cli._help import with_example
from kvtier.errors import KvtierError


def run_bench(args) -> int:
    import dataclasses

    from kvtier.suite import DEFAULT_SUITE, QUICK_SUITE, default_run_id, load_suite, run_suite, write_results

    base = QUICK_SUITE if args.quick else DEFAULT_SUITE
    try:
        cfg = load_suite(args.config, base=base) if args.config else base
        if args.slo is not None:
            cfg = dataclasses.replace(cfg, slo_ttft_s=args.slo)
        if args.slo_tpot is not None:
            cfg = dataclasses.replace(cfg, slo_tpot_s=args.slo_tpot)
        out = Path(args.out) if args.out else Path("results") / f"{default_run_id()}-{cfg.name}"
        try:
            out.mkdir(parents=True, exist_ok=True)  # fail before the run, not after it
        except OSError as e:
            print(f"kvtier bench: error: --out: cannot create {out} ({e.strerror})")
            return 2
        print(f"kvtier bench: suite {cfg.name!r}: {len(cfg.models)} model(s) x {len(cfg.targets)} target(s) x "
              f"{len(cfg.policies)} policies x {len(cfg.planners)} planners x agents {list(cfg.agents)}")
        doc = run_suite(cfg, workers=args.workers, progress=not args.no_progress)
        write_results(doc, out, plots=not args.no_plots)
    except KvtierError as e:
        print(f"kvtier bench: error: {e}")
        return 2
    print(f"kvtier bench: {doc['meta']['simulations']} simulations in {doc['timing']['wall_s']:.1f} s "
          f"-> {out}/report.md")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="simulate coding agents on every hardware target (the main job)",
                              **with_example("kvtier bench --quick --out results/quick"))
    p.add_argument("--quick", action="store_true",
                   help="a small suite (one model, one target of each family, 1 and 8 agents)")
    p.add_argument("--config", metavar="FILE", help="a TOML suite config (keys it sets override the suite)")
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<run-id>-<suite>)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every CPU; 1 runs in-process)")
    p.add_argument("--slo", type=float, default=None, help="p99 TTFT SLO in seconds (default 2)")
    p.add_argument("--slo-tpot", type=float, default=None, help="p50 time-per-output-token SLO in seconds (default 0.05)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run_bench)
