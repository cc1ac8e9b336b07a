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


def _stage(**kw):
    """A ``StageModel`` with every part neutral (no compute, no overheads) unless given."""
    base = dict(pp=1, num_layers=80, weights_bytes=0.0, active_bytes=0.0, weights_separate=False, bw_stage=1e30,
                weights_bw_stage=1.0, stream_bw_stage=1.0, lin_token_s=0.0, gemm_eff=1.0, gemm_half_tokens=0.0,
                attn_flops_per_s=1.0, ar_latency_s=0.0, ar_token_s=0.0, elem_token_s=0.0, layer_overhead_s=0.0)
    return timing.StageModel(**{**base, **kw})


def _batch_step(st, n, tokens, kv, attn, stream):
    """The step written out: ``m = min(pp, n)`` micro-batches; each stage reads the weights
    its micro-batch's tokens use (``active`` per token, at most all) and its share of the
    KV (the weights beside it when they have their own memory), computes its share of the
    linear layers at the GEMM efficiency ``eff x t / (t + half)`` and of attention, and
    streams its share; the slowest of the three, ``pp`` stages in turn; then per layer two
    all-reduces, the element-wise work and the fixed overhead."""
    pp = st.pp
    m = max(1, min(pp, n))
    t = tokens / m
    w = min(st.weights_bytes, st.active_bytes * t) / pp
    kv_s = kv / (pp * m) / st.bw_stage
    mem = [w / st.weights_bw_stage, kv_s] if st.weights_separate else [w / st.bw_stage + kv_s]
    gemm = t * st.lin_token_s / (st.gemm_eff * t / (t + st.gemm_half_tokens)) if t > 0 else 0.0
    comp = (gemm + attn / m) / pp
    res = [*mem, comp] + ([stream / (pp * m) / st.stream_bw_stage] if stream > 0 else [])
    per_layer = 2 * (st.ar_latency_s + t * st.ar_token_s) + t * st.elem_token_s + st.layer_overhead_s
    return pp * max(res) + st.num_layers * per_layer


@given(pp=st.integers(1, 8), weights=non_negative, active=non_negative, separate=st.booleans(), bw=positive,
       wbw=positive, stream_bw=positive, lin=st.floats(0.0, 1e-3), eff=st.floats(0.1, 1.0), half=st.floats(0, 500),
       ar=st.floats(0.0, 1e-5), ar_tok=st.floats(0.0, 1e-7), elem=st.floats(0.0, 1e-7), overhead=st.floats(0.0, 1e-4),
       layers=st.integers(1, 128), n=st.integers(0, 300), extra=st.integers(0, 9000), kv=non_negative,
       attn=st.floats(0.0, 10.0), stream=st.one_of(st.just(0.0), non_negative))
@settings(max_examples=200)
def test_batch_step_is_the_sum_of_its_parts(pp, weights, active, separate, bw, wbw, stream_bw, lin, eff, half, ar,
                                            ar_tok, elem, overhead, layers, n, extra, kv, attn, stream):
    stage = _stage(pp=pp, num_layers=layers, weights_bytes=weights, active_bytes=active, weights_separate=separate,
                   bw_stage=bw, weights_bw_stage=wbw, stream_bw_stage=stream_bw, lin_token_s=lin, gemm_eff=eff,
                   gemm_half_tokens=half, ar_latency_s=ar, ar_token_s=ar_tok, elem_token_s=elem,
                   layer_overhead_s=overhead)
    args = (n, n + extra, kv, attn, stream)
    assert timing.batch_step_s(stage, *args) == pytest.approx(_batch_step(stage, *args), rel=1e-12, abs=1e-300)


TOY = ModelSpec(name="toy", num_layers=4, num_q_heads=1, num_kv_heads=1, head_dim=64, dtype_bytes=2,
                active_params=0.5e9, total_params=1e9, attn_flops_coef=2e6)


def test_decode_step_time_is_the_batch_step_of_the_target():
    """``decode_step_time_s`` of a target (no deployment: one tensor-parallel group, no
    parts beyond one MFU) is the batch step over its figures: every byte of KV read from
    the compute tier (streamed KV lands there first), the streamed part also over the
    link, one token of compute."""
    tiers = (TargetTier(name="hbm", kind="hbm", capacity_bytes=10**10, read_bw_bytes_per_s=1e10,
                        write_bw_bytes_per_s=1e10),
             TargetTier(name="dram", kind="dram", capacity_bytes=10**11, read_bw_bytes_per_s=1e9,
                        write_bw_bytes_per_s=1e9, link="pcie"))
    target = HardwareTarget(name="toy", tiers=tiers, compute_flops=2e10, model=TOY,
                            links=(LinkSpec(name="pcie", read_bw_bytes_per_s=1e6, write_bw_bytes_per_s=1e6),))
    stage = _stage(num_layers=4, weights_bytes=target.weights_bytes, active_bytes=1e9, bw_stage=1e10,
                   stream_bw_stage=1e6, lin_token_s=1e9 / 2e10, gemm_eff=0.5, attn_flops_per_s=1e10)
    for ctx, tier in ((1000, 0), (1000, 1), (10, 1), (0, 0)):
        kv = float(TOY.kv_bytes(ctx))
        attn = 2e6 * (ctx + 0.5) / 1e10  # a token's attention at context ctx, at 50% of 2e10
        want = _batch_step(stage, 1, 1, kv, attn, kv if tier else 0.0)
        assert cost.decode_step_time_s(TOY, target, ctx, kv_tier=[tier]) == pytest.approx(want, rel=1e-12)


def test_pipeline_stages_add_throughput_not_latency():
    """The same 8 chips as TP8 or PP8 (hand values): one sequence's token passes PP8's
    stages in turn (8 stage times of 1/8 of the work at one chip's rate: as slow as one
    chip), while TP8 splits it over all eight; with 8 or more sequences PP8 keeps every
    stage busy (8 micro-batches) and reaches TP8's compute-bound throughput."""
    chip_bw, weights = 1e12, 8e9
    one = {"tp": timing.batch_step_s(_stage(weights_bytes=weights, active_bytes=weights, bw_stage=8 * chip_bw),
                                     1, 1, 0.0, 0.0, 0.0),
           "pp": timing.batch_step_s(_stage(pp=8, weights_bytes=weights, active_bytes=weights, bw_stage=chip_bw),
                                     1, 1, 0.0, 0.0, 0.0)}
    assert one["tp"] == pytest.approx(weights / (8 * chip_bw))  # 1 ms
    assert one["pp"] == pytest.approx(weights / chip_bw)  # 8 ms: latency of one chip
    # a compute-bound batch of 64 sequences: 8 s of attention at TP8's stage (8 chips),
    # 64 s at PP8's (one chip)
    tp = timing.batch_step_s(_stage(), 64, 64, 0.0, 8.0, 0.0)
    pp = timing.batch_step_s(_stage(pp=8), 64, 64, 0.0, 64.0, 0.0)
    assert tp == pytest.approx(8.0) and pp == pytest.approx(8.0)  # the same throughput
    # a stage streams over its own links: PP8 sees one chip's link for one sequence
    s_tp = timing.batch_step_s(_stage(stream_bw_stage=8e9), 1, 1, 0.0, 0.0, 8e9)
    s_pp = timing.batch_step_s(_stage(pp=8, stream_bw_stage=1e9), 1, 1, 0.0, 0.0, 8e9)
    assert s_tp == pytest.approx(1.0) and s_pp == pytest.approx(8.0)


def test_time_model_parts_by_hand():
    """Each part of the step (``StageModel``) on its own."""
    # GEMM efficiency by token count: 0.8 x t / (t + 50): 50 tokens run at 0.4, so 50 tokens
    # of 1 ms each take 125 ms; 10,000 tokens run at 0.796
    g = _stage(lin_token_s=1e-3, gemm_eff=0.8, gemm_half_tokens=50.0)
    assert timing.batch_step_s(g, 1, 50, 0.0, 0.0, 0.0) == pytest.approx(50 * 1e-3 / 0.4)
    assert timing.batch_step_s(g, 1, 10_000, 0.0, 0.0, 0.0) == pytest.approx(10_050 * 1e-3 / 0.8)
    # two all-reduces per layer: 80 layers x 2 x (5 us + 1,000 tokens x 10 ns) = 2.4 ms
    a = _stage(ar_latency_s=5e-6, ar_token_s=1e-8)
    assert timing.batch_step_s(a, 1, 1000, 0.0, 0.0, 0.0) == pytest.approx(80 * 2 * (5e-6 + 1000 * 1e-8))
    # element-wise work and the fixed overhead add per layer: 80 x (1,000 x 80 ns + 40 us)
    e = _stage(elem_token_s=80e-9, layer_overhead_s=40e-6)
    assert timing.batch_step_s(e, 1, 1000, 0.0, 0.0, 0.0) == pytest.approx(80 * (1000 * 80e-9 + 40e-6))
    # a mixture of experts reads what its tokens use: 2 tokens x 35 GB of 480 GB at 1 TB/s
    moe = _stage(weights_bytes=480e9, active_bytes=35e9, bw_stage=1e12)
    assert timing.batch_step_s(moe, 2, 2, 0.0, 0.0, 0.0) == pytest.approx(70e9 / 1e12)
    assert timing.batch_step_s(moe, 64, 64, 0.0, 0.0, 0.0) == pytest.approx(480e9 / 1e12)


def test_allreduce_and_attention_parts_of_a_target():
    """``cost.compute_parts``: a TP8 replica's all-reduce moves a ring's 2 x 7/8 of a
    token's activations (hidden 8,192 x 2 B) over one chip's link; attention FLOPs at
    context C are the model's ``a x (C + 1/2)`` per new token, at attention efficiency."""
    from dataclasses import replace

    from kvtier.targets import Deployment

    t = HardwareTarget.preset("h100", model="llama-3.1-70b", chips=8)
    t = replace(t, deployment=Deployment(tp=8), tp_link_bw_bytes_per_s=400e9, tp_allreduce_latency_s=5e-6,
                attention_efficiency=0.6, estimates=())
    c = cost.compute_parts(t.model, t)
    assert c.ar_token_s == pytest.approx(2 * 7 / 8 * 8192 * 2 / 400e9)
    assert c.ar_latency_s == 5e-6
    assert c.attn_flops_per_s == pytest.approx(8 * 989e12 * 0.6)
    a = t.model.attention_flops_coef  # 4 x 80 layers x 64 heads x 128 = 2,621,440
    assert a == 4 * 80 * 64 * 128
    assert cost.attention_flops(t.model, 1, 32_768) == pytest.approx(a * 32_768.5)
    assert cost.attention_flops(t.model, 1000, 0) == pytest.approx(a * 1000 * 1000 / 2)
    # no tensor parallelism, no all-reduce
    one = replace(t, chips=1, deployment=Deployment(tp=1), model=None)
    assert cost.compute_parts(t.model, one).ar_token_s == 0.0 and cost.compute_parts(t.model, one).ar_latency_s == 0


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
