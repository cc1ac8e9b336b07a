"""Circular doubly linked lists in one flat int32 array: the kernels' eviction orders.

Every list of the kernels (a policy's LRU or FIFO order, S3-FIFO's queues, ARC's T1/T2
and ghost lists B1/B2, the replay's per-tier lists) lives in a links array ``lk`` from
base offset ``b``: member or sentinel ``x`` keeps its two links side by side (one cache
line), ``lk[b + 2x]`` its *older* neighbour and ``lk[b + 2x + 1]`` its *newer* one. A
list is a ring through its sentinel ``head``: the sentinel's newer neighbour is the list's
oldest member (the next victim of a FIFO or LRU order), its older neighbour the newest.
An empty list's sentinel links to itself. Every operation is O(1) and allocates nothing,
as in vLLM's free-block queue; offsets instead of array views keep the kernels free of
reference counting.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit


@njit(_nrt=False)
def link_init(lk, b, head):
    """Make ``head`` the sentinel of an empty list."""
    lk[b + 2 * head] = head
    lk[b + 2 * head + 1] = head


@njit(_nrt=False, inline="always")
def push(lk, b, head, x):
    """``x`` (on no list) joins the list just older than ``head``: at the sentinel, ``x``
    becomes the list's newest member (the sentinel's older neighbour is the newest); at a
    member, ``x`` goes just behind it (prefix-LRU places a chain's next block so)."""
    newest = lk[b + 2 * head]
    lk[b + 2 * newest + 1] = x
    lk[b + 2 * x] = newest
    lk[b + 2 * x + 1] = head
    lk[b + 2 * head] = x


@njit(_nrt=False, inline="always")
def unlink(lk, b, x):
    """``x`` leaves its list (its own links are left as they were)."""
    p = lk[b + 2 * x]
    q = lk[b + 2 * x + 1]
    lk[b + 2 * p + 1] = q
    lk[b + 2 * q] = p


@njit(_nrt=False)
def mark_unlinked(lk, b, x):
    """Mark ``x`` (already unlinked) as on no list: both links -1."""
    lk[b + 2 * x] = -1
    lk[b + 2 * x + 1] = -1


@njit(_nrt=False)
def detach(lk, b, x):
    """``x`` leaves its list and is marked as on none."""
    unlink(lk, b, x)
    mark_unlinked(lk, b, x)


@njit(_nrt=False)
def oldest(lk, b, head):
    """The oldest member of ``head``'s list, or -1 when it is empty."""
    o = lk[b + 2 * head + 1]
    return -1 if o == head else o


@njit(_nrt=False)
def is_linked(lk, b, x):
    """Whether ``x`` is on a list (it was never pushed, or was ``detach``-ed, otherwise)."""
    return lk[b + 2 * x] != -1
