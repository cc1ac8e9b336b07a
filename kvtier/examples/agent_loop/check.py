"""``calibration_check``: the cost model's predictions on ``local-cpu`` next to real timings.

Before the agent loop runs, this times fetches of blocks from each tier of a fresh store
and recomputes of block ranges of a sequence with the model, and returns each as an
``OpTiming`` beside what the cost model predicted for it on the target.

Read next: ``results.py`` (what a run of the agent loop records), then ``run.py``.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from kvtier.cost import recompute_time_s, transfer_time_s
from kvtier.examples.agent_loop.tiers import TIER_NAMES, tier_specs
from kvtier.examples.agent_loop.timing import Clock, OpTiming, cold_fetches, fill_tiers, rate
from kvtier.examples.transformer import Transformer
from kvtier.store import TieredStore
from kvtier.targets import HardwareTarget


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
        tiers = tier_specs(bb, hbm_blocks=n, dram_blocks=n, flash_blocks=n, flash_dir=d, flash_codec=flash_codec)
        with TieredStore.for_model(spec, B, tiers) as store:
            per_tier = fill_tiers(store, n, lambda h: kv.page(h % n_seq))
            out = model.new_cache(B, fetch_blocks * B)
            outs = [out.page(i) for i in range(fetch_blocks)]
            for t, (name, (*hashes, warm)) in enumerate(zip(TIER_NAMES, per_tier)):
                setup, fetch_all = cold_fetches(store, hashes, outs, warm, np.empty(kv.block_shape, np.float32))
                dt = fetch_blocks / rate(fetch_all, clock, 3, setup)  # the median of three passes
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
