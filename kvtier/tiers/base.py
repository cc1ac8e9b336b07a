"""``Tier``: one level of the hierarchy: a slot pool, an index, a policy, a backend.

A tier holds whole blocks in fixed-size slots. Its metadata is struct-of-arrays
(``slot_hash``, ``slot_pins``) plus a dict from block hash to slot; its eviction policy
orders the unpinned resident slots; a backend (a numpy slab or a file) holds the bytes.
Subclasses implement the backend: ``_write_slot``, ``_read_slot``, ``_release_slot``.

Batches: between ``begin_batch(rows)`` and ``end_batch()`` the store passes, with each
read or write of a batched block, its ``row`` in the caller's contiguous buffer ``rows``;
a backend may then defer the copy and move the whole batch at once (the memory tier's
gather/scatter) or read ahead (``preread``: the flash tier's coalesced ``preadv``). What a
batch observes is exactly what the same single reads and writes would: bytes, checks,
statistics.

A tier never decides where a victim goes: the store's cascade does. A tier never
serves bytes it cannot verify: a read that fails its checks removes the block, counts
it in ``stats.corrupt`` (or ``read_errors``) and returns ``None``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from kvtier.buffers import is_run
from kvtier.codec import CODEC_NONE, CodecTimer, Encoded, checksum, codec_id, encode
from kvtier.errors import ConfigError
from kvtier.policies import make_policy
from kvtier.stats import TierStats
from kvtier.tiers.spec import TierSpec
from kvtier.validation import check_int


class CorruptSlot(Exception):
    """Raised by a backend read whose bytes do not verify (internal: becomes a miss)."""


class Tier:
    """Base class of every tier. Construct through a subclass or ``make_tier``."""

    kind: ClassVar[str] = ""

    def __init__(self, spec: TierSpec, block_bytes: int) -> None:
        if spec.kind != self.kind:
            raise ConfigError(f"TierSpec.kind: got {spec.kind!r} for a {type(self).__name__}, expected {self.kind!r}")
        block_bytes = check_int(block_bytes, "block_bytes")
        self.spec = spec
        self.name = spec.name
        self.block_bytes = block_bytes
        self.slot_stride = self._slot_stride(block_bytes)
        num_slots = spec.capacity_bytes // self.slot_stride
        if num_slots < 1:
            raise ConfigError(
                f"TierSpec.capacity_bytes of tier {spec.name!r}: got {spec.capacity_bytes}, expected at least one "
                f"slot of {self.slot_stride} bytes (block of {block_bytes} bytes)"
            )
        self.num_slots = int(num_slots)
        self.codec = codec_id(spec.codec)
        self.checksum = bool(spec.checksum)
        self.policy = make_policy(spec.policy, self.num_slots)
        self.stats = TierStats()
        self.timer = CodecTimer()
        self.slot_hash = np.zeros(self.num_slots, dtype=np.uint64)
        self.slot_pins = np.zeros(self.num_slots, dtype=np.int32)
        self.hash_to_slot: dict[int, int] = {}
        # A stack of free slots; popping from the end hands out slot 0 first.
        self._free = list(range(self.num_slots - 1, -1, -1))
        # Free slots whose release the backend failed (slot -> the block it held): the old
        # bytes are still there until the slot is written again or a retry succeeds (the
        # flash tier retries at flush, and reports what still fails).
        self._unreleased: dict[int, int | None] = {}
        # Writes per slot since the tier was built: a read made ahead of its turn is used
        # only if its slot was not written since (``preread``).
        self.slot_writes = np.zeros(self.num_slots, dtype=np.int64)
        self._batch_rows: np.ndarray | None = None

    # -- backend (subclasses) ---------------------------------------------------------

    def _slot_stride(self, block_bytes: int) -> int:
        """Bytes of capacity one slot uses (payload plus any per-slot header/alignment)."""
        return block_bytes

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded, row: int = -1) -> None:
        """Store ``enc`` in ``slot``. ``row`` >= 0: ``enc.data`` is that row of the batch
        buffer, which stays valid until ``end_batch`` (the copy may be deferred)."""
        raise NotImplementedError

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None, row: int = -1,
                   defer: bool = False) -> Encoded:
        """The slot's stored form. A backend may read a raw payload straight into ``out``
        (a flat uint8 array of ``block_bytes``) and return it as the data. ``row`` >= 0:
        ``out`` is that row of the batch buffer (what ``preread`` read there may be used);
        ``defer``: the copy into it may also wait for ``end_batch`` (``verified=True`` then
        says the CRC was checked on the stored bytes)."""
        raise NotImplementedError

    # -- batches ----------------------------------------------------------------------

    def begin_batch(self, rows: np.ndarray) -> None:
        """Start a batch over ``rows``, the caller's ``(n, block_bytes)`` uint8 buffer."""
        self._batch_rows = rows

    def preread(self, rows, slots, pool=None) -> None:
        """Read ahead the payloads of ``slots`` into the batch buffer's ``rows`` (a hint:
        the default does nothing; a read at its turn uses what was read ahead only if it is
        still valid). ``pool``: an executor for reads in parallel, or ``None``."""

    def end_batch(self) -> None:
        """Finish every deferred copy of the batch and forget its buffer."""
        self._batch_rows = None

    def _read_rows(self, slots: np.ndarray, rows: np.ndarray, pool=None, queue_depth: int = 1) -> bool:
        """Backend: copy the raw payloads of ``slots`` into ``rows`` (row ``j`` for slot
        ``j``) with their checks passed, or return False having changed nothing but
        ``rows`` (a slot not stored raw, a check that fails, a backend that cannot).
        ``pool``/``queue_depth``: threads for reads in parallel. Default: cannot."""
        return False

    def _write_rows(self, slots: list[int], hashes: list[int], rows: np.ndarray, run: bool) -> bool:
        """Backend: store ``rows`` raw in free ``slots`` (row ``j``, block ``hashes[j]``, in
        slot ``j``; ``run``: the slots are ``is_run``), as the same ``_write_slot`` calls in
        order would; or return False with the index untouched (the caller then writes them
        one at a time). Default: cannot."""
        return False

    def read_many(self, slots: np.ndarray, rows: np.ndarray, pool=None, queue_depth: int = 1) -> bool:
        """``read`` of the blocks in ``slots`` into ``rows`` at once, when every one is
        stored raw and verifies: their statistics as those single reads; else False and
        nothing counted or changed but ``rows`` (the caller reads them one at a time)."""
        if not self._read_rows(slots, rows, pool, queue_depth):
            return False
        self.stats.bytes_read += len(slots) * self.block_bytes
        return True

    def touch_many(self, slots: np.ndarray) -> None:
        """``touch`` of the blocks in ``slots`` (int64), in order (one compiled loop for a
        kernel policy)."""
        self.policy.access_many(slots, self.slot_pins)

    def admit_many(self, hashes: list[int], rows: np.ndarray) -> bool:
        """``policy.prepare`` and ``admit`` of new blocks (distinct, none resident), row
        ``j`` under ``hashes[j]``, into free slots, raw, with one copy: the same slots,
        policy order and statistics as those single calls. False, with nothing changed, when
        there are not enough free slots, the codec is not raw, a hash is at or above 2**63,
        or the backend cannot write rows at once."""
        n = len(hashes)
        if self.codec != CODEC_NONE or len(self._free) < n or self._unreleased:
            return False
        try:
            keys = np.array(hashes, dtype=np.int64)
        except OverflowError:
            return False  # a hash at or above 2**63 (the policies' keys are int64)
        free = self._free
        slots = free[len(free) - n :][::-1]  # the slots n pops would hand out, in that order
        run = is_run(slots)
        if not self._write_rows(slots, hashes, rows, run):
            return False
        del free[len(free) - n :]
        if run:
            first = slots[0]
            at = np.arange(first, first + n, dtype=np.int64)
            where = slice(first, first + n)  # (a slice of a run costs less than fancy indexing)
        else:
            at = where = np.array(slots, dtype=np.int64)
        self.slot_writes[where] += 1  # distinct slots
        self.slot_hash[where] = keys
        self.slot_pins[where] = 0
        self.hash_to_slot.update(zip(hashes, slots))
        self.policy.insert_many(at, keys)
        s = self.stats
        s.blocks_in += n
        s.bytes_in += n * self.block_bytes
        s.bytes_written += n * self.block_bytes
        s.stored_bytes_written += n * self.block_bytes
        return True

    def _release_slot(self, slot: int, block_hash: int | None) -> None:
        """The slot's block ``block_hash`` is gone; forget it in the backend (default:
        nothing to do). May raise ``OSError`` (see ``_recycle``)."""

    def flush(self) -> None:
        """Make acknowledged writes durable (flash); a no-op for memory tiers."""

    def close(self) -> None:
        """Release backend resources. The tier must not be used afterwards."""

    # -- queries ----------------------------------------------------------------------

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self.hash_to_slot

    def __len__(self) -> int:
        return len(self.hash_to_slot)

    @property
    def capacity_blocks(self) -> int:
        return self.num_slots

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def pins(self, block_hash: int) -> int:
        return int(self.slot_pins[self.hash_to_slot[block_hash]])

    def can_make_room(self) -> bool:
        """True when a slot is free or an unpinned block could be evicted."""
        return bool(self._free) or self.policy.victim() >= 0

    def victim(self) -> int | None:
        """The block hash the policy would evict next, or ``None`` (all pinned / empty)."""
        slot = self.policy.victim()
        return None if slot < 0 else int(self.slot_hash[slot])

    def hashes(self) -> list[int]:
        return list(self.hash_to_slot)

    # -- payload ----------------------------------------------------------------------

    def encode(self, raw: np.ndarray) -> Encoded:
        """Encode a flat uint8 block with this tier's codec (and checksum, if on)."""
        enc = encode(raw, self.codec, self.timer)
        if self.checksum:
            enc = enc._replace(crc=checksum(enc.data))
        return enc

    def admit(self, block_hash: int, enc: Encoded, pins: int = 0, row: int = -1) -> bool:
        """Store a block in a free slot (the caller made room). Returns False, with the
        tier unchanged and ``stats.write_errors`` counted, when the backend write fails.
        ``row``: the block's row in the current batch buffer (see ``begin_batch``)."""
        assert block_hash not in self.hash_to_slot, f"block {block_hash:#x} already in tier {self.name}"
        if enc.codec != self.codec and enc.codec != 0:
            raise AssertionError("encoded with a foreign codec")  # the store re-encodes first
        if self.checksum and enc.crc is None:
            enc = enc._replace(crc=checksum(enc.data))
        slot = self._free.pop()
        try:
            self.slot_writes[slot] += 1  # even a failed write may have changed the slot's bytes
            self._write_slot(slot, block_hash, enc, row)
        except OSError:
            self.stats.write_errors += 1
            self._recycle(slot, block_hash)  # whatever part of the write landed is cancelled
            self.policy.prepare(None)  # forget a ghost hit meant for the block that never came
            return False
        if self._unreleased:
            self._unreleased.pop(slot, None)  # the new block's write replaced what was there
        self.slot_hash[slot] = block_hash
        self.slot_pins[slot] = pins
        self.hash_to_slot[block_hash] = slot
        if pins == 0:
            self.policy.insert(slot, key=block_hash)
        s = self.stats
        s.blocks_in += 1
        s.bytes_in += enc.raw_len
        s.bytes_written += enc.raw_len
        data = enc.data
        s.stored_bytes_written += data.nbytes if isinstance(data, (np.ndarray, memoryview)) else len(data)
        return True

    def _recycle(self, slot: int, block_hash: int | None) -> None:
        """Release a slot the index no longer uses and make it free again. When the backend
        cannot release it, the failure is counted in ``write_errors`` and the slot is listed
        in ``_unreleased`` until a write to it or a retry succeeds."""
        try:
            self._release_slot(slot, block_hash)
        except OSError:
            self.stats.write_errors += 1
            self._unreleased[slot] = block_hash
        self._free.append(slot)

    def read(self, block_hash: int, out: np.ndarray | None = None, row: int = -1, *,
             defer: bool = False) -> Encoded | None:
        """The stored form of a resident block, verified; ``None`` (block removed, counted)
        when it fails its checks or the backend cannot read it. The returned bytes may be a
        view into the backend (use them before the next write to this tier) or, when
        ``out`` is given, ``out`` itself, already filled (``decode_into`` then copies nothing),
        or, in a batch (``row`` >= 0) with ``defer``, filled at ``end_batch``."""
        slot = self.hash_to_slot[block_hash]
        try:
            enc = self._read_slot(slot, block_hash, out, row, defer)
            if self.checksum and not enc.verified and checksum(enc.data) != enc.crc:
                raise CorruptSlot
        except CorruptSlot:
            self.stats.corrupt += 1
            self.remove(block_hash)
            return None
        except OSError:
            self.stats.read_errors += 1
            self.remove(block_hash)
            return None
        self.stats.bytes_read += enc.raw_len
        return enc

    # -- metadata ---------------------------------------------------------------------

    def touch(self, block_hash: int) -> None:
        """Tell the policy the block was used (no-op while it is pinned)."""
        slot = self.hash_to_slot[block_hash]
        if self.slot_pins[slot] == 0:
            self.policy.access(slot)

    def pin(self, block_hash: int) -> None:
        slot = self.hash_to_slot[block_hash]
        if self.slot_pins[slot] == 0:
            self.policy.remove(slot)
        self.slot_pins[slot] += 1

    def unpin(self, block_hash: int) -> None:
        slot = self.hash_to_slot[block_hash]
        assert self.slot_pins[slot] > 0
        self.slot_pins[slot] -= 1
        if self.slot_pins[slot] == 0:
            self.policy.insert(slot, key=block_hash)

    def remove(self, block_hash: int, *, evicted: bool = False) -> int:
        """Forget a resident block (any pins go with it); returns the pins it had.
        ``evicted``: the block is the policy's current victim, leaving as an eviction (the
        policy runs its eviction side effects: a CLOCK hand moves, a ghost entry is made)."""
        slot, pins = self._forget(block_hash, evicted=evicted)
        self._recycle(slot, block_hash)
        return pins

    def free(self, block_hash: int) -> None:
        """Remove an unpinned block at the caller's request (``TieredStore.free``). A backend
        whose record of the free can fail (flash) raises ``TierIOError`` instead of
        returning quietly; memory tiers cannot fail."""
        self.remove(block_hash)

    def _forget(self, block_hash: int, *, evicted: bool = False) -> tuple[int, int]:
        """Drop a block from the index, the policy and the residency counters; returns
        ``(slot, pins)``. The slot is neither used nor free until the caller recycles it."""
        slot = self.hash_to_slot[block_hash]
        pins = int(self.slot_pins[slot])
        if evicted:
            got = self.policy.evict()
            assert got == slot, f"{self.name}: policy evicted slot {got}, expected victim slot {slot}"
        elif pins == 0:
            self.policy.remove(slot)
        del self.hash_to_slot[block_hash]
        self.slot_pins[slot] = 0
        self.slot_hash[slot] = 0
        self.stats.blocks_out += 1
        self.stats.bytes_out += self.block_bytes
        return slot, pins

    def check_invariants(self) -> None:
        """Assert the tier's metadata, policy and statistics agree with each other."""
        n = len(self.hash_to_slot)
        assert n + len(self._free) == self.num_slots, f"{self.name}: {n} used + {len(self._free)} free != {self.num_slots}"
        assert n <= self.num_slots, f"{self.name}: {n} blocks exceed {self.num_slots} slots"
        free = set(self._free)
        assert len(free) == len(self._free), f"{self.name}: a free slot is listed twice"
        used = set(self.hash_to_slot.values())
        assert not used & free, f"{self.name}: a slot is both used and free"
        assert self._unreleased.keys() <= free, f"{self.name}: a slot awaiting release is not free"
        pinned = 0
        for h, slot in self.hash_to_slot.items():
            assert int(self.slot_hash[slot]) == h, f"{self.name}: slot {slot} records another hash"
            pins = int(self.slot_pins[slot])
            assert pins >= 0
            assert (slot in self.policy) == (pins == 0), f"{self.name}: slot {slot} pins={pins} but policy tracking disagrees"
            pinned += pins > 0
        assert len(self.policy) == n - pinned, f"{self.name}: policy tracks {len(self.policy)}, expected {n - pinned}"
        self.policy.check_invariants()
        s = self.stats
        assert s.blocks_in - s.blocks_out == n, f"{self.name}: blocks in {s.blocks_in} - out {s.blocks_out} != resident {n}"
        assert s.bytes_in - s.bytes_out == n * self.block_bytes, f"{self.name}: bytes in - out != resident bytes"

    def snapshot_stats(self) -> TierStats:
        """A copy of this tier's statistics, with the codec counters (kept by ``timer``)."""
        t = self.timer
        return dataclasses.replace(self.stats, compress_ns=t.compress_ns, decompress_ns=t.decompress_ns,
                                   codec_raw_bytes=t.raw_bytes, codec_stored_bytes=t.stored_bytes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)}/{self.num_slots} blocks, codec={self.spec.codec})"
