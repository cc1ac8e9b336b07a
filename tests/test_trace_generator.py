"""The coding-agent generator: determinism, structure, calibration, and the direction of knobs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvtier.cli import main
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.traces import (
    RELATION_JOIN,
    RELATION_SPAWN,
    CodingAgentConfig,
    generate_trace,
    read_trace,
    trace_stats,
    workload_config,
)
from kvtier.traces.stats import session_prefix_reuse, shared_prefix_blocks

SMALL = {"workload": "coding-agent-small"}


def test_deterministic_and_recorded():
    a = generate_trace(workload="coding-agent-small", num_agents=2, seed=3)
    b = generate_trace(workload="coding-agent-small", num_agents=2, seed=3)
    c = generate_trace(workload="coding-agent-small", num_agents=2, seed=4)
    assert a.equals(b)
    assert not c.equals(a, meta=False)
    assert a.meta["seed"] == 3 and a.meta["generator"].startswith("kvtier.traces.generator")
    assert CodingAgentConfig.from_dict(a.meta["config"]) == workload_config("coding-agent-small", num_agents=2, seed=3)


def test_golden_small_trace():
    t = generate_trace(workload="coding-agent-small", seed=0)
    s = trace_stats(t)
    # pinned: a change to the generator's draws shows up here first
    assert (t.num_requests, s.sessions, s.unique_blocks, s.block_accesses) == (68, 5, 2554, 45494)


def test_default_session_lands_in_public_ranges():
    # kv-cache-tester Claude Code sessions: median ~110k input tokens, mean ~140k, ~440 output
    # tokens per request, ~96% median per-session prefix reuse; contexts up to ~785k tokens.
    t = generate_trace(seed=0)
    s = trace_stats(t)
    assert 99_000 <= s.input_tokens["p50"] <= 121_000  # within 10% of ~110k
    assert 126_000 <= s.input_tokens["mean"] <= 154_000  # within 10% of ~140k
    assert 350 <= s.output_tokens["mean"] <= 550
    assert 0.94 <= s.session_prefix_reuse_median <= 0.99
    assert 0.94 <= session_prefix_reuse(t)[0][0] <= 0.98  # the main agent
    # a long-context cycle runs past the 200k window, short of kv-cache-tester's maximum
    assert 200_000 < s.input_tokens["max"] <= 785_000
    # pinned: the committed traces/coding-agent-1.kvtrace has these figures
    assert (t.num_requests, s.sessions, s.unique_blocks, s.block_accesses) == (265, 22, 21_551, 567_265)


def test_default_sessions_over_seeds_land_in_public_ranges():
    # the median over seeds 0-9 of each session's median and mean input (the README's table)
    stats = [trace_stats(generate_trace(seed=seed)) for seed in range(10)]
    assert 99_000 <= np.median([s.input_tokens["p50"] for s in stats]) <= 121_000
    assert 126_000 <= np.median([s.input_tokens["mean"] for s in stats]) <= 154_000
    assert 400 <= np.median([s.output_tokens["mean"] for s in stats]) <= 480
    # the right skew the long-context cycles exist for: mean over median ~1.27 publicly
    assert np.median([s.input_tokens["mean"] / s.input_tokens["p50"] for s in stats]) > 1.1


def test_blocks_are_the_full_blocks_of_the_input():
    t = generate_trace(workload="coding-agent-small", num_agents=3, seed=1)
    assert np.array_equal(t.blocks_per_request(), t.input_lengths // t.block_tokens)
    assert np.all(np.diff(t.timestamps_ms) >= 0)


def test_shared_prefixes_across_agents_and_repos():
    cfg = workload_config("coding-agent-small", num_agents=4, num_repos=2, seed=2, subagent_prob=0.0)
    t = generate_trace(cfg)
    first = {int(s): int(np.argmax(t.session_ids == s)) for s in np.unique(t.session_ids)}
    shared = (cfg.system_prompt_tokens + cfg.tool_definition_tokens) // cfg.block_tokens
    with_repo = (cfg.system_prompt_tokens + cfg.tool_definition_tokens + cfg.repo_context_tokens) // cfg.block_tokens
    b0, b1, b2 = (t.blocks(first[s]) for s in (0, 1, 2))
    # agents 0 and 2 share repository 0; agent 1 works on repository 1
    assert shared_prefix_blocks(b0, b1) == shared
    assert shared_prefix_blocks(b0, b2) == with_repo


def test_compaction_kills_the_old_prefix():
    cfg = workload_config("coding-agent-small", seed=5, subagent_prob=0.0, loop_turns_mean=10_000.0)
    t = generate_trace(cfg)
    rows = np.flatnonzero(t.session_ids == 0)
    compactions = [i for i in rows[:-1] if t.input_lengths[i] >= cfg.compact_at_tokens]
    assert compactions
    base = cfg.base_prefix_tokens // cfg.block_tokens
    for i in compactions:
        j = rows[np.searchsorted(rows, i) + 1]
        assert t.output_lengths[i] == cfg.compaction_output_tokens
        assert shared_prefix_blocks(t.blocks(i), t.blocks(j)) < base + 1
        assert t.input_lengths[j] < t.input_lengths[i] // 2


def test_subagents_fork_from_the_parent_and_are_joined():
    t = generate_trace(workload="coding-agent-small", seed=0, subagent_prob=0.3, num_agents=1)
    spawned = 0
    for i in range(t.num_requests):
        r = t.request(i)
        for src, _, _, rel in r.deps:
            if rel == RELATION_SPAWN:
                spawned += 1
                assert r.parent_session_id == t.session_ids[src]
                parent_blocks = t.blocks(src)
                assert np.array_equal(r.block_hashes[: len(parent_blocks)], parent_blocks)
            if rel == RELATION_JOIN:
                assert t.parent_session_ids[src] == r.session_id
    assert spawned >= 2


def _median_stat(key, seeds=range(3), **overrides):
    vals = []
    for seed in seeds:
        t = generate_trace(workload="coding-agent-small", seed=seed, **overrides)
        s = trace_stats(t)
        if key == "reuse":
            vals.append(session_prefix_reuse(t)[1])
        else:
            vals.append(s.input_tokens[key.removeprefix("input_")])
    return float(np.median(vals))


# long-context cycles on the small workload (off there by default): a 120k window, 2x tool results
LONG = {"long_context_share": 0.3, "long_context_compact_at_tokens": 120_000, "long_context_tool_result_scale": 2.0}


def _main_cycles(t, cfg):
    """(peak input tokens, ended by compaction) of each context cycle of the main agent (session 0)."""
    x = t.input_lengths[t.session_ids == 0]
    out_len = t.output_lengths[t.session_ids == 0]
    starts = [0] + [i for i in range(1, len(x)) if x[i] < x[i - 1]]
    ends = starts[1:] + [len(x)]  # a cycle's last request is its compaction, if it has one
    return [(int(x[e - 1]), e < len(x) and out_len[e - 1] == cfg.compaction_output_tokens)
            for e in ends]


@pytest.mark.parametrize("share", [0.5, 1 / 3])
def test_long_context_cycles_are_spread_evenly(share):
    # no loop restarts, no sub-agents: every cycle ends in a compaction at its window
    cfg = workload_config("coding-agent-small", seed=4, subagent_prob=0.0, loop_turns_mean=10_000.0,
                          requests_per_agent=300, **{**LONG, "long_context_share": share})
    cycles = _main_cycles(generate_trace(cfg), cfg)[:-1]  # the last one is cut by the session's end
    assert len(cycles) >= 8 and all(compacted for _, compacted in cycles)
    long = [peak >= cfg.long_context_compact_at_tokens for peak, _ in cycles]
    # a short cycle compacts at its 64k window, far below the long window
    assert all(cfg.compact_at_tokens <= peak < 100_000 for (peak, _), lg in zip(cycles, long) if not lg)
    # systematic sampling: any n consecutive cycles hold floor(n * share) or ceil(n * share) long ones
    for n in range(1, len(long) + 1):
        for i in range(len(long) - n + 1):
            assert np.floor(n * share - 1e-9) <= sum(long[i:i + n]) <= np.ceil(n * share + 1e-9)


def test_long_context_knobs_are_inert_when_the_share_is_zero():
    base = generate_trace(workload="coding-agent-small", seed=1, num_agents=2)
    other = generate_trace(workload="coding-agent-small", seed=1, num_agents=2, long_context_compact_at_tokens=99_000,
                           long_context_tool_result_scale=9.0)
    assert other.equals(base, meta=False)


def test_long_context_knobs_move_context_and_reuse_in_the_documented_direction():
    # more long-context cycles: a larger mean and a longer tail of input lengths
    assert _median_stat("input_mean", **LONG) > _median_stat("input_mean")
    assert _median_stat("input_max", **LONG) > 100_000 > _median_stat("input_max")
    # a larger long window: larger contexts still
    assert _median_stat("input_mean", **{**LONG, "long_context_compact_at_tokens": 200_000}) > \
        _median_stat("input_mean", **LONG)
    # larger tool results in long cycles: less of each request is the previous one's prefix
    assert _median_stat("reuse", **{**LONG, "long_context_tool_result_scale": 6.0}) < _median_stat("reuse", **LONG)


def test_knobs_move_reuse_and_context_in_the_documented_direction():
    # bigger tool results per turn: less of each request is the previous one's prefix
    assert _median_stat("reuse", tool_result_tokens_median=3_000.0) < _median_stat("reuse")
    # a smaller window (earlier compaction) keeps contexts shorter
    assert _median_stat("input_p50", compact_at_tokens=40_000) < _median_stat("input_p50")
    # frequent loop restarts keep contexts shorter too
    assert _median_stat("input_p50", loop_turns_mean=3.0) < _median_stat("input_p50")
    # agents on one repository share its files; on four repositories, three agents each
    # hold their own copy: exactly the full blocks of the repository part of the prefix
    cfg = workload_config("coding-agent-small", num_agents=4, num_repos=1, seed=0)
    few = trace_stats(generate_trace(cfg))
    many = trace_stats(generate_trace(workload="coding-agent-small", num_agents=4, num_repos=4, seed=0))
    shared = (cfg.system_prompt_tokens + cfg.tool_definition_tokens) // cfg.block_tokens
    with_repo = (cfg.system_prompt_tokens + cfg.tool_definition_tokens + cfg.repo_context_tokens) // cfg.block_tokens
    assert many.unique_blocks - few.unique_blocks == 3 * (with_repo - shared)
    # more agents, same shared prefix: the first agent's requests are unchanged
    one = generate_trace(workload="coding-agent-small", num_agents=1, seed=0)
    two = generate_trace(workload="coding-agent-small", num_agents=2, seed=0)
    assert np.array_equal(one.input_lengths[one.session_ids == 0], two.input_lengths[two.session_ids == 0])


def test_agents_start_staggered():
    t = generate_trace(workload="coding-agent-small", num_agents=3, seed=0, subagent_prob=0.0, stagger_ms=1e6)
    starts = [t.timestamps_ms[np.argmax(t.session_ids == s)] for s in range(3)]
    assert starts == [0.0, 1e6, 2e6]


@pytest.mark.parametrize("bad", [{"num_agents": 0}, {"block_tokens": -1}, {"subagent_prob": 1.5},
                                 {"output_tokens_median": float("nan")}, {"compact_at_tokens": 1000},
                                 {"seed": 1.5}, {"nonsense": 1}, {"long_context_share": -0.1},
                                 {"long_context_compact_at_tokens": 100_000}, {"long_context_tool_result_scale": 0.0},
                                 {"long_context_compact_at_tokens": 2.5}])
def test_bad_config(bad):
    with pytest.raises(ConfigError):
        workload_config("coding-agent", **bad)


def test_unknown_workload():
    with pytest.raises(UnknownNameError):
        generate_trace(workload="nope")


def test_cli_gen_and_convert(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"workload": "coding-agent-small", "seed": 9, "requests_per_agent": 20}))
    out = tmp_path / "g.kvtrace"
    assert main(["trace", "gen", "--config", str(cfg), "--agents", "2", "--out", str(out)]) == 0
    t = read_trace(out)
    assert t.equals(generate_trace(workload="coding-agent-small", seed=9, requests_per_agent=20, num_agents=2),
                    meta=False)
    for fmt in ("kvtier", "dynamo-v2", "dynamo", "mooncake"):
        dst = tmp_path / f"c.{fmt}"
        assert main(["trace", "convert", str(out), str(dst), "--to", fmt]) == 0
        back = read_trace(dst)
        assert np.array_equal(back.block_hashes, t.block_hashes)
        if fmt != "mooncake":
            assert np.array_equal(back.dep_requests, t.dep_requests)
            assert np.array_equal(back.timestamps_ms, t.timestamps_ms)
    (tmp_path / "bad.json").write_text('{"num_agents": 0}')
    assert main(["trace", "gen", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    assert "num_agents" in capsys.readouterr().err
