"""How fast a block copy runs, by where its source and destination start in a cache line.

A memory tier's fetch is one copy of a block out of the tier's slab into a KV page
(``out[:] = slab[slot]``, which numpy hands to glibc's ``memmove``). On the machine the
example was calibrated on (AMD EPYC, 2 vCPUs under KVM, glibc 2.36), ``memmove`` copies
64 KiB with ``rep movsb``, and that instruction's speed depends on the two addresses
modulo 64: with the destination 16 bytes further into its cache line than the source, a
cold 64 KiB copy took about 10 us instead of 5.6-6 us (co-aligned), and other misaligned
pairs 6.7-7.2 us. The buffers ``np.empty`` returns start wherever malloc puts them (a
multiple of 16), so two buffers that look alike can copy at half speed. With
``GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304`` (no ``rep movsb`` below
4 MiB) every pair copied in 6.4-8 us, none near 10.

``measure_copy_alignment`` times that grid on this machine; run
``python -m kvtier.examples.copy_alignment`` to print it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kvtier.buffers import aligned_empty
from kvtier.examples.agent_loop.timing import flush_caches
from kvtier.validation import check_int

#: Start offsets (bytes into a 64-byte cache line) that malloc's 16-byte alignment allows.
OFFSETS = (0, 16, 32, 48)


class AlignmentGrid(NamedTuple):
    """``seconds_per_copy[i, j]``: median time of one cold copy of ``block_bytes`` from a
    source starting at ``offsets[i]`` into a destination starting at ``offsets[j]``."""

    block_bytes: int
    offsets: tuple[int, ...]
    seconds_per_copy: np.ndarray

    def format(self) -> str:
        """The grid as a table in microseconds (rows: source offset, columns: destination)."""
        lines = [f"cold copies of {self.block_bytes // 1024} KiB, us each; rows: source offset in its cache line, "
                 "columns: destination offset",
                 "src\\dst" + "".join(f"{o:>8}" for o in self.offsets)]
        for o, row in zip(self.offsets, self.seconds_per_copy):
            lines.append(f"{o:>7}" + "".join(f"{t * 1e6:8.2f}" for t in row))
        return "\n".join(lines)


def measure_copy_alignment(*, block_bytes: int = 64 << 10, blocks: int = 64, repeats: int = 7,
                           clock: Callable[[], float] = time.perf_counter) -> AlignmentGrid:
    """Time ``blocks`` block copies (caches flushed before each pass) for every pair of
    ``OFFSETS``; the median of ``repeats`` passes per pair, the pairs interleaved so that
    noise spreads over all of them. About ``16 * repeats`` cache flushes (a few seconds at
    the defaults). Reports the machine; asserts nothing."""
    for name, v in (("block_bytes", block_bytes), ("blocks", blocks), ("repeats", repeats)):
        check_int(v, name, minimum=1)
    span = blocks * block_bytes
    src_raw = aligned_empty(span + 64, np.uint8)
    dst_raw = aligned_empty(span + 64, np.uint8)
    src_raw.fill(1)
    dst_raw.fill(0)
    times: dict[tuple[int, int], list[float]] = {(a, b): [] for a in OFFSETS for b in OFFSETS}
    for _ in range(repeats):
        for a, b in times:
            src = src_raw[a : a + span].reshape(blocks, block_bytes)
            dst = dst_raw[b : b + span].reshape(blocks, block_bytes)
            flush_caches()
            t0 = clock()
            for i in range(blocks):
                dst[i] = src[i]
            times[(a, b)].append((clock() - t0) / blocks)
    grid = np.array([[np.median(times[(a, b)]) for b in OFFSETS] for a in OFFSETS])
    return AlignmentGrid(block_bytes, OFFSETS, grid)


if __name__ == "__main__":
    print(measure_copy_alignment().format())
