"""Layer-wise fetch: the KV of layer i+1 arrives while layer i computes.

An engine that stores its KV per layer can start a turn before the whole prefix is back:
it asks the store for layer 0 of every prefix block, then, while layer 0 computes over it,
for layer 1, and so on (LMCache and vLLM's KV connectors overlap so). Here each stored
block is one layer of one page (``layer_hashes`` gives each its own key), a layer of the
``PagedKV`` (``kv.pages[:n, layer]``) is the ``out`` of one ``fetch_many_async``, and
``Transformer.forward``'s ``before_layer`` hook waits for a layer's future just before that
layer needs it.

``run_layerwise`` measures one turn three ways on the same store: the fetch alone, the
compute alone (KV already in place), and the two overlapped; it checks that the overlapped
turn's logits are bitwise those of the turn computed without any store, and reports the
fetch time hidden behind compute beside what ``kvtier.cost.layerwise_overlap_time_s``
predicts from the two measured parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kvtier.cost import layerwise_overlap_time_s
from kvtier.errors import ConfigError
from kvtier.examples.transformer import PagedKV, Transformer
from kvtier.hashing import block_hashes
from kvtier.validation import check_int

#: Odd 64-bit constant that spreads layer numbers over the key space (splitmix64's step).
_LAYER_STEP = 0x9E3779B97F4A7C15


def layer_hashes(prefix_hashes, num_layers: int) -> np.ndarray:
    """``(num_layers, n)`` uint64 keys: one per layer of each block of ``prefix_hashes``
    (distinct for distinct (block, layer) pairs with overwhelming probability)."""
    check_int(num_layers, "num_layers", minimum=1)
    h = np.asarray(prefix_hashes, dtype=np.uint64)
    steps = (np.arange(1, num_layers + 1, dtype=np.uint64) * np.uint64(_LAYER_STEP))[:, None]
    x = h[None, :] ^ steps
    # splitmix64's finaliser, so that nearby keys land far apart
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def layer_block_shape(kv: PagedKV) -> tuple[int, ...]:
    """The store block of a layer-wise store: one layer of one page."""
    return kv.block_shape[1:]


def put_layers(store, keys: np.ndarray, kv: PagedKV, num_blocks: int) -> None:
    """Store layer ``l`` of pages ``0..num_blocks-1`` under ``keys[l]``, a batch per layer."""
    for layer in range(keys.shape[0]):
        store.put_many(keys[layer, :num_blocks], kv.pages[:num_blocks, layer])


@dataclass(frozen=True, kw_only=True)
class LayerwiseReport:
    """One turn timed three ways (seconds), and whether the overlapped turn's logits are
    bitwise those computed without a store."""

    num_layers: int
    prefix_blocks: int
    new_tokens: int
    fetch_s: float  # every layer's fetch, one after another, nothing else running
    compute_s: float  # the turn's forward with the KV already in place
    overlapped_s: float  # fetch of layer i+1 while layer i computes
    predicted_overlapped_s: float  # cost.layerwise_overlap_time_s(fetch_s, compute_s, layers)
    logits_equal: bool

    @property
    def hidden_s(self) -> float:
        """Fetch time hidden behind compute, as measured."""
        return max(0.0, self.fetch_s + self.compute_s - self.overlapped_s)

    @property
    def predicted_hidden_s(self) -> float:
        return self.fetch_s + self.compute_s - self.predicted_overlapped_s

    def lines(self) -> list[str]:
        ms = 1e3
        return [
            f"layer-wise fetch: {self.prefix_blocks} blocks x {self.num_layers} layers, then {self.new_tokens} new tokens",
            f"  fetch alone {self.fetch_s * ms:.2f} ms, compute alone {self.compute_s * ms:.2f} ms, "
            f"overlapped {self.overlapped_s * ms:.2f} ms (cost model: {self.predicted_overlapped_s * ms:.2f} ms)",
            f"  fetch hidden behind compute: measured {self.hidden_s * ms:.2f} ms "
            f"({self.hidden_s / self.fetch_s:.0%} of the fetch), predicted {self.predicted_hidden_s * ms:.2f} ms "
            f"({self.predicted_hidden_s / self.fetch_s:.0%}); logits bitwise equal: {self.logits_equal}",
        ]


def run_layerwise(model: Transformer, store, tokens, *, prefix_blocks: int, block_tokens: int,
                  repeats: int = 3) -> LayerwiseReport:
    """Compute the prefix (``prefix_blocks`` blocks of ``tokens``), store it layer by layer,
    then time the turn over the rest of ``tokens`` three ways (best of ``repeats``): fetch
    alone, compute alone, and overlapped. ``store``'s block shape must be
    ``layer_block_shape`` of a ``PagedKV`` for ``model`` with ``block_tokens``."""
    c = model.config
    toks = np.asarray(tokens, dtype=np.int64)
    check_int(prefix_blocks, "prefix_blocks", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    split = prefix_blocks * block_tokens
    if toks.ndim != 1 or toks.size <= split:
        raise ConfigError(f"tokens: got {toks.size}, expected more than prefix_blocks * block_tokens = {split}")
    keys = layer_hashes(block_hashes(toks[:split], block_tokens), c.num_layers)

    reference = model.new_cache(block_tokens, toks.size)
    model.forward(toks[:split], reference, 0, logits="none")
    want = model.forward(toks[split:], reference, split, logits="all")
    put_layers(store, keys, reference, prefix_blocks)

    def fresh() -> PagedKV:
        kv = model.new_cache(block_tokens, toks.size)
        for p in range(prefix_blocks):
            kv.mark_full(p)  # filled below, layer by layer, before any layer reads it
        return kv

    def fetch_all(kv: PagedKV) -> None:
        for layer in range(c.num_layers):
            if not store.fetch_many(keys[layer], kv.pages[:prefix_blocks, layer], promote=False).found.all():
                raise ConfigError("store: a prefix block was not found; give the store room for the whole prefix")

    fetch_s = compute_s = overlapped_s = float("inf")
    equal = True
    for _ in range(repeats):
        kv = fresh()
        t0 = time.perf_counter()
        fetch_all(kv)
        fetch_s = min(fetch_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = model.forward(toks[split:], kv, split, logits="all")
        compute_s = min(compute_s, time.perf_counter() - t0)
        equal &= bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))

        kv = fresh()
        futures: dict[int, object] = {}

        def before_layer(layer: int, kv=kv, futures=futures) -> None:
            if not futures:  # ask for every layer at once, in order: the I/O threads never wait for us
                for ahead in range(c.num_layers):
                    futures[ahead] = store.fetch_many_async(keys[ahead], kv.pages[:prefix_blocks, ahead], promote=False)
            if not futures[layer].result().found.all():
                raise ConfigError("store: a prefix block was not found; give the store room for the whole prefix")

        t0 = time.perf_counter()
        got = model.forward(toks[split:], kv, split, logits="all", before_layer=before_layer)
        overlapped_s = min(overlapped_s, time.perf_counter() - t0)
        equal &= bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))
    predicted = float(layerwise_overlap_time_s(fetch_s, compute_s, c.num_layers))
    return LayerwiseReport(num_layers=c.num_layers, prefix_blocks=prefix_blocks, new_tokens=int(toks.size - split),
                           fetch_s=fetch_s, compute_s=compute_s, overlapped_s=overlapped_s,
                           predicted_overlapped_s=predicted, logits_equal=equal)
