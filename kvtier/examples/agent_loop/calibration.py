"""``calibrate``: measure this machine, for the cost model to price fetches and recomputes.

A ``Calibration`` holds what was measured: memory-copy bandwidth, file read bandwidth
(through the page cache, as the flash tier reads), CRC32C and lz4 speeds on a real KV
block of the model, the store's fixed cost per fetch from each tier, and the FLOP/s the
numpy model achieves. Each figure is the median of several timed passes (``timing.rate``);
they differ from run to run, so the cost model's error is reported against them, never
asserted.

Read next: ``target.py`` (these figures as a ``HardwareTarget``), then ``check.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import lz4.block
import numpy as np

from kvtier.buffers import aligned_empty
from kvtier.codec import checksum
from kvtier.examples.agent_loop.tiers import TIER_NAMES, tier_specs
from kvtier.examples.agent_loop.timing import Clock, cold_fetches, fill_tiers, rate
from kvtier.examples.transformer import Transformer
from kvtier.store import TieredStore
from kvtier.tiers.flash_tier import FILE_HEADER_BYTES, SLOT_HEADER_BYTES, flash_slot_bytes


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Figures measured on this machine (median of ``repeats`` passes each).

    ``memcpy_bw_bytes_per_s``: block-sized copies between page-aligned numpy buffers
    larger than the caches (what a memory tier's fetch moves into a KV page).
    ``file_read_bw_bytes_per_s``: ``preadv`` of a slot's header and payload from a file
    written as the flash tier writes one (the page cache), as the tier reads a block. ``crc_bw_bytes_per_s``:
    CRC32C (the flash tier verifies every read). ``lz4_ratio`` of a real KV block and
    ``lz4_decode_bw_bytes_per_s`` (None when lz4 does not shrink the block: the tier then
    stores it raw and decodes nothing). ``fetch_overhead_s``: per tier, the store's fixed
    cost of one fetch, measured with 64-byte blocks where bandwidth plays no part, stored
    long ago (caches flushed) while the store itself is warm, as the fetches it prices run.
    ``achieved_flops``: the model's FLOP/s (``ModelSpec.prefill_flops`` / time) on a
    calibration recompute of ``calib_tokens`` tokens after ``calib_context`` tokens.
    """

    block_bytes: int
    memcpy_bw_bytes_per_s: float
    file_read_bw_bytes_per_s: float
    crc_bw_bytes_per_s: float
    lz4_ratio: float
    lz4_decode_bw_bytes_per_s: float | None
    fetch_overhead_s: dict
    achieved_flops: float
    calib_tokens: int
    calib_context: int

    @property
    def flash_read_bw_bytes_per_s(self) -> float:
        """Bandwidth of a flash fetch end to end, per raw byte, as the flash tier reads:
        a raw payload is read with its header straight into the caller's page, then
        CRC32C-checked; a compressed one is read as its whole slot, checked, then lz4-decoded."""
        bb = self.block_bytes
        if self.lz4_decode_bw_bytes_per_s:
            file_s = flash_slot_bytes(bb) / bb / self.file_read_bw_bytes_per_s
            stored = 1.0 / self.lz4_ratio
            return 1.0 / (file_s + stored / self.crc_bw_bytes_per_s + 1.0 / self.lz4_decode_bw_bytes_per_s)
        file_s = (SLOT_HEADER_BYTES + bb) / bb / self.file_read_bw_bytes_per_s
        return 1.0 / (file_s + 1.0 / self.crc_bw_bytes_per_s)


def calibrate(model: Transformer, block_tokens: int, *, flash_dir: str, flash_codec: str = "lz4",
              clock: Clock = time.perf_counter, repeats: int = 5) -> Calibration:
    """Measure this machine for ``local_cpu_target`` (about a second).

    Writes scratch files under ``flash_dir`` and removes them. Times are read from
    ``clock`` (wall clock by default; ``time.process_time`` is steadier on a shared
    machine); the figures differ from run to run, so the cost model's error is reported
    against them, never asserted.
    """
    spec = model.model_spec
    block_bytes = spec.block_bytes(block_tokens)
    # A real KV block of the model (its bytes decide lz4's ratio).
    context, calib_tokens = 16 * block_tokens, 4 * block_tokens
    tokens = np.random.default_rng(12345).integers(0, model.config.vocab_size, context + calib_tokens)
    kv = model.new_cache(block_tokens, context + calib_tokens)
    model.forward(tokens[:context], kv, 0, logits="none")
    block = np.ascontiguousarray(kv.page(1)).view(np.uint8).reshape(-1)

    # Memory and file figures are measured over 48 MiB, more than this machine's caches
    # hold (so as a fetch sees them: the KV a turn needs was written turns ago), in
    # block-sized pieces (so with the per-call cost of moving one block), from
    # page-aligned buffers into page-aligned ones (as into KV pages: a copy between buffers
    # at different offsets within a cache line can take twice as long, see ``aligned_empty``).
    n_blocks = max(8, (48 << 20) // block_bytes)
    src = aligned_empty((n_blocks, block_bytes), np.uint8)
    src[:] = block
    dst = aligned_empty((n_blocks, block_bytes), np.uint8)
    dst.fill(0)

    def copy_all() -> int:
        for i in range(n_blocks):
            np.copyto(dst[i], src[i])
        return n_blocks * block_bytes

    memcpy_bw = rate(copy_all, clock, repeats)

    # The file is written as the flash tier writes one (sized up front, then one pwritev of
    # header and payload per slot: the page cache then holds it as it holds the tier's
    # file, which reads about 10% slower than a file written slot-wide) and read as the
    # tier reads a raw block: one preadv per slot, the header into a small buffer and the
    # payload straight into a (cold) page.
    stride = flash_slot_bytes(block_bytes)
    path = os.path.join(flash_dir, "kvtier-calibration.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, FILE_HEADER_BYTES + n_blocks * stride)
        header = bytes(SLOT_HEADER_BYTES)
        for i in range(n_blocks):
            os.pwritev(fd, [header, block], FILE_HEADER_BYTES + i * stride)
        head = bytearray(SLOT_HEADER_BYTES)

        def read_all() -> int:
            for i in range(n_blocks):
                os.preadv(fd, [head, dst[i]], FILE_HEADER_BYTES + i * stride)
            return n_blocks * (SLOT_HEADER_BYTES + block_bytes)

        file_bw = rate(read_all, clock, repeats)
    finally:
        os.close(fd)
        os.unlink(path)
    del src, dst

    data = bytes(block)

    def crc_all() -> int:
        for _ in range(16):
            checksum(data)
        return 16 * len(data)

    crc_bw = rate(crc_all, clock, repeats)
    packed = lz4.block.compress(block, store_size=False)
    ratio = block_bytes / len(packed) if len(packed) < block_bytes else 1.0
    lz4_bw = None
    if flash_codec == "lz4" and len(packed) < block_bytes:
        lz4_bw = rate(
            lambda: sum(len(lz4.block.decompress(packed, uncompressed_size=block_bytes)) for _ in range(16)), clock,
            repeats)

    with tempfile.TemporaryDirectory(dir=flash_dir) as d:
        # At least 9 passes: a pass is short (64 fetches, about 0.3 ms), so one preemption
        # on this shared machine moves it a lot.
        overhead = _measure_fetch_overheads(d, flash_codec, clock, max(repeats, 9))

    def recompute() -> int:
        kv.filled[context // block_tokens :] = 0
        model.forward(tokens[context:], kv, context, logits="none")
        return 1

    flops = float(spec.prefill_flops(calib_tokens, context))
    recompute()  # warm up
    achieved = flops * rate(recompute, clock, repeats)
    return Calibration(
        block_bytes=block_bytes, memcpy_bw_bytes_per_s=memcpy_bw, file_read_bw_bytes_per_s=file_bw,
        crc_bw_bytes_per_s=crc_bw, lz4_ratio=ratio, lz4_decode_bw_bytes_per_s=lz4_bw, fetch_overhead_s=overhead,
        achieved_flops=achieved, calib_tokens=calib_tokens, calib_context=context,
    )


def _measure_fetch_overheads(flash_dir: str, codec: str, clock: Clock, repeats: int, n: int = 64) -> dict:
    """Seconds per ``fetch`` of a 64-byte block from each tier: the store's fixed cost per
    fetch, where bandwidth plays no part. Measured as the calibration check and the agent
    loop fetch: ``n`` blocks per pass, stored long ago (caches flushed), the store warm."""
    shape = (16,)
    tiers = tier_specs(64, hbm_blocks=n + 1, dram_blocks=n + 1, flash_blocks=n + 1, flash_dir=flash_dir,
                       flash_codec=codec)
    with TieredStore(tiers, block_shape=shape, dtype=np.float32) as store:
        rng = np.random.default_rng(0)
        per_tier = fill_tiers(store, n + 1, lambda h: rng.standard_normal(shape).astype(np.float32))
        outs = list(aligned_empty((n,) + shape, np.float32))
        overhead = {}
        for name, (*hashes, warm) in zip(TIER_NAMES, per_tier):
            setup, fetch_all = cold_fetches(store, hashes, outs, warm, np.empty(shape, np.float32))
            overhead[name] = 1.0 / rate(fetch_all, clock, repeats, setup)
    return overhead
