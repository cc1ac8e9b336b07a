"""Layer-wise fetch: the KV of layer i+1 arrives while layer i computes.

An engine that stores its KV per layer can start a turn before the whole prefix is back:
it asks the store for layer 0 of every prefix block, then, while layer 0 computes over it,
for layer 1, and so on (LMCache and vLLM's KV connectors overlap so). Here each stored
block is one layer of one page (``layer_hashes`` gives each its own key), a layer of the
``PagedKV`` (``kv.pages[:n, layer]``) is the ``out`` of one ``fetch_many_async``, and
``Transformer.forward``'s ``before_layer`` hook waits for a layer's fetch just before that
layer needs it (``LayerwiseFetch``).

``run_layerwise`` measures one turn three ways on the same store: the fetch alone, the
compute alone (KV already in place), and the two overlapped; it checks that the logits of
every turn computed from the store are bitwise those of the turn computed without one, and
reports the fetch time hidden behind compute beside what
``kvtier.cost.layerwise_overlap_time_s`` predicts from the two measured parts, with the
overlapped time taken apart: how long the compute waited for its first layer, for the later
layers, and how much slower it ran with the fetch beside it. ``python -m
kvtier.examples.layerwise`` runs it on a flash tier (``--help`` for the sizes and knobs);
docs/examples.md explains where, on a small CPU machine, the overlap goes.
"""

from __future__ import annotations

import functools
import sys
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import numpy as np

from kvtier.cost import layerwise_overlap_time_s
from kvtier.errors import ConfigError
from kvtier.examples.transformer import PagedKV, Transformer
from kvtier.hashing import block_hashes
from kvtier.validation import check_int, check_number

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


class LayerwiseFetch:
    """The fetch of a prefix's KV into ``kv``, layer after layer, on ``store``'s I/O threads.

    Layer 0's ``fetch_many_async`` (``keys[0]`` into ``kv.pages[:num_blocks, 0]``) is
    submitted at construction (raising what the store raises for bad arguments), and layer
    ``l+1``'s by the I/O thread as soon as layer ``l``'s completes, so the layers land in
    order whatever the store's ``io_threads``. (Queued all at once, two I/O threads take two
    layers and the store's lock, not the queue, decides which is served first: layer 2 can
    land before layer 1.) ``wait(layer)`` returns once that layer's KV is in place; it
    raises ``ConfigError`` if a block of that layer or an earlier one was not found, or what
    the fetch raised (no later layer is fetched then). ``close()``, or leaving a ``with``
    block, submits no more layers and waits for the one in flight, after which ``kv`` is the
    caller's again.
    """

    def __init__(self, store, keys: np.ndarray, kv: PagedKV, num_blocks: int) -> None:
        keys = np.asarray(keys)
        check_int(num_blocks, "num_blocks", minimum=1, maximum=kv.num_pages)
        if keys.shape != (kv.config.num_layers, num_blocks):
            raise ConfigError(f"keys.shape: got {keys.shape}, expected (num_layers, num_blocks) = "
                              f"{(kv.config.num_layers, num_blocks)}")
        self._store, self._keys, self._kv, self._num_blocks = store, keys, kv, num_blocks
        self._landed = [Future() for _ in range(keys.shape[0])]
        self._closing = False
        self._start(0)

    def _start(self, layer: int) -> None:
        fetch = self._store.fetch_many_async(self._keys[layer], self._kv.pages[: self._num_blocks, layer],
                                             promote=False)
        fetch.add_done_callback(functools.partial(self._on_done, layer))

    def _on_done(self, layer: int, fetch: Future) -> None:
        """Runs on the I/O thread that finished ``layer`` (or, if it was already done, on
        the thread that submitted it)."""
        try:
            result = fetch.result()
        except Exception as e:  # noqa: BLE001 - a cancelled or failed fetch ends the chain
            self._fail(layer, e)
            return
        if not result.found.all():
            missing = int(np.flatnonzero(~result.found)[0])
            self._fail(layer, ConfigError(f"store: block {missing} of layer {layer} of the prefix was not found; "
                                          f"expected a store with room for the whole prefix"))
            return
        nxt = layer + 1
        if nxt < len(self._landed):  # submitted before waking the compute: the I/O thread goes straight on
            if self._closing:
                self._fail(nxt, ConfigError("LayerwiseFetch: closed before this layer was fetched"))
            else:
                try:
                    self._start(nxt)
                except Exception as e:  # noqa: BLE001 - e.g. the store closed: handed to whoever waits
                    self._fail(nxt, e)
        self._landed[layer].set_result(result)

    def _fail(self, layer: int, error: BaseException) -> None:
        for landed in self._landed[layer:]:
            landed.set_exception(error)

    def wait(self, layer: int) -> None:
        """Block until layer ``layer``'s KV is in ``kv`` (raising what its fetch raised)."""
        self._landed[layer].result()

    def close(self) -> None:
        self._closing = True
        wait_futures(self._landed)

    def __enter__(self) -> LayerwiseFetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True, kw_only=True)
class LayerwiseReport:
    """One turn timed three ways (seconds, the median over ``repeats`` rounds), and whether
    the logits of every turn computed from the store are bitwise those computed without
    one. The overlapped time is also taken apart: ``first_wait_s`` (the compute waiting for
    layer 0's KV), ``later_wait_s`` (waiting for layers 1..n-1) and ``slowdown_s`` (the
    rest: the compute running slower beside the fetch)."""

    num_layers: int
    prefix_blocks: int
    block_tokens: int
    new_tokens: int
    repeats: int
    switch_interval_s: float  # sys.getswitchinterval() while the rounds ran
    fetch_s: float  # every layer's fetch, one after another, nothing else running
    compute_s: float  # the turn's forward with the KV already in place
    overlapped_s: float  # the fetch of layer i+1 while layer i computes
    first_wait_s: float  # of overlapped_s: the forward waiting in before_layer(0)
    later_wait_s: float  # of overlapped_s: the forward waiting in before_layer(1..n-1), summed
    predicted_overlapped_s: float  # cost.layerwise_overlap_time_s(fetch_s, compute_s, num_layers)
    logits_equal: bool

    @property
    def hidden_s(self) -> float:
        """Fetch time hidden behind compute, as measured (negative: overlapping cost more
        than fetching first and computing after)."""
        return self.fetch_s + self.compute_s - self.overlapped_s

    @property
    def predicted_hidden_s(self) -> float:
        return self.fetch_s + self.compute_s - self.predicted_overlapped_s

    @property
    def slowdown_s(self) -> float:
        """What the waits do not account for: the compute's own slowdown beside the fetch
        (the cost model assumes none)."""
        return self.overlapped_s - self.compute_s - self.first_wait_s - self.later_wait_s

    @property
    def predicted_first_wait_s(self) -> float:
        """The cost model's wait for layer 0: one layer's fetch."""
        return self.fetch_s / self.num_layers

    def lines(self) -> list[str]:
        ms = 1e3
        return [
            f"layer-wise fetch: {self.prefix_blocks} blocks of {self.block_tokens} tokens x {self.num_layers} layers, "
            f"then {self.new_tokens} new tokens (medians of {self.repeats} rounds)",
            f"  fetch alone {self.fetch_s * ms:.2f} ms, compute alone {self.compute_s * ms:.2f} ms, "
            f"overlapped {self.overlapped_s * ms:.2f} ms (cost model: {self.predicted_overlapped_s * ms:.2f} ms)",
            f"  fetch hidden behind compute: measured {self.hidden_s * ms:.2f} ms "
            f"({self.hidden_s / self.fetch_s:.0%} of the fetch), predicted {self.predicted_hidden_s * ms:.2f} ms "
            f"({self.predicted_hidden_s / self.fetch_s:.0%})",
            f"  overlapped = compute alone + wait for layer 0 {self.first_wait_s * ms:.2f} ms "
            f"(model {self.predicted_first_wait_s * ms:.2f}) + later waits {self.later_wait_s * ms:.2f} ms "
            f"+ compute slowed beside the fetch {self.slowdown_s * ms:.2f} ms",
            f"  logits bitwise equal: {self.logits_equal}",
        ]


def run_layerwise(model: Transformer, store, tokens, *, prefix_blocks: int, block_tokens: int,
                  repeats: int = 5, switch_interval_s: float | None = None) -> LayerwiseReport:
    """Compute the prefix (``prefix_blocks`` blocks of ``tokens``), store it layer by layer,
    then time the turn over the rest of ``tokens`` three ways: fetch alone, compute alone,
    and overlapped (``LayerwiseFetch``). Each of ``repeats`` rounds runs the three once,
    each on a new ``PagedKV``, in an order that rotates from round to round (so none always
    follows another), and the report gives each one's median. ``store``'s block shape must
    be ``layer_block_shape`` of a ``PagedKV`` for ``model`` with ``block_tokens``.
    ``switch_interval_s``: Python's GIL switch interval while the rounds run (default: as
    it is), restored afterwards and reported either way."""
    c = model.config
    toks = np.asarray(tokens, dtype=np.int64)
    check_int(prefix_blocks, "prefix_blocks", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    if switch_interval_s is not None:
        check_number(switch_interval_s, "switch_interval_s", minimum=0, min_exclusive=True)
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
            kv.mark_full(p)  # filled by each measurement, layer by layer, before any layer reads it
        return kv

    equal = True

    def check(got: np.ndarray) -> None:
        nonlocal equal
        equal &= bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))

    def fetch_alone() -> tuple[float, ...]:
        kv = fresh()
        t0 = time.perf_counter()
        for layer in range(c.num_layers):
            if not store.fetch_many(keys[layer], kv.pages[:prefix_blocks, layer], promote=False).found.all():
                raise ConfigError(f"store: a block of layer {layer} of the prefix was not found; "
                                  f"expected a store with room for the whole prefix")
        return (time.perf_counter() - t0,)

    def compute_alone() -> tuple[float, ...]:
        kv = fresh()
        kv.pages[:prefix_blocks] = reference.pages[:prefix_blocks]
        t0 = time.perf_counter()
        got = model.forward(toks[split:], kv, split, logits="all")
        elapsed = time.perf_counter() - t0
        check(got)
        return (elapsed,)

    def overlapped() -> tuple[float, ...]:
        kv = fresh()
        waits = np.zeros(c.num_layers)
        t0 = time.perf_counter()
        with LayerwiseFetch(store, keys, kv, prefix_blocks) as fetch:

            def before_layer(layer: int) -> None:
                w0 = time.perf_counter()
                fetch.wait(layer)
                waits[layer] += time.perf_counter() - w0

            got = model.forward(toks[split:], kv, split, logits="all", before_layer=before_layer)
            elapsed = time.perf_counter() - t0
        check(got)
        return elapsed, float(waits[0]), float(waits[1:].sum())

    measures = (fetch_alone, compute_alone, overlapped)
    times: dict = {m: [] for m in measures}
    saved = sys.getswitchinterval()
    if switch_interval_s is not None:
        sys.setswitchinterval(switch_interval_s)
    try:
        for r in range(repeats):
            k = r % len(measures)
            for measure in measures[k:] + measures[:k]:
                times[measure].append(measure())
    finally:
        sys.setswitchinterval(saved)
    (fetch_s,), (compute_s,), (overlapped_s, first_wait_s, later_wait_s) = (
        np.median(np.array(times[m]), axis=0).tolist() for m in measures)
    predicted = float(layerwise_overlap_time_s(fetch_s, compute_s, c.num_layers))
    return LayerwiseReport(num_layers=c.num_layers, prefix_blocks=prefix_blocks, block_tokens=block_tokens,
                           new_tokens=int(toks.size - split),
                           repeats=repeats, switch_interval_s=saved if switch_interval_s is None else switch_interval_s,
                           fetch_s=fetch_s, compute_s=compute_s, overlapped_s=overlapped_s, first_wait_s=first_wait_s,
                           later_wait_s=later_wait_s, predicted_overlapped_s=predicted, logits_equal=equal)


def main(argv=None) -> LayerwiseReport:
    """``python -m kvtier.examples.layerwise``: one measured turn from a flash tier in a
    temporary directory (its reads come from the page cache), printed."""
    import argparse
    import tempfile

    from kvtier import TieredStore, flash
    from kvtier.examples.transformer import TransformerConfig
    from kvtier.tiers import flash_slot_bytes

    p = argparse.ArgumentParser(prog="python -m kvtier.examples.layerwise", description=main.__doc__)
    p.add_argument("--layers", type=int, default=TransformerConfig.num_layers)
    p.add_argument("--block-tokens", type=int, default=16)
    p.add_argument("--prefix-blocks", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=4)
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--io-threads", type=int, default=2, help="the store's io_threads")
    p.add_argument("--flash-queue-depth", type=int, default=1, help="the store's flash_queue_depth")
    p.add_argument("--switch-interval-us", type=float, default=None,
                   help="sys.setswitchinterval while measuring (default: leave it as it is)")
    a = p.parse_args(argv)
    model = Transformer(TransformerConfig(num_layers=a.layers))
    shape = layer_block_shape(model.new_cache(a.block_tokens, a.block_tokens))
    slot_bytes = flash_slot_bytes(int(np.prod(shape)) * np.dtype(np.float32).itemsize)
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, a.prefix_blocks * a.block_tokens + a.new_tokens)
    switch = None if a.switch_interval_us is None else a.switch_interval_us * 1e-6
    with tempfile.TemporaryDirectory() as d:
        store = TieredStore([flash(a.layers * a.prefix_blocks * slot_bytes, d)], block_shape=shape, dtype=np.float32,
                            io_threads=a.io_threads, flash_queue_depth=a.flash_queue_depth)
        try:
            report = run_layerwise(model, store, tokens, prefix_blocks=a.prefix_blocks, block_tokens=a.block_tokens,
                                   repeats=a.repeats, switch_interval_s=switch)
        finally:
            store.close()
    print(f"store: flash (page cache), io_threads {a.io_threads}, flash_queue_depth {a.flash_queue_depth}; "
          f"switch interval {report.switch_interval_s * 1e6:.0f} us")
    print("\n".join(report.lines()))
    return report


if __name__ == "__main__":
    main()
