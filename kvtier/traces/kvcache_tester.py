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

A folder of such files (``*.json``, and gzip or zstd ones, ``*.json.gz`` / ``*.json.zst``,
sorted by name) becomes one trace: sessions interleaved by time; files are read one at a
time, so memory holds one file's JSON besides the trace being built. Ids are re-keyed to
prefix identity as each request is read (chained from a root per file, so files never
share blocks), unless a file says ``"hash_id_scope": "global"``, in which case a shared
root lets identical prefixes (tool definitions) match across files.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kvtier._kernels.traces import chain_rekey
from kvtier.errors import TraceFormatError
from kvtier.traces._parse import Row
from kvtier.traces.compressed import READ_ERRORS, open_text, strip_compressed_suffix
from kvtier.traces.model import NO_PARENT, Dep, Trace, TraceBuilder
from kvtier.traces.sessions import SESSION_NAMES

#: kv-cache-tester's trace docs: "block_size: token block size (typically 64)".
KVCT_BLOCK_TOKENS = 64
#: Root of re-keyed chains; a file's own namespace is this plus its ordinal.
KVCT_ROOT = 0x6B766374


def session_files(path) -> list[str]:
    """The session files a path stands for: itself, or a folder's ``*.json`` files
    (compressed ones too), sorted by name."""
    p = os.fspath(path)
    if os.path.isdir(p):
        files = sorted(os.path.join(p, n) for n in os.listdir(p)
                       if strip_compressed_suffix(n).endswith(".json") and os.path.isfile(os.path.join(p, n)))
        if not files:
            raise TraceFormatError(f"{p}: folder holds no session files (*.json, *.json.gz or *.json.zst)")
        return files
    return [p]


def load_session(file: str, progress=None):
    """The JSON document in ``file`` (decompressed if need be). Errors name the file and
    the line; a document cut short is reported at its last line, not past the end."""
    try:
        with open_text(file, progress) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise TraceFormatError(f"{file}: not UTF-8 text ({e.reason})") from None
    except READ_ERRORS as e:
        raise TraceFormatError(f"{file}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        end = len(text.rstrip())
        if e.pos >= end:  # the text stopped before the document did
            last = text.count("\n", 0, end) + 1
            raise TraceFormatError(f"{file} line {last}: not valid JSON (the document ends early: {e.msg})") from None
        raise TraceFormatError(f"{file} line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise TraceFormatError(f"{file} line 1: not valid JSON (nested too deeply)") from None


def looks_like_session(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("requests"), list)


def read_kvcache_tester(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    """Read one session file or a folder of them (see the module docstring); ``progress``
    (a ``ReadProgress``) is advanced by the bytes read."""
    b = TraceBuilder()
    names: list[str] = []
    bt = block_tokens
    for ordinal, file in enumerate(session_files(path)):
        obj = load_session(file, progress)
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
        label = str(obj.get("id", strip_compressed_suffix(os.path.basename(file))))
        walker = _Walker(b, file, root, names)
        walker.walk(obj["requests"], "requests", label, NO_PARENT, spawn_from=None, t0_ms=0.0)
        del obj, walker  # one file's JSON at a time
    return b.build(block_tokens=bt or KVCT_BLOCK_TOKENS, meta={"format": "kv-cache-tester", SESSION_NAMES: names},
                   sort=True)


class _Walker:
    def __init__(self, b: TraceBuilder, file: str, root: int, names: list) -> None:
        self.b, self.file, self.names = b, file, names
        self.row_ts: dict[int, float] = {}
        self.roots = np.array([root], dtype=np.uint64)
        self.span = np.zeros(2, dtype=np.int64)

    def rekeyed(self, ids: np.ndarray) -> np.ndarray:
        """A request's ids chained to prefix identity from the file's root (per request,
        so each file is re-keyed as it is read, with no pass over the whole trace)."""
        self.span[1] = ids.shape[0]
        return chain_rekey(self.span, ids, self.roots)

    def walk(self, requests, where: str, label: str, parent: int, *, spawn_from, t0_ms: float):
        """Add one session's requests; returns its last row (or None when it has none)."""
        if not isinstance(requests, list):
            raise TraceFormatError(f"{self.file}: {where}: got {type(requests).__name__}, expected a list")
        session = len(self.names)
        self.names.append(label)
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
                             tool_wait_ms=think_ms, block_hashes=self.rekeyed(r.ids("hash_ids")), deps=deps)
            self.row_ts[idx] = t_ms
            last = idx
        return last if last is not None else (pending_join[-1] if pending_join else None)

