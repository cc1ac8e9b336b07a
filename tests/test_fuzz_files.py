"""User files, fuzzed: a user's TOML/JSON target that is wrong in any field, or not a
target at all, raises a kvtier error that names the problem, and nothing else escapes;
a damaged flash file loses nothing without a report and never serves wrong bytes."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from kvtier import FlashFormatError, KvtierError, flash, flash_slot_bytes, load_target
from kvtier.tiers.flash_format import FILE_HEADER_BYTES
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

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


# -- flash files, tampered ----------------------------------------------------------------
#
# A store writes a small flash file (puts, a free, a re-put with new bytes), closes it, and
# the file is damaged: bytes overwritten or zeroed, a slot copied over another, the file
# cut short. Reopening either raises FlashFormatError (the file header itself is gone) or
# serves, for every block, its newest bytes or nothing, and reports at least as many slots
# lost as blocks it does not serve.

FLASH_BLOCKS = 6
SLOT = flash_slot_bytes(BLOCK_BYTES)
FILE_BYTES = FILE_HEADER_BYTES + FLASH_BLOCKS * SLOT

tamper_ops = st.one_of(
    st.tuples(st.just("overwrite"), st.integers(0, FILE_BYTES - 1), st.binary(min_size=1, max_size=96)),
    st.tuples(st.just("zero"), st.integers(0, FILE_BYTES - 1), st.integers(1, SLOT)),
    st.tuples(st.just("copy_slot"), st.integers(0, FLASH_BLOCKS - 1), st.integers(0, FLASH_BLOCKS - 1)),
    st.tuples(st.just("truncate"), st.integers(0, FILE_BYTES), st.just(0)),
)


def _written_flash_file(directory) -> dict[int, bytes]:
    """Blocks 0..4 put, 1 freed and put again with new bytes, 3 freed; returns the model."""
    store = make_store([flash(FLASH_BLOCKS * SLOT, directory)])
    for h in range(5):
        store.put(h, payload(h))
    store.free(1)
    store.put(1, payload(101))
    store.free(3)
    store.close()
    return {0: payload(0), 1: payload(101), 2: payload(2), 4: payload(4)}


def _tamper(path, op) -> None:
    kind, a, b = op
    with open(path, "r+b") as f:
        if kind == "overwrite":
            f.seek(a)
            f.write(b)
        elif kind == "zero":
            f.seek(a)
            f.write(bytes(b))
        elif kind == "copy_slot":
            f.seek(FILE_HEADER_BYTES + a * SLOT)
            data = f.read(SLOT)
            f.seek(FILE_HEADER_BYTES + b * SLOT)
            f.write(data)
        else:
            f.truncate(a)


@given(ops=st.lists(tamper_ops, min_size=1, max_size=2), verify=st.booleans())
@example(ops=[("copy_slot", 0, 2)], verify=True)  # two records with one write sequence number
@example(ops=[("zero", FILE_HEADER_BYTES + 2 * SLOT, 64)], verify=True)  # a block header zeroed
@example(ops=[("truncate", FILE_HEADER_BYTES + SLOT + 10, 0)], verify=False)  # cut inside slot 1
@example(ops=[("truncate", 0, 0)], verify=False)  # cut to nothing: not taken for a new file
def test_a_tampered_flash_file_loses_nothing_silently(tmp_path_factory, ops, verify):
    d = tmp_path_factory.mktemp("flash")
    model = _written_flash_file(d)
    for op in ops:
        _tamper(d / "flash.kvt", op)
    try:
        store = make_store([flash(FLASH_BLOCKS * SLOT, d, verify_on_open=verify)])
    except FlashFormatError as e:
        assert "flash.kvt" in str(e)
        return
    rec = store.tier("flash").recovery
    unserved = 0
    for h in range(6):
        got = store.fetch(h)
        if got is None:
            unserved += h in model
        else:
            assert h in model and same_bytes(got, model[h]), f"block {h}: wrong or stale bytes"
    if not rec.state_damaged:  # with the file's record of what it held hit, a zeroed last header looks free
        reported = store.stats().tiers["flash"].corrupt  # at reopen (rec.lost), or found at the read
        assert unserved <= reported, f"{unserved} blocks lost, {reported} reported ({rec})"
    store.check_invariants()
    for h in range(10, 16):
        store.put(h, payload(h))
    store.check_invariants()
    store.close()
