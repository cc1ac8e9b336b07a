"""Slow, obvious reference models that kvtier's fast code is checked against."""

from __future__ import annotations

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def chained_block_hashes(tokens, block_tokens: int, root: int) -> list[int]:
    """Reference for ``kvtier.hashing.block_hashes``: plain Python integers."""
    out = []
    parent = root
    for b in range(len(tokens) // block_tokens):
        h = _mix64(parent ^ _GOLDEN)
        for t in tokens[b * block_tokens : (b + 1) * block_tokens]:
            h = _mix64(h ^ ((int(t) + _GOLDEN) & _MASK))
        h = _mix64(h ^ block_tokens)
        out.append(h)
        parent = h
    return out
