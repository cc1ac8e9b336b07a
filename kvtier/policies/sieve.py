"""SIEVE (Zhang et al., NSDI'24): a FIFO queue, a visited bit, and a hand.

A hit sets the visited bit; nothing moves. To evict, the hand walks from where it
stopped toward newer slots (starting at the oldest, wrapping back to the oldest),
clearing visited bits, and evicts the first unvisited slot; it then rests on the next
newer slot. New slots go to the newest end. Matches libCacheSim's ``Sieve``.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class Sieve(KernelPolicy):
    name = "sieve"
    kind = _k.SIEVE
