"""The step engine, one mechanism per test, computed by hand: waiting for room, preemption
by recompute and by swap, chunked prefill beside decodes, tensor against pipeline
parallelism, fp8 KV, routing, determinism. Whole traces and parity: ``tests/test_sim.py``.

The hand model and target (as ``test_sim.HAND``): KV 16 B a token, blocks of 4 tokens
(64 B); a step takes 1 ms per token it computes (linear FLOPs: 1 per token at 1,000 FLOP/s)
plus its attention, 0.5 ms per (token x context token): a decode token on ``C`` tokens of
context is ``1 + 0.5 C`` ms; a prompt of whole blocks, all missing, is its blocks
(8, 16, 24, 32 ms at depths 0..3) plus one token on top (``1 + 0.5 (C + 0.5)`` ms):
[A] is 8 + 3.25 = 11.25 ms (5 tokens), [A, B] 8 + 16 + 5.25 = 29.25 ms (9 tokens). The
weights are 1 B, so the compute tier's KV room is what the test names (192 B: 12 tokens);
memories are instant and the "wire" to the lower tier moves 64 B a ms each way.
Times below are in ms.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kvtier.cost import batch_step_s, stage_model
from kvtier.model import ModelSpec
from kvtier.sim import simulate
from kvtier.targets import Deployment, HardwareTarget, LinkSpec, TargetTier
from kvtier.traces import RELATION_SPAWN, TRIGGER_DISPATCH, TraceBuilder, generate_trace

HAND = ModelSpec(name="hand", num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=4, dtype_bytes=2,
                 active_params=0.5, attn_flops_coef=0.5)
MS = 1e-3


def ms(values):
    """Seconds as the engine reports them, from hand-computed ms (to the ns it rounds to)."""
    return pytest.approx(np.asarray(values, dtype=np.float64) * MS, abs=1e-8)


def target(kv_bytes: int = 192, *, model: ModelSpec = HAND, lower: bool = True, chips: int = 1,
           deployment: Deployment | None = None, wire_bytes_per_s: float = 64e3) -> HardwareTarget:
    """``chips`` chips, each with ``kv_bytes`` of compute-tier KV room (after the 1 B of
    weights each replica holds), 2,000 FLOP/s at MFU 0.5, instant memories, and a lower
    tier behind ``wire_bytes_per_s`` per chip."""
    fast = TargetTier(name="fast", kind="sram", capacity_bytes=chips * (kv_bytes + 1), read_bw_bytes_per_s=1e15,
                      write_bw_bytes_per_s=1e15)
    tiers, links = (fast,), ()
    if lower:
        tiers += (TargetTier(name="slow", kind="dram", capacity_bytes=chips * 10**6, read_bw_bytes_per_s=1e15,
                             write_bw_bytes_per_s=1e15, link="wire"),)
        links = (LinkSpec(name="wire", read_bw_bytes_per_s=wire_bytes_per_s * chips,
                          write_bw_bytes_per_s=wire_bytes_per_s * chips),)
    return HardwareTarget(name="hand", chips=chips, tiers=tiers, links=links, compute_flops=2e3 * chips,
                          efficiency=0.5, model=model, deployment=deployment)


def turns(*rows):
    """A trace of ``(timestamp_ms, blocks, output_tokens)`` rows, one session each, every
    prompt whole blocks of 4 tokens."""
    b = TraceBuilder()
    for i, (t, blocks, out) in enumerate(rows):
        b.add(timestamp_ms=float(t), session_id=i, input_length=4 * len(blocks), output_length=out,
              block_hashes=blocks)
    return b.build(block_tokens=4)


def test_a_turn_waits_for_room_then_runs_resident():
    # R0 [A,B] (8 tokens, 3 out) at 0 and R1 [C,D] (8 tokens, 2 out) at 1; 192 B of room.
    # 0 -> 29.25: R0's prefill. At 29.25 R0 holds 128 B and its next token takes 16, so R1
    # (128 B) does not fit: it waits at the head of the queue. R0 decodes its two tokens
    # (contexts 9, 10) as one window at the middle: 1 + 0.5 x 9.5 = 5.75 each -> 40.75.
    # R1 then runs alone: prefill 40.75 -> 70.0, one decode on 9 tokens (5.5) -> 75.5.
    tr = turns((0, [1, 2], 3), (1, [3, 4], 2))
    res = simulate(tr, target())
    r = res.requests
    assert r["room_wait_s"] == ms([0, 11.5])
    assert r["queue_s"] == ms([0, 40.75 - 1])
    assert r["ttft_s"] == ms([29.25, 70.0 - 1])
    assert r["tpot_s"] == ms([5.75, 5.5])
    assert r["end_s"] == ms([40.75, 75.5])
    # resident all along: nothing read over the wire (C, D demote A: one block written)
    assert list(r["regime"]) == [0, 0] and list(r["streamed_bytes_per_token"]) == [0, 0]
    assert res.summary["link_read_bytes"] == {"wire": 0.0}
    assert res.summary["link_write_bytes"] == {"wire": 64.0}

    # residency="stream" does not wait: at 29.25 R1 takes the 48 B left (192 - 128 - 16)
    # and streams its other 80 B at every step. Step 29.25 -> 64.0: R0's decode (5.5) and
    # R1's prefill (29.25). At 64.0 R0's token took the last 16 B of room; step 64.0 ->
    # 75.5: R0 on 10 tokens (6) and R1 on 9 (5.5), both done. R1's first token comes 6 ms
    # sooner; R0's last comes 34.75 ms later.
    res = simulate(tr, target(), residency="stream")
    r = res.requests
    assert list(r["room_wait_s"]) == [0, 0]
    assert r["ttft_s"] == ms([29.25, 64.0 - 1])
    assert r["tpot_s"] == ms([(75.5 - 29.25) / 2, 11.5])
    assert list(r["regime"]) == [0, 1] and list(r["streamed_bytes_per_token"]) == [0, 80]
    assert res.summary["link_read_bytes"] == {"wire": 2 * 80.0}  # two steps of R1's 80 B


def test_default_residency_queues_contexts_that_fit_instead_of_streaming_them():
    # four agents of 8 tokens (3 out) at 0, 1, 2, 3 on 192 B: each fits alone, no two fit
    # together, so they run one after another, each resident: 29.25 of prefill and two
    # decode steps of 5.75 (40.75 a turn). Each waits for room at the head of the queue
    # while the turn before it runs: R1 29.25 -> 40.75 (only R0's decode: R1 arrived during
    # its prefill), R2 40.75 -> 81.5 (R1's whole turn), R3 81.5 -> 122.25 (R2's).
    tr = turns((0, [1, 2], 3), (1, [3, 4], 3), (2, [5, 6], 3), (3, [7, 8], 3))
    res = simulate(tr, target())
    r = res.requests
    assert list(r["regime"]) == [0, 0, 0, 0]
    assert list(r["streamed_bytes_per_token"]) == [0, 0, 0, 0]
    assert r["room_wait_s"] == ms([0, 11.5, 40.75, 40.75])
    assert r["ttft_s"] == ms([29.25, 70.0 - 1, 110.75 - 2, 151.5 - 3])
    assert r["end_s"] == ms([40.75, 81.5, 122.25, 163.0])
    assert res.summary["link_read_bytes"] == {"wire": 0.0}
    assert res.summary["regime_share"]["resident"] == 1.0


# R0 [A] at 0 and R1 [B] at 1, 4 tokens and 6 out each, on 192 B. 0 -> 11.25: R0's
# prefill (R1 arrives during it). 11.25 -> 26.0: R0's decode on 5 tokens (3.5) and R1's
# prefill (11.25). 26.0 -> 33.5: both decode (R0 on 6: 4, R1 on 5: 3.5); they hold 80 +
# 64 = 144 B and grow 32 B a step, so only one step fits (k = 48 // 32). At 33.5 they hold
# 96 + 80 = 176 B: the next step needs 208 > 192, so the newest, R1, is preempted.
PREEMPT = ((0, [1], 6), (1, [2], 6))


def test_preemption_by_recompute():
    # R1's KV is dropped; it queues first and needs its 6 tokens (4 of prompt, 2 generated:
    # 96 B) back, which do not fit beside R0 (96 + 16 B), so it waits for room while R0
    # decodes its last 3 tokens in one window on 7..9 tokens: 1 + 0.5 x 8 = 5 each, 33.5 ->
    # 48.5. R1 then prefills its 6 tokens again: 6 x 1 + 0.5 x 6^2 / 2 = 15, 48.5 -> 63.5
    # (that step samples its 3rd token), and decodes 3 more on 6..8 tokens: 3 x 4.5 -> 77.0.
    res = simulate(turns(*PREEMPT), target())
    r = res.requests
    assert list(r["preemptions"]) == [0, 1]
    assert r["ttft_s"] == ms([11.25, 26.0 - 1])
    assert r["room_wait_s"] == ms([0, 15.0])
    assert r["end_s"] == ms([48.5, 77.0])
    assert r["tpot_s"] == ms([(48.5 - 11.25) / 5, (77.0 - 26.0) / 5])
    # nothing crosses the wire
    assert list(r["swap_bytes"]) == [0, 0]
    s = res.summary
    assert s["preemptions"] == 1 and s["preempted_requests"] == 1 and s["swap_bytes"] == 0.0
    assert s["link_read_bytes"] == {"wire": 0.0} and s["link_write_bytes"] == {"wire": 0.0}


def test_preemption_by_swap():
    # R1's 80 B (its 4 prompt tokens and its first token's KV) are written over the wire,
    # 33.5 -> 34.75. It waits for room as with recompute (it needs 96 B with its next
    # token) until R0 ends at 48.5, is read back 48.5 -> 49.75, and decodes its last 4
    # tokens in one window on 6..9 tokens: 1 + 0.5 x 7.5 = 4.75 each -> 68.75.
    res = simulate(turns(*PREEMPT), target(), preemption="swap")
    r = res.requests
    assert list(r["preemptions"]) == [0, 1]
    assert list(r["swap_bytes"]) == [0, 80]
    assert r["room_wait_s"] == ms([0, 15.0])
    assert r["end_s"] == ms([48.5, 68.75])
    assert r["tpot_s"] == ms([(48.5 - 11.25) / 5, (68.75 - 26.0) / 5])
    s = res.summary
    assert s["swap_bytes"] == 80.0
    assert s["link_write_bytes"] == {"wire": 80.0}  # the swap-out (two blocks fit: no demotions)
    assert s["link_read_bytes"] == {"wire": 80.0}  # the swap-in


def test_swap_falls_back_to_recompute_without_a_lower_tier():
    # nowhere to swap to: the same preemption recomputes, as in test_preemption_by_recompute
    res = simulate(turns(*PREEMPT), target(lower=False), preemption="swap")
    assert list(res.requests["swap_bytes"]) == [0, 0]
    assert res.requests["end_s"] == ms([48.5, 77.0])


def test_chunked_prefill_shares_steps_with_decodes():
    # max_num_batched_tokens=4, 384 B of room. R0 [A] (5 tokens to prefill, 11.25: 2.25 a
    # token) at 0, 4 out; R1 [B,C,D] at 1, 2 out: 13 tokens, 8 + 16 + 24 + 7.25 = 55.25
    # (4.25 a token, the chunks share its work by tokens).
    #   0     -> 9     R0 4 tokens (9)
    #   9     -> 24    R0 its last token (2.25) + R1 3 tokens (12.75): R0's first token
    #   24    -> 40.25 R0 decode on 5 (3.5) + R1 3 tokens (12.75)
    #   40.25 -> 57    R0 decode on 6 (4)   + R1 3 tokens
    #   57    -> 74.25 R0 decode on 7 (4.5) + R1 3 tokens: R0's last token
    #   74.25 -> 78.5  R1 its last token (4.25): its first
    #   78.5  -> 86    R1 decode on 13 (7.5)
    tr = turns((0, [1], 4), (1, [2, 3, 4], 2))
    r = simulate(tr, target(384), max_num_batched_tokens=4).requests
    assert r["ttft_s"] == ms([24.0, 78.5 - 1])
    assert r["tpot_s"] == ms([(74.25 - 24.0) / 3, 7.5])
    assert r["end_s"] == ms([74.25, 86.0])
    assert r["queue_s"] == ms([0, 8.0])  # R1 joined the first step after it arrived
    # with the default budget each prompt goes in one step: R0's prefill 0 -> 11.25, then
    # its decode on 5 (3.5) waits for all of R1's prompt (55.25): 11.25 -> 70.0; both on
    # 6 and 13 tokens (4 + 7.5) -> 81.5; R0 on 7 (4.5) -> 86.0. R1's first token comes
    # 8.5 ms sooner, but R0's tokens come 24.9 ms apart instead of 16.75.
    r = simulate(tr, target(384)).requests
    assert r["ttft_s"] == ms([11.25, 70.0 - 1])
    assert r["tpot_s"] == ms([(86.0 - 11.25) / 3, 11.5])
    assert r["end_s"] == ms([86.0, 81.5])


def test_tensor_and_pipeline_parallel_on_the_same_chips():
    # two chips of 2,000 FLOP/s: TP2 is one stage of both (a token's linear FLOP 0.5 ms,
    # an attention FLOP 0.5 ms); PP2 is two stages of one chip each (1 ms each, per stage)
    # that a token passes in turn. Memories instant, no lower tier.
    def tgt(d):
        return target(10**6, lower=False, chips=2, deployment=d)

    tp, pp = tgt(Deployment(tp=2)), tgt(Deployment(pp=2))
    assert stage_model(tp).pp == 1 and stage_model(pp).pp == 2
    one = turns((0, [1, 2], 3))
    # latency: R0's prefill is 9 linear tokens and 20.25 attention FLOPs: TP 4.5 + 10.125 =
    # 14.625; PP (9 + 20.25) / 2 per stage x 2 stages = 29.25. Its two decode steps on 9,
    # 10 tokens at their middle: 1 + 4.75 FLOPs: TP 2.875, PP 5.75. One sequence cannot
    # fill a pipeline: PP doubles the latency.
    a = simulate(one, tp)
    b = simulate(one, pp)
    assert a.requests["ttft_s"] == ms([14.625]) and a.requests["tpot_s"] == ms([2.875])
    assert b.requests["ttft_s"] == ms([29.25]) and b.requests["tpot_s"] == ms([5.75])
    assert a.summary["deployment"]["tp"] == 2 and b.summary["deployment"]["pp"] == 2
    # each is the cost model's step for the batch: KV 8 prompt tokens + 0.5 of growth
    # (the step reads 136 B), 0.5 x 9.5 attention FLOPs
    for res, t in ((a, tp), (b, pp)):
        assert res.requests["tpot_s"][0] == pytest.approx(batch_step_s(stage_model(t), 1, 136, 4.75), abs=2e-9)
    # throughput: R1 [C,D] arrives at 1, during R0's prefill, and both then share steps.
    # R0's decode (on 9) with R1's prefill: 10 tokens, 24.75 attention FLOPs. TP: 5 +
    # 12.375 = 17.375. PP: two micro-batches keep both stages busy, (24.75/2 + 10/2) / 2
    # per stage x 2 = 17.375: the same. Both decoding (on 10 and 9): TP 1 + 4.75 = 5.75,
    # PP (9.5/2 + 1) / 2 x 2 = 5.75. Only R1's lone last step is twice as long on PP
    # (TP 0.5 + 2.5 = 3, PP 6).
    two = turns((0, [1, 2], 3), (1, [3, 4], 3))
    a = simulate(two, tp).requests
    b = simulate(two, pp).requests
    # TP: 0 -> 14.625 -> 32.0 (R1's first token) -> 37.75 (R0's last) -> 40.75
    assert a["ttft_s"] == ms([14.625, 32.0 - 1])
    assert a["end_s"] == ms([37.75, 40.75])
    # PP: 0 -> 29.25 -> 46.625 (R1's first token) -> 52.375 (R0's last) -> 58.375
    assert b["ttft_s"] == ms([29.25, 46.625 - 1])
    assert b["end_s"] == ms([52.375, 58.375])
    assert b["end_s"][0] - b["ttft_s"][0] == pytest.approx(a["end_s"][0] - a["ttft_s"][0], abs=1e-8)
    assert batch_step_s(stage_model(pp), 2, 0.0, 9.5) == pytest.approx(batch_step_s(stage_model(tp), 2, 0.0, 9.5))


FP8 = HAND.with_dtype_bytes(1)


def test_fp8_kv_halves_every_kv_byte():
    # fp8 KV (8 B a token, 32 B a block) on half the room (96 B: 3 blocks, as bf16's 192 B)
    # makes the same cache decisions, so every byte on the wire halves. R0 [A,B] at 0, R1
    # [C,D] at 100, R2 [A,B,E] at 200 (A, B fetched from slow), R3 [F,G,H,I] at 300 (16
    # tokens: more than the room, it streams the rest).
    tr = turns((0, [1, 2], 1), (100, [3, 4], 1), (200, [1, 2, 5], 1), (300, [6, 7, 8, 9], 1))
    bf = simulate(tr, target(192), planner="always-fetch")
    f8 = simulate(tr, target(96, model=FP8), planner="always-fetch")
    assert bf.summary["block_bytes"] == 64 and f8.summary["block_bytes"] == 32
    assert f8.summary["deployment"]["kv_bytes_per_element"] == 1
    assert f8.summary["cache_slots"] == bf.summary["cache_slots"] == {"fast": 3, "slow": 9}
    assert list(bf.requests["fetched_bytes_slow"]) == [0, 0, 128, 0]
    assert list(f8.requests["fetched_bytes_slow"]) == [0, 0, 64, 0]
    assert list(bf.requests["streamed_bytes_per_token"]) == [0, 0, 0, 256 - 192]
    assert list(f8.requests["streamed_bytes_per_token"]) == [0, 0, 0, 128 - 96]
    # the wire reads the fetch and R3's one step of streaming, and writes 8 demotions
    assert bf.summary["link_read_bytes"] == {"wire": 128.0 + 64.0}
    assert f8.summary["link_read_bytes"] == {"wire": 64.0 + 32.0}
    assert bf.summary["link_write_bytes"] == {"wire": 8 * 64.0}
    assert f8.summary["link_write_bytes"] == {"wire": 8 * 32.0}
    # compute is the same; R2's fetch takes 1 ms instead of 2: 33.25 and 32.25. R3's
    # prefill (17 tokens, 8 + 16 + 24 + 32 + 9.25 = 89.25) outlasts its stream either way.
    assert bf.requests["ttft_s"] == ms([29.25, 29.25, 33.25, 89.25])
    assert f8.requests["ttft_s"] == ms([29.25, 29.25, 32.25, 89.25])


def test_fp8_kv_fits_twice_the_context():
    # on 192 B: a 24-token prompt (384 B in bf16) streams 192 B at every step; in fp8 it is
    # 192 B and fits; compute is the same (6 blocks and the token on 24: 181.25)
    tr = turns((0, [1, 2, 3, 4, 5, 6], 1))
    bf = simulate(tr, target(192)).requests
    f8 = simulate(tr, target(192, model=FP8)).requests
    assert list(bf["regime"]) == [1] and list(bf["streamed_bytes_per_token"]) == [192]
    assert list(f8["regime"]) == [0] and list(f8["streamed_bytes_per_token"]) == [0]
    assert bf["ttft_s"] == ms([181.25]) and f8["ttft_s"] == ms([181.25])
    # two 8-token agents: in bf16 the second waits for room (test (a)); in fp8 they run
    # together: 29.25 -> 64.0 R0's decode on 9 (5.5) beside R1's prefill; 64.0 -> 70.0 R0
    # on 10 (6)
    tr = turns((0, [1, 2], 3), (1, [3, 4], 1))
    bf = simulate(tr, target(192)).requests
    f8 = simulate(tr, target(192, model=FP8)).requests
    assert bf["room_wait_s"] == ms([0, 11.5]) and bf["ttft_s"] == ms([29.25, 70.0 - 1])
    assert f8["room_wait_s"] == ms([0, 0]) and f8["ttft_s"] == ms([29.25, 64.0 - 1])
    assert f8["end_s"] == ms([70.0, 64.0])


def test_session_affinity_keeps_a_session_on_one_replica():
    # two replicas of one chip (each 256 B of room, 4 blocks). Session 0 at 0, 100, 200
    # grows [A,B] -> [A,B,C] -> [A,B,C,D]; session 1 [G,H] at 50 and its sub-agent (session
    # 2) [G,H,I] at 250.
    b = TraceBuilder()
    for t, session, parent, blocks in ((0, 0, -1, [1, 2]), (50, 1, -1, [7, 8]), (100, 0, -1, [1, 2, 3]),
                                       (200, 0, -1, [1, 2, 3, 4]), (250, 2, 1, [7, 8, 9])):
        b.add(timestamp_ms=float(t), session_id=session, parent_session_id=parent, input_length=4 * len(blocks),
              output_length=1, block_hashes=blocks)
    tr = b.build(block_tokens=4)
    tgt = target(256, chips=2, deployment=Deployment(tp=1))
    assert tgt.num_replicas == 2
    # by session (sessions dealt round the replicas in order of first appearance, a
    # sub-agent with its parent): every turn finds its session's prefix
    res = simulate(tr, tgt)
    assert res.summary["deployment"]["replicas"] == 2
    r = res.requests
    assert list(r["replica"]) == [0, 1, 0, 0, 1]
    assert list(r["hit_blocks_fast"]) == [0, 0, 2, 3, 2]
    # the fourth turn recomputes only D (32) and its token on 16 (9.25); the sub-agent I
    # (24) and its token on 12 (7.25)
    assert r["ttft_s"] == ms([29.25, 29.25, 31.25, 41.25, 31.25])
    # round robin deals requests in turn: the fourth turn and the sub-agent land where
    # their prefixes are not, and recompute everything
    r = simulate(tr, tgt, routing="round-robin").requests
    assert list(r["replica"]) == [0, 1, 0, 1, 0]
    assert list(r["hit_blocks_fast"]) == [0, 0, 2, 0, 0]
    assert r["ttft_s"] == ms([29.25, 29.25, 31.25, 89.25, 55.25])


def test_deterministic_bit_for_bit_with_every_mechanism():
    # two replicas, round robin, swap preemption, small chunks and few sequences: the same
    # inputs give the same result, byte for byte
    def run():
        tr = generate_trace(workload="coding-agent-small", num_agents=3, seed=7, requests_per_agent=12,
                            block_tokens=256)
        tgt = dataclasses.replace(HardwareTarget.preset("h100", model="llama-3.1-70b", chips=4),
                                  deployment=Deployment(tp=2))
        return simulate(tr, tgt, policy="s3fifo", routing="round-robin", preemption="swap",
                        max_num_batched_tokens=1024, max_num_seqs=4)

    a, b = run(), run()
    assert a.summary["deployment"]["replicas"] == 2
    assert a.summary["room_wait_total_s"] > 0  # the scheduler did wait for room
    assert a.to_json(per_request=True) == b.to_json(per_request=True)
    assert a.requests_csv() == b.requests_csv()
    assert np.array_equal(a.order, b.order)


def test_requests_ready_together_share_the_first_step():
    # R0 [A] and R1 [B] at 0, 2 out each: both are queued when the first step is made, so
    # both prefill in it: 10 tokens + 2 x 6.25 attention FLOPs = 22.5; then one decode
    # step of both on 5 tokens: 2 x 3.5 = 7 -> 29.5
    r = simulate(turns((0, [1], 2), (0, [2], 2)), target()).requests
    assert r["queue_s"] == ms([0, 0])
    assert r["ttft_s"] == ms([22.5, 22.5])
    assert r["end_s"] == ms([29.5, 29.5])


def test_dispatch_triggered_child_is_ready_at_dispatch_plus_delay():
    # P [A] at 0, 10 out; C [B] (a sub-agent, 2 out) may start 1 ms after P is dispatched.
    # C arrives during P's prefill (0 -> 11.25) and joins the next step: P's decode on 5
    # (3.5) and C's prefill (11.25) -> 26.0; then both decode (P on 6: 4, C on 5: 3.5) ->
    # 33.5, C's last token.
    b = TraceBuilder()
    b.add(timestamp_ms=0.0, session_id=0, input_length=4, output_length=10, block_hashes=[1])
    b.add(timestamp_ms=0.0, session_id=1, parent_session_id=0, input_length=4, output_length=2, block_hashes=[2],
          deps=[(0, 1.0, TRIGGER_DISPATCH, RELATION_SPAWN)])
    r = simulate(b.build(block_tokens=4), target()).requests
    assert r["dispatch_s"] == ms([0, 1.0])
    assert r["ttft_s"][1] == pytest.approx(25.0 * MS, abs=1e-8)
    assert r["end_s"][1] == pytest.approx(33.5 * MS, abs=1e-8)


def test_an_arrival_that_only_waits_changes_nothing_for_the_running_turn():
    # R0 [A,B,C,D] (16 tokens: 256 B on 192 B of room) runs alone, holding the room and
    # streaming the rest: 64 B at its prefill (0 -> 89.25) and at its 4 decode steps 64,
    # 80, 96, 112 B (its growth streams too), 416 B in all; the decodes on 17..20 tokens
    # take 1 + 0.5 x 18.5 = 10.25 each -> 130.25. R1 [E] arriving at 100 cannot be
    # admitted beside it (no room left), so R0's turn is the same with or without it.
    alone = simulate(turns((0, [1, 2, 3, 4], 5)), target())
    assert alone.summary["link_read_bytes"] == {"wire": 416.0}
    assert alone.requests["end_s"] == ms([130.25])
    res = simulate(turns((0, [1, 2, 3, 4], 5), (100, [5], 1)), target())
    assert res.requests["room_wait_s"][1] > 0
    assert res.summary["link_read_bytes"] == {"wire": 416.0}  # R1 reads nothing
    assert res.requests["end_s"][0] == pytest.approx(alone.requests["end_s"][0], abs=1e-9)
    assert res.requests["tpot_s"][0] == pytest.approx(alone.requests["tpot_s"][0], abs=1e-9)
    assert res.requests["streamed_bytes_per_token"][0] == alone.requests["streamed_bytes_per_token"][0]


def test_streamed_bytes_per_token_is_the_most_in_one_step():
    # as above: R0's steps stream 64 (prefill), 64, 80, 96, 112 B; the most is 112
    r = simulate(turns((0, [1, 2, 3, 4], 5)), target()).requests
    assert list(r["streamed_bytes_per_token"]) == [112]


def test_decode_waits_for_the_first_token_of_a_layerwise_fetch():
    # 4 layers (64 B a token, 256 B a block), 1,024 B of room (4 blocks), a slow wire
    # (6.4 kB/s). R0 [A,B,C] at 0 and R1 [D,E,F] at 300 push A, B out; R2 [A,B,C] + 1
    # token at 600 finds A, B, C in slow (each promotion demotes the next) and fetches
    # them: 768 B, 600 -> 720; its first layer lands at 630. Its prefill (1 token on 12:
    # 1 + 6.25 = 7.25) runs 630 -> 637.25 and its first token is at 720 (TTFT 120). Its two
    # decode steps on 13, 14 tokens (1 + 0.5 x 13.5 = 7.75 each) can only follow it.
    four = ModelSpec(name="hand4", num_layers=4, num_q_heads=1, num_kv_heads=1, head_dim=4, dtype_bytes=2,
                     active_params=0.5, attn_flops_coef=0.5)
    b = TraceBuilder()
    for t, blocks, n_in, out in ((0, [1, 2, 3], 12, 1), (300, [4, 5, 6], 12, 1), (600, [1, 2, 3, 7], 13, 3)):
        b.add(timestamp_ms=float(t), session_id=t, input_length=n_in, output_length=out, block_hashes=blocks)
    tgt = target(1024, model=four, wire_bytes_per_s=6.4e3)
    r = simulate(b.build(block_tokens=4), tgt, planner="always-fetch").requests
    assert list(r["fetched_bytes_slow"]) == [0, 0, 768]
    assert r["ttft_s"][2] == pytest.approx(120 * MS, abs=1e-8)
    assert r["end_s"][2] >= r["dispatch_s"][2] + r["ttft_s"][2]
    assert r["tpot_s"][2] == pytest.approx(7.75 * MS, abs=1e-8)


def test_disaggregated_prefill_moves_the_kv_to_a_decode_replica():
    # Two 1-chip replicas, the first only prefills. R0 [A,B] (8 tokens, 3 out) prefills on
    # replica 0, 0 -> 29.25 (its first token); its 128 B of KV move to replica 1 at 64 B a
    # ms, 29.25 -> 31.25; replica 1 admits it when it arrives in its queue and decodes its
    # two tokens (contexts 9, 10: 5.75 each) from 31.25 -> 42.75.
    tgt = target(chips=2, deployment=Deployment(tp=1, pp=1))
    res = simulate(turns((0, [1, 2], 3)), tgt, prefill_replicas=1, kv_transfer_bw_bytes_per_s=64e3,
                   kv_transfer_latency_s=0.0)
    r = res.requests
    assert r["ttft_s"] == ms([29.25])
    assert r["end_s"] == ms([42.75])
    assert r["tpot_s"] == ms([(42.75 - 29.25) / 2])
    assert list(r["replica"]) == [1] and list(r["transfer_bytes"]) == [128.0]
    assert res.summary["prefill_decode_transfer_bytes"] == 128.0
    # colocated, the same turn decodes at once where it prefilled
    same = simulate(turns((0, [1, 2], 3)), tgt).requests
    assert same["end_s"] == ms([29.25 + 11.5]) and list(same["transfer_bytes"]) == [0.0]
    # a one-token turn never moves; every replica cannot prefill
    one = simulate(turns((0, [1, 2], 1)), tgt, prefill_replicas=1).requests
    assert list(one["transfer_bytes"]) == [0.0] and one["end_s"] == ms([29.25])
    from kvtier.errors import ConfigError

    with pytest.raises(ConfigError, match="prefill_replicas"):
        simulate(turns((0, [1], 2)), tgt, prefill_replicas=2)
