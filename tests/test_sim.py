"""The step engine (``kvtier.sim``) on whole traces: hand-computed TTFT, TPOT and bytes,
waiting for room and residency, determinism, parity with the replay engine and with the
planners. One mechanism at a time, by hand: ``tests/test_engine.py``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.cost import batch_step_s, stage_model
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.planners import make_planner
from kvtier.replay import ReplayTier, replay
from kvtier.sim import SimConfig, prepare_trace, regime_for, simulate
from kvtier.sim.engine import price_plan
from kvtier.targets import Deployment, HardwareTarget, LinkSpec, TargetTier
from kvtier.traces import TraceBuilder, generate_trace

# A model and target small enough to compute by hand:
# KV 16 B/token (2 x 1 layer x 1 head x 4 dims x 2 B), blocks of 4 tokens = 64 B;
# prefill FLOPs S*1 + 0.5*(S*C + S^2/2) at 1,000 FLOP/s (2e3 x 0.5), so a FLOP is a ms;
# weights 1 B, so the compute tier's KV room is fast_blocks x 64 B (3 blocks: 12 tokens);
# the "wire" link moves 64 B (one block) per ms; memories are effectively instant.
# A step takes its tokens' FLOPs: 1 ms per token (linear) plus attention. A prompt of
# whole blocks is prefilled with one token on top (the planner's "at least one new token"),
# so [A, B] missing is 8 + 16 ms of blocks and 5.25 ms for the token on 8: 29.25 ms, and
# a decode token on a context of C tokens is 1 + 0.5 C ms.
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
    tr = hand_trace([0.0, 100.0, 200.0], [3, 1, 0])
    res = simulate(tr, hand_target(), planner="always-fetch")
    r = res.requests
    # R0: recompute blocks at depth 0, 1 (8 + 16 ms) then one new token on 8 cached (5.25 ms)
    assert r["ttft_s"][0] == pytest.approx(29.25 * MS, abs=1e-9)
    # decode: its two steps feed tokens on 9 and 10 tokens of context (1 + 4.5, 1 + 5 ms),
    # taken together at the middle of the window: 1 + 0.5 * 9.5 = 5.75 ms each
    assert r["tpot_s"][0] == pytest.approx(5.75 * MS, abs=1e-9)
    assert r["end_s"][0] == pytest.approx((29.25 + 2 * 5.75) * MS, abs=1e-9)
    assert r["ttft_s"][1] == pytest.approx(29.25 * MS, abs=1e-9)
    assert math.isnan(r["tpot_s"][1]) and math.isnan(r["tpot_s"][2])  # one output token: no TPOT
    # R2: fetch A, B (2 ms on the wire; one layer, so it computes once all of it has landed),
    # then E (24 ms) and the new token (7.25 ms)
    assert r["ttft_s"][2] == pytest.approx(33.25 * MS, abs=1e-9)
    assert list(r["hit_blocks_slow"]) == [0, 0, 2]
    assert list(r["fetched_bytes_slow"]) == [0, 0, 128]
    assert list(r["recomputed_tokens"]) == [8, 8, 4]
    assert list(r["queue_s"]) == [0, 0, 0]
    assert list(r["room_wait_s"]) == [0, 0, 0]
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


def test_hand_computed_queueing_and_waiting_for_room():
    tr = hand_trace([0.0, 1.0, 2.0], [1, 1, 1])
    res = simulate(tr, hand_target(), planner="always-fetch")
    r = res.requests
    # R0 runs alone 0 -> 29.25 ms; R1 and R2 arrive during its step and wait for its end.
    # At 29.25 R1 (128 B) is admitted, but R2 (12 tokens: 192 B) does not fit beside it in
    # 192 B: R2 waits at the head of the queue for room until R1 ends at 58.5 ms.
    assert r["queue_s"] == pytest.approx([0.0, 28.25 * MS, 56.5 * MS], abs=1e-9)
    assert r["room_wait_s"] == pytest.approx([0.0, 0.0, 29.25 * MS], abs=1e-9)
    # nothing streams: every context fits the compute tier alone
    assert list(r["regime"]) == [0, 0, 0]
    assert list(r["streamed_bytes_per_token"]) == [0, 0, 0]
    # R2 at 58.5: fetch A, B (58.5 -> 60.5 ms), then E and its token: 31.25 ms
    assert r["ttft_s"] == pytest.approx([29.25 * MS, 57.5 * MS, (56.5 + 2 + 31.25) * MS], abs=1e-9)
    assert res.summary["link_read_bytes"] == {"wire": 128.0}
    assert res.summary["room_wait_total_s"] == pytest.approx(29.25 * MS, abs=1e-9)
    assert res.summary["makespan_s"] == pytest.approx(91.75 * MS, abs=1e-9)


def test_hand_computed_stream_residency_admits_without_waiting():
    # residency="stream": at 29.25 R2 is admitted beside R1 with the 64 B left and streams
    # the other 128 B at every step. Its fetch (29.25 -> 31.25 ms) lands during R1's step,
    # so it prefills at R1's end: 58.5 + 31.25 = 89.75 ms, 2 ms sooner than waiting.
    tr = hand_trace([0.0, 1.0, 2.0], [1, 1, 1])
    res = simulate(tr, hand_target(), planner="always-fetch", residency="stream")
    r = res.requests
    assert r["queue_s"] == pytest.approx([0.0, 28.25 * MS, 27.25 * MS], abs=1e-9)
    assert list(r["room_wait_s"]) == [0, 0, 0]
    assert list(r["regime"]) == [0, 0, 1]
    assert list(r["streamed_bytes_per_token"]) == [0, 0, 128]
    # its prefill step (31.25 ms of compute) outlasts streaming 128 B (2 ms)
    assert r["ttft_s"] == pytest.approx([29.25 * MS, 57.5 * MS, 87.75 * MS], abs=1e-9)
    # the wire carries the fetch and one step's stream
    assert res.summary["link_read_bytes"] == {"wire": 128.0 + 128.0}
    assert res.summary["regime_share"]["streamed"] == pytest.approx(1 / 3)


def test_decode_step_is_the_cost_models_for_the_running_batch():
    # memory-bound: h100 x 8 (one TP8 replica) with Llama-70B
    tgt = HardwareTarget.preset("h100", model="llama-3.1-70b", chips=8)
    stage = stage_model(tgt)
    model = tgt.model
    kv_tok = model.kv_bytes_per_token
    b = TraceBuilder()
    b.add(timestamp_ms=0.0, session_id=0, input_length=256 * 100, output_length=1000, block_hashes=range(1, 101))
    one = b.build(block_tokens=256)
    alone = simulate(one, tgt).requests
    # alone, its 999 decode steps run as one window, priced at its middle: 499 tokens past
    # the prompt's 25,600 tokens of KV (the prefill's extra token is on top of the context)
    kv = kv_tok * (25_600 + 499)
    attn = model.attention_flops_coef * (25_601 + 499)
    assert alone["tpot_s"][0] == pytest.approx(batch_step_s(stage, 1, kv, attn), rel=1e-6)
    # the per-layer overhead adds to every step: 80 layers x (10 us - the family's 55 us)
    lat = simulate(one, tgt, decode_layer_latency_s=1e-5).requests
    assert lat["tpot_s"][0] == pytest.approx(alone["tpot_s"][0] + 80 * (1e-5 - stage.layer_overhead_s), rel=1e-6)
    # a second agent joins while the first decodes: its decode steps run beside the
    # first's, read both KVs and the weights once, so they are slower than the first's
    # alone but much faster than two of them
    b.add(timestamp_ms=5000.0, session_id=1, input_length=256 * 60, output_length=10, block_hashes=range(201, 261))
    r = simulate(b.build(block_tokens=256), tgt, closed_loop=False).requests
    assert r["dispatch_s"][0] + r["ttft_s"][0] < r["dispatch_s"][1]
    assert r["end_s"][1] < r["end_s"][0]  # the second's whole turn inside the first's decode
    assert alone["tpot_s"][0] < r["tpot_s"][1] < 1.2 * alone["tpot_s"][0]


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
    # ... but streams from the lower tier when there is one: it holds the 192 B of room
    # and reads the other 64 B at every step
    res = simulate(big, hand_target(lower=True))
    assert list(res.requests["regime"]) == [1]
    assert list(res.requests["streamed_bytes_per_token"]) == [64]


def test_sram_only_target_waits_for_room():
    # two 2-block contexts on 3 SRAM slots: R1 arrives during R0's prefill (0 -> 29.25 ms)
    # and, at its end, does not fit beside R0 (128 + 16 B for R0's next token, of 192 B):
    # it waits for room while R0 decodes two tokens (2 x 5.75 ms) and starts at 40.75 ms
    tr = hand_trace([0.0, 1.0], [3, 0], ([1, 2], [3, 4]))
    res = simulate(tr, hand_target(lower=False))
    r = res.requests
    assert list(r["regime"]) == [0, 0]
    assert r["queue_s"][1] == pytest.approx(39.75 * MS, abs=1e-9)
    assert r["room_wait_s"][1] == pytest.approx(11.5 * MS, abs=1e-9)
    assert r["ttft_s"][1] == pytest.approx((39.75 + 29.25) * MS, abs=1e-9)


def test_cerebras_long_context_streams_from_memoryx():
    t = HardwareTarget.preset("cerebras-cs3x4", model="llama-3.1-70b")
    short = regime_for(t, 4_000)
    long = regime_for(t, 150_000)
    assert short.regime == "resident" and long.regime == "streamed"
    # four pipeline stages in turn, each streaming its quarter of the layers' KV over its
    # own wafer's quarter of the MemoryX links: 4 x (S/4) / (bw/4) = 4 S / bw per token,
    # plus the per-layer overhead of the 80 layers
    stage = stage_model(t)
    assert stage.pp == 4
    bw = t.fetch_path(1).read_bw_bytes_per_s
    assert long.step_s == pytest.approx(4 * long.streamed_bytes_per_token / bw + 80 * stage.layer_overhead_s)
    # the short context's step is mostly that overhead (80 x 27.7 us = 2.2 ms): 40 times faster
    assert short.step_s == pytest.approx(80 * stage.layer_overhead_s, rel=0.02)
    assert long.tokens_per_s_per_agent < short.tokens_per_s_per_agent / 40
    h = HardwareTarget.preset("h200", model="llama-3.1-70b", chips=8)
    assert regime_for(h, 150_000).regime == "resident"


def _small_trace(agents=3, seed=5):
    return generate_trace(workload="coding-agent-small", num_agents=agents, seed=seed, requests_per_agent=25,
                          block_tokens=256)


def _replay_in_order(rows, prepared, caps, policy, model, B):
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
    rep = _replay_in_order(res.order, p, caps, policy, tgt.model, tr.block_tokens)
    assert [t.hits for t in rep.tiers] == list(res.summary["block_hits"].values())
    assert [t.evictions for t in rep.tiers] == list(res.summary["evictions"].values())
    assert [t.demotions for t in rep.tiers] == list(res.summary["demotions"].values())
    assert [t.promotions for t in rep.tiers] == list(res.summary["promotions"].values())
    assert sorted(res.order.tolist()) == list(range(tr.num_requests))


@pytest.mark.parametrize("overrides", [dict(routing="round-robin", preemption="swap", max_num_batched_tokens=512),
                                       dict(residency="stream", chunked_prefill=False, max_num_seqs=2)])
def test_simulator_hits_equal_the_replay_engine_per_replica(overrides):
    # two TP2 replicas, each with its own cache: the rows each replica looked up, in the
    # order it did, replay to the same counts on a cache of one replica's size
    tr = _small_trace(agents=4)
    p = prepare_trace(tr)
    tgt = dataclasses.replace(HardwareTarget.preset("h100", model="llama-3.1-70b", chips=4),
                              deployment=Deployment(tp=2))
    assert tgt.num_replicas == 2
    res = simulate(p, tgt, policy="lru", **overrides)
    caps = list(res.summary["cache_slots"].values())
    assert caps[0] < p.n_unique  # each replica's compute tier does evict
    totals = np.zeros((4, len(caps)), np.int64)
    for x in range(2):
        mine = res.order[res.requests["replica"][res.order] == x]
        assert mine.size > 0
        rep = _replay_in_order(mine, p, caps, "lru", tgt.model, tr.block_tokens)
        totals += np.array([[t.hits for t in rep.tiers], [t.evictions for t in rep.tiers],
                            [t.demotions for t in rep.tiers], [t.promotions for t in rep.tiers]])
    s = res.summary
    assert totals.tolist() == [list(s[k].values()) for k in ("block_hits", "evictions", "demotions", "promotions")]


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
    first = r["dispatch_s"] + r["ttft_s"]
    assert np.all(end >= first - 1e-9)
    many = r["output_tokens"] > 1
    assert np.allclose(end[many], first[many] + (r["output_tokens"][many] - 1) * r["tpot_s"][many], rtol=0, atol=2e-9)
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
    for field, value in (("preemption", "drop"), ("residency", "never"), ("routing", "random")):
        with pytest.raises(ConfigError, match=field):
            SimConfig(**{field: value})
    for field in ("max_num_batched_tokens", "max_num_seqs"):
        with pytest.raises(ConfigError, match=field):
            SimConfig(**{field: 0})
    with pytest.raises(ConfigError, match="model"):
        simulate(hand_trace([0.0], [0], ([1],)), HardwareTarget.preset("h100"))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_invariants_on_random_traces(data):
    """Every block is found somewhere or missing; TTFT is positive and the last token comes
    after the first; no tier holds more than its slots; the wire carries the fetches, the
    swaps and the streamed KV, and writes the demotions and the swaps; the default
    residency streams only a context larger than the compute tier; only a context larger
    than the compute tier with nothing below overflows."""
    n = data.draw(st.integers(1, 12))
    b = TraceBuilder()
    t = 0.0
    for i in range(n):
        t += data.draw(st.sampled_from([0.0, 0.5, 5.0, 80.0]))
        blocks = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True))
        b.add(timestamp_ms=t, session_id=i % 3, input_length=4 * len(blocks) + data.draw(st.integers(0, 3)),
              output_length=data.draw(st.integers(0, 6)), block_hashes=blocks)
    tr = b.build(block_tokens=4)
    lower = data.draw(st.booleans())
    fast_blocks = data.draw(st.integers(2, 6))
    tgt = hand_target(lower=lower, fast_blocks=fast_blocks)
    residency = data.draw(st.sampled_from(["auto", "stream"]))
    res = simulate(tr, tgt, policy=data.draw(st.sampled_from(["lru", "s3fifo", "arc", "belady"])),
                   planner=data.draw(st.sampled_from(["always-fetch", "always-recompute", "cost-optimal"])),
                   preemption=data.draw(st.sampled_from(["recompute", "swap"])), residency=residency,
                   max_num_batched_tokens=data.draw(st.sampled_from([3, 8, 8192])),
                   max_num_seqs=data.draw(st.sampled_from([1, 2, 256])))
    r = res.requests
    names = res.tier_names
    found = sum(r[f"hit_blocks_{nm}"] for nm in names)
    assert np.array_equal(found + r["missing_blocks"], np.diff(tr.block_offsets))
    served = r["regime"] != 2
    first = r["dispatch_s"] + r["ttft_s"]
    assert np.all(r["ttft_s"][served] > 0) and np.all(r["queue_s"] >= 0) and np.all(r["room_wait_s"] >= 0)
    assert np.all(r["dispatch_s"] >= tr.timestamps_ms / 1e3 - 1e-12)
    assert np.all(r["end_s"][served] >= first[served] - 1e-12)
    kv0 = fast_blocks * 64
    context_bytes = (tr.input_lengths + tr.output_lengths) * 16
    assert np.array_equal(~served, (context_bytes > kv0) & (not lower))
    if residency == "auto":
        assert np.all(context_bytes[r["regime"] == 1] > kv0)
    for nm in names:
        assert r[f"occupancy_{nm}"].max() <= res.summary["cache_slots"][nm]
    if lower:
        s = res.summary
        swapped = float(r["swap_bytes"].sum())
        assert s["link_write_bytes"]["wire"] == pytest.approx(s["demotions"]["fast"] * 64 + swapped)
        read = s["link_read_bytes"]["wire"] - float(r["fetched_bytes_slow"].sum()) - swapped
        assert read >= float(r["streamed_bytes_per_token"].sum()) - 1e-9
        if not np.any(r["regime"] == 1):
            assert read == pytest.approx(0.0, abs=1e-9)
    else:  # nowhere to swap to: preemption recomputes
        assert not np.any(r["swap_bytes"] > 0)
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
        # its one decode step reads the prompt's KV (streaming what the wafers cannot hold)
        row = regime_for(tgt, B * ctx_blocks, decode_layer_latency_s=34e-6)
        assert ["resident", "streamed", "overflow"][res.requests["regime"][0]] == row.regime
        assert res.requests["tpot_s"][0] == pytest.approx(row.step_s, rel=1e-3)
        assert res.requests["streamed_bytes_per_token"][0] == pytest.approx(row.streamed_bytes_per_token, abs=1)
