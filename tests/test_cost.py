"""The cost model: hand-computed values, hardware.md §4 figures, queues, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier._data import hardware_data
from kvtier.cost import (
    LinkQueue,
    Transfer,
    break_even_fetch_bw_bytes_per_s,
    decode_step_time_s,
    layerwise_overlap_time_s,
    recompute_time_s,
    transfer_time_ns,
    transfer_time_s,
)
from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier

LLAMA70 = ModelSpec.preset("llama-3.1-70b")
LINK = LinkSpec(name="l", read_bw_bytes_per_s=1e9, write_bw_bytes_per_s=5e8, latency_s=1e-3)

# A toy model with round numbers: 1 GFLOP per token linear, attention coefficient 2e6,
# 4 layers x (2 x 1 kv head x 64 dims) x 2 B = 1024 KV bytes per token.
TOY = ModelSpec(name="toy", num_layers=4, num_q_heads=1, num_kv_heads=1, head_dim=64, dtype_bytes=2,
                active_params=0.5e9, total_params=1e9, attn_flops_coef=2e6)


def toy_target(**kw) -> HardwareTarget:
    base = dict(
        name="toy",
        tiers=(
            TargetTier(name="hbm", kind="hbm", capacity_bytes=10**10, read_bw_bytes_per_s=1e10, write_bw_bytes_per_s=1e10),
            TargetTier(name="dram", kind="dram", capacity_bytes=10**11, read_bw_bytes_per_s=1e9,
                       write_bw_bytes_per_s=1e9, latency_s=1e-4, link="pcie"),
        ),
        links=(LinkSpec(name="pcie", read_bw_bytes_per_s=5e8, write_bw_bytes_per_s=5e8, latency_s=1e-5),),
        compute_flops=2e10, efficiency=0.5,
    )
    base.update(kw)
    return HardwareTarget(**base)


def close(got, want, rel=0.05):
    return abs(got - want) <= rel * abs(want)


# -- transfers ----------------------------------------------------------------------------


def test_transfer_time_hand_values():
    assert transfer_time_s(1e9, LINK) == pytest.approx(1.001)
    assert transfer_time_s(1e9, LINK, "write") == pytest.approx(2.001)
    assert transfer_time_s(0, LINK) == 0.0  # nothing to move, no latency
    got = transfer_time_s(np.array([0, 5e8, 2e9]), LINK)
    np.testing.assert_allclose(got, [0.0, 0.501, 2.001])
    assert transfer_time_ns(1e9, LINK) == 1_001_000_000
    assert transfer_time_ns(1, LINK) == 1_000_001  # 1 ms + 1 ns, rounded up
    with pytest.raises(ConfigError, match="num_bytes"):
        transfer_time_s(-1, LINK)
    with pytest.raises(ConfigError, match="direction"):
        transfer_time_s(1, LINK, "sideways")
    with pytest.raises(ConfigError, match="2\\*\\*62 ns"):
        transfer_time_ns(1e20, LINK)


@given(a=st.floats(0, 1e15), b=st.floats(0, 1e15), bw=st.floats(1e6, 1e16), lat=st.floats(0, 1.0))
def test_transfer_time_is_monotone_in_bytes(a, b, bw, lat):
    link = LinkSpec(name="x", read_bw_bytes_per_s=bw, write_bw_bytes_per_s=bw, latency_s=lat)
    lo, hi = sorted((a, b))
    assert transfer_time_s(lo, link) <= transfer_time_s(hi, link)
    assert transfer_time_ns(lo, link) <= transfer_time_ns(hi, link)


def test_link_queue_transfers_take_turns():
    q = LinkQueue(LINK)
    assert q.submit(0, 1e9) == Transfer(0, 1_001_000_000)
    assert q.submit(0, 1e9) == Transfer(1_001_000_000, 2_002_000_000)  # waited for the first
    assert q.submit(5_000_000_000, 5e8) == Transfer(5_000_000_000, 5_501_000_000)  # link idle: starts when ready
    assert q.submit(0, 0) == Transfer(5_501_000_000, 5_501_000_000)  # empty: holds nothing
    assert (q.busy_until_ns, q.transfers, q.bytes_moved) == (5_501_000_000, 3, 2_500_000_000)
    w = LinkQueue(LINK, direction="write", busy_until_ns=10)
    assert w.submit(0, 5e8) == Transfer(10, 10 + 1_001_000_000)
    with pytest.raises(ConfigError, match="ready_ns"):
        q.submit(-1, 10)
    with pytest.raises(ConfigError, match="busy_until_ns"):
        LinkQueue(LINK, busy_until_ns=-5)


@given(
    jobs=st.lists(st.tuples(st.integers(0, 5_000_000), st.sampled_from([0, 1, 1000, 10**6, 3 * 10**6])), max_size=30),
    busy=st.integers(0, 3_000_000),
)
def test_submit_many_equals_one_by_one(jobs, busy):
    link = LinkSpec(name="x", read_bw_bytes_per_s=1e9, write_bw_bytes_per_s=1e9, latency_s=1e-6)
    one, many = LinkQueue(link, busy_until_ns=busy), LinkQueue(link, busy_until_ns=busy)
    want = [one.submit(r, b) for r, b in jobs]
    ready = np.array([r for r, _ in jobs], dtype=np.int64)
    nbytes = np.array([b for _, b in jobs], dtype=np.int64)
    start, end = many.submit_many(ready, nbytes)
    assert list(zip(start.tolist(), end.tolist())) == [tuple(t) for t in want]
    assert (many.busy_until_ns, many.transfers, many.bytes_moved) == (one.busy_until_ns, one.transfers, one.bytes_moved)
    # turns: held intervals never overlap and follow submission order
    held = [(s, e) for s, e in want if e > s]
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(held, held[1:]))


# -- recompute ---------------------------------------------------------------------------


def test_recompute_time_hand_values():
    t = toy_target()  # effective 1e10 FLOP/s
    # 10 new tokens on nothing: 10 x 1e9 + 2e6 x (0 + 50) = 1.01e10 FLOPs -> 1.01 s
    assert recompute_time_s(TOY, t, 10) == pytest.approx(1.01)
    # 10 new on 100 cached: 1e10 + 2e6 x (1000 + 50) = 1.21e10 -> 1.21 s
    assert recompute_time_s(TOY, t, 10, 100) == pytest.approx(1.21)
    np.testing.assert_allclose(recompute_time_s(TOY, t, np.array([0, 10]), np.array([0, 100])), [0.0, 1.21])
    with pytest.raises(ConfigError):
        recompute_time_s(TOY, t, -1)


@given(s1=st.integers(0, 200_000), s2=st.integers(0, 200_000), c1=st.integers(0, 200_000), c2=st.integers(0, 200_000))
def test_recompute_is_monotone_in_tokens_and_additive_over_chunks(s1, s2, c1, c2):
    t = HardwareTarget.preset("h100")
    (slo, shi), (clo, chi) = sorted((s1, s2)), sorted((c1, c2))
    assert recompute_time_s(LLAMA70, t, slo, clo) <= recompute_time_s(LLAMA70, t, shi, chi)
    # prefilling s1 then s2 tokens costs the same as s1 + s2 at once
    whole = recompute_time_s(LLAMA70, t, s1 + s2, c1)
    parts = recompute_time_s(LLAMA70, t, s1, c1) + recompute_time_s(LLAMA70, t, s2, c1 + s1)
    assert parts == pytest.approx(whole, rel=1e-9)


def test_recompute_example_100k_llama70b():
    """hardware.md §4: 27.2 PFLOP = 55 s on one H100, 24 s on one B200, 3.5 s on one WSE-3."""
    ex = hardware_data()["derived"]["example_100k_tok_llama70b"]
    assert close(LLAMA70.prefill_flops(100_000), ex["recompute_flops"])
    # hardware.md's one MFU of 50% for every FLOP (efficiency= sets the time model's parts aside)
    assert close(recompute_time_s(LLAMA70, HardwareTarget.preset("h100", efficiency=0.5), 100_000), 55.0)
    assert close(recompute_time_s(LLAMA70, HardwareTarget.preset("b200", efficiency=0.5), 100_000), 24.2)
    assert close(recompute_time_s(LLAMA70, HardwareTarget.preset("cerebras-cs3", efficiency=0.5), 100_000), 3.5)


def test_fetch_example_100k_llama70b():
    """hardware.md §4: fetching 32.8 GB takes 9.8 ms from H100 HBM, 73 ms over C2C 450,
    218 ms from MemoryX, 512 ms over PCIe5, 1.3 s from ICMS, 2.3 s from one Gen5 SSD."""
    kv = LLAMA70.kv_bytes(100_000)
    assert kv == 32_768_000_000
    h100 = HardwareTarget.preset("h100")
    assert close(transfer_time_s(kv, h100.fetch_path(0)), 9.8e-3)
    assert close(transfer_time_s(kv, h100.fetch_path(h100.tier_index("host_dram"))), 0.512)
    assert close(transfer_time_s(kv, h100.fetch_path(h100.tier_index("nvme"))), 2.341)
    assert close(transfer_time_s(kv, HardwareTarget.preset("cerebras-cs3").fetch_path(1)), 0.2185)
    gb = HardwareTarget.preset("gb200-nvl72").link("nvlink_c2c")
    per_grace = LinkSpec(name="c2c", read_bw_bytes_per_s=gb.read_bw_bytes_per_s / gb.count,
                         write_bw_bytes_per_s=gb.write_bw_bytes_per_s / gb.count, latency_s=gb.latency_s)
    assert close(transfer_time_s(kv, per_grace), 0.0728)
    vr = HardwareTarget.preset("vera-rubin-nvl72")
    icms = vr.fetch_path(vr.tier_index("icms"))
    per_gpu = LinkSpec(name="icms", read_bw_bytes_per_s=icms.read_bw_bytes_per_s / 72,
                       write_bw_bytes_per_s=icms.write_bw_bytes_per_s / 72, latency_s=icms.latency_s)
    assert close(transfer_time_s(kv, per_gpu), 1.311)


# -- break-even bandwidth ------------------------------------------------------------------

_DERIVED = hardware_data()["derived"]["break_even_fetch_bw_GBps_short_ctx"]
_PER_DEVICE = {"H100": ("h100", 1), "B200": ("b200", 1), "Rubin_est": ("vera-rubin-nvl72", 72),
               "WSE-3_est": ("cerebras-cs3", 1)}


@pytest.mark.parametrize("model,device", [(m, d) for m in _DERIVED for d in _PER_DEVICE])
def test_break_even_bandwidth_matches_hardware_md(model, device):
    """hardware.md §4 (one decimal): Llama-70B H100 1.1, B200 2.6 GB/s at 50% MFU, ..."""
    name, per = _PER_DEVICE[device]
    # hardware.md's table assumes 50% MFU on every chip together (one sequence's prefill over all of them)
    t = HardwareTarget.preset(name, efficiency=0.5)
    got = break_even_fetch_bw_bytes_per_s(ModelSpec.preset(model), t) / per / 1e9 * t.chips / t.serving.tp
    want = _DERIVED[model][device]
    assert close(got, want) or round(got, 1) == want


def test_break_even_llama70b_h100_b200():
    assert close(break_even_fetch_bw_bytes_per_s(LLAMA70, HardwareTarget.preset("h100", efficiency=0.5)), 1.1e9)
    assert close(break_even_fetch_bw_bytes_per_s(LLAMA70, HardwareTarget.preset("b200", efficiency=0.5)), 2.6e9)


def test_break_even_drops_with_context():
    """The attention term makes long-context tokens dearer to recompute: 2-4x lower at 128k."""
    t = HardwareTarget.preset("h100")
    short, long = break_even_fetch_bw_bytes_per_s(LLAMA70, t, np.array([0, 131_072]))
    assert 2 <= short / long <= 4
    # hand value on the toy: 1024 B x 1e10 / (1e9 + 2e6 x 500) = 5120 B/s
    assert break_even_fetch_bw_bytes_per_s(TOY, toy_target(), 500) == pytest.approx(5120.0)


# -- layer-wise overlap -------------------------------------------------------------------


def test_layerwise_overlap_hand_values():
    # per layer: load 1, compute 0.5 -> 1 + 3 x 1 + 0.5
    assert layerwise_overlap_time_s(4.0, 2.0, 4) == pytest.approx(4.5)
    assert layerwise_overlap_time_s(2.0, 4.0, 4) == pytest.approx(4.5)
    assert layerwise_overlap_time_s(4.0, 2.0, 1) == pytest.approx(6.0)  # one layer: no overlap
    np.testing.assert_allclose(layerwise_overlap_time_s(np.array([0.0, 8.0]), 2.0, np.array([4, 8])), [2.0, 8.25])
    with pytest.raises(ConfigError, match="num_layers"):
        layerwise_overlap_time_s(1.0, 1.0, 0)


@given(load=st.floats(0, 100, allow_subnormal=False), comp=st.floats(0, 100, allow_subnormal=False),
       n=st.integers(1, 200), extra=st.floats(0, 10))
def test_layerwise_overlap_bounds_and_monotone(load, comp, n, extra):
    t = layerwise_overlap_time_s(load, comp, n)
    assert max(load, comp) * (1 - 1e-12) <= t <= (load + comp) * (1 + 1e-12)
    assert layerwise_overlap_time_s(load + extra, comp, n) >= t * (1 - 1e-12)
    assert layerwise_overlap_time_s(load, comp + extra, n) >= t * (1 - 1e-12)


# -- decode ------------------------------------------------------------------------------


def test_decode_step_hand_values():
    t = toy_target(model=TOY)  # weights 1e9 params x 2 B = 2e9 B in HBM at 1e10 B/s -> 0.2 s
    # one sequence at 1000 tokens: KV 1.024e6 B -> 1.024e-4 s; FLOPs 1e9 + 2e6 x 1000.5 = 3.001e9 -> 0.3001 s
    assert decode_step_time_s(TOY, t, 1000) == pytest.approx(0.3001)
    # a batch of 2 with contexts 0 and 10: FLOPs 2e9 + 2e6 x (0.5 + 10.5) = 2.022e9 -> 0.2022 s; memory 0.2 s
    assert decode_step_time_s(TOY, t, np.array([0, 10])) == pytest.approx(0.2022)
    # KV streamed from DRAM over a 1e6 B/s link: 1.024e6 B / 1e6 = 1.024 s > 0.3001 s of compute
    slow = toy_target(model=TOY, links=(LinkSpec(name="pcie", read_bw_bytes_per_s=1e6, write_bw_bytes_per_s=1e6),))
    assert decode_step_time_s(TOY, slow, 1000, kv_tier=[1]) == pytest.approx(1.024)
    assert decode_step_time_s(TOY, slow, 1000, kv_tier=[0]) == pytest.approx(0.3001)
    with pytest.raises(ConfigError, match="kv_tier"):
        decode_step_time_s(TOY, t, [1, 2], kv_tier=[0, 5])


@given(ctx=st.lists(st.integers(0, 200_000), min_size=1, max_size=16), more=st.integers(0, 100_000))
@settings(max_examples=30)
def test_decode_step_is_monotone_in_context(ctx, more):
    t = HardwareTarget.preset("b200", model=LLAMA70)
    base = decode_step_time_s(LLAMA70, t, np.array(ctx))
    grown = np.array(ctx)
    grown[0] += more
    assert decode_step_time_s(LLAMA70, t, grown) >= base
    assert decode_step_time_s(LLAMA70, t, np.array(ctx), kv_tier=np.ones(len(ctx), int)) >= base
