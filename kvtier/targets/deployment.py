"""How a target's chips serve a model: data-parallel replicas of ``tp x pp`` chips.

Serving engines (vLLM, SGLang, TensorRT-LLM) run a model as *replicas*: each is a group of
``tp x pp`` chips with its own copy of the weights, its own scheduler and its own share of
the KV tiers, and a router spreads requests over them. Inside a replica, tensor
parallelism (``tp``) splits every layer across chips, so their bandwidth and compute add
for every token; pipeline parallelism (``pp``) gives each stage a slice of the layers, so
a token passes the stages in turn: stages add throughput (several micro-batches in
flight), not per-token speed, and a stage reads streamed KV over its own chips' links.

``Deployment(tp=8)`` is one 8-way tensor-parallel replica; ``replicas=0`` (the default)
means as many as the target's chips hold. Presets carry the deployment each vendor runs
(``assumptions.json`` ``deployments``, with reasons and sources; flagged ``estimate`` where
the split is not public). ``HardwareTarget.replica()`` is the target one replica sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvtier.errors import ConfigError
from kvtier.validation import check_bool, check_int

#: Bytes per element of the precisions a deployment can hold weights and KV in.
PRECISION_BYTES = {"bf16": 2, "fp8": 1}


def precision_bytes(name: str, where: str) -> int:
    """Bytes per element of precision ``name`` (``bf16``, ``fp8``)."""
    if name not in PRECISION_BYTES:
        raise ConfigError(f"{where}: got {name!r}, expected one of {sorted(PRECISION_BYTES)}")
    return PRECISION_BYTES[name]


def precision_name(num_bytes: int) -> str:
    for k, v in PRECISION_BYTES.items():
        if v == num_bytes:
            return k
    return f"{num_bytes}B"


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """``replicas`` copies of the model, each on ``tp x pp`` chips (``replicas=0``: as many
    as fit on the target). ``estimate`` marks a split that is not published; ``note``
    says where it comes from."""

    tp: int = 1
    pp: int = 1
    replicas: int = 0
    estimate: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        check_int(self.tp, "Deployment.tp")
        check_int(self.pp, "Deployment.pp")
        check_int(self.replicas, "Deployment.replicas", minimum=0)
        check_bool(self.estimate, "Deployment.estimate")
        if not isinstance(self.note, str):
            raise ConfigError(f"Deployment.note: got {self.note!r}, expected a string")

    @property
    def chips_per_replica(self) -> int:
        return self.tp * self.pp

    def num_replicas(self, chips: int) -> int:
        """Replicas on a target of ``chips`` chips; ``ConfigError`` if one does not fit."""
        per = self.chips_per_replica
        if per > chips:
            raise ConfigError(f"Deployment: tp x pp = {self.tp} x {self.pp} = {per} chips, but the target has {chips}")
        n = chips // per if self.replicas == 0 else self.replicas
        if n * per > chips:
            raise ConfigError(f"Deployment.replicas: got {self.replicas} replicas of {per} chips, but the target has "
                              f"{chips} chips")
        return n

    def describe(self, chips: int) -> str:
        """``"TP8 x PP1 x 9 replicas"``, with ``(est.)`` for an unpublished split."""
        n = self.num_replicas(chips)
        return (f"TP{self.tp} x PP{self.pp} x {n} replica{'s' if n != 1 else ''}"
                + (" (est.)" if self.estimate else ""))

    def as_dict(self) -> dict:
        return {"tp": self.tp, "pp": self.pp, "replicas": self.replicas, "estimate": self.estimate, "note": self.note}


__all__ = ["Deployment", "PRECISION_BYTES", "precision_bytes", "precision_name"]
