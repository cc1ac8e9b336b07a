"""``kvtier bench``: suite configs, estimate variants, the executor, the results folder."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import csv
import json

import pytest

from kvtier.cli import main
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.suite import (
    DEFAULT_SUITE,
    QUICK_SUITE,
    SuiteConfig,
    build_target,
    load_suite,
    make_jobs,
    run_suite,
    suite_from_dict,
    target_variant,
    write_results,
)
from kvtier.targets import HardwareTarget

TINY = {"name": "tiny", "models": ["llama-3.1-70b"], "targets": ["cerebras-cs3x4", "h200"], "policies": ["lru"],
        "planners": ["always-fetch", "cost-optimal"], "agents": [1, 2], "headline_agents": 2,
        "long_context_tokens": 32768, "capacity_max_agents": 4, "capacity_agents": [1, 2, 3, 4], "sensitivity": False,
        "workload": {"workload": "coding-agent-small", "requests_per_agent": 8, "block_tokens": 256, "seed": 3}}


def tiny_suite(**kw) -> SuiteConfig:
    return suite_from_dict({**TINY, **kw})


def test_default_suite_covers_the_issue():
    d = DEFAULT_SUITE
    assert set(d.models) == {"llama-3.1-70b", "qwen3-coder-480b-a35b"}
    assert set(d.policies) == {"lru", "s3fifo", "arc", "cost-aware", "belady"}
    assert set(d.planners) == {"always-fetch", "always-recompute", "cost-optimal"}
    assert d.agents == (1, 8, 64) and d.slo_ttft_s == 2.0
    assert {"cerebras-cs3x4", "groq-lpu-576", "h100", "b200", "etched-sohu", "matx-one"} <= set(d.targets)
    # coding agents' contexts reach 128k tokens before compaction
    assert d.trace_config(1).compact_at_tokens >= 131_072
    assert len(make_jobs(QUICK_SUITE)) < len(make_jobs(DEFAULT_SUITE))


def test_toml_config_overrides_and_errors(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "x"\nagents = [2]\nslo_ttft_s = 0.5\n[workload]\nrequests_per_agent = 5\n[chips]\nh100 = 16\n')
    cfg = load_suite(p)
    assert cfg.name == "x" and cfg.agents == (2,) and cfg.slo_ttft_s == 0.5 and cfg.chips == {"h100": 16}
    assert cfg.workload["requests_per_agent"] == 5 and cfg.workload["block_tokens"] == 256  # the rest kept
    assert cfg.policies == DEFAULT_SUITE.policies
    p.write_text("agentz = [1]\n")
    with pytest.raises(ConfigError, match="agentz"):
        load_suite(p)
    p.write_text('targets = ["tpu9"]\n')
    with pytest.raises(UnknownNameError, match="tpu9"):
        load_suite(p)
    p.write_text("slo_ttft_s = -1\n")
    with pytest.raises(ConfigError, match="slo_ttft_s"):
        load_suite(p)
    p.write_text("[workload]\nnum_agentz = 3\n")
    with pytest.raises(ConfigError, match="num_agentz"):
        load_suite(p)


def test_estimate_variants_move_figures_the_right_way():
    t = HardwareTarget.preset("cerebras-cs3x4", model="llama-3.1-70b")
    lo, hi = target_variant(t, "low"), target_variant(t, "high")
    assert target_variant(t, "nominal") is t
    assert lo.compute_flops < t.compute_flops < hi.compute_flops  # compute is an estimate
    assert lo.tiers[1].latency_s >= t.tiers[1].latency_s >= hi.tiers[1].latency_s
    assert lo.tiers[0].read_bw_bytes_per_s == t.tiers[0].read_bw_bytes_per_s  # published: unchanged
    # a per-chip preset gets at least min_chips; a fixed system keeps its size
    cfg = SuiteConfig()
    assert build_target("h100", "llama-3.1-70b", cfg).chips == 8
    assert build_target("cerebras-cs3x4", "llama-3.1-70b", cfg).chips == 4


def _strip(doc):
    d = json.loads(json.dumps(doc, default=str))
    d.pop("timing")
    d["meta"].pop("created_utc")
    for r in d["results"]:
        r.pop("sim_wall_s")
    return d


def test_tiny_suite_runs_deterministically_and_any_executor_gives_the_same(tmp_path):
    cfg = tiny_suite()
    a = run_suite(cfg, workers=1, progress=False)
    # 2 targets x 2 agent counts x (1 policy x 2 planners + 2 estimate reruns)
    assert len(a["results"]) == 2 * 2 * (2 + 2)
    with cf.ThreadPoolExecutor(max_workers=2) as ex:
        b = run_suite(cfg, executor=ex, progress=False)
    assert _strip(a) == _strip(b)
    r = a["results"][0]
    assert {"summary", "derived", "policy", "planner", "agents", "variant"} <= set(r)
    # the SLO capacity scan: per target and estimate end, every count of the scan probed
    assert {(c["target"], c["variant"]) for c in a["capacity"]} == {
        (t, v) for t in ("cerebras-cs3x4", "h200") for v in ("nominal", "low", "high")}
    for c in a["capacity"]:
        assert [p["agents"] for p in c["probes"]] == [1, 2, 3, 4]
        passed = [p["agents"] for p in c["probes"] if p["meets_slo"]]
        failed = [p["agents"] for p in c["probes"] if not p["meets_slo"]]
        assert c["max_agents"] == max(passed, default=0)
        assert c["first_fail"] == min(failed, default=None)
        assert c["monotone"] == all(f > c["max_agents"] for f in failed)
        assert c["deployment"]["describe"].startswith("TP")
    assert set(a["meta"]) >= {"kvtier_version", "git_revision", "config"}


def test_results_folder_files_and_report(tmp_path):
    cfg = tiny_suite()
    doc = run_suite(cfg, workers=1, progress=False)
    out = write_results(doc, tmp_path / "run")
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.csv", "report.md"} <= names
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) == 6 and all((out / n).stat().st_size > 10_000 for n in pngs)
    assert "timeline_llama-3_1-70b.png" in pngs and "](timeline_llama-3_1-70b.png)" in (out / "report.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["meta"]["config"]["name"] == "tiny" and saved["meta"]["kvtier_version"]
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0].startswith("# kvtier ") and "git" in lines[0]
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == len(doc["results"])
    assert {"ttft_p99_s", "hit_ratio.hbm", "link_read_bytes.pcie5"} <= set(rows[-1])
    report = (out / "report.md").read_text()
    assert "what do the SRAM machines" in report
    assert "per turn" in report and "cerebras-cs3x4" in report
    assert "Sanity check against published speeds" in report
    # the published single-user speeds: both within 30% with the default per-layer latency...
    assert report.count("within 30%") == 2 and "The gap:" not in report
    # ... and with the bandwidth/compute roofline alone, the report explains the gap
    from kvtier.suite.report import render_report, sanity_checks

    doc["meta"]["config"]["decode_layer_latency_s"] = 0.0
    checks = {c["target"]: c for c in sanity_checks(doc)}
    assert checks["cerebras-cs3x4"]["ratio"] > 100 and not checks["groq-lpu-576"]["within_30pct"]
    assert render_report(doc).count("The gap:") == 2


def test_cli_bench_with_config(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text('targets = ["h200"]\nplanners = ["cost-optimal"]\nagents = [1]\nestimates = false\n')
    out = tmp_path / "out"
    argv = ["bench", "--quick", "--config", str(p), "--out", str(out), "--no-progress", "--no-plots", "--workers", "1"]
    assert main(argv) == 0
    assert (out / "report.md").exists() and (out / "results.csv").exists()
    assert "simulations" in capsys.readouterr().out
    p.write_text("agents = []\n")
    assert main(argv) == 2
    assert "suite.agents" in capsys.readouterr().out
    # the last line gives the report's path; --resume reruns nothing when every job is there
    p.write_text('targets = ["h200"]\nplanners = ["cost-optimal"]\nagents = [1]\nestimates = false\n')
    assert main(argv + ["--resume"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "jobs reused" in lines[-2] and lines[-1].endswith(str((out / "report.md").resolve()))
    assert main(["bench", "--quick", "--resume", "--no-progress"]) == 2
    assert "--resume needs --out" in capsys.readouterr().out


def test_a_user_target_file_is_swept_like_a_preset(tmp_path):
    t = HardwareTarget.preset("h200", chips=8)
    (tmp_path / "mine.json").write_text(json.dumps({**t.to_dict(derived=False), "name": "my-h200"}))
    (tmp_path / "s.toml").write_text('targets = ["mine.json", "h200"]\nplanners = ["cost-optimal"]\nagents = [1]\n'
                                     'estimates = false\nmodels = ["llama-3.1-70b"]\npolicies = ["lru"]\n'
                                     '[workload]\nworkload = "coding-agent-small"\nrequests_per_agent = 6\n')
    cfg = load_suite(tmp_path / "s.toml")
    doc = run_suite(cfg, workers=1, progress=False)
    # the file describes the same deployment as the preset, so the preset is not simulated twice
    assert {r["target"] for r in doc["results"]} == {"mine.json"}
    assert [u["target"] for u in doc["unavailable"]] == ["h200"] and "mine.json" in doc["unavailable"][0]["reason"]
    same = run_suite(dataclasses.replace(cfg, targets=("h200",)), workers=1, progress=False)
    assert doc["results"][0]["summary"] == same["results"][0]["summary"]
    (tmp_path / "s.toml").write_text('targets = ["nope.toml"]\n')
    with pytest.raises(ConfigError, match="nope.toml"):
        load_suite(tmp_path / "s.toml")


def _doc_core(doc):
    """The parts of a results document that must not depend on how it was run."""
    d = _strip(doc)
    d["meta"].pop("jobs_resumed")
    return json.dumps(d, sort_keys=True)


def test_an_interrupted_sweep_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    import kvtier.suite.runner as runner

    cfg = tiny_suite(estimates=False, capacity_max_agents=2, capacity_agents=[1, 2])
    whole = run_suite(cfg, workers=1, progress=False)
    jobs = tmp_path / "jobs"
    real = runner.run_job
    calls = []

    def interrupted_after_two(job):  # the third job is a Ctrl-C
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(runner, "run_job", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_suite(cfg, workers=1, progress=False, job_dir=jobs)
    monkeypatch.setattr(runner, "run_job", real)
    assert len(list(jobs.glob("*.json"))) == 2  # the finished jobs were kept
    resumed = run_suite(cfg, workers=1, progress=False, job_dir=jobs, resume=True)
    assert resumed["meta"]["jobs_resumed"] == 2
    assert len(list(jobs.glob("*.json"))) == len(make_jobs(cfg))
    assert _doc_core(resumed) == _doc_core(whole)


def test_a_dask_local_cluster_gives_the_local_results(tmp_path):
    pytest.importorskip("distributed")
    from kvtier.suite.runner import make_executor

    cfg = tiny_suite(estimates=False, capacity_max_agents=0, agents=[1])
    local = run_suite(cfg, workers=1, progress=False)
    ex = make_executor("dask", None, 2)
    try:
        remote = run_suite(cfg, executor=ex, progress=False)
    finally:
        ex.shutdown()
    assert _doc_core(remote) == _doc_core(local)


def test_capacity_scan_finds_a_verdict_that_is_not_monotone():
    """A bisection that assumes more agents never help would report 2 for this SLO verdict
    (fails at 3 and 4, passes at 5 and 6: B200's kind of cliff); the scan probes every count
    and reports 6, the first failure 3, and that the verdict is not monotone."""
    from kvtier.suite.runner import scan_capacity

    verdict = {1: True, 2: True, 3: False, 4: False, 5: True, 6: True, 8: False}
    probed = []

    def probe(n):
        probed.append(n)
        return verdict[n]

    got = scan_capacity(probe, sorted(verdict))
    assert probed == [1, 2, 3, 4, 5, 6, 8]
    assert got["max_agents"] == 6 and got["first_fail"] == 3 and got["monotone"] is False
    mono = scan_capacity(lambda n: n <= 4, [1, 2, 4, 8])
    assert mono["max_agents"] == 4 and mono["first_fail"] == 8 and mono["monotone"] is True
    assert scan_capacity(lambda n: False, [1, 2])["max_agents"] == 0


def test_slo_is_p99_ttft_and_p50_tpot_with_every_request_served():
    from kvtier.suite.runner import meets_slo

    s = {"ttft_p99_s": 1.0, "tpot_p50_s": 0.04, "overflow_requests": 0}
    assert meets_slo(s, 2.0, 0.05)
    assert not meets_slo({**s, "tpot_p50_s": 0.06}, 2.0, 0.05)
    assert not meets_slo({**s, "ttft_p99_s": 2.5}, 2.0, 0.05)
    assert not meets_slo({**s, "overflow_requests": 1}, 2.0, 0.05)


def test_sensitivity_reruns_and_the_report_names_deployments_and_precision(tmp_path):
    cfg = tiny_suite(sensitivity=True, estimates=False, agents=[2], capacity_max_agents=0)
    doc = run_suite(cfg, workers=1, progress=False)
    variants = {r["variant"] for r in doc["results"]}
    from kvtier.suite.runner import SENSITIVITY

    assert variants == {"nominal", *SENSITIVITY}
    # the precision variant halves (bf16 -> fp8 is the default, so doubles) every KV figure
    base = {r["target"]: r for r in doc["results"] if r["variant"] == "nominal"}
    kv = {r["target"]: r for r in doc["results"] if r["variant"] == "kv-precision"}
    for t in base:
        assert kv[t]["summary"]["block_bytes"] == 2 * base[t]["summary"]["block_bytes"]
        assert kv[t]["summary"]["deployment"]["kv_bytes_per_element"] == 2
    from kvtier.suite.report import render_report, sensitivity_rows

    rows = sensitivity_rows(doc, "llama-3.1-70b", 2)
    assert [r["variant"] for r in rows][0] == "nominal" and len(rows) == 1 + len(SENSITIVITY)
    text = render_report(doc)
    assert "Which assumptions flip the verdict" in text
    assert "TP1 x PP4 x 1 replica" in text and "TP8 x PP1 x 1 replica" in text
    assert "weights fp8, KV cache fp8" in text


def test_report_sentences_follow_the_numbers():
    from kvtier.suite.report import _robustness_sentences

    nom = {"ranking": ["a", "b", "c"], "sram_over_best_hbm": 3.0, "slo_pass": {"a": True, "b": True, "c": False}}
    same = _robustness_sentences({"nominal": nom, "low": dict(nom), "high": dict(nom)})
    assert "holds at both ends" in same[0] and "holds across the range" in same[1] and "holds across" in same[2]
    flipped = {"ranking": ["b", "a", "c"], "sram_over_best_hbm": 0.8, "slo_pass": {"a": False, "b": True, "c": False}}
    text = " ".join(_robustness_sentences({"nominal": nom, "low": flipped, "high": dict(nom)}))
    assert "flips within the ranges (at the low end b, a change places); even the fastest target changes" in text
    assert "flips within the range" in text and "SLO verdict flips within the estimate range for: a" in text
