"""``kvtier bench``: the main job — simulate coding agents on every hardware target.

With no arguments it runs the embedded default suite (``kvtier.suite.DEFAULT_SUITE``);
``--quick`` a small one; ``--config FILE`` a TOML sweep. Results go to
``results/<run-id>/`` (or ``--out DIR``): results.json, results.csv, report.md, PNGs, and
``jobs/`` (each job's output as it finished: ``--resume --out DIR`` reruns only the jobs an
interrupted sweep did not finish). ``--executor dask --scheduler ADDRESS`` (or ``ray``)
runs the jobs on a cluster. The store demonstration is ``kvtier demo``.
"""

from __future__ import annotations

from pathlib import Path

from kvtier.cli._help import with_example
from kvtier.errors import KvtierError


def run_bench(args) -> int:
    import dataclasses

    from kvtier.suite import DEFAULT_SUITE, QUICK_SUITE, default_run_id, load_suite, run_suite, write_results
    from kvtier.suite.runner import make_executor

    base = QUICK_SUITE if args.quick else DEFAULT_SUITE
    try:
        cfg = load_suite(args.config, base=base) if args.config else base
        if args.slo is not None:
            cfg = dataclasses.replace(cfg, slo_ttft_s=args.slo)
        if args.slo_tpot is not None:
            cfg = dataclasses.replace(cfg, slo_tpot_s=args.slo_tpot)
        if args.resume and not args.out:
            print("kvtier bench: error: --resume needs --out DIR, the folder of the run to finish")
            return 2
        out = Path(args.out) if args.out else Path("results") / f"{default_run_id()}-{cfg.name}"
        try:
            out.mkdir(parents=True, exist_ok=True)  # fail before the run, not after it
        except OSError as e:
            print(f"kvtier bench: error: --out: cannot create {out} ({e.strerror})")
            return 2
        print(f"kvtier bench: suite {cfg.name!r}: {len(cfg.models)} model(s) x {len(cfg.targets)} target(s) x "
              f"{len(cfg.policies)} policies x {len(cfg.planners)} planners x agents {list(cfg.agents)}")
        ex = None if args.executor == "process" else make_executor(args.executor, args.scheduler, args.workers)
        try:
            doc = run_suite(cfg, executor=ex, workers=args.workers, progress=not args.no_progress,
                            job_dir=out / "jobs", resume=args.resume)
        finally:
            if ex is not None:
                ex.shutdown()
        write_results(doc, out, plots=not args.no_plots)
    except KvtierError as e:
        print(f"kvtier bench: error: {e}")
        return 2
    resumed = doc["meta"].get("jobs_resumed", 0)
    print(f"kvtier bench: {doc['meta']['simulations']} simulations in {doc['timing']['wall_s']:.1f} s"
          + (f" ({resumed} of {doc['meta']['jobs']} jobs reused from {out / 'jobs'})" if resumed else ""))
    report = (out / "report.md").resolve()
    print(f"kvtier bench: report: {report}")
    if args.open:
        import webbrowser

        webbrowser.open(report.as_uri())
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
    p.add_argument("--resume", action="store_true",
                   help="with --out DIR: reuse the jobs an earlier, interrupted run finished there and run the rest")
    p.add_argument("--executor", choices=("process", "dask", "ray"), default="process",
                   help="where jobs run: a local process pool (default), a Dask cluster or Ray")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="the Dask scheduler (tcp://host:8786) or Ray address; without one, Dask starts a LocalCluster")
    p.add_argument("--open", action="store_true", help="open report.md when the run ends")
    p.set_defaults(func=run_bench)
