"""Replay speed: kvtier's fused numba replay against libCacheSim's ``process_trace``.

    .venv/bin/python bench/replay_speed.py                 # full size (2M agent + 10M Zipf)
    .venv/bin/python bench/replay_speed.py --scale 0.25    # smaller, for a 2-core laptop

Traces: a coding-agent trace from ``kvtier.traces.generator`` (agents added until it has
``--agent-accesses`` block accesses) and a Zipf(1.0) trace of ``--zipf-accesses``
accesses over ``--zipf-objects`` objects (ids are random 64-bit values). One tier at 1%
and 10% of the trace's distinct blocks, every policy.

* kvtier: ``kvtier.replay.replay`` wall time, counting the id remapping (hash table) and
  the next-use pass Belady needs; numba compile time is measured separately (a cold
  cache in a subprocess, then a warm one).
* libcachesim: ``cache.process_trace`` on an ``oracleGeneral`` file (its fastest native
  layout, which carries next-access times for Belady), object size 1, ``hashpower``
  tuned per trace and capacity (the fastest of 14..20 for LRU); the file is written once
  and its writing is not counted. Miss counts are compared: ``same`` must read ``yes``.
* Each cell runs kvtier and libcachesim ``--repeats`` times each, turn about, and keeps the
  best of each (a slow spell on a shared machine then falls on both).
* A 3-tier replay (1%, 10%, 30% of distinct blocks) against one tier of the first tier's
  size and one of the three's total: LRU (the LRU-chain kernel), SIEVE and S3-FIFO (the
  list kernel's general chain, without and with ghosts).
* Peak memory (max RSS of a subprocess replaying the Zipf trace with every policy) and
  the metadata kvtier keeps per resident block and per distinct block.

Results print as markdown tables and are written to ``--out`` as JSON. Speed is never
asserted anywhere; ratios are measured in one run, on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kvtier.policies import POLICY_NAMES  # noqa: E402
from kvtier.replay import ReplayTier, densify, replay, warm_up  # noqa: E402

PEER = {"lru": "LRU", "fifo": "FIFO", "arc": "ARC", "s3fifo": "S3FIFO", "sieve": "Sieve", "clock": "Clock",
        "belady": "Belady"}
TARGET = {"lru": 2.0, "fifo": 2.0, "arc": 2.0, "s3fifo": 2.0, "sieve": 2.0, "belady": 1.0}


def agent_trace(min_accesses: int, seed: int):
    from kvtier.traces.generator import generate_trace

    agents = 1
    while True:
        t = generate_trace(workload="coding-agent", num_agents=agents, seed=seed)
        if int(t.block_offsets[-1]) >= min_accesses:
            return np.asarray(t.block_offsets, dtype=np.int64), np.asarray(t.block_hashes, dtype=np.uint64), agents
        per_agent = max(1, int(t.block_offsets[-1]) // agents)
        agents = max(agents + 1, -(-min_accesses // per_agent))


def zipf_trace(accesses: int, objects: int, seed: int):
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, objects + 1))
    rank = np.searchsorted(cdf, rng.random(accesses) * cdf[-1])
    names = rng.integers(1, 2**63, size=objects, dtype=np.uint64)
    hashes = names[np.minimum(rank, objects - 1)]
    return np.arange(accesses + 1, dtype=np.int64), hashes


def write_oracle_general(ids: np.ndarray, path) -> None:
    """libCacheSim's oracleGeneral records: <u4 time, u8 id, u4 size, i8 next access (1-based, -1)>."""
    n = ids.shape[0]
    order = np.lexsort((np.arange(n), ids))
    nxt = np.full(n, -1, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same] + 1
    rec = np.zeros(n, dtype=[("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    rec["t"] = np.arange(n, dtype=np.uint32)
    rec["id"] = ids
    rec["size"] = 1
    rec["next"] = nxt
    rec.tofile(path)


def peer_run(name: str, path: str, capacity: int, hashpower: int):
    import libcachesim as lcs

    reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=False))
    cache = getattr(lcs, PEER[name])(capacity, hashpower=hashpower)
    t0 = time.perf_counter()
    miss_ratio, _ = cache.process_trace(reader)
    return miss_ratio, time.perf_counter() - t0


def tune_hashpower(path: str, capacity: int, n: int) -> int:
    best, best_s = 16, float("inf")
    for hp in (14, 16, 18, 20):
        _, s = peer_run("lru", path, capacity, hp)
        if s < best_s:
            best, best_s = hp, s
    return best


def kv_run(offsets, hashes, name, capacity, repeats):
    best = None
    for _ in range(repeats):
        r = replay(offsets, hashes, policy=name, capacity_blocks=capacity)
        if best is None or r.seconds < best.seconds:
            best = r
    return best


def kv_and_peer_runs(offsets, hashes, name, capacity, path, hashpower, repeats):
    """The best of ``repeats`` kvtier runs and, for a policy libcachesim has, of as many
    ``process_trace`` runs, taken turn about so that a slow spell on a shared machine falls
    on both; returns ``(ReplayResult, (miss_ratio, seconds) or None)``."""
    best, peer = None, None
    for _ in range(repeats):
        r = replay(offsets, hashes, policy=name, capacity_blocks=capacity)
        if best is None or r.seconds < best.seconds:
            best = r
        if name in PEER:
            p = peer_run(name, path, capacity, hashpower)
            if peer is None or p[1] < peer[1]:
                peer = p
    return best, peer


def compile_times() -> dict:
    """Cold compile (empty numba cache) and warm load, each in a fresh process."""
    code = "from kvtier.replay import warm_up; print(warm_up())"
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for label in ("cold_s", "cached_s"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[label] = float(res.stdout.strip().splitlines()[-1])
    return out


def metadata_bytes(capacity: int) -> dict:
    """Bytes kvtier's replay keeps per resident block, for the kernel ``replay`` picks.

    List policies (``kvtier._kernels.listreplay``): per entry a key, two links, tier, list
    and bit bytes; the table. ARC and S3-FIFO (``ghostreplay``): an entry per block and per
    ghost (ARC ``2c + 2``, S3-FIFO ``c`` + ghost capacity + 1) of key, links, list byte (and
    S3-FIFO's frequency byte), and the table (2-byte cells up to 32,766 entries). A 3-tier
    LRU chain (``lruchain``, per block of the three tiers): key, links, tier byte and the
    table. Belady
    (``kvtier._kernels.beladyreplay``): key, heap key, heap slot, heap position and the
    table per slot, plus 12 bytes per access for the trace's next uses. The others (the
    general kernel): the policy's state arrays plus the replay's slot arrays (free stack
    4, block hash 8, tier 1, depth 4 when used) and its location table (4-byte cells,
    >= 2 per slot)."""
    from kvtier.replay import policy_state, select_kernel

    out = {}
    for name in POLICY_NAMES:
        choice = select_kernel([name], [capacity], accesses=1)
        if choice.name == "belady":
            out[name] = {"kernel": "belady", "per_resident_block": round(choice.state_bytes / capacity, 1),
                         "per_access": 12}
            continue
        if choice.name != "general":
            out[name] = {"kernel": choice.name, "per_resident_block": round(choice.state_bytes / capacity, 1)}
            continue
        table = 16
        while table < 2 * capacity:
            table *= 2
        policy = sum(a.nbytes for a in policy_state([name], [capacity])) / capacity
        slots = 4 + 8 + 1 + (4 if name in ("prefix-lru", "cost-aware") else 0)
        out[name] = {"kernel": "general", "per_resident_block": round(policy + slots + 4 * table / capacity, 1)}
    return out


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``; unlike ``ru_maxrss`` it restarts at exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_worker(npz_path: str, fractions: list[float]) -> None:
    """Subprocess: replay the saved trace with every policy; print peak RSS (MiB)."""
    data = np.load(npz_path)
    offsets, hashes = data["offsets"], data["hashes"]
    warm_up()
    base = peak_rss_mib()
    unique = densify(hashes)[1].shape[0]
    for frac in fractions:
        for name in POLICY_NAMES:
            replay(offsets, hashes, policy=name, capacity_blocks=max(1, int(unique * frac)))
    peak = peak_rss_mib()
    print(json.dumps({"rss_before_replay_mib": round(base, 1), "peak_rss_mib": round(peak, 1),
                      "trace_arrays_mib": round((offsets.nbytes + hashes.nbytes) / 2**20, 1)}))


def peer_memory_worker(path: str, capacity: int, hashpower: int) -> None:
    import libcachesim  # noqa: F401

    base = peak_rss_mib()
    for name in PEER:
        peer_run(name, path, capacity, hashpower)
    peak = peak_rss_mib()
    print(json.dumps({"rss_before_replay_mib": round(base, 1), "peak_rss_mib": round(peak, 1)}))


def measure_memory(offsets, hashes, path, hashpower: int, tmp: str) -> dict:
    """Peak RSS of a fresh process replaying the trace with every kvtier policy (1%, 10%),
    and of one running libcachesim's seven policies at 10% on the same trace file."""
    npz = os.path.join(tmp, "trace.npz")
    np.savez(npz, offsets=offsets, hashes=hashes)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    unique = int(densify(hashes)[1].shape[0])
    res = subprocess.run([sys.executable, __file__, "--memory-worker", npz, "0.01,0.1"], env=env,
                         capture_output=True, text=True, check=True)
    out = {"kvtier": json.loads(res.stdout.strip().splitlines()[-1])}
    res = subprocess.run([sys.executable, __file__, "--peer-memory-worker", path, str(max(1, int(unique * 0.1))),
                          str(hashpower)], env=env, capture_output=True, text=True, check=True)
    out["libcachesim"] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def memory_only(args) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        offsets, hashes = zipf_trace(int(args.zipf_accesses * args.scale),
                                     max(1000, int(args.zipf_objects * args.scale)), args.seed)
        path = os.path.join(tmp, "trace.oracleGeneral")
        write_oracle_general(hashes, path)
        mem = measure_memory(offsets, hashes, path, 16, tmp)
    print(json.dumps(mem))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent-accesses", type=int, default=2_000_000)
    ap.add_argument("--zipf-accesses", type=int, default=10_000_000)
    ap.add_argument("--zipf-objects", type=int, default=1_000_000)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every trace size by this")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per cell for kvtier and for libcachesim, turn about (the best of each is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay_speed.json"))
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement (Zipf trace)")
    ap.add_argument("--memory-worker", nargs=2, metavar=("NPZ", "FRACTIONS"), help=argparse.SUPPRESS)
    ap.add_argument("--peer-memory-worker", nargs=3, metavar=("PATH", "CAP", "HP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_worker:
        memory_worker(args.memory_worker[0], [float(x) for x in args.memory_worker[1].split(",")])
        return 0
    if args.peer_memory_worker:
        peer_memory_worker(args.peer_memory_worker[0], int(args.peer_memory_worker[1]), int(args.peer_memory_worker[2]))
        return 0

    if args.memory_only:
        return memory_only(args)
    results = {"config": vars(args), "compile": compile_times(), "runs": [], "tiers3": [], "memory": {}}
    print(f"numba compile: cold {results['compile']['cold_s']:.1f} s, cached {results['compile']['cached_s']:.2f} s")
    warm_up()
    fractions = [0.01, 0.10]
    with tempfile.TemporaryDirectory() as tmp:
        a_off, a_hash, agents = agent_trace(int(args.agent_accesses * args.scale), args.seed)
        z_off, z_hash = zipf_trace(int(args.zipf_accesses * args.scale), max(1000, int(args.zipf_objects * args.scale)),
                                   args.seed)
        traces = {f"coding-agent ({agents} agents)": (a_off, a_hash), "zipf-1.0": (z_off, z_hash)}
        for label, (offsets, hashes) in traces.items():
            n = hashes.shape[0]
            unique = int(densify(hashes)[1].shape[0])
            path = os.path.join(tmp, "trace.oracleGeneral")
            write_oracle_general(hashes, path)
            print(f"\n### {label}: {n:,} accesses, {unique:,} distinct blocks, {offsets.shape[0] - 1:,} requests\n")
            print("| policy | capacity | hit ratio | kvtier M acc/s | libcachesim M acc/s | ratio | same misses |")
            print("|---|---|---|---|---|---|---|")
            for frac in fractions:
                cap = max(1, int(unique * frac))
                hp = tune_hashpower(path, cap, n)
                for name in POLICY_NAMES:
                    r, peer_best = kv_and_peer_runs(offsets, hashes, name, cap, path, hp, args.repeats)
                    row = {"trace": label, "accesses": n, "unique": unique, "policy": name, "capacity": cap,
                           "fraction": frac, "hit_ratio": r.block_hit_ratio, "kvtier_s": r.seconds,
                           "kvtier_maccess_per_s": n / r.seconds / 1e6}
                    peer = ""
                    if peer_best is not None:
                        miss_ratio, s = peer_best
                        same = round(miss_ratio * n) == n - r.block_hits
                        row.update(libcachesim_s=s, libcachesim_maccess_per_s=n / s / 1e6, hashpower=hp,
                                   ratio=s / r.seconds, same_misses=same)
                        peer = f"{n / s / 1e6:.1f} | {s / r.seconds:.2f}x | {'yes' if same else 'NO'}"
                    else:
                        peer = "- | - | -"
                    results["runs"].append(row)
                    print(f"| {name} | {frac:.0%} ({cap:,}) | {r.block_hit_ratio:.4f} | "
                          f"{row['kvtier_maccess_per_s']:.1f} | {peer} |")
            # 3 tiers against 1 tier.
            caps3 = [max(1, int(unique * f)) for f in (0.01, 0.10, 0.30)]
            print()
            for name in ("lru", "sieve", "s3fifo"):
                one = kv_run(offsets, hashes, name, caps3[0], args.repeats)
                whole = kv_run(offsets, hashes, name, sum(caps3), args.repeats)
                tiers = [ReplayTier(name=nm, policy=name, capacity_blocks=c)
                         for nm, c in zip(("hbm", "dram", "flash"), caps3)]
                best3 = min((replay(offsets, hashes, tiers) for _ in range(args.repeats)), key=lambda x: x.seconds)
                results["tiers3"].append({"trace": label, "policy": name, "one_tier_s": one.seconds,
                                          "one_tier_total_s": whole.seconds, "three_tier_s": best3.seconds,
                                          "ratio": one.seconds / best3.seconds,
                                          "ratio_total": whole.seconds / best3.seconds,
                                          "three_tier_hits": best3.block_hits})
                print(f"3-tier {name} (1%/10%/30%): {n / best3.seconds / 1e6:.1f} M acc/s; one tier of the first "
                      f"tier's size (1%) {n / one.seconds / 1e6:.1f} M acc/s ({one.seconds / best3.seconds:.0%}), "
                      f"one tier of the three's total (41%) {n / whole.seconds / 1e6:.1f} M acc/s "
                      f"({whole.seconds / best3.seconds:.0%})")
            if label == "zipf-1.0":
                results["memory"] = measure_memory(offsets, hashes, path, hp, tmp)
                results["metadata"] = {f"{f:.0%}": metadata_bytes(max(1, int(unique * f))) for f in fractions}
                from kvtier.replay import select_kernel

                chain = select_kernel(["lru"] * 3, caps3)
                results["metadata"]["lru 3 tiers"] = round(chain.state_bytes / sum(caps3), 1)
                print(f"\npeak RSS replaying {n:,} accesses, every policy: kvtier {results['memory']['kvtier']}, "
                      f"libcachesim (its 7 policies, 10%) {results['memory']['libcachesim']}")
                print("\n| policy | kernel | bytes per resident block, 1% | 10% |\n|---|---|---|---|")
                one, ten = results["metadata"]["1%"], results["metadata"]["10%"]
                for name in one:
                    extra = " (+12 per access)" if name == "belady" else ""
                    print(f"| {name} | {one[name]['kernel']} | {one[name]['per_resident_block']}{extra} | "
                          f"{ten[name]['per_resident_block']} |")
                print(f"\n3-tier LRU chain (1%/10%/30%): {results['metadata']['lru 3 tiers']} bytes per block held")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
