"""The time-driven simulator: traces on hardware targets, with queues, residency and TTFT.

    from kvtier.sim import simulate
    from kvtier.targets import HardwareTarget
    from kvtier.traces import generate_trace

    trace = generate_trace(num_agents=8, seed=1)
    result = simulate(trace, HardwareTarget.preset("h200", model="llama-3.1-70b", chips=8),
                      policy="lru", planner="cost-optimal")
    print(result.summary["ttft_p99_s"], result.summary["hit_ratio"])

``kvtier.sim.engine`` documents the model (arrival, lookup, planning, residency, batching).
"""

from kvtier.sim.engine import (
    PreparedTrace,
    SimConfig,
    cache_slots,
    output_blocks,
    prepare_trace,
    price_plan,
    simulate,
    warm_up,
)
from kvtier.sim.metrics import SimResult
from kvtier.sim.residency import REGIME_NAMES, RegimeRow, regime_for, regime_table

__all__ = ["PreparedTrace", "REGIME_NAMES", "RegimeRow", "SimConfig", "SimResult", "cache_slots", "output_blocks",
           "prepare_trace", "price_plan", "regime_for", "regime_table", "simulate", "warm_up"]
