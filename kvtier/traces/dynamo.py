"""Agentic Mooncake rows as NVIDIA Dynamo's replay tools use them (``dynamo``, v1 and v2).

Version 1 (no header), one request per line::

    {"request_id": "a1", "session_id": "s0", "input_length": 9000, "output_length": 200,
     "hash_ids": [...], "timestamp": 0, "wait_for": ["a0"], "delay": 1500}

``timestamp`` (ms) is given for roots (rows without ``wait_for``); a dependent row starts
``delay`` (or ``tool_wait_ms``) ms after the last request in ``wait_for`` completes. Blocks
are Mooncake's 512-token prefix-chained blocks (a kvtier extension ``block_size`` on a row
overrides that).

Version 2 starts with a header line
``{"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": N, ...}``; rows carry
``play_id``, ``not_before_ms`` and ``dependencies``: a list of ``{"request_id", "trigger":
"dispatch"|"completion", "delay_ms", "relation": "sequence"|"spawn"|"join"}``.

On load, sessions are ``session_id``, else v2's ``play_id``, else the row alone: integer
ids are kept, other ids become the next free integers in order of first appearance. A
dependency must name an earlier row. A dependent row's ``timestamps_ms`` is kvtier's
extension ``kvtier_timestamp_ms`` when present (files kvtier wrote), else the lower bound
``max(dep time + delay, not_before_ms)`` with every dependency assumed to complete at once. Rows are then ordered by time.
v1 relations are inferred: same session is ``sequence``; the first request of a session
depending on another session is ``spawn`` (and sets the parent session); others ``join``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kvtier.errors import ConfigError, TraceFormatError
from kvtier.traces._parse import Row, is_id, iter_json_rows
from kvtier.traces.jsonl import MOONCAKE_BLOCK_TOKENS, json_number
from kvtier.traces.model import (
    NO_PARENT,
    RELATION_NAMES,
    RELATION_SEQUENCE,
    RELATION_SPAWN,
    TRIGGER_DISPATCH,
    TRIGGER_NAMES,
    Dep,
    Trace,
    TraceBuilder,
    check_meta,
)

SCHEMA = "dynamo.agentic_mooncake"


def is_v2_header(obj: dict) -> bool:
    return obj.get("schema") == SCHEMA


def is_v1_row(obj: dict) -> bool:
    return "request_id" in obj and ("wait_for" in obj or "session_id" in obj or "delay" in obj)


def read_dynamo(path, *, block_tokens: int | None = None) -> Trace:
    """Read agentic Mooncake v1 or v2 (v2 when the first line is its header)."""
    rows = iter_json_rows(path)
    first = next(rows, None)
    if first is None:
        raise TraceFormatError(f"{os.fspath(path)} line 1: empty file, expected agentic Mooncake rows")
    lineno, obj = first
    if is_v2_header(obj):
        h = Row(path, lineno, obj)
        version = h.integer("version")
        if version != 2:
            raise h.error("version", version, "2 (the only versioned schema kvtier reads)")
        bt = h.integer("block_size", minimum=1)
        if block_tokens is not None and block_tokens != bt:
            raise h.error("block_size", bt, f"{block_tokens} (the --block-tokens given)")
        meta = obj.get("kvtier_meta", {})
        if not isinstance(meta, dict):
            raise h.error("kvtier_meta", meta, "a JSON object")
        expected = obj.get("num_requests")
        return _read_rows(path, rows, version=2, block_tokens=bt, meta=meta, expected=expected)

    def chain():
        yield first
        yield from rows

    return _read_rows(path, chain(), version=1, block_tokens=block_tokens, meta={}, expected=None)


def _read_rows(path, rows, *, version: int, block_tokens, meta: dict, expected) -> Trace:
    b = TraceBuilder()
    id_to_row: dict = {}
    row_key: list = []  # session key of each row (str, int, or ("row", i) for a lone row)
    row_parent: list = []  # explicit parent id (int), a parent session key (tuple ("key", k)), or None
    row_ts: list[float] = []
    seen_keys: set = set()
    key_parent: dict = {}
    bt = block_tokens
    for lineno, obj in rows:
        r = Row(path, lineno, obj)
        if is_v2_header(obj):
            raise r.error("schema", obj.get("schema"), "a request row (the header may only be the first line)")
        index = len(b)
        rid = r.string_or_int("request_id")
        if rid in id_to_row:
            raise r.error("request_id", rid, "an id not used by an earlier row")
        if version == 1 and r.has("block_size"):
            row_bt = r.integer("block_size", minimum=1)
            if bt is None:
                bt = row_bt
            elif row_bt != bt:
                raise r.error("block_size", row_bt, f"{bt} (as on earlier rows or --block-tokens)")
        key = r.string_or_int("session_id", default=r.string_or_int("play_id", default=("row", index))
                              if version == 2 else ("row", index))
        if isinstance(key, int) and key < 0:
            raise r.error("session_id", key, "a string or an integer >= 0")
        new_session = key not in seen_keys
        seen_keys.add(key)

        deps = []
        if version == 1:
            wait = r.list_of("wait_for")
            delay = r.number("delay", default=r.number("tool_wait_ms", default=0.0))
            for k, dep_id in enumerate(wait):
                src = _dep_row(r, f"wait_for[{k}]", dep_id, id_to_row)
                if row_key[src] == key:
                    deps.append(Dep.sequence(src, delay))
                else:
                    deps.append(Dep.spawn(src, delay) if new_session else Dep.join(src, delay))
            tool_wait = r.number("tool_wait_ms", default=delay)
        else:
            for k, d in enumerate(r.list_of("dependencies")):
                if not isinstance(d, dict):
                    raise r.error(f"dependencies[{k}]", d, "an object with request_id, trigger, delay_ms, relation")
                dr = Row(path, lineno, d, context=f"dependencies[{k}]")
                src = _dep_row(dr, "request_id", dr.string_or_int("request_id"), id_to_row)
                trig = dr.choice("trigger", TRIGGER_NAMES, "completion")
                rel = dr.choice("relation", RELATION_NAMES, "sequence")
                deps.append(Dep(src, dr.number("delay_ms", default=0.0), trig, rel))
            seq = [d.delay_ms for d in deps if d.relation == RELATION_SEQUENCE]
            tool_wait = r.number("tool_wait_ms", default=max(seq) if seq else 0.0)

        if r.has("parent_session_id"):
            parent = r.integer("parent_session_id", minimum=NO_PARENT)
        else:
            spawn = [d for d in deps if d.relation == RELATION_SPAWN]
            if key not in key_parent and spawn and new_session:
                key_parent[key] = ("key", row_key[spawn[0].request])
            parent = key_parent.get(key)

        ts_key = "timestamp" if version == 1 else "not_before_ms"
        if r.has("kvtier_timestamp_ms"):
            ts = r.number("kvtier_timestamp_ms", minimum=None)
            latest = max((row_ts[d.request] for d in deps), default=ts)
            if ts < latest:
                raise r.error("kvtier_timestamp_ms", ts, f"a time >= its dependencies' ({latest})")
        elif not deps:
            if version == 1 and not r.has("timestamp"):
                raise r.error("timestamp", None, "a time in ms on a row without wait_for")
            ts = r.number(ts_key, default=0.0, minimum=None)
        else:
            ts = max(row_ts[d.request] + d.delay_ms for d in deps)
            if r.has(ts_key):
                ts = max(ts, r.number(ts_key, minimum=None))
        b.add(timestamp_ms=ts, session_id=0, input_length=r.integer("input_length"),
              output_length=r.integer("output_length"), tool_wait_ms=tool_wait, block_hashes=r.ids("hash_ids"),
              deps=deps)
        id_to_row[rid] = index
        row_key.append(key)
        row_parent.append(parent)
        row_ts.append(ts)
    # Integer session ids are kept; other keys get the next free integers, in order of appearance.
    ids: dict = {k: k for k in seen_keys if isinstance(k, int)}
    nxt = max(ids, default=-1) + 1
    for k in row_key:
        if k not in ids:
            ids[k] = nxt
            nxt += 1
    b._rows["session_ids"] = [ids[k] for k in row_key]
    b._rows["parent_session_ids"] = [NO_PARENT if p is None else (ids[p[1]] if isinstance(p, tuple) else p)
                                     for p in row_parent]
    if expected is not None and expected != len(b):
        raise TraceFormatError(f"{os.fspath(path)}: num_requests: the header says {expected!r}, "
                               f"the file has {len(b)} rows (truncated or appended file?)")
    fmt = "dynamo" if version == 1 else "dynamo-v2"
    bt = MOONCAKE_BLOCK_TOKENS if bt is None else bt
    try:
        return b.build(block_tokens=bt, meta={**meta, "format": fmt}, sort=True)
    except ConfigError as e:
        raise TraceFormatError(f"{os.fspath(path)}: {e}") from None


def _dep_row(r: Row, field: str, dep_id, id_to_row: dict) -> int:
    if not is_id(dep_id) or dep_id not in id_to_row:
        raise r.error(field, dep_id, "the request_id of an earlier row")
    return id_to_row[dep_id]


def write_dynamo(trace: Trace, path, *, version: int = 2) -> None:
    """Write agentic Mooncake rows (``version`` 1 or 2); request ids are row indices.

    Roots carry ``timestamp`` (v1) / ``not_before_ms`` (v2); every row also carries the
    kvtier extensions ``kvtier_timestamp_ms``, ``tool_wait_ms`` and ``parent_session_id`` so
    that kvtier reads its own files back exactly. v1 has one ``delay`` per row and only
    completion triggers: a trace that needs more raises ``ConfigError`` (write v2).
    """
    if version not in (1, 2):
        raise ConfigError(f"version: got {version!r}, expected 1 or 2")
    check_meta(trace.meta)
    do = trace.dep_offsets
    if version == 1:
        for i in range(trace.num_requests):
            lo, hi = do[i], do[i + 1]
            if hi > lo and (np.any(trace.dep_triggers[lo:hi] == TRIGGER_DISPATCH)
                            or np.unique(trace.dep_delay_ms[lo:hi]).shape[0] > 1):
                raise ConfigError(f"request {i}: dependencies with dispatch triggers or different delays "
                                  "cannot be written as agentic Mooncake v1, expected --to dynamo-v2")
    tmp = os.fspath(path) + ".tmp"
    bo = trace.block_offsets
    with open(tmp, "w", encoding="utf-8") as f:
        if version == 2:
            f.write(json.dumps({"schema": SCHEMA, "version": 2, "block_size": trace.block_tokens,
                                "num_requests": trace.num_requests, "kvtier_meta": trace.meta}, sort_keys=True) + "\n")
        for i in range(trace.num_requests):
            lo, hi = int(do[i]), int(do[i + 1])
            ts = json_number(float(trace.timestamps_ms[i]))
            row = {"request_id": i, "session_id": int(trace.session_ids[i])}
            if version == 2:
                row["play_id"] = int(trace.session_ids[i])
            row.update(input_length=int(trace.input_lengths[i]), output_length=int(trace.output_lengths[i]),
                       hash_ids=trace.block_hashes[bo[i] : bo[i + 1]].tolist())
            if hi == lo:
                row["timestamp" if version == 1 else "not_before_ms"] = ts
            elif version == 1:
                row["wait_for"] = trace.dep_requests[lo:hi].tolist()
                row["delay"] = json_number(float(trace.dep_delay_ms[lo]))
            else:
                row["dependencies"] = [
                    {"request_id": int(trace.dep_requests[k]), "trigger": TRIGGER_NAMES[trace.dep_triggers[k]],
                     "delay_ms": json_number(float(trace.dep_delay_ms[k])),
                     "relation": RELATION_NAMES[trace.dep_relations[k]]}
                    for k in range(lo, hi)
                ]
            if version == 1 and trace.block_tokens != MOONCAKE_BLOCK_TOKENS:
                row["block_size"] = trace.block_tokens
            row["kvtier_timestamp_ms"] = ts
            row["tool_wait_ms"] = json_number(float(trace.tool_wait_ms[i]))
            row["parent_session_id"] = int(trace.parent_session_ids[i])
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
