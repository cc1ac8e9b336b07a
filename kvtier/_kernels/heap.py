"""Indexed binary min-heap over slot indices, in flat arrays at given base offsets.

The heap lives in ``I[hb : hb + count]`` (slots), positions in ``I[pb + slot]`` (-1 when
not a member), keys in ``F[fb + slot]`` (priority) and ``K[kb + slot]`` (tie-break),
compared lexicographically: ties in priority go to the smaller tie value (the policies
use an access stamp, so the older block goes first). Insert, remove and re-key are
O(log n); the minimum is ``I[hb]``. Offsets (not array views) keep the kernels free of
reference counting, so they inline into the replay loop.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit


@njit(_nrt=False)
def _less(F, fb, K, kb, a, b):
    fa = F[fb + a]
    fb_ = F[fb + b]
    return fa < fb_ or (fa == fb_ and K[kb + a] < K[kb + b])


@njit(_nrt=False)
def _sift_up(I, hb, pb, F, fb, K, kb, i):
    s = I[hb + i]
    while i > 0:
        parent = (i - 1) >> 1
        p = I[hb + parent]
        if not _less(F, fb, K, kb, s, p):
            break
        I[hb + i] = p
        I[pb + p] = i
        i = parent
    I[hb + i] = s
    I[pb + s] = i


@njit(_nrt=False)
def _sift_down(I, hb, pb, F, fb, K, kb, i, count):
    s = I[hb + i]
    while True:
        child = 2 * i + 1
        if child >= count:
            break
        c = I[hb + child]
        if child + 1 < count:
            c2 = I[hb + child + 1]
            if _less(F, fb, K, kb, c2, c):
                child += 1
                c = c2
        if not _less(F, fb, K, kb, c, s):
            break
        I[hb + i] = c
        I[pb + c] = i
        i = child
    I[hb + i] = s
    I[pb + s] = i


@njit(_nrt=False)
def heap_push(I, hb, pb, F, fb, K, kb, count, slot):
    """Add ``slot`` (keys already set) to a heap of ``count`` members."""
    I[hb + count] = slot
    I[pb + slot] = count
    _sift_up(I, hb, pb, F, fb, K, kb, count)


@njit(_nrt=False)
def heap_remove(I, hb, pb, F, fb, K, kb, count, slot):
    """Remove member ``slot`` from a heap of ``count`` members."""
    i = I[pb + slot]
    last = count - 1
    I[pb + slot] = -1
    if i != last:
        moved = I[hb + last]
        I[hb + i] = moved
        I[pb + moved] = i
        _sift_down(I, hb, pb, F, fb, K, kb, i, last)
        _sift_up(I, hb, pb, F, fb, K, kb, I[pb + moved])


@njit(_nrt=False)
def heap_rekey(I, hb, pb, F, fb, K, kb, count, slot):
    """Restore order after the caller changed ``slot``'s keys."""
    _sift_up(I, hb, pb, F, fb, K, kb, I[pb + slot])
    _sift_down(I, hb, pb, F, fb, K, kb, I[pb + slot], count)
