"""The columnar Trace and its builder: validation, sorting with dependencies, views."""

from __future__ import annotations

import numpy as np
import pytest

from kvtier.errors import ConfigError
from kvtier.traces import RELATION_SEQUENCE, Trace, TraceBuilder


def columns(n=2, **over):
    cols = dict(block_tokens=4, timestamps_ms=np.arange(n, dtype=float), session_ids=np.zeros(n, int),
                parent_session_ids=np.full(n, -1), input_lengths=np.full(n, 8), output_lengths=np.ones(n, int),
                tool_wait_ms=np.zeros(n), block_offsets=np.arange(0, 2 * n + 1, 2),
                block_hashes=np.arange(2 * n, dtype=np.uint64))
    cols.update(over)
    return cols


def test_minimal_trace_and_views():
    t = Trace(**columns(3))
    assert len(t) == t.num_requests == 3 and t.num_block_accesses == 6 and t.num_sessions == 1
    assert t.blocks(1).tolist() == [2, 3] and t.blocks_per_request().tolist() == [2, 2, 2]
    r = t.request(-1)
    assert (r.timestamp_ms, r.input_length, r.deps) == (2.0, 8, [])
    assert t.dep_offsets.tolist() == [0, 0, 0, 0] and not t.has_dependencies
    with pytest.raises(IndexError):
        t.request(3)
    h = t.head(2)
    assert h.num_requests == 2 and h.block_hashes.tolist() == [0, 1, 2, 3]
    assert "requests=3" in repr(t)


@pytest.mark.parametrize("over, field", [
    ({"block_tokens": 0}, "block_tokens"),
    ({"timestamps_ms": np.array([1.0, 0.0])}, "timestamps_ms"),
    ({"timestamps_ms": np.array([0.0, np.nan])}, "timestamps_ms"),
    ({"block_offsets": np.array([0, 2, 3])}, "block_offsets"),
    ({"block_offsets": np.array([0, 3, 2, 4])}, "block_offsets"),
    ({"input_lengths": np.array([8, -1])}, "input_lengths"),
    ({"session_ids": np.array([0])}, "session_ids"),
    ({"parent_session_ids": np.array([-2, 0])}, "parent_session_ids"),
    ({"block_hashes": np.array([0.5, 1, 2, 3])}, "block_hashes"),
    ({"block_hashes": np.array([-1, 1, 2, 3])}, "block_hashes"),
    ({"tool_wait_ms": np.array([0.0, -1.0])}, "tool_wait_ms"),
    ({"meta": []}, "meta"),
    ({"dep_offsets": np.array([0, 1, 1]), "dep_requests": np.array([0]), "dep_delay_ms": np.zeros(1),
      "dep_triggers": np.zeros(1, np.uint8), "dep_relations": np.zeros(1, np.uint8)}, "dep_requests"),
    ({"dep_offsets": np.array([0, 0, 1]), "dep_requests": np.array([0]), "dep_delay_ms": np.zeros(1),
      "dep_triggers": np.full(1, 2, np.uint8), "dep_relations": np.zeros(1, np.uint8)}, "dep_triggers"),
])
def test_validation_names_the_field(over, field):
    with pytest.raises(ConfigError, match=field):
        Trace(**columns(2, **over))


def test_builder_sorts_by_time_and_remaps_dependencies():
    b = TraceBuilder()
    b.add(timestamp_ms=10, session_id=0, input_length=4, output_length=1, block_hashes=[1])
    b.add(timestamp_ms=5, session_id=1, input_length=4, output_length=1, block_hashes=[7])
    b.add(timestamp_ms=12, session_id=0, input_length=8, output_length=1, block_hashes=[1, 2],
          deps=[(0, 2.0, 0, RELATION_SEQUENCE)])
    b.add(timestamp_ms=6, session_id=1, input_length=8, output_length=1, block_hashes=[7, 8],
          deps=[(1, 1.0, 1, RELATION_SEQUENCE)])
    t = b.build(block_tokens=4, sort=True)
    assert t.timestamps_ms.tolist() == [5, 6, 10, 12]
    assert t.block_hashes.tolist() == [7, 7, 8, 1, 1, 2]
    assert t.block_offsets.tolist() == [0, 1, 3, 4, 6]
    assert t.request(1).deps == [(0, 1.0, 1, 0)]
    assert t.request(3).deps == [(2, 2.0, 0, 0)]
    with pytest.raises(ConfigError, match="timestamps_ms"):
        b.build(block_tokens=4, sort=False)


def test_equals_is_bitwise_and_densified_keeps_offsets():
    t = Trace(**columns(2))
    u = Trace(**columns(2, timestamps_ms=np.array([0.0, 1.0 + 1e-12])))
    assert t.equals(Trace(**columns(2))) and not t.equals(u) and not t.equals("x")
    assert not t.equals(Trace(**columns(2, meta={"a": 1})))
    assert t.equals(Trace(**columns(2, meta={"a": 1})), meta=False)
    d = Trace(**columns(2, block_hashes=np.array([9, 2**64 - 1, 9, 5], dtype=np.uint64))).densified()
    assert d.block_hashes.tolist() == [0, 1, 0, 2]


@pytest.mark.parametrize("ids", [[-1], ["a"], [[1]], [1.5], [-1, 2**64 - 1]])
def test_builder_rejects_bad_block_ids(ids):
    b = TraceBuilder()
    with pytest.raises(ConfigError, match="block_hashes"):
        b.add(timestamp_ms=0, session_id=0, input_length=1, output_length=1, block_hashes=ids)


def test_builder_rejects_bad_row_values():
    b = TraceBuilder()
    b.add(timestamp_ms="x", session_id=0, input_length=1, output_length=1, block_hashes=[2**64 - 1])
    with pytest.raises(ConfigError, match="TraceBuilder"):
        b.build(block_tokens=1)
