"""Tiers of the hierarchy: specs, the shared ``Tier`` base, memory and flash backends."""

from __future__ import annotations

from kvtier.errors import UnknownNameError
from kvtier.tiers.base import Tier
from kvtier.tiers.flash_tier import FlashTier, RecoveryReport
from kvtier.tiers.memory_tier import DRAMTier, HBMTier, MemoryTier, SRAMTier
from kvtier.tiers.spec import TIER_KINDS, TierSpec, dram, flash, hbm, sram

TIER_CLASSES: dict[str, type[Tier]] = {"sram": SRAMTier, "hbm": HBMTier, "dram": DRAMTier, "flash": FlashTier}


def make_tier(spec: TierSpec, block_bytes: int) -> Tier:
    """Build the tier class for ``spec.kind`` with slots of ``block_bytes``."""
    try:
        cls = TIER_CLASSES[spec.kind]
    except KeyError:
        raise UnknownNameError(f"TierSpec.kind: got {spec.kind!r}, expected one of {sorted(TIER_CLASSES)}") from None
    return cls(spec, block_bytes)


__all__ = [
    "DRAMTier", "FlashTier", "HBMTier", "MemoryTier", "RecoveryReport", "SRAMTier", "TIER_CLASSES", "TIER_KINDS",
    "Tier", "TierSpec", "dram", "flash", "hbm", "make_tier", "sram",
]
