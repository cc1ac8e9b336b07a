"""Residency: where a turn's KV is read from at every step, as the engine admits it.

Attention reads a turn's whole KV at every step. One replica's compute tier (SRAM or
HBM) holds ``kv_capacity_bytes[0]`` of KV after the weights, shared by the turns it runs.
With the engine's default admission (``residency="auto"``): turns that fit run together
(*resident*); when the agents' contexts do not all fit, only as many as fit run and the
rest wait their turn (*queued*); a context larger than the whole room runs alone, holding
the room and streaming the rest from the next tier at every step (*streamed*); with no
lower tier it *overflows* (it is not served). ``regime_table`` gives the rule as a table
over context lengths for the report, with the decode speed the engine's step gives.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from kvtier.cost import attention_flops, batch_step_s, stage_model
from kvtier.targets import HardwareTarget

REGIME_NAMES = ("resident", "streamed", "overflow")
TABLE_REGIMES = ("resident", "queued", "streamed", "overflow")


class RegimeRow(NamedTuple):
    context_tokens: int
    agents: int
    regime: str  # one of TABLE_REGIMES
    running: int  # agents decoding at once on one replica
    streamed_bytes_per_token: float  # bytes read over the link at each step, per running agent
    step_s: float  # step time of the running batch
    tokens_per_s_per_agent: float  # averaged over the agents sharing the replica


def regime_for(target: HardwareTarget, context_tokens: int, agents: int = 1, *,
               decode_layer_latency_s: float | None = None) -> RegimeRow:
    """The regime of ``agents`` equal agents each holding ``context_tokens`` of KV, spread
    over the target's replicas, and the decode step the engine charges for the batch one
    replica runs (``kvtier.cost.batch_step_s``)."""
    model = target.model
    rep = target.replica()
    per_replica = max(1, math.ceil(agents / target.num_replicas))
    kv = float(model.kv_bytes(context_tokens))
    cap = float(rep.kv_capacity_bytes[0])
    streamed = 0.0
    if kv > cap:
        if len(rep.tiers) == 1:
            return RegimeRow(int(context_tokens), int(agents), "overflow", 0, math.nan, math.nan, 0.0)
        regime, running, streamed = "streamed", 1, kv - cap
    else:
        running = min(per_replica, int(cap // kv) if kv > 0 else per_replica)
        regime = "resident" if running >= per_replica else "queued"
    stage = stage_model(target, layer_overhead_s=decode_layer_latency_s)
    flops = running * float(attention_flops(model, 1, context_tokens))
    step = batch_step_s(stage, running, running * kv, flops, running * streamed)
    return RegimeRow(int(context_tokens), int(agents), regime, running, streamed, step,
                     running / per_replica / step if step > 0 else 0.0)


def regime_table(target: HardwareTarget, contexts, agents: int = 1, *,
                 decode_layer_latency_s: float | None = None) -> list[RegimeRow]:
    return [regime_for(target, int(c), agents, decode_layer_latency_s=decode_layer_latency_s) for c in contexts]
