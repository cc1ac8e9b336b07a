"""Data-path benchmark: put/fetch throughput of each tier against raw copies and raw file I/O.

Two tables. The first moves blocks one call at a time, per codec. The second moves them in
batches (``put_many``/``fetch_many``) of 1, 16 and 64 blocks of 16 KiB, 64 KiB and 1 MiB,
codec none, against the plainest code that moves the same bytes the same way: a numpy copy
between the batch buffer and the slab rows; for flash fetches, ``preadv`` of the same slot
runs into the same buffer, one call per run, split over the same number of threads as the
store's ``flash_queue_depth`` (the calling thread reads the first piece and a pool the
others, as the store does), at queue depth 1 for reference, and with the CRC32C of each
payload that the store must check before serving it ("raw+CRC"). The single-call
figures of the same block size sit beside each row.

For each block size it moves the same bytes twice in one process: once through a
``TieredStore`` with a single tier, once through the plainest code that does the same
copy (a numpy slot copy into a preallocated slab; ``os.pwrite``/``os.preadv`` at the same
offsets of a preallocated file), and reports GB/s (the best round) and the ratio store /
raw: each round runs every measurement once, so a store measurement and its baseline meet
the same minute of this shared, noisy machine, and a ratio is the median over rounds of
the ratio within a round (``Rounds``).
Flash runs with ``fsync="never"`` and so do the raw writes: both measure the page cache
path, not the device.

    python bench/datapath.py [--total-mib 256] [--batch-mib 64] [--rounds 5] [--batch-rounds 21] [--queue-depth 2]
                              [--skip-single] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import kvtier
from kvtier import TieredStore, dram, flash
from kvtier.buffers import aligned_empty
from kvtier.codec import checksum
from kvtier.tiers.flash_format import FILE_HEADER_BYTES, SLOT_HEADER_BYTES
from kvtier.tiers.flash_tier import READ_CHUNK_BYTES
from kvtier.tiers.spec import flash_slot_bytes

BLOCK_SIZES = (64 << 10, 1 << 20)
BATCH_BLOCK_SIZES = (16 << 10, 64 << 10, 1 << 20)
BATCH_SIZES = (1, 16, 64)


def kv_like_blocks(num_blocks: int, block_bytes: int, seed: int = 0) -> np.ndarray:
    """Float16 normals, as bf16/fp16 KV looks to a byte compressor (little redundancy)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_blocks, block_bytes // 2)).astype(np.float16)


class Rounds:
    """The seconds of every measurement, round by round. Each round runs every measurement
    once, one after another, so a store measurement and its baseline see the same minute
    of this shared machine: a ratio is the median over rounds of the ratio within a round
    (a paired comparison, steadier than the best of one side against the best of the
    other), and a speed is the best round's."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.seconds: dict[str, list[float]] = {}

    def time(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.seconds.setdefault(name, []).append(time.perf_counter() - t0)

    def gbps(self) -> dict[str, float]:
        return {name: self.nbytes / min(s) / 1e9 for name, s in self.seconds.items()}

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of (baseline's seconds / name's seconds): speed of name relative to baseline."""
        return float(np.median(np.array(self.seconds[baseline]) / np.array(self.seconds[name])))


def single_call_round(t: Rounds, store: TieredStore, blocks: np.ndarray, out: np.ndarray, raw_put, raw_fetch) -> None:
    """One round of the single-call table: the raw puts, the store's, the raw fetches, the store's."""
    t.time("raw_put", raw_put)
    t.time("put", lambda: [store.put(i, blocks[i]) for i in range(blocks.shape[0])])
    t.time("raw_fetch", raw_fetch)
    t.time("fetch", lambda: [store.fetch(i, out=out) for i in range(blocks.shape[0])])


def bench_memory(blocks: np.ndarray, codec: str, rounds: int) -> dict:
    n, per = blocks.shape
    shape, dtype = (per,), blocks.dtype
    slab = np.empty((n, per * 2), dtype=np.uint8)
    out = np.empty(shape, dtype=dtype)
    raw_src = blocks.view(np.uint8)

    def raw_put():
        for i in range(n):
            slab[i, : raw_src.shape[1]] = raw_src[i]

    def raw_fetch():
        out_u8 = out.view(np.uint8)
        for i in range(n):
            out_u8[:] = slab[i, : raw_src.shape[1]]

    t = Rounds(blocks.nbytes)
    for _ in range(rounds):
        store = TieredStore([dram(blocks.nbytes, codec=codec)], block_shape=shape, dtype=dtype)
        single_call_round(t, store, blocks, out, raw_put, raw_fetch)
        lz4_ratio = store.stats().tiers["dram"].compression_ratio
        store.close()
    return _summarise(t, lz4_ratio)


def bench_flash(blocks: np.ndarray, codec: str, rounds: int, workdir: str) -> dict:
    n, per = blocks.shape
    shape, dtype = (per,), blocks.dtype
    out = np.empty(shape, dtype=dtype)
    block_bytes = per * blocks.itemsize
    stride = -(-(64 + block_bytes) // 4096) * 4096
    raw_path = os.path.join(workdir, "raw.bin")
    buf = bytearray(stride)
    view = memoryview(buf)

    def raw_put():
        for i in range(n):
            os.pwrite(fd, blocks[i], 4096 + i * stride)

    def raw_fetch():
        for i in range(n):
            os.preadv(fd, [view[:block_bytes]], 4096 + i * stride)
            out.view(np.uint8)[:] = np.frombuffer(view[:block_bytes], dtype=np.uint8)

    t = Rounds(blocks.nbytes)
    for r in range(rounds):
        # Both sides write a fresh, preallocated (sparse) file each round.
        fd = os.open(raw_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, 4096 + n * stride)
        d = os.path.join(workdir, f"store{r}")
        store = TieredStore([flash(n * stride, d, codec=codec, fsync="never")], block_shape=shape, dtype=dtype)
        single_call_round(t, store, blocks, out, raw_put, raw_fetch)
        lz4_ratio = store.stats().tiers["flash"].compression_ratio
        store.close()
        os.unlink(os.path.join(d, "flash.kvt"))
        os.close(fd)
    return _summarise(t, lz4_ratio)


def bench_memory_batched(blocks: np.ndarray, batch: int, rounds: int) -> dict:
    """Memory tier: put_many/fetch_many of ``batch`` blocks against numpy copies of the same
    rows (slab rows of the batch <-> the caller's contiguous buffer), and single calls."""
    n, per = blocks.shape
    n -= n % batch
    shape, dtype = (per,), blocks.dtype
    src = blocks[:n]
    out = aligned_empty((batch, per), dtype)
    out_u8 = out.view(np.uint8).reshape(batch, per * blocks.itemsize)
    src_u8 = src.view(np.uint8).reshape(n, per * blocks.itemsize)
    hashes = list(range(n))
    starts = range(0, n, batch)
    nbytes = n * per * blocks.itemsize

    def raw_put():
        for a in starts:
            np.copyto(slab[a : a + batch], src_u8[a : a + batch])

    def raw_fetch():
        for a in starts:
            np.copyto(out_u8, slab[a : a + batch])

    t = Rounds(nbytes)
    for _ in range(rounds):
        # A new slab each round, made as the memory tier makes its own (page-aligned, every
        # page touched), right before the store's: both sides then get the same kind of
        # pages (huge or not, which numpy asks the kernel for and the kernel grants as it can).
        slab = aligned_empty((n, per * blocks.itemsize), np.uint8)
        slab.fill(0)
        store = TieredStore([dram(nbytes)], block_shape=shape, dtype=dtype)
        t.time("raw_put", raw_put)
        t.time("put", lambda: [store.put_many(hashes[a : a + batch], src[a : a + batch]) for a in starts])
        t.time("raw_fetch", raw_fetch)
        t.time("fetch", lambda: [store.fetch_many(hashes[a : a + batch], out) for a in starts])
        t.time("single_fetch", lambda: [store.fetch(h, out=out[0]) for h in hashes])
        store.close()
        store = TieredStore([dram(nbytes)], block_shape=shape, dtype=dtype)
        t.time("single_put", lambda: [store.put(h, src[h]) for h in hashes])
        store.close()
    return {**t.gbps(), "put_ratio": t.ratio("put", "raw_put"), "fetch_ratio": t.ratio("fetch", "raw_fetch"),
            "single_put_ratio": t.ratio("single_put", "raw_put"),
            "single_fetch_ratio": t.ratio("single_fetch", "raw_fetch")}


def bench_flash_batched(blocks: np.ndarray, batch: int, rounds: int, workdir: str, queue_depth: int) -> dict:
    """Flash tier: fetch_many (``flash_queue_depth=queue_depth``) against ``preadv`` of the same
    slot runs into the same buffer, split over ``queue_depth`` threads (and on one thread,
    and with the CRC32C of every payload); put_many against one ``pwrite`` per block; and
    single fetches."""
    n, per = blocks.shape
    n -= n % batch
    block_bytes = per * blocks.itemsize
    nbytes = n * block_bytes
    shape, dtype = (per,), blocks.dtype
    stride = flash_slot_bytes(block_bytes)
    src = blocks[:n]
    out = aligned_empty((batch, per), dtype)
    out_u8 = out.view(np.uint8).reshape(batch, block_bytes)
    hashes = list(range(n))
    starts = range(0, n, batch)
    head = bytearray(SLOT_HEADER_BYTES)
    gap = bytearray(stride - SLOT_HEADER_BYTES - block_bytes)
    pool = ThreadPoolExecutor(queue_depth)

    def read_run(first_slot: int, first_row: int, count: int) -> None:
        buffers = []
        for j in range(count):
            buffers += [head, out_u8[first_row + j]] + ([gap] if gap and j + 1 < count else [])
        os.preadv(fd, buffers, FILE_HEADER_BYTES + first_slot * stride)

    def raw_fetch(depth: int, crc: bool = False):
        per_call = -(-batch // depth)
        for a in starts:
            pieces = [(a + r, r, min(per_call, batch - r)) for r in range(0, batch, per_call)]
            if depth == 1 or len(pieces) == 1:
                for piece in pieces:
                    read_run(*piece)
            else:  # as the store does: this thread reads the first piece, the pool the others
                others = [pool.submit(read_run, *piece) for piece in pieces[1:]]
                read_run(*pieces[0])
                for f in others:
                    f.result()
            if crc:  # the CRC32C of every payload read, before any is used
                for row in out_u8:
                    checksum(row)

    def raw_put():
        for i in range(n):
            os.pwrite(fd, src[i], FILE_HEADER_BYTES + i * stride + SLOT_HEADER_BYTES)

    t = Rounds(nbytes)
    raw_path = os.path.join(workdir, "raw.bin")
    for r in range(rounds):
        fd = os.open(raw_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, FILE_HEADER_BYTES + n * stride)
        d = os.path.join(workdir, f"batched{r}")
        store = TieredStore([flash(n * stride, d, fsync="never")], block_shape=shape, dtype=dtype,
                            flash_queue_depth=queue_depth)
        t.time("raw_put", raw_put)
        t.time("put", lambda: [store.put_many(hashes[a : a + batch], src[a : a + batch]) for a in starts])
        t.time("raw_fetch", lambda: raw_fetch(queue_depth))
        t.time("fetch", lambda: [store.fetch_many(hashes[a : a + batch], out) for a in starts])
        t.time("raw_fetch_qd1", lambda: raw_fetch(1))
        t.time("raw_fetch_crc", lambda: raw_fetch(queue_depth, crc=True))
        t.time("single_fetch", lambda: [store.fetch(h, out=out[0]) for h in hashes])
        store.close()
        os.unlink(os.path.join(d, "flash.kvt"))
        os.close(fd)
    pool.shutdown()
    return {**t.gbps(), "put_ratio": t.ratio("put", "raw_put"), "fetch_ratio": t.ratio("fetch", "raw_fetch"),
            "fetch_crc_ratio": t.ratio("fetch", "raw_fetch_crc"),
            "single_fetch_ratio": t.ratio("single_fetch", "raw_fetch")}


def _summarise(t: Rounds, lz4_ratio: float) -> dict:
    gbps = t.gbps()
    return {
        "put_GBps": gbps["put"],
        "raw_put_GBps": gbps["raw_put"],
        "put_ratio": t.ratio("put", "raw_put"),
        "fetch_GBps": gbps["fetch"],
        "raw_fetch_GBps": gbps["raw_fetch"],
        "fetch_ratio": t.ratio("fetch", "raw_fetch"),
        "lz4_ratio": lz4_ratio,
    }


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-mib", type=int, default=256, help="bytes moved per measurement")
    ap.add_argument("--batch-mib", type=int, default=64, help="bytes moved per batched measurement")
    ap.add_argument("--queue-depth", type=int, default=2, help="flash_queue_depth of the batched flash fetch")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the single-call table")
    ap.add_argument("--batch-rounds", type=int, default=21,
                    help="rounds of the batched table (its measurements are short, so noisier)")
    ap.add_argument("--skip-single", action="store_true", help="only the batched table")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    results = []
    print(f"kvtier {kvtier.__version__} ({git_revision()}), {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.total_mib} MiB per measurement, {args.rounds} rounds (GB/s: the best round; "
          f"store/raw: the median of each round's ratio)")
    if not args.skip_single:
        print(f"| tier | codec | block | put GB/s | raw GB/s | put/raw | fetch GB/s | raw GB/s | fetch/raw | lz4 ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="kvtier-bench-", dir=os.environ.get("KVTIER_BENCH_DIR")) as workdir:
        for block_bytes in () if args.skip_single else BLOCK_SIZES:
            blocks = kv_like_blocks((args.total_mib << 20) // block_bytes, block_bytes)
            for tier in ("memory", "flash"):
                for codec in ("none", "lz4"):
                    if tier == "memory":
                        r = bench_memory(blocks, codec, args.rounds)
                    else:
                        r = bench_flash(blocks, codec, args.rounds, workdir)
                    r.update(tier=tier, codec=codec, block_bytes=block_bytes)
                    results.append(r)
                    print(
                        f"| {tier} | {codec} | {block_bytes >> 10} KiB | {r['put_GBps']:.2f} | {r['raw_put_GBps']:.2f} | "
                        f"{r['put_ratio']:.0%} | {r['fetch_GBps']:.2f} | {r['raw_fetch_GBps']:.2f} | {r['fetch_ratio']:.0%} | "
                        f"{r['lz4_ratio']:.2f} |",
                        flush=True,
                    )
        print()
        print(f"Batched (codec none, {args.batch_mib} MiB per measurement, {args.batch_rounds} rounds; "
              f"flash fetch at queue depth {args.queue_depth}; GB/s, ratio to the raw copy or raw I/O of the "
              f"same bytes)")
        print("| tier | block | batch | put_many | raw | put/raw | fetch_many | raw | fetch/raw | "
              "raw QD1 | raw+CRC | fetch/(raw+CRC) | single put/raw | single fetch/raw |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for block_bytes in BATCH_BLOCK_SIZES:
            blocks = kv_like_blocks(max(max(BATCH_SIZES), (args.batch_mib << 20) // block_bytes), block_bytes)
            for tier in ("memory", "flash"):
                for batch in BATCH_SIZES:
                    if tier == "memory":
                        r = bench_memory_batched(blocks, batch, args.batch_rounds)
                    else:
                        r = bench_flash_batched(blocks, batch, args.batch_rounds, workdir, args.queue_depth)
                    r.update(tier=tier, codec="none", block_bytes=block_bytes, batch=batch, table="batched")
                    results.append(r)
                    qd1 = f"{r['raw_fetch_qd1']:.2f}" if "raw_fetch_qd1" in r else "-"
                    crc = f"{r['raw_fetch_crc']:.2f} | {r['fetch_crc_ratio']:.0%}" if "raw_fetch_crc" in r else "- | -"
                    sp = f"{r['single_put_ratio']:.0%}" if "single_put_ratio" in r else "-"
                    print(f"| {tier} | {block_bytes >> 10} KiB | {batch} | {r['put']:.2f} | {r['raw_put']:.2f} | "
                          f"{r['put_ratio']:.0%} | {r['fetch']:.2f} | {r['raw_fetch']:.2f} | {r['fetch_ratio']:.0%} | "
                          f"{qd1} | {crc} | {sp} | {r['single_fetch_ratio']:.0%} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kvtier_version": kvtier.__version__, "git_revision": git_revision(), "config": vars(args),
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
