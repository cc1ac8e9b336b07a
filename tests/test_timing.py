"""The timing formulas' two faces agree: ``kvtier.cost`` (Python, what the planners and
the cost model call) and ``kvtier._kernels.timing`` (its numba twin, what the simulator's
event loop calls), on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier import cost
from kvtier._kernels import timing
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier

seconds = st.floats(-1.0, 1e3, allow_nan=False)
positive = st.floats(1e-3, 1e15, allow_nan=False)
non_negative = st.floats(0.0, 1e15, allow_nan=False)


@given(s=st.one_of(seconds, st.floats(0.0, 1e-6), st.integers(0, 10**6).map(lambda k: k * 1e-9)))
@settings(max_examples=200)
def test_to_ns_twins_agree(s):
    assert int(timing.to_ns(s)) == cost.to_ns(s)


def test_to_ns_hand_values():
    assert cost.to_ns(0.0) == 0 and cost.to_ns(-1.0) == 0
    assert cost.to_ns(1e-9) == 1 and cost.to_ns(1.5e-9) == 2 and cost.to_ns(2.0) == 2_000_000_000
    assert cost.to_ns(np.array([0.0, 3e-9])).tolist() == [0, 3]


def _batch_step(pp, weights, active, separate, bw, wbw, stream_bw, overhead, layers, n, tokens, kv, work, stream):
    """The step written out: ``m = min(pp, n)`` micro-batches; each stage reads the weights
    its micro-batch's tokens use (``active`` per token, at most all) and its share of the
    micro-batch's KV (the weights beside it when they have their own memory), computes
    its share, streams its share; the slowest resource, plus the stage's layers'
    overhead; ``pp`` stages in turn."""
    m = max(1, min(pp, n))
    w = min(weights, active * tokens / m) / pp
    mem = [w / wbw, kv / (pp * m) / bw] if separate else [(w + kv / (pp * m)) / bw]
    res = [*mem, work / (pp * m)] + ([stream / (pp * m) / stream_bw] if stream > 0 else [])
    return pp * (max(res) + overhead * layers / pp)


@given(pp=st.integers(1, 8), weights=non_negative, active=non_negative, separate=st.booleans(), bw=positive,
       wbw=positive, stream_bw=positive, overhead=st.floats(0.0, 1e-4), layers=st.integers(1, 128),
       n=st.integers(0, 300), extra=st.integers(0, 9000), kv=non_negative, work=st.floats(0.0, 10.0),
       stream=st.one_of(st.just(0.0), non_negative))
@settings(max_examples=200)
def test_batch_step_is_the_stage_roofline(pp, weights, active, separate, bw, wbw, stream_bw, overhead, layers, n,
                                          extra, kv, work, stream):
    args = (pp, weights, active, separate, bw, wbw, stream_bw, overhead, layers, n, n + extra, kv, work, stream)
    assert timing.batch_step_s(*args) == pytest.approx(_batch_step(*args), rel=1e-12, abs=1e-300)


TOY = ModelSpec(name="toy", num_layers=4, num_q_heads=1, num_kv_heads=1, head_dim=64, dtype_bytes=2,
                active_params=0.5e9, total_params=1e9, attn_flops_coef=2e6)


def test_decode_step_time_is_the_batch_step_of_the_target():
    """``decode_step_time_s`` of a target (no deployment: one tensor-parallel group) is
    the batch step over its figures: every byte of KV read from the compute tier (streamed
    KV lands there first), the streamed part also over the link, one token of compute."""
    tiers = (TargetTier(name="hbm", kind="hbm", capacity_bytes=10**10, read_bw_bytes_per_s=1e10,
                        write_bw_bytes_per_s=1e10),
             TargetTier(name="dram", kind="dram", capacity_bytes=10**11, read_bw_bytes_per_s=1e9,
                        write_bw_bytes_per_s=1e9, link="pcie"))
    target = HardwareTarget(name="toy", tiers=tiers, compute_flops=2e10, model=TOY,
                            links=(LinkSpec(name="pcie", read_bw_bytes_per_s=1e6, write_bw_bytes_per_s=1e6),))
    for ctx, tier in ((1000, 0), (1000, 1), (10, 1), (0, 0)):
        kv = float(TOY.kv_bytes(ctx))
        work = float(TOY.prefill_flops(1, ctx)) / target.effective_flops
        want = _batch_step(1, target.weights_bytes, 0.5e9 * 2, False, 1e10, 1.0, 1e6, 0.0, 4, 1, 1, kv, work,
                           kv if tier else 0.0)
        assert cost.decode_step_time_s(TOY, target, ctx, kv_tier=[tier]) == pytest.approx(want, rel=1e-12)


def test_pipeline_stages_add_throughput_not_latency():
    """The same 8 chips as TP8 or PP8 (hand values): one sequence's token passes PP8's
    stages in turn (8 stage times of 1/8 of the work at one chip's rate: as slow as one
    chip), while TP8 splits it over all eight; with 8 or more sequences PP8 keeps every
    stage busy (8 micro-batches) and reaches TP8's compute-bound throughput."""
    chip_bw, weights = 1e12, 8e9
    tp8 = dict(pp=1, bw=8 * chip_bw)
    pp8 = dict(pp=8, bw=chip_bw)
    one = {k: timing.batch_step_s(v["pp"], weights, weights, False, v["bw"], 1.0, 1.0, 0.0, 80, 1, 1, 0.0, 0.0, 0.0)
           for k, v in (("tp", tp8), ("pp", pp8))}
    assert one["tp"] == pytest.approx(weights / (8 * chip_bw))  # 1 ms
    assert one["pp"] == pytest.approx(weights / chip_bw)  # 8 ms: latency of one chip
    # compute-bound batch of 64 sequences needing 64 s-of-one-chip... in units of one stage:
    # TP8's stage is 8 chips (work 8 s at its rate), PP8's stage one chip (work 64 s)
    tp = timing.batch_step_s(1, 0.0, 0.0, False, 8 * chip_bw, 1.0, 1.0, 0.0, 80, 64, 64, 0.0, 8.0, 0.0)
    pp = timing.batch_step_s(8, 0.0, 0.0, False, chip_bw, 1.0, 1.0, 0.0, 80, 64, 64, 0.0, 64.0, 0.0)
    assert tp == pytest.approx(8.0) and pp == pytest.approx(8.0)  # the same throughput
    # a stage streams over its own links: PP8 sees one chip's link for one sequence
    s_tp = timing.batch_step_s(1, 0.0, 0.0, False, 1e30, 1.0, 8e9, 0.0, 80, 1, 1, 0.0, 0.0, 8e9)
    s_pp = timing.batch_step_s(8, 0.0, 0.0, False, 1e30, 1.0, 1e9, 0.0, 80, 1, 1, 0.0, 0.0, 8e9)
    assert s_tp == pytest.approx(1.0) and s_pp == pytest.approx(8.0)


@st.composite
def schedules(draw):
    """Random inputs of the planners' schedule: tiers, their paths and links, a request."""
    T = draw(st.integers(1, 4))
    num_links = draw(st.integers(1, 3))
    n = draw(st.integers(0, 30))
    ti = np.array(draw(st.lists(st.integers(-1, T - 1), min_size=n, max_size=n)), dtype=np.int64)
    r = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)), dtype=np.float64)
    bw = np.array([1e12] + draw(st.lists(st.floats(1e3, 1e11), min_size=T - 1, max_size=T - 1)))
    lat = np.array([0.0] + draw(st.lists(st.sampled_from([0.0, 1e-6, 1e-3, 0.2]), min_size=T - 1, max_size=T - 1)))
    link = np.array([-1] + draw(st.lists(st.integers(0, num_links - 1), min_size=T - 1, max_size=T - 1)),
                    dtype=np.int64)
    busy = np.array(draw(st.lists(st.sampled_from([0.0, 1e-3, 0.5]), min_size=num_links, max_size=num_links)))
    mask = draw(st.integers(0, (1 << T) - 1)) & ~1  # lower tiers only
    return dict(ti=ti, r=r, c_new=draw(st.floats(0.0, 5.0)), bw=bw, lat=lat, link=link, busy=busy, mask=mask,
                block_bytes=float(draw(st.sampled_from([1024, 65536, 10**7]))), num_layers=draw(st.integers(1, 80)),
                layerwise=draw(st.booleans()))


@given(case=schedules())
@settings(max_examples=300)
def test_plan_times_twins_agree(case):
    ti, n, T = case["ti"], case["ti"].size, case["bw"].size
    fetch = frozenset(t for t in range(1, T) if (case["mask"] >> t) & 1)
    py = cost.plan_times_s(ti, case["r"], case["c_new"], fetch, path_read_bw=case["bw"], path_latency_s=case["lat"],
                           path_link=case["link"], link_busy_s=case["busy"], block_bytes=case["block_bytes"],
                           num_layers=case["num_layers"], layerwise=case["layerwise"])
    cnt = np.empty((T, n + 1), np.int64)
    cf, ct, t, d, a = np.empty((5, n + 1))
    timing.suffix_counts(np.append(ti, 0), n, T, cnt)
    for tier in range(T):
        assert cnt[tier].tolist() == cost.suffix_counts(ti == tier).tolist()
    timing.plan_times(np.append(ti, 0), n, case["mask"], np.append(case["r"], 0.0), case["c_new"], case["bw"],
                      case["lat"], case["link"], case["busy"].size, case["busy"], case["block_bytes"],
                      case["num_layers"], case["layerwise"], cnt, cf, ct, t, d, a)
    np.testing.assert_array_equal(cf, py.front_s)
    np.testing.assert_array_equal(ct, py.tail_s)
    np.testing.assert_array_equal(t, py.ttft_s)


def test_plan_times_hand_values():
    """Two blocks in DRAM (one link, 1 s per block, 0.1 s latency), 2 s to recompute each,
    1 s of new tokens, one layer, loads before compute."""
    kw = dict(path_read_bw=[1e12, 1.0], path_latency_s=[0.0, 0.1], path_link=[-1, 0], link_busy_s=[0.0],
              block_bytes=1.0, num_layers=1, layerwise=False)
    times = cost.plan_times_s([1, 1], [2.0, 2.0], 1.0, {1}, **kw)
    # k = 0: fetch both; k = 1: recompute block 0 while block 1 loads; k = 2: recompute both
    assert times.ttft_s.tolist() == pytest.approx([3.1, 3.0, 5.0])
    assert times.front_s.tolist() == [0.0, 2.0, 4.0] and times.tail_s.tolist() == [1.0, 1.0, 1.0]
    assert times.link_load_s[0].tolist() == pytest.approx([2.1, 1.1, 0.0])
    nothing = cost.plan_times_s([1, 1], [2.0, 2.0], 1.0, frozenset(), **kw)
    assert nothing.ttft_s.tolist() == [5.0, 5.0, 5.0]
