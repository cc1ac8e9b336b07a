"""The example transformer whose paged attention reads KV from kvtier.

The model is checked against a slow float64 reference written from the definitions; its
KV is checked to be bitwise independent of how positions are batched (prefill, decode,
recompute of any block range), to round-trip through every tier of a store bit for bit,
and to live in page-aligned pages. Timings are never asserted.
"""

from __future__ import annotations

import math
import sys
import threading
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvtier import ConfigError, TieredStore, dram, flash, hbm
from kvtier.buffers import PAGE_ALIGN_BYTES, aligned_empty
from kvtier.examples.copy_alignment import OFFSETS, measure_copy_alignment
from kvtier.examples.transformer import PagedKV, Transformer, TransformerConfig
from kvtier.tiers import flash_slot_bytes

TINY = TransformerConfig.tiny()
B = 16


@pytest.fixture(scope="module")
def model():
    return Transformer(TINY)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def _tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, TINY.vocab_size, n)


# ---------------------------------------------------------------------------------------
# a slow reference: the same model from its definition, float64, one query at a time
# ---------------------------------------------------------------------------------------


def naive_logits(m: Transformer, tokens: np.ndarray) -> np.ndarray:
    c = m.config
    f = np.float64
    hd, nq, nk = c.head_dim, c.num_q_heads, c.num_kv_heads
    T = tokens.size

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + c.norm_eps) * w.astype(f)

    def rope(x, p):  # x: (heads, hd)
        half = hd // 2
        ang = p * c.rope_theta ** (-np.arange(0, hd, 2, dtype=f) / hd)
        x1, x2 = x[:, :half], x[:, half:]
        return np.concatenate((x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)), axis=-1)

    h = m.embed[tokens].astype(f)
    for layer in range(c.num_layers):
        x = rms(h, m.attn_norm[layer])
        qkv = x @ m.w_qkv[layer].astype(f)
        qs = [rope(qkv[i, : nq * hd].reshape(nq, hd), i) for i in range(T)]
        ks = [rope(qkv[i, nq * hd : (nq + nk) * hd].reshape(nk, hd), i) for i in range(T)]
        vs = [qkv[i, (nq + nk) * hd :].reshape(nk, hd) for i in range(T)]
        attn = np.zeros((T, nq * hd))
        for i in range(T):
            for head in range(nq):
                kvh = head // (nq // nk)
                scores = np.array([qs[i][head] @ ks[t][kvh] for t in range(i + 1)]) / math.sqrt(hd)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                attn[i, head * hd : (head + 1) * hd] = sum(w[t] * vs[t][kvh] for t in range(i + 1))
        h = h + attn @ m.w_out[layer].astype(f)
        x = rms(h, m.mlp_norm[layer])
        gu = x @ m.w_gate_up[layer].astype(f)
        gate, up = gu[:, : c.d_ff], gu[:, c.d_ff :]
        h = h + (gate / (1 + np.exp(-gate)) * up) @ m.w_down[layer].astype(f)
    return rms(h, m.final_norm) @ m.lm_head.astype(f)


def test_matches_the_slow_float64_reference(model):
    tokens = _tokens(40, seed=3)
    kv = model.new_cache(B, 40)
    got = model.forward(tokens, kv, 0, logits="all")
    want = naive_logits(model, tokens)
    assert got.dtype == np.float32 and got.shape == (40, TINY.vocab_size)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)  # float32 vs float64 rounding only


def test_golden_logits_of_the_tiny_model(model):
    kv = model.new_cache(B, 8)
    logits = model.forward(np.arange(8), kv, 0)
    # Seeded weights: these numbers only change if the model's definition changes.
    assert int(np.argmax(logits)) == 35
    np.testing.assert_allclose(logits[:4], [-2.1188, 0.0116, -1.1459, 1.1441], atol=2e-4)
    other_cfg = TransformerConfig.tiny()
    again = Transformer(other_cfg).forward(np.arange(8), PagedKV(other_cfg, B, 8), 0)
    assert np.array_equal(_bits(again), _bits(logits))  # same seed, same model, same bits
    seed1 = TransformerConfig.tiny(seed=1)
    assert not np.array_equal(Transformer(seed1).forward(np.arange(8), PagedKV(seed1, B, 8), 0), logits)


def test_model_spec_matches_the_pages_and_the_store():
    spec = TINY.model_spec()
    kv = PagedKV(TINY, B, 40)
    assert spec.block_shape(B) == kv.block_shape == (2, 2, B, 2, 8)
    assert spec.kv_bytes_per_token == 2 * 2 * 2 * 8 * 4 == 256
    assert spec.kv_dtype == np.float32
    # 2 layers x (qkv 32x64 + out 32x32 + mlp 3x32x64)
    assert TINY.params_per_token == 2 * (32 * 64 + 32 * 32 + 3 * 32 * 64) == spec.active_params
    assert spec.attention_flops_coef == 4 * 2 * 4 * 8
    d = TransformerConfig()
    assert d.model_spec().kv_bytes_per_token == 4096 and d.group_size == 2


# ---------------------------------------------------------------------------------------
# KV and logits do not depend on how positions are batched
# ---------------------------------------------------------------------------------------


def test_prefill_decode_and_chunks_agree_bitwise(model):
    tokens = _tokens(90, seed=5)
    kv_all = model.new_cache(B, 90)
    all_logits = model.forward(tokens, kv_all, 0, logits="all")
    kv_dec = model.new_cache(B, 90)
    model.forward(tokens[:1], kv_dec, 0)
    dec = [model.decode_step(int(tokens[p]), kv_dec, p) for p in range(1, 90)]
    assert np.array_equal(_bits(np.stack(dec)), _bits(all_logits[1:]))
    assert np.array_equal(_bits(kv_dec.pages), _bits(kv_all.pages))
    kv_chunks = model.new_cache(B, 90)
    for a, b in ((0, 7), (7, 40), (40, 41), (41, 90)):
        out = model.forward(tokens[a:b], kv_chunks, a, logits="all")
        assert np.array_equal(_bits(out), _bits(all_logits[a:b]))
    assert np.array_equal(_bits(kv_chunks.pages), _bits(kv_all.pages))


@given(n_blocks=st.integers(1, 8), data=st.data())
def test_recomputing_any_block_range_gives_the_same_kv_bits(n_blocks, data):
    model = Transformer(TINY)
    extra = data.draw(st.integers(0, B - 1), label="extra")
    tokens = _tokens(n_blocks * B + extra, seed=data.draw(st.integers(0, 3), label="seed"))
    kv = model.new_cache(B, tokens.size)
    # The original computation: split at arbitrary points (prefill chunks, decode steps).
    cuts = sorted(set(data.draw(st.lists(st.integers(1, tokens.size - 1), max_size=4), label="cuts")))
    for a, b in zip([0, *cuts], [*cuts, tokens.size]):
        model.forward(tokens[a:b], kv, a, logits="none")
    first = data.draw(st.integers(0, n_blocks - 1), label="first")
    end = data.draw(st.integers(first + 1, n_blocks), label="end")
    again = model.new_cache(B, tokens.size)
    again.pages[:first] = kv.pages[:first]  # as if fetched from a store
    for i in range(first):
        again.mark_full(i)
    model.recompute_blocks(tokens, again, first, end)
    assert np.array_equal(_bits(again.pages[first:end]), _bits(kv.pages[first:end]))
    assert again.valid_tokens() == end * B


def test_forward_validates_its_inputs(model):
    kv = model.new_cache(B, 64)
    with pytest.raises(ConfigError, match="page 0 is incomplete"):
        model.forward(_tokens(4), kv, 16)  # no KV for positions 0..15
    with pytest.raises(ConfigError, match="tokens"):
        model.forward(np.array([TINY.vocab_size]), kv, 0)
    with pytest.raises(ConfigError, match="exceed the cache"):
        model.forward(_tokens(65), kv, 0)
    with pytest.raises(ConfigError, match="logits"):
        model.forward(_tokens(2), kv, 0, logits="some")
    with pytest.raises(ConfigError, match="PagedKV"):
        model.forward(_tokens(2), PagedKV(TransformerConfig.tiny(seed=2), B, 8), 0)
    with pytest.raises(ConfigError, match="num_q_heads"):
        TransformerConfig.tiny(num_q_heads=3)
    with pytest.raises(ConfigError, match="head_dim"):
        TransformerConfig.tiny(head_dim=7)
    with pytest.raises(ConfigError, match="page"):
        kv.page(4)


def test_pages_round_trip_through_every_tier_bit_for_bit(model, tmp_path):
    tokens = _tokens(4 * B, seed=9)
    kv = model.new_cache(B, tokens.size)
    model.forward(tokens, kv, 0, logits="none")
    spec = TINY.model_spec()
    bb = spec.block_bytes(B)
    tiers = [hbm(bb, name="hbm"), dram(bb, name="dram"), flash(4 * flash_slot_bytes(bb), tmp_path, codec="lz4", name="flash")]
    with TieredStore.for_model(spec, B, tiers) as store:
        for i in range(4):
            store.put(100 + i, kv.page(i))
        assert store.lookup([100, 101, 102, 103]).counts() == {"hbm": 1, "dram": 1, "flash": 2, "missing": 0}
        back = model.new_cache(B, tokens.size)
        for i in range(4):
            assert store.fetch(100 + i, out=back.page(i), promote=False) is not None
            back.mark_full(i)
    assert np.array_equal(_bits(back.pages), _bits(kv.pages))
    # Fetched pages serve attention exactly as computed ones do.
    more = _tokens(5, seed=10)
    cache_a, cache_b = model.new_cache(B, 4 * B + 5), model.new_cache(B, 4 * B + 5)
    cache_a.pages[:4] = kv.pages
    cache_b.pages[:4] = back.pages
    for c in (cache_a, cache_b):
        for i in range(4):
            c.mark_full(i)
    assert np.array_equal(_bits(model.forward(more, cache_a, 4 * B)), _bits(model.forward(more, cache_b, 4 * B)))


def test_aligned_empty_starts_on_the_boundary_asked_for():
    for shape, dtype, align in (((3, 5), np.float32, 4096), (7, np.uint8, 64), ((2, 0, 3), np.float64, 1), ((4,), "f4", 256)):
        a = aligned_empty(shape, dtype, align_bytes=align)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == np.dtype(dtype)
        assert a.ctypes.data % align == 0 and a.flags.c_contiguous and a.flags.writeable
        a[...] = 1  # it owns enough memory for every element
        assert a.sum() == a.size
    assert aligned_empty((2, 2), np.float32).ctypes.data % PAGE_ALIGN_BYTES == 0
    for bad in (0, 3, 48, True, 64.0):
        with pytest.raises(ConfigError, match="align_bytes"):
            aligned_empty((2,), np.uint8, align_bytes=bad)
    with pytest.raises(ConfigError, match="shape"):
        aligned_empty((2, -1), np.uint8)


def test_kv_pages_start_on_cache_lines():
    """Block copies into a page then run at full speed (a copy between buffers at different
    offsets within a cache line can take twice as long; see ``aligned_empty``)."""
    for cfg in (TINY, TransformerConfig()):
        kv = PagedKV(cfg, B, 5 * B)
        assert kv.pages.ctypes.data % PAGE_ALIGN_BYTES == 0
        assert all(kv.page(i).ctypes.data % 64 == 0 for i in range(kv.num_pages))
        assert not kv.pages.any() and kv.pages.flags.c_contiguous


def test_copy_alignment_grid_times_every_offset_pair():
    ticks = iter(range(10_000))
    grid = measure_copy_alignment(block_bytes=256, blocks=4, repeats=1, clock=lambda: float(next(ticks)))
    assert grid.offsets == OFFSETS == (0, 16, 32, 48) and grid.block_bytes == 256
    assert grid.seconds_per_copy.shape == (4, 4)
    assert np.all(grid.seconds_per_copy == 0.25)  # one tick per pass of 4 copies, with this clock
    assert "src\\dst" in grid.format() and len(grid.format().splitlines()) == 6
    with pytest.raises(ConfigError, match="blocks"):
        measure_copy_alignment(blocks=0)


@pytest.mark.parametrize("tier", ["dram", "flash"])
def test_layerwise_fetch_overlaps_compute_and_keeps_logits_bitwise(model, tmp_path, tier):
    """Each layer of each prefix block stored as its own block; the turn fetches layer i+1
    (asynchronously, into ``kv.pages[:n, i+1]``) while layer i computes. The logits equal
    those computed without a store, bit for bit, in every round; the report is complete and
    its parts add up (times are not asserted)."""
    from kvtier.examples.layerwise import layer_block_shape, layer_hashes, run_layerwise

    shape = layer_block_shape(model.new_cache(B, B))
    block_bytes = int(np.prod(shape)) * 4
    n_blocks = 6 * TINY.num_layers
    spec = dram(n_blocks * block_bytes) if tier == "dram" else flash(n_blocks * flash_slot_bytes(block_bytes), tmp_path)
    store = TieredStore([spec], block_shape=shape, dtype=np.float32, flash_queue_depth=2)
    report = run_layerwise(model, store, _tokens(6 * B + 3, seed=5), prefix_blocks=6, block_tokens=B, repeats=3)
    store.close()
    assert report.logits_equal
    assert report.num_layers == TINY.num_layers and report.new_tokens == 3 and report.repeats == 3
    assert report.prefix_blocks == 6 and report.block_tokens == B
    assert report.fetch_s > 0 and report.compute_s > 0 and report.overlapped_s > 0
    assert report.first_wait_s >= 0 and report.later_wait_s >= 0
    parts = report.compute_s + report.first_wait_s + report.later_wait_s + report.slowdown_s
    assert math.isclose(parts, report.overlapped_s, rel_tol=1e-12)
    assert math.isclose(report.hidden_s, report.fetch_s + report.compute_s - report.overlapped_s)
    assert report.predicted_overlapped_s <= report.fetch_s + report.compute_s
    assert report.switch_interval_s == sys.getswitchinterval()
    assert len(report.lines()) == 5 and "logits bitwise equal: True" in report.lines()[-1]
    keys = layer_hashes([1, 2, 3], 4)
    assert keys.shape == (4, 3) and len(set(keys.ravel().tolist())) == 12


class _ManualStore:
    """A store whose ``fetch_many_async`` returns a future the test completes by hand."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, Future]] = []

    def fetch_many_async(self, block_hashes, out, *, promote=None):
        assert promote is False
        future = Future()
        self.calls.append((np.asarray(block_hashes), out, future))
        return future


def _landed(found) -> SimpleNamespace:
    return SimpleNamespace(found=np.asarray(found, dtype=bool))


def test_layerwise_fetch_submits_each_layer_once_the_previous_one_landed():
    """Layer l+1 is asked for only after layer l has landed (so layers land in order
    whatever the store's I/O threads), each into its own layer of the pages; a block not
    found, or a failed fetch, fails that layer and every later one, and nothing more is
    fetched; ``close`` fetches no more layers and waits for the one in flight."""
    from kvtier.examples.layerwise import LayerwiseFetch, layer_hashes

    m = Transformer(TransformerConfig.tiny(num_layers=3))
    kv = m.new_cache(B, 4 * B)
    keys = layer_hashes([11, 12, 13], 3)
    store = _ManualStore()
    fetch = LayerwiseFetch(store, keys, kv, 3)
    assert len(store.calls) == 1
    for layer in range(3):
        hashes, out, future = store.calls[layer]
        assert np.array_equal(hashes, keys[layer])
        assert out.shape == (3, *kv.block_shape[1:]) and np.shares_memory(out, kv.pages[:3, layer])
        assert not np.shares_memory(out, kv.pages[:, (layer + 1) % 3])
        future.set_result(_landed([True] * 3))
        fetch.wait(layer)
        assert len(store.calls) == min(layer + 2, 3)
    fetch.close()

    store = _ManualStore()
    fetch = LayerwiseFetch(store, keys, kv, 3)
    store.calls[0][2].set_result(_landed([True] * 3))
    store.calls[1][2].set_result(_landed([True, False, True]))
    fetch.wait(0)
    for layer in (1, 2):
        with pytest.raises(ConfigError, match="block 1 of layer 1"):
            fetch.wait(layer)
    assert len(store.calls) == 2
    fetch.close()

    store = _ManualStore()
    with LayerwiseFetch(store, keys, kv, 3) as fetch:
        store.calls[0][2].set_exception(OSError("disk gone"))
        for layer in range(3):
            with pytest.raises(OSError, match="disk gone"):
                fetch.wait(layer)
    assert len(store.calls) == 1

    store = _ManualStore()
    fetch = LayerwiseFetch(store, keys, kv, 3)
    threading.Timer(0.01, store.calls[0][2].set_result, args=(_landed([True] * 3),)).start()
    fetch.close()  # returns once layer 0, in flight, has landed
    fetch.wait(0)
    with pytest.raises(ConfigError, match="closed"):
        fetch.wait(1)
    assert len(store.calls) == 1

    with pytest.raises(ConfigError, match="keys.shape"):
        LayerwiseFetch(_ManualStore(), keys[:, :2], kv, 3)


def test_run_layerwise_sets_the_switch_interval_asked_for_and_restores_it(model):
    from kvtier.examples.layerwise import layer_block_shape, run_layerwise

    shape = layer_block_shape(model.new_cache(B, B))
    store = TieredStore([dram(4 * TINY.num_layers * int(np.prod(shape)) * 4)], block_shape=shape, dtype=np.float32)
    before = sys.getswitchinterval()
    report = run_layerwise(model, store, _tokens(4 * B + 2, seed=7), prefix_blocks=4, block_tokens=B, repeats=1,
                           switch_interval_s=0.0005)
    assert report.switch_interval_s == 0.0005 and report.logits_equal
    assert sys.getswitchinterval() == before
    with pytest.raises(ConfigError, match="switch_interval_s"):
        run_layerwise(model, store, _tokens(4 * B + 2, seed=7), prefix_blocks=4, block_tokens=B, switch_interval_s=0)
    assert sys.getswitchinterval() == before
    store.close()


def test_layerwise_command_line_prints_a_report(capsys):
    from kvtier.examples.layerwise import main

    report = main(["--layers", "2", "--prefix-blocks", "3", "--new-tokens", "2", "--repeats", "2"])
    out = capsys.readouterr().out.splitlines()
    assert report.logits_equal and report.num_layers == 2 and report.prefix_blocks == 3 and report.new_tokens == 2
    assert out[0].startswith("store: flash (page cache), io_threads 2, flash_queue_depth 1")
    assert out[1:] == report.lines()
