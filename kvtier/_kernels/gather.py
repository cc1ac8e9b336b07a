"""A batch's kernels: rows copied between a tier's slab and a caller's contiguous batch
buffer, and the policy updates of a batch of hits or admissions.

Pure array kernels. ``copy_rows(src, src_rows, dst, dst_rows)`` copies ``src[src_rows[j]]``
to ``dst[dst_rows[j]]`` for ``j`` in order (a later copy to the same row wins), so one
kernel serves both directions (slab -> batch is a gather, batch -> slab a scatter); it
checks every row number first and copies nothing when one is out of bounds (it returns
the first bad pair's index, else -1). ``access_slots`` and ``admit_slots`` run the
shared policy operations (``kvtier._kernels.policy``) once per slot, in order, exactly as
the same single calls would. Python wrappers: ``kvtier.buffers.copy_rows`` and
``KernelPolicy.access_many``/``KernelPolicy.insert_many``.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit
from kvtier._kernels.policy import NEVER, policy_access, policy_insert, policy_prepare


@njit
def copy_rows(src, src_rows, dst, dst_rows):
    n_src = src.shape[0]
    n_dst = dst.shape[0]
    for j in range(src_rows.shape[0]):
        if src_rows[j] < 0 or src_rows[j] >= n_src or dst_rows[j] < 0 or dst_rows[j] >= n_dst:
            return j
    width = src.shape[1]
    for j in range(src_rows.shape[0]):
        a = src[src_rows[j]]
        b = dst[dst_rows[j]]
        # An explicit byte loop: LLVM vectorises it to full memory speed, where a slice
        # assignment compiles to a much slower generic copy.
        for i in range(width):
            b[i] = a[i]
    return -1


@njit
def access_slots(I, K, F, M, slots, pins):
    """``policy_access`` of every slot in order whose ``pins`` is 0 (those are tracked), as
    ``Policy.access`` calls it; a pinned slot is skipped, as ``Tier.touch`` skips it."""
    for j in range(slots.shape[0]):
        if pins[slots[j]] == 0:
            policy_access(I, K, F, M, 0, slots[j], 0, NEVER, 1.0)


@njit
def admit_slots(I, K, F, M, slots, keys):
    """``policy_prepare`` then ``policy_insert`` of every (slot, key) in order, as the store's
    admission of a new block calls them (keys: the block hashes, each below 2**63)."""
    for j in range(slots.shape[0]):
        policy_prepare(I, K, F, M, 0, keys[j])
        policy_insert(I, K, F, M, 0, slots[j], keys[j], 0, NEVER, 1.0)
