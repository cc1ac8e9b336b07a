"""Intrusive doubly linked list over slot indices, in two int32 arrays.

``prev``/``next`` have ``num_slots + 1`` entries; index ``num_slots`` is the sentinel, so
``next[sentinel]`` is the oldest member and ``prev[sentinel]`` the newest. A slot that is
not a member has ``prev[slot] == -1``. Every operation is O(1) and allocates nothing: this
is the order vLLM's free-block queue keeps, and the list every queue-based policy reuses.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit


@njit
def dlist_init(prev, next_):
    sentinel = prev.shape[0] - 1
    prev[:] = -1
    next_[:] = -1
    prev[sentinel] = sentinel
    next_[sentinel] = sentinel


@njit
def dlist_push_newest(prev, next_, slot):
    sentinel = prev.shape[0] - 1
    newest = prev[sentinel]
    next_[newest] = slot
    prev[slot] = newest
    next_[slot] = sentinel
    prev[sentinel] = slot


@njit
def dlist_unlink(prev, next_, slot):
    p = prev[slot]
    n = next_[slot]
    next_[p] = n
    prev[n] = p
    prev[slot] = -1
    next_[slot] = -1


@njit
def dlist_move_to_newest(prev, next_, slot):
    dlist_unlink(prev, next_, slot)
    dlist_push_newest(prev, next_, slot)


@njit
def dlist_oldest(prev, next_):
    """The oldest member, or -1 when the list is empty."""
    sentinel = prev.shape[0] - 1
    oldest = next_[sentinel]
    return -1 if oldest == sentinel else oldest


@njit
def dlist_to_array(prev, next_, count):
    """Members from oldest to newest (``count`` = expected length; for checks and tests)."""
    sentinel = prev.shape[0] - 1
    out = np.empty(count, dtype=np.int64)
    i = 0
    s = next_[sentinel]
    while s != sentinel and i < count:
        out[i] = s
        i += 1
        s = next_[s]
    return out[:i]
