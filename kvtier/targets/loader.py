"""User-defined targets: a ``HardwareTarget`` from a TOML or JSON file (``load_target``).

The file holds the same fields as the dataclasses (``HardwareTarget``, ``TargetTier``,
``LinkSpec``, ``Estimate``); figures are totals over all chips. ``kvtier targets --file
PATH`` lists such a target, and ``HardwareTarget.to_dict(derived=False)`` writes one.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.targets.deployment import Deployment
from kvtier.targets.spec import TIME_PARTS, Estimate, HardwareTarget, LinkSpec, TargetTier, as_model
from kvtier.validation import check_int

_TOP_FIELDS = {"name", "unit", "chips", "tiers", "links", "compute_flops", *TIME_PARTS, "family", "deployment",
               "power_w", "weights_memory", "model", "weights_bytes_per_param", "notes", "estimates", "sources"}
_DEPLOYMENT_FIELDS = {"tp", "pp", "replicas", "estimate", "note"}
_TIER_FIELDS = {f.name for f in dataclasses.fields(TargetTier)}
_LINK_FIELDS = {f.name for f in dataclasses.fields(LinkSpec)}
_EST_FIELDS = {"field", "low", "high", "assumption"}


def load_target(path, *, model: ModelSpec | str | None = None) -> HardwareTarget:
    """A ``HardwareTarget`` from a TOML (``.toml``) or JSON file with the same fields.

    Top level: ``name``, ``compute_flops``, ``tiers`` (fastest first; ``tiers[0]`` is the
    compute tier) and optionally ``unit``, ``chips``, ``links``, ``efficiency``,
    the time-model parts (``TIME_PARTS``), ``family``, ``deployment`` (a table of
    ``tp``, ``pp``, ``replicas``), ``power_w``, ``weights_memory``, ``model`` (a preset name; ``model=`` overrides it),
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
    kw = {k: v for k, v in data.items()
          if k not in ("tiers", "links", "weights_memory", "estimates", "sources", "model", "deployment")}
    if data.get("deployment") is not None:
        _no_unknown("deployment", data["deployment"], _DEPLOYMENT_FIELDS)
        kw["deployment"] = Deployment(**data["deployment"])
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
    kw["model"] = as_model(model if model is not None else data.get("model"))
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
    # TOML and JSON write 640e9 as a float; a whole float is the integer it spells.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return check_int(v, where, minimum=None)


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
