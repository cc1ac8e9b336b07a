"""CLOCK: FIFO with one reference bit (second chance).

A hit sets the slot's bit. To evict, look at the oldest slot: if its bit is set, clear it
and move the slot to the newest end; repeat until the oldest slot's bit is clear, and
evict that one. This is libCacheSim's ``Clock`` with its default one-bit counter (its
queue form of the clock hand).
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class Clock(KernelPolicy):
    name = "clock"
    kind = _k.CLOCK
