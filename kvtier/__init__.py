"""kvtier: KV-cache tiering for LLM inference.

A real block-paged tiered KV store (``TieredStore``), the model geometry it is sized by
(``ModelSpec``), and the chained prefix hashing that names its blocks.

The specs, the cost model, the policies and the planners load with the package. The store,
its tier backends, the replay engine and the trace formats load when one of their names is
first used (``_LAZY``), so that importing the cost model or a target does not load the
codecs, the checksum library and the flash file format.
"""

import sys
import types

from kvtier._lazy import lazy_exports
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
from kvtier.planners import PLANNERS, Plan, Planner, make_planner, planner_names, register_planner
from kvtier.stats import StoreStats, TierStats
from kvtier.targets import Estimate, HardwareTarget, LinkSpec, TargetTier, load_target, target_names
from kvtier.tiers import TierSpec, dram, flash, hbm, sram

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    **dict.fromkeys(("ReplayResult", "ReplayTier", "replay"), "kvtier.replay"),
    **dict.fromkeys(("LookupResult", "PutResult", "TieredStore"), "kvtier.store"),
    **dict.fromkeys(("Trace", "generate_trace", "read_trace", "trace_stats", "write_trace"), "kvtier.traces"),
    **dict.fromkeys(("DRAMTier", "FlashTier", "HBMTier", "SRAMTier", "Tier"), "kvtier.tiers"),
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


class _Package(types.ModuleType):
    """``kvtier`` itself. Importing a submodule binds it on its package, and ``kvtier.replay``
    (the module) would then hide ``kvtier.replay`` (the function this package exports);
    the package keeps the function, as it did when it imported it eagerly."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
