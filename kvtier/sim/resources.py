"""A ``HardwareTarget`` compiled into what the engine reads: one replica's resources.

The target's chips serve as ``target.serving`` says: replicas of ``tp x pp`` chips, each
with a whole copy of the weights and its share of every tier and link
(``HardwareTarget.replica``). Every replica is alike, so the engine reads one replica's
figures:

* tiers and links: tier ``t > 0`` reaches the compute tier over ``fetch_path(t)``
  (bandwidth ``min(tier, link)``, latency ``tier + link``), queued on the link it names,
  so tiers sharing a link share its queue; the compute tier's KV room is what the weights
  leave (``kv_capacity_bytes[0]``);
* the time model of a step (``kvtier.cost.stage_model``, ``batch_step_s``): per pipeline
  stage, ``tp`` chips' memory bandwidth at the family's ``bw_efficiency``, their compute at
  the GEMM and attention efficiencies, the tensor-parallel all-reduces, element-wise work
  and a fixed time per layer, and the next tier's path over the stage's own links (a
  stage streams its layers' KV over its chips' links, so ``pp`` stages do not add
  bandwidth for one token).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier.cost import StageModel, stage_model
from kvtier.errors import ConfigError
from kvtier.targets import HardwareTarget


class ReplicaArrays(NamedTuple):
    """One replica. Per tier (index = ``target.tiers`` index; entry 0 is the compute tier's
    own figures): read and write paths to the compute tier and their links; ``stage``:
    the step's time model (``kvtier.cost.stage_model``)."""

    tier_names: tuple[str, ...]
    link_names: tuple[str, ...]
    tier_bw: np.ndarray  # float64[T] read bytes/s of the path to the compute tier
    tier_lat: np.ndarray  # float64[T] s
    tier_link: np.ndarray  # int64[T] index into link_names; -1 for tier 0
    tier_wbw: np.ndarray  # float64[T] write bytes/s of the path
    tier_wlat: np.ndarray  # float64[T]
    kv_capacity_bytes: tuple[int, ...]  # per tier, one replica's KV room
    replicas: int
    tp: int
    pp: int
    stage: StageModel


def replica_arrays(target: HardwareTarget, *, layer_overhead_s: float | None = None) -> ReplicaArrays:
    """One replica of ``target`` (which must have a model placed) for the engine.
    ``layer_overhead_s`` overrides the family's ``decode_layer_overhead_s``."""
    if not isinstance(target, HardwareTarget):
        raise ConfigError(f"target: got {target!r}, expected a HardwareTarget")
    if target.model is None:
        raise ConfigError(f"target {target.name!r}: got no model, expected HardwareTarget.preset(name, model=...)")
    rep = target.replica()
    T = len(rep.tiers)
    link_names = tuple(k.name for k in rep.links)
    bw = np.zeros(T)
    lat = np.zeros(T)
    wbw = np.zeros(T)
    wlat = np.zeros(T)
    link = np.full(T, -1, dtype=np.int64)
    for t in range(T):
        p = rep.fetch_path(t)
        bw[t], lat[t] = p.read_bw_bytes_per_s, p.latency_s
        wbw[t], wlat[t] = p.write_bw_bytes_per_s, p.latency_s
        if t > 0:
            link[t] = link_names.index(rep.tiers[t].link)
    return ReplicaArrays(
        tier_names=tuple(x.name for x in rep.tiers), link_names=link_names, tier_bw=bw, tier_lat=lat,
        tier_link=link, tier_wbw=wbw, tier_wlat=wlat, kv_capacity_bytes=rep.kv_capacity_bytes,
        replicas=target.num_replicas, tp=rep.serving.tp, pp=rep.serving.pp,
        stage=stage_model(target, layer_overhead_s=layer_overhead_s),
    )
