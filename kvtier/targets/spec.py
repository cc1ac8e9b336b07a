"""The specs of a hardware target: a model deployed on N chips, its KV tiers, links and compute.

A ``HardwareTarget`` is what the cost model and the planners price a request against:

* ``tiers`` — the KV tier chain, fastest first. ``tiers[0]`` is the *compute tier*: the
  memory attention reads KV from (SRAM on Cerebras/Groq, HBM on NVIDIA/Etched/MatX). Every
  other tier reaches the compute tier over a named link (``TargetTier.link``); tiers that
  name the same link share it (an H100's host DRAM and NVMe both come in over PCIe).
* ``links`` — ``LinkSpec`` resources. A multi-chip deployment's link is the per-chip link
  times the chips that each have one (DESIGN.md): 4 wafers x 150 GB/s to MemoryX = 600 GB/s.
* weights — ``total_params x weights_bytes_per_param`` bytes live in the fastest memory
  that holds them: ``tiers[0]``, or ``weights_memory`` where the design keeps weights in a
  memory that holds no KV (MatX: weights in SRAM, KV in HBM). ``kv_capacity_bytes`` is
  what is left for KV: the capacity cliff the project studies.
* ``compute_flops`` (peak dense BF16, all chips) x ``efficiency`` (MFU, default 0.5 as in
  hardware.md §4) is the rate a prefill runs at; presets carry their family's time-model
  parts (``TIME_PARTS``: GEMM and attention efficiency, achieved bandwidth, all-reduce,
  element-wise and per-layer overheads) and ``deployment`` (replicas of ``tp x pp`` chips).

A figure that is not a published number carries an ``Estimate`` (low/high range and the
assumption) in the ``estimates`` of the object that holds it: ``t.is_estimate("field")``.
``HardwareTarget.preset(name)`` builds an entry of ``PRESETS``, which
``kvtier.targets.presets`` fills from ``hardware.json`` and ``assumptions.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kvtier._data import hardware_data
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.registry import Registry
from kvtier.targets.deployment import Deployment
from kvtier.targets.figures import assumption
from kvtier.tiers.spec import TIER_KINDS
from kvtier.validation import check_choice, check_int, check_name, check_number

#: MFU assumed by hardware.md §4 for every derived number (``assumptions.json``: efficiency).
DEFAULT_EFFICIENCY = assumption("efficiency").value

#: The parts of a target's time model (``kvtier.cost.stage_model``), per family in
#: ``assumptions.json`` ``families``: GEMM efficiency (``efficiency``, at large token
#: counts) and the tokens at which it halves (``gemm_half_tokens``), attention efficiency,
#: achieved memory bandwidth, tensor-parallel all-reduce latency and link bandwidth,
#: element-wise time per token per layer, and a fixed time per layer per step.
TIME_PARTS = ("efficiency", "gemm_half_tokens", "attention_efficiency", "bw_efficiency", "tp_allreduce_latency_s",
              "tp_link_bw_bytes_per_s", "elementwise_s_per_token_layer", "decode_layer_overhead_s")


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """A figure that is not published: its plausible range and the assumption behind it.

    ``field`` names the attribute of the owning spec (``"latency_s"``); the owner checks
    that its value lies in ``[low, high]``.
    """

    field: str
    low: float
    high: float
    assumption: str

    def __post_init__(self) -> None:
        check_name(self.field, "Estimate.field")
        for name in ("low", "high"):
            check_number(getattr(self, name), f"Estimate.{name} of {self.field}", minimum=0.0)
        if self.low > self.high:
            raise ConfigError(f"Estimate of {self.field}: got low={self.low!r} > high={self.high!r}, expected low <= high")
        if not isinstance(self.assumption, str) or not self.assumption.strip():
            raise ConfigError(f"Estimate.assumption of {self.field}: got {self.assumption!r}, expected the assumption in words")

    def scaled(self, factor: float) -> "Estimate":
        return dataclasses.replace(self, low=self.low * factor, high=self.high * factor)


class _HasEstimates:
    """Mixin: ``estimates`` lookups shared by links, tiers and targets."""

    estimates: tuple[Estimate, ...]

    def is_estimate(self, field: str) -> bool:
        """Whether ``field`` is an estimate rather than a published figure."""
        return any(e.field == field for e in self.estimates)

    def estimate_of(self, field: str) -> Estimate | None:
        """The ``Estimate`` behind ``field``, or None for a published figure."""
        for e in self.estimates:
            if e.field == field:
                return e
        return None


def _check_estimates(owner: str, obj, numeric_fields: tuple[str, ...]) -> None:
    if not isinstance(obj.estimates, tuple) or not all(isinstance(e, Estimate) for e in obj.estimates):
        raise ConfigError(f"{owner}.estimates: got {obj.estimates!r}, expected a tuple of Estimate")
    seen = set()
    for e in obj.estimates:
        if e.field not in numeric_fields:
            raise ConfigError(f"{owner}.estimates: field {e.field!r} is not one of {list(numeric_fields)}")
        if e.field in seen:
            raise ConfigError(f"{owner}.estimates: field {e.field!r} appears twice")
        seen.add(e.field)
        value = getattr(obj, e.field)
        if value is None or not e.low * (1 - 1e-12) <= value <= e.high * (1 + 1e-12):
            raise ConfigError(f"{owner}.{e.field}: got {value!r}, expected within its estimate range [{e.low!r}, {e.high!r}]")


def _owner(kind: str, name) -> str:
    """Check a spec's ``name`` (letters, digits, '-', '_', '.') and return how its messages
    name it."""
    check_name(name, f"{kind}.name", charset="-_.")
    return f"{kind} {name!r}"


def _check_figures(owner: str, obj, positive: tuple[str, ...], non_negative: tuple[str, ...] = ()) -> None:
    for field in positive:
        check_number(getattr(obj, field), f"{owner}.{field}", minimum=0.0, min_exclusive=True)
    for field in non_negative:
        check_number(getattr(obj, field), f"{owner}.{field}", minimum=0.0)


def _sources(owner: str, sources) -> None:
    if not isinstance(sources, tuple) or not all(isinstance(s, str) and s for s in sources):
        raise ConfigError(f"{owner}.sources: got {sources!r}, expected a tuple of source keys or URLs")


@dataclass(frozen=True, kw_only=True)
class LinkSpec(_HasEstimates):
    """A data path between a tier and the compute tier: a resource transfers queue on.

    ``read_bw_bytes_per_s`` is toward the compute tier (a fetch), ``write_bw_bytes_per_s``
    away from it (an offload); per direction, aggregated over ``count`` physical links
    (one per chip that has one). ``latency_s`` is charged once per transfer.
    """

    name: str
    read_bw_bytes_per_s: float
    write_bw_bytes_per_s: float
    latency_s: float = 0.0
    count: int = 1
    note: str = ""
    estimates: tuple[Estimate, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = _owner("LinkSpec", self.name)
        _check_figures(owner, self, ("read_bw_bytes_per_s", "write_bw_bytes_per_s"), ("latency_s",))
        check_int(self.count, f"{owner}.count")
        _check_estimates(owner, self, ("read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"))
        _sources(owner, self.sources)

    def bw_bytes_per_s(self, direction: str = "read") -> float:
        """Bandwidth of one direction: ``"read"`` (toward compute) or ``"write"``."""
        check_choice(direction, "direction", ("read", "write"))
        return self.read_bw_bytes_per_s if direction == "read" else self.write_bw_bytes_per_s

    def times(self, n: int) -> "LinkSpec":
        """``n`` such links side by side (one per chip): bandwidth and count scale, latency does not."""
        check_int(n, f"LinkSpec {self.name!r}.times(n)")
        return self.share(n)

    def share(self, f: float) -> "LinkSpec":
        """The link scaled by ``f`` (a replica's share of its chips' links: ``f < 1``):
        bandwidth and count scale, latency does not."""
        est = tuple(e.scaled(f) if e.field != "latency_s" else e for e in self.estimates)
        return dataclasses.replace(
            self,
            read_bw_bytes_per_s=self.read_bw_bytes_per_s * f,
            write_bw_bytes_per_s=self.write_bw_bytes_per_s * f,
            count=max(1, int(round(self.count * f))),
            estimates=est,
        )


@dataclass(frozen=True, kw_only=True)
class TargetTier(_HasEstimates):
    """One memory of a target, physical figures summed over its chips.

    ``capacity_bytes`` is the whole memory; the part left for KV after weights is
    ``HardwareTarget.kv_capacity_bytes``. ``read/write_bw_bytes_per_s`` and ``latency_s``
    are the memory's own; a tier below the compute tier is also bounded by its ``link``
    (the name of a ``LinkSpec`` of the target; None for the compute tier).
    """

    name: str
    kind: str
    capacity_bytes: int
    read_bw_bytes_per_s: float
    write_bw_bytes_per_s: float
    latency_s: float = 0.0
    link: str | None = None
    shared: bool = False
    note: str = ""
    estimates: tuple[Estimate, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = _owner("TargetTier", self.name)
        if not isinstance(self.shared, bool):
            raise ConfigError(f"{owner}.shared: got {self.shared!r}, expected true or false")
        check_choice(self.kind, f"{owner}.kind", TIER_KINDS, error=UnknownNameError)
        check_int(self.capacity_bytes, f"{owner}.capacity_bytes")
        _check_figures(owner, self, ("read_bw_bytes_per_s", "write_bw_bytes_per_s"), ("latency_s",))
        if self.link is not None and not isinstance(self.link, str):
            raise ConfigError(f"{owner}.link: got {self.link!r}, expected a link name or None")
        _check_estimates(owner, self, ("capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"))
        _sources(owner, self.sources)

    def times(self, n: int, *, capacity: bool = True) -> "TargetTier":
        """The tier on ``n`` chips: capacity (unless ``capacity=False``: a shared appliance)
        and bandwidth scale, latency does not."""
        return self.share(n, capacity=capacity)

    def share(self, n: float, *, capacity: bool = True) -> "TargetTier":
        """The tier scaled by ``n`` chips' worth (a fraction for a replica's share): as ``times``."""
        cap_n = n if capacity else 1
        est = []
        for e in self.estimates:
            if e.field == "capacity_bytes":
                est.append(e.scaled(cap_n))
            elif e.field == "latency_s":
                est.append(e)
            else:
                est.append(e.scaled(n))
        return dataclasses.replace(
            self,
            capacity_bytes=int(self.capacity_bytes * cap_n),
            read_bw_bytes_per_s=self.read_bw_bytes_per_s * n,
            write_bw_bytes_per_s=self.write_bw_bytes_per_s * n,
            estimates=tuple(est),
        )


@dataclass(frozen=True, kw_only=True)
class HardwareTarget(_HasEstimates):
    """A deployment: ``model`` (optional) on ``chips`` chips, its KV tiers, links, compute.

    Without a model no weights are placed and every tier's KV capacity is its whole
    capacity (hardware.md §4 "no weights" figures). With one, ``weights_bytes`` =
    ``total_params x weights_bytes_per_param`` (active params when total is unknown) sit in
    ``weights_memory`` or else ``tiers[0]``; they must fit (``ConfigError`` otherwise).
    """

    name: str
    unit: str = ""
    chips: int = 1
    tiers: tuple[TargetTier, ...]
    links: tuple[LinkSpec, ...] = ()
    compute_flops: float
    efficiency: float = DEFAULT_EFFICIENCY
    attention_efficiency: float | None = None
    gemm_half_tokens: float = 0.0
    bw_efficiency: float = 1.0
    tp_allreduce_latency_s: float = 0.0
    tp_link_bw_bytes_per_s: float | None = None
    elementwise_s_per_token_layer: float = 0.0
    decode_layer_overhead_s: float = 0.0
    family: str = ""
    deployment: Deployment | None = None
    power_w: float | None = None
    weights_memory: TargetTier | None = None
    model: ModelSpec | None = None
    weights_bytes_per_param: int = 2
    notes: str = ""
    estimates: tuple[Estimate, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = _owner("HardwareTarget", self.name)
        check_int(self.chips, f"{owner}.chips")
        if not isinstance(self.tiers, tuple) or not self.tiers or not all(isinstance(t, TargetTier) for t in self.tiers):
            raise ConfigError(f"{owner}.tiers: got {self.tiers!r}, expected a non-empty tuple of TargetTier")
        if not isinstance(self.links, tuple) or not all(isinstance(k, LinkSpec) for k in self.links):
            raise ConfigError(f"{owner}.links: got {self.links!r}, expected a tuple of LinkSpec")
        names = [t.name for t in self.tiers] + ([self.weights_memory.name] if self.weights_memory else [])
        if len(set(names)) != len(names):
            raise ConfigError(f"{owner}.tiers: got names {names}, expected unique names")
        link_names = [k.name for k in self.links]
        if len(set(link_names)) != len(link_names):
            raise ConfigError(f"{owner}.links: got names {link_names}, expected unique names")
        if self.tiers[0].link is not None:
            raise ConfigError(f"{owner}.tiers[0].link: got {self.tiers[0].link!r}, expected None (tiers[0] is the compute tier)")
        for i, t in enumerate(self.tiers[1:], start=1):
            if t.link not in link_names:
                raise ConfigError(f"{owner}.tiers[{i}].link: got {t.link!r}, expected one of {link_names}")
        if self.weights_memory is not None and not isinstance(self.weights_memory, TargetTier):
            raise ConfigError(f"{owner}.weights_memory: got {self.weights_memory!r}, expected a TargetTier or None")
        _check_figures(owner, self, ("compute_flops",))
        check_number(self.efficiency, f"{owner}.efficiency", minimum=0.0, min_exclusive=True, maximum=1.0)
        check_number(self.bw_efficiency, f"{owner}.bw_efficiency", minimum=0.0, min_exclusive=True, maximum=1.0)
        check_number(self.decode_layer_overhead_s, f"{owner}.decode_layer_overhead_s", minimum=0.0, maximum=1.0)
        if self.attention_efficiency is not None:
            check_number(self.attention_efficiency, f"{owner}.attention_efficiency", minimum=0.0, min_exclusive=True,
                         maximum=1.0)
        check_number(self.gemm_half_tokens, f"{owner}.gemm_half_tokens", minimum=0.0)
        check_number(self.tp_allreduce_latency_s, f"{owner}.tp_allreduce_latency_s", minimum=0.0, maximum=1.0)
        if self.tp_link_bw_bytes_per_s is not None:
            check_number(self.tp_link_bw_bytes_per_s, f"{owner}.tp_link_bw_bytes_per_s", minimum=0.0,
                         min_exclusive=True)
        check_number(self.elementwise_s_per_token_layer, f"{owner}.elementwise_s_per_token_layer", minimum=0.0,
                     maximum=1.0)
        if not isinstance(self.family, str):
            raise ConfigError(f"{owner}.family: got {self.family!r}, expected a string")
        if self.deployment is not None:
            if not isinstance(self.deployment, Deployment):
                raise ConfigError(f"{owner}.deployment: got {self.deployment!r}, expected a Deployment or None")
            self.deployment.num_replicas(self.chips)  # ConfigError when a replica does not fit
        if self.power_w is not None:
            _check_figures(owner, self, ("power_w",))
        if not isinstance(self.unit, str) or not isinstance(self.notes, str):
            raise ConfigError(f"{owner}.unit/notes: got {self.unit!r}/{self.notes!r}, expected strings")
        if self.model is not None and not isinstance(self.model, ModelSpec):
            raise ConfigError(f"{owner}.model: got {self.model!r}, expected a ModelSpec or None")
        if self.weights_bytes_per_param not in (1, 2, 4):
            raise ConfigError(
                f"{owner}.weights_bytes_per_param: got {self.weights_bytes_per_param!r}, expected 1 (fp8), 2 (bf16) or 4"
            )
        _check_estimates(owner, self, ("compute_flops", "power_w", *TIME_PARTS))
        _sources(owner, self.sources)
        if self.weights_bytes > self.weights_tier.capacity_bytes:
            raise ConfigError(
                f"{owner}: weights of {self.model.name} need {self.weights_bytes / 1e9:.1f} GB "
                f"({self.weights_bytes_per_param} B/param) but {self.weights_tier.name!r} holds "
                f"{self.weights_tier.capacity_bytes / 1e9:.1f} GB on {self.chips} chip(s); expected weights to fit "
                "(more chips or fp8 weights)"
            )

    @property
    def serving(self) -> Deployment:
        """The deployment: ``deployment``, or one tensor-parallel group of every chip."""
        return self.deployment if self.deployment is not None else Deployment(tp=self.chips, replicas=1)

    @property
    def num_replicas(self) -> int:
        return self.serving.num_replicas(self.chips)

    def replica(self) -> "HardwareTarget":
        """The target one replica of ``serving`` sees: its ``tp x pp`` chips, their share of
        every chip-scaled tier and link (``chips_per_replica / chips``), a ``1/replicas``
        share of a ``shared`` tier (an appliance such as MemoryX), its compute and power,
        and a whole copy of the weights (``ConfigError`` if they do not fit). Chips left
        over by the split are idle."""
        d = self.serving
        n = d.num_replicas(self.chips)
        per = d.chips_per_replica
        one = Deployment(tp=d.tp, pp=d.pp, replicas=1, estimate=d.estimate, note=d.note)
        if per == self.chips:
            return dataclasses.replace(self, deployment=one)
        f = per / self.chips
        est = tuple(e.scaled(f) if e.field in ("compute_flops", "power_w") else e for e in self.estimates)
        try:
            return dataclasses.replace(
                self, chips=per, deployment=one,
                tiers=tuple(t.share(1.0 / n if t.shared else f, capacity=True) for t in self.tiers),
                links=tuple(k.share(f) for k in self.links),
                weights_memory=self.weights_memory.share(f) if self.weights_memory else None,
                compute_flops=self.compute_flops * f, power_w=None if self.power_w is None else self.power_w * f,
                estimates=est)
        except ConfigError as e:
            raise ConfigError(f"HardwareTarget {self.name!r}: one replica of {d.describe(self.chips)}: {e}") from None

    @property
    def weights_tier(self) -> TargetTier:
        """The memory the weights live in: ``weights_memory`` or the compute tier."""
        return self.weights_memory if self.weights_memory is not None else self.tiers[0]

    @property
    def weights_bytes(self) -> int:
        """Bytes of the placed model's weights (0 without a model)."""
        if self.model is None:
            return 0
        return weights_bytes(self.model, self.weights_bytes_per_param)

    @property
    def kv_capacity_bytes(self) -> tuple[int, ...]:
        """Per tier (``tiers`` order), bytes left for KV after weights."""
        out = [t.capacity_bytes for t in self.tiers]
        if self.weights_memory is None:
            out[0] -= self.weights_bytes
        return tuple(out)

    def kv_capacity_tokens(self, model: ModelSpec | None = None) -> np.ndarray:
        """Per tier, whole tokens of ``model``'s KV (default: the placed model) that fit."""
        model = model if model is not None else self.model
        if model is None:
            raise ConfigError(f"HardwareTarget {self.name!r}.kv_capacity_tokens: got no model, expected a ModelSpec")
        return np.asarray(self.kv_capacity_bytes, dtype=np.int64) // model.kv_bytes_per_token

    @property
    def effective_flops(self) -> float:
        """The FLOP/s of every chip together at the prefill MFU: ``compute_flops x efficiency``."""
        return self.compute_flops * self.efficiency

    def tier_index(self, name: str) -> int:
        for i, t in enumerate(self.tiers):
            if t.name == name:
                return i
        raise UnknownNameError(f"tier: got {name!r}, expected one of {[t.name for t in self.tiers]}")

    def link(self, name: str) -> LinkSpec:
        for k in self.links:
            if k.name == name:
                return k
        raise UnknownNameError(f"link: got {name!r}, expected one of {[k.name for k in self.links]}")

    def link_of(self, tier_index: int) -> LinkSpec | None:
        """The shared link tier ``tier_index`` reaches the compute tier over (None for tier 0)."""
        t = self.tiers[self._check_tier(tier_index)]
        return None if t.link is None else self.link(t.link)

    def fetch_path(self, tier_index: int, direction: str = "read") -> LinkSpec:
        """The end-to-end path of a transfer between tier ``tier_index`` and the compute
        tier: bandwidth = min(tier, link), latency = tier + link. Named after the shared
        link, so transfers of tiers on one link queue together. Tier 0: its own figures."""
        i = self._check_tier(tier_index)
        t = self.tiers[i]
        k = self.link_of(i)
        if k is None:
            return LinkSpec(name=t.name, read_bw_bytes_per_s=t.read_bw_bytes_per_s,
                            write_bw_bytes_per_s=t.write_bw_bytes_per_s, latency_s=t.latency_s)
        return LinkSpec(
            name=k.name,
            read_bw_bytes_per_s=min(t.read_bw_bytes_per_s, k.read_bw_bytes_per_s),
            write_bw_bytes_per_s=min(t.write_bw_bytes_per_s, k.write_bw_bytes_per_s),
            latency_s=t.latency_s + k.latency_s,
            count=k.count,
        )

    def _check_tier(self, tier_index) -> int:
        return check_int(tier_index, f"tier_index ({self.name})", minimum=0, maximum=len(self.tiers) - 1)

    def tier_specs(self, *, capacity_scale: float = 1.0, flash_path=None, **overrides) -> list:
        """``TierSpec`` values for a ``TieredStore`` with this target's tier chain, in
        ``tiers`` order (so ``lookup()`` indices are planner indices): KV capacity after
        weights times ``capacity_scale`` (to fit a laptop), bandwidth and latency of each
        tier's path to the compute tier. ``flash_path`` is required when a tier is flash;
        ``overrides`` (codec, policy, ...) apply to every tier."""
        from kvtier.tiers.spec import TierSpec

        check_number(capacity_scale, "capacity_scale", minimum=0.0, min_exclusive=True)
        out = []
        for i, (t, kv) in enumerate(zip(self.tiers, self.kv_capacity_bytes)):
            cap = int(kv * capacity_scale)
            if cap <= 0:
                raise ConfigError(f"tier {t.name!r}: {kv} KV bytes x capacity_scale {capacity_scale} leaves no room")
            path = self.fetch_path(i)
            extra = {"path": str(flash_path)} if t.kind == "flash" else {}
            if t.kind == "flash" and flash_path is None:
                raise ConfigError(f"flash_path: got None, expected a directory for flash tier {t.name!r}")
            out.append(TierSpec(kind=t.kind, name=t.name, capacity_bytes=cap, read_bw_bytes_per_s=path.read_bw_bytes_per_s,
                                write_bw_bytes_per_s=path.write_bw_bytes_per_s, latency_s=path.latency_s,
                                **extra, **overrides))
        return out

    def with_model(self, model: ModelSpec | str | None, *, weights_bytes_per_param: int | None = None) -> "HardwareTarget":
        """This target with ``model``'s weights placed (``ConfigError`` if they do not fit)."""
        model = as_model(model)
        wb = self.weights_bytes_per_param if weights_bytes_per_param is None else weights_bytes_per_param
        return dataclasses.replace(self, model=model, weights_bytes_per_param=wb)

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        model: ModelSpec | str | None = None,
        chips: int | None = None,
        weights_bytes_per_param: int | None = None,
        efficiency: float | None = None,
    ) -> "HardwareTarget":
        """A named preset (``target_names()``), optionally with ``model``'s weights placed.

        Per-chip presets (``h100``, ``h200``, ``b200``, ``etched-sohu``, ``matx-one``,
        ``cerebras-cs3``) scale to ``chips``; by default 1 without a model, else the
        smallest power of two whose weight memory holds the weights (tensor-parallel
        degrees are powers of two). System presets have a fixed size and refuse ``chips``.
        ``weights_bytes_per_param`` defaults to the preset's (2 = bf16; 1 on Groq).
        The preset's family sets the time-model parts (``TIME_PARTS``) and its deployment
        (replicas of ``tp x pp`` chips) is the vendor's (``assumptions.json``: ``families``,
        ``deployments``); ``efficiency`` replaces the compute parts by one MFU for every FLOP.
        """
        p = PRESETS.get(name)
        model = as_model(model)
        wb = p.weights_bytes_per_param if weights_bytes_per_param is None else weights_bytes_per_param
        if p.fixed_chips is not None:
            if chips is not None and chips != p.fixed_chips:
                raise ConfigError(f"chips: got {chips!r}, expected None or {p.fixed_chips} (target {name!r} is a fixed system)")
            n = p.fixed_chips
        elif chips is not None:
            n = check_int(chips, "HardwareTarget.preset.chips")
        elif model is None:
            n = 1
        else:
            n = _chips_to_fit(p, model, wb)
        t = dataclasses.replace(p.build(n), model=model, weights_bytes_per_param=wb)
        if p.serve is not None:
            t = p.serve(t)
        if efficiency is not None:  # one MFU for every FLOP: the family's compute parts set aside
            t = dataclasses.replace(t, efficiency=efficiency, attention_efficiency=None, gemm_half_tokens=0.0,
                                    tp_allreduce_latency_s=0.0, tp_link_bw_bytes_per_s=None,
                                    elementwise_s_per_token_layer=0.0,
                                    estimates=tuple(e for e in t.estimates if e.field not in (
                                        "efficiency", "attention_efficiency", "gemm_half_tokens",
                                        "tp_allreduce_latency_s", "tp_link_bw_bytes_per_s",
                                        "elementwise_s_per_token_layer")))
        return t

    def source_urls(self) -> dict[str, str]:
        """``sources`` keys of this target and its parts, resolved to URLs where known."""
        table = hardware_data()["meta"]["sources"]
        keys = list(self.sources)
        for part in (*self.tiers, *self.links, *((self.weights_memory,) if self.weights_memory else ())):
            keys.extend(part.sources)
        return {k: table.get(k, k) for k in dict.fromkeys(keys)}

    def to_dict(self, *, derived: bool = True) -> dict:
        """Plain data (JSON-serialisable). With ``derived`` it adds the weights tier and
        bytes and the KV capacities; without, it is exactly what ``load_target`` reads."""
        def part(obj) -> dict:
            d = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "estimates"}
            d["sources"] = list(obj.sources)
            d["estimates"] = [dataclasses.asdict(e) for e in obj.estimates]
            return d

        d = part(self)
        d["tiers"] = [part(t) for t in self.tiers]
        d["links"] = [part(k) for k in self.links]
        d["weights_memory"] = part(self.weights_memory) if self.weights_memory else None
        d["model"] = self.model.name if self.model else None
        d["deployment"] = self.deployment.as_dict() if self.deployment else None
        if not derived:
            return d
        d["weights_tier"] = self.weights_tier.name
        d["weights_bytes"] = self.weights_bytes
        d["kv_capacity_bytes"] = list(self.kv_capacity_bytes)
        if self.model is not None:
            d["kv_capacity_tokens"] = [int(x) for x in self.kv_capacity_tokens()]
        return d


def weights_bytes(model: ModelSpec, weights_bytes_per_param: int = 2) -> int:
    """Bytes of ``model``'s weights: total params (active when total is unknown) x bytes/param."""
    params = model.total_params if model.total_params is not None else model.active_params
    return int(round(params * weights_bytes_per_param))


def as_model(model) -> ModelSpec | None:
    """``model`` as a ``ModelSpec``: a spec as it is, a preset name looked up, None kept."""
    if model is None or isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        return ModelSpec.preset(model)
    raise ConfigError(f"model: got {model!r}, expected a ModelSpec, a preset name or None")




@dataclass(frozen=True, kw_only=True)
class Preset:
    """A catalogue entry: ``build(chips)`` makes the target without a model;
    ``fixed_chips`` is the size of a fixed system (None: per-chip, scales);
    ``weights_bytes_per_param`` is the preset's default weight precision; ``serve`` sets
    a built target's family efficiencies and deployment."""

    build: Callable[[int], HardwareTarget]
    fixed_chips: int | None = None
    weights_bytes_per_param: int = 2
    serve: Callable[[HardwareTarget], HardwareTarget] | None = None


#: The preset catalogue by name, in the order the issue lists them; ``kvtier.targets.presets``
#: fills it when the package loads.
PRESETS: Registry[Preset] = Registry("target")


def target_names() -> list[str]:
    """Names accepted by ``HardwareTarget.preset``, in the order the issue lists them."""
    return PRESETS.names()


_MAX_CHIPS = 1 << 16


def _chips_to_fit(p: Preset, model: ModelSpec, wb: int) -> int:
    need = weights_bytes(model, wb)
    per_chip = p.build(1).weights_tier.capacity_bytes
    n = 1
    while n * per_chip < need:
        n *= 2
        if n > _MAX_CHIPS:
            raise ConfigError(f"chips: {model.name} weights ({need / 1e9:.0f} GB) need more than {_MAX_CHIPS} chips")
    return n

