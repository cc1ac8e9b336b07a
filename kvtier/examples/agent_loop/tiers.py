"""The example's chain of three tiers: an ``hbm`` and a ``dram`` memory slab and a ``flash`` file.

Every store the example builds (the run's, the calibration's, the calibration check's)
is this chain with a number of blocks per tier; ``tier_specs`` builds it and
``tier_bytes`` says how many bytes those blocks take in each tier (a flash slot holds a
header besides its payload, so it is larger than the block). ``TIER_NAMES`` is the
chain's order, fastest first: tier ``t`` of a lookup is ``TIER_NAMES[t]``.

Read next: ``timing.py`` (how fetches from these tiers are timed).
"""

from __future__ import annotations

from typing import NamedTuple

from kvtier.tiers import TierSpec, dram, flash, flash_slot_bytes, hbm

TIER_NAMES = ("hbm", "dram", "flash")


class TierBytes(NamedTuple):
    """The capacity of each tier of the chain, in bytes."""

    hbm_bytes: int
    dram_bytes: int
    flash_bytes: int


def tier_bytes(block_bytes: int, *, hbm_blocks: int, dram_blocks: int, flash_blocks: int) -> TierBytes:
    """Capacities that hold ``hbm_blocks`` / ``dram_blocks`` / ``flash_blocks`` blocks of
    ``block_bytes``: a memory slot is one block, a flash slot ``flash_slot_bytes``."""
    return TierBytes(hbm_bytes=hbm_blocks * block_bytes, dram_bytes=dram_blocks * block_bytes,
                     flash_bytes=flash_blocks * flash_slot_bytes(block_bytes))


def tier_specs(block_bytes: int, *, hbm_blocks: int, dram_blocks: int, flash_blocks: int, flash_dir: str,
               flash_codec: str) -> list[TierSpec]:
    """The chain ``hbm``, ``dram``, ``flash`` (its file under ``flash_dir``, compressed with
    ``flash_codec``), each tier holding the given number of blocks of ``block_bytes``."""
    capacity = tier_bytes(block_bytes, hbm_blocks=hbm_blocks, dram_blocks=dram_blocks, flash_blocks=flash_blocks)
    return [
        hbm(capacity.hbm_bytes, name="hbm"),
        dram(capacity.dram_bytes, name="dram"),
        flash(capacity.flash_bytes, flash_dir, codec=flash_codec, name="flash"),
    ]
