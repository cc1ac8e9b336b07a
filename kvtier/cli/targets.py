"""``kvtier targets``: list hardware targets with per-tier KV capacity.

With ``--model NAME`` the model's weights are placed first (in the fastest memory that
holds them, on the preset's chips or the fewest that fit) and each tier shows the bytes
and tokens of KV left; a target whose weights cannot fit shows why. ``--file PATH`` lists
a user-defined target (TOML or JSON, see ``kvtier.targets.load_target``) instead of the
presets. ``--json`` prints the same as plain data.
"""

from __future__ import annotations

import json
import sys

from kvtier.cli._help import with_example
from kvtier.errors import ConfigError
from kvtier.model import ModelSpec, model_names
from kvtier.targets import HardwareTarget, load_target, target_names

_WEIGHTS = {"bf16": 2, "fp8": 1}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "targets",
        help="list hardware targets with per-tier KV capacity",
        description="List hardware targets (presets, or one from --file) with per-tier KV capacity in bytes and, "
        "with --model, in tokens after the model's weights.",
        **with_example("kvtier targets --model llama-3.1-70b --target h100"),
    )
    p.add_argument("--model", choices=model_names(), metavar="NAME",
                   help=f"place this model's weights and count KV tokens (one of: {', '.join(model_names())})")
    p.add_argument("--weights", choices=sorted(_WEIGHTS), help="weight precision (default: the preset's; bf16 except Groq)")
    p.add_argument("--target", action="append", metavar="NAME", help="only these presets (repeatable)")
    p.add_argument("--file", metavar="PATH", help="list the target defined in this TOML/JSON file instead of the presets")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _targets(args) -> list[tuple[str, HardwareTarget | None, str]]:
    model = ModelSpec.preset(args.model) if args.model else None
    wb = _WEIGHTS[args.weights] if args.weights else None
    if args.file:
        t = load_target(args.file, model=model)
        if wb is not None:
            t = t.with_model(t.model, weights_bytes_per_param=wb)
        return [(t.name, t, "")]
    names = args.target or target_names()
    out = []
    for name in names:
        try:
            out.append((name, HardwareTarget.preset(name, model=model, weights_bytes_per_param=wb), ""))
        except ConfigError as e:
            if name not in target_names():
                raise
            out.append((name, None, str(e)))
    return out


def _bytes(x: float) -> str:
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if x >= scale:
            return f"{x / scale:,.1f} {unit}"
    return f"{x:,.0f} B"


def _tokens(x: int) -> str:
    if x >= 10_000_000:
        return f"{x / 1e6:,.1f}M"
    if x >= 10_000:
        return f"{x / 1e3:,.1f}k"
    return f"{x:,}"


def run(args) -> int:
    rows = _targets(args)
    if args.json:
        data = []
        for name, t, err in rows:
            data.append(t.to_dict() if t is not None else {"name": name, "error": err})
        json.dump(data, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    header = ["target", "chips", "weights", "tier", "kind", "capacity", "KV bytes", "KV tokens", "read GB/s", "lat us", "est"]
    table = [header]
    unfit = []
    for name, t, err in rows:
        if t is None:
            unfit.append(f"{name}: does not fit: {err.split(': ', 1)[-1]}")
            continue
        kv_bytes = t.kv_capacity_bytes
        kv_tok = t.kv_capacity_tokens() if t.model is not None else None
        wgt = f"{_bytes(t.weights_bytes)} in {t.weights_tier.name}" if t.model is not None else "-"
        for i, tier in enumerate(t.tiers):
            path = t.fetch_path(i)
            est = ",".join(
                f for f, short in (("capacity_bytes", "cap"), ("read_bw_bytes_per_s", "bw"), ("latency_s", "lat"))
                if tier.is_estimate(f) or (i > 0 and t.link_of(i).is_estimate(f))
                for f in [short]
            )
            table.append([
                name if i == 0 else "", str(t.chips) if i == 0 else "", wgt if i == 0 else "",
                tier.name, tier.kind, _bytes(tier.capacity_bytes), _bytes(kv_bytes[i]),
                _tokens(int(kv_tok[i])) if kv_tok is not None else "-",
                f"{path.read_bw_bytes_per_s / 1e9:,.0f}", f"{path.latency_s * 1e6:.3g}", est,
            ])
    widths = [max(len(r[c]) for r in table if len(r) > c) for c in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(w) if c < 5 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))).rstrip())
    for line in unfit:
        print(line)
    if args.model:
        print(f"\nKV tokens at {ModelSpec.preset(args.model).kv_bytes_per_token:,} B/token ({args.model}, bf16 KV); "
              "read GB/s and latency are of the path to the compute tier; est = estimated figure.")
    return 0

