"""Claude-Code-style session files as released with kv-cache-tester (``kv-cache-tester``).

One JSON object per conversation (one file)::

    {"id": "f64a8d4c-12d", "block_size": 64, "tool_tokens": 11899, "system_tokens": 2926,
     "requests": [{"t": 0.0, "type": "s", "in": 25259, "out": 86, "hash_ids": [1, 2, ...],
                   "think_time": 3.1, "api_time": 9.0}, ...,
                  {"type": "subagent", "requests": [...]}, ...]}

``t`` is seconds from the conversation's start; ``think_time``/``api_time`` (optional)
seconds; only full blocks are hashed. A request entry of ``"type": "subagent"`` (or with a
``subagent`` object) holds a sub-agent's own ``requests``, recursively. A sub-agent becomes
its own session whose parent is the conversation; its first request depends (``spawn``)
on the parent's last request before the marker and the parent's next request waits
(``join``) for the sub-agent's last. Consecutive requests of a session depend
(``sequence``) on the previous one with ``think_time`` as delay and as ``tool_wait_ms``.
If a sub-agent's times start before the spawning request, they are taken as relative to
it (the spawning request's ``t`` is added); a request recorded earlier than one of its
dependencies is moved to that dependency's time, so rows stay in dependency order.

A folder of such files (``*.json``, sorted by name) becomes one trace: sessions
interleaved by time. Ids are re-keyed to prefix identity (chained from a root per file,
so files never share blocks), unless a file says ``"hash_id_scope": "global"``, in which
case a shared root lets identical prefixes (tool definitions) match across files.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kvtier._kernels.traces import chain_rekey
from kvtier.errors import TraceFormatError
from kvtier.traces._parse import Row
from kvtier.traces.model import NO_PARENT, Dep, Trace, TraceBuilder

#: kv-cache-tester's trace docs: "block_size: token block size (typically 64)".
KVCT_BLOCK_TOKENS = 64
#: Root of re-keyed chains; a file's own namespace is this plus its ordinal.
KVCT_ROOT = 0x6B766374


def session_files(path) -> list[str]:
    p = os.fspath(path)
    if os.path.isdir(p):
        files = sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".json"))
        if not files:
            raise TraceFormatError(f"{p}: folder holds no *.json session files")
        return files
    return [p]


def looks_like_session(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("requests"), list)


def read_kvcache_tester(path, *, block_tokens: int | None = None) -> Trace:
    """Read one session file or a folder of them (see the module docstring)."""
    b = TraceBuilder()
    roots: list[int] = []
    names: list[str] = []
    bt = block_tokens
    for ordinal, file in enumerate(session_files(path)):
        try:
            with open(file, encoding="utf-8") as f:
                obj = json.load(f)
        except OSError as e:
            raise TraceFormatError(f"{file}: cannot open: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise TraceFormatError(f"{file} line {e.lineno}: not valid JSON ({e.msg})") from None
        except (UnicodeDecodeError, RecursionError) as e:
            raise TraceFormatError(f"{file} line 1: not a JSON document ({e})") from None
        top = Row(file, None, obj if isinstance(obj, dict) else {})
        if not looks_like_session(obj):
            raise top.error("requests", obj.get("requests") if isinstance(obj, dict) else obj,
                            "a session object with a list of requests")
        file_bt = top.integer("block_size", default=KVCT_BLOCK_TOKENS, minimum=1)
        if bt is None:
            bt = file_bt
        elif file_bt != bt and "block_size" in obj:
            raise top.error("block_size", file_bt, f"{bt} (as in the other files or --block-tokens)")
        scope = obj.get("hash_id_scope", "conversation")
        root = KVCT_ROOT if scope == "global" else KVCT_ROOT + 1 + ordinal
        label = str(obj.get("id", os.path.basename(file)))
        walker = _Walker(b, file, root, roots, names)
        walker.walk(obj["requests"], "requests", label, NO_PARENT, spawn_from=None, t0_ms=0.0)
    trace = b.build(block_tokens=bt or KVCT_BLOCK_TOKENS, meta={"format": "kv-cache-tester", "session_names": names},
                    sort=True)
    # roots were recorded per insertion order; sorting permuted rows, so re-derive via sessions
    session_roots = np.asarray(roots, dtype=np.uint64)
    row_roots = session_roots[trace.session_ids] if trace.num_requests else np.zeros(0, np.uint64)
    return trace.replace(block_hashes=chain_rekey(trace.block_offsets, trace.block_hashes, row_roots))


class _Walker:
    def __init__(self, b: TraceBuilder, file: str, root: int, roots: list, names: list) -> None:
        self.b, self.file, self.root, self.roots, self.names = b, file, root, roots, names
        self.row_ts: dict[int, float] = {}

    def walk(self, requests, where: str, label: str, parent: int, *, spawn_from, t0_ms: float):
        """Add one session's requests; returns its last row (or None when it has none)."""
        if not isinstance(requests, list):
            raise TraceFormatError(f"{self.file}: {where}: got {type(requests).__name__}, expected a list")
        session = len(self.names)
        self.names.append(label)
        self.roots.append(self.root)
        last = None
        pending_join: list[int] = []
        num_subagents = 0
        offset = None
        for k, req in enumerate(requests):
            w = f"{where}[{k}]"
            if not isinstance(req, dict):
                raise TraceFormatError(f"{self.file}: {w}: got {type(req).__name__}, expected an object")
            if req.get("type") == "subagent" or "subagent" in req:
                sub = req if "requests" in req else req.get("subagent")
                if not looks_like_session(sub):
                    raise TraceFormatError(f"{self.file}: {w}: subagent: expected an object with a list of requests")
                num_subagents += 1
                src = last if last is not None else spawn_from
                sub_t0 = self.row_ts[src] if src is not None else t0_ms
                sub_last = self.walk(sub["requests"], f"{w}.requests", f"{label}/sa{num_subagents}", session,
                                     spawn_from=src, t0_ms=sub_t0)
                if sub_last is not None:
                    pending_join.append(sub_last)
                continue
            r = Row(self.file, None, req, context=w)
            t_ms = r.number("t") * 1000.0
            if offset is None:
                # a sub-agent whose clock restarts at 0 is placed after its spawning request
                offset = t0_ms if (spawn_from is not None and t_ms < t0_ms) else 0.0
            t_ms += offset
            think_ms = r.number("think_time", default=0.0) * 1000.0
            deps = []
            if last is not None:
                deps.append(Dep.sequence(last, think_ms))
            elif spawn_from is not None:
                deps.append(Dep.spawn(spawn_from))
            deps.extend(Dep.join(j) for j in pending_join)
            pending_join = []
            for d in deps:  # keep time order consistent with dependencies
                t_ms = max(t_ms, self.row_ts[d.request])
            idx = self.b.add(timestamp_ms=t_ms, session_id=session, parent_session_id=parent,
                             input_length=r.integer("in"), output_length=r.integer("out"),
                             tool_wait_ms=think_ms, block_hashes=r.ids("hash_ids"), deps=deps)
            self.row_ts[idx] = t_ms
            last = idx
        return last if last is not None else (pending_join[-1] if pending_join else None)

