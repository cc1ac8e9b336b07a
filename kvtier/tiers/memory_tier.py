"""Memory tiers (SRAM, HBM, DRAM): payload in one preallocated numpy slab.

The slab is ``num_slots x block_bytes`` of uint8, allocated and touched once when the
tier is built (so resident memory is the tier's capacity from the start); a slot's bytes are
written with one copy and read back as a view. Per slot, the tier records the stored
length, codec and CRC (the CRC only when the spec asks for checksums).
"""

from __future__ import annotations

import numpy as np

from kvtier.buffers import aligned_empty
from kvtier.codec import Encoded
from kvtier.tiers.base import Tier
from kvtier.tiers.spec import TierSpec


class MemoryTier(Tier):
    """A tier whose bytes live in host memory (a simulated SRAM/HBM/DRAM)."""

    def __init__(self, spec: TierSpec, block_bytes: int) -> None:
        super().__init__(spec, block_bytes)
        # Page-aligned (np.empty promises malloc's 16 bytes only): a block copied out of a
        # slot into an aligned buffer then runs at full speed (see ``aligned_empty``).
        self.slab = aligned_empty((self.num_slots, block_bytes), np.uint8)
        # Touch every page now, as an inference engine allocates its KV pool up front:
        # first-use page faults would otherwise land on the data path.
        self.slab.fill(0)
        # Per-slot (stored length, codec, crc); a list of tuples reads faster than numpy
        # scalars on this per-block path.
        self.slot_meta: list[tuple[int, int, int | None]] = [(0, 0, None)] * self.num_slots

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded) -> None:
        data = enc.data if isinstance(enc.data, np.ndarray) else np.frombuffer(enc.data, dtype=np.uint8)
        n = data.shape[0]
        self.slab[slot, :n] = data
        self.slot_meta[slot] = (n, enc.codec, enc.crc)

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None) -> Encoded:
        n, codec, crc = self.slot_meta[slot]
        return Encoded(codec, self.block_bytes, self.slab[slot, :n], crc)


class SRAMTier(MemoryTier):
    kind = "sram"


class HBMTier(MemoryTier):
    kind = "hbm"


class DRAMTier(MemoryTier):
    kind = "dram"
