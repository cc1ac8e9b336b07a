"""Block identity: chained prefix hashes, as vLLM's prefix cache keys its blocks.

A block's hash depends on its own token ids *and* on its parent's hash, so two sequences
share a block hash exactly when they share the whole prefix up to and including that
block. The arithmetic is fixed-width unsigned 64-bit (splitmix64 mixing), so the same
tokens give the same hashes in every process and on every platform; Python's ``hash()``
is never used.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.hashing import chained_block_hashes
from kvtier.errors import ConfigError
from kvtier.validation import check_int, check_uint64

#: Parent hash of a sequence's first block ("kvtier" in ASCII). Pass ``root=`` to namespace
#: hashes, e.g. per model or per LoRA adapter, so that their blocks never alias.
DEFAULT_ROOT = 0x6B7674696572


def block_hashes(token_ids, block_tokens: int, *, root: int = DEFAULT_ROOT) -> np.ndarray:
    """Return one uint64 hash per *full* block of ``token_ids`` (trailing tokens ignored).

    ``token_ids``: a 1-D sequence of non-negative integers (any integer dtype).
    ``block_tokens``: tokens per block, > 0. ``root``: the first block's parent hash.
    Raises ``ConfigError`` naming the argument for negative ids, non-integer input or a
    bad block size. Does not mutate its input.
    """
    block_tokens = check_int(block_tokens, "block_tokens")
    root = check_uint64(root, "root")
    arr = np.asarray(token_ids)
    if arr.ndim != 1:
        raise ConfigError(f"token_ids: got an array of shape {arr.shape}, expected 1-D")
    if arr.size and arr.dtype.kind not in "iu":
        raise ConfigError(f"token_ids: got dtype {arr.dtype}, expected integers")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ConfigError(f"token_ids: got negative id {int(arr.min())}, expected ids >= 0")
    tokens = np.ascontiguousarray(arr, dtype=np.uint64)
    return chained_block_hashes(tokens, block_tokens, np.uint64(root))
