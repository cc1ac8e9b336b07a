"""Prefix-aware LRU: a chain's tail blocks are evicted before their ancestors.

LRU over requests, tail first within a request, as vLLM's free-block queue is after a
request frees its blocks in reverse. A block inserted or hit at ``depth == d + 1`` right
after the previous block (at depth ``d``) is placed just *older* than it, so a request's
blocks sit newest-first from its root: ``... b3 b2 b1 b0`` (``b0`` newest). Any other
depth (a new request, or no hint: ``depth=0`` every time) goes to the newest end, so
without hints this is plain LRU. Evicting a descendant first never breaks a prefix that
a shorter request could still hit.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy


@register_policy
class PrefixLRU(KernelPolicy):
    name = "prefix-lru"
    kind = _k.PREFIX_LRU
