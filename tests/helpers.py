"""Small builders shared by the store tests."""

from __future__ import annotations

import numpy as np

from kvtier import ModelSpec, TieredStore

TINY = ModelSpec.preset("tiny")
BLOCK_TOKENS = 16
BLOCK_BYTES = TINY.block_bytes(BLOCK_TOKENS)  # 4096


def make_store(tiers, **kwargs) -> TieredStore:
    return TieredStore.for_model(TINY, BLOCK_TOKENS, tiers, **kwargs)


def payload(seed: int, *, compressible: bool = False) -> np.ndarray:
    """A block of the tiny model's shape with deterministic bytes (any bit pattern, NaNs too)."""
    shape = TINY.block_shape(BLOCK_TOKENS)
    if compressible:
        return np.full(shape, float(seed % 7), dtype=np.float32)
    raw = np.random.default_rng(seed).integers(0, 256, size=BLOCK_BYTES, dtype=np.uint8)
    return raw.view(np.float32).reshape(shape)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
