"""Chained block hashing over token ids (uint64 arithmetic, wraps mod 2**64)."""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit

# splitmix64 constants (Steele, Lea, Flood: "Fast splittable pseudorandom number generators").
#: 2**64 / golden ratio: splitmix64's increment, and the multiplier of Fibonacci hashing
#: (``kvtier._kernels.hashtable``).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit
def mix64(x):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit
def chained_block_hashes(tokens, block_tokens, root):
    """One hash per full block; block i's hash folds in block i-1's hash and its tokens.

    tokens: uint64[n]; block_tokens > 0; root: uint64 seed for the first block's parent.
    Returns uint64[n // block_tokens]. A trailing partial block is not hashed.
    """
    num_blocks = tokens.shape[0] // block_tokens
    out = np.empty(num_blocks, dtype=np.uint64)
    parent = root
    for b in range(num_blocks):
        h = mix64(parent ^ GOLDEN)
        base = b * block_tokens
        for t in range(block_tokens):
            h = mix64(h ^ (tokens[base + t] + GOLDEN))
        # Length is folded in so that blocks of different sizes never collide by design.
        h = mix64(h ^ np.uint64(block_tokens))
        out[b] = h
        parent = h
    return out
