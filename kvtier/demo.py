"""A real demonstration of the store: coding agents whose contexts outgrow HBM.

Several agents share a system prompt; each turn appends tool output and model tokens to
its context. Every turn looks up the context's block hashes, fetches what is stored
(checking each block's bytes), and stores the new blocks. HBM is small, so blocks are
demoted to DRAM and to an lz4 flash file; at the end the store is closed, reopened from
the flash file, and every recovered block is read back and checked bit for bit.

The KV bytes of a block are a pure function of its hash, so any block can be checked
without keeping a copy. Nothing here reads the wall clock except the reported timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kvtier.hashing import block_hashes
from kvtier.model import ModelSpec
from kvtier.store import TieredStore
from kvtier.tiers import dram, flash, flash_slot_bytes, hbm


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Knobs of the demonstration (defaults: a few seconds, a few MB on disk)."""

    model: str = "tiny"
    block_tokens: int = 16
    agents: int = 4
    turns: int = 6
    system_prompt_tokens: int = 2048
    tokens_per_turn: int = 1024
    hbm_blocks: int = 256
    dram_blocks: int = 512
    flash_blocks: int = 2048
    seed: int = 0


@dataclass
class TurnRow:
    turn: int
    context_tokens: int
    blocks: int
    hits_by_tier: dict[str, int]
    missing: int
    verified: int
    corrupt_or_wrong: int


@dataclass
class DemoResult:
    config: DemoConfig
    rows: list[TurnRow] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    reopened_blocks: int = 0
    reopened_verified: int = 0
    seconds: float = 0.0


def block_payload(block_hash: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Deterministic KV bytes for a block: a pure function of its hash."""
    rng = np.random.default_rng(block_hash)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 256, size=shape, dtype=np.uint8).view(dtype)


def run_store_demo(cfg: DemoConfig, flash_dir: str, log=print) -> DemoResult:
    """Run the demonstration with its flash file under ``flash_dir``; returns what happened."""
    t0 = time.perf_counter()
    model = ModelSpec.preset(cfg.model)
    block_bytes = model.block_bytes(cfg.block_tokens)
    tiers = [
        hbm(cfg.hbm_blocks * block_bytes),
        dram(cfg.dram_blocks * block_bytes),
        flash(cfg.flash_blocks * flash_slot_bytes(block_bytes), flash_dir, codec="lz4", fsync="flush"),
    ]
    rng = np.random.default_rng(cfg.seed)
    system = rng.integers(0, 128_000, cfg.system_prompt_tokens)
    contexts = [system.copy() for _ in range(cfg.agents)]
    result = DemoResult(cfg)
    store = TieredStore.for_model(model, cfg.block_tokens, tiers)
    shape, dtype = store.block_shape, store.dtype
    out = np.empty(shape, dtype=dtype)
    log(
        f"store: {store!r}\n  model {model.name}, {cfg.block_tokens}-token blocks of {block_bytes} B; "
        f"{cfg.agents} agents x {cfg.turns} turns, +{cfg.tokens_per_turn} tokens per turn; flash file in {flash_dir}"
    )
    log(f"{'turn':>4} {'ctx tokens':>10} {'blocks':>7} " + " ".join(f"{n:>6}" for n in store.tier_names) + f" {'miss':>6} {'verified':>8}")
    for turn in range(cfg.turns):
        agg = TurnRow(turn, 0, 0, dict.fromkeys(store.tier_names, 0), 0, 0, 0)
        for a in range(cfg.agents):
            contexts[a] = np.concatenate([contexts[a], rng.integers(0, 128_000, cfg.tokens_per_turn)])
            hashes = block_hashes(contexts[a], cfg.block_tokens)
            found = store.lookup(hashes)
            for name, n in found.counts().items():
                if name == "missing":
                    agg.missing += n
                else:
                    agg.hits_by_tier[name] += n
            for h, tier_index in zip(hashes.tolist(), found.tier_index.tolist()):
                if tier_index >= 0 and store.fetch(h, out=out) is not None:
                    if np.array_equal(out.view(np.uint8), block_payload(h, shape, dtype).view(np.uint8)):
                        agg.verified += 1
                    else:
                        agg.corrupt_or_wrong += 1
                else:
                    store.put(h, block_payload(h, shape, dtype))  # "recompute" the block and keep it
            agg.context_tokens = max(agg.context_tokens, len(contexts[a]))
            agg.blocks += len(hashes)
        result.rows.append(agg)
        log(
            f"{turn:>4} {agg.context_tokens:>10} {agg.blocks:>7} "
            + " ".join(f"{agg.hits_by_tier[n]:>6}" for n in store.tier_names)
            + f" {agg.missing:>6} {agg.verified:>8}"
        )
        store.check_invariants()
    stats = store.stats()
    result.stats = stats.as_dict()
    for name, t in stats.tiers.items():
        log(
            f"  {name:>5}: {len(store.tier(name)):>5}/{store.tier(name).num_slots} blocks, hits {t.hits}, "
            f"evictions {t.evictions}, demotions {t.demotions}, promotions {t.promotions}, drops {t.drops}, "
            f"written {t.bytes_written / 1e6:.1f} MB (stored {t.stored_bytes_written / 1e6:.1f} MB, "
            f"lz4 ratio {t.compression_ratio:.2f})"
        )
    on_flash = store.tier("flash").hashes()
    store.close()
    again = TieredStore.for_model(model, cfg.block_tokens, tiers)
    result.reopened_blocks = again.tier("flash").recovery.recovered
    for h in on_flash:
        got = again.fetch(h, out=out, promote=False)
        if got is not None and np.array_equal(out.view(np.uint8), block_payload(h, shape, dtype).view(np.uint8)):
            result.reopened_verified += 1
    again.close()
    result.seconds = time.perf_counter() - t0
    log(
        f"closed and reopened: {result.reopened_blocks} blocks recovered from flash, "
        f"{result.reopened_verified}/{len(on_flash)} read back bit-identical; {result.seconds:.2f} s"
    )
    return result
