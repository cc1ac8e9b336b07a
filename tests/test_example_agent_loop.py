"""The agent loop on the example transformer: its KV in a ``TieredStore``, its cost model calibrated.

The loop is checked to give logits and tokens bitwise equal to an unlimited-HBM run for
every planner and several tier setups, with real traffic to every tier; the
``local-cpu`` target is checked to price fetches from its figures; the timing helpers
to time what they should. Timings are never asserted.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier import ConfigError, TieredStore, UnknownNameError, dram, flash, hbm
from kvtier.buffers import aligned_empty
from kvtier.cli import main
from kvtier.examples.agent_loop import (
    TIER_NAMES,
    AgentLoopConfig,
    Calibration,
    OpTiming,
    compare_runs,
    error_summary,
    local_cpu_target,
    run_agent_loop,
)
from kvtier.examples.agent_loop.run import true_runs as _runs
from kvtier.examples.agent_loop.timing import cold_fetches as _cold_fetches
from kvtier.examples.agent_loop.timing import fill_tiers as _fill_tiers
from kvtier.examples.agent_loop.timing import rate as _rate
from kvtier.examples.transformer import Transformer, TransformerConfig
from kvtier.planners import planner_names
from kvtier.tiers import flash_slot_bytes

TINY = TransformerConfig.tiny()
B = 16


@pytest.fixture(scope="module")
def model():
    return Transformer(TINY)


#: Fixed figures (not measured) so plans, and so every decision, are reproducible.
FIXED = Calibration(
    block_bytes=TINY.model_spec().block_bytes(B), memcpy_bw_bytes_per_s=10e9, file_read_bw_bytes_per_s=5e9,
    crc_bw_bytes_per_s=20e9, lz4_ratio=1.0, lz4_decode_bw_bytes_per_s=None,
    fetch_overhead_s={"hbm": 5e-6, "dram": 5e-6, "flash": 8e-6}, achieved_flops=1e9, calib_tokens=64, calib_context=256,
)
SLOW_FLASH = dataclasses.replace(FIXED, file_read_bw_bytes_per_s=1e5)  # 100 kB/s: recomputing wins

SMALL = AgentLoopConfig(
    model=TINY, block_tokens=B, sessions=3, turns=4, system_prompt_tokens=48, turn_tokens=48, generate_tokens=6,
    fork_turn=2, hbm_blocks=4, dram_blocks=8, flash_blocks=14,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_agent_loop(SMALL.unlimited_hbm(), flash_dir=str(tmp_path_factory.mktemp("ref")), calibration=FIXED,
                          model=Transformer(TINY))


@pytest.mark.parametrize("planner", planner_names())
def test_every_planner_matches_unlimited_hbm_bitwise(planner, reference, model, tmp_path):
    result = run_agent_loop(dataclasses.replace(SMALL, planner=planner), flash_dir=str(tmp_path), calibration=FIXED,
                            model=model)
    eq = compare_runs(result, reference)
    assert eq.bitwise and eq.turns == 3 * 4 - 2 and eq.max_abs_diff == 0.0
    assert sum(t.recompute_mismatched for t in result.turns) == 0
    assert not any(t.fetch_failed for t in result.turns)
    # Real traffic reached every tier; the small flash dropped blocks, so some were missing.
    tiers = result.stats["tiers"]
    assert tiers["dram"]["hits"] > 0 and tiers["flash"]["hits"] + tiers["flash"]["misses"] > 0
    assert tiers["hbm"]["demotions"] > 0 and tiers["dram"]["demotions"] > 0 and tiers["flash"]["drops"] > 0
    assert tiers["flash"]["blocks_in"] > 0 and tiers["flash"]["bytes_written"] > 0
    found = {k: sum(t.found[k] for t in result.turns) for k in ("hbm", "dram", "flash", "missing")}
    assert found["dram"] > 0 and found["flash"] > 0 and found["missing"] > 0
    fetched = sum(sum(t.fetched.values()) for t in result.turns)
    recomputed = sum(t.recomputed_blocks for t in result.turns)
    lower = found["dram"] + found["flash"]
    if planner in ("always-fetch", "cost-optimal"):  # fetching is 1000x cheaper with these figures
        assert fetched == lower and recomputed == found["missing"]
    if planner == "threshold":  # fetch only when the lower tiers hold >= 256 tokens (its default)
        for t in result.turns:
            lower_tokens = (t.found["dram"] + t.found["flash"]) * B
            assert sum(t.fetched.values()) == (t.found["dram"] + t.found["flash"] if lower_tokens >= 256 else 0)
    if planner == "always-recompute":
        assert fetched == 0 and recomputed == lower + found["missing"]
        assert sum(t.recompute_verified for t in result.turns) == lower  # each checked against its stored copy
    for t in result.turns:  # a plan accounts for every prefix block
        assert sum(t.found.values()) == t.prefix_blocks
        assert sum(t.fetched.values()) + t.recomputed_blocks + t.found["hbm"] == t.prefix_blocks
        assert t.prefix_blocks * B + t.new_tokens == t.prompt_tokens and t.new_tokens >= 1


@pytest.mark.parametrize("tiers", [
    dict(hbm_blocks=2, dram_blocks=2, flash_blocks=40, flash_codec="none"),
    dict(hbm_blocks=30, dram_blocks=1, flash_blocks=1),
    dict(hbm_blocks=1, dram_blocks=40, flash_blocks=2, block_tokens=8),
])
def test_other_tier_setups_match_unlimited_hbm_bitwise(tiers, model, tmp_path):
    cfg = dataclasses.replace(SMALL, planner="cost-optimal", **tiers)
    cal = dataclasses.replace(FIXED, block_bytes=TINY.model_spec().block_bytes(cfg.block_tokens))
    result = run_agent_loop(cfg, flash_dir=str(tmp_path / "a"), calibration=cal, model=model)
    ref = run_agent_loop(cfg.unlimited_hbm(), flash_dir=str(tmp_path / "b"), calibration=cal, model=model)
    assert compare_runs(result, ref).bitwise


def test_a_slow_flash_makes_cost_optimal_recompute_flash_blocks(reference, model, tmp_path):
    result = run_agent_loop(SMALL, flash_dir=str(tmp_path), calibration=SLOW_FLASH, model=model)
    assert compare_runs(result, reference).bitwise
    assert sum(t.found["flash"] for t in result.turns) > 0
    assert sum(t.fetched.get("flash", 0) for t in result.turns) == 0  # priced out
    assert sum(t.fetched.get("dram", 0) for t in result.turns) > 0
    assert sum(t.recompute_verified for t in result.turns) > 0
    assert sum(t.recompute_mismatched for t in result.turns) == 0


@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), hbm_blocks=st.integers(1, 6), dram_blocks=st.integers(1, 10),
       flash_blocks=st.integers(1, 12), planner=st.sampled_from(planner_names()), slow_flash=st.booleans())
def test_any_tier_sizes_and_planner_match_unlimited_hbm(seed, hbm_blocks, dram_blocks, flash_blocks, planner,
                                                         slow_flash, tmp_path_factory):
    model = Transformer(TINY)
    cfg = dataclasses.replace(SMALL, seed=seed, turns=3, hbm_blocks=hbm_blocks, dram_blocks=dram_blocks,
                              flash_blocks=flash_blocks, planner=planner)
    cal = SLOW_FLASH if slow_flash else FIXED
    d = tmp_path_factory.mktemp("any")
    result = run_agent_loop(cfg, flash_dir=str(d), calibration=cal, model=model)
    ref = run_agent_loop(cfg.unlimited_hbm(), flash_dir=str(d), calibration=cal, model=model)
    assert compare_runs(result, ref).bitwise
    assert sum(t.recompute_mismatched for t in result.turns) == 0


def test_runs_are_deterministic(model, tmp_path):
    a = run_agent_loop(SMALL, flash_dir=str(tmp_path / "a"), calibration=FIXED, model=model)
    b = run_agent_loop(SMALL, flash_dir=str(tmp_path / "b"), calibration=FIXED, model=model)
    assert compare_runs(a, b).bitwise
    assert [(t.found, t.fetched, t.recomputed_blocks, t.generated) for t in a.turns] == [
        (t.found, t.fetched, t.recomputed_blocks, t.generated) for t in b.turns]
    strip = lambda s: {n: {k: v for k, v in t.items() if not k.endswith("_ns")} for n, t in s["tiers"].items()}  # noqa: E731
    assert strip(a.stats) == strip(b.stats)
    groups = {e.group: e for e in error_summary(a)}
    assert groups["prefill"].ops == len(a.turns)  # one prefill per turn
    assert sum(e.ops for name, e in groups.items() if name.startswith("fetch")) == len(a.ops("fetch"))
    assert groups["fetch dram"].predicted_s == sum(op.predicted_s for op in a.ops("fetch") if op.tier == "dram")


def test_local_cpu_target_prices_fetches_and_recomputes_from_the_figures():
    t = local_cpu_target(FIXED, hbm_bytes=1 << 20, dram_bytes=1 << 21, flash_bytes=1 << 22)
    assert t.name == "local-cpu" and [x.name for x in t.tiers] == ["hbm", "dram", "flash"]
    assert t.effective_flops == 1e9
    dram_path, flash_path = t.fetch_path(1), t.fetch_path(2)
    assert dram_path.name == "memcpy" and dram_path.read_bw_bytes_per_s == 10e9 and dram_path.latency_s == 5e-6
    # flash: a raw payload is read with its 64-byte header into the page, then CRC'd; a
    # compressed one is read as its whole 4 KiB-aligned slot, CRC'd (fewer bytes), decoded
    bb = FIXED.block_bytes
    per_byte = (64 + bb) / bb / 5e9 + 1 / 20e9
    assert flash_path.name == "file" and math.isclose(flash_path.read_bw_bytes_per_s, 1 / per_byte)
    assert flash_path.latency_s == 8e-6
    lz4 = dataclasses.replace(FIXED, lz4_ratio=2.0, lz4_decode_bw_bytes_per_s=4e9)
    per_byte = flash_slot_bytes(bb) / bb / 5e9 + 1 / 20e9 / 2 + 1 / 4e9
    assert math.isclose(lz4.flash_read_bw_bytes_per_s, 1 / per_byte)


def test_rate_leaves_setup_out_of_the_timing():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def setup() -> None:
        now[0] += 100.0  # a cache flush: must not count

    def fn() -> int:
        now[0] += 2.0
        return 4

    assert _rate(fn, clock, 3, setup) == 2.0
    assert _rate(fn, clock, 3) == 2.0


def test_cold_fetches_warm_the_store_with_another_block_then_fetch_each_block_once(tmp_path):
    """The calibration's fixed cost per fetch and the calibration check time fetches the same
    way: setup (untimed) fetches one block of the tier; the timed part fetches each block
    once into its own buffer, without promoting it."""
    shape = (16,)
    with TieredStore([hbm(5 * 64, name="hbm"), dram(5 * 64, name="dram"),
                      flash(5 * flash_slot_bytes(64), tmp_path, name="flash")], block_shape=shape, dtype=np.float32) as store:
        per_tier = _fill_tiers(store, 5, lambda h: np.full(shape, h, np.float32))
        assert [len(p) for p in per_tier] == [5, 5, 5]
        assert per_tier[2] == [1, 2, 3, 4, 5] and per_tier[1] == [6, 7, 8, 9, 10]  # exclusive LRU cascade
        for t, (*hashes, warm) in enumerate(per_tier):
            outs = list(aligned_empty((4,) + shape, np.float32))
            warm_out = np.zeros(shape, np.float32)
            setup, fetch_all = _cold_fetches(store, hashes, outs, warm, warm_out)
            fetches = store.stats().as_dict()["tiers"][TIER_NAMES[t]]["hits"]
            setup()
            assert np.all(warm_out == warm)
            assert store.stats().as_dict()["tiers"][TIER_NAMES[t]]["hits"] == fetches + 1
            assert fetch_all() == 4
            assert store.stats().as_dict()["tiers"][TIER_NAMES[t]]["hits"] == fetches + 5
            assert [int(o[0]) for o in outs] == hashes
            assert store.lookup(hashes).tier_index.tolist() == [t] * 4  # not promoted


def test_error_summary_and_runs_helper():
    assert _runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert _runs(np.zeros(3, bool)) == []
    op = OpTiming("fetch", "dram", 4, 64, 0, predicted_s=0.0012, measured_s=0.0010)
    assert math.isclose(op.error, 0.2)


def test_config_validation():
    with pytest.raises(UnknownNameError, match="planner"):
        AgentLoopConfig(planner="psychic")
    with pytest.raises(ConfigError, match="fork_turn"):
        AgentLoopConfig(sessions=1, fork_turn=1)
    with pytest.raises(ConfigError, match="fork_turn"):
        AgentLoopConfig(turns=2, fork_turn=2)
    with pytest.raises(ConfigError, match="hbm_blocks"):
        AgentLoopConfig(hbm_blocks=0)
    with pytest.raises(ConfigError, match="flash_codec"):
        AgentLoopConfig(flash_codec="zstd")
    with pytest.raises(ConfigError, match="max_positions"):
        AgentLoopConfig(model=TransformerConfig.tiny(max_positions=64))


def test_cli_example_runs_and_reports(tmp_path, capsys):
    out_json = tmp_path / "example.json"
    code = main(["example", "--tiny", "--turns", "3", "--sessions", "2", "--fork-turn", "1", "--turn-tokens", "40",
                 "--hbm-blocks", "3", "--dram-blocks", "4", "--flash-blocks", "6", "--planner", "always-recompute",
                 "--dir", str(tmp_path), "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("calibration check", "fetch 64 blocks from flash", "planner always-recompute", "bitwise equal",
                 "store flash", "hbm dram flash miss"):
        assert text in out
    report = json.loads(out_json.read_text())
    assert report["runs"][0]["equal_to_unlimited_hbm"] is True
    assert report["calibration"]["achieved_flops"] > 0
    assert {e["group"] for e in report["runs"][0]["errors"]} >= {"prefill", "recompute"}

