"""The pieces every fast replay loop shares: walking a trace, looking ahead, counting a hit.

A replay loop visits each request's blocks in order (``offsets``/``hashes``, CSR) and, for
each, looks its hash up in a block table (``kvtier._kernels.hashtable``, from offset 0);
``probe`` does the lookup and prefetches the table cells of the accesses ahead, since at
these speeds a replay waits on memory more than it computes. ``hit`` counts a hit and
whether it is a prefix hit (before the request's first miss: the KV an engine can reuse).
``table_cells`` sizes the loops' tables within the metadata budget.
"""

from __future__ import annotations

from kvtier._kernels.hashtable import ht_find, ht_home
from kvtier._kernels.jit import njit
from kvtier._kernels.prefetch import prefetch

#: Prefetch distance: table cells ``2 * PREFETCH_AHEAD`` accesses ahead, the entries they
#: name (large tables) ``PREFETCH_AHEAD`` ahead.
PREFETCH_AHEAD = 8
#: Tables that would be larger than this (512 KiB, half an L2 cache) are made denser.
DENSE_TABLE_CELLS = 1 << 17
#: Tables larger than this (1 MiB of cells) also prefetch the entries their cells name.
DEEP_PREFETCH_CELLS = 1 << 18


@njit(_nrt=False)
def prefetch_ahead(hashes, k, vals, shift, key, lk, state, deep):
    """Prefetch the table cell of the access ``2 * PREFETCH_AHEAD`` ahead of ``k`` and, for
    tables that outgrow the L2 cache (``deep``), the key, links and byte of ``state`` (the
    tier or list; entries below its length) of the entry the by now cached cell names, for
    the access ``PREFETCH_AHEAD`` ahead."""
    n = hashes.shape[0]
    if k + 2 * PREFETCH_AHEAD < n:
        prefetch(vals, ht_home(hashes[k + 2 * PREFETCH_AHEAD], shift))
    if deep and k + PREFETCH_AHEAD < n:
        c = vals[ht_home(hashes[k + PREFETCH_AHEAD], shift)]
        if c >= 0:
            prefetch(key, c)
            prefetch(lk, 2 * c)
            if c < state.shape[0]:
                prefetch(state, c)


@njit(_nrt=False)
def probe(hashes, k, vals, shift, key, lk, state, deep):
    """Access ``k``: ``(hash, entry)``, its entry in the block table (one entry per key) or
    -1, after prefetching for the accesses ahead (``prefetch_ahead``)."""
    prefetch_ahead(hashes, k, vals, shift, key, lk, state, deep)
    h = hashes[k]
    return h, ht_find(vals, 0, vals.shape[0], shift, key, 0, h)


@njit(_nrt=False)
def hit(hits, prefix_hits, prefix, hit_tier, k, tier, record):
    """Count a hit in ``tier`` at access ``k``: ``(hits, prefix_hits)`` after it (a prefix
    hit while ``prefix``, the request having missed nothing yet); ``hit_tier[k]`` when
    ``record``."""
    if record:
        hit_tier[k] = tier
    return hits + 1, prefix_hits + 1 if prefix else prefix_hits


@njit
def table_cells(R, E):
    """Cells of a replay loop's table for ``R`` resident and ``E`` entries in all: the
    largest power of two within the metadata budget (64 bytes per resident block), 11 cells
    per entry without ghosts (at most 2/11 full), 3.5 with them (at most 4/7 full); 4 per
    entry once that outgrows half the L2 cache."""
    size = 16
    while size * 2 <= (11 * E if E == R else (7 * E) // 2):
        size *= 2
    if size > DENSE_TABLE_CELLS:
        # Beyond half the L2 cache a probe costs a cache miss however short its run: a table
        # at most 1/2 full (at least 1/4) misses the caches less than a sparser one.
        size = 16
        while size * 2 <= 4 * E:
            size *= 2
    return size
