"""kvtier's time model side by side with NVIDIA's aisimulate (op-level timing from vLLM
kernels measured on real GPUs), for Llama-3.1-70B on one 8-way tensor-parallel replica.

Cases (the peer's keys, ``../shared/data/peers/README.md``):

* ``<HW>_prefill_<S>``: TTFT (ms) of one request of S prompt tokens and 2 output tokens,
  unchunked (``max_num_batched_tokens`` >= S);
* ``<HW>_decode_b<B>_c<C>``: the decode step (ms) of B concurrent requests with C-token
  prompts, as the peer measures it: (run time with 128 output tokens - with 64) / 64.

kvtier's side runs the same cases through ``kvtier.sim.simulate`` (the engine and its one
timing model) on ``HardwareTarget.preset(TARGET, chips=8)``, TP8, bf16 weights and KV.

    python bench/peer_aisimulate.py [--peer-json FILE] [--target h100=h100_sxm --target h200=h200_sxm]
        [--tolerance 0.15]

``--peer-json`` defaults to the peer's saved results committed beside this script
(``bench/peers/``, made as its README says).

It prints the table with ratios (kvtier / peer) for every key it finds and exits 1 when a
ratio falls outside 1 +- tolerance (``--extrapolated-tolerance`` for prefills above
65,536 tokens, where the peer extrapolates attention beyond its measured grid).
``--run-peer`` also runs ``aisimulate`` itself when it is installed (never a dependency of
kvtier or its tests; ``../shared/PEERS.md`` says how to install the dev wheel) and writes
its results in the same JSON shape (``--save FILE``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kvtier.model import ModelSpec
from kvtier.sim import simulate
from kvtier.targets import Deployment, HardwareTarget
from kvtier.traces import TraceBuilder

MODEL = "llama-3.1-70b"
SAVED = Path(__file__).resolve().parent / "peers" / "aisimulate_llama31_70b_tp8_h100_h200.json"
_KEY = re.compile(r"^(?P<hw>.+?)_(?:prefill_(?P<s>\d+)|decode_b(?P<b>\d+)_c(?P<c>\d+))$")


def target_for(name: str) -> HardwareTarget:
    """The kvtier target of a comparison: ``name`` on 8 chips, one TP8 replica, bf16."""
    t = HardwareTarget.preset(name, model=ModelSpec.preset(MODEL).with_dtype_bytes(2), chips=8,
                              weights_bytes_per_param=2)
    import dataclasses

    return dataclasses.replace(t, deployment=Deployment(tp=8, pp=1, replicas=1))


def _trace(prompts: list[int], output: int, block_tokens: int = 16):
    b = TraceBuilder()
    next_hash = 1
    for i, s in enumerate(prompts):
        n = s // block_tokens
        b.add(timestamp_ms=0.0, session_id=i, input_length=s, output_length=output,
              block_hashes=range(next_hash, next_hash + n))
        next_hash += n
    return b.build(block_tokens=block_tokens)


def kvtier_prefill_ms(target: HardwareTarget, tokens: int) -> float:
    """TTFT of one unchunked request of ``tokens`` prompt tokens, 2 output tokens."""
    res = simulate(_trace([tokens], 2), target, closed_loop=False, max_num_batched_tokens=max(8192, tokens + 8),
                   chunked_prefill=False)
    return float(res.requests["ttft_s"][0]) * 1e3


def kvtier_decode_ms(target: HardwareTarget, batch: int, context: int) -> float:
    """The decode step at ``batch`` concurrent ``context``-token prompts, measured as the
    peer does: (run time with 128 output tokens - with 64) / 64."""
    runs = []
    for out in (128, 64):
        res = simulate(_trace([context] * batch, out), target, closed_loop=False,
                       max_num_batched_tokens=max(8192, batch * (context + 8)))
        runs.append(float(np.nanmax(res.requests["end_s"])))
    return (runs[0] - runs[1]) / 64 * 1e3


def compare(peer: dict, targets: dict[str, str], tolerance: float, extrapolated_tolerance: float) -> list[dict]:
    """One row per peer key whose hardware is mapped to a kvtier target."""
    rows = []
    by_hw = {hw: t for t, hw in targets.items()}
    for key in sorted(peer, key=_order):
        m = _KEY.match(key)
        if not m or m["hw"] not in by_hw:
            continue
        target = target_for(by_hw[m["hw"]])
        if m["s"]:
            case, ours = f"prefill {int(m['s']):,}", kvtier_prefill_ms(target, int(m["s"]))
            tol = extrapolated_tolerance if int(m["s"]) > 65_536 else tolerance
        else:
            case, ours = (f"decode b{m['b']} c{int(m['c']):,}",
                          kvtier_decode_ms(target, int(m["b"]), int(m["c"])))
            tol = tolerance
        ratio = ours / float(peer[key])
        rows.append({"key": key, "hw": m["hw"], "target": by_hw[m["hw"]], "case": case, "peer_ms": float(peer[key]),
                     "kvtier_ms": ours, "ratio": ratio, "tolerance": tol, "ok": abs(ratio - 1) <= tol})
    return rows


def _order(key: str):
    m = _KEY.match(key)
    if not m:
        return (key, 0, 0, 0)
    return (m["hw"], 0 if m["s"] else 1, int(m["s"] or m["b"]), int(m["c"] or 0))


def run_peer(hw_names: list[str]) -> dict:
    """The same cases through ``aisimulate predict`` (when it is installed)."""
    exe = shutil.which("aisimulate")
    if exe is None:
        raise SystemExit("aisimulate is not installed (see ../shared/PEERS.md); use --peer-json with saved results")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for hw in hw_names:
            for s in (1024, 4096, 16384, 32768, 65536, 131000):
                out[f"{hw}_prefill_{s}"] = _peer_case(exe, Path(d), hw, s, 2, 1, max(8192, s + 8), "ttft")
            for b in (1, 8):
                for c in (1024, 8192, 32768):
                    t128 = _peer_case(exe, Path(d), hw, c, 128, b, max(8192, b * (c + 8)), "run")
                    t64 = _peer_case(exe, Path(d), hw, c, 64, b, max(8192, b * (c + 8)), "run")
                    out[f"{hw}_decode_b{b}_c{c}"] = (t128 - t64) / 64
    return out


def _peer_case(exe, d: Path, hw: str, prompt: int, output: int, concurrency: int, budget: int, what: str) -> float:
    cfg = d / "cfg.yaml"
    cfg.write_text(
        "traffic:\n"
        f"  source: {{type: synthetic, input_tokens: {prompt}, output_tokens: {output}}}\n"
        f"  load: {{type: concurrency, concurrency: {concurrency}}}\n"
        f"  stop: {{requests: {max(2, concurrency)}}}\n"
        "engine:\n  mode: aggregated\n  model: meta-llama/Meta-Llama-3.1-70B\n"
        f"  hardware: {hw}\n  backend: vllm\n  workers:\n    aggregated:\n"
        "      parallelism: {replicas: 1, tensor: 8}\n"
        f"      scheduler: {{max_batched_tokens: {budget}, max_sequences: 64}}\n")
    subprocess.run([exe, "predict", "-c", str(cfg), "--output-dir", str(d / "out"), "--overwrite", "--format", "json"],
                   check=True, capture_output=True)
    pred = json.loads((d / "out" / "prediction.json").read_text())
    if what == "ttft":
        return float(pred["median_ttft_ms"])
    return float(pred.get("duration_ms") or pred["total_time_ms"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python bench/peer_aisimulate.py --peer-json "
                                        "../shared/data/peers/aisimulate_llama31_70b_tp8_h100_h200.json "
                                        "--target h100=h100_sxm --target h200=h200_sxm")
    ap.add_argument("--peer-json", metavar="FILE", default=str(SAVED),
                    help="saved peer results (flat JSON of <HW>_prefill_<S>, <HW>_decode_b<B>_c<C> in ms; "
                         "default: the committed bench/peers file)")
    ap.add_argument("--target", action="append", default=[], metavar="TARGET=HW",
                    help="a kvtier preset and the peer's hardware name (repeatable)")
    ap.add_argument("--tolerance", type=float, default=0.15)
    ap.add_argument("--extrapolated-tolerance", type=float, default=0.20,
                    help="for prefills above 65,536 tokens, where the peer extrapolates (default 0.20)")
    ap.add_argument("--run-peer", action="store_true", help="run aisimulate itself (must be installed)")
    ap.add_argument("--save", metavar="FILE", help="with --run-peer: write its results as JSON")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    targets = {}
    for spec in args.target or ["h100=h100_sxm", "h200=h200_sxm"]:
        if "=" not in spec:
            ap.error(f"--target: got {spec!r}, expected TARGET=HW (e.g. h100=h100_sxm)")
        t, hw = spec.split("=", 1)
        targets[t] = hw
    if args.run_peer:
        peer = run_peer(sorted(set(targets.values())))
        if args.save:
            Path(args.save).write_text(json.dumps(peer, indent=1, sort_keys=True) + "\n")
    else:
        try:
            peer = json.loads(Path(args.peer_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            ap.error(f"--peer-json: cannot read {args.peer_json}: {e}")
    rows = compare(peer, targets, args.tolerance, args.extrapolated_tolerance)
    if not rows:
        print("no peer keys match the --target hardware names", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'case':<22} " + " ".join(f"{'peer ' + hw:>14} {'kvtier':>9} {'ratio':>6}"
                                          for hw in dict.fromkeys(r['hw'] for r in rows)))
        cases = dict.fromkeys(r["case"] for r in rows)
        for case in cases:
            cells = []
            for hw in dict.fromkeys(r["hw"] for r in rows):
                r = next((x for x in rows if x["case"] == case and x["hw"] == hw), None)
                cells.append(f"{r['peer_ms']:>14,.2f} {r['kvtier_ms']:>9,.2f} {r['ratio']:>5.2f}{'' if r['ok'] else '!'}"
                             if r else f"{'':>14} {'':>9} {'':>6}")
            print(f"{case:<22} " + " ".join(cells))
        bad = [r for r in rows if not r["ok"]]
        print(f"{len(rows) - len(bad)} of {len(rows)} cases within tolerance ({args.tolerance:.0%}; prefills above "
              f"65,536 tokens {args.extrapolated_tolerance:.0%}); '!' marks the others")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
