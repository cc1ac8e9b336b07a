"""Recompute-vs-fetch planners: hand-computed plans, a slow layer-by-layer reference,
brute force over every split and tier subset, and the properties of the issue."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.planners import (
    PLANNERS,
    RECOMPUTE,
    AlwaysFetch,
    AlwaysRecompute,
    CostOptimal,
    Threshold,
    make_planner,
    planner_names,
)
from kvtier.store import LookupResult
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier

# 1 GFLOP/token linear, attention coefficient 2e6, 4 layers, 1024 KV bytes per token.
TOY = ModelSpec(name="toy", num_layers=4, num_q_heads=1, num_kv_heads=1, head_dim=64, dtype_bytes=2,
                active_params=0.5e9, total_params=1e9, attn_flops_coef=2e6)
B = 10  # tokens per block: 10240 bytes; recomputing block j costs 1.01 + 0.02 j s; 10 new tokens on 40: 1.09 s


def toy_target(link_bw=20480.0, link_lat=0.1, compute=2e10, nvme=None) -> HardwareTarget:
    tiers = [
        TargetTier(name="hbm", kind="hbm", capacity_bytes=10**9, read_bw_bytes_per_s=1e12, write_bw_bytes_per_s=1e12),
        TargetTier(name="dram", kind="dram", capacity_bytes=10**10, read_bw_bytes_per_s=1e12,
                   write_bw_bytes_per_s=1e12, link="pcie"),
    ]
    links = [LinkSpec(name="pcie", read_bw_bytes_per_s=link_bw, write_bw_bytes_per_s=link_bw, latency_s=link_lat)]
    if nvme is not None:  # (tier bw, tier latency, link name, link bw, link latency)
        bw, lat, lname, lbw, llat = nvme
        tiers.append(TargetTier(name="nvme", kind="flash", capacity_bytes=10**11, read_bw_bytes_per_s=bw,
                                write_bw_bytes_per_s=bw, latency_s=lat, link=lname))
        if lname != "pcie":
            links.append(LinkSpec(name=lname, read_bw_bytes_per_s=lbw, write_bw_bytes_per_s=lbw, latency_s=llat))
    return HardwareTarget(name="toy", tiers=tuple(tiers), links=tuple(links), compute_flops=compute, efficiency=0.5)


def plan(name, ti, target=None, new=10, **kw):
    options = {k: kw.pop(k) for k in ("layerwise", "threshold_tokens") if k in kw}
    return make_planner(name, **options).plan(np.asarray(ti, np.int8), model=TOY, target=target or toy_target(),
                                               block_tokens=B, new_tokens=new, **kw)


# -- hand-computed plans --------------------------------------------------------------------


def test_hand_example_fetch_wins():
    """Blocks [hbm, dram, dram, missing]; 0.5 s per block on the link, 0.1 s latency.

    always-fetch: Ct = 1.09 (new) + 1.07 (block 3) = 2.16, D = 1.0, a = 0.1, L = 4:
    max(2.16, 0.1 + 1.0/4 + 2.16, 0.1 + 1.0 + 2.16/4) = 2.51.
    always-recompute: 1.03 + 1.05 + 1.07 + 1.09 = 4.24.
    """
    ti = [0, 1, 1, -1]
    af = plan("always-fetch", ti)
    assert af.ttft_s == pytest.approx(2.51)
    assert af.source.tolist() == [0, 1, 1, RECOMPUTE]
    assert af.fetch_bytes == (0, 2 * 10240) and af.recompute_tokens == 10 and af.split_block == 0
    assert af.fetch_blocks_by_tier() == {"dram": 2}
    assert af.link_load_s == {"pcie": pytest.approx(1.1)}
    assert af.compute_s == pytest.approx(2.16)
    ar = plan("always-recompute", ti)
    assert ar.ttft_s == pytest.approx(4.24)
    assert ar.source.tolist() == [0, RECOMPUTE, RECOMPUTE, RECOMPUTE] and ar.fetch_bytes == (0, 0)
    assert ar.link_load_s == {}
    co = plan("cost-optimal", ti)
    assert co.ttft_s == pytest.approx(2.51) and co.source.tolist() == af.source.tolist()
    # loads that must finish before compute (no layer-wise overlap): 0.1 + 1.0 + 2.16
    assert plan("always-fetch", ti, layerwise=False).ttft_s == pytest.approx(3.26)


def test_hand_example_cake_split():
    """Four blocks in DRAM behind a slow link (2 s per block): recompute three from the
    front while the last loads. TTFT(k) = max(Cf + 1.09, D/4 + 1.09, D + 1.09/4):
    k=0 8.2725, k=1 6.2725, k=2 4.2725, k=3 4.18, k=4 5.25."""
    t = toy_target(link_bw=5120.0, link_lat=0.0)
    ti = [1, 1, 1, 1]
    assert plan("always-fetch", ti, t).ttft_s == pytest.approx(8.2725)
    assert plan("always-recompute", ti, t).ttft_s == pytest.approx(5.25)
    co = plan("cost-optimal", ti, t)
    assert co.ttft_s == pytest.approx(4.18)
    assert co.split_block == 3 and co.source.tolist() == [RECOMPUTE] * 3 + [1]
    assert co.recompute_tokens == 30 and co.fetch_bytes == (0, 10240)
    assert plan("threshold", ti, t).ttft_s == pytest.approx(5.25)  # 40 tokens < 256: recompute
    assert plan("threshold", ti, t, threshold_tokens=40).ttft_s == pytest.approx(8.2725)  # 40 >= 40: fetch


def test_hand_example_busy_link_changes_the_plan():
    """The link is busy for 1 s with other transfers: always-fetch pays it
    (max(2.16, 1.1 + 0.25 + 2.16, 1.1 + 1 + 0.54) = 3.51); the best plan now recomputes
    block 1 up front and fetches only block 2: max(1.03 + 2.16, 1.1 + 0.125 + 2.16) = 3.385."""
    ti = [0, 1, 1, -1]
    busy = {"pcie": 1.0}
    assert plan("always-fetch", ti, link_busy_s=busy).ttft_s == pytest.approx(3.51)
    co = plan("cost-optimal", ti, link_busy_s=busy)
    assert co.ttft_s == pytest.approx(3.385)
    assert co.source.tolist() == [0, RECOMPUTE, 1, RECOMPUTE] and co.split_block == 2


def test_nothing_cached_and_nothing_to_fetch():
    ti = [-1, -1]
    for name in planner_names():
        p = plan(name, ti)
        assert p.source.tolist() == [RECOMPUTE, RECOMPUTE]
        assert p.ttft_s == pytest.approx(1.01 + 1.03 + 1.05)  # 10 new tokens on 20: 1e10 + 2e6 x 250
    empty = plan("cost-optimal", np.zeros(0, np.int8), new=10)
    assert empty.num_blocks == 0 and empty.ttft_s == pytest.approx(1.01)
    resident = plan("always-recompute", [0, 0, 0, 0])
    assert resident.ttft_s == pytest.approx(1.09) and resident.resident_blocks().tolist() == [0, 1, 2, 3]


def test_lookup_result_is_accepted():
    lr = LookupResult(np.array([0, 1, 1, -1], np.int8), ("hbm", "dram"), 3)
    p = AlwaysFetch().plan(lr, model=TOY, target=toy_target(), block_tokens=B, new_tokens=10)
    assert p.ttft_s == pytest.approx(2.51) and p.tier_names == ("hbm", "dram")


def test_registry_and_validation():
    assert set(planner_names()) == {"always-fetch", "always-recompute", "threshold", "cost-optimal"}
    assert PLANNERS["cost-optimal"] is CostOptimal and isinstance(make_planner("threshold"), Threshold)
    assert make_planner("threshold", threshold_tokens=7).threshold_tokens == 7
    with pytest.raises(UnknownNameError, match="cost-optimal"):
        make_planner("cheapest")
    with pytest.raises(ConfigError, match="threshold_tokens"):
        make_planner("threshold", threshold_tokens=-1)
    with pytest.raises(ConfigError, match="always-fetch"):
        make_planner("always-fetch", threshold_tokens=3)
    p = AlwaysRecompute()
    kw = dict(model=TOY, target=toy_target(), block_tokens=B, new_tokens=1)
    with pytest.raises(ConfigError, match="tier_index"):
        p.plan(np.array([0, 2]), **kw)
    with pytest.raises(ConfigError, match="tier_index"):
        p.plan(np.array([[0]]), **kw)
    with pytest.raises(ConfigError, match="block_tokens"):
        p.plan(np.array([0]), **{**kw, "block_tokens": 0})
    with pytest.raises(ConfigError, match="new_tokens"):
        p.plan(np.array([0]), **{**kw, "new_tokens": -1})
    with pytest.raises(UnknownNameError, match="link"):
        p.plan(np.array([0]), **kw, link_busy_s={"nvlink": 1.0})
    with pytest.raises(ConfigError, match="link_busy_s"):
        p.plan(np.array([0]), **kw, link_busy_s={"pcie": -1.0})


def test_llama70b_on_h100_fetch_beats_recompute():
    """hardware.md §4: every tier out-runs recompute per device. 100k tokens in host
    DRAM: fetching takes ~0.51 s, recomputing ~55 s; the planner fetches."""
    m = ModelSpec.preset("llama-3.1-70b")
    t = HardwareTarget.preset("h100", efficiency=0.5)  # hardware.md's one MFU for every FLOP
    ti = np.ones(100_000 // 16, np.int8)
    kw = dict(model=m, target=t, block_tokens=16, new_tokens=1)
    af = AlwaysFetch().plan(ti, **kw)
    ar = AlwaysRecompute().plan(ti, **kw)
    co = CostOptimal().plan(ti, **kw)
    assert 0.512 < af.ttft_s < 0.52
    assert abs(ar.ttft_s - 55.0) < 0.05 * 55.0
    assert co.ttft_s <= af.ttft_s and co.fetch_bytes[1] >= 0.95 * m.kv_bytes(100_000)


# -- a slow reference ------------------------------------------------------------------------


def naive_ttft(source, split, model, target, block_tokens, new_tokens, busy, layerwise):
    """Play the schedule layer by layer: front recompute, loads per link, tail compute."""
    eff = target.effective_flops
    n, L = len(source), model.num_layers
    r = [model.prefill_flops(block_tokens, j * block_tokens) / eff for j in range(n)]
    for j in range(split):
        assert source[j] in (0, RECOMPUTE)  # before the split nothing is fetched
    front = sum(r[j] for j in range(split) if source[j] == RECOMPUTE)
    tail = model.prefill_flops(new_tokens, n * block_tokens) / eff
    tail += sum(r[j] for j in range(split, n) if source[j] == RECOMPUTE)
    arrival = [0.0] * L
    block_bytes = model.block_bytes(block_tokens)
    for link in target.links:
        start, load = busy.get(link.name, 0.0), 0.0
        for t in range(1, len(target.tiers)):
            path = target.fetch_path(t)
            count = sum(1 for s in source if s == t)
            if path.name == link.name and count:
                start += path.latency_s
                load += count * block_bytes / path.read_bw_bytes_per_s
        if load:
            for layer in range(L):
                arrival[layer] = max(arrival[layer], start + (layer + 1) * load / L)
    if not layerwise:
        return max(front, arrival[-1]) + tail
    clock = front
    for layer in range(L):
        clock = max(clock, arrival[layer]) + tail / L
    return clock


def brute_force_best(ti, model, target, block_tokens, new_tokens, busy, layerwise):
    ti = np.asarray(ti)
    lower = range(1, len(target.tiers))
    best = np.inf
    for r in range(len(lower) + 1):
        for subset in itertools.combinations(lower, r):
            for k in range(len(ti) + 1):
                src = ti.copy().astype(int)
                idx = np.arange(len(ti))
                src[(ti != 0) & ((idx < k) | ~np.isin(ti, subset))] = RECOMPUTE
                best = min(best, naive_ttft(src.tolist(), k, model, target, block_tokens, new_tokens, busy, layerwise))
    return best


@st.composite
def requests(draw):
    shared = draw(st.booleans())
    nvme = (draw(st.floats(1e3, 1e6)), draw(st.floats(0, 0.5)), "pcie" if shared else "nvme_link",
            draw(st.floats(1e3, 1e6)), draw(st.floats(0, 0.2)))
    target = toy_target(link_bw=draw(st.floats(1e3, 1e6)), link_lat=draw(st.floats(0, 0.5)),
                        compute=draw(st.floats(1e9, 1e12)), nvme=nvme)
    ti = draw(st.lists(st.integers(-1, 2), max_size=10))
    busy = draw(st.dictionaries(st.sampled_from([k.name for k in target.links]), st.floats(0, 2)))
    return dict(ti=np.array(ti, np.int8), target=target, new=draw(st.integers(0, 50)),
                block_tokens=draw(st.sampled_from([1, 4, 10])), busy=busy, layerwise=draw(st.booleans()))


def run(name, req, **changes):
    req = {**req, **changes}
    return make_planner(name, layerwise=req["layerwise"]).plan(
        req["ti"], model=TOY, target=req["target"], block_tokens=req["block_tokens"], new_tokens=req["new"],
        link_busy_s=req["busy"])


@given(req=requests())
@settings(max_examples=60)
def test_plans_are_valid_and_priced_like_the_reference(req):
    ti = req["ti"]
    for name in planner_names():
        p = run(name, req)
        src = p.source
        assert src.dtype == np.int8 and src.shape == ti.shape
        assert np.all(src[ti < 0] == RECOMPUTE)  # a missing block must be recomputed
        assert np.all(src[ti == 0] == 0)  # resident blocks are used as they are
        assert np.all((src == ti) | (src == RECOMPUTE))  # a block is fetched only from where it is
        bb = TOY.block_bytes(req["block_tokens"])
        assert sum(p.fetch_bytes) == np.count_nonzero(src > 0) * bb
        assert p.recompute_tokens == np.count_nonzero(src == RECOMPUTE) * req["block_tokens"]
        want = naive_ttft(src.tolist(), p.split_block, TOY, req["target"], req["block_tokens"], req["new"],
                          req["busy"], req["layerwise"])
        assert p.ttft_s == pytest.approx(want, rel=1e-9, abs=1e-12)


@given(req=requests())
@settings(max_examples=40)
def test_cost_optimal_is_the_best_plan_and_never_slower(req):
    best = run("cost-optimal", req).ttft_s
    for name in ("always-fetch", "always-recompute", "threshold"):
        assert best <= run(name, req).ttft_s * (1 + 1e-12)
    brute = brute_force_best(req["ti"], TOY, req["target"], req["block_tokens"], req["new"], req["busy"],
                             req["layerwise"])
    assert best == pytest.approx(brute, rel=1e-9, abs=1e-12)


@given(req=requests(), more=st.integers(1, 100), factor=st.floats(1.0, 100.0))
@settings(max_examples=40)
def test_time_is_monotone_in_tokens_bandwidth_and_compute(req, more, factor):
    for name in planner_names():
        base = run(name, req).ttft_s
        assert run(name, req, new=req["new"] + more).ttft_s >= base * (1 - 1e-12)
    t = req["target"]
    faster_links = dataclasses.replace(t, links=tuple(
        dataclasses.replace(k, read_bw_bytes_per_s=k.read_bw_bytes_per_s * factor,
                            write_bw_bytes_per_s=k.write_bw_bytes_per_s * factor) for k in t.links))
    faster_compute = dataclasses.replace(t, compute_flops=t.compute_flops * factor)
    for name in ("cost-optimal", "always-fetch", "always-recompute"):
        base = run(name, req).ttft_s
        assert run(name, req, target=faster_links).ttft_s <= base * (1 + 1e-12)
        assert run(name, req, target=faster_compute).ttft_s <= base * (1 + 1e-12)
