"""The example transformer whose paged attention reads KV from kvtier, and its agent loop.

The model is checked against a slow float64 reference written from the definitions; its
KV is checked to be bitwise independent of how positions are batched (prefill, decode,
recompute of any block range); the agent loop is checked to give logits and tokens
bitwise equal to an unlimited-HBM run for every planner and several tier setups, with
real traffic to every tier. Timings are never asserted.
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
from kvtier.buffers import PAGE_ALIGN_BYTES, aligned_empty
from kvtier.cli import main
from kvtier.examples.agent_loop import (
    TIER_NAMES,
    AgentLoopConfig,
    Calibration,
    OpTiming,
    _cold_fetches,
    _fill_tiers,
    _rate,
    _runs,
    compare_runs,
    error_summary,
    flash_slot_bytes,
    local_cpu_target,
    run_agent_loop,
)
from kvtier.examples.copy_alignment import OFFSETS, measure_copy_alignment
from kvtier.examples.transformer import PagedKV, Transformer, TransformerConfig
from kvtier.policies.planners import planner_names

TINY = TransformerConfig.tiny()
B = 16


@pytest.fixture(scope="module")
def model():
    return Transformer(TINY)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def _tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, TINY.vocab_size, n)


# ---------------------------------------------------------------------------------------
# a slow reference: the same model from its definition, float64, one query at a time
# ---------------------------------------------------------------------------------------


def naive_logits(m: Transformer, tokens: np.ndarray) -> np.ndarray:
    c = m.config
    f = np.float64
    hd, nq, nk = c.head_dim, c.num_q_heads, c.num_kv_heads
    T = tokens.size

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + c.norm_eps) * w.astype(f)

    def rope(x, p):  # x: (heads, hd)
        half = hd // 2
        ang = p * c.rope_theta ** (-np.arange(0, hd, 2, dtype=f) / hd)
        x1, x2 = x[:, :half], x[:, half:]
        return np.concatenate((x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)), axis=-1)

    h = m.embed[tokens].astype(f)
    for layer in range(c.num_layers):
        x = rms(h, m.attn_norm[layer])
        qkv = x @ m.w_qkv[layer].astype(f)
        qs = [rope(qkv[i, : nq * hd].reshape(nq, hd), i) for i in range(T)]
        ks = [rope(qkv[i, nq * hd : (nq + nk) * hd].reshape(nk, hd), i) for i in range(T)]
        vs = [qkv[i, (nq + nk) * hd :].reshape(nk, hd) for i in range(T)]
        attn = np.zeros((T, nq * hd))
        for i in range(T):
            for head in range(nq):
                kvh = head // (nq // nk)
                scores = np.array([qs[i][head] @ ks[t][kvh] for t in range(i + 1)]) / math.sqrt(hd)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                attn[i, head * hd : (head + 1) * hd] = sum(w[t] * vs[t][kvh] for t in range(i + 1))
        h = h + attn @ m.w_out[layer].astype(f)
        x = rms(h, m.mlp_norm[layer])
        gu = x @ m.w_gate_up[layer].astype(f)
        gate, up = gu[:, : c.d_ff], gu[:, c.d_ff :]
        h = h + (gate / (1 + np.exp(-gate)) * up) @ m.w_down[layer].astype(f)
    return rms(h, m.final_norm) @ m.lm_head.astype(f)


def test_matches_the_slow_float64_reference(model):
    tokens = _tokens(40, seed=3)
    kv = model.new_cache(B, 40)
    got = model.forward(tokens, kv, 0, logits="all")
    want = naive_logits(model, tokens)
    assert got.dtype == np.float32 and got.shape == (40, TINY.vocab_size)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)  # float32 vs float64 rounding only


def test_golden_logits_of_the_tiny_model(model):
    kv = model.new_cache(B, 8)
    logits = model.forward(np.arange(8), kv, 0)
    # Seeded weights: these numbers only change if the model's definition changes.
    assert int(np.argmax(logits)) == 35
    np.testing.assert_allclose(logits[:4], [-2.1188, 0.0116, -1.1459, 1.1441], atol=2e-4)
    other_cfg = TransformerConfig.tiny()
    again = Transformer(other_cfg).forward(np.arange(8), PagedKV(other_cfg, B, 8), 0)
    assert np.array_equal(_bits(again), _bits(logits))  # same seed, same model, same bits
    seed1 = TransformerConfig.tiny(seed=1)
    assert not np.array_equal(Transformer(seed1).forward(np.arange(8), PagedKV(seed1, B, 8), 0), logits)


def test_model_spec_matches_the_pages_and_the_store():
    spec = TINY.model_spec()
    kv = PagedKV(TINY, B, 40)
    assert spec.block_shape(B) == kv.block_shape == (2, 2, B, 2, 8)
    assert spec.kv_bytes_per_token == 2 * 2 * 2 * 8 * 4 == 256
    assert spec.kv_dtype == np.float32
    # 2 layers x (qkv 32x64 + out 32x32 + mlp 3x32x64)
    assert TINY.params_per_token == 2 * (32 * 64 + 32 * 32 + 3 * 32 * 64) == spec.active_params
    assert spec.attention_flops_coef == 4 * 2 * 4 * 8
    d = TransformerConfig()
    assert d.model_spec().kv_bytes_per_token == 4096 and d.group_size == 2


# ---------------------------------------------------------------------------------------
# KV and logits do not depend on how positions are batched
# ---------------------------------------------------------------------------------------


def test_prefill_decode_and_chunks_agree_bitwise(model):
    tokens = _tokens(90, seed=5)
    kv_all = model.new_cache(B, 90)
    all_logits = model.forward(tokens, kv_all, 0, logits="all")
    kv_dec = model.new_cache(B, 90)
    model.forward(tokens[:1], kv_dec, 0)
    dec = [model.decode_step(int(tokens[p]), kv_dec, p) for p in range(1, 90)]
    assert np.array_equal(_bits(np.stack(dec)), _bits(all_logits[1:]))
    assert np.array_equal(_bits(kv_dec.pages), _bits(kv_all.pages))
    kv_chunks = model.new_cache(B, 90)
    for a, b in ((0, 7), (7, 40), (40, 41), (41, 90)):
        out = model.forward(tokens[a:b], kv_chunks, a, logits="all")
        assert np.array_equal(_bits(out), _bits(all_logits[a:b]))
    assert np.array_equal(_bits(kv_chunks.pages), _bits(kv_all.pages))


@given(n_blocks=st.integers(1, 8), data=st.data())
def test_recomputing_any_block_range_gives_the_same_kv_bits(n_blocks, data):
    model = Transformer(TINY)
    extra = data.draw(st.integers(0, B - 1), label="extra")
    tokens = _tokens(n_blocks * B + extra, seed=data.draw(st.integers(0, 3), label="seed"))
    kv = model.new_cache(B, tokens.size)
    # The original computation: split at arbitrary points (prefill chunks, decode steps).
    cuts = sorted(set(data.draw(st.lists(st.integers(1, tokens.size - 1), max_size=4), label="cuts")))
    for a, b in zip([0, *cuts], [*cuts, tokens.size]):
        model.forward(tokens[a:b], kv, a, logits="none")
    first = data.draw(st.integers(0, n_blocks - 1), label="first")
    end = data.draw(st.integers(first + 1, n_blocks), label="end")
    again = model.new_cache(B, tokens.size)
    again.pages[:first] = kv.pages[:first]  # as if fetched from a store
    for i in range(first):
        again.mark_full(i)
    model.recompute_blocks(tokens, again, first, end)
    assert np.array_equal(_bits(again.pages[first:end]), _bits(kv.pages[first:end]))
    assert again.valid_tokens() == end * B


def test_forward_validates_its_inputs(model):
    kv = model.new_cache(B, 64)
    with pytest.raises(ConfigError, match="page 0 is incomplete"):
        model.forward(_tokens(4), kv, 16)  # no KV for positions 0..15
    with pytest.raises(ConfigError, match="tokens"):
        model.forward(np.array([TINY.vocab_size]), kv, 0)
    with pytest.raises(ConfigError, match="exceed the cache"):
        model.forward(_tokens(65), kv, 0)
    with pytest.raises(ConfigError, match="logits"):
        model.forward(_tokens(2), kv, 0, logits="some")
    with pytest.raises(ConfigError, match="PagedKV"):
        model.forward(_tokens(2), PagedKV(TransformerConfig.tiny(seed=2), B, 8), 0)
    with pytest.raises(ConfigError, match="num_q_heads"):
        TransformerConfig.tiny(num_q_heads=3)
    with pytest.raises(ConfigError, match="head_dim"):
        TransformerConfig.tiny(head_dim=7)
    with pytest.raises(ConfigError, match="page"):
        kv.page(4)


def test_pages_round_trip_through_every_tier_bit_for_bit(model, tmp_path):
    tokens = _tokens(4 * B, seed=9)
    kv = model.new_cache(B, tokens.size)
    model.forward(tokens, kv, 0, logits="none")
    spec = TINY.model_spec()
    bb = spec.block_bytes(B)
    tiers = [hbm(bb, name="hbm"), dram(bb, name="dram"), flash(4 * flash_slot_bytes(bb), tmp_path, codec="lz4", name="flash")]
    with TieredStore.for_model(spec, B, tiers) as store:
        for i in range(4):
            store.put(100 + i, kv.page(i))
        assert store.lookup([100, 101, 102, 103]).counts() == {"hbm": 1, "dram": 1, "flash": 2, "missing": 0}
        back = model.new_cache(B, tokens.size)
        for i in range(4):
            assert store.fetch(100 + i, out=back.page(i), promote=False) is not None
            back.mark_full(i)
    assert np.array_equal(_bits(back.pages), _bits(kv.pages))
    # Fetched pages serve attention exactly as computed ones do.
    more = _tokens(5, seed=10)
    cache_a, cache_b = model.new_cache(B, 4 * B + 5), model.new_cache(B, 4 * B + 5)
    cache_a.pages[:4] = kv.pages
    cache_b.pages[:4] = back.pages
    for c in (cache_a, cache_b):
        for i in range(4):
            c.mark_full(i)
    assert np.array_equal(_bits(model.forward(more, cache_a, 4 * B)), _bits(model.forward(more, cache_b, 4 * B)))


# ---------------------------------------------------------------------------------------
# the agent loop
# ---------------------------------------------------------------------------------------

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


def test_aligned_empty_starts_on_the_boundary_asked_for():
    for shape, dtype, align in (((3, 5), np.float32, 4096), (7, np.uint8, 64), ((2, 0, 3), np.float64, 1), ((4,), "f4", 256)):
        a = aligned_empty(shape, dtype, align_bytes=align)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == np.dtype(dtype)
        assert a.ctypes.data % align == 0 and a.flags.c_contiguous and a.flags.writeable
        a[...] = 1  # it owns enough memory for every element
        assert a.sum() == a.size
    assert aligned_empty((2, 2), np.float32).ctypes.data % PAGE_ALIGN_BYTES == 0
    for bad in (0, 3, 48, True, 64.0):
        with pytest.raises(ConfigError, match="align_bytes"):
            aligned_empty((2,), np.uint8, align_bytes=bad)
    with pytest.raises(ConfigError, match="shape"):
        aligned_empty((2, -1), np.uint8)


def test_kv_pages_start_on_cache_lines():
    """Block copies into a page then run at full speed (a copy between buffers at different
    offsets within a cache line can take twice as long; see ``aligned_empty``)."""
    for cfg in (TINY, TransformerConfig()):
        kv = PagedKV(cfg, B, 5 * B)
        assert kv.pages.ctypes.data % PAGE_ALIGN_BYTES == 0
        assert all(kv.page(i).ctypes.data % 64 == 0 for i in range(kv.num_pages))
        assert not kv.pages.any() and kv.pages.flags.c_contiguous


def test_copy_alignment_grid_times_every_offset_pair():
    ticks = iter(range(10_000))
    grid = measure_copy_alignment(block_bytes=256, blocks=4, repeats=1, clock=lambda: float(next(ticks)))
    assert grid.offsets == OFFSETS == (0, 16, 32, 48) and grid.block_bytes == 256
    assert grid.seconds_per_copy.shape == (4, 4)
    assert np.all(grid.seconds_per_copy == 0.25)  # one tick per pass of 4 copies, with this clock
    assert "src\\dst" in grid.format() and len(grid.format().splitlines()) == 6
    with pytest.raises(ConfigError, match="blocks"):
        measure_copy_alignment(blocks=0)


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
