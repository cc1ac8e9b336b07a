"""kvtier: KV-cache tiering for LLM inference.

The public API, by face (``ARCHITECTURE.md`` says which module answers which question):

* **store and tiers**: ``TieredStore`` (real bytes in SRAM/HBM/DRAM slabs and a flash
  file), ``TierSpec`` and its builders ``sram``/``hbm``/``dram``/``flash``, the tier
  backends, ``block_hashes`` (vLLM-style chained prefix hashes), ``StoreStats``;
* **policies**: ``POLICIES`` (read-only, by name), ``make_policy``, ``register_policy``,
  ``EvictionPolicy``;
* **traces**: ``Trace``, ``generate_trace``, ``read_trace``, ``write_trace``, ``trace_stats``;
* **replay**: ``replay`` (metadata-only, numba kernels), ``ReplayTier``, ``ReplayResult``,
  ``select_kernel``;
* **models, targets and cost**: ``ModelSpec``, ``HardwareTarget`` and its parts,
  ``load_target``, the cost model (``transfer_time_s``, ``recompute_time_s``,
  ``decode_step_time_s``, ``LinkQueue``, ...), the recompute-vs-fetch planners
  (``PLANNERS``, read-only, ``make_planner``);
* **simulation**: ``simulate``, ``SimConfig``, ``SimResult``;
* **testing**: ``kvtier.testing`` (fault injection, hypothesis strategies, the policy
  conformance check; imported on its own, as it needs the test extra).

Everything but the store, its tier backends, the trace formats and the simulator loads
with the package; those load when one of their names is first used, so that importing the
cost model or a target does not load the codecs, the checksum library and the flash file
format.
"""

from kvtier._lazy import lazy_exports
from kvtier.cost import (
    LinkQueue,
    Transfer,
    break_even_fetch_bw_bytes_per_s,
    decode_step_time_s,
    layerwise_overlap_time_s,
    recompute_time_s,
    transfer_time_s,
)
from kvtier.errors import (
    BlockNotFoundError,
    BlockPinnedError,
    ConfigError,
    FlashFormatError,
    KvtierError,
    PayloadError,
    TierIOError,
    TraceFormatError,
    UnknownNameError,
)
from kvtier.hashing import block_hashes
from kvtier.model import ModelSpec, model_names
from kvtier.planners import PLANNERS, Plan, Planner, make_planner, planner_names, register_planner
from kvtier.policies import POLICIES, EvictionPolicy, make_policy, register_policy
from kvtier.replay import KernelChoice, ReplayResult, ReplayTier, replay, select_kernel
from kvtier.stats import StoreStats, TierStats
from kvtier.targets import Estimate, HardwareTarget, LinkSpec, TargetTier, load_target, target_names
from kvtier.tiers import TierSpec, dram, flash, flash_slot_bytes, hbm, sram

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    **dict.fromkeys(("FetchManyResult", "LookupResult", "PutResult", "TieredStore"), "kvtier.store"),
    **dict.fromkeys(("DRAMTier", "FlashTier", "HBMTier", "SRAMTier", "Tier"), "kvtier.tiers"),
    **dict.fromkeys(("Trace", "generate_trace", "read_trace", "trace_stats", "write_trace"), "kvtier.traces"),
    **dict.fromkeys(("SimConfig", "SimResult", "simulate"), "kvtier.sim"),
}

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)

__version__ = "0.1.0"

__all__ = [
    # store and tiers
    "TieredStore", "FetchManyResult", "LookupResult", "PutResult", "StoreStats", "TierStats", "TierSpec", "Tier",
    "SRAMTier", "HBMTier", "DRAMTier", "FlashTier", "sram", "hbm", "dram", "flash", "flash_slot_bytes", "block_hashes",
    # policies
    "POLICIES", "EvictionPolicy", "make_policy", "register_policy",
    # traces
    "Trace", "generate_trace", "read_trace", "write_trace", "trace_stats",
    # replay
    "replay", "ReplayTier", "ReplayResult", "select_kernel", "KernelChoice",
    # models, targets and cost
    "ModelSpec", "model_names", "HardwareTarget", "TargetTier", "LinkSpec", "Estimate", "load_target",
    "target_names", "transfer_time_s", "recompute_time_s", "decode_step_time_s", "layerwise_overlap_time_s",
    "break_even_fetch_bw_bytes_per_s", "LinkQueue", "Transfer", "PLANNERS", "Plan", "Planner", "make_planner",
    "planner_names", "register_planner",
    # simulation
    "simulate", "SimConfig", "SimResult",
    # errors
    "KvtierError", "ConfigError", "UnknownNameError", "PayloadError", "TraceFormatError", "FlashFormatError",
    "BlockNotFoundError", "BlockPinnedError", "TierIOError",
    "__version__",
]
