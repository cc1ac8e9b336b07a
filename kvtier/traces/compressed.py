"""Opening trace files: gzip and zstd are recognised by their first bytes and read through.

Public traces are shipped compressed (``trace_0012.json.gz``, ``conversation.jsonl.gz``,
``*.zst``); every reader opens its files here, so each format reads them as it reads plain
files. The magic bytes decide, not the name: a ``.gz`` that is really plain text reads as
text. gzip is Python's own; zstd needs the ``zstandard`` package, which kvtier does not
install: a zstd file without it is a ``TraceFormatError`` that says what to install.

A ``ReadProgress`` given to ``open_binary`` counts the file's bytes as they are consumed
(compressed bytes for a compressed file), so a bar can show how far reading has got.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import zlib

from kvtier.errors import TraceFormatError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Name endings of compressed files (a folder of sessions lists ``*.json`` with these too).
COMPRESSED_SUFFIXES = (".gz", ".zst")
#: What reading a damaged compressed stream raises (gzip: ``BadGzipFile`` is an ``OSError``,
#: a cut stream ``EOFError``, bad deflate data ``zlib.error``); readers turn them into
#: ``TraceFormatError`` naming the file and line.
READ_ERRORS = (OSError, EOFError, zlib.error)


def strip_compressed_suffix(name: str) -> str:
    """``name`` without a trailing ``.gz`` / ``.zst`` (``a.json.gz`` -> ``a.json``)."""
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class _Counted(io.RawIOBase):
    """A raw file that reports every byte it hands out to a progress counter."""

    def __init__(self, raw, progress) -> None:
        super().__init__()
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._progress.advance(n)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _GzipFile(gzip.GzipFile):
    """A gzip reader that closes the file it reads from (``GzipFile`` leaves it open)."""

    def close(self) -> None:
        source = self.fileobj
        try:
            super().close()
        finally:
            if source is not None:
                source.close()


class _ReadOnly(io.RawIOBase):
    """A raw reader over any object with ``read(n)`` and ``close()`` (the zstd stream),
    so that ``io.BufferedReader`` and text decoding work on it."""

    def __init__(self, source) -> None:
        super().__init__()
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._source.close()
        super().close()


def _zstd_reader(fileobj, path: str):
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        fileobj.close()
        raise TraceFormatError(f"{path}: zstd-compressed, and the zstandard package is not installed "
                               "(pip install zstandard, or decompress the file with `zstd -d`)") from None
    return zstandard.ZstdDecompressor().stream_reader(fileobj, closefd=True)


def open_binary(path, progress=None):
    """The bytes of the file at ``path``, decompressed when it starts with a gzip or zstd
    magic, as a readable binary file object (the caller closes it). ``progress`` (a
    ``ReadProgress`` or ``None``) is advanced by the file bytes read. An unreadable file
    raises ``TraceFormatError`` naming it; damage inside a compressed stream surfaces on
    reading as one of ``READ_ERRORS``."""
    p = os.fspath(path)
    try:
        raw = io.FileIO(p, "r")
    except OSError as e:
        raise TraceFormatError(f"{p}: cannot open: {e.strerror or e}") from None
    try:
        magic = raw.read(len(ZSTD_MAGIC))
        raw.seek(0)
    except OSError as e:
        raw.close()
        raise TraceFormatError(f"{p}: cannot read: {e.strerror or e}") from None
    source = io.BufferedReader(_Counted(raw, progress) if progress is not None else raw)
    if magic.startswith(GZIP_MAGIC):
        return _GzipFile(fileobj=source, mode="rb")
    if magic == ZSTD_MAGIC:
        return io.BufferedReader(_ReadOnly(_zstd_reader(source, p)))
    return source


def open_text(path, progress=None) -> io.TextIOBase:
    """``open_binary`` decoded as UTF-8 text, for line-by-line reading."""
    return io.TextIOWrapper(open_binary(path, progress), encoding="utf-8")
