"""Trace kernels: prefix re-keying of block ids and reuse (stack) distances."""

from __future__ import annotations

import numpy as np

from kvtier._kernels.hashing import GOLDEN, mix64
from kvtier._kernels.jit import njit


@njit
def chain_rekey(offsets, ids, roots):
    """Prefix-chain per-block ids: out[k] = mix(out[k-1], ids[k]) within each request.

    offsets: int64[n + 1] CSR; ids: uint64[total]; roots: uint64[n] (the parent key of each
    request's first block, a namespace). Two requests get equal keys at position j exactly
    when their roots and ids[0..j] are equal (up to 64-bit hash collisions).
    """
    out = np.empty(ids.shape[0], dtype=np.uint64)
    for i in range(offsets.shape[0] - 1):
        h = roots[i]
        for k in range(offsets[i], offsets[i + 1]):
            h = mix64(mix64(h ^ GOLDEN) ^ (ids[k] + GOLDEN))
            out[k] = h
    return out


@njit
def stack_distances(dense_ids, num_ids):
    """LRU stack distance of every access: distinct other ids touched since the previous
    access to the same id, or -1 on a first access. dense_ids: int64 in [0, num_ids).
    O(N log N) with a Fenwick tree over access times."""
    n = dense_ids.shape[0]
    out = np.empty(n, dtype=np.int64)
    last = np.full(num_ids, -1, dtype=np.int64)
    tree = np.zeros(n + 1, dtype=np.int64)  # 1-based; 1 at the time of each id's latest access
    live = 0
    for t in range(n):
        x = dense_ids[t]
        p = last[x]
        if p < 0:
            out[t] = -1
        else:
            # marks at times <= p
            s = 0
            i = p + 1
            while i > 0:
                s += tree[i]
                i -= i & (-i)
            out[t] = live - s
            i = p + 1
            while i <= n:
                tree[i] -= 1
                i += i & (-i)
            live -= 1
        i = t + 1
        while i <= n:
            tree[i] += 1
            i += i & (-i)
        live += 1
        last[x] = t
    return out


@njit
def prefix_delta_encode(offsets, hashes, refs):
    """Per request i: the length of the prefix shared with request refs[i] (-1: none) and,
    concatenated, the ids after it. Returns (shared int64[n], suffix uint64[total])."""
    n = offsets.shape[0] - 1
    shared = np.zeros(n, dtype=np.int64)
    total = 0
    for i in range(n):
        r = refs[i]
        k = 0
        if r >= 0:
            a0 = offsets[i]
            b0 = offsets[r]
            m = min(offsets[i + 1] - a0, offsets[r + 1] - b0)
            while k < m and hashes[a0 + k] == hashes[b0 + k]:
                k += 1
        shared[i] = k
        total += offsets[i + 1] - offsets[i] - k
    suffix = np.empty(total, dtype=np.uint64)
    pos = 0
    for i in range(n):
        for j in range(offsets[i] + shared[i], offsets[i + 1]):
            suffix[pos] = hashes[j]
            pos += 1
    return shared, suffix


@njit
def prefix_delta_decode(offsets, refs, shared, suffix):
    """Inverse of ``prefix_delta_encode``. The caller has checked refs[i] < i, 0 <= shared[i]
    <= both lengths, and that the suffix lengths add up (the kernel trusts them)."""
    n = offsets.shape[0] - 1
    out = np.empty(offsets[n], dtype=np.uint64)
    pos = 0
    for i in range(n):
        base = offsets[i]
        k = shared[i]
        if k > 0:
            src = offsets[refs[i]]
            for j in range(k):
                out[base + j] = out[src + j]
        for j in range(base + k, offsets[i + 1]):
            out[j] = suffix[pos]
            pos += 1
    return out
