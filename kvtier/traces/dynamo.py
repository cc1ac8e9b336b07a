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
``play_id`` (a root agent with its sub-agents), ``session_id``, ``model``, ``not_before_ms``
and ``dependencies``: a list of ``{"request_id", "trigger": "dispatch"|"completion",
"delay_ms", "relation": "sequence"|"spawn"|"join"}``.

On load, sessions are ``session_id``, else v2's ``play_id``, else the row alone, named by
the rule of ``kvtier.traces.sessions`` (integer ids kept; otherwise dense integers in order
of first appearance, names in ``meta["session_names"]``). A dependency must name an earlier
row. A dependent row's ``timestamps_ms`` is kvtier's extension ``kvtier_timestamp_ms`` when
present (files kvtier wrote), else the lower bound ``max(dep time + delay, not_before_ms)``
with every dependency assumed to complete at once. Rows are then ordered by time.
v1 relations are inferred: same session is ``sequence``; the first request of a session
depending on another session is ``spawn`` (and sets the parent session); others ``join``.

Writing v2 (``write_dynamo``) gives what NVIDIA's agentic Mooncake reader (aisimulate's
``agentic_mooncake`` source) accepts as is: the header says ``"hash_id_scope": "local"``
(the ids are one namespace for the whole file) and ``"source": {"format": "kvtier",
"digest": ...}`` (``trace_digest``: the SHA-256 of the trace's columns);
request, session and play ids are strings; every row has ``model`` and ``not_before_ms``;
``hash_ids`` has one id per started block, ``ceil(input_length / block_size)``, so a
partial last block gets an id of its own (a fresh id used nowhere else: kvtier does not
hash partial blocks, so they never hit, as in kvtier's own replay); and a play is a
root session with every session joined to it by a parent link or a dependency, so no
dependency crosses plays. Fields kvtier needs to read its file back exactly ride along
under ``kvtier_`` names, which the peer ignores: ``kvtier_session_id``,
``kvtier_parent_session_id``, ``kvtier_timestamp_ms``, ``kvtier_tool_wait_ms``, and
``kvtier_num_blocks`` (how many of ``hash_ids`` are kvtier's own blocks) or
``kvtier_hash_ids`` (kvtier's ids when it has more than the started blocks); the header's
``num_requests`` and ``kvtier_meta`` too.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from kvtier.errors import ConfigError, TraceFormatError
from kvtier.traces._parse import Row, is_id, iter_json_rows
from kvtier.traces.jsonl import MOONCAKE_BLOCK_TOKENS, json_number
from kvtier.traces.model import (
    COLUMN_NAMES,
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
from kvtier.traces.sessions import SESSION_NAMES, SessionNamer, anonymous_key, row_name, session_labels

SCHEMA = "dynamo.agentic_mooncake"


def is_v2_header(obj: dict) -> bool:
    return obj.get("schema") == SCHEMA


def is_v1_row(obj: dict) -> bool:
    return "request_id" in obj and ("wait_for" in obj or "session_id" in obj or "delay" in obj)


def read_dynamo(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    """Read agentic Mooncake v1 or v2 (v2 when the first line is its header)."""
    rows = iter_json_rows(path, progress)
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
    namer = SessionNamer()
    id_to_row: dict = {}
    row_ts: list[float] = []
    seen_sessions: set = set()
    key_parent: dict = {}  # session name -> the name of the session that spawned it
    kvtier_ids: tuple[list[int], list[int]] | None = None  # (sessions, parents) of a file kvtier wrote
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
        named = row_name(r, "session_id")
        if named is None and version == 2:
            named = row_name(r, "play_id")
        key = named if named is not None else anonymous_key(index)
        new_session = key not in seen_sessions
        seen_sessions.add(key)

        deps = []
        if version == 1:
            wait = r.list_of("wait_for")
            delay = r.number("delay", default=r.number("tool_wait_ms", default=0.0))
            for k, dep_id in enumerate(wait):
                src = _dep_row(r, f"wait_for[{k}]", dep_id, id_to_row)
                if namer.session_of(src) == key:
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
            tool_wait = r.number("kvtier_tool_wait_ms",
                                 default=r.number("tool_wait_ms", default=max(seq) if seq else 0.0))

        parent_field = "kvtier_parent_session_id" if r.has("kvtier_parent_session_id") else "parent_session_id"
        if index == 0 and r.has("kvtier_session_id"):
            kvtier_ids = ([], [])
        if kvtier_ids is not None:  # kvtier's own ids, as it wrote them
            kvtier_ids[0].append(r.integer("kvtier_session_id"))
            kvtier_ids[1].append(r.integer(parent_field, default=NO_PARENT, minimum=NO_PARENT))
        if r.has(parent_field):
            parent = row_name(r, parent_field)
        else:
            spawn = [d for d in deps if d.relation == RELATION_SPAWN]
            if key not in key_parent and spawn and new_session:
                key_parent[key] = namer.session_of(spawn[0].request)
            parent = key_parent.get(key)
        namer.add_row(named, parent)

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
              output_length=r.integer("output_length"), tool_wait_ms=tool_wait, block_hashes=_own_blocks(r),
              deps=deps)
        id_to_row[rid] = index
        row_ts.append(ts)
    if kvtier_ids is not None:
        b.set_sessions(*kvtier_ids)
    else:
        sessions, parents, names = namer.resolve()
        b.set_sessions(sessions, parents)
        if names is not None:
            meta = {**meta, SESSION_NAMES: names}
    if expected is not None and expected != len(b):
        raise TraceFormatError(f"{os.fspath(path)}: num_requests: the header says {expected!r}, "
                               f"the file has {len(b)} rows (truncated or appended file?)")
    fmt = "dynamo" if version == 1 else "dynamo-v2"
    bt = MOONCAKE_BLOCK_TOKENS if bt is None else bt
    try:
        return b.build(block_tokens=bt, meta={**meta, "format": fmt}, sort=True)
    except ConfigError as e:
        raise TraceFormatError(f"{os.fspath(path)}: {e}") from None


def _own_blocks(r: Row) -> np.ndarray:
    """The row's block ids as kvtier had them: ``kvtier_hash_ids`` when given, else the
    first ``kvtier_num_blocks`` of ``hash_ids`` (all of them when that is absent)."""
    if r.has("kvtier_hash_ids"):
        return r.ids("kvtier_hash_ids")
    ids = r.ids("hash_ids")
    if r.has("kvtier_num_blocks"):
        k = r.integer("kvtier_num_blocks")
        if k > ids.shape[0]:
            raise r.error("kvtier_num_blocks", k, f"at most the {ids.shape[0]} hash_ids of the row")
        ids = ids[:k]
    return ids


def _dep_row(r: Row, field: str, dep_id, id_to_row: dict) -> int:
    if not is_id(dep_id) or dep_id not in id_to_row:
        raise r.error(field, dep_id, "the request_id of an earlier row")
    return id_to_row[dep_id]


#: ``model`` of exported rows when ``meta["model"]`` names none (kvtier traces carry no model).
UNSPECIFIED_MODEL = "unspecified"


def started_blocks(input_length: int, block_tokens: int) -> int:
    """Blocks an input of ``input_length`` tokens starts: ``ceil(input_length / block_tokens)``."""
    return -(-int(input_length) // int(block_tokens))


def play_roots(trace: Trace) -> np.ndarray:
    """int64[n]: for each row, the first row of its play. A play is a set of sessions
    joined by parent links or dependencies (a root agent and its sub-agents), so no
    dependency crosses plays; it is named after the session of its first row."""
    up: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while up.get(root, root) != root:
            root = up[root]
        while x != root:  # path compression
            up[x], x = root, up[x]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            up[max(ra, rb)] = min(ra, rb)

    sessions = trace.session_ids.tolist()
    for s, p in zip(sessions, trace.parent_session_ids.tolist()):
        if p != NO_PARENT:
            union(s, p)
    rows = np.repeat(np.arange(trace.num_requests, dtype=np.int64), np.diff(trace.dep_offsets))
    for i, src in zip(rows.tolist(), trace.dep_requests.tolist()):
        union(sessions[i], sessions[src])
    first_row: dict[int, int] = {}
    out = np.empty(trace.num_requests, dtype=np.int64)
    for i, s in enumerate(sessions):
        out[i] = first_row.setdefault(find(s), i)
    return out


def trace_digest(trace: Trace) -> str:
    """SHA-256 (hex) of a trace's content: its block size and every column's bytes, in
    ``COLUMN_NAMES`` order, little-endian (``meta`` left out): the ``source.digest`` a
    v2 export carries as its provenance."""
    h = hashlib.sha256(str(trace.block_tokens).encode())
    for name in COLUMN_NAMES:
        column = np.ascontiguousarray(getattr(trace, name))
        h.update(column.astype(column.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def _fresh_ids(trace: Trace, count: int) -> np.ndarray:
    """``count`` block ids that no request of ``trace`` uses (the smallest such)."""
    if count == 0:
        return np.zeros(0, np.uint64)
    used = np.unique(trace.block_hashes)
    candidates = np.arange(count + used.shape[0], dtype=np.uint64)
    return candidates[~np.isin(candidates, used, assume_unique=True)][:count]


def write_dynamo(trace: Trace, path, *, version: int = 2) -> None:
    """Write agentic Mooncake rows (``version`` 1 or 2).

    v2 is the schema the module docstring describes (string ids, ``model``,
    ``not_before_ms`` on every row, one hash id per started block, plays that no
    dependency crosses), plus ``kvtier_`` fields so that kvtier reads its file back exactly;
    a request without input tokens cannot be written (``ConfigError``: the peer refuses it).
    A row without dependencies has ``not_before_ms`` = its time; a dependent row 0, so
    its dependencies alone decide when it starts (kvtier's closed-loop replay does the
    same). v1: request and session ids are integers (row indices, session ids); roots carry
    ``timestamp``; every row also has ``kvtier_timestamp_ms``, ``tool_wait_ms`` and
    ``parent_session_id``. v1 has one ``delay`` per row and only completion triggers: a
    trace that needs more raises ``ConfigError`` (write v2).
    """
    if version not in (1, 2):
        raise ConfigError(f"version: got {version!r}, expected 1 or 2")
    check_meta(trace.meta)
    if version == 1:
        _write_v1(trace, path)
    else:
        _write_v2(trace, path)


def _write_v1(trace: Trace, path) -> None:
    do = trace.dep_offsets
    for i in range(trace.num_requests):
        lo, hi = do[i], do[i + 1]
        if hi > lo and (np.any(trace.dep_triggers[lo:hi] == TRIGGER_DISPATCH)
                        or np.unique(trace.dep_delay_ms[lo:hi]).shape[0] > 1):
            raise ConfigError(f"request {i}: dependencies with dispatch triggers or different delays "
                              "cannot be written as agentic Mooncake v1, expected --to dynamo-v2")
    tmp = os.fspath(path) + ".tmp"
    bo = trace.block_offsets
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(trace.num_requests):
            lo, hi = int(do[i]), int(do[i + 1])
            ts = json_number(float(trace.timestamps_ms[i]))
            row = {"request_id": i, "session_id": int(trace.session_ids[i]),
                   "input_length": int(trace.input_lengths[i]), "output_length": int(trace.output_lengths[i]),
                   "hash_ids": trace.block_hashes[bo[i] : bo[i + 1]].tolist()}
            if hi == lo:
                row["timestamp"] = ts
            else:
                row["wait_for"] = trace.dep_requests[lo:hi].tolist()
                row["delay"] = json_number(float(trace.dep_delay_ms[lo]))
            if trace.block_tokens != MOONCAKE_BLOCK_TOKENS:
                row["block_size"] = trace.block_tokens
            row["kvtier_timestamp_ms"] = ts
            row["tool_wait_ms"] = json_number(float(trace.tool_wait_ms[i]))
            row["parent_session_id"] = int(trace.parent_session_ids[i])
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def _write_v2(trace: Trace, path) -> None:
    bt = trace.block_tokens
    n = trace.num_requests
    if n and trace.input_lengths.min() == 0:
        i = int(np.argmin(trace.input_lengths))
        raise ConfigError(f"request {i}: input_length 0 cannot be written as agentic Mooncake v2 (NVIDIA's reader "
                          "refuses a request without input), expected input_length >= 1 on every request")
    bo, do = trace.block_offsets, trace.dep_offsets
    inl = trace.input_lengths.tolist()
    have = np.diff(bo).tolist()
    need = [started_blocks(x, bt) for x in inl]
    fresh = _fresh_ids(trace, sum(max(0, w - h) for w, h in zip(need, have)))
    next_fresh = 0
    labels = session_labels(trace)
    sessions = trace.session_ids.tolist()
    plays = play_roots(trace).tolist()
    model = trace.meta.get("model") if isinstance(trace.meta.get("model"), str) else UNSPECIFIED_MODEL
    header = {"schema": SCHEMA, "version": 2, "block_size": bt, "hash_id_scope": "local",
              "source": {"format": "kvtier", "digest": trace_digest(trace)}, "num_requests": n,
              "kvtier_meta": trace.meta}
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, sort_keys=True) + "\n")
        for i in range(n):
            lo, hi = int(do[i]), int(do[i + 1])
            ts = json_number(float(trace.timestamps_ms[i]))
            own = trace.block_hashes[bo[i] : bo[i + 1]]
            row = {"request_id": str(i), "play_id": labels[sessions[plays[i]]], "session_id": labels[sessions[i]],
                   "model": model, "input_length": inl[i], "output_length": int(trace.output_lengths[i])}
            if have[i] < need[i]:
                extra = fresh[next_fresh : next_fresh + need[i] - have[i]]
                next_fresh += need[i] - have[i]
                row["hash_ids"] = own.tolist() + extra.tolist()
                row["kvtier_num_blocks"] = have[i]
            elif have[i] > need[i]:
                row["hash_ids"] = own[: need[i]].tolist()
                row["kvtier_hash_ids"] = own.tolist()
            else:
                row["hash_ids"] = own.tolist()
            row["not_before_ms"] = ts if hi == lo else 0
            row["dependencies"] = [
                {"request_id": str(int(trace.dep_requests[k])), "trigger": TRIGGER_NAMES[trace.dep_triggers[k]],
                 "delay_ms": json_number(float(trace.dep_delay_ms[k])),
                 "relation": RELATION_NAMES[trace.dep_relations[k]]}
                for k in range(lo, hi)
            ]
            row["kvtier_session_id"] = sessions[i]
            row["kvtier_parent_session_id"] = int(trace.parent_session_ids[i])
            row["kvtier_timestamp_ms"] = ts
            row["kvtier_tool_wait_ms"] = json_number(float(trace.tool_wait_ms[i]))
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
