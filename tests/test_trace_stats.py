"""Trace statistics on tiny hand-written traces with known answers, and against naive twins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.cli import main
from kvtier.traces import TraceBuilder, read_trace, trace_stats, write_trace
from kvtier.traces.stats import block_token_counts, reuse_distances, session_prefix_reuse


def build(rows, block_tokens=4):
    b = TraceBuilder()
    for k, (session, ids, inl) in enumerate(rows):
        b.add(timestamp_ms=k, session_id=session, input_length=inl, output_length=1, block_hashes=ids)
    return b.build(block_tokens=block_tokens)


def naive_stack_distances(ids):
    out, stack = [], []
    for x in ids:
        if x in stack:
            pos = stack.index(x)
            out.append(len(stack) - 1 - pos)
            stack.pop(pos)
        else:
            out.append(-1)
        stack.append(x)
    return out


def test_known_answers():
    # session 0: [a b c] then [a b c d]; session 1: [a x]; blocks of 4 tokens
    t = build([(0, [1, 2, 3], 12), (1, [1, 9], 6), (0, [1, 2, 3, 4], 16)])
    s = trace_stats(t)
    assert (s.requests, s.sessions, s.unique_blocks, s.block_accesses) == (3, 2, 5, 9)
    assert s.infinite_cache_block_hit_ratio == pytest.approx(4 / 9)
    # hits: request 1 block 1 (4 tokens), request 2 blocks 1,2,3 (12 tokens) over 34 input tokens
    assert s.token_hit_ratio == pytest.approx(16 / 34)
    assert block_token_counts(t).tolist() == [4, 4, 4, 4, 2, 4, 4, 4, 4]
    ratios, weighted = session_prefix_reuse(t)
    assert ratios == {0: pytest.approx(12 / 28), 1: 0.0}
    assert weighted == pytest.approx(12 / 34)
    assert s.session_prefix_reuse_median == pytest.approx(6 / 28)
    # accesses 1,2,3,1,9,1,2,3,4: distinct other blocks since the previous access
    assert reuse_distances(t).tolist() == [-1, -1, -1, 2, -1, 1, 3, 3, -1]
    assert s.input_tokens["max"] == 16 and s.input_tokens["p50"] == 12
    assert s.reuse_distance_blocks["max"] == 3


def test_chained_versus_per_block_ids(tmp_path):
    # Per-block content ids: request 2 repeats content 11 at a new position. Read as
    # Mooncake (ids already prefix ids) it would count as a hit; Bailian re-keys it to a miss.
    rows = [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 32, "output_length": 1,
             "type": "text", "turn": 1, "hash_ids": [10, 11]},
            {"chat_id": 2, "parent_chat_id": -1, "timestamp": 1, "input_length": 32, "output_length": 1,
             "type": "text", "turn": 1, "hash_ids": [12, 11]}]
    p = tmp_path / "b.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    per_block = trace_stats(read_trace(p, "bailian"))
    assert per_block.unique_blocks == 4 and per_block.infinite_cache_block_hit_ratio == 0.0
    mooncake_rows = [{"timestamp": r["timestamp"], "input_length": 32, "output_length": 1,
                      "hash_ids": r["hash_ids"]} for r in rows]
    q = tmp_path / "m.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in mooncake_rows))
    chained = trace_stats(read_trace(q, "mooncake", block_tokens=16))
    assert chained.unique_blocks == 3 and chained.infinite_cache_block_hit_ratio == pytest.approx(1 / 4)


def test_empty_trace():
    s = trace_stats(build([]))
    assert s.requests == 0 and s.block_accesses == 0 and s.token_hit_ratio == 0.0


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 2), st.lists(st.integers(0, 6), max_size=6)), max_size=10))
def test_against_naive(rows):
    t = build([(s, ids, 4 * len(ids)) for s, ids in rows])
    flat = [x for _, ids in rows for x in ids]
    assert reuse_distances(t).tolist() == naive_stack_distances(flat)
    s = trace_stats(t)
    seen = set()
    hits = 0
    for x in flat:
        hits += x in seen
        seen.add(x)
    assert s.unique_blocks == len(seen) and s.block_accesses == len(flat)
    assert s.infinite_cache_block_hit_ratio == pytest.approx(hits / len(flat) if flat else 0.0)


def test_cli_stats_json(tmp_path, capsys):
    t = build([(0, [1, 2, 3], 12), (1, [1, 9], 6), (0, [1, 2, 3, 4], 16)])
    write_trace(t, tmp_path / "t.kvtrace")
    assert main(["trace", "stats", str(tmp_path / "t.kvtrace"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unique_blocks"] == 5 and out["block_accesses"] == 9 and out["requests"] == 3
    assert out["reuse_distance_blocks"]["max"] == 3
    assert main(["trace", "stats", str(tmp_path / "t.kvtrace")]) == 0
    assert "infinite_cache_block_hit_ratio" in capsys.readouterr().out
    # malformed input: exit status 2 and the error on stderr
    (tmp_path / "bad.jsonl").write_text('{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": "x"}\n')
    assert main(["trace", "stats", str(tmp_path / "bad.jsonl")]) == 2
    assert "line 1: hash_ids" in capsys.readouterr().err


def test_densified_keeps_identity():
    t = build([(0, [2**63, 5, 7], 12), (1, [5], 4), (0, [2**63, 5, 8], 12)])
    d = t.densified()
    assert d.block_hashes.tolist() == [0, 1, 2, 1, 0, 1, 3]
    assert trace_stats(d)._replace() == trace_stats(t)
    assert np.array_equal(d.block_offsets, t.block_offsets)
