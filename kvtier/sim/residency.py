"""Residency: where a turn's KV is read from at every decode step.

Attention reads a turn's whole KV at every decode step. The compute tier (SRAM or HBM)
holds ``kv_capacity_bytes[0]`` of KV after the weights, shared by every active agent.
A turn whose context fits next to what the other active turns hold is *resident* (its
prefix is promoted before the turn); otherwise the part that does not fit is *streamed*
from the next tier at every decode step, so a token costs at least
``streamed bytes / path bandwidth``; a target with no lower tier cannot stream and the
turn waits for room, or, when its context alone exceeds the compute tier, *overflows*
(it is not served). The simulator applies this per request; ``regime_table`` gives the
same rule as a table over context lengths for the report.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier.cost import decode_step_s
from kvtier._kernels.sim import REGIME_OVERFLOW, REGIME_RESIDENT, REGIME_STREAMED
from kvtier.targets import HardwareTarget

REGIME_NAMES = ("resident", "streamed", "overflow")


class RegimeRow(NamedTuple):
    context_tokens: int
    agents: int
    regime: str
    streamed_bytes_per_token: float  # bytes read over the link at each decode step, per agent
    step_s: float  # decode step time of the batch (all agents at this context)
    tokens_per_s_per_agent: float


def regime_for(target: HardwareTarget, context_tokens: int, agents: int = 1, *,
               decode_layer_latency_s: float = 0.0) -> RegimeRow:
    """The regime of ``agents`` equal agents each holding ``context_tokens`` of KV, and the
    decode step time the simulator charges for their batch (weights once, every KV byte
    from the compute tier, the streamed part over the next tier's path, one token of
    compute each, plus ``decode_layer_latency_s`` per layer). Uses the same rule as
    ``kvtier.sim.engine``."""
    model = target.model
    kv = float(model.kv_bytes(context_tokens))
    cap = float(target.kv_capacity_bytes[0])
    room = cap / agents
    if kv <= room:
        regime, streamed = REGIME_RESIDENT, 0.0
    elif len(target.tiers) > 1:
        regime, streamed = REGIME_STREAMED, kv - room
    else:
        regime, streamed = REGIME_OVERFLOW, np.nan
    weights_s = target.weights_bytes / target.weights_tier.read_bw_bytes_per_s
    streamed_bytes = agents * streamed if regime == REGIME_STREAMED else 0.0
    stream_bw = target.fetch_path(1).read_bw_bytes_per_s if regime == REGIME_STREAMED else 1.0
    flops = agents * float(model.prefill_flops(1, context_tokens)) / target.effective_flops
    step = decode_step_s(agents * kv, weights_s, target.weights_memory is None, target.tiers[0].read_bw_bytes_per_s,
                         streamed_bytes, stream_bw, flops, decode_layer_latency_s * model.num_layers)
    if regime == REGIME_OVERFLOW:
        step = np.nan
    return RegimeRow(int(context_tokens), int(agents), REGIME_NAMES[regime], streamed, step,
                     1.0 / step if step == step and step > 0 else 0.0)


def regime_table(target: HardwareTarget, contexts, agents: int = 1, *,
                 decode_layer_latency_s: float = 0.0) -> list[RegimeRow]:
    return [regime_for(target, int(c), agents, decode_layer_latency_s=decode_layer_latency_s) for c in contexts]
