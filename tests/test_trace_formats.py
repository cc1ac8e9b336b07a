"""Trace readers and writers: round trips, public layouts, detection, malformed input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kvtier.errors import ConfigError, TraceFormatError, UnknownNameError
from kvtier.traces import (
    RELATION_JOIN,
    RELATION_SEQUENCE,
    RELATION_SPAWN,
    TRIGGER_DISPATCH,
    Trace,
    TraceBuilder,
    detect_format,
    read_trace,
    write_trace,
)


def small_trace(**meta) -> Trace:
    b = TraceBuilder()
    b.add(timestamp_ms=0, session_id=0, input_length=130, output_length=7, block_hashes=[1, 2, 3])
    b.add(timestamp_ms=5.5, session_id=1, input_length=64, output_length=3, block_hashes=[1, 9], tool_wait_ms=0)
    b.add(timestamp_ms=20, session_id=0, input_length=200, output_length=11, block_hashes=[1, 2, 3, 4],
          tool_wait_ms=12.25, deps=[(0, 12.25, 0, RELATION_SEQUENCE)])
    b.add(timestamp_ms=21, session_id=2, parent_session_id=0, input_length=210, output_length=1,
          block_hashes=[1, 2, 3, 4, 2**64 - 1], deps=[(2, 0.0, 0, RELATION_SPAWN)])
    b.add(timestamp_ms=40, session_id=0, input_length=260, output_length=9, block_hashes=[1, 2, 3, 4, 5],
          tool_wait_ms=3, deps=[(2, 3.0, 0, RELATION_SEQUENCE), (3, 3.0, 0, RELATION_JOIN)])
    return b.build(block_tokens=64, meta={"generator": "test", "seed": 7, "config": {"x": [1, 2]}, **meta})


@st.composite
def traces(draw):
    n = draw(st.integers(0, 8))
    bt = draw(st.sampled_from([1, 16, 64, 512]))
    b = TraceBuilder()
    t = 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 1234.125]))
        k = draw(st.integers(0, 6))
        ids = draw(st.lists(st.integers(0, 2**64 - 1), min_size=k, max_size=k))
        deps = []
        if i and draw(st.booleans()):
            src = draw(st.integers(0, i - 1))
            deps.append((src, draw(st.sampled_from([0.0, 2.5, 100.0])), draw(st.integers(0, 1)),
                         draw(st.integers(0, 2))))
        b.add(timestamp_ms=t, session_id=draw(st.integers(0, 3)), parent_session_id=draw(st.integers(-1, 3)),
              input_length=draw(st.integers(0, 10_000)), output_length=draw(st.integers(0, 500)),
              tool_wait_ms=draw(st.sampled_from([0.0, 1.5, 3000.0])), block_hashes=ids, deps=deps)
    return b.build(block_tokens=bt, meta={"seed": draw(st.integers(0, 5))})


@pytest.mark.parametrize("fmt", ["kvtier", "kvtier-bin", "dynamo-v2"])
def test_exact_round_trip(tmp_path, fmt):
    t = small_trace()
    path = tmp_path / "t"
    write_trace(t, path, fmt)
    u = read_trace(path)
    assert detect_format(path) == fmt
    assert u.equals(t, meta=fmt != "dynamo-v2")
    if fmt != "dynamo-v2":
        assert u.meta == t.meta


@settings(max_examples=25)
@given(traces(), st.sampled_from(["kvtier", "kvtier-bin", "dynamo-v2"]))
def test_round_trip_property(tmp_path_factory, t, fmt):
    path = tmp_path_factory.mktemp("rt") / "t"
    if fmt == "dynamo-v2" and t.num_requests and t.input_lengths.min() == 0:
        with pytest.raises(ConfigError, match="input_length 0"):  # NVIDIA's reader refuses such a request
            write_trace(t, path, fmt)
        return
    write_trace(t, path, fmt)
    assert read_trace(path, fmt).equals(t, meta=fmt != "dynamo-v2")


def test_uncompressed_binary_and_compression(tmp_path):
    t = small_trace()
    write_trace(t, tmp_path / "a", "kvtier-bin")
    from kvtier.traces.binary import write_binary

    write_binary(t, tmp_path / "b", compress=False)
    assert read_trace(tmp_path / "b").equals(t)


def test_mooncake_layout_and_lossy_writers(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]}\n'
                 '{"timestamp": 10535, "input_length": 672, "output_length": 26, "hash_ids": [46, 47]}\n'
                 '\n{"timestamp": 27482, "input_length": 655, "output_length": 52, "hash_ids": [46, 48]}\n')
    t = read_trace(p)
    assert t.meta["format"] == "mooncake" and t.block_tokens == 512
    assert t.block_offsets.tolist() == [0, 2, 4, 6]
    assert t.block_hashes.tolist() == [46, 47, 46, 47, 46, 48]
    assert t.timestamps_ms.tolist() == [0, 10535, 27482]
    assert t.session_ids.tolist() == [0, 1, 2] and not t.has_dependencies
    # mooncake and dynamo v1 keep what they carry
    for fmt in ("mooncake", "dynamo"):
        write_trace(t, tmp_path / fmt, fmt)
        assert read_trace(tmp_path / fmt).equals(t, meta=False)
    write_trace(t, tmp_path / "ids", "ids")
    u = read_trace(tmp_path / "ids", block_tokens=512)
    assert u.block_hashes.tolist() == t.block_hashes.tolist() and u.block_offsets.tolist() == [0, 2, 4, 6]


def test_mooncake_sorted_on_load(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": [2]}\n'
                 '{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1]}\n')
    assert read_trace(p, "mooncake").block_hashes.tolist() == [1, 2]


def test_ids_format(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("# comment\n1 2 3\n1,2, 4\n\n5\n")
    t = read_trace(p)
    assert t.meta["format"] == "ids" and t.block_tokens == 16
    assert t.block_offsets.tolist() == [0, 3, 6, 7]
    assert t.block_hashes.tolist() == [1, 2, 3, 1, 2, 4, 5]
    assert t.input_lengths.tolist() == [48, 48, 16]
    q = tmp_path / "one.txt"
    q.write_text("7\n8\n7\n")
    u = read_trace(q, "ids", block_tokens=4)
    assert u.blocks_per_request().tolist() == [1, 1, 1] and u.input_lengths.tolist() == [4, 4, 4]


def test_bailian_rekeyed_to_prefix_identity(tmp_path):
    rows = [
        {"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 48, "output_length": 5,
         "type": "text", "turn": 1, "hash_ids": [10, 11, 12]},
        {"chat_id": 2, "parent_chat_id": -1, "timestamp": 1.0, "input_length": 32, "output_length": 5,
         "type": "text", "turn": 1, "hash_ids": [99, 11]},
        {"chat_id": 3, "parent_chat_id": 1, "timestamp": 2.0, "input_length": 64, "output_length": 5,
         "type": "text", "turn": 2, "hash_ids": [10, 11, 12, 13]},
    ]
    p = tmp_path / "b.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_format(p) == "bailian"
    t = read_trace(p)
    assert t.block_tokens == 16 and t.timestamps_ms.tolist() == [500, 1000, 2000]
    assert t.session_ids.tolist() == [0, 1, 0]
    a, b, c = t.blocks(0), t.blocks(1), t.blocks(2)
    assert c[:3].tolist() == a.tolist()  # shared prefix, shared keys
    assert b[1] != a[1]  # same content id 11, different prefix: different key
    assert t.num_unique_blocks == 6


def _session(tmp_path, name, obj):
    (tmp_path / name).write_text(json.dumps(obj, indent=2))


def test_kv_cache_tester_folder_with_subagents(tmp_path):
    _session(tmp_path, "a.json", {"id": "a", "block_size": 64, "requests": [
        {"t": 0.0, "type": "s", "in": 130, "out": 10, "hash_ids": [1, 2]},
        {"t": 10.0, "type": "s", "in": 200, "out": 10, "hash_ids": [1, 2, 3], "think_time": 2.0},
        {"type": "subagent", "requests": [
            {"t": 12.0, "type": "s", "in": 140, "out": 5, "hash_ids": [1, 2, 7]},
            {"t": 13.0, "type": "s", "in": 150, "out": 5, "hash_ids": [1, 2, 7]}]},
        {"t": 20.0, "type": "s", "in": 300, "out": 10, "hash_ids": [1, 2, 3, 4]},
    ]})
    _session(tmp_path, "b.json", {"id": "b", "block_size": 64, "requests": [
        {"t": 1.0, "type": "n", "in": 64, "out": 1, "hash_ids": [1]}]})
    assert detect_format(tmp_path) == "kv-cache-tester"
    assert detect_format(tmp_path / "a.json") == "kv-cache-tester"
    t = read_trace(tmp_path)
    assert t.meta["session_names"] == ["a", "a/sa1", "b"]
    assert t.timestamps_ms.tolist() == [0, 1000, 10000, 12000, 13000, 20000]
    assert t.session_ids.tolist() == [0, 2, 0, 1, 1, 0]
    assert t.parent_session_ids.tolist() == [-1, -1, -1, 0, 0, -1]
    # files are namespaced: b's block 1 is not a's block 1; the sub-agent forks a's prefix
    assert t.blocks(1)[0] != t.blocks(0)[0]
    assert t.blocks(3)[:2].tolist() == t.blocks(2)[:2].tolist()
    last = t.request(5)
    assert sorted((d[0], d[3]) for d in last.deps) == [(2, RELATION_SEQUENCE), (4, RELATION_JOIN)]
    assert t.request(3).deps == [(2, 0.0, 0, RELATION_SPAWN)]
    assert t.request(2).tool_wait_ms == 2000.0
    one = read_trace(tmp_path / "b.json")
    assert one.num_requests == 1 and one.block_tokens == 64


def test_dynamo_v1_rows(tmp_path):
    rows = [
        {"request_id": "r0", "session_id": "s", "input_length": 1024, "output_length": 10,
         "hash_ids": [1, 2], "timestamp": 100},
        {"request_id": "r1", "session_id": "s", "input_length": 1536, "output_length": 10,
         "hash_ids": [1, 2, 3], "wait_for": ["r0"], "delay": 50},
        {"request_id": "r2", "session_id": "sub", "input_length": 1536, "output_length": 10,
         "hash_ids": [1, 2, 3], "wait_for": ["r1"]},
        {"request_id": "r3", "session_id": "s", "input_length": 2048, "output_length": 10,
         "hash_ids": [1, 2, 3, 4], "wait_for": ["r1", "r2"], "delay": 7},
    ]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_format(p) == "dynamo"
    t = read_trace(p)
    assert t.block_tokens == 512 and t.session_ids.tolist() == [0, 0, 1, 0]
    assert t.timestamps_ms.tolist() == [100, 150, 150, 157]  # lower bounds: zero service time
    assert t.parent_session_ids.tolist() == [-1, -1, 0, -1]
    assert t.request(2).deps == [(1, 0.0, 0, RELATION_SPAWN)]
    assert t.request(3).deps == [(1, 7.0, 0, RELATION_SEQUENCE), (2, 7.0, 0, RELATION_JOIN)]
    assert t.tool_wait_ms.tolist() == [0, 50, 0, 7]


def test_dynamo_v1_refuses_what_it_cannot_hold(tmp_path):
    b = TraceBuilder()
    b.add(timestamp_ms=0, session_id=0, input_length=1, output_length=1, block_hashes=[1])
    b.add(timestamp_ms=1, session_id=0, input_length=1, output_length=1, block_hashes=[1],
          deps=[(0, 1.0, TRIGGER_DISPATCH, 0)])
    with pytest.raises(ConfigError, match="dynamo-v2"):
        write_trace(b.build(block_tokens=4), tmp_path / "x", "dynamo")


def test_dynamo_v2_public_rows(tmp_path):
    lines = [{"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 16},
             {"request_id": "a", "play_id": "p1", "input_length": 32, "output_length": 4, "hash_ids": [5, 6],
              "not_before_ms": 10},
             {"request_id": "b", "play_id": "p1", "input_length": 48, "output_length": 4, "hash_ids": [5, 6, 7],
              "dependencies": [{"request_id": "a", "trigger": "dispatch", "delay_ms": 4, "relation": "sequence"}]}]
    p = tmp_path / "v2.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in lines))
    t = read_trace(p)
    assert t.block_tokens == 16 and t.timestamps_ms.tolist() == [10, 14]
    assert t.request(1).deps == [(0, 4.0, TRIGGER_DISPATCH, RELATION_SEQUENCE)]


def test_unknown_format_and_block_tokens_mismatch(tmp_path):
    write_trace(small_trace(), tmp_path / "t.jsonl", "kvtier")
    with pytest.raises(UnknownNameError):
        read_trace(tmp_path / "t.jsonl", "nope")
    with pytest.raises(UnknownNameError):
        write_trace(small_trace(), tmp_path / "x", "nope")
    with pytest.raises(TraceFormatError, match="line 1: block_tokens"):
        read_trace(tmp_path / "t.jsonl", block_tokens=16)
    with pytest.raises(TraceFormatError, match="no such file"):
        read_trace(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------- malformed input
GOOD = {"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1, 2]}


@pytest.mark.parametrize("line, field", [
    ('{"timestamp": 0, "input_length": 10, "output_length": 2}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": ["abc"]}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [true]}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [-1]}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [18446744073709551616]}', "hash_ids"),
    ('{"timestamp": "x", "input_length": 10, "output_length": 2, "hash_ids": []}', "timestamp"),
    ('{"timestamp": 0, "input_length": -3, "output_length": 2, "hash_ids": []}', "input_length"),
    ('{"timestamp": 0, "input_length": 1.5, "output_length": 2, "hash_ids": []}', "input_length"),
    ('{"timestamp": NaN, "input_length": 1, "output_length": 2, "hash_ids": []}', "timestamp"),
    ('[1, 2]', "JSON object"),
    ('{"timestamp": 0, "input_length": 10', "JSON"),
])
def test_malformed_mooncake_line_names_line_and_field(tmp_path, line, field):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    with pytest.raises(TraceFormatError) as e:
        read_trace(p, "mooncake")
    assert f"{p} line 3" in str(e.value) and field in str(e.value)


def test_truncated_kvtier_files(tmp_path):
    t = small_trace()
    write_trace(t, tmp_path / "t.jsonl", "kvtier")
    text = (tmp_path / "t.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(TraceFormatError, match="num_requests"):
        read_trace(tmp_path / "cut.jsonl")
    write_trace(t, tmp_path / "t.bin", "kvtier-bin")
    data = (tmp_path / "t.bin").read_bytes()
    for cut in (4, 20, len(data) - 3):
        (tmp_path / "c.bin").write_bytes(data[:cut])
        with pytest.raises(TraceFormatError):
            read_trace(tmp_path / "c.bin", "kvtier-bin")
    flipped = bytearray(data)
    flipped[-2] ^= 0xFF
    (tmp_path / "f.bin").write_bytes(bytes(flipped))
    with pytest.raises(TraceFormatError, match="crc32c"):
        read_trace(tmp_path / "f.bin")


def test_dependency_on_later_row_is_an_error(tmp_path):
    rows = [{"request_id": "a", "session_id": 0, "input_length": 1, "output_length": 1, "hash_ids": [],
             "wait_for": ["b"]}]
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(TraceFormatError, match="line 1: wait_for\\[0\\]"):
        read_trace(p, "dynamo")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**65) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
_keys = st.sampled_from(["timestamp", "input_length", "output_length", "hash_ids", "session_id", "deps",
                         "chat_id", "parent_chat_id", "request_id", "wait_for", "delay", "dependencies",
                         "parent_session_id", "tool_wait_ms"])


@settings(max_examples=80)
@given(fmt=st.sampled_from(["mooncake", "kvtier", "bailian", "dynamo", "dynamo-v2", "ids"]),
       row=st.dictionaries(_keys, _json_values, max_size=6) | st.text(max_size=30))
@example(fmt="mooncake", row={"timestamp": 0, "input_length": 1, "output_length": 0, "hash_ids": [1],
                              "deps": [{"request": 0}]})
def test_fuzzed_lines_raise_only_trace_format_error_naming_the_line(tmp_path_factory, fmt, row):
    p = tmp_path_factory.mktemp("fz") / "f.txt"
    good = "1 2\n" if fmt == "ids" else json.dumps(
        {**GOOD, "chat_id": 0, "parent_chat_id": -1, "request_id": "r", "session_id": 0}) + "\n"
    if fmt in ("kvtier", "dynamo-v2"):  # formats with a header: the fuzzed row is line 2
        good = json.dumps({"format": "kvtier-trace", "version": 1, "block_tokens": 4, "num_requests": 1}
                          if fmt == "kvtier" else {"schema": "dynamo.agentic_mooncake", "version": 2,
                                                   "block_size": 4}) + "\n"
    bad = row if isinstance(row, str) else json.dumps(row)
    bad = bad.replace("\n", " ").replace("\r", " ")  # one line (text mode also splits on \r)
    if not bad.strip():
        bad = "?"  # blank lines are skipped by design
    p.write_text(good + bad + "\n")
    try:
        t = read_trace(p, fmt)
    except TraceFormatError as e:
        assert f"{p} line 2" in str(e)
    else:
        assert isinstance(t, Trace) and t.num_requests in (1, 2)


@pytest.mark.parametrize("fmt, rows", [
    ("kvtier", [{"format": "kvtier-trace", "version": 1, "block_tokens": 4, "num_requests": 2},
                {**GOOD, "timestamp": 5}, {**GOOD, "timestamp": 4}]),
    ("dynamo", [{"request_id": 0, "session_id": 0, **GOOD},
                {"request_id": 1, "session_id": 0, **GOOD, "wait_for": [0], "kvtier_timestamp_ms": -1}]),
])
def test_time_order_errors_name_the_line(tmp_path, fmt, rows):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TraceFormatError, match=f"line {len(rows)}: (timestamp|kvtier_timestamp_ms)"):
        read_trace(p, fmt)


@settings(max_examples=40)
@given(data=st.binary(max_size=200))
def test_fuzzed_binary_raises_only_trace_format_error(tmp_path_factory, data):
    from kvtier.traces.binary import MAGIC

    p = tmp_path_factory.mktemp("fb") / "f.bin"
    p.write_bytes(MAGIC + data)
    with pytest.raises(TraceFormatError):
        read_trace(p)


def test_committed_traces_read_and_stay_small():
    root = os.path.join(os.path.dirname(__file__), "..", "traces")
    files = [f for f in sorted(os.listdir(root))
             if os.path.isfile(os.path.join(root, f)) and not f.endswith((".md", ".json"))]
    assert len(files) >= 4, "traces/ holds sample traces"
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    assert total <= 5 * 2**20
    for f in files:
        t = read_trace(os.path.join(root, f))
        assert t.num_requests > 0 and np.all(np.diff(t.timestamps_ms) >= 0)


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:  # splitmix64's finaliser on Python ints
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def naive_chain(ids, root):
    """Slow reference of ``chain_rekey``: key[j] = mix(mix(key[j-1] ^ golden) ^ (id[j] + golden))."""
    out, h = [], root
    for x in ids:
        h = _mix64(_mix64(h ^ _GOLDEN) ^ ((x + _GOLDEN) & _MASK))
        out.append(h)
    return out


@settings(max_examples=30)
@given(st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=5), max_size=4), st.integers(0, 2**64 - 1))
def test_chain_rekey_matches_naive(rows, root):
    from kvtier._kernels.traces import chain_rekey

    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    flat = np.array([x for r in rows for x in r], dtype=np.uint64)
    got = chain_rekey(offsets, flat, np.full(len(rows), root, dtype=np.uint64)).tolist()
    assert got == [h for r in rows for h in naive_chain(r, root)]


_request_values = st.fixed_dictionaries(
    {}, optional={"t": _json_values, "in": _json_values, "out": _json_values, "hash_ids": _json_values,
                  "think_time": _json_values, "type": st.sampled_from(["s", "n", "subagent"]),
                  "requests": st.lists(st.dictionaries(st.sampled_from(["t", "in", "out", "hash_ids"]), _json_values,
                                                       max_size=4), max_size=2)})


@settings(max_examples=60)
@given(st.fixed_dictionaries({"requests": st.lists(_request_values, max_size=3)},
                             optional={"block_size": _json_values, "id": _json_values}))
@example({"requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}, {"t": 1, "in": "x", "out": 1, "hash_ids": []}]})
def test_fuzzed_session_files_raise_only_trace_format_error(tmp_path_factory, session):
    p = tmp_path_factory.mktemp("kt") / "s.json"
    p.write_text(json.dumps(session))
    try:
        t = read_trace(p, "kv-cache-tester")
    except TraceFormatError as e:
        assert str(p) in str(e) and ("requests" in str(e) or "block_size" in str(e))
    else:
        assert isinstance(t, Trace)


@settings(max_examples=40)
@given(traces())
def test_prefix_delta_round_trip(t):
    from kvtier.traces.binary import _delta_decode, _delta_encode

    data = _delta_encode(t)
    back = np.frombuffer(_delta_decode("x", data, t.block_offsets, t.num_block_accesses), "<u8")
    assert back.tolist() == t.block_hashes.tolist()


def test_agent_trace_uses_prefix_delta_and_is_small(tmp_path):
    from kvtier.traces import generate_trace

    t = generate_trace(workload="coding-agent-small", num_agents=2, seed=0)
    write_trace(t, tmp_path / "t.kvtrace")
    header = (tmp_path / "t.kvtrace").read_bytes()[16:4096]
    assert b'"prefix-delta+lz4"' in header
    assert (tmp_path / "t.kvtrace").stat().st_size < t.num_block_accesses  # under 1 byte per access
    assert read_trace(tmp_path / "t.kvtrace").equals(t)


@settings(max_examples=60)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=5), st.data())
def test_crafted_prefix_delta_payloads_raise_trace_format_error(counts, data):
    from kvtier.traces.binary import _delta_decode

    n = len(counts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    refs = np.array(data.draw(st.lists(st.integers(-2, n), min_size=n, max_size=n)), dtype="<i8")
    shared = np.array(data.draw(st.lists(st.integers(-1, 5), min_size=n, max_size=n)), dtype="<i8")
    m = data.draw(st.integers(0, 12))
    payload = refs.tobytes() + shared.tobytes() + np.arange(m, dtype="<u8").tobytes()
    try:
        out = np.frombuffer(_delta_decode("f", payload, offsets, int(offsets[-1])), "<u8")
    except TraceFormatError as e:
        assert "prefix-delta" in str(e)
    else:
        assert out.shape[0] == offsets[-1]
