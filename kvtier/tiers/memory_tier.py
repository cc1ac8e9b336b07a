"""Memory tiers (SRAM, HBM, DRAM): payload in one preallocated numpy slab.

The slab is ``num_slots x block_bytes`` of uint8, allocated and touched once when the
tier is built (so resident memory is the tier's capacity from the start); a slot's bytes are
written with one copy and read back as a view. Per-slot arrays record the stored length,
codec and CRC (the CRC only when the spec asks for checksums).
"""

from __future__ import annotations

import numpy as np

from kvtier.codec import Encoded
from kvtier.tiers.base import Tier
from kvtier.tiers.spec import TierSpec


class MemoryTier(Tier):
    """A tier whose bytes live in host memory (a simulated SRAM/HBM/DRAM)."""

    def __init__(self, spec: TierSpec, block_bytes: int) -> None:
        super().__init__(spec, block_bytes)
        self.slab = np.empty((self.num_slots, block_bytes), dtype=np.uint8)
        # Touch every page now, as an inference engine allocates its KV pool up front:
        # first-use page faults would otherwise land on the data path.
        self.slab.fill(0)
        self.slot_len = np.zeros(self.num_slots, dtype=np.int64)
        self.slot_codec = np.zeros(self.num_slots, dtype=np.uint8)
        self.slot_crc = np.zeros(self.num_slots, dtype=np.uint32)

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded) -> None:
        data = enc.data if isinstance(enc.data, np.ndarray) else np.frombuffer(enc.data, dtype=np.uint8)
        n = data.shape[0]
        self.slab[slot, :n] = data
        self.slot_len[slot] = n
        self.slot_codec[slot] = enc.codec
        if enc.crc is not None:
            self.slot_crc[slot] = enc.crc

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None) -> Encoded:
        n = int(self.slot_len[slot])
        crc = int(self.slot_crc[slot]) if self.checksum else None
        return Encoded(int(self.slot_codec[slot]), self.block_bytes, self.slab[slot, :n], crc)


class SRAMTier(MemoryTier):
    kind = "sram"


class HBMTier(MemoryTier):
    kind = "hbm"


class DRAMTier(MemoryTier):
    kind = "dram"
