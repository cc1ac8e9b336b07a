"""The time-driven simulator: hand-computed TTFT and bytes, residency, determinism, parity
with the replay engine and with the planners."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.planners import make_planner
from kvtier.replay import ReplayTier, replay
from kvtier.sim import SimConfig, prepare_trace, regime_for, simulate
from kvtier.sim.engine import price_plan
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier
from kvtier.traces import TraceBuilder, generate_trace

# A model and target small enough to compute by hand:
# KV 16 B/token (2 x 1 layer x 1 head x 4 dims x 2 B), blocks of 4 tokens = 64 B;
# prefill FLOPs S*1 + 0.5*(S*C + S^2/2) at 1,000 FLOP/s (2e3 x 0.5), so a FLOP is a ms;
# the "wire" link moves 64 B (one block) per ms; memories are effectively instant.
HAND = ModelSpec(name="hand", num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=4, dtype_bytes=2,
                 active_params=0.5, attn_flops_coef=0.5)
MS = 1e-3


def hand_target(*, lower: bool = True, fast_blocks: int = 3) -> HardwareTarget:
    fast = TargetTier(name="fast", kind="sram", capacity_bytes=fast_blocks * 64 + 1, read_bw_bytes_per_s=1e15,
                      write_bw_bytes_per_s=1e15)
    tiers = (fast,)
    links = ()
    if lower:
        tiers += (TargetTier(name="slow", kind="dram", capacity_bytes=10**6, read_bw_bytes_per_s=1e15,
                             write_bw_bytes_per_s=1e15, link="wire"),)
        links = (LinkSpec(name="wire", read_bw_bytes_per_s=64e3, write_bw_bytes_per_s=64e3),)
    return HardwareTarget(name="hand", tiers=tiers, links=links, compute_flops=2e3, efficiency=0.5, model=HAND)


def hand_trace(times_ms, outputs, rows=([1, 2], [3, 4], [1, 2, 5])):
    b = TraceBuilder()
    for i, (t, out, blocks) in enumerate(zip(times_ms, outputs, rows)):
        b.add(timestamp_ms=t, session_id=i, input_length=4 * len(blocks), output_length=out, block_hashes=blocks)
    return b.build(block_tokens=4)


def test_hand_computed_spaced_requests():
    # R0 [A,B] and R1 [C,D] miss; LRU with 3 fast slots demotes A at R1, then R2 [A,B,E]
    # finds A and B in "slow" (promoting them demotes B, C; E demotes D).
    tr = hand_trace([0.0, 100.0, 200.0], [1, 1, 0])
    res = simulate(tr, hand_target(), planner="always-fetch")
    r = res.requests
    # R0: recompute blocks at depth 0, 1 (8 + 16 ms) then one new token on 8 cached (5.25 ms)
    assert r["ttft_s"][0] == pytest.approx(29.25 * MS, abs=1e-9)
    # decode: one token on 8.5 tokens of context (avg over the turn): 1 + 0.5 * 9 = 5.5 ms
    assert r["step_s"][0] == pytest.approx(5.5 * MS)
    assert r["ttft_s"][1] == pytest.approx(29.25 * MS, abs=1e-9)
    # R2: fetch A, B (2 ms on the wire) while E (24 ms) and the new token (7.25 ms) compute
    assert r["ttft_s"][2] == pytest.approx(33.25 * MS, abs=1e-9)
    assert list(r["hit_blocks_slow"]) == [0, 0, 2]
    assert list(r["fetched_bytes_slow"]) == [0, 0, 128]
    assert list(r["recomputed_tokens"]) == [8, 8, 4]
    assert list(r["queue_s"]) == [0, 0, 0]
    assert list(r["regime"]) == [0, 0, 0]
    s = res.summary
    assert s["link_read_bytes"] == {"wire": 128.0}
    assert s["link_write_bytes"] == {"wire": 4 * 64.0}  # A at R1; B, C, D at R2
    assert s["hit_ratio"]["slow"] == pytest.approx(2 / 7)
    assert s["demotions"] == {"fast": 4, "slow": 0}
    # always-recompute: 8 + 16 + 24 ms of blocks, then 7.25 ms
    rec = simulate(tr, hand_target(), planner="always-recompute")
    assert rec.requests["ttft_s"][2] == pytest.approx(55.25 * MS, abs=1e-9)
    assert rec.summary["link_read_bytes"] == {"wire": 0.0}
    assert simulate(tr, hand_target(), planner="cost-optimal").requests["ttft_s"][2] == pytest.approx(33.25 * MS)


def test_hand_computed_queueing_and_streaming():
    tr = hand_trace([0.0, 1.0, 2.0], [1, 1, 1])
    res = simulate(tr, hand_target(), planner="always-fetch")
    r = res.requests
    # R1 waits for R0's prefill (29.25 ms); R2 waits for R1's (until 58.5 ms)
    assert r["queue_s"] == pytest.approx([0.0, 28.25 * MS, 56.5 * MS])
    # residency: R0 holds 144 B of 192; R1 (144 B) streams 96 B per step; R2 (208 B) all of it
    assert list(r["regime"]) == [0, 1, 1]
    assert list(r["streamed_bytes_per_token"]) == [0, 96, 208]
    # R1's stream holds the wire 58.5 -> 60 ms, so R2's fetch (booked at 58.5) starts 1.5 ms late
    assert r["ttft_s"] == pytest.approx([29.25 * MS, 57.5 * MS, (56.5 + 1.5 + 2 + 31.25) * MS])
    # decode: R2 alone in its batch, 7.5 ms of compute beats 3.25 ms of streaming
    assert r["step_s"] == pytest.approx([5.5 * MS, 5.5 * MS, 7.5 * MS])
    assert res.summary["link_read_bytes"] == {"wire": 96.0 + 128.0 + 208.0}
    assert res.summary["makespan_s"] == pytest.approx(100.75 * MS)


def test_decode_step_is_the_cost_models_for_the_running_batch():
    from kvtier.cost import decode_step_time_s

    # memory-bound: h100 x 8 with Llama-70B; two agents, the first still decoding when the
    # second starts, so the second's step reads the weights once and both KVs
    tgt = HardwareTarget.preset("h100", model="llama-3.1-70b", chips=8)
    b = TraceBuilder()
    b.add(timestamp_ms=0.0, session_id=0, input_length=256 * 100, output_length=1000, block_hashes=range(1, 101))
    b.add(timestamp_ms=0.0, session_id=1, input_length=256 * 60, output_length=10, block_hashes=range(201, 261))
    tr = b.build(block_tokens=256)
    r = simulate(tr, tgt, closed_loop=False).requests
    ctx = tr.input_lengths + tr.output_lengths
    assert r["step_s"][0] == pytest.approx(decode_step_time_s(tgt.model, tgt, int(ctx[0])), rel=1e-3)
    assert r["dispatch_s"][1] + r["ttft_s"][1] < r["end_s"][0]  # overlapping turns
    assert r["step_s"][1] == pytest.approx(decode_step_time_s(tgt.model, tgt, ctx.astype(float)), rel=1e-3)
    assert r["step_s"][1] < 2 * r["step_s"][0]  # batching shares the weights read
    # the per-layer latency adds to every step
    lat = simulate(tr, tgt, closed_loop=False, decode_layer_latency_s=1e-5).requests
    assert lat["step_s"][0] == pytest.approx(r["step_s"][0] + 80 * 1e-5)


def test_sram_only_target_reports_the_spill_not_an_impossible_hit():
    rows = ([1, 2, 3], [4, 5, 6], [1, 2, 3])
    tr = hand_trace([0.0, 100.0, 200.0], [0, 0, 0], rows)
    sram = simulate(tr, hand_target(lower=False), planner="always-fetch")
    # three SRAM slots, six blocks: R2's prefix was dropped, so it is recomputed, not hit
    assert list(sram.requests["hit_blocks_fast"]) == [0, 0, 0]
    assert sram.summary["hit_ratio"]["fast"] == 0.0
    assert list(sram.requests["recomputed_tokens"]) == [12, 12, 12]
    # with a lower tier the same working set hits there
    two = simulate(tr, hand_target(lower=True), planner="always-fetch")
    assert list(two.requests["hit_blocks_slow"]) == [0, 0, 3]
    # a context larger than the SRAM cannot decode there: overflow, not served
    big = hand_trace([0.0], [0], ([1, 2, 3, 4],))
    res = simulate(big, hand_target(lower=False))
    assert list(res.requests["regime"]) == [2] and res.summary["overflow_requests"] == 1
    assert math.isnan(res.requests["ttft_s"][0])
    # ... but streams from the lower tier when there is one
    res = simulate(big, hand_target(lower=True))
    assert list(res.requests["regime"]) == [1]


def test_sram_only_target_waits_for_room():
    # two 2-block contexts on 3 SRAM slots: the second waits for the first turn to end
    tr = hand_trace([0.0, 1.0], [0, 0], ([1, 2], [3, 4]))
    res = simulate(tr, hand_target(lower=False))
    assert list(res.requests["regime"]) == [0, 0]
    assert res.requests["queue_s"][1] == pytest.approx(28.25 * MS)


def test_cerebras_long_context_streams_from_memoryx():
    t = HardwareTarget.preset("cerebras-cs3x4", model="llama-3.1-70b")
    short = regime_for(t, 4_000)
    long = regime_for(t, 150_000)
    assert short.regime == "resident" and long.regime == "streamed"
    bw = t.fetch_path(1).read_bw_bytes_per_s
    assert long.step_s == pytest.approx(long.streamed_bytes_per_token / bw)
    assert long.tokens_per_s_per_agent < short.tokens_per_s_per_agent / 100
    h = HardwareTarget.preset("h200", model="llama-3.1-70b", chips=8)
    assert regime_for(h, 150_000).regime == "resident"


def _small_trace(agents=3, seed=5):
    return generate_trace(workload="coding-agent-small", num_agents=agents, seed=seed, requests_per_agent=25,
                          block_tokens=256)


def _small_target():
    # shrink HBM so the small trace evicts: h100 x 8 with 300 KV blocks of 256 tokens left after weights
    t = HardwareTarget.preset("h100", model="llama-3.1-70b", chips=8)
    return t


def _replay_in_order(res, prepared, caps, policy, model, B):
    rows = res.order
    off = prepared.offsets
    ids = np.concatenate([prepared.ids[off[r]:off[r + 1]] for r in rows]).astype(np.uint64)
    new_off = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([off[r + 1] - off[r] for r in rows], out=new_off[1:])
    tiers = [ReplayTier(name=f"t{i}", policy=policy, capacity_blocks=c) for i, c in enumerate(caps)]
    return replay(new_off, ids, tiers, model=model, block_tokens=B)


@pytest.mark.parametrize("policy,closed", [("lru", True), ("s3fifo", True), ("arc", True), ("cost-aware", True),
                                           ("belady", False), ("lru", False)])
def test_simulator_hits_equal_the_replay_engine(policy, closed):
    tr = _small_trace()
    p = prepare_trace(tr)
    tgt = HardwareTarget.preset("h100", model="llama-3.1-70b", chips=2)  # 19 GB of HBM for KV: evicts
    res = simulate(p, tgt, policy=policy, planner="cost-optimal", closed_loop=closed)
    caps = list(res.summary["cache_slots"].values())
    assert caps[0] < p.n_unique  # the compute tier does evict
    rep = _replay_in_order(res, p, caps, policy, tgt.model, tr.block_tokens)
    assert [t.hits for t in rep.tiers] == list(res.summary["block_hits"].values())
    assert [t.evictions for t in rep.tiers] == list(res.summary["evictions"].values())
    assert [t.demotions for t in rep.tiers] == list(res.summary["demotions"].values())
    assert [t.promotions for t in rep.tiers] == list(res.summary["promotions"].values())
    if not closed:
        assert list(res.order) == list(range(tr.num_requests))


def test_deterministic_bit_for_bit():
    tr = _small_trace(agents=4, seed=2)
    tgt = HardwareTarget.preset("cerebras-cs3x4", model="llama-3.1-70b")
    a = simulate(tr, tgt, policy="s3fifo", planner="cost-optimal")
    b = simulate(generate_trace(workload="coding-agent-small", num_agents=4, seed=2, requests_per_agent=25,
                                block_tokens=256), tgt, policy="s3fifo", planner="cost-optimal")
    assert a.to_json(per_request=True) == b.to_json(per_request=True)
    assert a.requests_csv() == b.requests_csv()


def test_closed_loop_waits_for_completion_plus_tool_wait():
    tr = _small_trace(agents=1)
    res = simulate(tr, HardwareTarget.preset("h200", model="llama-3.1-70b", chips=8))
    r = res.requests
    end = r["end_s"]
    assert np.all(end >= r["dispatch_s"] + r["ttft_s"] + r["output_tokens"] * r["step_s"] - 2e-9)
    for i in range(tr.num_requests):
        view = tr.request(i)
        for src, delay_ms, trigger, _rel in view.deps:
            assert trigger == 0
            assert r["dispatch_s"][i] >= end[src] + delay_ms / 1e3 - 2e-9
    # the first turn arrives at its timestamp; turns never start before their predecessor ends
    assert r["dispatch_s"][0] == pytest.approx(tr.timestamps_ms[0] / 1e3)


def test_output_blocks_are_found_by_the_next_turn():
    tr = _small_trace(agents=1)
    p = prepare_trace(tr)
    assert np.any(np.diff(p.offsets) > p.n_input_blocks)  # some rows carry output blocks
    res = simulate(p, HardwareTarget.preset("h200", model="llama-3.1-70b", chips=8), closed_loop=True)
    # a resident single agent on a big HBM recomputes only what it never saw
    assert res.summary["hit_ratio"]["hbm"] > 0.9


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_kernel_pricing_matches_the_planners(data):
    target = HardwareTarget.preset(data.draw(st.sampled_from(["h100", "cerebras-cs3x4", "vera-rubin-nvl72"])),
                                   model="llama-3.1-70b")
    T = len(target.tiers)
    n = data.draw(st.integers(0, 40))
    ti = np.array(data.draw(st.lists(st.integers(-1, T - 1), min_size=n, max_size=n)), dtype=np.int64)
    new = data.draw(st.integers(0, 5000))
    busy = {k.name: data.draw(st.sampled_from([0.0, 1e-3, 0.5])) for k in target.links}
    layerwise = data.draw(st.booleans())
    for planner in ("always-fetch", "always-recompute", "cost-optimal", "threshold"):
        plan = make_planner(planner, layerwise=layerwise).plan(ti, model=target.model, target=target, block_tokens=64,
                                                              new_tokens=new, link_busy_s=busy)
        ttft, split, fetched = price_plan(ti, target=target, planner=planner, block_tokens=64, new_tokens=new,
                                          link_busy_s=busy, layerwise=layerwise)
        assert ttft == pytest.approx(plan.ttft_s, rel=1e-9, abs=1e-15)
        if planner != "cost-optimal":
            assert split == plan.split_block
        assert set(np.unique(plan.source[plan.source > 0]).tolist()) <= set(fetched)


def test_config_errors_name_the_field():
    with pytest.raises(UnknownNameError, match="policy"):
        SimConfig(policy="nope")
    with pytest.raises(UnknownNameError, match="planner"):
        SimConfig(planner="nope")
    with pytest.raises(ConfigError, match="model"):
        simulate(hand_trace([0.0], [0], ([1],)), HardwareTarget.preset("h100"))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_invariants_on_random_traces(data):
    """Every block is found somewhere or missing; TTFT is positive; no tier holds more than
    its slots; bytes read on the link are the fetches plus the streamed KV."""
    n = data.draw(st.integers(1, 12))
    b = TraceBuilder()
    t = 0.0
    for i in range(n):
        t += data.draw(st.sampled_from([0.0, 0.5, 5.0, 80.0]))
        blocks = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True))
        b.add(timestamp_ms=t, session_id=i % 3, input_length=4 * len(blocks) + data.draw(st.integers(0, 3)),
              output_length=data.draw(st.integers(0, 3)), block_hashes=blocks)
    tr = b.build(block_tokens=4)
    tgt = hand_target(lower=data.draw(st.booleans()), fast_blocks=data.draw(st.integers(2, 6)))
    res = simulate(tr, tgt, policy=data.draw(st.sampled_from(["lru", "s3fifo", "arc", "belady"])),
                   planner=data.draw(st.sampled_from(["always-fetch", "always-recompute", "cost-optimal"])))
    r = res.requests
    names = res.tier_names
    found = sum(r[f"hit_blocks_{nm}"] for nm in names)
    assert np.array_equal(found + r["missing_blocks"], np.diff(tr.block_offsets))
    served = r["regime"] != 2
    assert np.all(r["ttft_s"][served] > 0) and np.all(r["queue_s"] >= 0)
    for nm in names:
        assert r[f"occupancy_{nm}"].max() <= res.summary["cache_slots"][nm]
    if len(names) > 1:
        streamed = float((r["streamed_bytes_per_token"] * r["output_tokens"])[served].sum())
        assert res.summary["link_read_bytes"]["wire"] == pytest.approx(r["fetched_bytes_slow"].sum() + streamed)
    assert sorted(res.order.tolist()) == list(range(n))


def test_output_blocks_come_from_the_next_turn():
    from kvtier.sim import output_blocks

    b = TraceBuilder()
    b.add(timestamp_ms=0.0, session_id=0, input_length=8, output_length=5, block_hashes=[1, 2])
    # the next turn continues the context: tokens 8..12 were the output, so block 2 (tokens 8..11) is its KV
    b.add(timestamp_ms=50.0, session_id=0, input_length=16, output_length=1, block_hashes=[1, 2, 3, 4],
          deps=[(0, 10.0, 0, 0)])
    # a compacted restart shares nothing after the first block: no output blocks for turn 1
    b.add(timestamp_ms=90.0, session_id=0, input_length=12, output_length=1, block_hashes=[1, 7, 8],
          deps=[(1, 10.0, 0, 0)])
    tr = b.build(block_tokens=4)
    out = output_blocks(tr)
    assert [o.tolist() for o in out] == [[3], [], []]
    res = simulate(tr, hand_target(fast_blocks=8), planner="always-fetch")
    # turn 1 finds blocks 1, 2 (its prefix) and 3 (turn 0's output) resident; only block 4 is new
    assert list(res.requests["hit_blocks_fast"]) == [0, 3, 1]
    assert list(res.requests["missing_blocks"]) == [2, 1, 2]


def test_regime_table_agrees_with_the_simulator_for_one_agent():
    tgt = HardwareTarget.preset("cerebras-cs3x4", model="llama-3.1-70b")
    B = 256
    for ctx_blocks in (40, 600):  # 10k tokens (resident) and 154k tokens (streamed)
        b = TraceBuilder()
        b.add(timestamp_ms=0.0, session_id=0, input_length=B * ctx_blocks, output_length=2,
              block_hashes=range(1, ctx_blocks + 1))
        res = simulate(b.build(block_tokens=B), tgt, decode_layer_latency_s=34e-6)
        row = regime_for(tgt, B * ctx_blocks + 2, decode_layer_latency_s=34e-6)
        assert ["resident", "streamed", "overflow"][res.requests["regime"][0]] == row.regime
        assert res.requests["step_s"][0] == pytest.approx(row.step_s, rel=1e-3)
        assert res.requests["streamed_bytes_per_token"][0] == pytest.approx(row.streamed_bytes_per_token)
