"""The policies' decision rules, once: ARC's adaptation and choice of victim list, S3-FIFO's
queues. Pure functions of counts (and, for the queue walks, of the lists they walk).

The general policy kernels (``kvtier._kernels.policy``) and the fast replay loops
(``listreplay``, ``ghostreplay``) keep their state in different places (a header of
counts, a row of per-tier scalars, locals), but decide with these, so a rule changed here
changes every kernel alike; tests replay random traces through all of them and compare
every decision.

ARC (Megiddo and Modha, FAST'03): ``T1``/``T2`` hold blocks seen once / more than once,
``B1``/``B2`` the keys they recently evicted; ``p`` is the target size of ``T1``.
S3-FIFO (Yang et al., SOSP'23): a small FIFO for new blocks, a main FIFO with CLOCK-like
reinsertion, and a ghost FIFO of keys evicted from small; counts saturate at 3.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit
from kvtier._kernels.links import push, unlink

#: S3-FIFO's access counts saturate here.
S3_MAX_FREQ = 3


# -- ARC --------------------------------------------------------------------------------


@njit(_nrt=False)
def arc_adapt(p, b1, b2, c, in_b1):
    """ARC's target size of T1 after a ghost hit in B1 (``in_b1``) or B2 (``b1``, ``b2``:
    the ghost lists' sizes before the ghost leaves; ``c`` the capacity)."""
    if in_b1:
        return min(p + max(b2 / b1, 1.0), c)
    return max(p - max(b1 / b2, 1.0), 0.0)


@njit(_nrt=False)
def arc_victim_list(t1, t2, p, ghost_hit):
    """ARC's REPLACE: 0 evicts from T1, 1 from T2 (``ghost_hit`` 2: the key was in B2)."""
    if (t1 > 0 and (t1 > p or (t1 == p and ghost_hit == 2))) or t2 == 0:
        return 0
    return 1


@njit(_nrt=False)
def arc_evict_case(t1, t2, b1, b2, c, p, ghost_hit):
    """ARC's eviction step in a full cache of ``c`` blocks: ``(list, trim, remember)``, the
    list that gives the victim (0 T1, 1 T2), the ghost list whose oldest key is forgotten
    first (0 B1, 1 B2, -1 none) and whether the victim's key is remembered. ``ghost_hit``:
    0, or 1 / 2 when the incoming key was in B1 / B2 (and has left it)."""
    if ghost_hit != 0:
        return arc_victim_list(t1, t2, p, ghost_hit), -1, True
    if t1 + b1 + 1 > c:
        if b1 > 0:
            return arc_victim_list(t1, t2, p, 0), 0, True
        return 0, -1, False
    trim = 1 if (t1 + b1 + t2 + b2 >= 2 * c and b2 > 0) else -1
    return arc_victim_list(t1, t2, p, 0), trim, True


# -- S3-FIFO ----------------------------------------------------------------------------


@njit(_nrt=False)
def s3_insert_queue(ghost_hit, has_evicted, small_count, small_cap):
    """The queue a new block enters: main (1) if its key was a ghost, or while the cache
    has never evicted and small is full (filling main first); else small (0)."""
    if ghost_hit:
        return 1
    if not has_evicted and small_count >= small_cap:
        return 1
    return 0


@njit(_nrt=False)
def s3_hit(f):
    """A block's access count after a hit."""
    return f + 1 if f < S3_MAX_FREQ else f


@njit(_nrt=False)
def s3_evicts_from_main(small_count, main_count, main_cap):
    """Whether the next victim comes from main: main is over its share, or small is empty."""
    return main_count > main_cap or small_count == 0


@njit(_nrt=False)
def s3_main_victim(lk, b, head, freq, fb):
    """Walk main (sentinel ``head`` in links ``lk`` from ``b``; counts ``freq[fb + x]``):
    its oldest member leaves unless it was used, in which case it goes back to the front
    with its count lowered by one. Returns the member that left (unlinked)."""
    while True:
        s = lk[b + 2 * head + 1]
        f = freq[fb + s]
        unlink(lk, b, s)
        if f < 1:
            return s
        push(lk, b, head, s)
        freq[fb + s] = min(f, S3_MAX_FREQ) - 1


@njit(_nrt=False)
def s3_small_victim(lk, b, head, main_head, freq, fb, queue, qb, small_count, thresh):
    """Walk small (sentinel ``head``; ``small_count`` members): its oldest member moves to
    main (count reset, ``queue[qb + x] = 1``) if it was used ``thresh`` times or more,
    else leaves. Returns ``(victim, moved)``: the member that left (unlinked), or -1 when
    small ran dry, and how many moved to main."""
    moved = 0
    while small_count > 0:
        s = lk[b + 2 * head + 1]
        unlink(lk, b, s)
        small_count -= 1
        if freq[fb + s] < thresh:
            return s, moved
        push(lk, b, main_head, s)
        queue[qb + s] = 1
        freq[fb + s] = 0
        moved += 1
    return -1, moved


# -- CLOCK and SIEVE --------------------------------------------------------------------


@njit(_nrt=False)
def clock_victim(lk, b, head, ref, rb):
    """CLOCK's hand: from the oldest member, each with references left (``ref[rb + x]``)
    loses one and goes to the front; the first with none is the victim. Returns it (still
    on the list)."""
    s = lk[b + 2 * head + 1]
    while ref[rb + s] != 0:
        ref[rb + s] -= 1
        unlink(lk, b, s)
        push(lk, b, head, s)
        s = lk[b + 2 * head + 1]
    return s


@njit(_nrt=False)
def sieve_victim(lk, b, head, seen, sb, hand):
    """SIEVE's hand (Zhang et al., NSDI'24): from ``hand`` (-1: the oldest member) toward
    newer members, wrapping to the oldest, it clears the ``seen`` bits it passes and stops
    at the first member not seen. Returns ``(victim, hand)``: the victim (still on the
    list) and where the hand rests next (the victim's newer neighbour, -1 for the oldest)."""
    s = hand if hand >= 0 else lk[b + 2 * head + 1]
    while seen[sb + s] != 0:
        seen[sb + s] = 0
        s = lk[b + 2 * s + 1]
        if s == head:
            s = lk[b + 2 * head + 1]
    h = lk[b + 2 * s + 1]
    return s, -1 if h == head else h
