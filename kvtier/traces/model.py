"""The in-memory trace: requests in time order, stored column by column.

A ``Trace`` is what every reader returns and every writer, the generator, ``kvtier trace
stats`` and the replay engine consume. One row per request, rows in non-decreasing
``timestamps_ms`` order. A request's input blocks are a CSR slice::

    trace.block_hashes[trace.block_offsets[i] : trace.block_offsets[i + 1]]

Block ids carry *prefix identity*: two equal ids mean the two requests share the whole
prefix up to and including that block (the Mooncake convention, and what kvtier's chained
hashing gives). Readers of per-block formats (Bailian, kv-cache-tester) re-key their ids
on load so this holds for every trace.

Dependencies (agentic traces, closed-loop replay) are a second CSR over the rows: request
``i`` may start only after each of ``dep_requests[dep_offsets[i]:dep_offsets[i + 1]]`` (row
indices, always < i) has been dispatched (``trigger`` 1) or completed (``trigger`` 0), plus
``dep_delay_ms``. ``timestamps_ms`` of a dependent request is then the time the source
recorded, or a lower bound (see each reader), and is what an open-loop replay uses.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kvtier.errors import ConfigError
from kvtier.validation import check_int, is_int

#: ``dep_triggers`` values: the dependency releases at the source's completion or dispatch.
TRIGGER_COMPLETION = 0
TRIGGER_DISPATCH = 1
TRIGGER_NAMES = ("completion", "dispatch")
#: ``dep_relations`` values: next turn of the same session, a sub-agent's first request
#: spawned from its parent, or a parent's request that waits for its sub-agents (join).
RELATION_SEQUENCE = 0
RELATION_SPAWN = 1
RELATION_JOIN = 2
RELATION_NAMES = ("sequence", "spawn", "join")

#: ``parent_session_ids`` value of a session that has no parent.
NO_PARENT = -1

_ROW_DTYPES = {  # one entry per request
    "timestamps_ms": np.float64, "session_ids": np.int64, "parent_session_ids": np.int64,
    "input_lengths": np.int64, "output_lengths": np.int64, "tool_wait_ms": np.float64,
}
_CSR_DTYPES = {  # the CSR of input blocks, then the CSR of dependencies
    "block_offsets": np.int64, "block_hashes": np.uint64,
    "dep_offsets": np.int64, "dep_requests": np.int64, "dep_delay_ms": np.float64,
    "dep_triggers": np.uint8, "dep_relations": np.uint8,
}
#: Each column's dtype, in the order binary files store the columns.
COLUMN_DTYPES = {name: np.dtype(dtype) for name, dtype in {**_ROW_DTYPES, **_CSR_DTYPES}.items()}
#: Column names in the order binary files store them.
COLUMN_NAMES = tuple(COLUMN_DTYPES)
#: The columns with one entry per request (the others are the two CSRs).
ROW_COLUMNS = tuple(_ROW_DTYPES)


class Dep(NamedTuple):
    """One dependency of a request: it may start ``delay_ms`` after row ``request`` (an
    earlier row) completes (``trigger`` ``TRIGGER_COMPLETION``) or is dispatched
    (``TRIGGER_DISPATCH``); ``relation`` says why (``RELATION_*``). A plain tuple of the
    four values is accepted wherever a ``Dep`` is."""

    request: int
    delay_ms: float
    trigger: int
    relation: int

    @classmethod
    def sequence(cls, request: int, delay_ms: float = 0.0) -> Dep:
        """The next turn of the same session, after ``request`` completes."""
        return cls(request, delay_ms, TRIGGER_COMPLETION, RELATION_SEQUENCE)

    @classmethod
    def spawn(cls, request: int, delay_ms: float = 0.0) -> Dep:
        """A sub-agent's first request, after the parent's ``request`` completes."""
        return cls(request, delay_ms, TRIGGER_COMPLETION, RELATION_SPAWN)

    @classmethod
    def join(cls, request: int, delay_ms: float = 0.0) -> Dep:
        """A parent's request that waits for a sub-agent's last ``request`` to complete."""
        return cls(request, delay_ms, TRIGGER_COMPLETION, RELATION_JOIN)


class RequestView(NamedTuple):
    """One request of a trace, as plain Python values (for tests, printing and writers)."""

    timestamp_ms: float
    session_id: int
    parent_session_id: int
    input_length: int
    output_length: int
    tool_wait_ms: float
    block_hashes: np.ndarray
    deps: list[Dep]


@dataclass(frozen=True, kw_only=True, eq=False)
class Trace:
    """A trace of LLM requests, columnar (numpy arrays), rows in time order.

    Columns (``n = num_requests``): ``timestamps_ms`` float64[n] (arrival, ms, finite,
    non-decreasing), ``session_ids`` int64[n] (agent/conversation, >= 0),
    ``parent_session_ids`` int64[n] (the session that spawned this one, or ``-1``),
    ``input_lengths`` / ``output_lengths`` int64[n] (tokens, >= 0), ``tool_wait_ms``
    float64[n] (time the agent spent in tools before sending this request, >= 0; 0 when
    unknown), ``block_offsets`` int64[n + 1] and ``block_hashes`` uint64[total] (CSR of the
    input blocks, prefix identity), and the dependency CSR ``dep_offsets`` int64[n + 1],
    ``dep_requests`` int64[m], ``dep_delay_ms`` float64[m], ``dep_triggers`` uint8[m],
    ``dep_relations`` uint8[m] (empty when the trace has no dependencies).

    ``block_tokens`` is the tokens per block; block ``j`` of request ``i`` covers tokens
    ``[j * block_tokens, min((j + 1) * block_tokens, input_lengths[i]))``. ``meta`` holds
    JSON-serialisable provenance: ``format``, ``generator``, ``config``, ``seed``, ...

    Arrays are converted to their dtype and validated on construction (``ConfigError``
    naming the column otherwise) and are treated as read-only afterwards.
    """

    block_tokens: int
    timestamps_ms: np.ndarray
    session_ids: np.ndarray
    parent_session_ids: np.ndarray
    input_lengths: np.ndarray
    output_lengths: np.ndarray
    tool_wait_ms: np.ndarray
    block_offsets: np.ndarray
    block_hashes: np.ndarray
    dep_offsets: np.ndarray | None = None
    dep_requests: np.ndarray | None = None
    dep_delay_ms: np.ndarray | None = None
    dep_triggers: np.ndarray | None = None
    dep_relations: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_tokens", check_int(self.block_tokens, "block_tokens"))
        n = len(np.asarray(self.timestamps_ms))
        if self.dep_offsets is None:
            for name in ("dep_requests", "dep_delay_ms", "dep_triggers", "dep_relations"):
                if getattr(self, name) is not None and len(getattr(self, name)):
                    raise ConfigError(f"{name}: given without dep_offsets")
            object.__setattr__(self, "dep_offsets", np.zeros(n + 1, np.int64))
            for name in ("dep_requests", "dep_delay_ms", "dep_triggers", "dep_relations"):
                object.__setattr__(self, name, np.zeros(0, COLUMN_DTYPES[name]))
        for name, dtype in COLUMN_DTYPES.items():
            value = getattr(self, name)
            if value is None:
                raise ConfigError(f"{name}: missing, expected an array")
            arr = _as_column(name, value, dtype)
            if name in ROW_COLUMNS and arr.shape[0] != n:
                raise ConfigError(f"{name}: got {arr.shape[0]} rows, expected {n} (one per request)")
            object.__setattr__(self, name, arr)
        if not isinstance(self.meta, dict):
            raise ConfigError(f"meta: got {type(self.meta).__name__}, expected a dict")
        _check_csr("block_offsets", self.block_offsets, n, self.block_hashes.shape[0])
        m = self.dep_requests.shape[0]
        _check_csr("dep_offsets", self.dep_offsets, n, m)
        for name in ("dep_delay_ms", "dep_triggers", "dep_relations"):
            if getattr(self, name).shape[0] != m:
                raise ConfigError(f"{name}: got {getattr(self, name).shape[0]} entries, expected {m}")
        ts = self.timestamps_ms
        if n and not np.all(np.isfinite(ts)):
            raise ConfigError(f"timestamps_ms: row {int(np.argmin(np.isfinite(ts)))} is not finite")
        if n > 1 and np.any(np.diff(ts) < 0):
            row = int(np.argmax(np.diff(ts) < 0)) + 1
            raise ConfigError(f"timestamps_ms: row {row} ({ts[row]}) is earlier than row {row - 1} ({ts[row - 1]}), "
                              "expected non-decreasing times")
        for name in ("session_ids", "input_lengths", "output_lengths"):
            _check_min(name, getattr(self, name), 0)
        _check_min("parent_session_ids", self.parent_session_ids, NO_PARENT)
        for name in ("tool_wait_ms", "dep_delay_ms"):
            arr = getattr(self, name)
            if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0):
                bad = int(np.argmax(~(np.isfinite(arr) & (arr >= 0))))
                raise ConfigError(f"{name}: entry {bad} is {arr[bad]}, expected a finite value >= 0")
        if m:
            rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.dep_offsets))
            bad = (self.dep_requests < 0) | (self.dep_requests >= rows)
            if np.any(bad):
                k = int(np.argmax(bad))
                raise ConfigError(f"dep_requests: request {rows[k]} depends on row {self.dep_requests[k]}, "
                                  "expected an earlier row")
            if self.dep_triggers.max() > TRIGGER_DISPATCH:
                raise ConfigError(f"dep_triggers: got {self.dep_triggers.max()}, expected 0 or 1")
            if self.dep_relations.max() > RELATION_JOIN:
                raise ConfigError(f"dep_relations: got {self.dep_relations.max()}, expected 0, 1 or 2")

    # ------------------------------------------------------------------ shape
    @property
    def num_requests(self) -> int:
        return int(self.timestamps_ms.shape[0])

    def __len__(self) -> int:
        return self.num_requests

    @property
    def num_block_accesses(self) -> int:
        """Total input blocks over all requests (``len(block_hashes)``)."""
        return int(self.block_hashes.shape[0])

    @property
    def num_sessions(self) -> int:
        return int(np.unique(self.session_ids).shape[0])

    @property
    def num_unique_blocks(self) -> int:
        return int(np.unique(self.block_hashes).shape[0])

    @property
    def has_dependencies(self) -> bool:
        return bool(self.dep_requests.shape[0])

    def blocks_per_request(self) -> np.ndarray:
        """int64[n]: number of input blocks of each request."""
        return np.diff(self.block_offsets)

    def blocks(self, i: int) -> np.ndarray:
        """Request ``i``'s input block ids (a read-only view)."""
        return self.block_hashes[self.block_offsets[i] : self.block_offsets[i + 1]]

    def request(self, i: int) -> RequestView:
        """Row ``i`` as plain values; ``IndexError`` outside ``[-n, n)``."""
        n = self.num_requests
        if not -n <= i < n:
            raise IndexError(f"request {i} out of range for a trace of {n} requests")
        i %= n
        lo, hi = self.dep_offsets[i], self.dep_offsets[i + 1]
        deps = [
            Dep(int(self.dep_requests[k]), float(self.dep_delay_ms[k]), int(self.dep_triggers[k]),
                int(self.dep_relations[k]))
            for k in range(lo, hi)
        ]
        return RequestView(
            float(self.timestamps_ms[i]), int(self.session_ids[i]), int(self.parent_session_ids[i]),
            int(self.input_lengths[i]), int(self.output_lengths[i]), float(self.tool_wait_ms[i]),
            self.blocks(i), deps,
        )

    def columns(self) -> dict[str, np.ndarray]:
        """Every column by name (the arrays themselves, not copies)."""
        return {name: getattr(self, name) for name in COLUMN_NAMES}

    # ------------------------------------------------------------------ comparisons and transforms
    def equals(self, other: Trace, *, meta: bool = True) -> bool:
        """True when every column is equal bit for bit (and ``meta`` too, unless ``meta=False``)."""
        if not isinstance(other, Trace) or self.block_tokens != other.block_tokens:
            return False
        for name in COLUMN_NAMES:
            a, b = getattr(self, name), getattr(other, name)
            if a.shape != b.shape or not np.array_equal(a.view(_bits(a)), b.view(_bits(b))):
                return False
        return not meta or _json_equal(self.meta, other.meta)

    def replace(self, **changes) -> Trace:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def densified(self) -> Trace:
        """A copy whose block ids are 0..U-1 in order of first appearance (identity kept)."""
        _, first, inverse = np.unique(self.block_hashes, return_index=True, return_inverse=True)
        rank = np.empty(first.shape[0], np.uint64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0], dtype=np.uint64)
        return self.replace(block_hashes=rank[inverse.reshape(-1)])

    def head(self, num_requests: int) -> Trace:
        """The first ``num_requests`` rows (dependencies on later rows cannot exist)."""
        k = max(0, min(int(num_requests), self.num_requests))
        d = int(self.dep_offsets[k])
        return self.replace(
            **{name: getattr(self, name)[:k] for name in ROW_COLUMNS},
            block_offsets=self.block_offsets[: k + 1],
            block_hashes=self.block_hashes[: self.block_offsets[k]],
            dep_offsets=self.dep_offsets[: k + 1],
            dep_requests=self.dep_requests[:d], dep_delay_ms=self.dep_delay_ms[:d],
            dep_triggers=self.dep_triggers[:d], dep_relations=self.dep_relations[:d],
        )

    def __repr__(self) -> str:
        return (f"Trace(requests={self.num_requests}, sessions={self.num_sessions}, "
                f"block_accesses={self.num_block_accesses}, block_tokens={self.block_tokens}, "
                f"format={self.meta.get('format')!r})")


class TraceBuilder:
    """Accumulates requests row by row (readers and the generator) and builds a ``Trace``.

    Rows may be added out of time order; ``build(sort=True)`` orders them by timestamp
    (stable, so equal times keep insertion order) and remaps dependency indices. Block ids
    are appended into a growable uint64 buffer, so memory is the trace's own size.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list] = {name: [] for name in ROW_COLUMNS}
        self._blocks = _Growable(np.uint64)
        self._block_counts: list[int] = []
        self._dep_counts: list[int] = []
        self._dep_requests: list[int] = []
        self._dep_delay_ms: list[float] = []
        self._dep_triggers: list[int] = []
        self._dep_relations: list[int] = []

    def __len__(self) -> int:
        return len(self._block_counts)

    def add(self, *, timestamp_ms: float, session_id: int, input_length: int, output_length: int,
            block_hashes, parent_session_id: int = NO_PARENT, tool_wait_ms: float = 0.0,
            deps=()) -> int:
        """Append one request; returns its (insertion) index. ``deps``: ``Dep`` values (or
        ``(row, delay_ms, trigger, relation)`` tuples) naming earlier insertion indices.
        Values are checked when the trace is built; block ids must already be a sequence of
        non-negative ints."""
        r = self._rows
        r["timestamps_ms"].append(timestamp_ms)
        r["session_ids"].append(session_id)
        r["parent_session_ids"].append(parent_session_id)
        r["input_lengths"].append(input_length)
        r["output_lengths"].append(output_length)
        r["tool_wait_ms"].append(tool_wait_ms)
        self._block_counts.append(self._blocks.extend(block_hashes))
        for row, delay_ms, trigger, relation in deps:
            self._dep_requests.append(row)
            self._dep_delay_ms.append(delay_ms)
            self._dep_triggers.append(trigger)
            self._dep_relations.append(relation)
        self._dep_counts.append(len(deps))
        return len(self._block_counts) - 1

    def set_sessions(self, session_ids: list[int], parent_session_ids: list[int]) -> None:
        """Replace every row's session and parent session id, in insertion order (for
        readers that learn the ids only once the last row is read)."""
        if len(session_ids) != len(self) or len(parent_session_ids) != len(self):
            raise ConfigError(f"set_sessions: got {len(session_ids)} and {len(parent_session_ids)} ids, "
                              f"expected {len(self)} (one per row)")
        self._rows["session_ids"] = list(session_ids)
        self._rows["parent_session_ids"] = list(parent_session_ids)

    def build(self, *, block_tokens: int, meta: dict | None = None, sort: bool = False) -> Trace:
        """The trace of every row added so far (``ConfigError`` if a value is invalid)."""
        try:
            cols = {name: np.asarray(vals, dtype=COLUMN_DTYPES[name]) if vals else np.zeros(0, COLUMN_DTYPES[name])
                    for name, vals in self._rows.items()}
            dep_requests = np.asarray(self._dep_requests, np.int64)
            dep_delay = np.asarray(self._dep_delay_ms, np.float64)
            dep_triggers = np.asarray(self._dep_triggers, np.uint8)
            dep_relations = np.asarray(self._dep_relations, np.uint8)
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"TraceBuilder: a row value is not a number of the column's type ({e})") from None
        block_offsets = _offsets(self._block_counts)
        hashes = self._blocks.array()
        dep_offsets = _offsets(self._dep_counts)
        n = len(self)
        if sort and n > 1 and np.any(np.diff(cols["timestamps_ms"]) < 0):
            order = np.argsort(cols["timestamps_ms"], kind="stable")
            new_index = np.empty(n, np.int64)
            new_index[order] = np.arange(n, dtype=np.int64)
            cols = {k: v[order] for k, v in cols.items()}
            hashes, block_offsets = _gather_csr(hashes, block_offsets, order)
            dep_idx, dep_offsets = _gather_csr(np.arange(dep_requests.shape[0], dtype=np.int64), dep_offsets, order)
            dep_requests = new_index[dep_requests[dep_idx]] if dep_idx.size else dep_requests
            dep_delay, dep_triggers, dep_relations = dep_delay[dep_idx], dep_triggers[dep_idx], dep_relations[dep_idx]
        return Trace(
            block_tokens=block_tokens, **cols, block_offsets=block_offsets, block_hashes=hashes,
            dep_offsets=dep_offsets, dep_requests=dep_requests, dep_delay_ms=dep_delay,
            dep_triggers=dep_triggers, dep_relations=dep_relations, meta=dict(meta or {}),
        )


# ---------------------------------------------------------------------- helpers
class _Growable:
    """An append-only numpy buffer kept as a list of chunks (amortised O(1) extend, and no
    copy of what is already stored when it grows), joined into one array by ``array``."""

    CHUNK = 1 << 20  # entries per chunk (8 MiB of uint64)

    def __init__(self, dtype) -> None:
        self._dtype = np.dtype(dtype)
        self._chunks: list[np.ndarray] = []  # full chunks, and the current one last
        self._used = 0  # entries used in the current chunk
        self._n = 0

    def extend(self, values) -> int:
        if isinstance(values, np.ndarray):
            arr = values
        else:
            values = list(values)
            if not all(map(is_int, values)):
                bad = next(x for x in values if not is_int(x))
                raise ConfigError(f"block_hashes: got {bad!r}, expected integers in [0, 2**64)")
            try:
                arr = np.array(values, dtype=self._dtype)
            except OverflowError:
                raise ConfigError("block_hashes: expected integers in [0, 2**64), got one outside") from None
        if arr.ndim != 1:
            raise ConfigError(f"block_hashes: got shape {arr.shape}, expected a 1-D sequence")
        if arr.size and (arr.dtype.kind not in "iu" or (arr.dtype.kind == "i" and arr.min() < 0)):
            raise ConfigError(f"block_hashes: got {arr[:8].tolist()}..., expected integers in [0, 2**64)")
        k = arr.shape[0]
        done = 0
        while done < k:
            if not self._chunks or self._used == self._chunks[-1].shape[0]:
                self._chunks.append(np.empty(max(self.CHUNK, k - done), self._dtype))
                self._used = 0
            chunk = self._chunks[-1]
            take = min(k - done, chunk.shape[0] - self._used)
            chunk[self._used : self._used + take] = arr[done : done + take]
            self._used += take
            done += take
        self._n += k
        return k

    def array(self) -> np.ndarray:
        """Every entry so far as one array. The chunks are replaced by it (so memory holds
        the entries once); later ``extend`` calls start a new chunk and never write into it."""
        if not self._chunks:
            return np.zeros(0, self._dtype)
        if len(self._chunks) == 1 and self._used == self._chunks[0].shape[0]:
            return self._chunks[0]
        parts = self._chunks[:-1] + [self._chunks[-1][: self._used]]
        self._chunks = []
        out = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
        del parts
        self._chunks = [out]
        self._used = out.shape[0]
        return out


def _offsets(counts: list[int]) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    if counts:
        np.cumsum(np.asarray(counts, np.int64), out=out[1:])
    return out


#: Entries gathered per step when rows are reordered (bounds the index arrays' memory).
GATHER_BATCH = 1 << 22


def _gather_csr(values: np.ndarray, offsets: np.ndarray, order: np.ndarray):
    """Rows of a CSR in a new ``order``: returns (values, offsets). Memory: the new values
    plus index arrays of at most ``GATHER_BATCH`` entries (plus one row's)."""
    n = order.shape[0]
    counts = np.diff(offsets)[order]
    new_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    shift = offsets[:-1][order] - new_offsets[:-1]  # old position - new position, per row
    out = np.empty(int(new_offsets[-1]), values.dtype)
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(new_offsets, new_offsets[r0] + GATHER_BATCH, side="right")) - 1
        r1 = min(n, max(r1, r0 + 1))
        lo, hi = int(new_offsets[r0]), int(new_offsets[r1])
        out[lo:hi] = values[np.repeat(shift[r0:r1], counts[r0:r1]) + np.arange(lo, hi, dtype=np.int64)]
        r0 = r1
    return out, new_offsets


def _as_column(name: str, value, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ConfigError(f"{name}: got an array of shape {arr.shape}, expected 1-D")
    want = np.dtype(dtype)
    if arr.dtype != want:
        if arr.size and want.kind in "iu" and arr.dtype.kind not in "iub":
            raise ConfigError(f"{name}: got dtype {arr.dtype}, expected integers ({want})")
        if arr.size and want.kind == "u" and arr.dtype.kind == "i" and arr.min() < 0:
            raise ConfigError(f"{name}: got negative value {int(arr.min())}, expected ids >= 0")
        arr = arr.astype(want)
    return arr


def _check_csr(name: str, offsets: np.ndarray, n: int, total: int) -> None:
    if offsets.shape[0] != n + 1:
        raise ConfigError(f"{name}: got {offsets.shape[0]} entries, expected {n + 1} (requests + 1)")
    if offsets[0] != 0 or offsets[-1] != total:
        raise ConfigError(f"{name}: must start at 0 and end at {total}, got {offsets[0]} .. {offsets[-1]}")
    if n and np.any(np.diff(offsets) < 0):
        raise ConfigError(f"{name}: row {int(np.argmax(np.diff(offsets) < 0))} has a negative length")


def _check_min(name: str, arr: np.ndarray, lo: int) -> None:
    if arr.size and arr.min() < lo:
        k = int(np.argmin(arr))
        raise ConfigError(f"{name}: row {k} is {arr[k]}, expected >= {lo}")


def _bits(arr: np.ndarray):
    return {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[arr.dtype.itemsize]


def _json_equal(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def check_meta(meta: dict) -> str:
    """``meta`` as JSON text (shared by writers), or ``ConfigError`` when it holds something
    JSON cannot carry (NaN, sets, arbitrary objects)."""
    try:
        return json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"meta: not JSON-serialisable ({e}); expected plain dicts, lists, strings, numbers") from None

