"""A/B timing of two versions of the list replay kernel, interleaved in one process.

    cp kvtier/_kernels/listreplay.py /tmp/listreplay_b.py      # then edit the copy
    .venv/bin/python bench/replay_ab.py /tmp/listreplay_b.py --trace zipf --repeats 5

On a shared 2-core VM one cell of ``bench/replay_speed.py`` varies by up to +-30% from run
to run, more than most single changes to a kernel are worth. Here the committed kernel (A)
and a candidate file (B) run the same traces turn about, each compiled once, and the
median of each is compared; an A/A run (B a plain copy) shows the noise floor (about
+-5%). Cases, all of which ``replay`` sends to this kernel: one LRU tier at 1% of the
distinct blocks, and 3-tier chains (1%, 10%, 30%) of SIEVE and of S3-FIFO. (One ARC or
S3-FIFO tier and LRU chains have kernels of their own, ``ghostreplay`` and ``lruchain``.)
Both versions must keep ``list_replay``'s signature.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replay_speed import agent_trace, zipf_trace  # noqa: E402

from kvtier._kernels import listreplay as kernel_a  # noqa: E402
from kvtier.replay import densify, select_kernel  # noqa: E402


def load_candidate(path: str, workdir: str):
    """Import the candidate from a copy in ``workdir``: numba caches a module's kernels next
    to its file, and a second run could not load a dynamically imported module's cache."""
    copy = Path(workdir) / "listreplay_candidate.py"
    shutil.copyfile(path, copy)
    spec = importlib.util.spec_from_file_location("listreplay_candidate", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiers(policies, caps):
    return select_kernel(policies, caps, fast=True).list_scalars


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidate", help="path of the B version of kvtier/_kernels/listreplay.py")
    ap.add_argument("--trace", choices=("zipf", "agent"), default="zipf")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        return run(args, load_candidate(args.candidate, workdir))


def run(args, kernel_b) -> int:
    if args.trace == "zipf":
        offsets, hashes = zipf_trace(10_000_000, 1_000_000, 0)
    else:
        offsets, hashes, _ = agent_trace(2_000_000, 0)
    unique = densify(hashes)[1].shape[0]
    caps = [max(1, int(unique * f)) for f in (0.01, 0.10, 0.30)]
    cases = {"lru 1 tier": tiers(["lru"], caps[:1]), "sieve 3 tiers": tiers(["sieve"] * 3, caps),
             "s3fifo 3 tiers": tiers(["s3fifo"] * 3, caps)}
    versions = {"A": kernel_a, "B": kernel_b}
    for module in versions.values():  # compile (or load) before timing
        for ts in cases.values():
            module.list_replay(offsets[:2], hashes[: offsets[1]], ts, True, False, True)
    rates = {(v, c): [] for v in versions for c in cases}
    n = hashes.shape[0]
    for _ in range(args.repeats):
        for case, ts in cases.items():
            for name, module in versions.items():
                t0 = time.perf_counter()
                module.list_replay(offsets, hashes, ts, True, False, True)
                rates[(name, case)].append(n / (time.perf_counter() - t0) / 1e6)
    print(f"{args.trace}: {n:,} accesses, medians of {args.repeats} interleaved runs (M accesses/s)")
    for case in cases:
        a, b = np.median(rates[("A", case)]), np.median(rates[("B", case)])
        print(f"  {case:12s} A {a:6.1f}  B {b:6.1f}  B/A {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
