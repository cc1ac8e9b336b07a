"""The metadata-only replay: golden traces, the naive twins, counters, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier.cli import main
from kvtier.cli.replay import parse_tiers
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.policies import POLICY_NAMES, make_policy
from kvtier.replay import ReplayTier, densify, recompute_cost_per_byte, replay
from kvtier.traces.io import read_trace
from tests.naive import run_kernel_policy, run_naive

GOLDEN = Path(__file__).resolve().parent.parent / "traces" / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
ONLINE = [p for p in POLICY_NAMES if p != "belady"]


def golden_trace(name):
    return read_trace(GOLDEN / name, EXPECTED["traces"][name]["format"])


def flatten(offsets, hashes):
    """Keys, chain depths per access (for the one-tier twins)."""
    keys = hashes.tolist()
    depths = np.concatenate([np.arange(offsets[i + 1] - offsets[i]) for i in range(len(offsets) - 1)]).tolist()
    return keys, depths


# -- golden numbers ---------------------------------------------------------------------


@pytest.mark.parametrize("trace_name", sorted(EXPECTED["traces"]))
@pytest.mark.parametrize("name", POLICY_NAMES)
def test_golden_hits(trace_name, name):
    t = golden_trace(trace_name)
    want = EXPECTED["traces"][trace_name]
    for cap, (hits, prefix) in want["one_tier"][name].items():
        r = replay(t.block_offsets, t.block_hashes, policy=name, capacity_blocks=int(cap), model="llama-3.1-8b",
                   block_tokens=int(t.block_tokens))
        assert (r.block_hits, r.prefix_hits) == (hits, prefix), (name, cap)
    r = replay(t.block_offsets, t.block_hashes, [ReplayTier(name="a", policy=name, capacity_blocks=6),
                                                 ReplayTier(name="b", policy="lru", capacity_blocks=10)],
               model="llama-3.1-8b", block_tokens=int(t.block_tokens))
    got = {x.name: [x.hits, x.prefix_hits, x.evictions, x.demotions, x.promotions] for x in r.tiers}
    assert got == want["two_tier"][name]


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_golden_one_tier_equals_naive_twin(name):
    """The golden numbers are the naive twin's, with the hints the replay derives."""
    t = golden_trace("agent-tiny.ids")
    keys, depths = flatten(t.block_offsets, t.block_hashes)
    cost_by_depth = recompute_cost_per_byte(ModelSpec.preset("llama-3.1-8b"), 16, max(depths))
    costs = [float(cost_by_depth[d]) for d in depths]
    for cap in (4, 12):
        hits, _ = run_naive(name, cap, keys, depths, costs)
        r = replay(t.block_offsets, t.block_hashes, policy=name, capacity_blocks=cap, model="llama-3.1-8b")
        assert r.block_hits == sum(hits)


def test_prefix_hits_stop_at_the_first_miss():
    # Requests [a b c], [a b d], [a x c]: unlimited cache.
    offsets = np.array([0, 3, 6, 9])
    hashes = np.array([1, 2, 3, 1, 2, 4, 1, 9, 3], dtype=np.uint64)
    r = replay(offsets, hashes, record=True)
    assert (r.requests, r.block_accesses, r.unique_blocks) == (3, 9, 5)
    assert r.block_hits == 4 and r.prefix_hits == 3
    assert r.hit_tier.tolist() == [-1, -1, -1, 0, 0, -1, 0, -1, 0]
    assert r.block_hit_ratio == pytest.approx(4 / 9) and r.prefix_hit_ratio == pytest.approx(3 / 9)


# -- against the one-tier harness and properties ----------------------------------------

requests_st = st.lists(st.lists(st.integers(0, 25), min_size=1, max_size=6), min_size=1, max_size=40)


def csr(rows):
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    return offsets, np.array([x for r in rows for x in r], dtype=np.uint64)


@given(rows=requests_st, cap=st.integers(1, 10), name=st.sampled_from(POLICY_NAMES))
@settings(max_examples=60)
def test_one_tier_replay_equals_policy_harness(rows, cap, name):
    offsets, hashes = csr(rows)
    keys, depths = flatten(offsets, hashes)
    model = ModelSpec.preset("tiny")
    cost_by_depth = recompute_cost_per_byte(model, 16, max(depths))
    hits, evicted = run_kernel_policy(make_policy(name, cap), keys, depths, [float(cost_by_depth[d]) for d in depths])
    r = replay(offsets, hashes, policy=name, capacity_blocks=cap, model=model, record=True)
    assert (r.hit_tier >= 0).tolist() == hits
    assert r.tiers[0].evictions == len(evicted) == int(r.evictions_at.sum())


@given(rows=requests_st, cap=st.integers(1, 8))
@settings(max_examples=40)
def test_no_online_policy_beats_belady_in_replay(rows, cap):
    offsets, hashes = csr(rows)
    best = replay(offsets, hashes, policy="belady", capacity_blocks=cap).block_hits
    for name in ONLINE:
        assert replay(offsets, hashes, policy=name, capacity_blocks=cap).block_hits <= best, name


@given(rows=requests_st, caps=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       policies=st.lists(st.sampled_from(POLICY_NAMES), min_size=3, max_size=3), promote=st.booleans())
@settings(max_examples=60)
def test_counters_balance(rows, caps, policies, promote):
    offsets, hashes = csr(rows)
    tiers = [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=c) for i, (c, p) in enumerate(zip(caps, policies))]
    r = replay(offsets, hashes, tiers, promote=promote, block_bytes=10, record=True)
    total_misses = int(np.count_nonzero(r.hit_tier < 0))
    assert r.block_hits + total_misses == r.block_accesses
    assert r.prefix_hits <= r.block_hits
    assert sum(t.hits for t in r.tiers) == r.block_hits
    for i, t in enumerate(r.tiers):
        resident = t.admitted - t.evictions - t.promotions
        assert 0 <= resident <= t.capacity_blocks  # capacity is never exceeded
        assert t.bytes_demoted == 10 * t.demotions and t.bytes_promoted == 10 * t.promotions
        came_in = total_misses + sum(x.promotions for x in r.tiers) if i == 0 else r.tiers[i - 1].demotions
        assert t.admitted == came_in
        assert t.demotions + t.drops == t.evictions
        assert t.hits == int(np.count_nonzero(r.hit_tier == i))
    assert r.tiers[-1].demotions == 0
    if not promote:
        assert all(t.promotions == 0 for t in r.tiers)


def test_unlimited_and_byte_capacities():
    offsets, hashes = csr([[1, 2, 3], [1, 2, 4], [5, 1, 2, 3]])
    r = replay(offsets, hashes)
    assert r.block_hits == r.block_accesses - r.unique_blocks and r.tiers[0].evictions == 0
    t = [ReplayTier(name="hbm", capacity_bytes=250), ReplayTier(name="dram", policy="fifo", capacity_bytes=10**6)]
    r = replay(offsets, hashes, t, block_bytes=100)
    assert [x.capacity_blocks for x in r.tiers] == [2, 10**4]
    d = r.as_dict()
    for key in ("requests", "block_accesses", "unique_blocks", "block_hits", "block_hit_ratio", "prefix_hits",
                "prefix_hit_ratio", "tiers", "seconds", "accesses_per_s"):
        assert key in d
    json.dumps(d)


def test_densify_keeps_first_appearance_order():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, size=5000, dtype=np.uint64)[rng.integers(0, 3000, size=200_000)]
    ids, unique = densify(hashes)
    assert np.array_equal(unique[ids], hashes)
    _, first = np.unique(hashes, return_index=True)
    assert np.array_equal(unique, hashes[np.sort(first)])


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="block_offsets"):
        replay(np.array([1, 2]), np.array([1], dtype=np.uint64))
    with pytest.raises(ConfigError, match="block_hashes"):
        replay(np.array([0, 3]), np.array([1], dtype=np.uint64))
    with pytest.raises(UnknownNameError, match="policy"):
        ReplayTier(name="a", policy="nope")
    with pytest.raises(ConfigError, match="capacity_blocks"):
        ReplayTier(name="a", capacity_blocks=0)
    with pytest.raises(ConfigError, match="unique names"):
        replay(np.array([0, 1]), np.array([1], dtype=np.uint64), [ReplayTier(name="a"), ReplayTier(name="a")])
    with pytest.raises(ConfigError, match="holds no block"):
        replay(np.array([0, 1]), np.array([1], dtype=np.uint64), [ReplayTier(name="a", capacity_bytes=5)],
               block_bytes=10)


# -- command line -----------------------------------------------------------------------


def test_parse_tiers():
    t = parse_tiers("hbm:4096:lru,dram:2GiB", "s3fifo")
    assert [(x.name, x.policy, x.capacity_blocks, x.capacity_bytes) for x in t] == [
        ("hbm", "lru", 4096, None), ("dram", "s3fifo", None, 2 * 2**30)]
    for bad in ("hbm", "hbm:lots", "hbm:3XB", "hbm:1.5", "hbm:10:nope"):
        with pytest.raises(ConfigError):
            parse_tiers(bad, "lru")


def test_cli_json(capsys):
    path = str(GOLDEN / "agent-tiny.ids")
    assert main(["replay", "--trace", path, "--policy", "s3fifo", "--capacity-blocks", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out["block_hits"], out["prefix_hits"]] == EXPECTED["traces"]["agent-tiny.ids"]["one_tier"]["s3fifo"]["12"]
    assert out["requests"] == 60 and out["unique_blocks"] == 42 and out["tiers"][0]["policy"] == "s3fifo"
    assert main(["replay", "--trace", path, "--tiers", "hbm:6:lfu,dram:10:lru", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = EXPECTED["traces"]["agent-tiny.ids"]["two_tier"]["lfu"]
    assert [t["hits"] for t in out["tiers"]] == [x[0] for x in want.values()]
    assert main(["replay", "--trace", str(GOLDEN / "mooncake-tiny.jsonl"), "--format", "mooncake"]) == 0
    assert "prefix hits" in capsys.readouterr().out


def test_cli_errors(capsys):
    path = str(GOLDEN / "agent-tiny.ids")
    assert main(["replay", "--trace", path, "--tiers", "hbm:0"]) == 2
    assert "capacity_blocks" in capsys.readouterr().err
    assert main(["replay", "--trace", path + ".missing"]) == 2
    with pytest.raises(SystemExit):
        main(["replay", "--trace", path, "--capacity-blocks", "3", "--tiers", "a:3"])


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_decisions_do_not_depend_on_hash_values(name):
    """Relabelling blocks (small ids vs hashes >= 2**63) changes nothing, in three tiers."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 120, 3000)
    small = np.arange(1, 121, dtype=np.uint64)
    big = np.uint64(2**63) + rng.choice(2**62, 120, replace=False).astype(np.uint64)
    offsets = np.arange(0, 3001, 3, dtype=np.int64)
    tiers = [ReplayTier(name="a", policy=name, capacity_blocks=10), ReplayTier(name="b", policy=name, capacity_blocks=20),
             ReplayTier(name="c", policy="lru", capacity_blocks=30)]
    a = replay(offsets, small[ids], tiers, record=True)
    b = replay(offsets, big[ids], tiers, record=True)
    assert np.array_equal(a.hit_tier, b.hit_tier) and np.array_equal(a.evictions_at, b.evictions_at)
    assert a.prefix_hits == b.prefix_hits


# -- the list kernel makes the general kernel's decisions --------------------------------

LIST_POLICIES = ["lru", "fifo", "clock", "sieve", "s3fifo", "arc"]


def assert_same_replay(a, b):
    assert np.array_equal(a.hit_tier, b.hit_tier)
    assert np.array_equal(a.evictions_at, b.evictions_at)
    assert [vars(t) for t in a.tiers] == [vars(t) for t in b.tiers]
    assert (a.block_hits, a.prefix_hits) == (b.block_hits, b.prefix_hits)


@given(rows=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=8), min_size=1, max_size=80),
       caps=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       policies=st.lists(st.sampled_from(LIST_POLICIES), min_size=3, max_size=3), promote=st.booleans(),
       hints=st.sampled_from([True, "keys", False]))
def test_list_kernel_equals_general_kernel(rows, caps, policies, promote, hints):
    offsets, hashes = csr(rows)
    tiers = [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=c) for i, (c, p) in enumerate(zip(caps, policies))]
    fast = replay(offsets, hashes, tiers, promote=promote, hints=hints, record=True)
    general = replay(offsets, hashes, tiers, promote=promote, hints=hints, record=True, fast=False)
    assert_same_replay(fast, general)


@pytest.mark.parametrize("policies", [["lru"], ["arc"], ["s3fifo"], ["sieve", "clock", "fifo"], ["arc", "s3fifo", "lru"],
                                      ["s3fifo", "arc"], ["lru", "lru", "lru"]])
def test_fast_kernels_equal_general_kernel_on_a_long_trace(policies):
    """Ghost pools fill, wrap and exhaust (promotions remove blocks ARC never saw leave);
    one tier of ARC or S3-FIFO and the LRU chain run their own kernels, the rest the list kernel."""
    rng = np.random.default_rng(11)
    ids = (rng.zipf(1.2, 40_000) % 3000).astype(np.uint64)
    offsets = np.arange(0, 40_001, 4, dtype=np.int64)
    tiers = [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=c) for i, (p, c) in enumerate(zip(policies, (60, 150, 400)))]
    assert_same_replay(replay(offsets, ids, tiers, record=True), replay(offsets, ids, tiers, record=True, fast=False))


@given(rows=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=8), min_size=1, max_size=80),
       caps=st.lists(st.integers(1, 12), min_size=2, max_size=3), promote=st.booleans())
def test_lru_chain_kernel_equals_general_kernel(rows, caps, promote):
    """A chain of LRU tiers replays as one LRU list cut into segments (``lruchain``)."""
    offsets, hashes = csr(rows)
    tiers = [ReplayTier(name=f"t{i}", policy="lru", capacity_blocks=c) for i, c in enumerate(caps)]
    fast = replay(offsets, hashes, tiers, promote=promote, record=True)
    general = replay(offsets, hashes, tiers, promote=promote, record=True, fast=False)
    assert_same_replay(fast, general)


@given(rows=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=8), min_size=1, max_size=80),
       cap=st.integers(1, 12), policy=st.sampled_from(["arc", "s3fifo"]), hints=st.sampled_from([True, "keys"]))
def test_ghost_kernel_equals_general_kernel(rows, cap, policy, hints):
    """One ARC or S3-FIFO tier runs ``ghostreplay`` (victims turn ghost in place)."""
    offsets, hashes = csr(rows)
    fast = replay(offsets, hashes, policy=policy, capacity_blocks=cap, hints=hints, record=True)
    general = replay(offsets, hashes, policy=policy, capacity_blocks=cap, hints=hints, record=True, fast=False)
    assert_same_replay(fast, general)


@pytest.mark.parametrize("policy", ["arc", "s3fifo"])
def test_ghost_kernel_equals_general_kernel_on_long_traces(policy):
    """Ghost lists fill and trim, S3-FIFO's counters saturate, at capacities from 1 to 1/4 of the keys."""
    rng = np.random.default_rng(14)
    ids = (rng.zipf(1.2, 30_000) % 2000).astype(np.uint64)
    offsets = np.arange(0, 30_001, 3, dtype=np.int64)
    for cap in (1, 2, 7, 60, 500):
        assert_same_replay(replay(offsets, ids, policy=policy, capacity_blocks=cap, record=True),
                           replay(offsets, ids, policy=policy, capacity_blocks=cap, record=True, fast=False))


@pytest.mark.parametrize(("policy", "caps"), [("arc", (16_383, 16_400)), ("s3fifo", (17_246, 17_300))])
def test_ghost_kernel_with_wide_table_cells_equals_general_kernel(policy, caps):
    """The last capacity with 2-byte cells, and one whose full ghost lists number entries
    past 32,767 (4-byte cells), decide as the general kernel does."""
    rng = np.random.default_rng(13)
    ids = (rng.zipf(1.1, 150_000) % 60_000).astype(np.uint64)
    offsets = np.arange(0, 150_001, 5, dtype=np.int64)
    for cap in caps:
        fast = replay(offsets, ids, policy=policy, capacity_blocks=cap, record=True)
        assert fast.tiers[0].evictions > 10_000
        assert_same_replay(fast, replay(offsets, ids, policy=policy, capacity_blocks=cap, record=True, fast=False))


def test_list_replay_picks_the_special_kernels(monkeypatch):
    """The tests above exercise ``ghostreplay`` and ``lruchain`` only if ``replay`` picks them."""
    from kvtier.replay import select_kernel

    kr = sys.modules["kvtier.replay"]  # the module (the package exports a function of that name)

    calls = []
    for module, name in ((kr._kg, "ghost_replay"), (kr._lc, "lru_chain_replay"), (kr._kl, "list_replay")):
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    offsets, ids = np.array([0, 2, 4]), np.array([1, 2, 1, 3], dtype=np.uint64)
    for policies in (["arc"], ["s3fifo"], ["lru", "lru"], ["lru"], ["arc", "lru"]):
        replay(offsets, ids, [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=2) for i, p in enumerate(policies)])
    replay(offsets, ids, policy="arc", capacity_blocks=2, hints=False)
    assert calls == ["ghost_replay", "ghost_replay", "lru_chain_replay", "lru_chain_replay", "list_replay",
                     "list_replay"]

    def path(policies, use_keys=True):
        return select_kernel(policies, [4] * len(policies), hints=use_keys).name

    assert path(["arc"]) == path(["s3fifo"]) == "ghost"
    assert path(["arc"], use_keys=False) == path(["s3fifo"], use_keys=False) == "list"
    assert path(["lru"]) == path(["lru", "lru"]) == path(["lru", "lru", "lru"]) == "lru-chain"
    assert path(["fifo"]) == path(["lru", "fifo"]) == path(["arc", "lru"]) == "list"


@pytest.mark.parametrize("policy", ["arc", "s3fifo"])
@pytest.mark.parametrize("cap", [16, 100, 7_626, 16_383, 16_384, 17_246, 17_247, 76_262, 500_000])
def test_ghost_kernel_state_fits_64_bytes_per_block(policy, cap):
    from kvtier._kernels import ghostreplay
    from kvtier.replay import select_kernel

    ts = select_kernel([policy], [cap]).list_scalars
    size = ghostreplay.table_cells(ts)
    assert ghostreplay.state_bytes(ts) <= 64 * cap
    assert size & (size - 1) == 0 and size > ghostreplay._layout(ts)[0]  # a power of two; an empty cell left


def test_replay_kernels_run_as_plain_python():
    """``NUMBA_DISABLE_JIT=1`` (coverage, debugging) runs the kernels, prefetch hints
    included, as Python, with the compiled kernels' results."""
    code = """if True:
        import json, numpy as np
        from kvtier.replay import replay, ReplayTier
        ids = (np.arange(600) * 7 % 41).astype(np.uint64)
        off = np.arange(0, 601, 3)
        chains = (["lru"], ["arc"], ["s3fifo"], ["lru", "lru"], ["sieve", "arc"])
        print(json.dumps([[vars(t) for t in replay(off, ids, [ReplayTier(name=str(i), policy=p, capacity_blocks=4 + i)
                           for i, p in enumerate(ps)]).tiers] for ps in chains]))
    """
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    interpreted = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True,
                                 text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    env["NUMBA_DISABLE_JIT"] = "0"
    compiled = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent.parent)
    assert json.loads(interpreted.stdout) == json.loads(compiled.stdout)


@given(rows=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=8), min_size=1, max_size=80),
       cap=st.integers(1, 12))
def test_belady_kernel_equals_general_kernel(rows, cap):
    offsets, hashes = csr(rows)
    fast = replay(offsets, hashes, policy="belady", capacity_blocks=cap, record=True)
    general = replay(offsets, hashes, policy="belady", capacity_blocks=cap, record=True, fast=False)
    assert_same_replay(fast, general)


def test_belady_kernel_equals_general_kernel_on_a_long_trace():
    rng = np.random.default_rng(12)
    ids = (rng.zipf(1.2, 40_000) % 3000).astype(np.uint64)
    offsets = np.arange(0, 40_001, 4, dtype=np.int64)
    for cap in (1, 60, 700):
        assert_same_replay(replay(offsets, ids, policy="belady", capacity_blocks=cap, record=True),
                           replay(offsets, ids, policy="belady", capacity_blocks=cap, record=True, fast=False))
