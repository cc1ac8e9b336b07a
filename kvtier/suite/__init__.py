"""``kvtier bench``: the suite runner (sweeps, executor, results folder, report, plots).

    from kvtier.suite import DEFAULT_SUITE, QUICK_SUITE, load_suite, run_suite, write_results
    doc = run_suite(QUICK_SUITE, workers=2)
    write_results(doc, "results/my-run")
"""

from kvtier.suite.config import DEFAULT_SUITE, QUICK_SUITE, SuiteConfig, load_suite, suite_from_dict
from kvtier.suite.results import default_run_id, write_results
from kvtier.suite.runner import build_target, make_jobs, run_job, run_suite, target_variant

__all__ = ["DEFAULT_SUITE", "QUICK_SUITE", "SuiteConfig", "build_target", "default_run_id", "load_suite", "make_jobs",
           "run_job", "run_suite", "suite_from_dict", "target_variant", "write_results"]
