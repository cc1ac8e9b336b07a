"""Target files, fuzzed: a user's TOML/JSON target that is wrong in any field, or not a
target at all, raises a kvtier error that names the problem, and nothing else escapes."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kvtier import KvtierError, load_target

VALID = {
    "name": "my-box", "chips": 8, "compute_flops": 7.9e15, "model": "llama-3.1-70b",
    "links": [{"name": "pcie5", "read_bw_bytes_per_s": 5.12e11, "write_bw_bytes_per_s": 5.12e11, "latency_s": 5e-6}],
    "tiers": [
        {"name": "hbm", "kind": "hbm", "capacity_bytes": 640e9, "read_bw_bytes_per_s": 2.68e13,
         "write_bw_bytes_per_s": 2.68e13},
        {"name": "dram", "kind": "dram", "capacity_bytes": 2e12, "read_bw_bytes_per_s": 9e11,
         "write_bw_bytes_per_s": 9e11, "link": "pcie5"},
    ],
}

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


PATHS = list(_paths(VALID))


def test_the_valid_file_loads(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(VALID))
    assert load_target(p).name == "my-box"


@given(path=st.sampled_from(PATHS), value=json_values, drop=st.booleans())
def test_a_wrong_field_is_a_kvtier_error(tmp_path_factory, path, value, drop):
    doc = json.loads(json.dumps(VALID))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    p = tmp_path_factory.mktemp("fuzz") / "t.json"
    p.write_text(json.dumps(doc))
    try:
        load_target(p)
    except KvtierError as e:
        assert str(e)


@given(content=st.binary(max_size=200), suffix=st.sampled_from([".toml", ".json"]))
def test_garbage_files_are_kvtier_errors(tmp_path_factory, content, suffix):
    p = tmp_path_factory.mktemp("garbage") / f"t{suffix}"
    p.write_bytes(content)
    try:
        load_target(p)
    except KvtierError as e:
        assert str(e)
