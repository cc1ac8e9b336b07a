"""``kvtier replay``: metadata-only replay of a trace through one tier or a chain of tiers.

    kvtier replay --trace PATH --policy NAME [--capacity-blocks N | --tiers SPEC]
                  [--block-tokens N] [--format FMT] [--model NAME] [--no-promote] [--json]
                  [--no-progress]

``--tiers`` is a comma-separated chain, fastest first, of ``NAME:CAPACITY[:POLICY]``:
``CAPACITY`` is a number of blocks (``4096``) or bytes with a unit (``80GB``, ``512MiB``);
``POLICY`` defaults to ``--policy``. With neither option the cache is unlimited.

Before the replay, the one kernel the tiers select is compiled (a first run only: numba
caches it, and later runs load it in about a second); if that takes more than a second,
stderr says what is compiling. Reading a trace that takes more than a second shows a
progress bar on stderr.
"""

from __future__ import annotations

import json
import re
import sys
import threading

from kvtier.cli._help import with_example
from kvtier.errors import ConfigError
from kvtier.validation import check_int

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}
_CAPACITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_tiers(spec: str, default_policy: str):
    """``"hbm:4096:lru,dram:64GB:s3fifo"`` -> ``ReplayTier`` values (``ConfigError`` naming the bad part)."""
    from kvtier.replay import ReplayTier

    tiers = []
    for i, part in enumerate(p for p in spec.split(",")):
        fields = part.strip().split(":")
        if len(fields) not in (2, 3) or not fields[0]:
            raise ConfigError(f"--tiers part {i + 1}: got {part!r}, expected NAME:CAPACITY[:POLICY]")
        m = _CAPACITY.match(fields[1])
        if not m:
            raise ConfigError(f"--tiers part {i + 1}: capacity {fields[1]!r}, expected blocks (4096) or bytes (80GB)")
        number, unit = m.group(1), m.group(2).upper()
        policy = fields[2] if len(fields) == 3 else default_policy
        if unit == "":
            if "." in number:
                raise ConfigError(f"--tiers part {i + 1}: capacity {fields[1]!r}, expected a whole number of blocks")
            tiers.append(ReplayTier(name=fields[0], policy=policy, capacity_blocks=int(number)))
        elif unit in _UNITS:
            tiers.append(ReplayTier(name=fields[0], policy=policy, capacity_bytes=int(float(number) * _UNITS[unit])))
        else:
            raise ConfigError(f"--tiers part {i + 1}: unit {m.group(2)!r}, expected one of {sorted(_UNITS)}")
    return tiers


def register(subparsers) -> None:
    from kvtier.policies import POLICY_NAMES

    p = subparsers.add_parser("replay", help="replay a trace's block accesses through tiers (metadata only)",
                              description=__doc__.split("\n\n", 1)[0],
                              **with_example("kvtier replay --trace traces/coding-agent-1.kvtrace "
                                             "--tiers hbm:4096:lru,dram:64GB:s3fifo"))
    p.add_argument("--trace", required=True, help="trace file (any format read_trace knows)")
    p.add_argument("--policy", default="lru", choices=POLICY_NAMES, help="eviction policy (default lru)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capacity-blocks", type=int, help="one tier of N blocks")
    cap.add_argument("--tiers", help="tier chain NAME:CAPACITY[:POLICY],... fastest first")
    p.add_argument("--block-tokens", type=int, default=None, help="tokens per block (formats that lack it)")
    p.add_argument("--format", default="auto", help="trace format (default: detect)")
    p.add_argument("--model", default="llama-3.1-8b", help="model preset: block bytes and recompute cost")
    p.add_argument("--no-promote", action="store_true", help="leave lower-tier hits where they are")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while reading the trace")
    p.set_defaults(func=run)


#: Seconds a kernel may take to load before ``kvtier replay`` says that it is compiling.
COMPILE_NOTICE_AFTER_S = 1.0


def compile_kernel(kernel: str, *, stream=None, notice_after_s: float = COMPILE_NOTICE_AFTER_S) -> float:
    """Compile (or load from numba's cache) the replay kernel ``kernel``; returns the
    seconds it took. If it is still compiling after ``notice_after_s``, ``stream``
    (stderr) is told which kernel is compiling, that it happens once, and when it is done."""
    from kvtier.replay import warm_up

    stream = sys.stderr if stream is None else stream
    said = threading.Event()

    def notice() -> None:
        said.set()
        print(f"kvtier replay: compiling the {kernel!r} replay kernel (numba; once per install: later runs "
              "load it from the cache in about a second) ...", file=stream, flush=True)

    timer = threading.Timer(notice_after_s, notice)
    timer.start()
    try:
        seconds = warm_up((kernel,))
    finally:
        timer.cancel()
        timer.join()
    if said.is_set():
        print(f"kvtier replay: compiled in {seconds:.1f} s", file=stream, flush=True)
    return seconds


def run(args) -> int:
    from kvtier.model import ModelSpec
    from kvtier.replay import ReplayTier, replay, select_kernel
    from kvtier.traces.io import read_trace

    check_int(args.capacity_blocks, "--capacity-blocks", optional=True)
    tiers = parse_tiers(args.tiers, args.policy) if args.tiers else None
    trace = read_trace(args.trace, format=args.format, block_tokens=args.block_tokens,
                       progress=not args.no_progress)
    model = ModelSpec.preset(args.model)
    # Which kernel runs depends on the policies (and the trace's length), not on capacities.
    chain = tiers or [ReplayTier(name="tier0", policy=args.policy, capacity_blocks=args.capacity_blocks)]
    policies = [t.policy for t in chain]
    kernel = select_kernel(policies, [1] * len(policies), accesses=trace.num_block_accesses).name
    compile_s = compile_kernel(kernel)
    result = replay(trace.block_offsets, trace.block_hashes, tiers, policy=args.policy,
                    capacity_blocks=args.capacity_blocks, model=model, block_tokens=int(trace.block_tokens),
                    promote=not args.no_promote)
    out = {"trace": str(args.trace), "policy": args.policy, "model": args.model,
           "block_tokens": int(trace.block_tokens), **result.as_dict(), "compile_seconds": compile_s}
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(f"{out['requests']} requests, {out['block_accesses']} block accesses, {out['unique_blocks']} unique blocks")
    print(f"block hits  {out['block_hits']:>12}  ({out['block_hit_ratio']:.4f})")
    print(f"prefix hits {out['prefix_hits']:>12}  ({out['prefix_hit_ratio']:.4f})")
    print(f"{'tier':<10}{'policy':<12}{'blocks':>10}{'hits':>10}{'evictions':>11}{'demotions':>11}{'promotions':>11}")
    for t in out["tiers"]:
        print(f"{t['name']:<10}{t['policy']:<12}{t['capacity_blocks']:>10}{t['hits']:>10}{t['evictions']:>11}"
              f"{t['demotions']:>11}{t['promotions']:>11}")
    print(f"{out['seconds']:.3f} s, {out['accesses_per_s'] / 1e6:.1f} M accesses/s (compile/load {compile_s:.2f} s)")
    return 0
