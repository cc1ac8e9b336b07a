"""Data-path benchmark: put/fetch throughput of each tier against raw copies and raw file I/O.

For each block size it moves the same bytes twice in one process: once through a
``TieredStore`` with a single tier, once through the plainest code that does the same
copy (a numpy slot copy into a preallocated slab; ``os.pwrite``/``os.preadv`` at the same
offsets of a preallocated file), and reports GB/s and the ratio store / raw. Rounds are
interleaved and the best round of each is kept, since this machine is shared and noisy.
Flash runs with ``fsync="never"`` and so do the raw writes: both measure the page cache
path, not the device.

    python bench/datapath.py [--total-mib 256] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

import kvtier
from kvtier import TieredStore, dram, flash

BLOCK_SIZES = (64 << 10, 1 << 20)


def kv_like_blocks(num_blocks: int, block_bytes: int, seed: int = 0) -> np.ndarray:
    """Float16 normals, as bf16/fp16 KV looks to a byte compressor (little redundancy)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_blocks, block_bytes // 2)).astype(np.float16)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_memory(blocks: np.ndarray, codec: str, rounds: int) -> dict:
    n, per = blocks.shape
    nbytes = blocks.nbytes
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

    best = {"raw_put": 1e9, "raw_fetch": 1e9, "put": 1e9, "fetch": 1e9}
    for _ in range(rounds):
        store = TieredStore([dram(nbytes, codec=codec)], block_shape=shape, dtype=dtype)
        best["raw_put"] = min(best["raw_put"], timed(raw_put))
        best["put"] = min(best["put"], timed(lambda: [store.put(i, blocks[i]) for i in range(n)]))
        best["raw_fetch"] = min(best["raw_fetch"], timed(raw_fetch))
        best["fetch"] = min(best["fetch"], timed(lambda: [store.fetch(i, out=out) for i in range(n)]))
        ratio = store.stats().tiers["dram"].compression_ratio
        store.close()
    return _summarise(best, nbytes, ratio)


def bench_flash(blocks: np.ndarray, codec: str, rounds: int, workdir: str) -> dict:
    n, per = blocks.shape
    nbytes = blocks.nbytes
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

    best = {"raw_put": 1e9, "raw_fetch": 1e9, "put": 1e9, "fetch": 1e9}
    for r in range(rounds):
        # Both sides write a fresh, preallocated (sparse) file each round.
        fd = os.open(raw_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, 4096 + n * stride)
        d = os.path.join(workdir, f"store{r}")
        store = TieredStore([flash(n * stride, d, codec=codec, fsync="never")], block_shape=shape, dtype=dtype)
        best["raw_put"] = min(best["raw_put"], timed(raw_put))
        best["put"] = min(best["put"], timed(lambda: [store.put(i, blocks[i]) for i in range(n)]))
        best["raw_fetch"] = min(best["raw_fetch"], timed(raw_fetch))
        best["fetch"] = min(best["fetch"], timed(lambda: [store.fetch(i, out=out) for i in range(n)]))
        ratio = store.stats().tiers["flash"].compression_ratio
        store.close()
        os.unlink(os.path.join(d, "flash.kvt"))
        os.close(fd)
    return _summarise(best, nbytes, ratio)


def _summarise(best: dict, nbytes: int, ratio: float) -> dict:
    gbps = {k: nbytes / v / 1e9 for k, v in best.items()}
    return {
        "put_GBps": gbps["put"],
        "raw_put_GBps": gbps["raw_put"],
        "put_ratio": gbps["put"] / gbps["raw_put"],
        "fetch_GBps": gbps["fetch"],
        "raw_fetch_GBps": gbps["raw_fetch"],
        "fetch_ratio": gbps["fetch"] / gbps["raw_fetch"],
        "lz4_ratio": ratio,
    }


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-mib", type=int, default=256, help="bytes moved per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    results = []
    print(f"kvtier {kvtier.__version__} ({git_revision()}), {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.total_mib} MiB per measurement, best of {args.rounds} rounds")
    print(f"| tier | codec | block | put GB/s | raw GB/s | put/raw | fetch GB/s | raw GB/s | fetch/raw | lz4 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="kvtier-bench-", dir=os.environ.get("KVTIER_BENCH_DIR")) as workdir:
        for block_bytes in BLOCK_SIZES:
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kvtier_version": kvtier.__version__, "git_revision": git_revision(), "config": vars(args),
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
