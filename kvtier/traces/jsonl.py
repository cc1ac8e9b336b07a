"""kvtier's JSONL trace and the Mooncake FAST'25 JSONL it extends.

Mooncake rows: ``{"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]}``
with prefix-chained ids of 512-token blocks. kvtier's JSONL is the same rows plus optional
``session_id``, ``parent_session_id``, ``tool_wait_ms`` and ``deps`` (a list of
``{"request": row, "delay_ms": x, "trigger": "completion"|"dispatch", "relation":
"sequence"|"spawn"|"join"}``), preceded by one header line::

    {"format": "kvtier-trace", "version": 1, "block_tokens": 64, "num_requests": N, "meta": {...}}

A Mooncake reader therefore reads kvtier's rows, and kvtier's rows are Mooncake rows.

``session_id`` and ``parent_session_id`` may be strings or any JSON scalar (merged and
exported traces name sessions ``"trace_0012"``): ``kvtier.traces.sessions`` maps them to
integers and keeps the names in ``meta["session_names"]``; the Mooncake writer writes the
names back.
"""

from __future__ import annotations

import json
import os

from kvtier.errors import TraceFormatError
from kvtier.traces._parse import Row, iter_json_rows
from kvtier.traces.model import NO_PARENT, RELATION_NAMES, TRIGGER_NAMES, Dep, Trace, TraceBuilder, check_meta
from kvtier.traces.sessions import SESSION_NAMES, SessionNamer, row_name
from kvtier.validation import check_number

HEADER_FORMAT = "kvtier-trace"
VERSION = 1
MOONCAKE_BLOCK_TOKENS = 512  # Mooncake FAST'25 release: "block size 512 tokens"


def is_kvtier_header(obj: dict) -> bool:
    return obj.get("format") == HEADER_FORMAT


def read_kvtier(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    """Read kvtier JSONL (header line required). ``block_tokens``, if given, must match."""
    rows = iter_json_rows(path, progress)
    try:
        lineno, header = next(rows)
    except StopIteration:
        raise TraceFormatError(f"{os.fspath(path)} line 1: empty file, expected a kvtier-trace header") from None
    h = Row(path, lineno, header)
    if not is_kvtier_header(header):
        raise h.error("format", header.get("format"), f'"{HEADER_FORMAT}" (a kvtier JSONL header line)')
    version = h.integer("version")
    if version != VERSION:
        raise h.error("version", version, f"{VERSION}")
    bt = h.integer("block_tokens", minimum=1)
    if block_tokens is not None and block_tokens != bt:
        raise h.error("block_tokens", bt, f"{block_tokens} (the --block-tokens given)")
    expected = h.integer("num_requests")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise h.error("meta", meta, "a JSON object")
    trace = _read_rows(path, rows, block_tokens=bt, meta=meta, fmt="kvtier", expected=expected)
    return trace


def read_mooncake(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    """Read Mooncake JSONL (no header). Block size defaults to 512 tokens; each row without a
    ``session_id`` is its own session. Rows are sorted by timestamp (stable) if needed."""
    bt = MOONCAKE_BLOCK_TOKENS if block_tokens is None else block_tokens
    return _read_rows(path, iter_json_rows(path, progress), block_tokens=bt, meta={}, fmt="mooncake", expected=None)


def _read_rows(path, rows, *, block_tokens: int, meta: dict, fmt: str, expected: int | None) -> Trace:
    b = TraceBuilder()
    namer = SessionNamer()
    last_lineno = 1
    last_ts = 0.0
    for lineno, obj in rows:
        last_lineno = lineno
        r = Row(path, lineno, obj)
        if is_kvtier_header(obj):
            raise r.error("format", obj.get("format"), "a request row (a header may only be the first line)")
        index = len(b)
        deps = []
        for k, d in enumerate(r.list_of("deps")):
            if not isinstance(d, dict):
                raise r.error(f"deps[{k}]", d, "an object with request, delay_ms, trigger, relation")
            dr = Row(path, lineno, d, context=f"deps[{k}]")
            src = dr.integer("request")
            if src >= index:
                raise dr.error("request", src, f"an earlier row (< {index})")
            deps.append(Dep(src, dr.number("delay_ms", default=0.0), dr.choice("trigger", TRIGGER_NAMES, "completion"),
                            dr.choice("relation", RELATION_NAMES, "sequence")))
        ts = r.number("timestamp", minimum=None)
        if fmt == "kvtier" and index and ts < last_ts:
            # kvtier's own files are written in time order; Mooncake files are sorted on load
            raise r.error("timestamp", ts, f"a time >= the previous row's ({last_ts}): rows in time order")
        last_ts = ts
        namer.add_row(row_name(r, "session_id"), row_name(r, "parent_session_id"))
        b.add(
            timestamp_ms=ts,
            session_id=0,  # set from the names once every row is read
            input_length=r.integer("input_length"),
            output_length=r.integer("output_length"),
            tool_wait_ms=r.number("tool_wait_ms", default=0.0),
            block_hashes=r.ids("hash_ids"),
            deps=deps,
        )
    if expected is not None and len(b) != expected:
        raise TraceFormatError(f"{os.fspath(path)} line {last_lineno}: num_requests: the header says {expected}, "
                               f"the file has {len(b)} rows (truncated or appended file?)")
    sessions, parents, names = namer.resolve()
    b.set_sessions(sessions, parents)
    if names is not None:
        meta = {**meta, SESSION_NAMES: names}
    return b.build(block_tokens=block_tokens, meta={**meta, "format": fmt} if fmt != "kvtier" else meta,
                   sort=fmt != "kvtier")


def json_number(x: float):
    """A float as JSON: integral values as ints (shorter, and Mooncake writes ints)."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def write_kvtier(trace: Trace, path, *, mooncake_only: bool = False) -> None:
    """Write kvtier JSONL (header + rows). ``mooncake_only`` writes bare Mooncake rows instead
    (no header, no kvtier fields): readable by any Mooncake tool, lossy for kvtier's fields;
    a trace whose sessions have names (``meta["session_names"]``) keeps them as each row's
    ``session_id``."""
    check_meta(trace.meta)
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        if not mooncake_only:
            header = {"format": HEADER_FORMAT, "version": VERSION, "block_tokens": trace.block_tokens,
                      "num_requests": trace.num_requests, "meta": trace.meta}
            f.write(json.dumps(header) + "\n")
        ts = trace.timestamps_ms.tolist()
        sess = trace.session_ids.tolist()
        par = trace.parent_session_ids.tolist()
        inl = trace.input_lengths.tolist()
        outl = trace.output_lengths.tolist()
        wait = trace.tool_wait_ms.tolist()
        bo = trace.block_offsets
        do = trace.dep_offsets.tolist()
        names = trace.meta.get(SESSION_NAMES) if mooncake_only else None
        names = names if isinstance(names, list) else None
        for i in range(trace.num_requests):
            row = {"timestamp": json_number(check_number(ts[i], "timestamp")), "input_length": inl[i],
                   "output_length": outl[i], "hash_ids": trace.block_hashes[bo[i] : bo[i + 1]].tolist()}
            if names is not None:
                name = names[sess[i]] if sess[i] < len(names) else sess[i]
                if name is not None:  # an anonymous session is a row of its own again
                    row["session_id"] = name
            if not mooncake_only:
                row["session_id"] = sess[i]
                if par[i] != NO_PARENT:
                    row["parent_session_id"] = par[i]
                if wait[i]:
                    row["tool_wait_ms"] = json_number(wait[i])
                if do[i + 1] > do[i]:
                    row["deps"] = [
                        {"request": int(trace.dep_requests[k]), "delay_ms": json_number(trace.dep_delay_ms[k]),
                         "trigger": TRIGGER_NAMES[trace.dep_triggers[k]],
                         "relation": RELATION_NAMES[trace.dep_relations[k]]}
                        for k in range(do[i], do[i + 1])
                    ]
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def write_mooncake(trace: Trace, path) -> None:
    write_kvtier(trace, path, mooncake_only=True)
