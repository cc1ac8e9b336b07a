"""How long opening a flash tier takes: a new 10 GiB tier, and reopening it empty and full.

A 10 GiB tier of 4 KiB blocks is 1,310,720 slots of 8 KiB. Opening a new one should cost
what the file holds (nothing), not its capacity; reopening a full one reads every slot
(with ``verify_on_open``, every payload too). Prints one markdown table: wall seconds and
MiB read through the tier's ``FileIO`` per case (the quick cases best of ``--repeat``, the
full reopens once).

The full file is written through the tier itself (``Tier.admit``, so every slot header is
the tier's own) with all-zero payloads that the writer leaves as holes: the file is
sparse (about 5 GiB: one 4 KiB page per slot for its header), and reading a hole costs the
same copy as reading a cached page. It goes in a temporary directory under ``/dev/shm``
when there is one (so the figures are the CPU cost of opening, not a disk's write-back of
the fill) and is removed at the end. About a minute in all.

    python bench/flash_open.py [--gib 10] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import kvtier  # noqa: E402
from kvtier import TieredStore, flash  # noqa: E402
from kvtier.tiers import FileIO  # noqa: E402

BLOCK_BYTES = 4096


class CountingIO(FileIO):
    """Counts the bytes the tier reads."""

    def __init__(self) -> None:
        self.bytes_read = 0

    def pread(self, fd, size, offset):
        data = super().pread(fd, size, offset)
        self.bytes_read += len(data)
        return data

    def preadv(self, fd, buffers, offset):
        n = super().preadv(fd, buffers, offset)
        self.bytes_read += n
        return n


class HeaderOnlyIO(FileIO):
    """Writes a slot's header and leaves its all-zero payload as a hole (reads back as zeros)."""

    def pwritev(self, fd, buffers, offset):
        header = buffers[0]
        self.pwrite(fd, header, offset)
        return sum(memoryview(b).nbytes for b in buffers)


def open_store(directory: str, gib: int, io: FileIO, **kw) -> TieredStore:
    return TieredStore([flash(gib << 30, directory, **kw)], block_shape=(BLOCK_BYTES // 4,), dtype=np.float32,
                       flash_io=io)


def timed_open(directory: str, gib: int, repeat: int, **kw) -> tuple[float, int, int]:
    """Best wall time of ``repeat`` opens (each closed after), bytes read, blocks recovered."""
    best, read, recovered = float("inf"), 0, 0
    for _ in range(repeat):
        io = CountingIO()
        t = time.perf_counter()
        store = open_store(directory, gib, io, **kw)
        best = min(best, time.perf_counter() - t)
        read, recovered = io.bytes_read, len(store.tier("flash"))
        store.close()
    return best, read, recovered


def fill(directory: str, gib: int) -> tuple[int, float]:
    store = open_store(directory, gib, HeaderOnlyIO(), fsync="never")
    tier = store.tier("flash")
    enc = tier.encode(np.zeros(BLOCK_BYTES, dtype=np.uint8))
    t = time.perf_counter()
    for h in range(tier.num_slots):
        if not tier.admit(h + 1, enc):
            raise SystemExit(f"fill: the write of block {h + 1} failed")
    seconds = time.perf_counter() - t
    store.close()
    return tier.num_slots, seconds


def revision() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(kvtier.__file__)))
    try:
        import subprocess

        return subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the temporary directory goes (default: /dev/shm if "
                                                    "writable, else the system's temporary directory)")
    args = ap.parse_args()
    where = args.dir or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    print(f"kvtier {kvtier.__version__} ({revision()}, {os.path.dirname(kvtier.__file__)}), {platform.machine()}, "
          f"{os.cpu_count()} CPUs; {args.gib} GiB flash tier, {BLOCK_BYTES}-byte blocks, in {where or tempfile.gettempdir()}; "
          f"quick cases best of {args.repeat}")
    rows = []
    with tempfile.TemporaryDirectory(dir=where, prefix="kvtier-flash-open-") as root:
        open_store(os.path.join(root, "warm-up"), 1, FileIO()).close()  # first-use costs (imports, kernels)
        new_dir = os.path.join(root, "new")
        io = CountingIO()
        t = time.perf_counter()
        store = open_store(new_dir, args.gib, io)
        first = time.perf_counter() - t
        slots = store.tier("flash").num_slots
        store.close()
        rows.append(("open new (creates the file)", slots, first, io.bytes_read, 0))
        rows.append(("reopen empty", slots, *timed_open(new_dir, args.gib, args.repeat)))
        num, fill_s = fill(new_dir, args.gib)
        print(f"filled {num} slots through Tier.admit in {fill_s:.1f} s")
        rows.append(("reopen full, verify_on_open=True", slots, *timed_open(new_dir, args.gib, 1)))
        rows.append(("reopen full, verify_on_open=False", slots, *timed_open(new_dir, args.gib, 1, verify_on_open=False)))
    print("| case | slots | seconds | MiB read | blocks recovered |")
    print("|---|---|---|---|---|")
    for case, n, seconds, read, recovered in rows:
        print(f"| {case} | {n:,} | {seconds:.3f} | {read / 2**20:.1f} | {recovered:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
