"""Traces as people have them: named sessions, compressed files and folders, the agentic
Mooncake export a peer reads, detection line numbers, and reading progress."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import kvtier.traces.io as trace_io
import kvtier.traces.model as trace_model
from kvtier.errors import ConfigError, TraceFormatError
from kvtier.replay import replay
from kvtier.traces import (
    RELATION_SPAWN,
    Trace,
    TraceBuilder,
    detect_format,
    generate_trace,
    read_trace,
    trace_stats,
    write_trace,
)
from kvtier.traces.binary import read_binary
from kvtier.traces.kvcache_tester import read_kvcache_tester, session_files
from kvtier.traces.progress import ReadProgress
from kvtier.traces.sessions import SESSION_NAMES, session_name
from kvtier.traces.stats import block_token_counts, covered_tokens

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "traces" / "golden" / "mooncake-tiny.jsonl"
DEV_TRACES = ROOT.parent / "shared" / "data" / "dev-traces" / "claude-code"
needs_dev_traces = pytest.mark.skipif(not DEV_TRACES.is_dir(), reason="the shared dev traces are not checked out")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _gzip(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes()))
    return dst


def _same_replay(a: Trace, b: Trace, policy: str = "lru", capacity_blocks: int = 8) -> None:
    ra = replay(a.block_offsets, a.block_hashes, policy=policy, capacity_blocks=capacity_blocks)
    rb = replay(b.block_offsets, b.block_hashes, policy=policy, capacity_blocks=capacity_blocks)
    assert (ra.block_hits, ra.prefix_hits, ra.unique_blocks) == (rb.block_hits, rb.prefix_hits, rb.unique_blocks)
    assert [t.evictions for t in ra.tiers] == [t.evictions for t in rb.tiers]


# ------------------------------------------------------------------------------ named sessions
def test_string_session_ids_replay_like_their_integer_form(tmp_path):
    rows = _rows(GOLDEN)
    names = [f"trace_{k % 5:04d}" for k in range(len(rows))]
    plain = _write_rows(tmp_path / "int.jsonl", [{**r, "session_id": k % 5} for k, r in enumerate(rows)])
    named = _write_rows(tmp_path / "named.jsonl", [{**r, "session_id": n} for r, n in zip(rows, names)])
    a, b = read_trace(plain), read_trace(named)
    assert detect_format(named) == "mooncake"
    assert b.equals(a, meta=False)  # the names were met in the order 0..4
    assert b.meta[SESSION_NAMES] == [f"trace_{k:04d}" for k in range(5)] and SESSION_NAMES not in a.meta
    assert [session_name(b, s) for s in b.session_ids.tolist()] == [names[k] for k in range(len(rows))]
    _same_replay(a, b)
    assert trace_stats(a) == trace_stats(b)


def test_session_names_are_dense_in_order_of_first_appearance(tmp_path):
    base = {"input_length": 600, "output_length": 1, "hash_ids": [1, 2]}
    p = _write_rows(tmp_path / "m.jsonl", [
        {**base, "timestamp": 0, "session_id": "zeta"},
        {**base, "timestamp": 1, "session_id": 7},           # an integer among names is a name too
        {**base, "timestamp": 2},                            # no session: a session of its own
        {**base, "timestamp": 3, "session_id": "zeta", "parent_session_id": "alpha"},
        {**base, "timestamp": 4, "session_id": "7"},         # the string "7" is not the integer 7
        {**base, "timestamp": 5, "session_id": 7.0},         # 7.0 is 7
        {**base, "timestamp": 6, "session_id": True, "parent_session_id": -1},
        {**base, "timestamp": 7, "session_id": 2.5, "parent_session_id": 7},
    ])
    t = read_trace(p)
    assert t.session_ids.tolist() == [0, 1, 2, 0, 4, 1, 5, 6]
    assert t.meta[SESSION_NAMES] == ["zeta", 7, None, "alpha", "7", True, 2.5]
    assert t.parent_session_ids.tolist() == [-1, -1, -1, 3, -1, -1, -1, 1]
    # the Mooncake writer gives the names back; an anonymous session stays a row of its own
    write_trace(t, tmp_path / "back.jsonl", "mooncake")
    back = _rows(tmp_path / "back.jsonl")
    assert [r.get("session_id") for r in back] == ["zeta", 7, None, "zeta", "7", 7, True, 2.5]
    u = read_trace(tmp_path / "back.jsonl")
    assert [session_name(u, s) for s in u.session_ids.tolist()] == [
        session_name(t, s) if session_name(t, s) != s else session_name(u, u.session_ids[k])
        for k, s in enumerate(t.session_ids.tolist())]


def test_integer_session_ids_are_kept(tmp_path):
    base = {"input_length": 600, "output_length": 1, "hash_ids": [1]}
    p = _write_rows(tmp_path / "m.jsonl", [{**base, "timestamp": 0, "session_id": 40},
                                           {**base, "timestamp": 1},
                                           {**base, "timestamp": 2, "session_id": 40, "parent_session_id": 3}])
    t = read_trace(p)
    assert t.session_ids.tolist() == [40, 1, 40] and t.parent_session_ids.tolist() == [-1, -1, 3]
    assert SESSION_NAMES not in t.meta


@pytest.mark.parametrize("fmt", ["kvtier", "kvtier-bin", "dynamo-v2"])
def test_session_names_survive_round_trips(tmp_path, fmt):
    rows = [{**r, "session_id": f"s{k % 3}"} for k, r in enumerate(_rows(GOLDEN))]
    t = read_trace(_write_rows(tmp_path / "named.jsonl", rows))
    write_trace(t, tmp_path / "out", fmt)
    u = read_trace(tmp_path / "out")
    assert u.equals(t, meta=False) and u.meta[SESSION_NAMES] == ["s0", "s1", "s2"]


@pytest.mark.parametrize("value", [[1], {"a": 1}])
def test_a_session_id_that_is_not_a_scalar_names_line_and_field(tmp_path, value):
    good = {"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]}
    p = _write_rows(tmp_path / "m.jsonl", [good, {**good, "session_id": value}])
    with pytest.raises(TraceFormatError, match=r"m\.jsonl line 2: session_id: got .*expected a session name"):
        read_trace(p)


def test_dynamo_v1_string_sessions_keep_their_names(tmp_path):
    rows = [{"request_id": "r0", "session_id": "main", "input_length": 1024, "output_length": 1, "hash_ids": [1, 2],
             "timestamp": 0},
            {"request_id": "r1", "session_id": "helper", "input_length": 1024, "output_length": 1,
             "hash_ids": [1, 3], "wait_for": ["r0"]}]
    t = read_trace(_write_rows(tmp_path / "d.jsonl", rows))
    assert t.session_ids.tolist() == [0, 1] and t.meta[SESSION_NAMES] == ["main", "helper"]
    assert t.parent_session_ids.tolist() == [-1, 0] and t.request(1).deps[0].relation == RELATION_SPAWN


# ------------------------------------------------------------------------------ compressed input
def _plain_and_gzipped(tmp_path: Path, fmt: str, trace: Trace) -> tuple[Path, Path]:
    plain = tmp_path / f"t.{fmt}"
    write_trace(trace, plain, fmt)
    return plain, _gzip(plain, tmp_path / f"t.{fmt}.gz")


@pytest.mark.parametrize("fmt", ["kvtier", "kvtier-bin", "mooncake", "dynamo", "dynamo-v2", "ids"])
def test_every_format_reads_gzipped(tmp_path, fmt):
    t = read_trace(GOLDEN)
    plain, packed = _plain_and_gzipped(tmp_path, fmt, t)
    assert detect_format(packed) == detect_format(plain)
    bt = 512 if fmt == "ids" else None
    assert read_trace(packed, block_tokens=bt).equals(read_trace(plain, block_tokens=bt))


def test_bailian_reads_gzipped(tmp_path):
    rows = [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 48, "output_length": 5,
             "type": "text", "turn": 1, "hash_ids": [10, 11, 12]},
            {"chat_id": 2, "parent_chat_id": 1, "timestamp": 2.0, "input_length": 64, "output_length": 5,
             "type": "text", "turn": 2, "hash_ids": [10, 11, 12, 13]}]
    plain = _write_rows(tmp_path / "b.jsonl", rows)
    assert read_trace(_gzip(plain, tmp_path / "b.jsonl.gz")).equals(read_trace(plain))


@needs_dev_traces
def test_real_gzipped_kv_cache_tester_folder_reads_and_replays_like_its_plain_form(tmp_path):
    files = session_files(DEV_TRACES)
    assert len(files) >= 9 and all(f.endswith(".json.gz") for f in files)
    chosen = files[:9]  # small enough for the suite, real all the same
    packed, plain = tmp_path / "gz", tmp_path / "plain"
    packed.mkdir()
    plain.mkdir()
    for f in chosen:
        shutil.copy(f, packed)
        (plain / os.path.basename(f)[: -len(".gz")]).write_bytes(gzip.open(f).read())
    assert detect_format(packed) == "kv-cache-tester" and detect_format(chosen[0]) == "kv-cache-tester"
    a, b = read_trace(packed), read_trace(plain)
    assert a.equals(b) and a.num_requests > 100
    assert a.meta[SESSION_NAMES][0] == "trace_0012"
    _same_replay(a, b, capacity_blocks=4096)
    one = read_trace(chosen[0])
    assert one.equals(read_trace(plain / "trace_0012.json"))


def test_folder_of_gzipped_and_plain_sessions(tmp_path):
    doc = {"id": "a", "block_size": 16, "requests": [{"t": 0, "in": 40, "out": 1, "hash_ids": [1, 2]},
                                                     {"t": 1, "in": 50, "out": 1, "hash_ids": [1, 2, 3]}]}
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    (tmp_path / "b.json").write_text(json.dumps({**doc, "id": "b"}))
    (tmp_path / "notes.txt").write_text("not a session")
    t = read_trace(tmp_path)
    assert t.meta[SESSION_NAMES] == ["a", "b"] and t.num_requests == 4


def test_empty_folder_names_the_patterns(tmp_path):
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(TraceFormatError, match=r"no session files \(\*\.json, \*\.json\.gz"):
        read_trace(tmp_path)


def test_damaged_gzip_names_the_file(tmp_path):
    plain, packed = _plain_and_gzipped(tmp_path, "kvtier", read_trace(GOLDEN))
    data = packed.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match=r"cut\.jsonl\.gz line \d+: cannot read"):
        read_trace(cut, "kvtier")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(flipped))
    with pytest.raises(TraceFormatError, match=r"bad\.jsonl\.gz"):
        read_trace(tmp_path / "bad.jsonl.gz", "kvtier")
    session = tmp_path / "s.json.gz"
    session.write_bytes(gzip.compress(b'{"requests": []}')[:-6])
    with pytest.raises(TraceFormatError, match=r"s\.json\.gz: cannot read"):
        read_trace(session, "kv-cache-tester")


def test_zstd(tmp_path):
    plain = tmp_path / "t.jsonl"
    write_trace(read_trace(GOLDEN), plain, "kvtier")
    packed = tmp_path / "t.jsonl.zst"
    try:
        import zstandard
    except ImportError:  # kvtier does not install it: the error says what to do
        packed.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(16))
        with pytest.raises(TraceFormatError, match=r"t\.jsonl\.zst: zstd-compressed, and the zstandard package"):
            read_trace(packed, "kvtier")
        return
    packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    assert read_trace(packed).equals(read_trace(plain))


# ------------------------------------------------------------------------------ detection
@pytest.mark.parametrize("text, line", [
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1, 2]\n', 1),
    ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1, 2]', 1),
    ('\n\n{"timestamp": 0, "input_length": 10\n', 3),
    ('{"timestamp": 0, "input_le\n{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": []}\n', 1),
])
def test_auto_detection_reports_broken_json_at_the_files_own_line(tmp_path, text, line):
    for name, data in (("f.jsonl", text.encode()), ("f.jsonl.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TraceFormatError, match=rf"{name} line {line}: not valid JSON"):
            read_trace(tmp_path / name)


def test_a_session_document_cut_short_is_reported_at_its_last_line(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"id": "a",\n "requests": [1,\n')
    with pytest.raises(TraceFormatError, match=r"s\.json line 2: not valid JSON \(the document ends early"):
        read_trace(p)


def test_detection_tells_a_long_one_line_session_by_its_keys(tmp_path, monkeypatch):
    doc = {"id": "x", "block_size": 4, "requests": [{"t": 0, "in": 8, "out": 1, "hash_ids": list(range(2))}] * 50}
    p = tmp_path / "long.json"
    p.write_text(json.dumps(doc))
    monkeypatch.setattr(trace_io, "SNIFF_CHARS", 64)  # the line is longer than detection reads
    assert detect_format(p) == "kv-cache-tester"
    assert read_trace(p).num_requests == 50


# ------------------------------------------------------------------------------ agentic Mooncake v2 for the peer
def check_agentic_mooncake_v2(path: Path) -> list[dict]:
    """The rules NVIDIA's agentic Mooncake reader (aisimulate) holds an export to; returns the rows."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header["schema"] == "dynamo.agentic_mooncake" and header["version"] == 2
    assert isinstance(header["block_size"], int) and header["block_size"] >= 1
    assert header["hash_id_scope"] == "local"
    assert isinstance(header["source"], dict) and isinstance(header["source"]["format"], str)
    assert isinstance(header["source"]["digest"], str) and len(header["source"]["digest"]) == 64
    play_of: dict[str, str] = {}
    for row in rows:
        for key in ("request_id", "session_id", "play_id", "model"):
            assert isinstance(row[key], str) and row[key], (key, row)
        assert row["request_id"] not in play_of, "request ids are unique"
        assert isinstance(row["not_before_ms"], (int, float)) and math.isfinite(row["not_before_ms"])
        assert isinstance(row["input_length"], int) and isinstance(row["output_length"], int)
        assert row["input_length"] >= 1, "the peer refuses a request without input"
        assert len(row["hash_ids"]) == -(-row["input_length"] // header["block_size"]), "one id per started block"
        assert all(isinstance(h, int) and 0 <= h < 2**64 for h in row["hash_ids"])
        for dep in row["dependencies"]:
            assert isinstance(dep["request_id"], str) and dep["request_id"] in play_of, "an earlier request"
            assert play_of[dep["request_id"]] == row["play_id"], "no dependency crosses plays"
            assert dep["trigger"] in ("completion", "dispatch") and dep["relation"] in ("sequence", "spawn", "join")
        play_of[row["request_id"]] = row["play_id"]
    sessions_in_play: dict[str, str] = {}
    for row in rows:  # a session belongs to one play
        assert sessions_in_play.setdefault(row["session_id"], row["play_id"]) == row["play_id"]
    return rows


def _partial_blocks_trace() -> Trace:
    """A root, a sub-agent spawned from it and joined back, and an unrelated session; some
    requests end inside a block, one has more ids than started blocks."""
    b = TraceBuilder()
    b.add(timestamp_ms=0, session_id=3, input_length=70, output_length=2, block_hashes=[11, 12])  # 2 of 3 blocks
    b.add(timestamp_ms=5, session_id=4, parent_session_id=3, input_length=64, output_length=2,
          block_hashes=[11, 12], deps=[(0, 0.0, 0, RELATION_SPAWN)])
    b.add(timestamp_ms=6, session_id=9, input_length=20, output_length=1, block_hashes=[40, 41])  # 2 ids, 1 block
    b.add(timestamp_ms=9, session_id=3, input_length=100, output_length=2, block_hashes=[11, 12, 13],
          tool_wait_ms=2, deps=[(0, 2.0, 0, 0), (1, 0.0, 0, 2)])
    b.add(timestamp_ms=12, session_id=9, input_length=1, output_length=0, block_hashes=[])  # no ids, 1 block
    return b.build(block_tokens=32, meta={"model": "llama-3.1-8b", SESSION_NAMES: [None, None, None, "root"]})


def test_dynamo_v2_export_follows_the_peers_schema_and_round_trips(tmp_path):
    t = _partial_blocks_trace()
    p = tmp_path / "a.jsonl"
    write_trace(t, p, "dynamo-v2")
    rows = check_agentic_mooncake_v2(p)
    assert [r["play_id"] for r in rows] == ["root", "root", "9", "root", "9"]
    assert [r["session_id"] for r in rows] == ["root", "4", "9", "root", "9"]
    assert [r["model"] for r in rows] == ["llama-3.1-8b"] * 5
    assert [r["not_before_ms"] for r in rows] == [0, 0, 6, 0, 12]  # a dependent row waits for its dependencies
    assert [len(r["hash_ids"]) for r in rows] == [3, 2, 1, 4, 1]
    fresh = {rows[0]["hash_ids"][2], rows[3]["hash_ids"][3], rows[4]["hash_ids"][0]}
    assert len(fresh) == 3 and not fresh & set(t.block_hashes.tolist())  # partial blocks: ids of their own
    u = read_trace(p)
    assert u.equals(t, meta=False) and u.meta == {**t.meta, "format": "dynamo-v2"}


def test_dynamo_v2_plays_join_sessions_linked_by_dependencies():
    from kvtier.traces.dynamo import play_roots

    b = TraceBuilder()
    for i, s in enumerate([0, 1, 2, 1, 3]):
        deps = [(0, 0.0, 0, 2)] if i == 3 else []  # session 1 waits for session 0: one play
        b.add(timestamp_ms=i, session_id=s, parent_session_id=2 if s == 3 else -1, input_length=1, output_length=1,
              block_hashes=[i], deps=deps)
    assert play_roots(b.build(block_tokens=1)).tolist() == [0, 0, 2, 0, 2]


def test_generated_and_real_traces_export_to_the_peers_schema(tmp_path):
    t = generate_trace(workload="coding-agent-small", num_agents=2, seed=0)
    write_trace(t, tmp_path / "gen.jsonl", "dynamo-v2")
    rows = check_agentic_mooncake_v2(tmp_path / "gen.jsonl")
    assert len({r["play_id"] for r in rows}) == 2  # one play per agent, sub-agents included
    assert read_trace(tmp_path / "gen.jsonl").equals(t, meta=False)
    if DEV_TRACES.is_dir():
        real = read_trace(session_files(DEV_TRACES)[0])
        write_trace(real, tmp_path / "real.jsonl", "dynamo-v2")
        rows = check_agentic_mooncake_v2(tmp_path / "real.jsonl")
        assert {r["play_id"] for r in rows} == {"trace_0012"}
        assert read_trace(tmp_path / "real.jsonl").equals(real, meta=False)


def test_committed_dynamo_v2_trace_follows_the_peers_schema():
    path = ROOT / "traces" / "coding-agent-small-2.dynamo-v2.jsonl"
    check_agentic_mooncake_v2(path)
    assert read_trace(path).equals(read_trace(ROOT / "traces" / "coding-agent-small-2.jsonl"), meta=False)


@st.composite
def _agent_traces(draw):
    n = draw(st.integers(0, 7))
    bt = draw(st.sampled_from([1, 4, 16]))
    b = TraceBuilder()
    for i in range(n):
        k = draw(st.integers(0, 4))
        deps = []
        if i and draw(st.booleans()):
            deps.append((draw(st.integers(0, i - 1)), 0.0, draw(st.integers(0, 1)), draw(st.integers(0, 2))))
        b.add(timestamp_ms=float(i), session_id=draw(st.integers(0, 3)), parent_session_id=draw(st.integers(-1, 3)),
              input_length=draw(st.integers(1, 6 * bt)), output_length=1,
              block_hashes=draw(st.lists(st.integers(0, 2**64 - 1), min_size=k, max_size=k)), deps=deps)
    return b.build(block_tokens=bt)


@settings(max_examples=40)
@given(_agent_traces())
@example(_partial_blocks_trace())
def test_any_trace_exports_to_the_peers_schema_and_back(tmp_path_factory, t):
    p = tmp_path_factory.mktemp("v2") / "a.jsonl"
    write_trace(t, p, "dynamo-v2")
    check_agentic_mooncake_v2(p)
    assert read_trace(p).equals(t, meta=False)


def test_a_request_without_input_cannot_be_exported_for_the_peer(tmp_path):
    b = TraceBuilder()
    b.add(timestamp_ms=0, session_id=0, input_length=16, output_length=1, block_hashes=[1])
    b.add(timestamp_ms=1, session_id=0, input_length=0, output_length=1, block_hashes=[])
    with pytest.raises(ConfigError, match="request 1: input_length 0 cannot be written as agentic Mooncake v2"):
        write_trace(b.build(block_tokens=16), tmp_path / "a.jsonl", "dynamo-v2")
    assert not (tmp_path / "a.jsonl").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aisimulate") is None, reason="the peer (aisimulate, see ../shared/PEERS.md) is not "
                    "installed")
@pytest.mark.parametrize("make", [
    lambda: generate_trace(workload="coding-agent-small", num_agents=2, seed=0),
    _partial_blocks_trace,
])
def test_the_peer_accepts_the_export_as_is(tmp_path, make):
    """NVIDIA's agentic Mooncake reader replays the export, every play to completion."""
    t = make()
    write_trace(t, tmp_path / "a.jsonl", "dynamo-v2")
    (tmp_path / "cfg.yaml").write_text(
        "traffic:\n"
        f"  source: {{type: trace, paths: [{tmp_path / 'a.jsonl'}], format: agentic_mooncake, "
        f"block_size: {t.block_tokens}}}\n"
        "  load: {type: trace_timestamps}\n"
        "engine:\n  mode: aggregated\n  model: meta-llama/Meta-Llama-3.1-70B\n  hardware: h100_sxm\n"
        "  backend: vllm\n  workers:\n    aggregated:\n      parallelism: {replicas: 1, tensor: 8}\n"
        "      scheduler: {max_batched_tokens: 8192, max_sequences: 64}\n")
    run = subprocess.run(["aisimulate", "predict", "-c", str(tmp_path / "cfg.yaml"), "--output-dir",
                          str(tmp_path / "out"), "--overwrite", "--format", "json"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "prediction.json").read_text())
    assert result["completed_requests"] == t.num_requests and result["incomplete_trajectories"] == 0


# ------------------------------------------------------------------------------ streaming and progress
class _FakeBar:
    made: list[_FakeBar] = []

    def __init__(self, *, total, initial, **kw):
        self.total, self.n, self.closed = total, initial, False
        _FakeBar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_shows_only_after_the_delay_and_counts_every_byte():
    _FakeBar.made = []
    clock = _Clock()
    with ReadProgress(100, "reading x", delay_s=1.0, clock=clock, bar_factory=_FakeBar) as bar:
        bar.advance(30)
        assert not bar.shown
        clock.now = 1.5
        bar.advance(20)
        assert bar.shown and _FakeBar.made[0].n == 50 and _FakeBar.made[0].total == 100
        bar.advance(50)
    assert _FakeBar.made[0].n == 100 and _FakeBar.made[0].closed


@needs_dev_traces
def test_reading_a_folder_advances_progress_by_its_compressed_bytes():
    _FakeBar.made = []
    files = session_files(DEV_TRACES)[:3]
    total = sum(os.path.getsize(f) for f in files)
    folder_bar = ReadProgress(total, "r", delay_s=0.0, bar_factory=_FakeBar)
    for f in files:
        read_kvcache_tester(f, progress=folder_bar)
    folder_bar.close()
    assert folder_bar.read_bytes == total == _FakeBar.made[0].n


@pytest.mark.parametrize("fmt", ["kvtier", "kvtier-bin", "mooncake"])
def test_line_and_binary_readers_advance_progress_by_the_file_size(tmp_path, fmt):
    from kvtier.traces.jsonl import read_kvtier, read_mooncake

    reader = {"kvtier": read_kvtier, "kvtier-bin": read_binary, "mooncake": read_mooncake}[fmt]
    plain, packed = _plain_and_gzipped(tmp_path, fmt, read_trace(GOLDEN))
    for p in (plain, packed):
        bar = ReadProgress(os.path.getsize(p), "r", bar_factory=_FakeBar)
        reader(p, progress=bar)
        assert bar.read_bytes == os.path.getsize(p)


def test_progress_flag_keeps_quiet_when_reading_is_quick(capsys):
    from kvtier.cli import main

    assert main(["trace", "stats", str(GOLDEN), "--json"]) == 0
    assert capsys.readouterr().err == ""
    t = read_trace(GOLDEN, progress=True)
    assert t.equals(read_trace(GOLDEN))


@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 50), st.lists(st.integers(0, 9), max_size=5)), max_size=12),
       st.integers(1, 6))
def test_sorting_rows_in_small_batches_matches_a_stable_sort(rows, batch):
    b = TraceBuilder()
    for ts, ids in rows:
        b.add(timestamp_ms=ts, session_id=0, input_length=len(ids), output_length=0, block_hashes=ids)
    old = trace_model.GATHER_BATCH
    trace_model.GATHER_BATCH = batch
    try:
        t = b.build(block_tokens=1, sort=True)
    finally:
        trace_model.GATHER_BATCH = old
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    assert [t.blocks(k).tolist() for k in range(len(rows))] == [rows[i][1] for i in order]


def test_the_block_buffer_grows_past_a_chunk_and_after_a_build():
    b = TraceBuilder()
    big = np.arange(1_500_000, dtype=np.uint64)
    b.add(timestamp_ms=0, session_id=0, input_length=1, output_length=0, block_hashes=big)
    b.add(timestamp_ms=1, session_id=0, input_length=1, output_length=0, block_hashes=[5, 6])
    t = b.build(block_tokens=1)
    b.add(timestamp_ms=2, session_id=0, input_length=1, output_length=0, block_hashes=[7])
    u = b.build(block_tokens=1)
    assert np.array_equal(t.blocks(0), big) and t.blocks(1).tolist() == [5, 6] and t.num_block_accesses == 1_500_002
    assert u.blocks(2).tolist() == [7] and t.num_block_accesses == 1_500_002  # the first trace is unchanged


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 40), st.lists(st.integers(0, 5), max_size=6)), max_size=8),
       st.sampled_from([1, 4, 16]))
def test_token_hits_match_a_naive_count(rows, bt):
    b = TraceBuilder()
    for k, (inl, ids) in enumerate(rows):
        b.add(timestamp_ms=k, session_id=0, input_length=inl, output_length=0, block_hashes=ids)
    t = b.build(block_tokens=bt)
    seen, hit_tokens = set(), 0
    for inl, ids in rows:
        for j, x in enumerate(ids):
            tokens = min(bt, max(0, inl - j * bt))
            hit_tokens += tokens if x in seen else 0
            seen.add(x)
    total_in = sum(inl for inl, _ in rows)
    assert trace_stats(t).token_hit_ratio == pytest.approx(hit_tokens / total_in if total_in else 0.0)
    assert covered_tokens(t) == int(block_token_counts(t).sum())


def test_reading_a_large_folder_streams_one_file_at_a_time(tmp_path, monkeypatch):
    """Each session file is parsed and dropped before the next is opened."""
    import kvtier.traces.kvcache_tester as kvct

    doc = {"requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}]}
    for k in range(4):
        (tmp_path / f"s{k}.json.gz").write_bytes(gzip.compress(json.dumps({**doc, "id": f"s{k}"}).encode()))
    open_now = []
    real = kvct.open_text

    def tracking(path, progress=None):
        f = real(path, progress)
        open_now.append(f)
        assert sum(not g.closed for g in open_now) == 1
        return f

    monkeypatch.setattr(kvct, "open_text", tracking)
    assert read_trace(tmp_path).num_requests == 4 and all(f.closed for f in open_now)


def test_the_bar_is_drawn_on_a_terminal_only():
    import io

    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        clock = _Clock()
        with ReadProgress(10, "reading t.jsonl", stream=stream, clock=clock) as bar:
            clock.now = 2.0
            bar.advance(10)
            assert bar.shown == drawn
        assert ("reading t.jsonl" in stream.getvalue()) == drawn


def test_zstd_files_go_through_the_zstandard_stream_reader(tmp_path, monkeypatch):
    """The zstd path with a stand-in for zstandard (whose API is ``ZstdDecompressor().
    stream_reader(file)``, a reader with ``read(n)`` and ``close()``), here a zlib body."""
    import io
    import sys
    import types
    import zlib

    closed = []

    class Reader:
        def __init__(self, f):
            self.f, self.body = f, None

        def read(self, n=-1):
            if self.body is None:
                self.body = io.BytesIO(zlib.decompress(self.f.read()[4:]))
            return self.body.read(n)

        def close(self):
            closed.append(True)
            self.f.close()

    fake = types.ModuleType("zstandard")
    fake.ZstdDecompressor = lambda: types.SimpleNamespace(stream_reader=lambda f, closefd=True: Reader(f))
    monkeypatch.setitem(sys.modules, "zstandard", fake)
    plain = tmp_path / "t.jsonl"
    write_trace(read_trace(GOLDEN), plain, "kvtier")
    packed = tmp_path / "t.jsonl.zst"
    packed.write_bytes(b"\x28\xb5\x2f\xfd" + zlib.compress(plain.read_bytes()))
    assert detect_format(packed) == "kvtier"
    assert read_trace(packed).equals(read_trace(plain)) and closed
