"""Tiers of the hierarchy: specs, the shared ``Tier`` base, memory and flash backends.

``TierSpec``, the tier kinds and ``flash_slot_bytes`` load with the package: they import nothing heavy, so the
targets and the cost model can describe tiers. The backends (``Tier``, the memory and
flash tiers, ``make_tier``) load when first named, so that describing a tier does not
import the codecs, the checksum library and the flash file format.
"""

from __future__ import annotations

from kvtier._lazy import lazy_exports
from kvtier.tiers.spec import TIER_KINDS, TierSpec, dram, flash, flash_slot_bytes, hbm, sram

# name -> the module that defines it, imported on first access
_BACKENDS = {
    "Tier": "kvtier.tiers.base",
    "FileIO": "kvtier.tiers.flash_file",
    "FlashTier": "kvtier.tiers.flash_tier",
    "RecoveryReport": "kvtier.tiers.flash_tier",
    "DRAMTier": "kvtier.tiers.memory_tier",
    "HBMTier": "kvtier.tiers.memory_tier",
    "MemoryTier": "kvtier.tiers.memory_tier",
    "SRAMTier": "kvtier.tiers.memory_tier",
    "TIER_CLASSES": "kvtier.tiers.factory",
    "make_tier": "kvtier.tiers.factory",
}


__getattr__, __dir__ = lazy_exports(globals(), _BACKENDS)

__all__ = [
    "DRAMTier", "FileIO", "FlashTier", "HBMTier", "MemoryTier", "RecoveryReport", "SRAMTier", "TIER_CLASSES", "TIER_KINDS",
    "Tier", "TierSpec", "dram", "flash", "flash_slot_bytes", "hbm", "make_tier", "sram",
]
