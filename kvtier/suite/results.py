"""The results folder: ``results.json``, ``results.csv``, ``report.md`` and the PNG plots.

``results.json`` is the whole document ``run_suite`` returns (config, kvtier version and
git revision under ``meta``). ``results.csv`` has one row per simulation: its key and
every summary scalar (dicts flattened as ``name.key``), with a header line recording the
version, revision and config as a ``#`` comment.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from pathlib import Path

from kvtier.errors import ConfigError


def default_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def csv_rows(doc) -> list[dict]:
    rows = []
    for r in doc["results"]:
        row = {k: r[k] for k in ("model", "target", "agents", "variant", "policy", "planner", "chips", "closed_loop")}
        for k, v in r["summary"].items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    row[f"{k}.{kk}"] = vv
            else:
                row[k] = v
        d = r["derived"]
        for k in ("turn_long_mean_s", "turn_short_mean_s", "decode_long_tokens_per_s_p50",
                  "decode_short_tokens_per_s_p50", "streamed_long_share"):
            row[k] = d.get(k)
        rows.append(row)
    return rows


def write_csv(doc, path) -> None:
    rows = csv_rows(doc)
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    meta = doc["meta"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(f"# kvtier {meta['kvtier_version']} git {meta['git_revision']} config "
                f"{json.dumps(meta['config'], sort_keys=True)}\n")
        w = csv.DictWriter(f, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                        for k, v in r.items()})


def write_results(doc, out_dir, *, plots: bool = True) -> Path:
    """Write the results folder ``out_dir`` (created; existing files are replaced)."""
    from kvtier.suite.report import render_report

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out: cannot create {out} ({e.strerror})") from None
    if plots:
        from kvtier.suite.plots import plot_all

        doc["plots"] = plot_all(doc, out)
    else:
        doc["plots"] = []
    (out / "results.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=_jsonable), encoding="utf-8")
    write_csv(doc, out / "results.csv")
    (out / "report.md").write_text(render_report(doc), encoding="utf-8")
    return out


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")
