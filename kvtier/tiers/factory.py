"""The backend class of each tier kind, and ``make_tier`` that builds one from a spec."""

from __future__ import annotations

from kvtier.errors import UnknownNameError
from kvtier.tiers.base import Tier
from kvtier.tiers.flash_tier import FileIO, FlashTier
from kvtier.tiers.memory_tier import DRAMTier, HBMTier, SRAMTier
from kvtier.tiers.spec import TierSpec

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


__all__ = ["TIER_CLASSES", "make_tier"]
