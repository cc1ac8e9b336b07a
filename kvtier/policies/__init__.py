"""Eviction policies (one file each) and their registry.

``make_policy(name, num_slots)`` builds one by name; ``POLICIES`` lists them:
``lru``, ``fifo``, ``lfu``, ``clock``, ``sieve``, ``s3fifo``, ``arc``, ``prefix-lru``,
``cost-aware``, ``belady``.
"""

from kvtier.policies.base import POLICIES, EvictionPolicy, KernelPolicy, make_policy, register_policy
from kvtier.policies.lru import LRU
from kvtier.policies.fifo import FIFO
from kvtier.policies.lfu import LFU
from kvtier.policies.clock import Clock
from kvtier.policies.sieve import Sieve
from kvtier.policies.s3fifo import S3FIFO
from kvtier.policies.arc import ARC
from kvtier.policies.prefix_lru import PrefixLRU
from kvtier.policies.cost_aware import CostAware
from kvtier.policies.belady import Belady

POLICY_NAMES = ("lru", "fifo", "lfu", "clock", "sieve", "s3fifo", "arc", "prefix-lru", "cost-aware", "belady")

__all__ = [
    "ARC", "Belady", "Clock", "CostAware", "EvictionPolicy", "FIFO", "KernelPolicy", "LFU", "LRU", "POLICIES",
    "POLICY_NAMES", "PrefixLRU", "S3FIFO", "Sieve", "make_policy", "register_policy",
]
