"""Tiers of the hierarchy: specs, the shared ``Tier`` base, memory and flash backends."""

from __future__ import annotations

from kvtier.errors import UnknownNameError
from kvtier.tiers.base import Tier
from kvtier.tiers.flash_tier import FileIO, FlashTier, RecoveryReport, flash_slot_bytes
from kvtier.tiers.memory_tier import DRAMTier, HBMTier, MemoryTier, SRAMTier
from kvtier.tiers.spec import TIER_KINDS, TierSpec, dram, flash, hbm, sram

TIER_CLASSES: dict[str, type[Tier]] = {"sram": SRAMTier, "hbm": HBMTier, "dram": DRAMTier, "flash": FlashTier}


def make_tier(spec: TierSpec, block_bytes: int, *, flash_io: FileIO | None = None) -> Tier:
    """Build the tier class for ``spec.kind`` with slots of ``block_bytes``.
    ``flash_io`` replaces the system calls of a flash tier (fault injection, tracing)."""
    try:
        cls = TIER_CLASSES[spec.kind]
    except KeyError:
        raise UnknownNameError(f"TierSpec.kind: got {spec.kind!r}, expected one of {sorted(TIER_CLASSES)}") from None
    if cls is FlashTier:
        return FlashTier(spec, block_bytes, io=flash_io)
    return cls(spec, block_bytes)


__all__ = [
    "DRAMTier", "FileIO", "FlashTier", "HBMTier", "MemoryTier", "RecoveryReport", "SRAMTier", "TIER_CLASSES", "TIER_KINDS",
    "Tier", "TierSpec", "dram", "flash", "flash_slot_bytes", "hbm", "make_tier", "sram",
]
