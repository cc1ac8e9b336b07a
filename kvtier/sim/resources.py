"""A ``HardwareTarget`` compiled into the arrays the simulation kernel reads.

Resources: the compute engine (prefills take turns on it), and every link of the target in
two directions, read (toward the compute tier: fetches, streamed KV) and write (away from
it: demotions). Tier ``t > 0`` reaches the compute tier over ``target.fetch_path(t)``:
bandwidth ``min(tier, link)``, latency ``tier + link``, queued on the link it names, so
tiers sharing a link share its queue. The compute tier's KV room is
``target.kv_capacity_bytes[0]`` (capacity after weights).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget


class TargetArrays(NamedTuple):
    """Per tier (index = ``target.tiers`` index; entry 0 is the compute tier's own figures)."""

    tier_names: tuple[str, ...]
    link_names: tuple[str, ...]
    tier_bw: np.ndarray  # float64[T] read bytes/s of the path to the compute tier
    tier_lat: np.ndarray  # float64[T] s
    tier_link: np.ndarray  # int64[T] index into link_names; -1 for tier 0
    tier_wbw: np.ndarray  # float64[T] write bytes/s of the path
    tier_wlat: np.ndarray  # float64[T]
    kv_capacity_bytes: tuple[int, ...]
    bw0_bytes_per_s: float  # compute tier read bandwidth (attention reads KV from it)
    weights_s: float  # seconds to read the weights once (one decode step's floor)
    weights_in_tier0: bool  # weights and KV share the compute tier's bandwidth
    effective_flops: float


def target_arrays(target: HardwareTarget) -> TargetArrays:
    """Compile ``target`` (which must have a model placed) for the kernel."""
    if not isinstance(target, HardwareTarget):
        raise ConfigError(f"target: got {target!r}, expected a HardwareTarget")
    if target.model is None:
        raise ConfigError(f"target {target.name!r}: got no model, expected HardwareTarget.preset(name, model=...)")
    T = len(target.tiers)
    link_names = tuple(k.name for k in target.links)
    bw = np.zeros(T)
    lat = np.zeros(T)
    wbw = np.zeros(T)
    wlat = np.zeros(T)
    link = np.full(T, -1, dtype=np.int64)
    for t in range(T):
        p = target.fetch_path(t)
        bw[t], lat[t] = p.read_bw_bytes_per_s, p.latency_s
        wbw[t], wlat[t] = p.write_bw_bytes_per_s, p.latency_s
        if t > 0:
            link[t] = link_names.index(target.tiers[t].link)
    wt = target.weights_tier
    return TargetArrays(
        tier_names=tuple(x.name for x in target.tiers), link_names=link_names, tier_bw=bw, tier_lat=lat,
        tier_link=link, tier_wbw=wbw, tier_wlat=wlat, kv_capacity_bytes=target.kv_capacity_bytes,
        bw0_bytes_per_s=float(target.tiers[0].read_bw_bytes_per_s),
        weights_s=float(target.weights_bytes / wt.read_bw_bytes_per_s),
        weights_in_tier0=target.weights_memory is None, effective_flops=float(target.effective_flops),
    )


def model_of(target: HardwareTarget) -> ModelSpec:
    if target.model is None:
        raise ConfigError(f"target {target.name!r}: got no model, expected a target with a model placed")
    return target.model
