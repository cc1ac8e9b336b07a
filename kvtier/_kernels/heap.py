"""The kernels' one binary min-heap: items ordered by a pair of keys, with positions.

The heap of ``count`` items lives in flat arrays from base offsets: ``H[hb + i]`` the item
at heap index ``i``, its keys ``A[ab + i]`` (priority) and ``B[bb + i]`` (tie-break) beside
it in heap order (a sift compares neighbouring words and follows no pointer), and
``P[pb + item]`` the item's heap index (-1 when it is not a member). Items compare by
``(A, B)`` lexicographically, the smallest at ``H[hb]``. Insert, remove and re-key are
O(log n) and allocate nothing; offsets (not array views) keep the kernels free of
reference counting, so the operations inline into the loops that call them.

Three users: the heap policies (LFU, cost-aware, Belady: priority, then an access stamp so
the older block goes first), the Belady replay (one packed key: pass the same array as
``A`` and ``B``) and the simulator's event queues (time, then row).
"""

from __future__ import annotations

from kvtier._kernels.jit import njit


@njit(_nrt=False, inline="always")
def _less(A, ab, B, bb, i, a, b):
    """Whether heap index ``i`` orders before keys ``(a, b)``."""
    x = A[ab + i]
    return x < a or (x == a and B[bb + i] < b)


@njit(_nrt=False, inline="always")
def _put(H, hb, P, pb, A, ab, B, bb, i, item, a, b):
    H[hb + i] = item
    A[ab + i] = a
    B[bb + i] = b
    P[pb + item] = i


@njit(_nrt=False)
def heap_sift_up(H, hb, P, pb, A, ab, B, bb, i):
    """Move the item at heap index ``i`` up to its place."""
    item = H[hb + i]
    a = A[ab + i]
    b = B[bb + i]
    while i > 0:
        parent = (i - 1) >> 1
        if not (a < A[ab + parent] or (a == A[ab + parent] and b < B[bb + parent])):
            break
        _put(H, hb, P, pb, A, ab, B, bb, i, H[hb + parent], A[ab + parent], B[bb + parent])
        i = parent
    _put(H, hb, P, pb, A, ab, B, bb, i, item, a, b)


@njit(_nrt=False)
def heap_sift_down(H, hb, P, pb, A, ab, B, bb, i, count):
    """Move the item at heap index ``i`` down to its place in a heap of ``count`` items."""
    item = H[hb + i]
    a = A[ab + i]
    b = B[bb + i]
    while True:
        child = 2 * i + 1
        if child >= count:
            break
        if child + 1 < count and _less(A, ab, B, bb, child + 1, A[ab + child], B[bb + child]):
            child += 1
        if not _less(A, ab, B, bb, child, a, b):
            break
        _put(H, hb, P, pb, A, ab, B, bb, i, H[hb + child], A[ab + child], B[bb + child])
        i = child
    _put(H, hb, P, pb, A, ab, B, bb, i, item, a, b)


@njit(_nrt=False)
def heap_push(H, hb, P, pb, A, ab, B, bb, count, item, a, b):
    """Add ``item`` with keys ``(a, b)`` to a heap of ``count`` items."""
    _put(H, hb, P, pb, A, ab, B, bb, count, item, a, b)
    heap_sift_up(H, hb, P, pb, A, ab, B, bb, count)


@njit(_nrt=False)
def heap_remove(H, hb, P, pb, A, ab, B, bb, count, item):
    """Remove member ``item`` from a heap of ``count`` items (the last fills its place)."""
    i = P[pb + item]
    last = count - 1
    P[pb + item] = -1
    if i != last:
        moved = H[hb + last]
        _put(H, hb, P, pb, A, ab, B, bb, i, moved, A[ab + last], B[bb + last])
        heap_sift_down(H, hb, P, pb, A, ab, B, bb, i, last)
        heap_sift_up(H, hb, P, pb, A, ab, B, bb, P[pb + moved])


@njit(_nrt=False)
def heap_rekey(H, hb, P, pb, A, ab, B, bb, count, item, a, b):
    """Give member ``item`` the keys ``(a, b)`` and restore the order."""
    i = P[pb + item]
    A[ab + i] = a
    B[bb + i] = b
    heap_sift_up(H, hb, P, pb, A, ab, B, bb, i)
    heap_sift_down(H, hb, P, pb, A, ab, B, bb, P[pb + item], count)
