"""Summary statistics of a trace (``kvtier trace stats``).

Definitions (all on the trace's block ids, which carry prefix identity):

* ``infinite_cache_block_hit_ratio``: with an unbounded cache, every access to a block id
  seen before hits: ``(block_accesses - unique_blocks) / block_accesses``.
* ``token_hit_ratio``: the same hits weighted by the tokens each block covers (block ``j``
  of a request covers ``min(block_tokens, input_length - j * block_tokens)`` tokens, at least
  0), over all input tokens (tokens past the last block count as misses).
* ``session_prefix_reuse``: per session, the tokens of each request that are a prefix shared
  with the session's previous request, over the session's input tokens (first request
  included). A sub-agent's first request compares with the request it was spawned from
  (its ``spawn`` dependency), when the trace records one. Reported as the median over
  sessions and token-weighted over the trace.
* ``reuse_distance_blocks``: LRU stack distance of each repeated access (distinct other
  blocks touched since the previous access to the same block); an LRU cache of
  ``distance + 1`` blocks, or more, would hit it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier._kernels.traces import stack_distances
from kvtier.replay import densify
from kvtier.traces.model import RELATION_SPAWN, Trace

PERCENTILES = (50, 90, 99)


class TraceStats(NamedTuple):
    requests: int
    sessions: int
    block_tokens: int
    unique_blocks: int
    block_accesses: int
    infinite_cache_block_hit_ratio: float
    token_hit_ratio: float
    session_prefix_reuse_median: float
    session_prefix_reuse_token_weighted: float
    input_tokens: dict
    output_tokens: dict
    reuse_distance_blocks: dict
    duration_s: float

    def as_dict(self) -> dict:
        return self._asdict()


def _summary(values: np.ndarray, *, scratch: bool = False) -> dict:
    """Mean, percentiles and max of ``values``; ``scratch``: the caller no longer needs
    ``values``, so the percentiles may reorder it in place instead of copying it."""
    if values.size == 0:
        return {"mean": 0.0, **{f"p{p}": 0.0 for p in PERCENTILES}, "max": 0.0}
    out = {"mean": float(values.mean(dtype=np.float64))}
    qs = np.percentile(values, PERCENTILES, overwrite_input=scratch)
    out.update({f"p{p}": float(q) for p, q in zip(PERCENTILES, qs)})
    out["max"] = float(values.max())
    return out


def block_token_counts(trace: Trace, positions: np.ndarray | None = None) -> np.ndarray:
    """int64: tokens each block access covers (block ``j`` of a request covers
    ``min(block_tokens, input_length - j * block_tokens)`` tokens, at least 0: the last may
    be partial), for the accesses at ``positions`` (indices into ``block_hashes``), or for
    every access when ``positions`` is ``None``."""
    if positions is None:
        positions = np.arange(trace.num_block_accesses, dtype=np.int64)
    rows = np.searchsorted(trace.block_offsets, positions, side="right") - 1
    pos = positions - trace.block_offsets[rows]
    return np.clip(trace.input_lengths[rows] - pos * trace.block_tokens, 0, trace.block_tokens)


def covered_tokens(trace: Trace) -> int:
    """``block_token_counts(trace).sum()`` without the per-access array: a request's blocks
    cover ``min(input_length, blocks * block_tokens)`` tokens."""
    return int(np.minimum(trace.input_lengths, trace.blocks_per_request() * trace.block_tokens).sum())


def first_access_positions(dense_ids: np.ndarray) -> np.ndarray:
    """int64: the accesses where a block id appears for the first time, given ids numbered
    in order of first appearance (``kvtier.replay.densify``): exactly where an id exceeds
    every id before it."""
    if dense_ids.shape[0] == 0:
        return np.zeros(0, np.int64)
    running = np.maximum.accumulate(dense_ids)
    new = np.empty(dense_ids.shape[0], dtype=bool)
    new[0] = True
    np.greater(dense_ids[1:], running[:-1], out=new[1:])
    del running
    return np.flatnonzero(new)


def shared_prefix_blocks(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common leading run of two block-id arrays."""
    m = min(a.shape[0], b.shape[0])
    if m == 0:
        return 0
    neq = a[:m] != b[:m]
    return int(np.argmax(neq)) if neq.any() else m


def session_prefix_reuse(trace: Trace) -> tuple[dict[int, float], float]:
    """(session id -> reuse ratio, token-weighted ratio over the trace); see module doc."""
    last_row: dict[int, int] = {}
    shared: dict[int, int] = {}
    total: dict[int, int] = {}
    bt = trace.block_tokens
    for i in range(trace.num_requests):
        s = int(trace.session_ids[i])
        inl = int(trace.input_lengths[i])
        total[s] = total.get(s, 0) + inl
        p = last_row.get(s)
        if p is None:
            lo, hi = trace.dep_offsets[i], trace.dep_offsets[i + 1]
            spawn = [int(trace.dep_requests[k]) for k in range(lo, hi) if trace.dep_relations[k] == RELATION_SPAWN]
            p = spawn[0] if spawn else None
        if p is not None:
            k = shared_prefix_blocks(trace.blocks(i), trace.blocks(p))
            shared[s] = shared.get(s, 0) + min(k * bt, inl)
        last_row[s] = i
    ratios = {s: (shared.get(s, 0) / t if t else 0.0) for s, t in total.items()}
    all_t = sum(total.values())
    return ratios, (sum(shared.values()) / all_t if all_t else 0.0)


def reuse_distances(trace: Trace, dense_ids: np.ndarray | None = None) -> np.ndarray:
    """int64[block_accesses]: LRU stack distance of each access, -1 for first accesses
    (``dense_ids``: the trace's ids from ``kvtier.replay.densify``, if already at hand)."""
    if trace.num_block_accesses == 0:
        return np.zeros(0, np.int64)
    if dense_ids is None:
        dense_ids = densify(trace.block_hashes)[0]
    return stack_distances(dense_ids, int(dense_ids.max()) + 1)


def trace_stats(trace: Trace) -> TraceStats:
    """Compute ``TraceStats`` (pure; O(accesses log accesses) time; memory: the trace plus
    about 20 bytes per block access)."""
    n_acc = trace.num_block_accesses
    dense_ids, unique_ids = densify(trace.block_hashes)
    unique = int(unique_ids.shape[0])
    del unique_ids
    first = first_access_positions(dense_ids)
    total_in = int(trace.input_lengths.sum())
    hit_tokens = covered_tokens(trace) - int(block_token_counts(trace, first).sum())
    del first
    ratios, weighted = session_prefix_reuse(trace)
    dist = reuse_distances(trace, dense_ids)
    del dense_ids
    repeats = dist[dist >= 0]
    del dist
    ts = trace.timestamps_ms
    return TraceStats(
        requests=trace.num_requests,
        sessions=trace.num_sessions,
        block_tokens=trace.block_tokens,
        unique_blocks=unique,
        block_accesses=n_acc,
        infinite_cache_block_hit_ratio=(n_acc - unique) / n_acc if n_acc else 0.0,
        token_hit_ratio=hit_tokens / total_in if total_in else 0.0,
        session_prefix_reuse_median=float(np.median(list(ratios.values()))) if ratios else 0.0,
        session_prefix_reuse_token_weighted=weighted,
        input_tokens=_summary(trace.input_lengths),
        output_tokens=_summary(trace.output_lengths),
        reuse_distance_blocks=_summary(repeats, scratch=True),
        duration_s=float((ts[-1] - ts[0]) / 1000.0) if ts.size else 0.0,
    )
