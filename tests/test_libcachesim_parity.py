"""Miss counts equal those of libCacheSim (PyPI ``libcachesim``) on the same accesses.

One tier, capacities in objects (every object has size 1), traces written in
libCacheSim's ``oracleGeneral`` binary layout (``<u4 time, u8 id, u4 size, i8 next
access>``, next access 1-based, -1 for never) and replayed natively by
``cache.process_trace``. Parameters matched (all libCacheSim's defaults):

* S3-FIFO: small queue ``floor(0.10 * c)``, main ``c - small``, ghost ``floor(0.90 * c)``
  entries, move-to-main threshold 2, counters capped at 3. libCacheSim refuses to insert
  into a small queue of fewer than 2 objects, so capacities here are >= 20.
* CLOCK: one reference bit (``n_bit_counter=1``), new objects start at 0.
* ARC: ``p`` is a float, as in libCacheSim (and its reference ARC.py).
* Belady: every miss is admitted; next access comes from the trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

lcs = pytest.importorskip("libcachesim")

from kvtier.replay import replay  # noqa: E402
from kvtier.traces.io import read_trace  # noqa: E402

PEER = {"lru": "LRU", "fifo": "FIFO", "arc": "ARC", "s3fifo": "S3FIFO", "sieve": "Sieve", "clock": "Clock",
        "belady": "Belady"}
GOLDEN = Path(__file__).resolve().parent.parent / "traces" / "golden"


def write_oracle_general(ids: np.ndarray, path) -> None:
    n = ids.shape[0]
    order = np.lexsort((np.arange(n), ids))
    nxt = np.full(n, -1, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same] + 1
    rec = np.zeros(n, dtype=[("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    rec["t"] = np.arange(n)
    rec["id"] = ids
    rec["size"] = 1
    rec["next"] = nxt
    rec.tofile(path)


def peer_misses(name: str, path, n: int, capacity: int) -> int:
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=False))
    cache = getattr(lcs, PEER[name])(capacity, hashpower=14)
    miss_ratio, _ = cache.process_trace(reader)
    return int(round(miss_ratio * n))


def traces():
    rng = np.random.default_rng(2024)
    zipf = (rng.zipf(1.1, 20_000) % 3000).astype(np.uint64)
    scan = np.concatenate([rng.permutation(400), rng.integers(0, 100, 3000), np.arange(1000, 1600),
                           rng.integers(0, 100, 3000)]).astype(np.uint64)
    agent = read_trace(GOLDEN / "agent-tiny.ids", "ids").block_hashes
    return {"zipf": zipf, "scan-mix": scan, "agent-tiny": np.asarray(agent, dtype=np.uint64)}


TRACES = traces()
CASES = [("zipf", c) for c in (20, 97, 500, 2000)] + [("scan-mix", c) for c in (50, 150)] + \
        [("agent-tiny", c) for c in (20, 33)]


@pytest.mark.parametrize("name", sorted(PEER))
@pytest.mark.parametrize(("trace", "capacity"), CASES)
def test_miss_counts_equal_libcachesim(tmp_path, name, trace, capacity):
    ids = TRACES[trace]
    path = tmp_path / "trace.oracleGeneral"
    write_oracle_general(ids, path)
    offsets = np.arange(ids.shape[0] + 1, dtype=np.int64)  # one access per request
    ours = replay(offsets, ids, policy=name, capacity_blocks=capacity)
    assert ours.block_accesses - ours.block_hits == peer_misses(name, path, ids.shape[0], capacity)
