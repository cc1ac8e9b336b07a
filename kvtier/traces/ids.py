"""Plain block-id files (``ids``): one request per line, its block ids as integers.

Ids on a line are separated by spaces and/or commas; blank lines and lines starting with
``#`` are skipped. A file with one id per line is a trace of one-block requests. The ids
are taken as prefix identities as they are (equal ids, equal prefixes). There are no
times or sessions: request ``k`` (0-based, counting only request lines) gets timestamp
``k`` ms, session ``k``, ``input_length = blocks * block_tokens`` and output length 0.
"""

from __future__ import annotations

import os
import re

import numpy as np

from kvtier.errors import TraceFormatError
from kvtier.traces._parse import iter_lines
from kvtier.traces.model import Trace, TraceBuilder

#: Default tokens per block of an ids file: vLLM's default block size (16 tokens).
IDS_BLOCK_TOKENS = 16
_SPLIT = re.compile(r"[\s,]+")


def read_ids(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    bt = IDS_BLOCK_TOKENS if block_tokens is None else block_tokens
    b = TraceBuilder()
    for lineno, line in iter_lines(path, progress):
        if line.startswith("#"):
            continue
        parts = [t for t in _SPLIT.split(line) if t]
        try:
            vals = [int(t, 10) for t in parts]
            arr = np.array(vals, dtype=np.uint64)
        except (ValueError, OverflowError):
            bad = next((t for t in parts if not t.isdigit() or int(t) >= 2**64), parts[0] if parts else line)
            raise TraceFormatError(f"{os.fspath(path)} line {lineno}: block id: got {bad!r}, "
                                   "expected integers in [0, 2**64) separated by spaces or commas") from None
        k = len(b)
        b.add(timestamp_ms=float(k), session_id=k, input_length=arr.shape[0] * bt, output_length=0, block_hashes=arr)
    return b.build(block_tokens=bt, meta={"format": "ids"})


def write_ids(trace: Trace, path) -> None:
    """One line per request, ids separated by spaces (only the block ids are kept)."""
    tmp = os.fspath(path) + ".tmp"
    bo = trace.block_offsets
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(trace.num_requests):
            f.write(" ".join(map(str, trace.block_hashes[bo[i] : bo[i + 1]].tolist())) + "\n")
    os.replace(tmp, path)
