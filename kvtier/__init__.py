"""kvtier: KV-cache tiering for LLM inference.

A real block-paged tiered KV store (``TieredStore``), the model geometry it is sized by
(``ModelSpec``), and the chained prefix hashing that names its blocks.
"""

from kvtier.errors import (
    BlockNotFoundError,
    BlockPinnedError,
    ConfigError,
    FlashFormatError,
    KvtierError,
    PayloadError,
    TraceFormatError,
    UnknownNameError,
)
from kvtier.hashing import block_hashes
from kvtier.model import ModelSpec, model_names
from kvtier.policies import POLICIES, EvictionPolicy, make_policy, register_policy
from kvtier.stats import StoreStats, TierStats
from kvtier.store import LookupResult, PutResult, TieredStore
from kvtier.tiers import DRAMTier, FlashTier, HBMTier, SRAMTier, Tier, TierSpec, dram, flash, hbm, sram

__version__ = "0.1.0"

__all__ = [
    "BlockNotFoundError", "BlockPinnedError", "ConfigError", "DRAMTier", "EvictionPolicy", "FlashFormatError",
    "FlashTier", "HBMTier", "KvtierError", "LookupResult", "ModelSpec", "POLICIES", "PayloadError", "PutResult",
    "SRAMTier", "StoreStats", "Tier", "TierSpec", "TierStats", "TieredStore", "TraceFormatError",
    "UnknownNameError", "__version__", "block_hashes", "dram", "flash", "hbm", "make_policy", "model_names",
    "register_policy", "sram",
]
