"""Simulation speed: simulated requests per second of the time-driven simulator, one core.

Two traces: a 42,000-request agentic trace (the ``tool-agent`` workload: 14,000 agents x 3
turns, Mooncake Tool&Agent-like, 512-token blocks, the size of the agentic Mooncake trace
NVIDIA's aisimulate was measured on) and the bench suite's 64-agent coding-agent trace
(contexts to 270k tokens, 256-token blocks). Each runs on a 1-tier target (groq3-lpx:
SRAM only) and a 3-tier one (h100 x 8: HBM, host DRAM, NVMe), LRU + cost-optimal planner,
closed loop, and, as the baseline in the same process, the metadata-only replay of the
same blocks through the same tiers (``kvtier.replay``).

    python bench/sim_speed.py            # prints a table; --json for machine-readable output

Compile time is excluded (a warm-up run first); the best of ``--repeat`` runs is reported.
Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import time

from kvtier.replay import ReplayTier, replay
from kvtier.sim import prepare_trace, simulate
from kvtier.sim.engine import cache_slots
from kvtier.targets import HardwareTarget
from kvtier.traces import generate_trace


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    traces = {
        "tool-agent 14k agents": generate_trace(workload="tool-agent", num_agents=14_000, seed=0),
        "coding-agent 64 agents": generate_trace(workload="coding-agent", num_agents=64, requests_per_agent=60,
                                                 block_tokens=256, seed=0, long_context_share=0.0),
    }
    targets = {
        "1 tier (groq3-lpx)": HardwareTarget.preset("groq3-lpx", model="llama-3.1-70b"),
        "3 tiers (h100 x 8)": HardwareTarget.preset("h100", model="llama-3.1-70b", chips=8),
    }
    rows = []
    for tname, tr in traces.items():
        t0 = time.perf_counter()
        p = prepare_trace(tr)
        prep_s = time.perf_counter() - t0
        for gname, tgt in targets.items():
            simulate(p, tgt, policy="lru", planner="cost-optimal")  # warm-up / compile
            sim_s, res = _best(lambda: simulate(p, tgt, policy="lru", planner="cost-optimal"), args.repeat)
            bb = int(tgt.model.block_bytes(tr.block_tokens))
            tiers = [ReplayTier(name=f"t{i}", policy="lru", capacity_blocks=c)
                     for i, c in enumerate(cache_slots(tgt, bb, p.n_unique))]
            replay(p.offsets, p.ids.astype("uint64"), tiers, block_bytes=bb)  # warm-up
            rep_s, _ = _best(lambda: replay(p.offsets, p.ids.astype("uint64"), tiers, block_bytes=bb), args.repeat)
            rows.append({"trace": tname, "target": gname, "requests": tr.num_requests,
                         "block_accesses": int(p.ids.shape[0]), "prepare_s": prep_s, "simulate_s": sim_s,
                         "requests_per_s": tr.num_requests / sim_s, "replay_s": rep_s,
                         "replay_requests_per_s": tr.num_requests / rep_s, "sim_over_replay": sim_s / rep_s,
                         "ttft_p99_s": res.summary["ttft_p99_s"]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'trace':<24} {'target':<20} {'requests':>9} {'accesses':>10} {'sim s':>8} {'req/s':>10} "
          f"{'replay s':>9} {'sim/replay':>10}")
    for r in rows:
        print(f"{r['trace']:<24} {r['target']:<20} {r['requests']:>9,} {r['block_accesses']:>10,} "
              f"{r['simulate_s']:>8.3f} {r['requests_per_s']:>10,.0f} {r['replay_s']:>9.3f} {r['sim_over_replay']:>10.2f}")
    print("(trace preparation, once per trace and shared by every simulation of it: "
          + ", ".join(f"{r['trace']} {r['prepare_s']:.2f} s" for r in rows[::len(targets)]) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
