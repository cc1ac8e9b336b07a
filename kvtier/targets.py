"""Hardware targets: a model deployed on N chips, its KV tiers, links and compute.

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
  hardware.md §4) is the rate a prefill runs at.

Every figure comes from ``kvtier/data/hardware.json`` (source keys in ``sources``). A
figure that is not a published number carries an ``Estimate`` (low/high range and the
assumption) in the ``estimates`` of the object that holds it: ``t.is_estimate("field")``.

Users describe their own target in a TOML or JSON file with the same fields
(``load_target``); ``kvtier targets --file PATH`` lists it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvtier._data import hardware_data
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.tiers.spec import TIER_KINDS


#: MFU assumed by hardware.md §4 for every derived number.
DEFAULT_EFFICIENCY = 0.5


# ---------------------------------------------------------------------------------------
# figures and estimates
# ---------------------------------------------------------------------------------------


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
        if not isinstance(self.field, str) or not self.field:
            raise ConfigError(f"Estimate.field: got {self.field!r}, expected a field name")
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"Estimate.{name} of {self.field}: got {v!r}, expected a finite number >= 0")
        if self.low > self.high:
            raise ConfigError(f"Estimate of {self.field}: got low={self.low!r} > high={self.high!r}, expected low <= high")
        if not isinstance(self.assumption, str) or not self.assumption.strip():
            raise ConfigError(f"Estimate.assumption of {self.field}: got {self.assumption!r}, expected the assumption in words")

    def scaled(self, factor: float) -> "Estimate":
        return dataclasses.replace(self, low=self.low * factor, high=self.high * factor)


def _est(field: str, low: float, high: float, assumption: str) -> Estimate:
    return Estimate(field=field, low=float(low), high=float(high), assumption=assumption)


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


def _check_name(owner: str, name) -> None:
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"{owner}.name: got {name!r}, expected letters, digits, '-', '_' or '.'")


def _check_pos(owner: str, field: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{owner}.{field}: got {value!r}, expected a finite number {'>= 0' if allow_zero else '> 0'}")


def _check_pos_int(owner: str, field: str, value, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{owner}.{field}: got {value!r}, expected a {'non-negative' if allow_zero else 'positive'} integer")


def _sources(owner: str, sources) -> None:
    if not isinstance(sources, tuple) or not all(isinstance(s, str) and s for s in sources):
        raise ConfigError(f"{owner}.sources: got {sources!r}, expected a tuple of source keys or URLs")


# ---------------------------------------------------------------------------------------
# links and tiers
# ---------------------------------------------------------------------------------------


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
        _check_name("LinkSpec", self.name)
        owner = f"LinkSpec {self.name!r}"
        _check_pos(owner, "read_bw_bytes_per_s", self.read_bw_bytes_per_s)
        _check_pos(owner, "write_bw_bytes_per_s", self.write_bw_bytes_per_s)
        _check_pos(owner, "latency_s", self.latency_s, allow_zero=True)
        _check_pos_int(owner, "count", self.count)
        _check_estimates(owner, self, ("read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"))
        _sources(owner, self.sources)

    def bw_bytes_per_s(self, direction: str = "read") -> float:
        """Bandwidth of one direction: ``"read"`` (toward compute) or ``"write"``."""
        if direction == "read":
            return self.read_bw_bytes_per_s
        if direction == "write":
            return self.write_bw_bytes_per_s
        raise ConfigError(f"direction: got {direction!r}, expected 'read' or 'write'")

    def times(self, n: int) -> "LinkSpec":
        """``n`` such links side by side (one per chip): bandwidth and count scale, latency does not."""
        _check_pos_int(f"LinkSpec {self.name!r}", "times(n)", n)
        est = tuple(e.scaled(n) if e.field != "latency_s" else e for e in self.estimates)
        return dataclasses.replace(
            self,
            read_bw_bytes_per_s=self.read_bw_bytes_per_s * n,
            write_bw_bytes_per_s=self.write_bw_bytes_per_s * n,
            count=self.count * n,
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
    note: str = ""
    estimates: tuple[Estimate, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("TargetTier", self.name)
        owner = f"TargetTier {self.name!r}"
        if self.kind not in TIER_KINDS:
            raise UnknownNameError(f"{owner}.kind: got {self.kind!r}, expected one of {list(TIER_KINDS)}")
        _check_pos_int(owner, "capacity_bytes", self.capacity_bytes)
        _check_pos(owner, "read_bw_bytes_per_s", self.read_bw_bytes_per_s)
        _check_pos(owner, "write_bw_bytes_per_s", self.write_bw_bytes_per_s)
        _check_pos(owner, "latency_s", self.latency_s, allow_zero=True)
        if self.link is not None and not isinstance(self.link, str):
            raise ConfigError(f"{owner}.link: got {self.link!r}, expected a link name or None")
        _check_estimates(owner, self, ("capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"))
        _sources(owner, self.sources)

    def times(self, n: int, *, capacity: bool = True) -> "TargetTier":
        """The tier on ``n`` chips: capacity (unless ``capacity=False``: a shared appliance)
        and bandwidth scale, latency does not."""
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


# ---------------------------------------------------------------------------------------
# the target
# ---------------------------------------------------------------------------------------


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
    power_w: float | None = None
    weights_memory: TargetTier | None = None
    model: ModelSpec | None = None
    weights_bytes_per_param: int = 2
    notes: str = ""
    estimates: tuple[Estimate, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("HardwareTarget", self.name)
        owner = f"HardwareTarget {self.name!r}"
        _check_pos_int(owner, "chips", self.chips)
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
        _check_pos(owner, "compute_flops", self.compute_flops)
        if isinstance(self.efficiency, bool) or not isinstance(self.efficiency, (int, float)) or not 0 < self.efficiency <= 1:
            raise ConfigError(f"{owner}.efficiency: got {self.efficiency!r}, expected 0 < efficiency <= 1")
        if self.power_w is not None:
            _check_pos(owner, "power_w", self.power_w)
        if not isinstance(self.unit, str) or not isinstance(self.notes, str):
            raise ConfigError(f"{owner}.unit/notes: got {self.unit!r}/{self.notes!r}, expected strings")
        if self.model is not None and not isinstance(self.model, ModelSpec):
            raise ConfigError(f"{owner}.model: got {self.model!r}, expected a ModelSpec or None")
        if self.weights_bytes_per_param not in (1, 2, 4):
            raise ConfigError(
                f"{owner}.weights_bytes_per_param: got {self.weights_bytes_per_param!r}, expected 1 (fp8), 2 (bf16) or 4"
            )
        _check_estimates(owner, self, ("compute_flops", "power_w", "efficiency"))
        _sources(owner, self.sources)
        if self.weights_bytes > self.weights_tier.capacity_bytes:
            raise ConfigError(
                f"{owner}: weights of {self.model.name} need {self.weights_bytes / 1e9:.1f} GB "
                f"({self.weights_bytes_per_param} B/param) but {self.weights_tier.name!r} holds "
                f"{self.weights_tier.capacity_bytes / 1e9:.1f} GB on {self.chips} chip(s); expected weights to fit "
                "(more chips or fp8 weights)"
            )

    # -- weights and capacity -------------------------------------------------------------

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
        """The FLOP/s a prefill runs at: ``compute_flops x efficiency``."""
        return self.compute_flops * self.efficiency

    # -- links ----------------------------------------------------------------------------

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
        if isinstance(tier_index, bool) or not isinstance(tier_index, (int, np.integer)) or not 0 <= tier_index < len(self.tiers):
            raise ConfigError(f"tier_index: got {tier_index!r}, expected 0 <= i < {len(self.tiers)} ({self.name})")
        return int(tier_index)

    def tier_specs(self, *, capacity_scale: float = 1.0, flash_path=None, **overrides) -> list:
        """``TierSpec`` values for a ``TieredStore`` with this target's tier chain, in
        ``tiers`` order (so ``lookup()`` indices are planner indices): KV capacity after
        weights times ``capacity_scale`` (to fit a laptop), bandwidth and latency of each
        tier's path to the compute tier. ``flash_path`` is required when a tier is flash;
        ``overrides`` (codec, policy, ...) apply to every tier."""
        from kvtier.tiers.spec import TierSpec

        if not isinstance(capacity_scale, (int, float)) or isinstance(capacity_scale, bool) or not capacity_scale > 0:
            raise ConfigError(f"capacity_scale: got {capacity_scale!r}, expected a number > 0")
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

    # -- construction ---------------------------------------------------------------------

    def with_model(self, model: ModelSpec | str | None, *, weights_bytes_per_param: int | None = None) -> "HardwareTarget":
        """This target with ``model``'s weights placed (``ConfigError`` if they do not fit)."""
        model = _as_model(model)
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
        efficiency: float = DEFAULT_EFFICIENCY,
    ) -> "HardwareTarget":
        """A named preset (``target_names()``), optionally with ``model``'s weights placed.

        Per-chip presets (``h100``, ``h200``, ``b200``, ``etched-sohu``, ``matx-one``,
        ``cerebras-cs3``) scale to ``chips``; by default 1 without a model, else the
        smallest power of two whose weight memory holds the weights (tensor-parallel
        degrees are powers of two). System presets have a fixed size and refuse ``chips``.
        ``weights_bytes_per_param`` defaults to the preset's (2 = bf16; 1 on Groq).
        """
        try:
            p = _PRESETS[name]
        except KeyError:
            raise UnknownNameError(f"target: got {name!r}, expected one of {target_names()}") from None
        model = _as_model(model)
        wb = p.weights_bytes_per_param if weights_bytes_per_param is None else weights_bytes_per_param
        if p.fixed_chips is not None:
            if chips is not None and chips != p.fixed_chips:
                raise ConfigError(f"chips: got {chips!r}, expected None or {p.fixed_chips} (target {name!r} is a fixed system)")
            n = p.fixed_chips
        elif chips is not None:
            _check_pos_int("HardwareTarget.preset", "chips", chips)
            n = int(chips)
        elif model is None:
            n = 1
        else:
            n = _chips_to_fit(p, model, wb)
        base = p.build(n)
        return dataclasses.replace(base, model=model, weights_bytes_per_param=wb, efficiency=efficiency)

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


def _as_model(model) -> ModelSpec | None:
    if model is None or isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        return ModelSpec.preset(model)
    raise ConfigError(f"model: got {model!r}, expected a ModelSpec, a preset name or None")


# ---------------------------------------------------------------------------------------
# presets, built from hardware.json
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Preset:
    build: Callable[[int], HardwareTarget]  # chips -> the target without a model
    fixed_chips: int | None
    weights_bytes_per_param: int = 2


def _hw() -> dict:
    return hardware_data()


def _tier_json(target_key: str, tier_name: str) -> dict:
    for t in _hw()["targets"][target_key]["tiers"]:
        if t["name"] == tier_name:
            return t
    raise KeyError(f"{target_key}/{tier_name}")  # pragma: no cover - data file is fixed


# Latency ranges for the kinds of path hardware.json's latency_note estimates.
_LAT_RANGES = {
    "sram": (0.5e-9, 2e-9, "about one clock (hardware.json latency_note); clock 0.5-2 GHz"),
    "hbm": (300e-9, 1e-6, "HBM first-byte latency ~600 ns (hardware.json latency_note)"),
    "dram": (50e-9, 200e-9, "local DDR5/LPDDR5X < 100 ns (ddr5, cxl)"),
    "pcie": (1e-6, 10e-6, "PCIe DMA setup ~1-5 us (hardware.json latency_note)"),
    "c2c": (0.5e-6, 5e-6, "NVLink-C2C DMA ~1 us (hardware.json latency_note)"),
    "nvme": (50e-6, 120e-6, "NVMe read 60-100 us (hardware.json latency_note)"),
    "icms": (50e-6, 500e-6, "NVMe-oF flash over Spectrum-X RDMA ~100 us (hardware.json latency_note)"),
    "memoryx": (5e-6, 100e-6, "MemoryX over Ethernet ~20 us (hardware.json latency_note)"),
    "rdma": (1e-6, 10e-6, "RDMA ~3 us (hardware.json latency_note)"),
}


def _lat_est(kind: str, value: float) -> Estimate:
    low, high, why = _LAT_RANGES[kind]
    return _est("latency_s", min(low, value), max(high, value), why)


def _tier(name, kind, entry, *, link=None, capacity=None, read=None, write=None, latency=None,
          lat_kind=None, estimates=(), sources=(), note=None) -> TargetTier:
    """A TargetTier from a hardware.json tier entry, overriding what the entry lacks."""
    cap = entry.get("capacity_bytes") if capacity is None else capacity
    rd = entry.get("read_bw_bytes_per_s") if read is None else read
    wr = entry.get("write_bw_bytes_per_s") if write is None else write
    lat = entry.get("latency_s") if latency is None else latency
    est = list(estimates)
    if lat_kind is not None and not any(e.field == "latency_s" for e in est):
        est.append(_lat_est(lat_kind, lat))
    return TargetTier(
        name=name, kind=kind, capacity_bytes=int(cap), read_bw_bytes_per_s=float(rd), write_bw_bytes_per_s=float(wr),
        latency_s=float(lat), link=link, note=entry.get("note", "") if note is None else note,
        estimates=tuple(est), sources=tuple(sources),
    )


def _pcie5_link(per_chip_note: str = "one PCIe Gen5 x16 per GPU") -> LinkSpec:
    g = _hw()["generic_tiers"]["pcie_gen5_x16"]
    return LinkSpec(
        name="pcie5", read_bw_bytes_per_s=g["read_bw_bytes_per_s"], write_bw_bytes_per_s=g["write_bw_bytes_per_s"],
        latency_s=g["latency_s"], note=f"{per_chip_note}; {g['note']}", estimates=(_lat_est("pcie", g["latency_s"]),),
        sources=("pcie5", "h100_gk"),
    )


def _ddr5_latency() -> float:
    return _hw()["generic_tiers"]["ddr5_socket_12ch_4800"]["latency_s"]


def _host_dram(entry: dict, *, capacity=None, cap_est: Estimate | None = None, sources=("hgx_node",)) -> TargetTier:
    # hardware.json's "host_dram_via_pcie5_x16" bandwidth is the PCIe bound; its latency is
    # the DMA setup, which the link charges, so the memory keeps DDR5's own latency.
    return _tier(
        "host_dram", "dram", entry, link="pcie5", capacity=capacity, latency=_ddr5_latency(), lat_kind="dram",
        estimates=(cap_est,) if cap_est else (), sources=sources,
    )


def _nvme_per_chip(link: str) -> TargetTier:
    g = _hw()["generic_tiers"]
    n4, n5, n6 = g["nvme_gen4_ssd"], g["nvme_gen5_ssd"], g["nvme_gen6_ssd"]
    why = "assumed one Gen5 SSD (Micron 9550) per chip; range spans one Gen4 (PM9A3) to one Gen6 (Micron 9650) drive"
    return _tier(
        "nvme", "flash", n5, link=link,
        estimates=(
            _est("capacity_bytes", n4["capacity_bytes"], n6["capacity_bytes"], why),
            _est("read_bw_bytes_per_s", n4["read_bw_bytes_per_s"], n6["read_bw_bytes_per_s"], why),
            _est("write_bw_bytes_per_s", n4["write_bw_bytes_per_s"], n6["write_bw_bytes_per_s"], why),
        ),
        sources=("nvme5", "nvme4", "nvme6"), note="local NVMe, " + n5["note"],
    )


def _scale_target(t: HardwareTarget, n: int, *, shared_tiers: tuple[str, ...] = ()) -> HardwareTarget:
    """A per-chip target on ``n`` chips; tiers named in ``shared_tiers`` keep their capacity."""
    est = tuple(e.scaled(n) if e.field in ("compute_flops", "power_w") else e for e in t.estimates)
    return dataclasses.replace(
        t,
        chips=n,
        tiers=tuple(x.times(n, capacity=x.name not in shared_tiers) for x in t.tiers),
        links=tuple(k.times(n) for k in t.links),
        weights_memory=t.weights_memory.times(n) if t.weights_memory else None,
        compute_flops=t.compute_flops * n,
        power_w=None if t.power_w is None else t.power_w * n,
        estimates=est,
    )


def _cerebras(name: str, chips: int) -> HardwareTarget:
    j = _hw()["targets"]["cerebras_cs3"]
    sram = _tier("wafer_sram", "sram", _tier_json("cerebras_cs3", "wafer_sram"), lat_kind="sram", sources=("cs3_alcf",))
    mx_entry = _tier_json("cerebras_cs3", "memoryx_dram_flash")
    memx = _tier(
        "memoryx", "dram", mx_entry, link="memoryx_io", lat_kind="memoryx", sources=("cs3_toms", "cs3_memx_semiwiki"),
        note="MemoryX DDR5+flash appliance (largest option; shared, so it does not grow with wafers). " + mx_entry["note"],
    )
    io = LinkSpec(
        name="memoryx_io", read_bw_bytes_per_s=j["interconnect"]["system_io_bytes_per_s"],
        write_bw_bytes_per_s=j["interconnect"]["system_io_bytes_per_s"], latency_s=0.0,
        note="CS-3 system I/O 1.2 Tb/s (12x100 GbE) per wafer; MemoryX latency is charged by the tier",
        sources=("cs3_alcf",),
    )
    per = HardwareTarget(
        name=name, unit=j["unit"], chips=1, tiers=(sram, memx), links=(io,),
        compute_flops=j["compute_flops_bf16"], power_w=j["power_w"],
        estimates=(
            _est("compute_flops", 12.5e15, 62.5e15,
                 "dense BF16 = 900k cores x 8-wide FP16 SIMD x 2 x ~1.1 GHz ~= 125 PF sparse claim / 8; range: the "
                 "125 PF claim being 10x (low) to 2x (high, as NVIDIA's sparsity) the dense rate"),
            _est("power_w", 20e3, 25e3, "third-party ~23 kW per CS-3 (cs3_power)"),
        ),
        notes=j["notes"], sources=tuple(j["source"]),
    )
    out = _scale_target(per, chips, shared_tiers=("memoryx",))
    if chips == 4:
        x4 = _hw()["targets"]["cerebras_cs3_x4_llama70b"]
        out = dataclasses.replace(out, unit=x4["unit"], notes=x4["notes"],
                                  sources=tuple(dict.fromkeys((*x4["source"], *out.sources))))
    return out


def _groq576(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["groq_system_576_llama2_70b"]
    chip = _hw()["targets"]["groq_lpu_v1"]
    sram = _tier("sram", "sram", _tier_json("groq_system_576_llama2_70b", "sram"), lat_kind="sram", sources=("groq_tpu",))
    host_entry = _tier_json("groq_lpu_v1", "host_dram_via_pcie4_x16")
    nodes = chips // 8
    per_node = 512e9
    host = _tier(
        "host_dram", "dram", host_entry, link="pcie4", capacity=int(nodes * per_node), latency=_ddr5_latency(),
        lat_kind="dram", read=host_entry["read_bw_bytes_per_s"] * chips, write=host_entry["write_bw_bytes_per_s"] * chips,
        estimates=(_est("capacity_bytes", nodes * 256e9, nodes * 4e12,
                        "host DRAM size not public: assumed 512 GB per 8-card GroqNode (2x AMD Rome), range 256 GB-4 TB"),),
        sources=("groq_linley",), note="host DRAM of the GroqNodes, reached over each card's PCIe Gen4 x16",
    )
    link = LinkSpec(
        name="pcie4", read_bw_bytes_per_s=host_entry["read_bw_bytes_per_s"],
        write_bw_bytes_per_s=host_entry["write_bw_bytes_per_s"], latency_s=host_entry["latency_s"],
        note="one PCIe Gen4 x16 host port per card", estimates=(_lat_est("pcie", host_entry["latency_s"]),),
        sources=("groq_linley",),
    ).times(chips)
    return HardwareTarget(
        name="groq-lpu-576", unit=j["unit"], chips=chips, tiers=(sram, host), links=(link,),
        compute_flops=j["compute_flops_bf16"], power_w=j["power_w"],
        estimates=(_est("power_w", chips * 200.0, chips * 400.0, "~300 W per LPU v1 card (groq_isopack), +-33%"),),
        notes=j["notes"] + " Compute is the FP16 figure (no BF16 published). Weights default to FP8 (hardware.md §4). "
        + chip["notes"],
        sources=tuple(dict.fromkeys((*j["source"], *chip["source"]))),
    )


def _groq3_lpx(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["groq3_lpx_rack"]
    sram_e = _tier_json("groq3_lpx_rack", "sram")
    sram = _tier("sram", "sram", sram_e, latency=1e-9, lat_kind="sram", sources=("groq3",),
                 note="256 x 512 MB LP30 SRAM; latency not public")
    fp8 = j["compute_flops_fp8"]
    return HardwareTarget(
        name="groq3-lpx", unit=j["unit"], chips=chips, tiers=(sram,), links=(),
        compute_flops=fp8 / 2,
        estimates=(_est("compute_flops", fp8 / 4, fp8, "BF16 not published: assumed FP8/2 (315 PF FP8 per rack)"),),
        notes=j["notes"] + " No host or flash tier is public (paired with Vera Rubin NVL72 for prefill). Weights default to "
        "FP8 (assumption: LP30 publishes FP8 compute only).",
        sources=tuple(j["source"]),
    )


def _nvidia_gpu(name: str, key: str, hbm_name: str, chips: int, *, hbm_capacity=None, host_cap_est=False) -> HardwareTarget:
    j = _hw()["targets"][key]
    hbm_e = _tier_json(key, hbm_name)
    hbm = _tier("hbm", "hbm", hbm_e, capacity=hbm_capacity, lat_kind="hbm", sources=tuple(j["source"]))
    host_e = _tier_json(key, "host_dram_via_pcie5_x16")
    if host_cap_est:
        host = _host_dram(host_e, capacity=250e9, cap_est=_est(
            "capacity_bytes", 125e9, 500e9,
            "host DRAM not given: assumed an HGX node's 2 TB DDR5 shared by 8 GPUs, as H100/H200 (hgx_node); range 1-4 TB"))
    else:
        host = _host_dram(host_e, cap_est=None)
    per = HardwareTarget(
        name=name, unit=j["unit"], chips=1, tiers=(hbm, host, _nvme_per_chip("pcie5")), links=(_pcie5_link(),),
        compute_flops=j["compute_flops_bf16"], power_w=j.get("power_w"), notes=j.get("notes", ""),
        sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


def _h100(chips: int) -> HardwareTarget:
    return _nvidia_gpu("h100", "nvidia_h100_sxm", "hbm3", chips)


def _h200(chips: int) -> HardwareTarget:
    return _nvidia_gpu("h200", "nvidia_h200", "hbm3e", chips)


def _b200(chips: int) -> HardwareTarget:
    # 178 GB of the 180 GB are usable (b200_ao: device query), so that is what KV can use.
    return _nvidia_gpu("b200", "nvidia_b200_hgx", "hbm3e", chips, hbm_capacity=178e9, host_cap_est=True)


def _c2c_link(per_dir: float, count: int, *, est: Estimate | None, note: str, sources) -> LinkSpec:
    lat = _hw()["generic_tiers"]["nvlink_c2c_grace"]["latency_s"]
    ests = [_lat_est("c2c", lat)]
    if est is not None:
        ests += [est, dataclasses.replace(est, field="write_bw_bytes_per_s")]
    return LinkSpec(name="nvlink_c2c", read_bw_bytes_per_s=per_dir, write_bw_bytes_per_s=per_dir, latency_s=lat,
                    note=note, estimates=tuple(ests), sources=tuple(sources)).times(count)


def _rack_nvme(chips: int) -> TargetTier:
    return _nvme_per_chip("nvlink_c2c").times(chips)


def _gb200(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["nvidia_gb200_nvl72"]
    hbm = _tier("hbm", "hbm", _tier_json("nvidia_gb200_nvl72", "hbm3e"), lat_kind="hbm", sources=("gb200",))
    grace_e = _tier_json("nvidia_gb200_nvl72", "grace_lpddr5x_via_nvlink_c2c")
    grace = _tier("grace_dram", "dram", grace_e, link="nvlink_c2c", latency=_ddr5_latency(), lat_kind="dram",
                  sources=("grace",))
    c2c_e = _hw()["generic_tiers"]["nvlink_c2c_grace"]
    link = _c2c_link(c2c_e["read_bw_bytes_per_s"], chips // 2, est=None, sources=("grace",),
                     note="NVLink-C2C 450 GB/s/dir per Grace (one Grace per 2 GPUs); NVMe shares it (assumption)")
    return HardwareTarget(
        name="gb200-nvl72", unit=j["unit"], chips=chips, tiers=(hbm, grace, _rack_nvme(chips)), links=(link,),
        compute_flops=j["compute_flops_bf16"], power_w=j["power_w"],
        estimates=(_est("power_w", 100e3, 140e3, "~120 kW per rack (gb200), +-1/6"),),
        notes=j["notes"], sources=tuple(j["source"]),
    )


def _vera_rubin(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["nvidia_vr_nvl72"]
    hbm = _tier("hbm", "hbm", _tier_json("nvidia_vr_nvl72", "hbm4"), lat_kind="hbm", sources=("rubin",))
    vera_e = _tier_json("nvidia_vr_nvl72", "vera_lpddr5x_via_nvlink_c2c")
    vera = _tier("vera_dram", "dram", vera_e, link="nvlink_c2c", latency=_ddr5_latency(), lat_kind="dram",
                 sources=("rubin",))
    c2c_total = j["interconnect"]["nvlink_c2c_bytes_per_s"]
    c2c_est = _est("read_bw_bytes_per_s", c2c_total / 2, c2c_total,
                   "Vera NVLink-C2C 1.8 TB/s read as bidirectional like Grace's 900 GB/s (0.9 TB/s per direction); "
                   "high end if 1.8 TB/s is per direction")
    link = _c2c_link(c2c_total / 2, chips // 2, est=c2c_est, sources=("rubin",),
                     note="NVLink-C2C per Vera (one Vera per 2 GPUs)")
    icms_e = _tier_json("nvidia_icms", "icms_flash")
    bw = icms_e["read_bw_bytes_per_s"] * chips
    icms = _tier(
        "icms", "flash", icms_e, link="bluefield4", capacity=_tier_json("nvidia_vr_nvl72", "icms_flash_g3_5")["capacity_bytes"],
        read=bw, write=bw, lat_kind="icms", sources=("icms_nv", "icms_nand", "icms_16tb", "bf4"),
        estimates=(
            _est("read_bw_bytes_per_s", bw / 2, bw * 2,
                 "one 100 GB/s BlueField-4 per 4-GPU tray = 25 GB/s per GPU (icms est); range x0.5-x2"),
            _est("write_bw_bytes_per_s", bw / 2, bw * 2, "writes assumed as fast as reads: 25 GB/s per GPU (icms est); range x0.5-x2"),
        ),
        note="NVIDIA context-memory flash (ICMS, G3.5): +16 TB per GPU; " + icms_e["note"],
    )
    rdma = _hw()["generic_tiers"]["rdma_nic_400g"]
    bf4 = LinkSpec(
        name="bluefield4", read_bw_bytes_per_s=100e9, write_bw_bytes_per_s=100e9, latency_s=rdma["latency_s"],
        note="800 Gb/s BlueField-4 per 4-GPU compute tray (bf4); RDMA latency est",
        estimates=(_lat_est("rdma", rdma["latency_s"]),), sources=("bf4", "cx7"),
    ).times(chips // 4)
    flops = j["compute_flops_bf16"]
    return HardwareTarget(
        name="vera-rubin-nvl72", unit=j["unit"], chips=chips, tiers=(hbm, vera, icms), links=(link, bf4),
        compute_flops=flops,
        estimates=(_est("compute_flops", flops / 2, chips * 12.5e15,
                        "BF16 not published: 1.2 EF FP8 per rack / 72 / 2 = 8.3 PF per GPU (low confidence); range: "
                        "half that to NVFP4 50 PF / 4"),),
        notes=j["notes"], sources=tuple(dict.fromkeys((*j["source"], "icms_nv", "icms_nand", "bf4"))),
    )


def _host_dram_assumed(name_note: str) -> TargetTier:
    host_e = _tier_json("nvidia_h100_sxm", "host_dram_via_pcie5_x16")
    t = _host_dram(host_e, cap_est=_est(
        "capacity_bytes", 125e9, 500e9, f"{name_note}: assumed an HGX-like host, 2 TB DDR5 per 8 chips over PCIe Gen5 "
        "(hgx_node); range 1-4 TB per 8 chips"))
    why = f"{name_note}: assumed PCIe Gen5 x16 bound as on HGX; low = Gen4"
    return dataclasses.replace(t, estimates=(*t.estimates, _est("read_bw_bytes_per_s", 32e9, 64e9, why),
                                             _est("write_bw_bytes_per_s", 32e9, 64e9, why)))


def _sohu(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["etched_sohu"]
    hbm_e = _tier_json("etched_sohu", "hbm3e")
    hbm = _tier("hbm", "hbm", hbm_e, lat_kind="hbm", sources=("sohu",), estimates=(
        _est("read_bw_bytes_per_s", 4.8e12, 8e12, "third-party estimate 6.03 TB/s (sohu); range HBM3e at 4.8-8 TB/s"),
        _est("write_bw_bytes_per_s", 4.8e12, 8e12, "third-party estimate 6.03 TB/s (sohu), taken for writes as well"),
    ))
    host = _host_dram_assumed("Etched host not public")
    pcie = _pcie5_link("assumed: one PCIe Gen5 x16 per chip (not public)")
    pcie = dataclasses.replace(pcie, estimates=(*pcie.estimates,
                                                _est("read_bw_bytes_per_s", 32e9, 64e9, "assumed PCIe Gen5 x16; low = Gen4"),
                                                _est("write_bw_bytes_per_s", 32e9, 64e9, "assumed PCIe Gen5 x16; low = Gen4")))
    flops = 500e3 * 2 * 70.6e9 / 8
    per = HardwareTarget(
        name="etched-sohu", unit=j["unit"], chips=1, tiers=(hbm, host), links=(pcie,),
        compute_flops=flops,
        estimates=(_est("compute_flops", flops / 2, 160 * 989e12 / 8,
                        "not public: the claim 8 chips > 500k tok/s Llama-70B FP8 implies 500k x 2 x 70.6e9 / 8 = "
                        "8.8 PF/chip sustained, taken as peak; range: half that to '= 160 H100' x 989 TF / 8"),),
        notes=j["notes"], sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


def _matx(chips: int) -> HardwareTarget:
    j = _hw()["targets"]["matx_one"]
    lat = _LAT_RANGES
    sram = TargetTier(
        name="sram", kind="sram", capacity_bytes=int(0.5e9), read_bw_bytes_per_s=150e12, write_bw_bytes_per_s=150e12,
        latency_s=1e-9, note="holds the weights only (matx); size not public",
        estimates=(
            _est("capacity_bytes", 0.25e9, 1e9, "not public: assumed 512 MB per chip like a Groq LP30 (2026 SRAM chip)"),
            _est("read_bw_bytes_per_s", 75e12, 300e12, "not public: assumed 150 TB/s per chip like a Groq LP30"),
            _est("write_bw_bytes_per_s", 75e12, 300e12, "not public: assumed 150 TB/s per chip like a Groq LP30"),
            _est("latency_s", lat["sram"][0], lat["sram"][1], lat["sram"][2]),
        ),
        sources=("matx", "groq3"),
    )
    hbm = TargetTier(
        name="hbm", kind="hbm", capacity_bytes=int(144e9), read_bw_bytes_per_s=6e12, write_bw_bytes_per_s=6e12,
        latency_s=6e-7, note="holds the KV cache (matx); size not public",
        estimates=(
            _est("capacity_bytes", 96e9, 288e9, "not public: assumed 144 GB HBM3e per chip (an Etched-Sohu-like part)"),
            _est("read_bw_bytes_per_s", 4e12, 8e12, "not public: assumed 6 TB/s HBM3e per chip"),
            _est("write_bw_bytes_per_s", 4e12, 8e12, "not public: assumed 6 TB/s HBM3e per chip"),
            _est("latency_s", lat["hbm"][0], lat["hbm"][1], lat["hbm"][2]),
        ),
        sources=("matx", "sohu"),
    )
    host = _host_dram_assumed("MatX host not public")
    pcie = _pcie5_link("assumed: one PCIe Gen5 x16 per chip (not public)")
    pcie = dataclasses.replace(pcie, estimates=(*pcie.estimates,
                                                _est("read_bw_bytes_per_s", 32e9, 64e9, "assumed PCIe Gen5 x16; low = Gen4"),
                                                _est("write_bw_bytes_per_s", 32e9, 64e9, "assumed PCIe Gen5 x16; low = Gen4")))
    per = HardwareTarget(
        name="matx-one", unit=j["unit"], chips=1, tiers=(hbm, host), links=(pcie,), weights_memory=sram,
        compute_flops=2.5e15,
        estimates=(_est("compute_flops", 1.25e15, 5e15, "not public: assumed 2.5 PF dense BF16 per chip (B200/MI355X class)"),),
        notes=j["notes"] + " Every figure here is an assumption (see estimates).", sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


_PRESETS: dict[str, _Preset] = {
    "cerebras-cs3": _Preset(lambda n: _cerebras("cerebras-cs3", n), None),
    "cerebras-cs3x4": _Preset(lambda n: _cerebras("cerebras-cs3x4", n), 4),
    "groq-lpu-576": _Preset(_groq576, 576, weights_bytes_per_param=1),
    "groq3-lpx": _Preset(_groq3_lpx, 256, weights_bytes_per_param=1),
    "h100": _Preset(_h100, None),
    "h200": _Preset(_h200, None),
    "b200": _Preset(_b200, None),
    "gb200-nvl72": _Preset(_gb200, 72),
    "vera-rubin-nvl72": _Preset(_vera_rubin, 72),
    "etched-sohu": _Preset(_sohu, None),
    "matx-one": _Preset(_matx, None),
}


def target_names() -> list[str]:
    """Names accepted by ``HardwareTarget.preset``, in the order the issue lists them."""
    return list(_PRESETS)


_MAX_CHIPS = 1 << 16


def _chips_to_fit(p: _Preset, model: ModelSpec, wb: int) -> int:
    need = weights_bytes(model, wb)
    per_chip = p.build(1).weights_tier.capacity_bytes
    n = 1
    while n * per_chip < need:
        n *= 2
        if n > _MAX_CHIPS:
            raise ConfigError(f"chips: {model.name} weights ({need / 1e9:.0f} GB) need more than {_MAX_CHIPS} chips")
    return n


# ---------------------------------------------------------------------------------------
# user files
# ---------------------------------------------------------------------------------------

_TOP_FIELDS = {"name", "unit", "chips", "tiers", "links", "compute_flops", "efficiency", "power_w", "weights_memory",
               "model", "weights_bytes_per_param", "notes", "estimates", "sources"}
_TIER_FIELDS = {f.name for f in dataclasses.fields(TargetTier)}
_LINK_FIELDS = {f.name for f in dataclasses.fields(LinkSpec)}
_EST_FIELDS = {"field", "low", "high", "assumption"}


def load_target(path, *, model: ModelSpec | str | None = None) -> HardwareTarget:
    """A ``HardwareTarget`` from a TOML (``.toml``) or JSON file with the same fields.

    Top level: ``name``, ``compute_flops``, ``tiers`` (fastest first; ``tiers[0]`` is the
    compute tier) and optionally ``unit``, ``chips``, ``links``, ``efficiency``,
    ``power_w``, ``weights_memory``, ``model`` (a preset name; ``model=`` overrides it),
    ``weights_bytes_per_param``, ``notes``, ``sources`` and ``estimates``. Tiers, links and
    ``weights_memory`` take their dataclass fields; ``estimates`` are tables with
    ``field``, ``low``, ``high``, ``assumption``. Figures are totals over all chips.
    Unknown or invalid fields raise ``ConfigError`` naming the field and the file.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read target file ({e.strerror})") from None
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise ConfigError(f"{p}: got suffix {p.suffix!r}, expected .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid {p.suffix[1:].upper()}: {e}") from None
    try:
        return target_from_dict(data, model=model)
    except ConfigError as e:
        raise type(e)(f"{p}: {e}") from None


def target_from_dict(data: dict, *, model: ModelSpec | str | None = None) -> HardwareTarget:
    """``load_target`` for already-parsed data (the same fields)."""
    if not isinstance(data, dict):
        raise ConfigError(f"target: got {type(data).__name__}, expected a table of fields")
    _no_unknown("target", data, _TOP_FIELDS)
    for req in ("name", "compute_flops", "tiers"):
        if req not in data:
            raise ConfigError(f"{req}: missing, expected a value")
    if not isinstance(data["tiers"], list) or not data["tiers"]:
        raise ConfigError(f"tiers: got {data['tiers']!r}, expected a non-empty list of tier tables")
    kw = {k: v for k, v in data.items() if k not in ("tiers", "links", "weights_memory", "estimates", "sources", "model")}
    kw["tiers"] = tuple(_part(TargetTier, f"tiers[{i}]", t, _TIER_FIELDS) for i, t in enumerate(data["tiers"]))
    links = data.get("links", [])
    if not isinstance(links, list):
        raise ConfigError(f"links: got {links!r}, expected a list of link tables")
    kw["links"] = tuple(_part(LinkSpec, f"links[{i}]", k, _LINK_FIELDS) for i, k in enumerate(links))
    if data.get("weights_memory") is not None:
        kw["weights_memory"] = _part(TargetTier, "weights_memory", data["weights_memory"], _TIER_FIELDS)
    kw["estimates"] = _estimates("estimates", data.get("estimates", []))
    kw["sources"] = _str_tuple("sources", data.get("sources", []))
    if "chips" in kw:
        kw["chips"] = _int_field("chips", kw["chips"])
    if "weights_bytes_per_param" in kw:
        kw["weights_bytes_per_param"] = _int_field("weights_bytes_per_param", kw["weights_bytes_per_param"])
    kw["model"] = _as_model(model if model is not None else data.get("model"))
    try:
        return HardwareTarget(**kw)
    except TypeError as e:  # pragma: no cover - fields are checked above
        raise ConfigError(f"target: {e}") from None


def _no_unknown(where: str, d, allowed: set[str]) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: got {d!r}, expected a table")
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}: unknown field, expected one of {sorted(allowed)}")


def _int_field(where: str, v) -> int:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}: got {v!r}, expected an integer")
    return v


def _str_tuple(where: str, v) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ConfigError(f"{where}: got {v!r}, expected a list of strings")
    return tuple(v)


def _estimates(where: str, v) -> tuple[Estimate, ...]:
    if not isinstance(v, list):
        raise ConfigError(f"{where}: got {v!r}, expected a list of estimate tables")
    out = []
    for i, e in enumerate(v):
        _no_unknown(f"{where}[{i}]", e, _EST_FIELDS)
        missing = _EST_FIELDS - set(e)
        if missing:
            raise ConfigError(f"{where}[{i}]: missing {sorted(missing)}, expected field, low, high, assumption")
        try:
            out.append(Estimate(**e))
        except ConfigError as err:
            raise ConfigError(f"{where}[{i}]: {err}") from None
    return tuple(out)


def _part(cls, where: str, d, allowed: set[str]):
    _no_unknown(where, d, allowed)
    kw = dict(d)
    if "capacity_bytes" in kw:
        kw["capacity_bytes"] = _int_field(f"{where}.capacity_bytes", kw["capacity_bytes"])
    if "count" in kw:
        kw["count"] = _int_field(f"{where}.count", kw["count"])
    kw["estimates"] = _estimates(f"{where}.estimates", d.get("estimates", []))
    kw["sources"] = _str_tuple(f"{where}.sources", d.get("sources", []))
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    except ConfigError as e:
        raise type(e)(f"{where}: {e}") from None
