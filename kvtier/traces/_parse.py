"""Shared parsing helpers: streaming line reads and field checks that name file, line, field."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import numpy as np

from kvtier.errors import TraceFormatError
from kvtier.traces.compressed import READ_ERRORS, open_text
from kvtier.validation import is_int, is_number


def iter_lines(path, progress=None) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for each non-blank line, read lazily (gzip and
    zstd decompressed on the fly; ``progress`` advanced by the bytes read)."""
    p = os.fspath(path)
    with open_text(p, progress) as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):  # noqa: B007
                s = line.strip()
                if s:
                    yield lineno, s
        except UnicodeDecodeError as e:
            raise TraceFormatError(f"{p} line {lineno + 1}: not UTF-8 text ({e.reason})") from None
        except READ_ERRORS as e:  # a truncated or damaged compressed stream
            raise TraceFormatError(f"{p} line {lineno + 1}: cannot read: {e}") from None


def iter_json_rows(path, progress=None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; every line must be an object."""
    for lineno, line in iter_lines(path, progress):
        yield lineno, parse_object(path, lineno, line)


def parse_object(path, lineno: int, text: str) -> dict:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise TraceFormatError(f"{os.fspath(path)} line {lineno}: not valid JSON ({reason})") from None
    if not isinstance(obj, dict):
        raise TraceFormatError(f"{os.fspath(path)} line {lineno}: got {type(obj).__name__}, expected a JSON object")
    return obj


class Row:
    """One parsed record plus where it came from, so every error names file, line, field."""

    __slots__ = ("obj", "where")

    def __init__(self, path, lineno: int | None, obj: dict, context: str = "") -> None:
        self.obj = obj
        loc = f"{os.fspath(path)}"
        if lineno is not None:
            loc += f" line {lineno}"
        if context:
            loc += f" {context}"
        self.where = loc

    def error(self, field: str, value, expected: str) -> TraceFormatError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return TraceFormatError(f"{self.where}: {field}: got {shown}, expected {expected}")

    def has(self, key: str) -> bool:
        return key in self.obj and self.obj[key] is not None

    def _get(self, key: str, default, expected: str):
        """The field's value, or ``None`` when it is absent or null and has a ``default``
        (a required field, ``default`` None, that is absent raises naming ``expected``)."""
        v = self.obj.get(key, None)
        if v is None and default is None:
            raise TraceFormatError(f"{self.where}: {key}: missing, expected {expected}")
        return v

    def integer(self, key: str, *, default=None, minimum: int = 0) -> int:
        v = self._get(key, default, f"an integer >= {minimum}")
        if v is None:
            return default
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not is_int(v) or v < minimum:
            raise self.error(key, v, f"an integer >= {minimum}")
        if v >= 2**63:
            raise self.error(key, v, "an integer < 2**63")
        return v

    def number(self, key: str, *, default=None, minimum: float | None = 0.0) -> float:
        v = self._get(key, default, "a number")
        if v is None:
            return default
        if not is_number(v):
            raise self.error(key, v, "a number")
        f = float(v)
        if not math.isfinite(f) or (minimum is not None and f < minimum):
            raise self.error(key, v, "a finite number" + (f" >= {minimum:g}" if minimum is not None else ""))
        return f

    def ids(self, key: str) -> np.ndarray:
        """A list of non-negative integers < 2**64 as uint64 (required field)."""
        return id_array(self._get(key, None, "a list of integers"), self, key)

    def string_or_int(self, key: str, *, default=None):
        v = self._get(key, default, "a string or integer id")
        if v is None:
            return default
        if not is_id(v):
            raise self.error(key, v, "a string or integer id")
        return v

    def choice(self, key: str, names: tuple[str, ...], default: str) -> int:
        """The index in ``names`` of the field's value (``default`` when absent)."""
        v = self.obj.get(key, default)
        if v not in names:
            raise self.error(key, v, " or ".join(f'"{n}"' for n in names))
        return names.index(v)

    def list_of(self, key: str, *, default=()) -> list:
        v = self.obj.get(key, None)
        if v is None:
            return list(default)
        if not isinstance(v, list):
            raise self.error(key, v, "a list")
        return v


def is_id(v) -> bool:
    """Whether ``v`` is a request or session id as trace files write them: a string or an
    integer (JSON ``true`` is neither, though Python counts it equal to 1)."""
    return isinstance(v, str) or is_int(v)


def id_array(v, row: Row, key: str) -> np.ndarray:
    if not isinstance(v, list):
        raise row.error(key, v, "a list of integers")
    if v:
        kinds = set(map(type, v))
        if kinds != {int}:
            bad = next(x for x in v if type(x) is not int)
            raise row.error(key, v, f"a list of integers (found {bad!r})")
    try:
        return np.array(v, dtype=np.uint64) if v else np.zeros(0, np.uint64)
    except OverflowError:
        bad = next(x for x in v if not 0 <= x < 2**64)
        raise row.error(key, v, f"integers in [0, 2**64) (found {bad})") from None
