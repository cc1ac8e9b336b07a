"""Bad input, fuzzed: only kvtier's documented exception types escape a public entry point,
each names what was wrong, and a rejected call loses nothing already stored."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kvtier import ConfigError, KvtierError, ModelSpec, PayloadError, TierSpec, block_hashes, hbm
from kvtier.testing import block_payloads
from tests.helpers import BLOCK_BYTES, TINY, make_store, payload, same_bytes

SHAPE = TINY.block_shape(16)

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=5),
    st.lists(st.integers(), max_size=3), st.binary(max_size=8),
)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float16, np.float64, np.int32, np.uint8]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, max_side=16),
)


def _store_with_two_blocks():
    store = make_store([hbm(4 * BLOCK_BYTES)])
    store.put(1, payload(1))
    store.put(2, payload(2))
    return store


def _nothing_lost(store):
    store.check_invariants()
    assert same_bytes(store.fetch(1), payload(1)) and same_bytes(store.fetch(2), payload(2))


@given(h=st.one_of(junk, st.integers(0, 2**64 - 1)), kv=st.one_of(junk, arrays, block_payloads(SHAPE, np.float32)))
def test_put_raises_only_documented_errors(h, kv):
    store = _store_with_two_blocks()
    try:
        store.put(h, kv)
    except (PayloadError, ConfigError) as e:
        assert any(word in str(e) for word in ("kv", "block_hash")), str(e)
    _nothing_lost(store)


@given(h=junk, out=st.one_of(st.none(), arrays))
def test_fetch_and_friends_raise_only_documented_errors(h, out):
    store = _store_with_two_blocks()
    for call in (lambda: store.fetch(h, out=out), lambda: store.pin(h), lambda: store.unpin(h),
                 lambda: store.free(h), lambda: store.lookup([h]), lambda: store.contains(h)):
        try:
            call()
        except KvtierError as e:
            assert str(e)
        store.check_invariants()
    # The two stored blocks survive whatever happened (free(h) of 1 or 2 aside).
    for b in (1, 2):
        if h != b:
            assert same_bytes(store.fetch(b), payload(b))


@given(
    kind=st.one_of(st.sampled_from(["sram", "hbm", "dram", "flash"]), junk),
    capacity=st.one_of(st.integers(-10, 1 << 20), junk),
    bw=st.one_of(st.none(), st.floats(allow_nan=True), junk),
    latency=st.one_of(st.none(), st.floats(allow_nan=True)),
    codec=st.one_of(st.sampled_from(["none", "lz4"]), junk),
    fsync=st.one_of(st.sampled_from(["always", "flush", "never"]), junk),
    name=st.one_of(st.none(), junk),
)
@example(kind="hbm", capacity=4096, bw=None, latency=None, codec=[1], fsync="flush", name=None)
@example(kind="hbm", capacity=4096, bw=float("inf"), latency=None, codec="none", fsync=[], name=None)
def test_tier_spec_raises_only_config_errors(kind, capacity, bw, latency, codec, fsync, name):
    try:
        spec = TierSpec(kind=kind, capacity_bytes=capacity, read_bw_bytes_per_s=bw, latency_s=latency, codec=codec,
                        fsync=fsync, name=name, path="/tmp/kvtier-fuzz")
    except ConfigError as e:
        assert "TierSpec" in str(e) or "kind" in str(e), str(e)
        return
    assert spec.capacity_bytes > 0 and spec.read_bw_bytes_per_s > 0 and spec.latency_s >= 0


@given(
    layers=st.one_of(st.integers(-2, 8), junk), kv_heads=st.one_of(st.integers(-2, 8), junk),
    dtype_bytes=st.one_of(st.integers(-1, 9), junk), active=st.one_of(st.floats(allow_nan=True), junk),
)
@example(layers=2, kv_heads=2, dtype_bytes=[1], active=1.0)
@example(layers=2, kv_heads=2, dtype_bytes=2, active="x")
def test_model_spec_raises_only_config_errors(layers, kv_heads, dtype_bytes, active):
    try:
        m = ModelSpec(name="f", num_layers=layers, num_q_heads=8, num_kv_heads=kv_heads, head_dim=8,
                      dtype_bytes=dtype_bytes, active_params=active)
    except ConfigError:
        return
    assert m.kv_bytes_per_token > 0


@given(tokens=st.one_of(arrays, junk), block_tokens=st.one_of(st.integers(-3, 9), junk))
def test_block_hashes_raise_only_config_errors(tokens, block_tokens):
    try:
        out = block_hashes(tokens, block_tokens)
    except ConfigError:
        return
    assert out.dtype == np.uint64


_scalars_and_junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4),
                              st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                                   max_size=1))


@given(sessions=st.lists(st.tuples(_scalars_and_junk, _scalars_and_junk), min_size=1, max_size=5))
@example(sessions=[("a", None), (float("inf"), None)])
@example(sessions=[(2**63, -1), (0, 2**63)])
def test_any_session_ids_read_or_raise_a_trace_format_error(tmp_path_factory, sessions):
    import json

    from kvtier import TraceFormatError
    from kvtier.traces import read_trace

    rows = []
    for k, (session, parent) in enumerate(sessions):
        row = {"timestamp": k, "input_length": 8, "output_length": 1, "hash_ids": [1, k + 2]}
        row.update({"session_id": session, "parent_session_id": parent})
        rows.append(json.dumps(row))
    path = tmp_path_factory.mktemp("sessions") / "m.jsonl"
    path.write_text("\n".join(rows) + "\n")
    try:
        trace = read_trace(path)
    except TraceFormatError as e:
        assert "session_id" in str(e) and f"{path} line" in str(e), str(e)
        return
    assert trace.num_requests == len(sessions) and trace.session_ids.min() >= 0
    names = trace.meta.get("session_names")
    if names is not None:  # names are dense: every id has its name
        assert trace.session_ids.max() < len(names) and json.dumps(names, allow_nan=False)


@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 399), st.integers(1, 255)), max_size=3))
def test_damaged_gzip_traces_raise_only_trace_format_errors(tmp_path_factory, cut, flips):
    import gzip
    import pathlib

    from kvtier import TraceFormatError
    from kvtier.traces import read_trace

    golden = pathlib.Path(__file__).resolve().parent.parent / "traces" / "golden" / "mooncake-tiny.jsonl"
    data = bytearray(gzip.compress(golden.read_bytes())[:cut])
    for at, mask in flips:
        if at < len(data):
            data[at] ^= mask
    path = tmp_path_factory.mktemp("gz") / "t.jsonl.gz"
    path.write_bytes(bytes(data))
    try:
        read_trace(path)
    except TraceFormatError as e:
        assert str(path) in str(e), str(e)
