"""The bandwidth/compute cost model: pure functions of (bytes, link) and (tokens, target).

* ``transfer_time_s(num_bytes, link)`` = ``latency + bytes / bandwidth`` (0 for 0 bytes).
* ``LinkQueue`` — a link as a resource: transfers take turns in submission order on an
  integer-nanosecond simulated clock (two transfers on one link never overlap).
* ``recompute_time_s(model, target, new, cached)`` = prefill FLOPs (linear + attention
  term, ``ModelSpec.prefill_flops``) / (peak x efficiency).
* ``decode_step_time_s(model, target, context_tokens)`` = max over resources of bytes read
  per step / bandwidth (weights and each sequence's KV, from the tier it sits in) and
  FLOPs / effective compute.
* ``layerwise_overlap_time_s(load_s, compute_s, num_layers)`` — loading layer l+1's KV
  while layer l computes: ``L + (n-1) * max(L, P) + P`` with per-layer load ``L`` and
  compute ``P``.
* ``break_even_fetch_bw_bytes_per_s`` — the tier bandwidth above which fetching a token's
  KV beats recomputing it (hardware.md §4).

Every function takes scalars or numpy arrays (broadcast) and returns the same shape; a
scalar input gives a Python float. Negative sizes raise ``ConfigError``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget, LinkSpec

NS_PER_S = 1_000_000_000


def _out(x):
    x = np.asarray(x)
    return x if x.ndim else float(x)


def _nonneg(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ConfigError(f"{name}: got {value!r}, expected finite values >= 0")
    return a


def transfer_time_s(num_bytes, link: LinkSpec, direction: str = "read"):
    """Seconds to move ``num_bytes`` over ``link`` alone: ``latency + bytes / bandwidth``.

    ``direction`` ``"read"`` is toward the compute tier (a fetch), ``"write"`` away (an
    offload). Zero bytes cost zero (no transfer is issued). Monotone in bytes.
    """
    b = _nonneg("num_bytes", num_bytes)
    bw = link.bw_bytes_per_s(direction)
    return _out(np.where(b > 0, link.latency_s + b / bw, 0.0))


def transfer_time_ns(num_bytes, link: LinkSpec, direction: str = "read"):
    """``transfer_time_s`` rounded up to whole nanoseconds (int64): the simulator's clock unit."""
    t = np.ceil(np.asarray(transfer_time_s(num_bytes, link, direction)) * NS_PER_S - 1e-6)
    if np.any(t >= 2.0**62):
        raise ConfigError(f"num_bytes: got {num_bytes!r}, a transfer on {link.name!r} longer than 2**62 ns")
    t = np.maximum(t, 0).astype(np.int64)
    return t if t.ndim else int(t)


class Transfer(NamedTuple):
    """When a queued transfer starts and ends on its link (simulated ns): ints from
    ``submit``, int64 arrays from ``submit_many``."""

    start_ns: int | np.ndarray
    end_ns: int | np.ndarray


class LinkQueue:
    """A link as a first-come-first-served resource on a simulated integer-ns clock.

    ``submit(ready_ns, num_bytes)`` books a transfer that may start at ``ready_ns``: it
    starts when the link is free (after every transfer booked before it) and holds the
    link for ``transfer_time_ns``. Deterministic: no wall clock. ``busy_until_ns`` is the
    end of the last booked transfer.
    """

    def __init__(self, link: LinkSpec, *, direction: str = "read", busy_until_ns: int = 0) -> None:
        if not isinstance(link, LinkSpec):
            raise ConfigError(f"link: got {link!r}, expected a LinkSpec")
        link.bw_bytes_per_s(direction)  # validates direction
        if isinstance(busy_until_ns, bool) or not isinstance(busy_until_ns, (int, np.integer)) or busy_until_ns < 0:
            raise ConfigError(f"busy_until_ns: got {busy_until_ns!r}, expected an integer >= 0")
        self.link = link
        self.direction = direction
        self.busy_until_ns = int(busy_until_ns)
        self.bytes_moved = 0
        self.transfers = 0

    def submit(self, ready_ns: int, num_bytes: int) -> Transfer:
        """Book one transfer; returns its start and end. Zero bytes: an empty interval at
        ``max(ready, busy)`` that does not hold the link."""
        if isinstance(ready_ns, bool) or not isinstance(ready_ns, (int, np.integer)) or ready_ns < 0:
            raise ConfigError(f"ready_ns: got {ready_ns!r}, expected an integer >= 0")
        start = max(int(ready_ns), self.busy_until_ns)
        dur = transfer_time_ns(num_bytes, self.link, self.direction)
        if dur == 0:
            return Transfer(start, start)
        self.busy_until_ns = start + dur
        self.bytes_moved += int(num_bytes)
        self.transfers += 1
        return Transfer(start, self.busy_until_ns)

    def submit_many(self, ready_ns, num_bytes) -> Transfer:
        """Book transfers in array order (vectorised ``submit``); returns int64 arrays.

        Each end is ``C_i + max(busy, max_{j<=i}(ready_j - C_{j-1}))`` with ``C`` the
        running sum of durations: the closed form of "start when ready and the link is free".
        """
        ready = np.asarray(ready_ns)
        b = np.asarray(num_bytes)
        if ready.shape != b.shape or ready.ndim != 1:
            raise ConfigError(f"submit_many: got shapes {ready.shape} and {b.shape}, expected two equal 1-d arrays")
        if ready.size and (not np.issubdtype(ready.dtype, np.integer) or ready.min() < 0):
            raise ConfigError("ready_ns: expected integers >= 0")
        if ready.size == 0:
            return Transfer(np.zeros(0, np.int64), np.zeros(0, np.int64))
        dur = np.asarray(transfer_time_ns(b, self.link, self.direction), dtype=np.int64)
        ready = ready.astype(np.int64)
        held = dur > 0
        csum = np.cumsum(dur)
        prev = csum - dur
        # Empty transfers hold nothing, so they must not gate the ones after them.
        gate = np.maximum.accumulate(np.where(held, ready - prev, np.iinfo(np.int64).min // 2))
        end = csum + np.maximum(gate, self.busy_until_ns)
        # The link is free, before transfer i, at the end of the last held transfer before it.
        free = np.maximum.accumulate(np.where(held, end, self.busy_until_ns))
        free_before = np.concatenate(([self.busy_until_ns], free[:-1]))
        end = np.where(held, end, np.maximum(ready, free_before))
        start = end - dur
        self.busy_until_ns = int(free[-1])
        self.bytes_moved += int(b[held].sum())
        self.transfers += int(np.count_nonzero(held))
        return Transfer(start, end)


def recompute_time_s(model: ModelSpec, target: HardwareTarget, new_tokens, cached_tokens=0):
    """Seconds to prefill ``new_tokens`` on top of ``cached_tokens`` of KV:
    ``model.prefill_flops(new, cached) / (target.compute_flops * target.efficiency)``."""
    return _out(np.asarray(model.prefill_flops(new_tokens, cached_tokens)) / target.effective_flops)


def layerwise_overlap_time_s(load_s, compute_s, num_layers):
    """Time to load KV and compute over ``num_layers`` equal layers when layer l+1's KV
    loads while layer l computes: ``L + (n-1) * max(L, P) + P`` with ``L = load/n``,
    ``P = compute/n``. One layer gives ``load + compute``; many give ``max(load, compute)``
    plus one layer of the other. Broadcasts over arrays."""
    load = _nonneg("load_s", load_s)
    comp = _nonneg("compute_s", compute_s)
    n = np.asarray(num_layers)
    if not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
        raise ConfigError(f"num_layers: got {num_layers!r}, expected integers >= 1")
    per_l, per_p = load / n, comp / n
    return _out(per_l + (n - 1) * np.maximum(per_l, per_p) + per_p)


def decode_step_time_s(model: ModelSpec, target: HardwareTarget, context_tokens, kv_tier=None):
    """Seconds for one decode step of a batch: one new token per sequence.

    ``context_tokens``: per sequence, the tokens already in its KV (a 1-d array, or a
    scalar for a batch of one). ``kv_tier``: per sequence, the tier its KV is read from
    (default 0, the compute tier); KV in a lower tier is streamed over that tier's path
    at every step (the residency regime of DESIGN.md) and still read from the compute
    tier's memory it lands in. The step reads the weights once
    (from the weights memory) and every sequence's whole KV; it takes the longest of the
    per-resource read times (resources sharing a link add up) and the compute time
    ``sum(prefill_flops(1, C)) / effective FLOPs``.
    """
    ctx = _nonneg("context_tokens", context_tokens).reshape(-1)
    tiers = np.zeros(ctx.shape, np.int64) if kv_tier is None else np.asarray(kv_tier, dtype=np.int64).reshape(-1)
    if tiers.shape != ctx.shape:
        raise ConfigError(f"kv_tier: got shape {tiers.shape}, expected one tier per sequence {ctx.shape}")
    if tiers.size and (tiers.min() < 0 or tiers.max() >= len(target.tiers)):
        raise ConfigError(f"kv_tier: got values outside 0..{len(target.tiers) - 1}")
    kv_bytes = np.asarray(model.kv_bytes(ctx), dtype=np.float64).reshape(-1)
    # resource name -> seconds of reading this step
    busy: dict[str, float] = {}
    wt = target.weights_tier
    busy[wt.name] = target.weights_bytes / wt.read_bw_bytes_per_s
    compute_tier = target.tiers[0]
    busy[compute_tier.name] = busy.get(compute_tier.name, 0.0) + float(kv_bytes.sum()) / compute_tier.read_bw_bytes_per_s
    for t in np.unique(tiers[tiers > 0]):
        # Streamed KV also passes through the compute tier's memory (counted above).
        path = target.fetch_path(int(t))
        busy[path.name] = busy.get(path.name, 0.0) + float(kv_bytes[tiers == t].sum()) / path.read_bw_bytes_per_s
    flops = float(np.sum(model.prefill_flops(np.ones_like(ctx), ctx))) if ctx.size else 0.0
    return max(max(busy.values()), flops / target.effective_flops)


def break_even_fetch_bw_bytes_per_s(model: ModelSpec, target: HardwareTarget, context_tokens=0):
    """The fetch bandwidth above which loading a token's KV is faster than recomputing it:
    ``kv_bytes_per_token * effective FLOP/s / (2 N_active + a * context_tokens)``: the
    FLOPs of one token at position ``context_tokens`` (0 gives hardware.md §4's
    short-context, attention-free figure; longer contexts lower the threshold)."""
    c = _nonneg("context_tokens", context_tokens)
    flops = model.linear_flops_per_token + model.attention_flops_coef * c
    return _out(model.kv_bytes_per_token * target.effective_flops / flops)
