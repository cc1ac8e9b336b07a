"""Metadata-only trace replay through a chain of tiers: hits, evictions and moves, fast.

``replay(block_offsets, block_hashes, tiers)`` walks every request's blocks in order,
fastest tier first, holding no payload. A hit touches the block (and, in a lower tier,
promotes it to tier 0); a miss inserts it into tier 0 (as after recomputing it);
a full tier evicts its policy's victim, which is demoted to the next tier or, from the
last tier, dropped. Placement is exclusive (a block lives in one tier). These are the
decisions ``TieredStore`` makes when each block is fetched and, on a miss, put; a test
replays one trace through both and compares them access by access.

Two hit counts per tier: ``block_hits`` (every hit) and ``prefix_hits`` (hits before the
request's first missing block: the KV an engine can actually reuse, since a block is
valid only after its whole prefix).

The hot loop is one numba kernel (``kvtier._kernels.replay``) running the same policy
kernels the store's tiers use. When every tier runs a list policy (LRU, FIFO, CLOCK,
SIEVE, S3-FIFO, ARC), a specialised kernel (``kvtier._kernels.listreplay``) makes the same
decisions faster: a block keeps one entry for its whole stay in the chain, so demotions and
promotions touch no table, and ghosts live in the same table as resident blocks. Blocks
are found by hash in a table of resident blocks (sized by the tiers, like libCacheSim's),
so no pass remaps the trace; Belady's next-use pass (and an unlimited tier's size)
densifies the hashes first, inside the timed region.
``unique_blocks`` is otherwise counted after the replay, outside ``seconds``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kvtier._kernels import beladyreplay as _kb
from kvtier._kernels import counters as _kc
from kvtier._kernels import ghostreplay as _kg
from kvtier._kernels import listreplay as _kl
from kvtier._kernels import lruchain as _lc
from kvtier._kernels import policy as _kp
from kvtier._kernels import replay as _kr
from kvtier._kernels.hashtable import densify_ids, next_use_index
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.tiers import TierSpec, flash_slot_bytes
from kvtier.policies import POLICIES, POLICY_NAMES, KernelPolicy
from kvtier.validation import check_int

#: Policies whose decisions use hints the replay derives from the trace.
_NEEDS_NEXT_USE = {"belady"}
_NEEDS_COST = {"cost-aware"}
_NEEDS_DEPTH = {"prefix-lru", "cost-aware"}
_NEEDS_KEY = {"arc", "s3fifo"}


@dataclass(frozen=True, kw_only=True)
class ReplayTier:
    """One tier of a replay: a name, a capacity in blocks (or bytes, converted with the
    replay's ``block_bytes``), and an eviction policy by registry name. ``capacity_blocks``
    ``None`` and ``capacity_bytes`` ``None`` together mean unlimited (as many slots as the
    trace has distinct blocks)."""

    name: str
    policy: str = "lru"
    capacity_blocks: int | None = None
    capacity_bytes: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"ReplayTier.name: got {self.name!r}, expected a non-empty string")
        if self.policy not in POLICIES:
            raise UnknownNameError(f"ReplayTier.policy: got {self.policy!r}, expected one of {sorted(POLICIES)}")
        if not issubclass(POLICIES[self.policy], KernelPolicy):
            raise ConfigError(f"ReplayTier.policy: {self.policy!r} has no kernels, so the replay cannot run it")
        for field in ("capacity_blocks", "capacity_bytes"):
            check_int(getattr(self, field), f"ReplayTier.{field}", optional=True)
        if self.capacity_blocks is not None and self.capacity_bytes is not None:
            raise ConfigError(f"ReplayTier {self.name!r}: give capacity_blocks or capacity_bytes, not both")

    def slots(self, block_bytes: int, unique_blocks: int) -> int:
        """Slots this tier has for blocks of ``block_bytes`` (``ConfigError`` if none)."""
        if self.capacity_blocks is not None:
            return int(self.capacity_blocks)
        if self.capacity_bytes is None:
            return max(1, unique_blocks)
        n = int(self.capacity_bytes) // block_bytes
        if n < 1:
            raise ConfigError(f"ReplayTier {self.name!r}: capacity_bytes={self.capacity_bytes} holds no block of "
                              f"{block_bytes} bytes")
        return n


@dataclass
class TierReplayStats:
    """Counters of one tier after a replay. Bytes are ``blocks x block_bytes``."""

    name: str
    policy: str
    capacity_blocks: int
    hits: int
    prefix_hits: int
    misses: int  # accesses that looked here and did not find the block
    admitted: int  # blocks that entered: misses (tier 0), demotions in, promotions in
    evictions: int
    demotions: int  # victims moved to the next tier
    promotions: int  # hits here moved up to tier 0
    drops: int  # victims kept nowhere (last tier)
    bytes_demoted: int  # to the next tier
    bytes_promoted: int  # to tier 0


@dataclass
class ReplayResult:
    """What a replay counted. ``seconds`` is wall-clock time of the replay (remap +
    next-use + loop, compile excluded), the only field that is not deterministic."""

    requests: int
    block_accesses: int
    unique_blocks: int
    block_hits: int
    prefix_hits: int
    tiers: list[TierReplayStats]
    block_bytes: int
    seconds: float
    hit_tier: np.ndarray | None = None  # per access: the tier that hit, -1 on a miss (record=True)
    evictions_at: np.ndarray | None = None  # [access, tier] evictions during that access (record=True)

    @property
    def block_hit_ratio(self) -> float:
        return self.block_hits / self.block_accesses if self.block_accesses else 0.0

    @property
    def prefix_hit_ratio(self) -> float:
        return self.prefix_hits / self.block_accesses if self.block_accesses else 0.0

    @property
    def accesses_per_s(self) -> float:
        return self.block_accesses / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict:
        """Plain data for JSON (without the per-access arrays)."""
        return {
            "requests": self.requests,
            "block_accesses": self.block_accesses,
            "unique_blocks": self.unique_blocks,
            "block_hits": self.block_hits,
            "block_hit_ratio": self.block_hit_ratio,
            "prefix_hits": self.prefix_hits,
            "prefix_hit_ratio": self.prefix_hit_ratio,
            "block_bytes": self.block_bytes,
            "tiers": [dataclasses.asdict(t) for t in self.tiers],
            "seconds": self.seconds,
            "accesses_per_s": self.accesses_per_s,
        }


def _as_tiers(tiers, policy, capacity_blocks, block_bytes: int) -> list[ReplayTier]:
    if tiers is None:
        return [ReplayTier(name="tier0", policy=policy, capacity_blocks=capacity_blocks)]
    if isinstance(tiers, (str, bytes)) or not hasattr(tiers, "__iter__"):
        raise ConfigError(f"tiers: got {type(tiers).__name__}, expected a list of ReplayTier or TierSpec")
    out = []
    for i, t in enumerate(tiers):
        if isinstance(t, ReplayTier):
            out.append(t)
        elif isinstance(t, TierSpec):
            # The slots a TieredStore would give this tier (flash slots carry a header).
            slot_bytes = flash_slot_bytes(block_bytes) if t.kind == "flash" else block_bytes
            out.append(ReplayTier(name=t.name, policy=t.policy, capacity_blocks=max(1, t.capacity_bytes // slot_bytes)))
        else:
            raise ConfigError(f"tiers[{i}]: got {type(t).__name__}, expected a ReplayTier or TierSpec")
    if not out:
        raise ConfigError("tiers: got an empty list, expected at least one tier")
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"tiers: got names {names}, expected unique names")
    if len(out) > 127:
        raise ConfigError(f"tiers: got {len(out)}, expected at most 127")
    return out


def recompute_cost_per_byte(model: ModelSpec, block_tokens: int, max_depth: int) -> np.ndarray:
    """Recompute FLOPs per KV byte of a block at each chain depth ``0 .. max_depth``:
    prefill of ``block_tokens`` new tokens on ``depth * block_tokens`` cached ones, divided
    by the block's bytes (seconds on any one target are this times a constant)."""
    depth = np.arange(max_depth + 1, dtype=np.float64)
    flops = np.asarray(model.prefill_flops(float(block_tokens), depth * block_tokens), dtype=np.float64)
    return flops / float(model.block_bytes(block_tokens))


def policy_state(policies: Sequence[str], slots: Sequence[int]):
    """Fresh kernel state of one policy per tier (``policies[t]`` over ``slots[t]`` slots,
    the store's policies exactly), concatenated into ``(I, K, F, M)`` with tier ``t``'s
    header at ``t * M_SIZE``: the layout the general replay loop and the simulator take."""
    parts = [_kp.policy_new(POLICIES[p].kind, n, *POLICIES[p].kernel_params(n)) for p, n in zip(policies, slots)]
    I, K, F, M = (np.concatenate([p[j] for p in parts]) for j in range(4))
    di = dk = df = 0
    for t, p in enumerate(parts):
        _kp.policy_rebase(M, t * _kp.M_SIZE, di, dk, df)
        di += p[0].shape[0]
        dk += p[1].shape[0]
        df += p[2].shape[0]
    return I, K, F, M


def _list_scalars(policies: Sequence[str], slots: Sequence[int]) -> np.ndarray | None:
    """The list kernels' per-tier scalars (``kvtier._kernels.listreplay.TS_*``) when every
    tier runs a list policy (LRU, FIFO, CLOCK, SIEVE, S3-FIFO, ARC), else ``None``."""
    kinds = [POLICIES[p].kind for p in policies]
    if any(k not in _kl.LIST_KINDS for k in kinds):
        return None
    ts = np.zeros((len(kinds), _kl.TS_SIZE), dtype=np.int64)
    for i, (p, n, kind) in enumerate(zip(policies, slots, kinds)):
        small, ghost, threshold = POLICIES[p].kernel_params(n)
        ts[i, _kl.TS_KIND] = kind
        ts[i, _kl.TS_CAP] = n
        ts[i, _kl.TS_SMALL_CAP] = small
        ts[i, _kl.TS_MAIN_CAP] = n - small
        ts[i, _kl.TS_THRESH] = threshold
        ts[i, _kl.TS_GHOST_CAP] = ghost
    return ts


#: The replay kernels, by the name ``select_kernel`` gives them.
KERNELS = ("general", "list", "ghost", "lru-chain", "belady")


class KernelChoice(NamedTuple):
    """The kernel ``replay`` runs for a chain of tiers, and the metadata it allocates.

    ``name``: one of ``KERNELS``: ``"belady"`` (one Belady tier that sees the future,
    ``kvtier._kernels.beladyreplay``), ``"ghost"`` (one ARC or S3-FIFO tier that sees keys,
    ``ghostreplay``: a victim turns ghost where it stands), ``"lru-chain"`` (one or more LRU
    tiers, ``lruchain``: one LRU list cut into segments), ``"list"`` (every tier a list
    policy, ``listreplay``: one entry per block for its whole stay) or ``"general"``
    (``kvtier._kernels.replay``, any policies; the one the others are tested equal to).
    ``state_bytes``: bytes of replay state it allocates for the tiers (the fixed part: the
    Belady kernel also keeps 12 bytes per access, the general one its policies' arrays)."""

    name: str
    state_bytes: int
    list_scalars: np.ndarray | None  # the list kernels' per-tier scalars (None for "general" and "belady")
    use_keys: bool  # the policies see block keys (ARC's and S3-FIFO's ghosts)


def select_kernel(policies: Sequence[str], slots: Sequence[int], *, hints: bool | str = True,
                  accesses: int = 0, fast: bool = True) -> KernelChoice:
    """The kernel ``replay`` runs for tiers of ``policies`` with ``slots`` blocks each
    (fastest first) under ``hints`` (as ``replay`` takes them), for a trace of
    ``accesses`` block accesses; ``fast=False`` always chooses the general kernel."""
    policies = list(policies)
    slots = [int(n) for n in slots]
    use_keys = bool(hints) and any(p in _NEEDS_KEY for p in policies)
    belady = fast and hints is True and policies == ["belady"] and accesses <= _kb.MAX_ACCESSES
    if belady:
        return KernelChoice("belady", _kb.state_bytes(slots[0], accesses)[0], None, use_keys)
    ts = _list_scalars(policies, slots) if fast else None
    if ts is None:
        return KernelChoice("general", 0, None, use_keys)
    if _kg.applies(ts, use_keys):
        return KernelChoice("ghost", int(_kg.state_bytes(ts)), ts, use_keys)
    if _lc.applies(ts):
        return KernelChoice("lru-chain", int(_lc.state_bytes(ts)), ts, use_keys)
    return KernelChoice("list", int(_kl.state_bytes(ts, use_keys)), ts, use_keys)


def densify(block_hashes) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int32[n], unique uint64[n_unique])``: each hash's dense id, in order of first
    appearance (a numba hash table; no sort)."""
    h = np.ascontiguousarray(block_hashes, dtype=np.uint64)
    if h.ndim != 1:
        raise ConfigError(f"block_hashes: got shape {h.shape}, expected one dimension")
    return densify_ids(h, 1 << 16)


def replay(
    block_offsets,
    block_hashes,
    tiers=None,
    *,
    policy: str = "lru",
    capacity_blocks: int | None = None,
    block_bytes: int | None = None,
    model: ModelSpec | str | None = None,
    block_tokens: int = 16,
    promote: bool = True,
    hints: bool = True,
    record: bool = False,
    fast: bool = True,
) -> ReplayResult:
    """Replay the CSR trace ``block_offsets`` int64[n+1] / ``block_hashes`` uint64[total].

    ``tiers``: ``ReplayTier`` (or ``TierSpec``) values, fastest first; or ``None`` for one
    tier of ``policy`` with ``capacity_blocks`` slots (``None``: unlimited).
    ``block_bytes``: bytes per block (capacities in bytes, bytes moved); default from
    ``model`` (a ``ModelSpec`` or preset name, default ``llama-3.1-8b``) and
    ``block_tokens``; the model also prices recomputation for ``cost-aware``.
    ``promote``: move lower-tier hits to tier 0 (else touch them where they are).
    ``hints``: ``True`` gives policies each block's key, chain depth, next use and
    recompute cost; ``"keys"`` only its key (ARC and S3-FIFO ghosts), which is what a
    ``TieredStore`` gives its tiers; ``False`` slots only (Belady then knows nothing).
    ``record``: also return, per access, the tier that hit and the evictions per tier.
    ``fast``: when every tier runs a list policy, use the list kernel
    (``kvtier._kernels.listreplay``: one entry per block for its whole stay, so moves touch
    no table), or its special cases: one ARC or S3-FIFO tier (``ghostreplay``: a victim
    turns ghost where it stands) and a chain of LRU tiers (``lruchain``: one LRU list cut
    into segments); for one Belady tier the Belady kernel (``beladyreplay``). ``False``
    forces the general kernel. They all give the same results.
    Raises ``ConfigError`` for malformed arrays or tiers.
    """
    raw_offsets, hashes = np.asarray(block_offsets), np.asarray(block_hashes)
    if raw_offsets.dtype.kind not in "iu" or (hashes.size and hashes.dtype.kind not in "iu"):
        raise ConfigError(f"block_offsets/block_hashes: got dtypes {raw_offsets.dtype}/{hashes.dtype}, expected integers")
    if hashes.size and hashes.dtype.kind == "i" and hashes.min() < 0:
        raise ConfigError(f"block_hashes: got {int(hashes.min())}, expected ids >= 0")
    offsets = np.ascontiguousarray(raw_offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise ConfigError("block_offsets: expected int64[n_requests + 1], starting at 0, non-decreasing")
    if hashes.ndim != 1 or int(offsets[-1]) != hashes.shape[0]:
        raise ConfigError(f"block_hashes: got {hashes.shape[0]} entries, block_offsets[-1] says {int(offsets[-1])}")
    check_int(block_tokens, "block_tokens")
    if isinstance(model, str) or model is None:
        model = ModelSpec.preset(model or "llama-3.1-8b")
    if block_bytes is None:
        block_bytes = int(model.block_bytes(block_tokens))
    block_bytes = check_int(block_bytes, "block_bytes")
    spec_tiers = _as_tiers(tiers, policy, capacity_blocks, block_bytes)
    names = {t.policy for t in spec_tiers}
    if hints not in (True, False, "keys"):
        raise ConfigError(f"hints: got {hints!r}, expected True, False or 'keys'")
    hints_given = hints
    hints = hints is True

    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    t0 = time.perf_counter()
    n_unique = None
    unlimited = any(t.capacity_blocks is None and t.capacity_bytes is None for t in spec_tiers)
    if (hints and names & _NEEDS_NEXT_USE) or unlimited:
        ids, unique = densify(hashes)  # Belady's future, or the size of an unlimited tier
        n_unique = int(unique.shape[0])
    if hints and names & _NEEDS_NEXT_USE:
        next_use = next_use_index(ids, n_unique, _kp.NEVER)
    else:
        next_use = np.empty(0, dtype=np.int64)
    t_prep = time.perf_counter() - t0

    if hints and names & _NEEDS_COST:
        max_depth = int(np.max(np.diff(offsets))) if offsets.shape[0] > 1 else 0
        costs = recompute_cost_per_byte(model, block_tokens, max(0, max_depth - 1))
    else:
        costs = np.ones(1, dtype=np.float64)
    slots = [t.slots(block_bytes, n_unique or 1) for t in spec_tiers]
    policies = [t.policy for t in spec_tiers]
    choice = select_kernel(policies, slots, hints=hints_given, accesses=hashes.shape[0], fast=fast)
    ts, record, use_keys = choice.list_scalars, bool(record), choice.use_keys
    if choice.name == "belady":
        t1 = time.perf_counter()
        counters, hit_tier, evictions_at = _kb.belady_replay(offsets, hashes, next_use, slots[0], _kp.NEVER, record)
    elif choice.name == "ghost":
        t1 = time.perf_counter()
        counters, hit_tier, evictions_at = _kg.ghost_replay(offsets, hashes, ts, record)
    elif choice.name == "lru-chain":
        t1 = time.perf_counter()
        counters, hit_tier, evictions_at = _lc.lru_chain_replay(offsets, hashes, ts, bool(promote), record)
    elif choice.name == "list":
        t1 = time.perf_counter()
        counters, hit_tier, evictions_at = _kl.list_replay(offsets, hashes, ts, bool(promote), record, use_keys)
    else:
        I, K, F, M = policy_state(policies, slots)
        caps = np.asarray(slots, dtype=np.int64)
        t1 = time.perf_counter()
        counters, hit_tier, evictions_at = _kr.replay_trace(
            offsets, hashes, next_use, costs, caps, I, K, F, M, bool(promote), record,
            use_keys, bool(hints and names & _NEEDS_DEPTH))
    seconds = t_prep + time.perf_counter() - t1
    if n_unique is None:
        n_unique = int(densify(hashes)[1].shape[0])  # a statistic of the trace, not timed

    stats = []
    for i, (t, n) in enumerate(zip(spec_tiers, slots)):
        c = counters[i]
        stats.append(TierReplayStats(
            name=t.name, policy=t.policy, capacity_blocks=n, hits=int(c[_kc.C_HITS]),
            prefix_hits=int(c[_kc.C_PREFIX_HITS]), misses=int(c[_kc.C_MISSES]), admitted=int(c[_kc.C_ADMITTED]),
            evictions=int(c[_kc.C_EVICTIONS]), demotions=int(c[_kc.C_DEMOTIONS]),
            promotions=int(c[_kc.C_PROMOTIONS]), drops=int(c[_kc.C_DROPS]),
            bytes_demoted=int(c[_kc.C_DEMOTIONS]) * block_bytes, bytes_promoted=int(c[_kc.C_PROMOTIONS]) * block_bytes,
        ))
    return ReplayResult(
        requests=int(offsets.shape[0] - 1), block_accesses=int(hashes.shape[0]), unique_blocks=n_unique,
        block_hits=int(counters[:, _kc.C_HITS].sum()), prefix_hits=int(counters[:, _kc.C_PREFIX_HITS].sum()),
        tiers=stats, block_bytes=block_bytes, seconds=seconds,
        hit_tier=hit_tier if record else None, evictions_at=evictions_at if record else None,
    )


#: For each kernel, a chain of tier policies that ``select_kernel`` runs it for (at any
#: capacity, on a trace of a few accesses): what ``warm_up`` replays to compile it.
_WARM_CHAINS = {"general": ("lru", "belady"), "list": ("fifo",), "belady": ("belady",), "ghost": ("arc",),
                "lru-chain": ("lru",)}


def warm_up(kernels: Sequence[str] = KERNELS) -> float:
    """Compile (or load from numba's cache) the replay kernels named in ``kernels`` (names
    from ``KERNELS``; all of them by default) by replaying a six-access trace through a
    chain that selects each; returns the seconds it took. A cold compile costs tens of
    seconds per kernel; ``kvtier replay`` warms only the kernel its tiers select
    (``select_kernel(...).name``). ``UnknownNameError`` for a name not in ``KERNELS``."""
    if isinstance(kernels, str):
        kernels = (kernels,)
    for name in kernels:
        if name not in KERNELS:
            raise UnknownNameError(f"kernels: got {name!r}, expected names from {list(KERNELS)}")
    t0 = time.perf_counter()
    offsets = np.array([0, 3, 6], dtype=np.int64)
    hashes = np.array([1, 2, 3, 1, 2, 4], dtype=np.uint64)
    for name in dict.fromkeys(kernels):
        policies = _WARM_CHAINS[name]
        chosen = select_kernel(policies, [2] * len(policies), accesses=hashes.shape[0]).name
        if chosen != name:  # select_kernel's rules changed and this table did not
            raise RuntimeError(f"warm_up: the chain {policies} runs the {chosen!r} kernel, not {name!r}")
        replay(offsets, hashes, [ReplayTier(name=f"t{i}", policy=p, capacity_blocks=2) for i, p in enumerate(policies)],
               record=True)
    return time.perf_counter() - t0


__all__ = ["KERNELS", "POLICY_NAMES", "KernelChoice", "ReplayResult", "ReplayTier", "TierReplayStats", "densify",
           "policy_state", "recompute_cost_per_byte", "replay", "select_kernel", "warm_up"]
