"""The one open-addressing hash table of the kernels: 64-bit keys to entry numbers, in flat arrays.

A table is ``size`` cells (a power of two ``2**bits``) of ``vals`` from base offset ``vb``,
each empty (-1) or holding an *entry number* whose key the caller keeps in its own array
(``keys[kb + entry]``): the table stores no keys, so a cell is 4 bytes (``int32``) or,
where entry numbers fit, 2 (``int16``). The replay's block locations, the policies' ghost
lists and the fast replay kernels' block tables are all such tables; offsets (not array
views) let several share one array and keep the kernels free of reference counting.

A key's home is the top ``bits`` bits of ``key * GOLDEN`` (Fibonacci hashing, so dense
ids and real hashes spread alike; ``shift = 64 - bits``, from ``ht_shift``); probing is
linear, and deletion shifts the following cells back (no tombstones). The caller keeps at
least one cell empty (every probe ends at one). Most tables hold one entry per key; the
list replay's holds a block's resident entry and its ghosts under one key, and finds,
replaces and deletes them by entry number (``ht_find_in``, ``ht_entry_cell``,
``ht_delete_entry``). ``densify_ids`` (a key-storing table that grows) maps a trace's
hashes to dense ids ``0 .. n_unique - 1``.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.hashing import GOLDEN
from kvtier._kernels.jit import njit


@njit
def ht_shift(size):
    """``64 - log2(size)``: the shift that maps a product to a home index."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return 64 - bits


@njit(inline="always")
def ht_home(key, shift):
    """A key's home cell: the top bits of its Fibonacci hash."""
    return np.int64((np.uint64(key) * GOLDEN) >> np.uint64(shift))


@njit(_nrt=False)
def ht_probe(vals, vb, size, shift, keys, kb, key):
    """The cell holding ``key``'s (first) entry or, if it has none, the empty cell where
    the probe ended (where ``ht_insert`` would put it): read ``vals[vb + cell]`` to tell."""
    mask = size - 1
    i = ht_home(key, shift)
    while True:
        # Widened: with 2-byte cells, callers compute 2 * e, which int16 arithmetic (plain
        # Python under NUMBA_DISABLE_JIT) would overflow.
        e = np.int64(vals[vb + i])
        if e == -1 or keys[kb + e] == key:
            return i
        i = (i + 1) & mask


@njit(_nrt=False)
def ht_find(vals, vb, size, shift, keys, kb, key):
    """The entry of ``key`` (the first of its probe run), or -1."""
    return np.int64(vals[vb + ht_probe(vals, vb, size, shift, keys, kb, key)])


@njit(_nrt=False)
def ht_cell(vals, vb, size, shift, keys, kb, key):
    """The cell that holds ``key``'s entry, or -1."""
    i = ht_probe(vals, vb, size, shift, keys, kb, key)
    return -1 if vals[vb + i] == -1 else i


@njit(_nrt=False)
def ht_find_in(vals, vb, size, shift, keys, kb, key, lo, hi):
    """The entry of ``key`` numbered in ``lo .. hi - 1`` (a table where a key may have
    several entries, in ranges of the caller's), or -1."""
    mask = size - 1
    i = ht_home(key, shift)
    while True:
        e = np.int64(vals[vb + i])
        if e == -1:
            return -1
        if lo <= e < hi and keys[kb + e] == key:
            return e
        i = (i + 1) & mask


@njit(_nrt=False)
def ht_entry_cell(vals, vb, size, shift, keys, kb, e):
    """The cell that holds entry ``e`` (which must be in the table, under ``keys[kb + e]``)."""
    mask = size - 1
    i = ht_home(keys[kb + e], shift)
    while vals[vb + i] != e:
        i = (i + 1) & mask
    return i


@njit(_nrt=False)
def ht_insert(vals, vb, size, shift, key, e):
    """Index entry ``e`` under ``key`` (the caller has set ``keys[kb + e] = key``) in the
    first empty cell of its probe run."""
    mask = size - 1
    i = ht_home(key, shift)
    while vals[vb + i] != -1:
        i = (i + 1) & mask
    vals[vb + i] = e


@njit(_nrt=False)
def ht_remove_cell(vals, vb, size, shift, keys, kb, i):
    """Empty cell ``i``, shifting back the entries after it that would no longer be found."""
    mask = size - 1
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


@njit(_nrt=False)
def ht_delete(vals, vb, size, shift, keys, kb, key):
    """Unindex ``key`` (its entry's key must still be in ``keys``); its entry, or -1."""
    i = ht_probe(vals, vb, size, shift, keys, kb, key)
    out = np.int64(vals[vb + i])
    if out != -1:
        ht_remove_cell(vals, vb, size, shift, keys, kb, i)
    return out


@njit(_nrt=False)
def ht_delete_entry(vals, vb, size, shift, keys, kb, e):
    """Unindex entry ``e`` (indexed under ``keys[kb + e]``)."""
    ht_remove_cell(vals, vb, size, shift, keys, kb, ht_entry_cell(vals, vb, size, shift, keys, kb, e))


@njit(_nrt=False)
def ht_replace(vals, vb, size, shift, keys, kb, old, new):
    """Entry ``new`` (``keys[kb + new] == keys[kb + old]``) takes ``old``'s cell: no probe
    run moves."""
    vals[vb + ht_entry_cell(vals, vb, size, shift, keys, kb, old)] = new


@njit(_nrt=False)
def ht_rekey(vals, vb, size, shift, keys, kb, e, key):
    """Entry ``e`` leaves the table under its old key and comes back under ``key``."""
    ht_delete_entry(vals, vb, size, shift, keys, kb, e)
    keys[kb + e] = key
    ht_insert(vals, vb, size, shift, key, e)


@njit
def densify_ids(hashes, initial_size):
    """Map each uint64 hash to a dense id in order of first appearance.

    Returns ``(ids int32[n], unique uint64[n_unique])`` with ``unique[ids[k]] == hashes[k]``.
    Unlike the tables above this one keeps each key beside its id in the cell (``keys[i]``,
    ``vals[i]``: a probe reads one place, not an entry's key elsewhere); it starts at
    ``initial_size`` cells (a power of two) and doubles at half load.
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
        i = _densify_probe(keys, vals, shift, h)
        if vals[i] >= 0:
            ids[k] = vals[i]
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
                i = _densify_probe(keys, vals, shift, unique[v])
                keys[i] = unique[v]
                vals[i] = v
    return ids, unique[:count].copy()


@njit(inline="always")
def _densify_probe(keys, vals, shift, h):
    """The cell of ``h`` in a key-storing table, or the empty cell its probe ended at."""
    mask = vals.shape[0] - 1
    i = ht_home(h, shift)
    while vals[i] != -1 and keys[i] != h:
        i = (i + 1) & mask
    return i


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
