"""Memory tiers (SRAM, HBM, DRAM): payload in one preallocated numpy slab.

The slab is ``num_slots x block_bytes`` of uint8, allocated and touched once when the
tier is built (so resident memory is the tier's capacity from the start); a slot's bytes are
written with one copy and read back as a view. Per slot, the tier records the stored
length, codec and CRC (the CRC only when the spec asks for checksums).

In a batch, raw full-size blocks move between the slab and the caller's buffer with one
copy per direction (a run of adjacent slots is one ``np.copyto``, other rows go through
the compiled row copy, ``kvtier._kernels.gather.copy_rows``): reads and writes of batched
rows are recorded and carried out together, and any other access to the slab first
carries out what is pending, so every access sees the bytes single copies would have left.
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.gather import copy_rows as copy_rows_kernel
from kvtier.buffers import aligned_empty, copy_rows, is_run
from kvtier.codec import CODEC_NONE, Encoded, checksum
from kvtier.tiers.base import CorruptSlot, Tier
from kvtier.tiers.spec import TierSpec


def _copied(bad: int) -> None:
    """The row kernel checks its row numbers first and returns the first bad one's index;
    the tier's own rows are always in bounds."""
    assert bad < 0, f"row copy: row pair {bad} out of bounds"


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
        # Deferred copies of the current batch: slab slot -> batch row, and batch row -> slot.
        self._gather_slots: list[int] = []
        self._gather_rows: list[int] = []
        self._scatter_rows: list[int] = []
        self._scatter_slots: list[int] = []
        self._row_index = np.arange(64, dtype=np.int64)

    def _flush_gathers(self) -> None:
        if self._gather_slots:
            copy_rows(self.slab, self._gather_slots, self._batch_rows, self._gather_rows)
            self._gather_slots, self._gather_rows = [], []

    def _flush_scatters(self) -> None:
        if self._scatter_slots:
            copy_rows(self._batch_rows, self._scatter_rows, self.slab, self._scatter_slots)
            self._scatter_rows, self._scatter_slots = [], []

    def end_batch(self) -> None:
        try:
            self._flush_scatters()
            self._flush_gathers()
        finally:
            self._gather_slots, self._gather_rows, self._scatter_rows, self._scatter_slots = [], [], [], []
            super().end_batch()

    def _read_rows(self, slots: np.ndarray, rows: np.ndarray, pool=None, queue_depth: int = 1) -> bool:
        meta = self.slot_meta
        slot_list = slots.tolist()
        full = (self.block_bytes, CODEC_NONE)
        # Without a codec every slot is stored raw and whole (a block demoted from a codec
        # tier is decoded first): only a codec tier needs the per-slot check.
        if self.codec != CODEC_NONE and any(meta[s][:2] != full for s in slot_list):
            return False
        if self.checksum and any(checksum(self.slab[s]) != meta[s][2] for s in slot_list):
            return False  # a corrupt slot: the single reads find and count it
        n = len(slot_list)
        if is_run(slot_list):
            first = slot_list[0]
            np.copyto(rows[:n], self.slab[first : first + n])  # one run of slots: one memcpy
        else:
            _copied(copy_rows_kernel(self.slab, slots, rows, self._batch_rows_index(n)))
        return True

    def _batch_rows_index(self, n: int) -> np.ndarray:
        """``0..n-1`` as int64, kept between batches (most batches have one size)."""
        if self._row_index.size < n:
            self._row_index = np.arange(max(n, 2 * self._row_index.size), dtype=np.int64)
        return self._row_index[:n]

    def _write_rows(self, slots: list[int], hashes: list[int], rows: np.ndarray, run: bool) -> bool:
        n = len(slots)
        meta = ([(self.block_bytes, CODEC_NONE, checksum(r)) for r in rows] if self.checksum
                else [(self.block_bytes, CODEC_NONE, None)] * n)
        if run:
            first = slots[0]
            np.copyto(self.slab[first : first + n], rows)  # one run of slots (fresh ones): one memcpy
            self.slot_meta[first : first + n] = meta
            return True
        _copied(copy_rows_kernel(rows, self._batch_rows_index(n), self.slab, np.array(slots, dtype=np.int64)))
        for slot, m in zip(slots, meta):
            self.slot_meta[slot] = m
        return True

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded, row: int = -1) -> None:
        self._flush_gathers()  # a pending copy out of this slot must see the old bytes
        data = enc.data if isinstance(enc.data, np.ndarray) else np.frombuffer(enc.data, dtype=np.uint8)
        n = data.shape[0]
        if row >= 0 and self._batch_rows is not None and enc.codec == CODEC_NONE and n == self.block_bytes:
            self._scatter_rows.append(row)
            self._scatter_slots.append(slot)
        else:
            self._flush_scatters()  # an earlier pending write to this slot must not land after this one
            self.slab[slot, :n] = data
        self.slot_meta[slot] = (n, enc.codec, enc.crc)

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None, row: int = -1,
                   defer: bool = False) -> Encoded:
        self._flush_scatters()  # the slot's bytes may still be pending
        n, codec, crc = self.slot_meta[slot]
        if defer and row >= 0 and self._batch_rows is not None and codec == CODEC_NONE and n == self.block_bytes:
            if self.checksum and checksum(self.slab[slot]) != crc:
                raise CorruptSlot
            self._gather_slots.append(slot)
            self._gather_rows.append(row)
            return Encoded(codec, self.block_bytes, out, crc, verified=True)
        return Encoded(codec, self.block_bytes, self.slab[slot, :n], crc)


class SRAMTier(MemoryTier):
    kind = "sram"


class HBMTier(MemoryTier):
    kind = "hbm"


class DRAMTier(MemoryTier):
    kind = "dram"
