"""``read_trace`` / ``write_trace``: one entry point over every trace format, with detection."""

from __future__ import annotations

import json
import os
import re

from kvtier.errors import ConfigError, TraceFormatError, UnknownNameError
from kvtier.traces import bailian, binary, dynamo, ids, jsonl, kvcache_tester
from kvtier.traces.compressed import READ_ERRORS, open_text
from kvtier.traces.progress import ReadProgress, input_bytes
from kvtier.traces.model import Trace
from kvtier.validation import check_int

_READERS = {
    "kvtier": jsonl.read_kvtier,
    "kvtier-bin": binary.read_binary,
    "mooncake": jsonl.read_mooncake,
    "bailian": bailian.read_bailian,
    "dynamo": dynamo.read_dynamo,
    "dynamo-v2": dynamo.read_dynamo,
    "kv-cache-tester": kvcache_tester.read_kvcache_tester,
    "ids": ids.read_ids,
}
_WRITERS = {
    "kvtier": jsonl.write_kvtier,
    "kvtier-bin": binary.write_binary,
    "mooncake": jsonl.write_mooncake,
    "dynamo": lambda t, p: dynamo.write_dynamo(t, p, version=1),
    "dynamo-v2": lambda t, p: dynamo.write_dynamo(t, p, version=2),
    "ids": ids.write_ids,
}
#: Names ``read_trace`` accepts (plus ``auto``); ``dynamo`` reads both versions.
READ_FORMATS = tuple(_READERS)
#: Names ``write_trace`` accepts.
WRITE_FORMATS = tuple(_WRITERS)


def read_trace(path, format: str = "auto", *, block_tokens: int | None = None,  # noqa: A002
               progress: bool = False) -> Trace:
    """Read a trace file (or a folder of kv-cache-tester sessions) into a ``Trace``.

    ``format``: one of ``READ_FORMATS`` or ``"auto"`` (see ``detect_format``). Files may be
    gzip- or zstd-compressed (``.jsonl.gz``, ``.json.gz``, a folder of ``*.json.gz``; zstd
    needs the ``zstandard`` package).
    ``block_tokens``: tokens per block for formats that do not record it (Mooncake 512,
    Bailian 16, ids 16 by default); for formats that record it, a different value is an
    error. ``progress``: show a bar on stderr of the bytes read, once reading has taken
    more than a second (needs ``tqdm``; silent without it). The input is read once,
    streaming (a folder one file at a time), and validated before anything is returned:
    malformed input raises ``TraceFormatError`` naming the file, the line (where there are
    lines) and the field; an unknown format name raises ``UnknownNameError``.
    """
    block_tokens = check_int(block_tokens, "block_tokens", optional=True)
    p = os.fspath(path)
    fmt = detect_format(p) if format == "auto" else format
    reader = _READERS.get(fmt)
    if reader is None:
        raise UnknownNameError(f"format: got {format!r}, expected one of {['auto', *READ_FORMATS]}")
    if not os.path.exists(p):
        raise TraceFormatError(f"{p}: no such file or folder")
    if os.path.isdir(p) and fmt != "kv-cache-tester":
        raise TraceFormatError(f"{p}: is a folder; only the kv-cache-tester format reads folders")
    bar = None
    if progress:
        files = kvcache_tester.session_files(p) if os.path.isdir(p) else [p]
        bar = ReadProgress(input_bytes(files), f"reading {os.path.basename(p.rstrip(os.sep)) or p}")
    try:
        return reader(p, block_tokens=block_tokens, progress=bar)
    except ConfigError as e:  # a value that parsed but is inconsistent (time order, dependencies)
        if isinstance(e, TraceFormatError):
            raise
        raise TraceFormatError(f"{p}: {e}") from None
    finally:
        if bar is not None:
            bar.close()


def write_trace(trace: Trace, path, format: str = "kvtier-bin") -> None:  # noqa: A002
    """Write ``trace`` in ``format`` (one of ``WRITE_FORMATS``), atomically (temp file + rename).

    ``kvtier`` and ``kvtier-bin`` round-trip exactly (``read_trace(...).equals(trace)``);
    ``dynamo-v2`` too, except that its reader sets ``meta["format"]``; ``mooncake``, ``dynamo`` (v1) and ``ids``
    keep what those formats hold.
    """
    writer = _WRITERS.get(format)
    if writer is None:
        raise UnknownNameError(f"format: got {format!r}, expected one of {list(WRITE_FORMATS)}")
    if not isinstance(trace, Trace):
        raise ConfigError(f"trace: got {type(trace).__name__}, expected a Trace")
    writer(trace, os.fspath(path))


#: Characters of a first line that format detection reads: rows are far shorter; a longer
#: line is a whole session document on one line, recognised by its keys without parsing it.
SNIFF_CHARS = 1 << 20
_KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*:')


def detect_format(path) -> str:
    """Guess a trace's format from its first bytes / first line; ``TraceFormatError`` when it
    cannot tell. Rules: a folder is ``kv-cache-tester``; the kvtier-bin magic is
    ``kvtier-bin``; a first line that is a JSON object is ``kvtier`` (header), ``dynamo-v2``
    (``schema`` header), ``kv-cache-tester`` (has ``requests``), ``bailian`` (``chat_id``),
    ``dynamo`` (``request_id`` with ``session_id``/``wait_for``/``delay``) or ``mooncake``
    (``hash_ids`` and ``timestamp``); a file whose first JSON document spans several lines is
    ``kv-cache-tester``; a first line of integers is ``ids``. Compressed files are looked
    into; at most ``SNIFF_CHARS`` of the first line are read (a longer line is told by its
    keys), so detection never loads a large file. A first line that is broken JSON and the
    file's only row (or followed by JSON rows) is reported at its own line number."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return "kv-cache-tester"
    if not os.path.exists(p):
        raise TraceFormatError(f"{p}: no such file or folder")
    if binary.is_binary(p):
        return "kvtier-bin"
    first = _first_lines(p)
    if first is None:
        raise TraceFormatError(f"{p} line 1: empty file, cannot detect its format (pass --format)")
    lineno, line, whole, following = first
    if line[0] == "{":
        if not whole:
            obj = dict.fromkeys(_KEY.findall(line))  # the keys seen in the line's beginning
        else:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if following is None or following.startswith("{") and _is_object(following):
                    raise TraceFormatError(f"{p} line {lineno}: not valid JSON ({e.msg})") from None
                return "kv-cache-tester"  # a pretty-printed JSON document
        if isinstance(obj, dict):
            if jsonl.is_kvtier_header(obj):
                return "kvtier"
            if dynamo.is_v2_header(obj):
                return "dynamo-v2"
            if kvcache_tester.looks_like_session(obj) or (not whole and "requests" in obj):
                return "kv-cache-tester"
            if "chat_id" in obj:
                return "bailian"
            if dynamo.is_v1_row(obj):
                return "dynamo"
            if "hash_ids" in obj and "timestamp" in obj:
                return "mooncake"
        raise TraceFormatError(f"{p} line {lineno}: cannot tell the format from the keys "
                               f"{sorted(obj) if isinstance(obj, dict) else type(obj).__name__} (pass --format)")
    if line[0].isdigit() or line[0] == "#":
        return "ids"
    raise TraceFormatError(f"{p} line {lineno}: cannot detect the format from {line[:40]!r} (pass --format)")


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _first_lines(p: str):
    """``(line number, first non-blank line, whole, following)`` of a text file, or ``None``
    if it has none: the line is cut at ``SNIFF_CHARS`` (``whole`` False then); ``following``
    is the next non-blank line (cut likewise), ``None`` if there is none."""

    def next_nonblank(f, lineno: int):
        while True:
            line = f.readline(SNIFF_CHARS)
            if not line:
                return lineno, None, True
            lineno += 1
            if line.strip():
                return lineno, line.strip(), line.endswith("\n") or len(line) < SNIFF_CHARS

    lineno = 0
    try:
        with open_text(p) as f:
            lineno, line, whole = next_nonblank(f, 0)
            if line is None:
                return None
            following = next_nonblank(f, lineno)[1] if whole else None
    except UnicodeDecodeError as e:
        raise TraceFormatError(f"{p} line {lineno + 1}: not UTF-8 text ({e.reason})") from None
    except READ_ERRORS as e:
        raise TraceFormatError(f"{p} line {lineno + 1}: cannot read: {e}") from None
    return lineno, line, whole, following
