"""Open-addressing hash tables over 64-bit keys, in flat arrays.

An *index* table (``ht_find``/``ht_insert``/``ht_delete``) is ``size`` int32 cells (a
power of two ``2**bits``, ``-1`` = empty) from base offset ``vb``, each holding an entry
number whose key the caller keeps in its own array (``keys[kb + entry]``): 4 bytes per
cell, so the replay's block locations and the policies' ghost lists cost little per
resident block. A key's home is the top ``bits`` bits of ``key * 0x9E3779B97F4A7C15``
(Fibonacci hashing, so dense ids and real hashes spread alike), probing is linear and
deletion shifts the following cells back (no tombstones). The caller keeps the load at
most one half. ``densify_ids`` (a key-storing table that grows) maps a trace's hashes to
dense ids ``0 .. n_unique - 1``.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit
def ht_shift(size):
    """``64 - log2(size)``: the shift that maps a product to a home index."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return 64 - bits


@njit(inline="always")
def ht_home(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@njit(_nrt=False, inline="always")
def ht_find(vals, vb, size, shift, keys, kb, key):
    """The entry whose key is ``key``, or -1. The table ``vals[vb : vb + size]`` holds entry
    indices (-1 = empty); entry ``e``'s key is ``keys[kb + e]`` (the table stores no keys)."""
    mask = size - 1
    i = ht_home(key, shift)
    while True:
        e = vals[vb + i]
        if e == -1 or keys[kb + e] == key:
            return e
        i = (i + 1) & mask


@njit(_nrt=False, inline="always")
def ht_cell(vals, vb, size, shift, keys, kb, key):
    """The cell (index into the table) that holds ``key``'s entry, or -1."""
    mask = size - 1
    i = ht_home(key, shift)
    while True:
        e = vals[vb + i]
        if e == -1:
            return -1
        if keys[kb + e] == key:
            return i
        i = (i + 1) & mask


@njit(_nrt=False, inline="always")
def ht_insert(vals, vb, size, shift, key, e):
    """Index entry ``e`` under ``key`` (absent; the caller has set ``keys[kb + e] = key``)."""
    mask = size - 1
    i = ht_home(key, shift)
    while vals[vb + i] != -1:
        i = (i + 1) & mask
    vals[vb + i] = e


@njit(_nrt=False)
def ht_delete(vals, vb, size, shift, keys, kb, key):
    """Unindex ``key`` (its entry's key must still be in ``keys``); its entry, or -1."""
    mask = size - 1
    i = ht_home(key, shift)
    while vals[vb + i] != -1 and keys[kb + vals[vb + i]] != key:
        i = (i + 1) & mask
    out = vals[vb + i]
    if out == -1:
        return -1
    j = i
    while True:
        j = (j + 1) & mask
        e = vals[vb + j]
        if e == -1:
            break
        home = ht_home(keys[kb + e], shift)
        # The entry at j may move back to the hole at i unless its home lies in (i, j].
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            vals[vb + i] = e
            i = j
    vals[vb + i] = -1
    return out


@njit
def densify_ids(hashes, initial_size):
    """Map each uint64 hash to a dense id in order of first appearance.

    Returns ``(ids int32[n], unique uint64[n_unique])`` with ``unique[ids[k]] == hashes[k]``.
    The table starts at ``initial_size`` (a power of two) and doubles at half load.
    """
    n = hashes.shape[0]
    size = initial_size
    keys = np.empty(size, dtype=np.uint64)
    vals = np.full(size, -1, dtype=np.int32)
    shift = ht_shift(size)
    ids = np.empty(n, dtype=np.int32)
    unique = np.empty(max(16, min(n, size // 2)), dtype=np.uint64)
    count = 0
    for k in range(n):
        h = hashes[k]
        mask = size - 1
        i = ht_home(h, shift)
        found = -1
        while vals[i] != -1:
            if keys[i] == h:
                found = vals[i]
                break
            i = (i + 1) & mask
        if found >= 0:
            ids[k] = found
            continue
        keys[i] = h
        vals[i] = count
        if count == unique.shape[0]:
            grown = np.empty(unique.shape[0] * 2, dtype=np.uint64)
            grown[:count] = unique[:count]
            unique = grown
        unique[count] = h
        ids[k] = count
        count += 1
        if 2 * count > size:
            size *= 2
            keys = np.empty(size, dtype=np.uint64)
            vals = np.full(size, -1, dtype=np.int32)
            shift = ht_shift(size)
            for v in range(count):
                i = ht_home(unique[v], shift)
                while vals[i] != -1:
                    i = (i + 1) & (size - 1)
                keys[i] = unique[v]
                vals[i] = v
    return ids, unique[:count].copy()


@njit
def next_use_index(ids, n_unique, never):
    """For each access, the index of the next access to the same id, or ``never``."""
    n = ids.shape[0]
    last = np.full(n_unique, never, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    for k in range(n - 1, -1, -1):
        b = ids[k]
        out[k] = last[b]
        last[b] = k
    return out
