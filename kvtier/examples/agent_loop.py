"""Multi-turn, agent-like generation on the example transformer, its KV in a ``TieredStore``.

What one run does (``run_agent_loop``):

* **Sessions** share a system prompt; one session (``fork_turn``) forks from session 0's
  context mid-run, as a sub-agent does, so it shares every block of that context. Each
  turn appends a tool output / user message to the session's context and generates
  ``generate_tokens`` tokens greedily.
* **Tiers**: a small HBM, DRAM and an lz4 flash file. After each turn every full block of
  the context is put (or promoted) into HBM, which pushes older blocks to DRAM and flash
  and, when flash is full, drops them.
* **Before each turn** the context's block hashes are looked up; the chosen planner
  (``kvtier.policies.planners``) decides, per block, to fetch it from its tier or to
  recompute it with the model (missing blocks are always recomputed). Fetched blocks go
  straight into the sequence's KV pages (``store.fetch(h, out=page)``); recomputed ranges
  run through the model given the KV before them; then the new tokens are prefilled and
  the answer decoded, attention reading the pages.
* **Calibration** (``calibrate``): memory-copy bandwidth, file read bandwidth (+ CRC and
  codec), the store's fixed cost per fetch and the model's achieved FLOP/s are measured
  on this machine, and ``local_cpu_target`` turns them into a ``HardwareTarget``. The
  planner plans against it, and every fetch and recompute is timed and compared with
  the cost model's prediction (``kvtier.cost``).

Correctness: the logits and tokens of every turn equal, bit for bit, those of the same
run with an HBM large enough to hold everything (``AgentLoopConfig.unlimited_hbm``), for
every planner, because recomputed KV is bitwise equal to the KV first computed
(``kvtier.examples.transformer``); ``compare_runs`` checks it, and the loop itself checks
each recomputed block against the copy the store still holds, where it holds one.

Wall-clock time is read only through the ``clock`` argument, for the reported timings;
every decision is a function of the config and its seed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c
import lz4.block
import numpy as np

from kvtier.buffers import aligned_empty
from kvtier.cost import recompute_time_s, transfer_time_s
from kvtier.errors import ConfigError
from kvtier.examples.transformer import Transformer, TransformerConfig
from kvtier.hashing import block_hashes
from kvtier.model import ModelSpec
from kvtier.policies.planners import RECOMPUTE, make_planner
from kvtier.store import TieredStore
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier
from kvtier.tiers import dram, flash, hbm
from kvtier.tiers.flash_tier import FILE_HEADER_BYTES, SLOT_HEADER_BYTES, flash_slot_bytes

TIER_NAMES = ("hbm", "dram", "flash")

Clock = Callable[[], float]


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AgentLoopConfig:
    """The run: model, sessions, turns, tier sizes (in blocks) and the planner.

    ``turn_tokens``: mean tokens a turn appends (drawn in ``[t/2, 3t/2]``).
    ``fork_turn``: at this turn the last session starts as a copy of session 0's context
    (``None``: no fork; needs ``sessions >= 2``). ``flash_codec``: ``"lz4"`` or ``"none"``.
    ``verify_recompute``: after recomputing a block the store still holds, fetch the stored
    copy and compare the bits (those fetches count in the store's statistics).
    """

    model: TransformerConfig = TransformerConfig()
    block_tokens: int = 16
    sessions: int = 3
    turns: int = 6
    system_prompt_tokens: int = 128
    turn_tokens: int = 96
    generate_tokens: int = 16
    fork_turn: int | None = 2
    hbm_blocks: int = 16
    dram_blocks: int = 32
    flash_blocks: int = 48
    flash_codec: str = "lz4"
    planner: str = "cost-optimal"
    verify_recompute: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, TransformerConfig):
            raise ConfigError(f"model: got {self.model!r}, expected a TransformerConfig")
        for name in ("block_tokens", "sessions", "turns", "turn_tokens", "generate_tokens", "hbm_blocks",
                     "dram_blocks", "flash_blocks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: got {v!r}, expected an integer >= 1")
        for name in ("system_prompt_tokens", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name}: got {v!r}, expected an integer >= 0")
        if self.fork_turn is not None:
            if isinstance(self.fork_turn, bool) or not isinstance(self.fork_turn, int) or not 1 <= self.fork_turn < self.turns:
                raise ConfigError(f"fork_turn: got {self.fork_turn!r}, expected None or 1 <= fork_turn < turns ({self.turns})")
            if self.sessions < 2:
                raise ConfigError(f"fork_turn: got {self.fork_turn!r} with sessions=1, expected None (nothing to fork from)")
        if self.flash_codec not in ("lz4", "none"):
            raise ConfigError(f"flash_codec: got {self.flash_codec!r}, expected 'lz4' or 'none'")
        make_planner(self.planner)  # UnknownNameError lists the planners
        if self.max_session_tokens > self.model.max_positions:
            raise ConfigError(
                f"turns/turn_tokens: a session may reach {self.max_session_tokens} tokens, expected <= "
                f"model.max_positions ({self.model.max_positions})"
            )

    @property
    def max_session_tokens(self) -> int:
        """An upper bound on one session's context (KV pages are sized by it)."""
        per_turn = self.turn_tokens * 3 // 2 + self.generate_tokens
        return self.system_prompt_tokens + self.turns * per_turn + self.generate_tokens

    def unlimited_hbm(self) -> "AgentLoopConfig":
        """The same run with an HBM that holds every block: the reference for equality."""
        blocks = self.sessions * (-(-self.max_session_tokens // self.block_tokens)) + 1
        return dataclasses.replace(self, hbm_blocks=blocks, dram_blocks=1, flash_blocks=1)


# ---------------------------------------------------------------------------------------
# calibration and the local-cpu target
# ---------------------------------------------------------------------------------------


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


def _rate(fn: Callable[[], int], clock: Clock, repeats: int, setup: Callable[[], None] | None = None) -> float:
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


def _flush_caches(nbytes: int = 64 << 20) -> None:
    """Stream through more memory than the CPU caches hold, so the next reads are cold."""
    np.ones(nbytes // 8, np.float64).sum()


def _fill_tiers(store: TieredStore, blocks_per_tier: int, block: Callable[[int], np.ndarray]) -> list[list[int]]:
    """Put ``3 * blocks_per_tier`` blocks (hashes 1, 2, ...; bytes ``block(h)``) into a
    store of three tiers of ``blocks_per_tier`` slots each; returns each tier's hashes. The
    exclusive LRU cascade leaves the first third in flash and the second in DRAM."""
    hashes = list(range(1, 3 * blocks_per_tier + 1))
    for h in hashes:
        store.put(h, block(h))
    found = store.lookup(hashes).tier_index.tolist()
    return [[h for h, ti in zip(hashes, found) if ti == t] for t in range(len(TIER_NAMES))]


def _cold_fetches(store: TieredStore, hashes: list[int], outs: list[np.ndarray], warm: int,
                  warm_out: np.ndarray) -> tuple[Callable[[], None], Callable[[], int]]:
    """``(setup, fetch_all)`` for timing fetches of blocks that were stored long ago.

    ``setup`` flushes the CPU caches, so the blocks' bytes and index entries (and, for
    flash, the kernel's page-cache entries) are cold, then fetches block ``warm`` of the
    same tier untimed, so the store's code and the interpreter's working set are warm again,
    as in an engine that calls the store all the time. (Without that fetch, the first
    fetches after a flush pay 0.05-0.3 ms, once, to bring them back.) ``fetch_all``
    fetches ``hashes[i]`` into ``outs[i]`` (``promote=False``) and returns how many.
    """

    def setup() -> None:
        _flush_caches()
        store.fetch(warm, out=warm_out, promote=False)

    def fetch_all() -> int:
        for h, out in zip(hashes, outs):
            store.fetch(h, out=out, promote=False)
        return len(hashes)

    return setup, fetch_all


def _measure_fetch_overheads(flash_dir: str, codec: str, clock: Clock, repeats: int, n: int = 64) -> dict:
    """Seconds per ``fetch`` of a 64-byte block from each tier: the store's fixed cost per
    fetch, where bandwidth plays no part. Measured as the calibration check and the agent
    loop fetch: ``n`` blocks per pass, stored long ago (caches flushed), the store warm."""
    shape = (16,)
    with TieredStore(
        [hbm((n + 1) * 64, name="hbm"), dram((n + 1) * 64, name="dram"),
         flash((n + 1) * flash_slot_bytes(64), flash_dir, codec=codec, name="flash")],
        block_shape=shape, dtype=np.float32,
    ) as store:
        rng = np.random.default_rng(0)
        per_tier = _fill_tiers(store, n + 1, lambda h: rng.standard_normal(shape).astype(np.float32))
        outs = list(aligned_empty((n,) + shape, np.float32))
        overhead = {}
        for name, (*hashes, warm) in zip(TIER_NAMES, per_tier):
            setup, fetch_all = _cold_fetches(store, hashes, outs, warm, np.empty(shape, np.float32))
            overhead[name] = 1.0 / _rate(fetch_all, clock, repeats, setup)
    return overhead


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

    memcpy_bw = _rate(copy_all, clock, repeats)

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

        file_bw = _rate(read_all, clock, repeats)
    finally:
        os.close(fd)
        os.unlink(path)
    del src, dst

    data = bytes(block)

    def crc_all() -> int:
        for _ in range(16):
            crc32c.crc32c(data)
        return 16 * len(data)

    crc_bw = _rate(crc_all, clock, repeats)
    packed = lz4.block.compress(block, store_size=False)
    ratio = block_bytes / len(packed) if len(packed) < block_bytes else 1.0
    lz4_bw = None
    if flash_codec == "lz4" and len(packed) < block_bytes:
        lz4_bw = _rate(
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
    achieved = flops * _rate(recompute, clock, repeats)
    return Calibration(
        block_bytes=block_bytes, memcpy_bw_bytes_per_s=memcpy_bw, file_read_bw_bytes_per_s=file_bw,
        crc_bw_bytes_per_s=crc_bw, lz4_ratio=ratio, lz4_decode_bw_bytes_per_s=lz4_bw, fetch_overhead_s=overhead,
        achieved_flops=achieved, calib_tokens=calib_tokens, calib_context=context,
    )


def local_cpu_target(cal: Calibration, *, model: ModelSpec | None = None, hbm_bytes: int, dram_bytes: int,
                     flash_bytes: int) -> HardwareTarget:
    """A ``HardwareTarget`` named ``local-cpu`` from measured figures.

    Tiers ``hbm`` (the compute tier: the model reads KV pages in host memory), ``dram``
    over link ``memcpy`` and ``flash`` over link ``file``. A fetch from tier ``t`` costs
    ``fetch_overhead_s[t] + bytes / bandwidth``: memcpy bandwidth for memory tiers, and
    for flash the file read, CRC and any lz4 decode in series (``flash_read_bw_bytes_per_s``).
    ``compute_flops`` is the achieved FLOP/s with ``efficiency=1``: it is already achieved.
    """
    mem = cal.memcpy_bw_bytes_per_s
    fl = cal.flash_read_bw_bytes_per_s
    oh = cal.fetch_overhead_s
    tiers = (
        TargetTier(name="hbm", kind="hbm", capacity_bytes=int(hbm_bytes), read_bw_bytes_per_s=mem,
                   write_bw_bytes_per_s=mem, latency_s=oh["hbm"],
                   note="KV pool in host memory; latency = the store's measured fixed cost per fetch"),
        TargetTier(name="dram", kind="dram", capacity_bytes=int(dram_bytes), read_bw_bytes_per_s=mem,
                   write_bw_bytes_per_s=mem, latency_s=oh["dram"], link="memcpy",
                   note="a second slab in host memory; latency = the store's measured fixed cost per fetch"),
        TargetTier(name="flash", kind="flash", capacity_bytes=int(flash_bytes), read_bw_bytes_per_s=fl,
                   write_bw_bytes_per_s=cal.file_read_bw_bytes_per_s, latency_s=oh["flash"], link="file",
                   note="a file read through the page cache, CRC32C-verified, lz4-decoded if compressed"),
    )
    links = (
        LinkSpec(name="memcpy", read_bw_bytes_per_s=mem, write_bw_bytes_per_s=mem, note="measured block-sized np.copyto"),
        LinkSpec(name="file", read_bw_bytes_per_s=cal.file_read_bw_bytes_per_s,
                 write_bw_bytes_per_s=cal.file_read_bw_bytes_per_s, note="measured block-sized os.preadv (page cache)"),
    )
    return HardwareTarget(
        name="local-cpu", unit="this machine, numpy", chips=1, tiers=tiers, links=links,
        compute_flops=cal.achieved_flops, efficiency=1.0, model=model,
        notes=(f"measured: memcpy {mem / 1e9:.1f} GB/s, file read {cal.file_read_bw_bytes_per_s / 1e9:.1f} GB/s, "
               f"{cal.achieved_flops / 1e9:.1f} GFLOP/s achieved by the numpy model"),
    )


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
        return (self.predicted_s - self.measured_s) / self.measured_s if self.measured_s > 0 else float("inf")


def calibration_check(model: Transformer, target: HardwareTarget, block_tokens: int, *, flash_dir: str,
                      flash_codec: str = "lz4", fetch_blocks: int = 64, clock: Clock = time.perf_counter) -> list:
    """Time real fetches and recomputes, each against the cost model's prediction on ``target``.

    Fetches: ``fetch_blocks`` blocks from each tier of a fresh store into page-aligned KV
    pages (``promote=False``; the median of three passes), one operation per tier. Before
    each pass the CPU caches are flushed, so the blocks' bytes are cold, and one other block
    is fetched from the same tier untimed, so the store's code and index are warm, as in an
    engine that calls the store all the time (without it the first fetches after a flush
    pay 0.05-0.3 ms to bring the interpreter's working set back, once per pass).
    Recomputes: one block at the start and at the end of a 32-block sequence, and 4 and 8
    blocks in its middle. Returns ``OpTiming`` values (about a second of work).
    """
    spec = model.model_spec
    B = block_tokens
    bb = spec.block_bytes(B)
    n_seq = 32
    tokens = np.random.default_rng(54321).integers(0, model.config.vocab_size, n_seq * B)
    kv = model.new_cache(B, n_seq * B)
    model.forward(tokens, kv, 0, logits="none")
    ops = []
    n = fetch_blocks + 1  # per tier: the timed blocks and one to warm the store up with
    with tempfile.TemporaryDirectory(dir=flash_dir, prefix="kvtier-check-") as d:
        tiers = [hbm(n * bb, name="hbm"), dram(n * bb, name="dram"),
                 flash(n * flash_slot_bytes(bb), d, codec=flash_codec, name="flash")]
        with TieredStore.for_model(spec, B, tiers) as store:
            per_tier = _fill_tiers(store, n, lambda h: kv.page(h % n_seq))
            out = model.new_cache(B, fetch_blocks * B)
            outs = [out.page(i) for i in range(fetch_blocks)]
            for t, (name, (*hashes, warm)) in enumerate(zip(TIER_NAMES, per_tier)):
                setup, fetch_all = _cold_fetches(store, hashes, outs, warm, np.empty(kv.block_shape, np.float32))
                dt = fetch_blocks / _rate(fetch_all, clock, 3, setup)  # the median of three passes
                pred = len(hashes) * float(transfer_time_s(bb, target.fetch_path(t)))
                ops.append(OpTiming("fetch", name, len(hashes), len(hashes) * B, 0, pred, dt))
    for a, b in ((0, 1), (n_seq - 1, n_seq), (n_seq // 2 - 2, n_seq // 2 + 2), (n_seq // 2, n_seq * 3 // 4)):
        kv.filled[a:] = 0
        t0 = clock()
        model.recompute_blocks(tokens, kv, a, b)
        dt = clock() - t0
        kv.filled[:] = B
        pred = float(recompute_time_s(spec, target, (b - a) * B, a * B))
        ops.append(OpTiming("recompute", None, b - a, (b - a) * B, a * B, pred, dt))
    return ops


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------


@dataclass
class TurnRecord:
    """What one session's turn found, decided, cost and produced."""

    turn: int
    session: int
    prompt_tokens: int
    prefix_blocks: int
    new_tokens: int
    found: dict  # tier name -> prefix blocks found there, plus "missing"
    fetched: dict  # tier name -> blocks fetched
    recomputed_blocks: int
    fetch_failed: int
    plan_ttft_s: float
    ops: list = field(default_factory=list)
    decode_s: float = 0.0
    placement_s: float = 0.0
    recompute_verified: int = 0
    recompute_mismatched: int = 0
    generated: list = field(default_factory=list)

    @property
    def measured_ttft_s(self) -> float:
        """Fetches, recomputes and prefill as executed (one after another)."""
        return sum(op.measured_s for op in self.ops)

    @property
    def predicted_serial_s(self) -> float:
        """The cost model's prediction for the same operations run one after another."""
        return sum(op.predicted_s for op in self.ops)


@dataclass
class AgentLoopResult:
    """Everything a run produced. ``logits[(turn, session)]`` is a ``(generate_tokens,
    vocab)`` float32 array; ``contexts[session]`` the final token ids."""

    config: AgentLoopConfig
    target: HardwareTarget
    calibration: Calibration
    turns: list = field(default_factory=list)
    logits: dict = field(default_factory=dict)
    contexts: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    def ops(self, kind: str | None = None) -> list:
        return [op for t in self.turns for op in t.ops if kind is None or op.kind == kind]


class Equality(NamedTuple):
    """How two runs compare: turns whose logits are bitwise equal, and the largest gap."""

    turns_equal: int
    turns: int
    tokens_equal: bool
    max_abs_diff: float

    @property
    def bitwise(self) -> bool:
        return self.turns_equal == self.turns and self.tokens_equal


def compare_runs(a: AgentLoopResult, b: AgentLoopResult) -> Equality:
    """Compare the logits of every turn and the final contexts of two runs."""
    keys = sorted(set(a.logits) | set(b.logits))
    equal, worst = 0, 0.0
    for k in keys:
        x, y = a.logits.get(k), b.logits.get(k)
        if x is not None and y is not None and x.shape == y.shape:
            if np.array_equal(x.view(np.uint32), y.view(np.uint32)):
                equal += 1
            else:
                worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
        else:
            worst = float("inf")
    same_tokens = a.contexts.keys() == b.contexts.keys() and all(
        np.array_equal(a.contexts[s], b.contexts[s]) for s in a.contexts)
    return Equality(equal, len(keys), same_tokens, worst)


def _session_inputs(cfg: AgentLoopConfig) -> tuple[np.ndarray, dict]:
    """The system prompt and each (session, turn)'s appended tokens, drawn from the seed."""
    rng = np.random.default_rng(cfg.seed)
    vocab = cfg.model.vocab_size
    system = rng.integers(0, vocab, cfg.system_prompt_tokens)
    inputs = {}
    lo, hi = max(1, cfg.turn_tokens // 2), cfg.turn_tokens * 3 // 2
    for turn in range(cfg.turns):
        for s in range(cfg.sessions):
            inputs[(s, turn)] = rng.integers(0, vocab, int(rng.integers(lo, hi + 1)))
    return system, inputs


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def build_store(cfg: AgentLoopConfig, flash_dir: str) -> TieredStore:
    """The run's store: ``hbm`` / ``dram`` memory slabs and a ``flash`` file under ``flash_dir``."""
    spec = cfg.model.model_spec()
    bb = spec.block_bytes(cfg.block_tokens)
    tiers = [
        hbm(cfg.hbm_blocks * bb, name="hbm"),
        dram(cfg.dram_blocks * bb, name="dram"),
        flash(cfg.flash_blocks * flash_slot_bytes(bb), flash_dir, codec=cfg.flash_codec, name="flash"),
    ]
    return TieredStore.for_model(spec, cfg.block_tokens, tiers)


def run_agent_loop(cfg: AgentLoopConfig, *, flash_dir: str, calibration: Calibration | None = None,
                   model: Transformer | None = None, clock: Clock = time.perf_counter,
                   log: Callable[[str], None] | None = None) -> AgentLoopResult:
    """Run ``cfg`` with its flash file under ``flash_dir``; returns what happened.

    ``calibration``: reuse a measurement (else ``calibrate`` runs first). ``model``: reuse
    an already-built ``Transformer`` for ``cfg.model``. ``log`` receives one line per turn.
    The store is closed at the end; its statistics are in the result.
    """
    t_start = clock()
    model = model if model is not None else Transformer(cfg.model)
    if model.config != cfg.model:
        raise ConfigError("model: got a Transformer for another config, expected one built from cfg.model")
    spec = model.model_spec
    B = cfg.block_tokens
    bb = spec.block_bytes(B)
    if calibration is None:
        calibration = calibrate(model, B, flash_dir=flash_dir, flash_codec=cfg.flash_codec, clock=clock)
    target = local_cpu_target(calibration, model=None, hbm_bytes=cfg.hbm_blocks * bb, dram_bytes=cfg.dram_blocks * bb,
                              flash_bytes=cfg.flash_blocks * flash_slot_bytes(bb))
    planner = make_planner(cfg.planner)
    system, inputs = _session_inputs(cfg)
    result = AgentLoopResult(config=cfg, target=target, calibration=calibration)
    os.makedirs(flash_dir, exist_ok=True)
    run_dir = tempfile.mkdtemp(dir=flash_dir, prefix="kvtier-example-")
    try:
        with build_store(cfg, run_dir) as store:
            _run_turns(_Run(cfg, model, store, planner, target, clock), system, inputs, result, log)
            result.stats = store.stats().as_dict()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    result.seconds = clock() - t_start
    return result


class _Run(NamedTuple):
    """What every turn of a run shares."""

    cfg: AgentLoopConfig
    model: Transformer
    store: TieredStore
    planner: object
    target: HardwareTarget
    clock: Clock


def _run_turns(run: _Run, system: np.ndarray, inputs: dict, result: AgentLoopResult, log) -> None:
    cfg = run.cfg
    contexts = result.contexts
    fork = cfg.sessions - 1 if cfg.fork_turn is not None else None
    for turn in range(cfg.turns):
        if fork is not None and turn == cfg.fork_turn:
            contexts[fork] = contexts[0].copy()  # a sub-agent starts from session 0's context
        for s in range(cfg.sessions):
            if s == fork and turn < cfg.fork_turn:
                continue
            prompt = np.concatenate((contexts.get(s, system), inputs[(s, turn)]))
            rec, logits, context = _session_turn(run, turn, s, prompt)
            result.logits[(turn, s)] = logits
            contexts[s] = context
            result.turns.append(rec)
            if log is not None:
                log(format_turn(rec))
        run.store.check_invariants()


def _session_turn(run: _Run, turn: int, session: int, prompt: np.ndarray):
    """One turn of one session: plan, fetch, recompute, prefill, decode, place."""
    cfg, model, store, clock = run.cfg, run.model, run.store, run.clock
    spec = model.model_spec
    B = cfg.block_tokens
    bb = spec.block_bytes(B)
    hashes = block_hashes(prompt, B)
    found = store.lookup(hashes)
    # The prefix runs to the last stored block, leaving at least one new token (its
    # logits start the answer), as vLLM's prefix cache does.
    present = np.flatnonzero(found.tier_index[: (prompt.size - 1) // B] >= 0)
    n = int(present[-1]) + 1 if present.size else 0
    tier_index = found.tier_index[:n]
    new = prompt.size - n * B
    plan = run.planner.plan(tier_index, model=spec, target=run.target, block_tokens=B, new_tokens=new)
    rec = TurnRecord(
        turn=turn, session=session, prompt_tokens=int(prompt.size), prefix_blocks=n, new_tokens=new,
        found={name: int(np.count_nonzero(tier_index == t)) for t, name in enumerate(TIER_NAMES)}
        | {"missing": int(np.count_nonzero(tier_index < 0))},
        fetched=plan.fetch_blocks_by_tier(), recomputed_blocks=int(plan.recomputed_blocks().size),
        fetch_failed=0, plan_ttft_s=plan.ttft_s,
    )
    kv = model.new_cache(B, prompt.size + cfg.generate_tokens)
    source = plan.source.astype(np.int64)
    # 1. Fetch every block the plan takes from a tier (resident ones too: attention reads
    #    the sequence's pages), tier by tier, straight into the pages.
    for t, name in enumerate(TIER_NAMES):
        idx = np.flatnonzero(source == t)
        if idx.size == 0:
            continue
        t0 = clock()
        for i in idx.tolist():
            if store.fetch(int(hashes[i]), out=kv.page(i), promote=False) is None:
                source[i] = RECOMPUTE  # it failed its checks: the store reported a miss
                rec.fetch_failed += 1
            else:
                kv.mark_full(i)
        dt = clock() - t0
        pred = float(idx.size * transfer_time_s(bb, run.target.fetch_path(t)))
        rec.ops.append(OpTiming("fetch", name, int(idx.size), int(idx.size) * B, 0, pred, dt))
    # 2. Recompute each run of recomputed blocks, front to back, given the KV before it.
    scratch = np.empty(kv.block_shape, np.float32)
    for a, b in _runs(source == RECOMPUTE):
        t0 = clock()
        model.recompute_blocks(prompt, kv, a, b)
        dt = clock() - t0
        pred = float(recompute_time_s(spec, run.target, (b - a) * B, a * B))
        rec.ops.append(OpTiming("recompute", None, b - a, (b - a) * B, a * B, pred, dt))
        if cfg.verify_recompute:  # where the store still holds the block: same bytes?
            for i in range(a, b):
                if tier_index[i] >= 0 and store.fetch(int(hashes[i]), out=scratch, promote=False) is not None:
                    same = np.array_equal(scratch.view(np.uint32), kv.page(i).view(np.uint32))
                    rec.recompute_verified += same
                    rec.recompute_mismatched += not same
    # 3. Prefill the new tokens, then decode greedily.
    t0 = clock()
    logits = model.forward(prompt[n * B :], kv, n * B, logits="last")
    dt = clock() - t0
    rec.ops.append(OpTiming("prefill", None, 0, new, n * B, float(recompute_time_s(spec, run.target, new, n * B)), dt))
    steps = []
    context = prompt
    t0 = clock()
    for g in range(cfg.generate_tokens):
        steps.append(logits)
        token = int(np.argmax(logits))
        rec.generated.append(token)
        context = np.append(context, token)
        if g + 1 < cfg.generate_tokens:
            logits = model.decode_step(token, kv, context.size - 1)
    rec.decode_s = clock() - t0
    # 4. Placement: every full block with KV goes (back) into the store, oldest first, so
    #    this turn's context ends up in HBM and older blocks move down the tiers.
    t0 = clock()
    full = kv.valid_tokens() // B
    for i, h in enumerate(block_hashes(context, B)[:full].tolist()):
        store.put(h, kv.page(i))
    rec.placement_s = clock() - t0
    return rec, np.stack(steps), context


# ---------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


def turn_header() -> str:
    return (f"{'turn':>4} {'sess':>4} {'prompt':>6} {'prefix':>6} | {'hbm':>3} {'dram':>4} {'flash':>5} {'miss':>4} | "
            f"{'fetch dram':>10} {'flash':>5} {'recomp':>6} | {'fetch ms pred/meas':>18} {'recompute ms pred/meas':>22} "
            f"{'prefill ms pred/meas':>20} | {'ttft ms plan/meas':>17}")


def format_turn(rec: TurnRecord) -> str:
    """One line of the turn table (``turn_header`` names the columns)."""

    def pair(kind: str) -> str:
        ops = [op for op in rec.ops if op.kind == kind]
        if not ops:
            return "-"
        return f"{_ms(sum(o.predicted_s for o in ops))}/{_ms(sum(o.measured_s for o in ops))}"

    f = rec.found
    return (f"{rec.turn:>4} {rec.session:>4} {rec.prompt_tokens:>6} {rec.prefix_blocks:>6} | {f['hbm']:>3} {f['dram']:>4} "
            f"{f['flash']:>5} {f['missing']:>4} | {rec.fetched.get('dram', 0):>10} {rec.fetched.get('flash', 0):>5} "
            f"{rec.recomputed_blocks:>6} | {pair('fetch'):>18} {pair('recompute'):>22} {pair('prefill'):>20} | "
            f"{_ms(rec.plan_ttft_s)}/{_ms(rec.measured_ttft_s):>8}")


class ErrorSummary(NamedTuple):
    """Predicted vs measured over a group of operations: totals, and among the ``judged``
    operations (those predicted to take at least ``error_summary``'s ``min_s``) how many
    came within 30% and the worst error."""

    group: str
    ops: int
    predicted_s: float
    measured_s: float
    judged: int
    within_30pct: int
    worst_error: float

    @property
    def total_error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s if self.measured_s > 0 else float("nan")


def error_summary(result: AgentLoopResult, *, min_s: float = 1e-3) -> list[ErrorSummary]:
    """Per group (fetch per tier, recompute, prefill): totals, and for the operations the
    cost model predicts to take at least ``min_s``, how many it predicted within 30%.
    (Selecting by predicted time keeps an operation that a preemption stretched past
    ``min_s`` from being judged while its undisturbed twins are not.)"""
    groups: dict[str, list[OpTiming]] = {}
    for op in result.ops():
        groups.setdefault(op.kind if op.tier is None else f"{op.kind} {op.tier}", []).append(op)
    out = []
    for name in sorted(groups):
        ops = groups[name]
        big = [o for o in ops if o.predicted_s >= min_s]
        out.append(ErrorSummary(
            group=name, ops=len(ops), predicted_s=sum(o.predicted_s for o in ops), measured_s=sum(o.measured_s for o in ops),
            judged=len(big), within_30pct=sum(abs(o.error) <= 0.3 for o in big),
            worst_error=max((o.error for o in big), key=abs, default=0.0),
        ))
    return out
