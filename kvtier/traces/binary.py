"""kvtier's binary trace (``kvtier-bin``): numpy columns, optionally lz4-compressed.

Layout (little-endian)::

    magic   8 bytes  b"KVTRBIN\\0"
    version u32      1
    hlen    u32      length of the JSON header that follows
    header  hlen bytes of UTF-8 JSON:
        {"block_tokens": B, "num_requests": n, "meta": {...},
         "columns": [{"name", "dtype" (numpy str, e.g. "<u8"), "count", "codec": "none"|"lz4",
                      "stored_bytes", "crc32c" (of the stored bytes)}, ...]}
    then each column's stored bytes, in header order, back to back.

A column compressed with ``lz4`` is one lz4 frame. ``block_hashes`` may instead use
``prefix-delta`` or ``prefix-delta+lz4`` (the latter an lz4 frame of the former): three
arrays back to back, ``ref`` int64[n] (the row whose prefix request i extends: the previous
request of its session, else its first dependency, else -1), ``shared`` int64[n] (how many
leading ids it takes from there) and ``suffix`` uint64[...] (the ids after them, all rows
concatenated). Agent requests repeat their session's previous prefix, so this stores
little more than the new blocks. The header describes itself, so a reader needs no
schema; unknown columns or codecs are an error (a newer file), missing ones too.
"""

from __future__ import annotations

import json
import os
import struct

import lz4.frame
import numpy as np

from kvtier._kernels.traces import prefix_delta_decode, prefix_delta_encode
from kvtier.codec import checksum
from kvtier.errors import ConfigError, TraceFormatError
from kvtier.traces.compressed import READ_ERRORS, open_binary
from kvtier.traces.model import COLUMN_DTYPES, COLUMN_NAMES, Trace, check_meta
from kvtier.validation import check_int

MAGIC = b"KVTRBIN\x00"
VERSION = 1
_PREFIX = struct.Struct("<8sII")


def is_binary(path) -> bool:
    """Whether the file starts with the kvtier-bin magic (after decompression, if it is
    gzip or zstd)."""
    try:
        with open_binary(path) as f:
            return f.read(len(MAGIC)) == MAGIC
    except (TraceFormatError, *READ_ERRORS):
        return False


def write_binary(trace: Trace, path, *, compress: bool = True) -> None:
    """Write ``trace`` (atomically: a temporary file renamed into place)."""
    meta_json = check_meta(trace.meta)
    payloads, columns = [], []
    for name in COLUMN_NAMES:
        arr = np.ascontiguousarray(getattr(trace, name))
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        raw = arr.tobytes()
        codec = "none"
        if compress and raw:
            packed = lz4.frame.compress(raw, compression_level=0)
            if len(packed) < len(raw):
                raw, codec = packed, "lz4"
            if name == "block_hashes":
                delta = lz4.frame.compress(_delta_encode(trace), compression_level=0)
                if len(delta) < len(raw):
                    raw, codec = delta, "prefix-delta+lz4"
        payloads.append(raw)
        columns.append({"name": name, "dtype": arr.dtype.str, "count": int(arr.shape[0]), "codec": codec,
                        "stored_bytes": len(raw), "crc32c": checksum(raw)})
    header = json.dumps({"block_tokens": trace.block_tokens, "num_requests": trace.num_requests,
                         "meta": json.loads(meta_json), "columns": columns}, sort_keys=True).encode()
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(_PREFIX.pack(MAGIC, VERSION, len(header)))
        f.write(header)
        for raw in payloads:
            f.write(raw)
    os.replace(tmp, path)


def read_binary(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    """Read a ``kvtier-bin`` file (gzip or zstd compressed too); every column's CRC32C is
    verified."""
    p = os.fspath(path)
    try:
        with open_binary(p, progress) as f:
            return _read_columns(p, f, block_tokens)
    except READ_ERRORS as e:
        raise TraceFormatError(f"{p}: cannot read: {e}") from None


def _read_columns(p: str, f, block_tokens: int | None) -> Trace:
    arrays: dict[str, np.ndarray] = {}
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise TraceFormatError(f"{p}: header: file is {len(prefix)} bytes, too short for a kvtier-bin header")
    magic, version, hlen = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise TraceFormatError(f"{p}: magic: got {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise TraceFormatError(f"{p}: version: got {version}, expected {VERSION}")
    raw_header = f.read(hlen)
    try:
        header = json.loads(raw_header.decode())
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError) as e:
        raise TraceFormatError(f"{p}: header: not a JSON object ({e})") from None
    cols = header.get("columns")
    names = [c.get("name") if isinstance(c, dict) else None for c in cols] if isinstance(cols, list) else None
    if names != list(COLUMN_NAMES):
        raise TraceFormatError(f"{p}: header.columns: expected the columns {list(COLUMN_NAMES)} in order")
    bt = check_int(header.get("block_tokens"), f"{p}: header.block_tokens", error=TraceFormatError)
    if block_tokens is not None and block_tokens != bt:
        raise TraceFormatError(f"{p}: header.block_tokens: got {bt}, "
                               f"expected {block_tokens} (the --block-tokens given)")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise TraceFormatError(f"{p}: header.meta: got {type(meta).__name__}, expected an object")
    for c in cols:
        name = c["name"]
        where = f"{p}: column {name}"
        try:
            dtype = np.dtype(c["dtype"])
            count, stored, crc, codec = int(c["count"]), int(c["stored_bytes"]), int(c["crc32c"]), c["codec"]
        except (KeyError, TypeError, ValueError) as e:
            raise TraceFormatError(f"{where}: malformed column entry ({e})") from None
        if dtype.newbyteorder("=") != COLUMN_DTYPES[name] or count < 0 or stored < 0:
            raise TraceFormatError(f"{where}: dtype/count: got {c['dtype']}/{count}, "
                                   f"expected {COLUMN_DTYPES[name].str} and a count >= 0")
        data = f.read(stored)
        if len(data) != stored:
            raise TraceFormatError(f"{where}: stored_bytes: file ends after {len(data)} of {stored} bytes "
                                   "(truncated)")
        if checksum(data) != crc:
            raise TraceFormatError(f"{where}: crc32c: stored bytes do not match the checksum (corrupt file)")
        if codec in ("lz4", "prefix-delta+lz4"):
            try:
                data = lz4.frame.decompress(data)
            except RuntimeError as e:
                raise TraceFormatError(f"{where}: lz4: cannot decompress ({e})") from None
        if codec.startswith("prefix-delta") and name == "block_hashes" and "block_offsets" in arrays:
            data = _delta_decode(where, data, arrays["block_offsets"], count)
        elif codec not in ("none", "lz4"):
            raise TraceFormatError(f"{where}: codec: got {codec!r}, expected \"none\" or \"lz4\" "
                                   "(or prefix-delta[+lz4] for block_hashes)")
        if len(data) != count * dtype.itemsize:
            raise TraceFormatError(f"{where}: count: {len(data)} bytes hold {len(data) / dtype.itemsize:g} "
                                   f"values, expected {count}")
        arrays[name] = np.frombuffer(data, dtype=dtype).astype(COLUMN_DTYPES[name])
    if f.read(1):
        raise TraceFormatError(f"{p}: trailing bytes after the last column")
    try:
        return Trace(block_tokens=bt, **arrays, meta=meta)
    except ConfigError as e:
        raise TraceFormatError(f"{p}: {e}") from None


def _delta_refs(trace: Trace) -> np.ndarray:
    """int64[n]: the previous row of each row's session, else its first dependency, else -1."""
    n = trace.num_requests
    refs = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return refs
    order = np.argsort(trace.session_ids, kind="stable")
    same = trace.session_ids[order][1:] == trace.session_ids[order][:-1]
    refs[order[1:][same]] = order[:-1][same]
    first_dep = np.diff(trace.dep_offsets) > 0
    use = (refs < 0) & first_dep
    refs[use] = trace.dep_requests[trace.dep_offsets[:-1][use]]
    return refs


def _delta_encode(trace: Trace) -> bytes:
    refs = _delta_refs(trace)
    shared, suffix = prefix_delta_encode(trace.block_offsets, trace.block_hashes, refs)
    return refs.astype("<i8").tobytes() + shared.astype("<i8").tobytes() + suffix.astype("<u8").tobytes()


def _delta_decode(where: str, data: bytes, offsets: np.ndarray, count: int) -> bytes:
    """Validate a prefix-delta payload fully, then expand it (a bad file never reaches the kernel)."""
    n = offsets.shape[0] - 1
    if n < 0 or len(data) < 16 * n or (len(data) - 16 * n) % 8:
        raise TraceFormatError(f"{where}: prefix-delta: {len(data)} bytes do not hold {n} refs, shares and ids")
    refs = np.frombuffer(data, "<i8", n, 0).astype(np.int64)
    shared = np.frombuffer(data, "<i8", n, 8 * n).astype(np.int64)
    suffix = np.frombuffer(data, "<u8", offset=16 * n).astype(np.uint64)
    counts = np.diff(offsets)
    if offsets.size == 0 or offsets[0] != 0 or np.any(counts < 0) or offsets[-1] != count:
        raise TraceFormatError(f"{where}: block_offsets: not a valid CSR for {count} ids")
    rows = np.arange(n, dtype=np.int64)
    bad = (refs < -1) | (refs >= rows) | (shared < 0) | (shared > counts)
    bad |= (refs < 0) & (shared != 0)
    has_ref = (refs >= 0) & ~bad  # refs now index earlier rows
    bad[has_ref] |= shared[has_ref] > counts[refs[has_ref]]
    if np.any(bad):
        i = int(np.argmax(bad))
        raise TraceFormatError(f"{where}: prefix-delta: row {i} takes {shared[i]} ids from row {refs[i]}, "
                               "expected an earlier row and at most both rows' lengths")
    if int((counts - shared).sum()) != suffix.shape[0]:
        raise TraceFormatError(f"{where}: prefix-delta: {suffix.shape[0]} new ids, expected "
                               f"{int((counts - shared).sum())}")
    return prefix_delta_decode(offsets, refs, shared, suffix).astype("<u8").tobytes()
