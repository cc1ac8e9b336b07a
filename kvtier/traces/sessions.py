"""Session names: the ids trace files give sessions, mapped to the trace's integer ids.

Files name sessions as they like: integers (Mooncake-style traces written by kvtier),
strings (``"session_id": "trace_0012"`` in merged or exported traces, agentic Mooncake's
``"s0"``), or any other JSON scalar. A ``Trace`` holds integers. The rule, for every
reader that takes ids from its rows:

* when every id in the file (session and parent alike) is an integer in ``[0, 2**63)``,
  the integers are the session ids, as written (a row without one is its own session,
  numbered by its row; a parent of ``-1`` or none means no parent);
* otherwise every distinct id is a name, and names get dense integers ``0, 1, ...`` in
  order of first appearance (a row without a session id is a session of its own, an
  anonymous name, in the same order); ``meta["session_names"][k]`` is the name of session
  ``k`` (``None`` for an anonymous one), so reports and writers can give the names back.

Names are compared as JSON values: ``"7"`` and ``7`` are different sessions, ``7.0`` is
``7``; a list or an object is not a name (``TraceFormatError`` naming the line and field).
"""

from __future__ import annotations

import math

from kvtier.traces._parse import Row
from kvtier.traces.model import NO_PARENT, Trace
from kvtier.validation import is_int, is_number

#: The ``meta`` key of the list of session names (index = session id).
SESSION_NAMES = "session_names"
_MAX_ID = 2**63


def name_key(value):
    """The identity of a session name as a JSON value (bools, integers, other numbers and
    strings never equal one another), or ``None`` if ``value`` is not a JSON scalar."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if is_int(value):
        return ("int", int(value))
    if is_number(value):
        return ("number", float(value)) if math.isfinite(value) else None  # JSON has no NaN or Infinity
    if isinstance(value, str):
        return ("str", value)
    return None


def row_name(r: Row, field: str):
    """``name_key`` of the row's ``field`` (``None`` when it is absent or null);
    ``TraceFormatError`` naming the line and field when it is not a JSON scalar."""
    value = r.obj.get(field)
    if value is None:
        return None
    key = name_key(value)
    if key is None:
        raise r.error(field, value, "a session name (a string, number or boolean)")
    return key


def anonymous_key(row: int):
    """The key ``SessionNamer`` gives the session of a row that names none."""
    return ("row", row)


def _is_id(key) -> bool:
    """Whether a key can be kept as a session id: an integer in [0, 2**63), or a row's own."""
    return key[0] == "row" or (key[0] == "int" and 0 <= key[1] < _MAX_ID)


class SessionNamer:
    """Collects each row's session name (and parent name) as a reader meets them, then
    ``resolve`` applies the module's rule. Memory: one small int per row plus one entry
    per distinct name."""

    def __init__(self) -> None:
        self._key_to_index: dict = {}
        self._keys: list = []
        self._row_session: list[int] = []
        self._row_parent: list[int] = []  # index into _keys, or -1 for no parent
        self._all_ids = True  # every name so far is an integer id in [0, 2**63)

    def _index(self, key) -> int:
        i = self._key_to_index.get(key)
        if i is None:
            i = self._key_to_index[key] = len(self._keys)
            self._keys.append(key)
        return i

    def add_row(self, session_key, parent_key=None) -> None:
        """Record the next row: ``session_key`` from ``name_key`` (``None``: the row is its
        own session), ``parent_key`` likewise or a key ``session_of`` returned (``None``:
        no parent; the integer ``-1`` means none too)."""
        row = len(self._row_session)
        if session_key is None:
            session_key = anonymous_key(row)
        self._all_ids = self._all_ids and _is_id(session_key)
        self._row_session.append(self._index(session_key))
        if parent_key is None or parent_key == ("int", NO_PARENT):
            self._row_parent.append(-1)
            return
        self._all_ids = self._all_ids and _is_id(parent_key)
        self._row_parent.append(self._index(parent_key))

    def session_of(self, row: int):
        """The key recorded for ``row``'s session (to compare rows' sessions while reading)."""
        return self._keys[self._row_session[row]]

    def resolve(self) -> tuple[list[int], list[int], list | None]:
        """``(session_ids, parent_session_ids, names)`` per row in the order added; ``names``
        is ``None`` when the file's ids are used as they are, else the list for
        ``meta["session_names"]``."""
        keys = self._keys
        if self._all_ids:
            ids = [k[1] for k in keys]  # anonymous rows carry their row number
            sessions = [ids[i] for i in self._row_session]
            parents = [NO_PARENT if i < 0 else ids[i] for i in self._row_parent]
            return sessions, parents, None
        # Dense ids in order of first appearance: the index of each key is exactly that.
        names = [None if k[0] == "row" else k[1] for k in keys]
        parents = [NO_PARENT if i < 0 else i for i in self._row_parent]
        return list(self._row_session), parents, names


def session_name(trace: Trace, session_id: int):
    """The name a file gave session ``session_id`` (``meta["session_names"]``), or the
    integer id itself when the trace has no name for it."""
    names = trace.meta.get(SESSION_NAMES)
    if isinstance(names, list) and 0 <= session_id < len(names) and names[session_id] is not None:
        return names[session_id]
    return session_id


def session_labels(trace: Trace) -> dict[int, str]:
    """Each session id of ``trace`` -> a unique string for it: its name where names are
    unique, else the id as a string (formats whose ids must be strings write these)."""
    ids = sorted({int(s) for s in trace.session_ids.tolist()} | {int(p) for p in trace.parent_session_ids.tolist()
                                                                  if p != NO_PARENT})
    labels = {s: str(session_name(trace, s)) for s in ids}
    if len(set(labels.values())) != len(labels):
        labels = {s: str(s) for s in ids}
    return labels
