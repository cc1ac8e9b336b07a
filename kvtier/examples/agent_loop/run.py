"""``run_agent_loop``: sessions of multi-turn generation whose KV lives in a ``TieredStore``.

Each turn of each session: look up the context's block hashes; let the planner
(``kvtier.planners``) decide per block to fetch it from its tier or recompute
it (missing blocks are always recomputed); fetch straight into the sequence's KV pages
(``store.fetch(h, out=page)``); recompute each run of recomputed blocks given the KV
before it; prefill the new tokens and decode the answer greedily; then put every full
block back into the store, newest in HBM, which pushes older blocks down to DRAM and
flash and, when flash is full, drops them. Every fetch and recompute is timed
(``timing.OpTiming``) beside the cost model's prediction on the ``local-cpu`` target.

Every decision is a function of the config and its seed; the clock is read only for the
reported timings.

Read next: ``report.py`` (reading the results).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kvtier.cost import recompute_time_s, transfer_time_s
from kvtier.errors import ConfigError
from kvtier.examples.agent_loop.calibration import Calibration, calibrate
from kvtier.examples.agent_loop.config import AgentLoopConfig
from kvtier.examples.agent_loop.report import format_turn
from kvtier.examples.agent_loop.results import AgentLoopResult, TurnRecord
from kvtier.examples.agent_loop.target import local_cpu_target
from kvtier.examples.agent_loop.tiers import TIER_NAMES, tier_specs
from kvtier.examples.agent_loop.timing import Clock, OpTiming
from kvtier.examples.transformer import Transformer
from kvtier.hashing import block_hashes
from kvtier.planners import RECOMPUTE, make_planner
from kvtier.store import TieredStore
from kvtier.targets import HardwareTarget


def build_store(cfg: AgentLoopConfig, flash_dir: str) -> TieredStore:
    """The run's store: ``hbm`` / ``dram`` memory slabs and a ``flash`` file under ``flash_dir``."""
    spec = cfg.model.model_spec()
    tiers = tier_specs(spec.block_bytes(cfg.block_tokens), hbm_blocks=cfg.hbm_blocks, dram_blocks=cfg.dram_blocks,
                       flash_blocks=cfg.flash_blocks, flash_dir=flash_dir, flash_codec=cfg.flash_codec)
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
    if calibration is None:
        calibration = calibrate(model, cfg.block_tokens, flash_dir=flash_dir, flash_codec=cfg.flash_codec, clock=clock)
    target = local_cpu_target(calibration, model=None, **cfg.tier_bytes()._asdict())
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
    for a, b in true_runs(source == RECOMPUTE):
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


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
