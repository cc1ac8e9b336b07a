"""Per-block hash traces such as Alibaba's Qwen-Bailian release (``bailian``).

Rows: ``chat_id``, ``parent_chat_id`` (-1 for a first turn), ``timestamp`` (seconds),
``input_length``, ``output_length``, ``type``, ``turn``, ``hash_ids`` (one id per 16-token
block, identifying the block's *content*, not its prefix). On load the ids are re-keyed
to prefix identity: key[j] = mix(key[j-1], id[j]) from a common root, so equal keys mean
equal prefixes, and a block id repeated at another position gets another key.

A request's session is the first chat of its ``parent_chat_id`` chain (a conversation);
``timestamp`` becomes ms; rows are sorted by time (stable). ``type`` and ``turn`` are not
kept. No dependencies are recorded: the release gives arrival times.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.traces import chain_rekey
from kvtier.traces._parse import Row, iter_json_rows
from kvtier.traces.model import Trace, TraceBuilder

#: Bailian release: "hash_ids ... each block 16 tokens".
BAILIAN_BLOCK_TOKENS = 16
#: Root key of re-keyed chains ("bailian" in ASCII), so they never alias kvtier's hashes.
BAILIAN_ROOT = 0x6261696C69616E


def read_bailian(path, *, block_tokens: int | None = None, progress=None) -> Trace:
    bt = BAILIAN_BLOCK_TOKENS if block_tokens is None else block_tokens
    b = TraceBuilder()
    chat_to_session: dict[int, int] = {}
    num_sessions = 0
    for lineno, obj in iter_json_rows(path, progress):
        r = Row(path, lineno, obj)
        chat = r.integer("chat_id")
        parent = r.integer("parent_chat_id", default=-1, minimum=-1)
        if chat in chat_to_session:
            raise r.error("chat_id", chat, "an id not seen before in this file")
        if parent >= 0:
            if parent not in chat_to_session:
                raise r.error("parent_chat_id", parent, "-1 or the chat_id of an earlier row")
            session = chat_to_session[parent]
        else:
            session = num_sessions
            num_sessions += 1
        chat_to_session[chat] = session
        b.add(timestamp_ms=r.number("timestamp") * 1000.0, session_id=session,
              input_length=r.integer("input_length"), output_length=r.integer("output_length"),
              block_hashes=r.ids("hash_ids"))
    trace = b.build(block_tokens=bt, meta={"format": "bailian"}, sort=True)
    roots = np.full(trace.num_requests, BAILIAN_ROOT, dtype=np.uint64)
    return trace.replace(block_hashes=chain_rekey(trace.block_offsets, trace.block_hashes, roots))

