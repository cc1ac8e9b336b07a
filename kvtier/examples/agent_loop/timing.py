"""How the example times an operation, and the record of one timed operation.

Wall-clock time is read only through a ``Clock`` argument (``time.perf_counter`` by
default, ``time.process_time`` on a busy shared machine), so tests tick a fake one.
``rate`` is the median speed of a function over several runs; ``flush_caches`` makes the
next reads cold; ``fill_tiers`` and ``cold_fetches`` set up the fetches of blocks stored
long ago that both the calibration and the calibration check time. An ``OpTiming`` is
one operation as measured next to what the cost model predicted for it.

Read next: ``calibration.py`` (the figures measured with these).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kvtier.examples.agent_loop.tiers import TIER_NAMES
from kvtier.store import TieredStore

Clock = Callable[[], float]


def relative_error(predicted_s: float, measured_s: float, *, unmeasured: float = float("inf")) -> float:
    """``(predicted - measured) / measured``; ``unmeasured`` when nothing was measured
    (``measured_s <= 0``)."""
    return (predicted_s - measured_s) / measured_s if measured_s > 0 else unmeasured


class OpTiming(NamedTuple):
    """One timed operation of a turn and what the cost model predicted for it.

    ``kind``: ``"fetch"`` (all blocks of one tier in the turn), ``"recompute"`` (one run
    of consecutive recomputed blocks) or ``"prefill"`` (the turn's new tokens).
    """

    kind: str
    tier: str | None
    blocks: int
    tokens: int
    context_tokens: int
    predicted_s: float
    measured_s: float

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return relative_error(self.predicted_s, self.measured_s)


def rate(fn: Callable[[], int], clock: Clock, repeats: int, setup: Callable[[], None] | None = None) -> float:
    """Units per second of ``fn`` (which returns the units it processed): the median of
    ``repeats`` runs (this machine is shared and noisy; the median is what a single
    operation later will typically see, the best run is not). ``setup`` runs before each
    run, untimed."""
    rates = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = clock()
        units = fn()
        dt = clock() - t0
        rates.append(units / dt if dt > 0 else float("inf"))
    return float(np.median(rates))


def flush_caches(nbytes: int = 64 << 20) -> None:
    """Stream through more memory than the CPU caches hold, so the next reads are cold."""
    np.ones(nbytes // 8, np.float64).sum()


def fill_tiers(store: TieredStore, blocks_per_tier: int, block: Callable[[int], np.ndarray]) -> list[list[int]]:
    """Put ``3 * blocks_per_tier`` blocks (hashes 1, 2, ...; bytes ``block(h)``) into a
    store of three tiers of ``blocks_per_tier`` slots each; returns each tier's hashes. The
    exclusive LRU cascade leaves the first third in flash and the second in DRAM."""
    hashes = list(range(1, 3 * blocks_per_tier + 1))
    for h in hashes:
        store.put(h, block(h))
    found = store.lookup(hashes).tier_index.tolist()
    return [[h for h, ti in zip(hashes, found) if ti == t] for t in range(len(TIER_NAMES))]


class ColdFetches(NamedTuple):
    """What ``rate`` times: ``fetch_all`` after an untimed ``setup`` (``cold_fetches``)."""

    setup: Callable[[], None]
    fetch_all: Callable[[], int]


def cold_fetches(store: TieredStore, hashes: list[int], outs: list[np.ndarray], warm: int,
                 warm_out: np.ndarray) -> ColdFetches:
    """``(setup, fetch_all)`` for timing fetches of blocks that were stored long ago.

    ``setup`` flushes the CPU caches, so the blocks' bytes and index entries (and, for
    flash, the kernel's page-cache entries) are cold, then fetches block ``warm`` of the
    same tier untimed, so the store's code and the interpreter's working set are warm again,
    as in an engine that calls the store all the time. (Without that fetch, the first
    fetches after a flush pay 0.05-0.3 ms, once, to bring them back.) ``fetch_all``
    fetches ``hashes[i]`` into ``outs[i]`` (``promote=False``) and returns how many.
    """

    def setup() -> None:
        flush_caches()
        store.fetch(warm, out=warm_out, promote=False)

    def fetch_all() -> int:
        for h, out in zip(hashes, outs):
            store.fetch(h, out=out, promote=False)
        return len(hashes)

    return ColdFetches(setup, fetch_all)
