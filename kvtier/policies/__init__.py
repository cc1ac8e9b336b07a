"""Eviction policies (one file each) and their registry.

``make_policy(name, num_slots)`` builds one by name; ``POLICIES`` lists them.
"""

from kvtier.policies.base import POLICIES, EvictionPolicy, make_policy, register_policy
from kvtier.policies.lru import LRU

__all__ = ["POLICIES", "EvictionPolicy", "LRU", "make_policy", "register_policy"]
