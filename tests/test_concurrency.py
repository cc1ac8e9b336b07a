"""Threads share one store: agent sessions plus a background write-back/prefetch thread.

Every public call holds the store's lock, so any calls may run concurrently. The stress
test checks what that must buy: no torn read (every fetched block has exactly its bytes),
no lost pinned block, no capacity exceeded, consistent statistics at the end.
"""

from __future__ import annotations

import threading

import numpy as np

import pytest

from kvtier import BlockNotFoundError, ConfigError, dram, flash, hbm
from kvtier.tiers import FileIO
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192
AGENTS = 4
OPS_PER_AGENT = 1500


def test_threads_never_see_torn_or_lost_blocks(tmp_path):
    store = make_store([hbm(8 * BLOCK_BYTES), dram(8 * BLOCK_BYTES), flash(32 * SLOT, tmp_path, codec="lz4")])
    errors: list[str] = []
    stop = threading.Event()
    ops = [0] * (AGENTS + 1)

    def agent(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        mine = range(i * 20, i * 20 + 30)  # overlaps the next agent's range: shared prefixes
        pinned: list[int] = []
        try:
            for _ in range(OPS_PER_AGENT):
                h = int(rng.choice(mine))
                r = rng.random()
                if r < 0.45:
                    store.put(h, payload(h))
                elif r < 0.85:
                    got = store.fetch(h)
                    if got is not None and not same_bytes(got, payload(h)):
                        errors.append(f"agent {i}: block {h} torn")
                elif r < 0.93 and len(pinned) < 2:
                    try:
                        store.pin(h)
                        pinned.append(h)
                    except BlockNotFoundError:
                        pass
                elif pinned:
                    store.unpin(pinned.pop(0))
                for p in pinned:
                    if store.fetch(p, promote=False) is None:
                        errors.append(f"agent {i}: pinned block {p} lost")
                ops[i] += 1
            for p in pinned:
                store.unpin(p)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(f"agent {i}: {type(e).__name__}: {e}")

    def background() -> None:
        rng = np.random.default_rng(7)
        while not stop.is_set():
            h = int(rng.integers(0, AGENTS * 20 + 10))
            got = store.fetch(h, promote=False)  # a prefetcher peeking without reordering tiers
            if got is not None and not same_bytes(got, payload(h)):
                errors.append(f"background: block {h} torn")
            store.flush()
            for tier in store.tiers:
                if len(tier) > tier.num_slots:
                    errors.append(f"{tier.name} over capacity")
            ops[AGENTS] += 1

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(AGENTS)]
    bg = threading.Thread(target=background)
    bg.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    bg.join()
    assert errors == []
    assert sum(ops[:AGENTS]) == AGENTS * OPS_PER_AGENT and ops[AGENTS] > 0
    store.check_invariants()
    assert sum(store.pins(h) for h in range(AGENTS * 20 + 10)) == 0
    s = store.stats()
    assert s.fetch_hits > 0 and sum(t.demotions for t in s.tiers.values()) > 0


def test_async_batches_share_the_store_with_threads(tmp_path):
    """Agents move their blocks with ``put_many_async``/``fetch_many_async`` (several batches
    in flight each) while another thread makes single calls: no torn or lost block, no
    capacity exceeded, and every future completes."""
    store = make_store([hbm(8 * BLOCK_BYTES), dram(8 * BLOCK_BYTES), flash(48 * SLOT, tmp_path)],
                       io_threads=3, flash_queue_depth=2)
    errors: list[str] = []

    def agent(i: int) -> None:
        rng = np.random.default_rng(200 + i)
        try:
            for _ in range(60):
                hashes = [int(h) for h in rng.integers(i * 10, i * 10 + 25, size=int(rng.integers(1, 9)))]
                puts = store.put_many_async(hashes, np.stack([payload(h) for h in hashes]))
                fetches = [store.fetch_many_async(hashes, promote=bool(rng.random() < 0.5)) for _ in range(2)]
                if not all(r.tier is None or r.tier in store.tier_names for r in puts.result()):
                    errors.append(f"agent {i}: bad put result")
                for f in fetches:
                    got = f.result()
                    for row, h in enumerate(hashes):
                        if got.found[row] and not same_bytes(got.out[row], payload(h)):
                            errors.append(f"agent {i}: block {h} torn")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(f"agent {i}: {type(e).__name__}: {e}")

    def single_calls() -> None:
        rng = np.random.default_rng(9)
        for _ in range(300):
            h = int(rng.integers(0, 45))
            if rng.random() < 0.5:
                store.put(h, payload(h))
            else:
                got = store.fetch(h)
                if got is not None and not same_bytes(got, payload(h)):
                    errors.append(f"single: block {h} torn")
            for tier in store.tiers:
                if len(tier) > tier.num_slots:
                    errors.append(f"{tier.name} over capacity")

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(3)] + [threading.Thread(target=single_calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store.check_invariants()
    s = store.stats()
    assert s.fetch_hits > 0 and s.fetch_hits + s.fetch_misses == s.fetches
    store.close()


def test_async_calls_run_in_the_order_submitted(tmp_path):
    """With the default single I/O thread, a fetch submitted after a put of the same blocks
    finds them, and the calls finish in the order they were submitted."""
    store = make_store([dram(8 * BLOCK_BYTES), flash(256 * SLOT, tmp_path)])
    finished: list[int] = []
    fetches = []
    for first in range(0, 96, 8):
        hashes = list(range(first, first + 8))
        put = store.put_many_async(hashes, np.stack([payload(h) for h in hashes]))
        fetch = store.fetch_many_async(hashes, promote=False)
        for f, order in ((put, 2 * first), (fetch, 2 * first + 1)):
            f.add_done_callback(lambda f, order=order: finished.append(order))
        fetches.append((hashes, fetch))
    for hashes, fetch in fetches:
        r = fetch.result()
        assert r.found.all(), f"a fetch submitted after the put of {hashes} missed some"
        assert all(same_bytes(r.out[j], payload(h)) for j, h in enumerate(hashes))
    store.close()
    assert finished == sorted(finished) and len(finished) == 24


def test_close_drains_or_cancels_async_calls(tmp_path):
    store = make_store([dram(4 * BLOCK_BYTES), flash(64 * SLOT, tmp_path)], io_threads=1)
    batches = [[b * 4 + j for j in range(4)] for b in range(12)]
    futures = [store.put_many_async(hs, np.stack([payload(h) for h in hs])) for hs in batches]
    store.close()  # drains: every call ran to completion
    assert all(f.done() and not f.cancelled() for f in futures)
    assert all(r.stored for f in futures for r in f.result())
    with pytest.raises(ConfigError, match="closed"):
        store.put_many_async([1], payload(1)[None])

    gate = threading.Event()

    class GatedIO(FileIO):  # the first read waits for the gate: the calls behind it queue
        def preadv(self, fd, buffers, offset):
            gate.wait(10)
            return super().preadv(fd, buffers, offset)

    store = make_store([dram(4 * BLOCK_BYTES), flash(64 * SLOT, tmp_path)], io_threads=1, flash_io=GatedIO())
    assert store.tier("flash").recovery.recovered == 44  # 48 put, the 4 left in DRAM at close are gone
    running = store.fetch_many_async([0])
    queued = [store.fetch_many_async(hs) for hs in batches]
    closer = threading.Thread(target=store.close, kwargs={"cancel_pending": True})
    closer.start()
    for _ in range(1000):  # close() cancels what has not started before it waits for the rest
        if all(f.cancelled() for f in queued):
            break
        closer.join(0.01)
    assert all(f.cancelled() for f in queued)
    gate.set()
    closer.join()
    assert running.result().found.tolist() == [True]
