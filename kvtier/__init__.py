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
from kvtier.cost import (
    LinkQueue,
    Transfer,
    break_even_fetch_bw_bytes_per_s,
    decode_step_time_s,
    layerwise_overlap_time_s,
    recompute_time_s,
    transfer_time_s,
)
from kvtier.hashing import block_hashes
from kvtier.model import ModelSpec, model_names
from kvtier.policies import POLICIES, EvictionPolicy, make_policy, register_policy
from kvtier.policies.planners import PLANNERS, Plan, Planner, make_planner, planner_names, register_planner
from kvtier.replay import ReplayResult, ReplayTier, replay
from kvtier.stats import StoreStats, TierStats
from kvtier.store import LookupResult, PutResult, TieredStore
from kvtier.targets import Estimate, HardwareTarget, LinkSpec, TargetTier, load_target, target_names
from kvtier.traces import Trace, generate_trace, read_trace, trace_stats, write_trace
from kvtier.tiers import DRAMTier, FlashTier, HBMTier, SRAMTier, Tier, TierSpec, dram, flash, hbm, sram

__version__ = "0.1.0"

__all__ = [
    "ReplayResult", "ReplayTier", "replay",
    "Trace", "generate_trace", "read_trace", "trace_stats", "write_trace",
    "Estimate", "HardwareTarget", "LinkQueue", "LinkSpec", "PLANNERS", "Plan", "Planner", "TargetTier", "Transfer",
    "break_even_fetch_bw_bytes_per_s", "decode_step_time_s", "layerwise_overlap_time_s", "load_target",
    "make_planner", "planner_names", "recompute_time_s", "register_planner", "target_names", "transfer_time_s",
    "BlockNotFoundError", "BlockPinnedError", "ConfigError", "DRAMTier", "EvictionPolicy", "FlashFormatError",
    "FlashTier", "HBMTier", "KvtierError", "LookupResult", "ModelSpec", "POLICIES", "PayloadError", "PutResult",
    "SRAMTier", "StoreStats", "Tier", "TierSpec", "TierStats", "TieredStore", "TraceFormatError",
    "UnknownNameError", "__version__", "block_hashes", "dram", "flash", "hbm", "make_policy", "model_names",
    "register_policy", "sram",
]
