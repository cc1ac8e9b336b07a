"""Recompute-vs-fetch planners: how a request gets the KV of its prefix.

Input: where each prefix block sits — ``tier_index`` as ``TieredStore.lookup()`` returns
it (int per block, indexing ``target.tiers``; 0 is the compute tier, -1 missing) — the
model, the target, ``block_tokens`` and the request's ``new_tokens`` (after the prefix).
Output: a ``Plan`` saying, per block, whether it is already resident, fetched from a
lower tier, or recomputed, with the predicted time to first token.

Rules: a missing block must be recomputed, and recomputing a block needs the KV of every
block before it. Resident blocks (tier 0) cost nothing. Planners price time only: whether
the fetched and recomputed KV fits in the compute tier (residency, eviction) is the
caller's decision.

The schedule every plan is priced with (one formula, so planners compare fairly). A plan
is a split block ``k`` and a set of tiers to fetch from:

* front: non-resident blocks ``< k`` are recomputed first (they only need KV that is
  resident or recomputed before them), taking ``Cf`` seconds of compute;
* meanwhile, from t = 0, blocks ``>= k`` in fetched tiers load over their links (tiers on
  one link take turns; each tier's stream pays its path latency once; ``link_busy_s``
  delays a link that other transfers hold);
* tail: missing blocks ``>= k`` (and blocks of tiers not fetched), then the new tokens,
  computed layer by layer as their layer's KV arrives: ``Ct`` seconds of compute.

With ``L`` layers, link ``l`` of latency ``a_l`` and load ``D_l``, the first token is at
``max(Cf + Ct, max_l(a_l + D_l/L + Ct), max_l(a_l + D_l + Ct/L))`` (layer-wise overlap:
the tail's layer i waits for layer i of the loads); without ``layerwise`` it is
``max(Cf, max_l(a_l + D_l)) + Ct``. ``k = 0`` fetching every tier is always-fetch;
``k = n`` is always-recompute; Cake (ICML'25) is the best ``k`` in between.

The formula is ``kvtier.cost.plan_times_s`` (its numba twin prices plans inside the
simulator); the planners only choose among the plans it prices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np

from kvtier.cost import plan_times_s, recompute_time_s
from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.registry import Registry
from kvtier.targets import HardwareTarget
from kvtier.validation import check_int, check_number

RECOMPUTE = -1  # Plan.source value of a recomputed block


@dataclass(frozen=True, kw_only=True, eq=False)
class Plan:
    """What a request does for its prefix, and what it is predicted to cost.

    ``source[i]`` for prefix block ``i``: ``0`` resident in the compute tier, ``t > 0``
    fetched from ``tiers[t]``, ``-1`` recomputed. ``split_block``: the Cake split (blocks
    before it that are not resident are recomputed up front). ``fetch_bytes`` per tier
    (entry 0 is always 0). ``compute_s``: all compute including the new tokens.
    ``link_load_s``: per link, seconds of transfer (latency included). ``ttft_s``: the
    predicted time to first token.
    """

    planner: str
    tier_names: tuple[str, ...]
    block_tokens: int
    new_tokens: int
    source: np.ndarray
    split_block: int
    fetch_bytes: tuple[int, ...]
    recompute_tokens: int
    compute_s: float
    link_load_s: Mapping[str, float] = field(default_factory=dict)
    ttft_s: float

    @property
    def num_blocks(self) -> int:
        return int(self.source.size)

    def fetched_blocks(self, tier: int | None = None) -> np.ndarray:
        """Indices of blocks fetched (from ``tier`` only, if given)."""
        mask = self.source > 0 if tier is None else self.source == tier
        return np.flatnonzero(mask)

    def recomputed_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.source == RECOMPUTE)

    def resident_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.source == 0)

    def fetch_blocks_by_tier(self) -> dict[str, int]:
        """Blocks fetched per tier name (tiers with none are left out)."""
        return {self.tier_names[t]: int(np.count_nonzero(self.source == t))
                for t in range(1, len(self.tier_names)) if np.any(self.source == t)}

    def summary(self) -> dict:
        """Plain data for reports and JSON."""
        return {
            "planner": self.planner, "ttft_s": self.ttft_s, "split_block": self.split_block,
            "blocks": self.num_blocks, "resident_blocks": int(self.resident_blocks().size),
            "fetched_blocks": self.fetch_blocks_by_tier(), "recompute_tokens": self.recompute_tokens,
            "new_tokens": self.new_tokens, "fetch_bytes": dict(zip(self.tier_names, self.fetch_bytes)),
            "compute_s": self.compute_s, "link_load_s": dict(self.link_load_s),
        }


class _Request:
    """Validated inputs and the per-block arrays all plans are priced from."""

    def __init__(self, tier_index, model, target, block_tokens, new_tokens, link_busy_s, layerwise):
        if not isinstance(model, ModelSpec):
            raise ConfigError(f"model: got {model!r}, expected a ModelSpec")
        if not isinstance(target, HardwareTarget):
            raise ConfigError(f"target: got {target!r}, expected a HardwareTarget")
        check_int(block_tokens, "block_tokens")
        check_int(new_tokens, "new_tokens", minimum=0)
        ti = getattr(tier_index, "tier_index", tier_index)  # a LookupResult works too
        ti = np.asarray(ti)
        if ti.ndim != 1 or (ti.size and not np.issubdtype(ti.dtype, np.integer)):
            raise ConfigError(f"tier_index: got {ti.dtype} array of shape {ti.shape}, expected a 1-d integer array")
        T = len(target.tiers)
        if ti.size and (ti.min() < -1 or ti.max() >= T):
            raise ConfigError(f"tier_index: got values in [{ti.min()}, {ti.max()}], expected -1 (missing) or 0..{T - 1}")
        busy = dict(link_busy_s or {})
        for name, v in busy.items():
            target.link(name)  # UnknownNameError for a link the target lacks
            check_number(v, f"link_busy_s[{name!r}]", minimum=0.0)
        self.ti = ti.astype(np.int64)
        self.model, self.target = model, target
        self.B, self.S = int(block_tokens), int(new_tokens)
        self.n = int(ti.size)
        self.L = model.num_layers
        self.layerwise = bool(layerwise)
        starts = np.arange(self.n, dtype=np.float64) * self.B
        self.r = np.asarray(recompute_time_s(model, target, np.full(self.n, float(self.B)), starts)).reshape(-1)
        self.c_new = float(recompute_time_s(model, target, self.S, self.n * self.B))
        self.block_bytes = model.block_bytes(self.B)
        rep = target.replica()  # a request is served by one replica, over its share of the links
        paths = [rep.fetch_path(t) for t in range(T)]
        self.link_names = sorted({p.name for p in paths[1:]})
        self.path_read_bw = [p.read_bw_bytes_per_s for p in paths]
        self.path_latency_s = [p.latency_s for p in paths]
        self.path_link = [-1] + [self.link_names.index(p.name) for p in paths[1:]]
        self.link_busy_s = [busy.get(name, 0.0) for name in self.link_names]

    def times(self, fetch_tiers: frozenset[int]):
        """``kvtier.cost.plan_times_s`` of this request, fetching blocks >= k of ``fetch_tiers``."""
        return plan_times_s(self.ti, self.r, self.c_new, fetch_tiers, path_read_bw=self.path_read_bw,
                            path_latency_s=self.path_latency_s, path_link=self.path_link,
                            link_busy_s=self.link_busy_s, block_bytes=self.block_bytes, num_layers=self.L,
                            layerwise=self.layerwise)

    def plan(self, planner: str, k: int, fetch_tiers: frozenset[int]) -> Plan:
        times = self.times(fetch_tiers)
        src = self.ti.copy()
        idx = np.arange(self.n)
        fetched = np.isin(src, list(fetch_tiers)) if fetch_tiers else np.zeros(self.n, bool)
        recompute = (src != 0) & ((idx < k) | ~fetched)
        src[recompute] = RECOMPUTE
        fetch_bytes = [0] * len(self.target.tiers)
        for tier in range(1, len(self.target.tiers)):
            fetch_bytes[tier] = int(np.count_nonzero(src == tier)) * self.block_bytes
        return Plan(
            planner=planner, tier_names=tuple(x.name for x in self.target.tiers), block_tokens=self.B,
            new_tokens=self.S, source=src.astype(np.int8), split_block=int(k), fetch_bytes=tuple(fetch_bytes),
            recompute_tokens=int(np.count_nonzero(recompute)) * self.B,
            compute_s=float(times.front_s[k] + times.tail_s[k]),
            link_load_s={name: float(times.link_load_s[i, k]) for i, name in enumerate(self.link_names)
                         if times.link_load_s[i, k] > 0},
            ttft_s=float(times.ttft_s[k]),
        )

    @property
    def lower_tiers(self) -> frozenset[int]:
        return frozenset(range(1, len(self.target.tiers)))


@dataclass(frozen=True, kw_only=True)
class Planner:
    """Base of the planners: ``plan(...)`` returns a ``Plan``. ``layerwise``: price loads
    as overlapping compute layer by layer (default) or as finishing before it."""

    name: ClassVar[str]
    layerwise: bool = True

    def plan(self, tier_index, *, model: ModelSpec, target: HardwareTarget, block_tokens: int, new_tokens: int,
             link_busy_s: Mapping[str, float] | None = None) -> Plan:
        """Plan one request. ``link_busy_s``: per link name, seconds until it is free of
        transfers already queued (other requests); default all free."""
        req = _Request(tier_index, model, target, block_tokens, new_tokens, link_busy_s, self.layerwise)
        return self._choose(req)

    def _choose(self, req: _Request) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError


_REGISTRY: Registry[type[Planner]] = Registry("planner")

#: Planner classes by registry name: a read-only view (``register_planner`` adds to it).
PLANNERS = _REGISTRY.view


def register_planner(cls: type[Planner]) -> type[Planner]:
    """Class decorator: make ``cls`` available as ``make_planner(cls.name)`` (``ConfigError``
    if a different class holds that name)."""
    return _REGISTRY.register(cls.name, cls)


def make_planner(name: str, **options) -> Planner:
    """A planner by registry name (``always-fetch``, ``always-recompute``, ``threshold``,
    ``cost-optimal``) with its options; ``UnknownNameError`` names the valid choices."""
    cls = _REGISTRY.get(name)
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"planner {name!r}: {e}") from None


def planner_names() -> list[str]:
    """The registered planner names, sorted."""
    return sorted(_REGISTRY.names())


@register_planner
@dataclass(frozen=True, kw_only=True)
class AlwaysFetch(Planner):
    """Fetch every block held in a lower tier; recompute only what is missing."""

    name: ClassVar[str] = "always-fetch"

    def _choose(self, req: _Request) -> Plan:
        return req.plan(self.name, 0, req.lower_tiers)


@register_planner
@dataclass(frozen=True, kw_only=True)
class AlwaysRecompute(Planner):
    """Fetch nothing: recompute every block not resident in the compute tier."""

    name: ClassVar[str] = "always-recompute"

    def _choose(self, req: _Request) -> Plan:
        return req.plan(self.name, req.n, frozenset())


@register_planner
@dataclass(frozen=True, kw_only=True)
class Threshold(Planner):
    """SGLang-style load-back threshold: fetch lower-tier blocks only when they add up to
    at least ``threshold_tokens`` tokens (a short load is not worth its setup); otherwise
    recompute every non-resident block."""

    name: ClassVar[str] = "threshold"
    threshold_tokens: int = 256

    def __post_init__(self) -> None:
        check_int(self.threshold_tokens, "threshold_tokens", minimum=0)

    def _choose(self, req: _Request) -> Plan:
        lower_tokens = int(np.count_nonzero(req.ti > 0)) * req.B
        if lower_tokens and lower_tokens >= self.threshold_tokens:
            return req.plan(self.name, 0, req.lower_tiers)
        return req.plan(self.name, req.n, frozenset())


@register_planner
@dataclass(frozen=True, kw_only=True)
class CostOptimal(Planner):
    """The lowest predicted TTFT over every split ``k`` (Cake: recompute from the front
    while loading from the back) and every subset of lower tiers to fetch from (a slow
    tier's blocks may be cheaper to recompute). Includes always-fetch and
    always-recompute, so it is never slower than either. Ties go to the plan listed first:
    more tiers fetched, then the smaller split."""

    name: ClassVar[str] = "cost-optimal"

    def _choose(self, req: _Request) -> Plan:
        lower = sorted(req.lower_tiers)
        best = None
        for r in range(len(lower), -1, -1):
            for subset in itertools.combinations(lower, r):
                fs = frozenset(subset)
                t = req.times(fs).ttft_s
                k = int(np.argmin(t))
                if best is None or t[k] < best[0]:
                    best = (float(t[k]), k, fs)
        return req.plan(self.name, best[1], best[2])
