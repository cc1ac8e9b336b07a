"""Hypothesis strategies for kvtier's inputs: models, tier chains, payloads, request traces.

kvtier's own tests use these, and so can a user's: ``from kvtier.testing import
tier_chains, block_payloads``. Every strategy draws small values (a few blocks per tier,
a few layers per model) so that properties run fast and shrink well.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kvtier.model import ModelSpec
from kvtier.tiers import TierSpec
from kvtier.tiers.flash_tier import flash_slot_bytes

MEMORY_KINDS = ("sram", "hbm", "dram")



@st.composite
def model_specs(draw, *, mla: bool | None = None) -> ModelSpec:
    """Small GQA or MLA model specs with consistent geometry (1-4 layers, fp8/16/32 KV)."""
    use_mla = draw(st.booleans()) if mla is None else mla
    layers = draw(st.integers(1, 4))
    q_heads = draw(st.sampled_from([1, 2, 4, 8]))
    head_dim = draw(st.sampled_from([4, 8, 16]))
    common = dict(
        name="hypothesis",
        num_layers=layers,
        num_q_heads=q_heads,
        head_dim=head_dim,
        dtype_bytes=draw(st.sampled_from([1, 2, 4])),
        active_params=draw(st.floats(1e3, 1e12)),
    )
    if use_mla:
        return ModelSpec(mla_latent_dim=draw(st.integers(1, 64)), **common)
    kv_heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= q_heads]))
    return ModelSpec(num_kv_heads=kv_heads, **common)


@st.composite
def tier_specs(draw, block_bytes: int, *, kind: str | None = None, flash_dir: str | None = None,
               name: str | None = None, max_blocks: int = 6, codecs=("none", "lz4")) -> TierSpec:
    """One tier spec holding 1..max_blocks blocks of ``block_bytes``; flash needs ``flash_dir``."""
    kinds = MEMORY_KINDS + (("flash",) if flash_dir else ())
    kind = kind or draw(st.sampled_from(kinds))
    blocks = draw(st.integers(1, max_blocks))
    codec = draw(st.sampled_from(codecs))
    name = name or kind
    if kind == "flash":
        return TierSpec(kind="flash", name=name, capacity_bytes=blocks * flash_slot_bytes(block_bytes),
                        path=flash_dir, codec=codec)
    return TierSpec(kind=kind, name=name, capacity_bytes=blocks * block_bytes, codec=codec,
                    checksum=draw(st.booleans()))


@st.composite
def tier_chains(draw, block_bytes: int, *, flash_dir: str | None = None, min_tiers: int = 1, max_tiers: int = 4,
                max_blocks: int = 6) -> list[TierSpec]:
    """A chain of 1..max_tiers tier specs with unique names; at most one flash tier, last."""
    n = draw(st.integers(min_tiers, max_tiers))
    with_flash = flash_dir is not None and draw(st.booleans())
    specs = [
        draw(tier_specs(block_bytes, kind=draw(st.sampled_from(MEMORY_KINDS)), name=f"t{i}", max_blocks=max_blocks))
        for i in range(n - 1 if with_flash and n > 1 else n)
    ]
    if with_flash:
        specs.append(draw(tier_specs(block_bytes, kind="flash", flash_dir=flash_dir, name=f"t{len(specs)}",
                                     max_blocks=max_blocks)))
    return specs


def block_payloads(shape, dtype) -> st.SearchStrategy[np.ndarray]:
    """Arrays of exactly ``shape``/``dtype`` with any bit pattern (NaNs, infinities, -0.0)."""
    dtype = np.dtype(dtype)
    raw = hnp.arrays(np.uint8, int(np.prod(shape)) * dtype.itemsize)
    return raw.map(lambda a: a.view(dtype).reshape(shape))


def block_hash_values(max_value: int = 2**64 - 1) -> st.SearchStrategy[int]:
    """Valid block hashes (any uint64; small values shrink best)."""
    return st.integers(0, max_value)


@st.composite
def request_traces(draw, *, max_requests: int = 20, max_blocks: int = 12, num_sessions: int = 3):
    """Requests whose block ids share prefixes within a session, as agent turns do.

    Returns ``(block_offsets, block_hashes)``: CSR arrays (int64[n + 1], uint64[total])
    in the layout ``kvtier.traces.Trace`` and the replay engine use.
    """
    sessions: list[list[int]] = [[] for _ in range(num_sessions)]
    next_id = 1
    rows: list[list[int]] = []
    for _ in range(draw(st.integers(1, max_requests))):
        s = draw(st.integers(0, num_sessions - 1))
        keep = draw(st.integers(0, len(sessions[s])))  # a compaction keeps only a prefix
        grow = draw(st.integers(0 if keep else 1, 4))
        sessions[s] = sessions[s][:keep] + list(range(next_id, next_id + grow))
        next_id += grow
        rows.append(sessions[s][:max_blocks])
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    hashes = np.array([h for r in rows for h in r], dtype=np.uint64)
    return offsets, hashes
