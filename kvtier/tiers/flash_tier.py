"""The flash tier: payload in a real file of fixed-size slots, verified by CRC32C.

The file format is ``kvtier.tiers.flash_format``'s; opening, creating and locking the file
is ``kvtier.tiers.flash_file``'s. This module is the tier: the put, read and free paths,
durability, and the recovery scan that rebuilds the index on reopen.

A write is one ``pwritev`` of header and payload. Slots are handed out lowest first, and
the file's high-water mark says how many have ever been written, so a reopen reads the
slots below the mark (and on, to the first never-written one) and nothing else: opening
costs what the file holds, not its capacity. The mark is durable no later than the blocks
it covers: under ``fsync="always"`` it is written before the first write to a slot and
synced with it (a batch of new blocks, ``put_many``, writes it once, after its slots,
before the one sync); otherwise at ``flush()``/``close()`` (a crash before that loses
nothing: a reopen reads past the mark). A slot whose block leaves (free, eviction,
promotion, a failed check) gets a tombstone naming the block, with a newer write sequence
number.

Recovery: for each block hash, the newest record in the file (a block header or a
tombstone, by write sequence number) decides. A newest copy that verifies is served; a
newest copy that does not, a zeroed header below the high-water mark, two records with one
sequence number, a sequence number from a later generation than the file's, and slots the
file no longer holds are reported (``RecoveryReport``), never served, and older copies of
the same hash are never served in their place. Reported and superseded slots get
anonymous tombstones, so the next reopen does not report them again.

Durability follows ``TierSpec.fsync`` for puts and frees alike: ``always`` fdatasyncs
before ``put`` or ``free`` returns, ``flush`` at ``flush()``/``close()``, ``never`` leaves
it to the OS.
"""

from __future__ import annotations

import errno
import os
import weakref
from concurrent import futures
from dataclasses import dataclass, field

import numpy as np

from kvtier.buffers import is_run
from kvtier.codec import CODEC_NONE, Encoded, checksum, crc32c
from kvtier.errors import FlashFormatError, TierIOError
from kvtier.tiers.base import CorruptSlot, Tier
from kvtier.tiers.flash_file import FileIO, open_flash_file
from kvtier.tiers.flash_format import (
    FILE_HEADER_BYTES,
    FLAG_ANONYMOUS,
    FLAG_FREED,
    FILE_VERSION,
    GEOMETRY_BYTES,
    LEGACY_FILE_VERSION,
    MAX_GENERATION,
    SEQ_BITS,
    SLOT_HEADER_BYTES,
    SLOT_HEADER_USED_BYTES,
    SlotHeader,
    make_seq,
    pack_geometry,
    pack_slot_header,
    pack_state,
    pack_tombstone,
    parse_geometry,
    parse_slot_header,
    parse_slot_headers,
    parse_state,
    raw_headers_verify,
    state_offset,
)
from kvtier.tiers.spec import TierSpec, flash_slot_bytes

__all__ = ["FileIO", "FlashTier", "RecoveryReport", "SlotHeader", "parse_slot_header", "flash_slot_bytes",
           "FILE_HEADER_BYTES", "SLOT_HEADER_BYTES", "SLOT_HEADER_USED_BYTES"]

#: Bytes the recovery scan reads per call (whole slots).
_SCAN_CHUNK_BYTES = 4 << 20
#: Slots one batched ``preadv`` reads at most: three buffers each (header, payload, the
#: gap to the next slot) within the kernel's limit on buffers per call.
_PREREAD_SLOTS_PER_CALL = max(1, (os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024) // 3)
_MAX_COUNT = (1 << SEQ_BITS) - 1
#: A batched read's parts each read at most this many bytes of slots with one ``preadv``,
#: then check their payloads' CRCs while the bytes are still in the core's cache (the
#: gain with 1 MiB blocks is in docs/performance.md).
READ_CHUNK_BYTES = 1 << 20


@dataclass
class RecoveryReport:
    """What reopening a flash file found. Every block acknowledged as durable and not freed
    is either back (``recovered``) or counted in ``corrupt_slots``/``missing_slots``
    (``lost``), unless ``state_damaged`` says the file's own record of what it held was hit."""

    recovered: int = 0  # blocks back in the index
    corrupt_slots: list[int] = field(default_factory=list)  # held a record that did not verify (never served)
    duplicate_slots: list[int] = field(default_factory=list)  # older copies of a hash, superseded by a newer record
    #: Slots below the high-water mark that the file no longer holds (it was truncated);
    #: each may have held a block.
    missing_slots: list[int] = field(default_factory=list)
    #: A copy of the file's state record did not verify (or a version-1 file, which has
    #: none): every slot was read, but the last slots written could have had their headers
    #: zeroed unseen, so ``lost`` may under-count. Both copies are rewritten at this open.
    state_damaged: bool = False

    @property
    def lost(self) -> int:
        """Slots reported as possibly holding a block that is not served."""
        return len(self.corrupt_slots) + len(self.missing_slots)


# What kind of record a scanned slot holds.
_BLOCK, _TOMBSTONE, _ANONYMOUS, _ROTTEN = 0, 1, 2, 3


class _Scan:
    """What the recovery scan read: a row per slot whose header verifies (a block, a
    tombstone naming a block or none, or a *rotten* block: a header that verifies over a
    payload or fields that do not, corrupt yet still the newest record of its hash if it
    is), and the slots that are corrupt or all zero."""

    def __init__(self) -> None:
        self._rows: list[tuple[np.ndarray, ...]] = []
        self._corrupt: list[np.ndarray] = []
        self._zero: list[np.ndarray] = []
        self.max_generation = 0

    def add(self, slots, kinds, hashes, seqs, codecs, corrupt, zero) -> None:
        self._rows.append((slots, kinds, hashes, seqs, codecs))
        self._corrupt.append(corrupt)
        self._zero.append(zero)

    def finish(self) -> None:
        """Join what was added into the arrays ``slot``, ``kind``, ``block_hash``, ``seq``,
        ``codec`` (a row per record), ``corrupt`` and ``zero`` (slot numbers)."""
        cols = list(zip(*self._rows)) or [[np.zeros(0, t)] for t in (np.int64, np.uint8, np.uint64, np.uint64, np.uint8)]
        self.slot, self.kind, self.block_hash, self.seq, self.codec = (np.concatenate(c) for c in cols)
        self.corrupt = np.unique(np.concatenate([np.zeros(0, np.int64), *self._corrupt]))
        self.zero = np.concatenate([np.zeros(0, np.int64), *self._zero])


class FlashTier(Tier):
    """A tier whose blocks live in one file on disk.

    The file is locked for this tier while it is open. ``close()`` releases it whatever
    fails (and then raises ``TierIOError`` if the final sync failed); a tier dropped
    without ``close()`` releases it when collected.
    """

    kind = "flash"

    def __init__(self, spec: TierSpec, block_bytes: int, *, io: FileIO | None = None) -> None:
        super().__init__(spec, block_bytes)
        self.io = io if io is not None else FileIO()
        self.file_bytes = FILE_HEADER_BYTES + self.num_slots * self.slot_stride
        self.generation = 1  # of this open; write sequence numbers are generation << 32 | count
        self._count = 0
        self._record_no = 0
        #: Slots ``[0, high_water)`` have each been written at least once.
        self.high_water = 0
        self._state_behind = False  # the file's state record has an older high-water mark
        self._buf = bytearray(self.slot_stride)
        self._view = memoryview(self._buf)
        self._head = self._view[:SLOT_HEADER_BYTES]
        # Codec of each slot, known since its write (or the recovery scan): a raw payload
        # is read straight into the caller's buffer.
        self.slot_codec = np.zeros(self.num_slots, dtype=np.uint8)
        # Reads made ahead in the current batch: row -> (slot, slot_writes then, header, payload CRC).
        self._preread: dict[int, tuple[int, int, np.ndarray, int]] = {}
        self._gap = bytearray(self.slot_stride - SLOT_HEADER_BYTES - block_bytes)
        self.file, created = open_flash_file(
            spec.name, spec.path, f"{spec.name}.kvt", self.io, self._init_new_file,
            capacity_bytes=spec.capacity_bytes, file_bytes=self.file_bytes,
        )
        self.path = self.file.path
        self.file.sync_on_release = spec.fsync != "never"
        # Dropped without close(): the file and its lock go when the tier is collected.
        self._finalizer = weakref.finalize(self, self.file.release)
        try:
            self.recovery = RecoveryReport() if created else self._recover()
        except BaseException:
            self.file.release(sync=False)
            raise

    def _slot_stride(self, block_bytes: int) -> int:
        return flash_slot_bytes(block_bytes)

    def _offset(self, slot: int) -> int:
        return FILE_HEADER_BYTES + slot * self.slot_stride

    @property
    def fd(self) -> int:
        """The open file's descriptor, or -1 once closed."""
        return self.file.fd

    _fd = fd  # the name earlier versions used

    @property
    def closed(self) -> bool:
        return self.file.fd < 0

    # -- low-level writes --------------------------------------------------------------

    def _pwrite(self, data: bytes, offset: int) -> None:
        written = self.io.pwrite(self.file.fd, data, offset)
        self.file.dirty = True
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write to {self.path}: {written} of {len(data)} bytes")

    def _sync(self) -> None:
        self.io.fdatasync(self.file.fd)
        self.file.dirty = False

    def _write_state(self, *, generation: int | None = None, high_water: int | None = None) -> None:
        """Write the next state record (to the copy not holding the current one). Raises
        ``OSError``; on failure the record number stays, so a retry writes the same copy
        and the last good record is never the one overwritten."""
        record_no = self._record_no + 1
        gen = self.generation if generation is None else generation
        hwm = self.high_water if high_water is None else high_water
        self._pwrite(pack_state(record_no, gen, hwm), state_offset(record_no))
        self._record_no = record_no

    def _init_new_file(self, fd: int) -> None:
        """Write a new file's header page and size it (sparse: nothing else is written)."""
        page = bytearray(FILE_HEADER_BYTES)
        page[:GEOMETRY_BYTES] = pack_geometry(FILE_VERSION, self.slot_stride, self.num_slots, self.block_bytes)
        for record_no in (0, 1):  # both copies: one that does not verify is then always damage
            state = pack_state(record_no, self.generation, 0)
            page[state_offset(record_no) : state_offset(record_no) + len(state)] = state
        self._record_no = 1
        written = self.io.pwrite(fd, bytes(page), 0)
        if written != FILE_HEADER_BYTES:
            raise OSError(errno.ENOSPC, f"short write: {written} of {FILE_HEADER_BYTES} bytes")
        self.io.ftruncate(fd, self.file_bytes)
        self.io.fdatasync(fd)

    def _next_seq(self) -> int:
        if self._count > _MAX_COUNT:
            # 2**32 writes in one open: start a new generation, durably, before using it.
            self._write_state(generation=self.generation + 1)
            self._sync()
            self.generation += 1
            self._count = 0
        seq = make_seq(self.generation, self._count)
        self._count += 1
        return seq

    # -- backend ----------------------------------------------------------------------

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded, row: int = -1) -> None:
        data = memoryview(enc.data).cast("B")
        if slot >= self.high_water:
            # Slots are handed out lowest first, so a never-used slot is the mark itself.
            assert slot == self.high_water, f"{self.name}: slot {slot} handed out above high-water mark {self.high_water}"
            if self.spec.fsync == "always":
                self._write_state(high_water=slot + 1)  # synced with the slot, below
            else:
                self._state_behind = True  # written at the next flush, before its sync
            self.high_water = slot + 1
        header = pack_slot_header(enc.codec, block_hash, self._next_seq(), enc.raw_len, len(data), enc.crc)
        want = SLOT_HEADER_BYTES + len(data)
        written = self.io.pwritev(self.file.fd, [header, data], self._offset(slot))
        self.file.dirty = True
        if written != want:
            raise OSError(errno.ENOSPC, f"short write to {self.path}: {written} of {want} bytes")
        self.slot_codec[slot] = enc.codec
        if self.spec.fsync == "always":
            self._sync()

    def _write_rows(self, slots: list[int], hashes: list[int], rows: np.ndarray, run: bool) -> bool:
        """New raw blocks into free slots, as the same ``_write_slot`` calls would write
        them (one ``pwritev`` of header and payload per slot, the same sequence numbers),
        but with one state record and one ``fdatasync`` for the batch under
        ``fsync="always"``, the record after the slots (a crash between the two leaves
        blocks past the mark, which a reopen reads on to). The mark in memory covers every
        slot before it is written. When a write fails, a tombstone goes over every slot the
        batch wrote, the mark in memory goes back, and False is returned with the index
        untouched: the store then puts the blocks one at a time, from the state they would
        have met. (A slot whose tombstone fails too waits in ``_unreleased``, below the mark,
        retried at flush, so no block a put reports dropped can come back at a reopen.)"""
        if self.closed:
            return False
        hwm = fresh_to = self.high_water
        for slot in slots:  # handed out lowest first: the never-written ones are hwm, hwm + 1, ...
            if slot >= hwm:
                if slot != fresh_to:
                    return False
                fresh_to += 1
        behind = self._state_behind
        if fresh_to > hwm:
            self.high_water = fresh_to
            self._state_behind = True
        bb, fd, want = self.block_bytes, self.file.fd, SLOT_HEADER_BYTES + self.block_bytes
        written = 0
        try:
            for slot, block_hash, row in zip(slots, hashes, rows):
                header = pack_slot_header(CODEC_NONE, block_hash, self._next_seq(), bb, bb, checksum(row))
                self.file.dirty = True
                written += 1
                if self.io.pwritev(fd, [header, row], self._offset(slot)) != want:
                    raise OSError(errno.ENOSPC, f"short write to {self.path}")
            if self.spec.fsync == "always":
                if fresh_to > hwm:
                    self._write_state()
                    self._state_behind = False
                self._sync()
        except OSError:
            tried = slots[:written]
            self.slot_writes[tried] += 1  # their bytes may have changed (see ``preread``)
            self.high_water, self._state_behind = hwm, behind
            for slot, block_hash in zip(tried, hashes):
                try:
                    self._pwrite(pack_tombstone(self._next_seq(), block_hash), self._offset(slot))
                except OSError:
                    self._unreleased[slot] = block_hash
                    if slot >= self.high_water:  # keep it below the mark, where flush retries it
                        self.high_water, self._state_behind = slot + 1, True
            return False
        self.slot_codec[slots] = CODEC_NONE
        return True

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None, row: int = -1,
                   defer: bool = False) -> Encoded:
        in_place = out is not None and self.slot_codec[slot] == CODEC_NONE
        ahead = self._preread.pop(row, None) if row >= 0 and self._preread else None
        payload_crc = None
        if in_place and ahead is not None and ahead[0] == slot and ahead[1] == self.slot_writes[slot]:
            # Read ahead by ``preread`` into this very row, and the slot not written since.
            _slot, _writes, head, payload_crc = ahead
            n = SLOT_HEADER_BYTES + self.block_bytes
        elif in_place:  # one preadv: header into our buffer, payload into the caller's
            head = self._head
            n = self.io.preadv(self.file.fd, [self._head, out], self._offset(slot))
        else:
            head = self._head
            n = self.io.preadv(self.file.fd, [self._view], self._offset(slot))
        parsed = parse_slot_header(head) if n >= SLOT_HEADER_BYTES else None
        if parsed is None or parsed.flags:
            raise CorruptSlot
        codec, got_hash, _seq, raw_len, stored_len, crc, _flags = parsed
        if got_hash != block_hash or raw_len != self.block_bytes or SLOT_HEADER_BYTES + stored_len > n:
            raise CorruptSlot
        if in_place:
            if codec != CODEC_NONE or stored_len != raw_len:
                raise CorruptSlot  # the header disagrees with what this slot was written as
            data = out
            if payload_crc is not None:  # the reading thread computed it
                if payload_crc != crc:
                    raise CorruptSlot
                return Encoded(codec, raw_len, data, crc, verified=True)
        else:
            data = self._view[SLOT_HEADER_BYTES : SLOT_HEADER_BYTES + stored_len]
        # The payload CRC is checked by Tier.read (checksum is always on for flash).
        return Encoded(codec, raw_len, data, crc)

    def preread(self, rows, slots, pool=None, queue_depth: int = 1) -> None:
        """Read the raw payloads of ``slots`` into the batch buffer's ``rows`` ahead of their
        turn (as ``_read_runs``). A read that fails or comes back short is forgotten: the
        block's read at its turn then goes to the file again and meets (and counts) the
        failure itself."""
        if self.closed or self._batch_rows is None:
            return
        pairs = sorted((slot, row) for row, slot in zip(rows, slots) if self.slot_codec[slot] == CODEC_NONE)
        if not pairs:
            return
        slot_list = [slot for slot, _ in pairs]
        row_list = [row for _, row in pairs]
        heads, crcs, whole = self._read_runs(slot_list, row_list, self._batch_rows, pool, queue_depth)
        writes = self.slot_writes
        for j in np.flatnonzero(whole).tolist():
            slot = slot_list[j]
            self._preread[row_list[j]] = (slot, writes[slot], heads[j], int(crcs[j]))

    def _read_runs(self, slot_list: list[int], row_list: list[int], rows: np.ndarray, pool,
                   queue_depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read slot ``slot_list[j]`` (ascending) into ``rows[row_list[j]]`` for every ``j``:
        runs of adjacent slots with one ``preadv`` each (header, payload and the gap to the
        next slot as separate buffers), split into at least ``queue_depth`` parts run side
        by side when ``pool`` is given (the calling thread reads the first part, the pool the
        rest). The calling thread reads its parts in even ``preadv`` calls of at most
        ``READ_CHUNK_BYTES``, each call's CRCs computed right behind it while the bytes are in
        cache; a pool thread reads its part with one call per run and nothing else, and the
        calling thread computes those CRCs once it is done. Returns, by position
        ``j``: the headers (``(n, SLOT_HEADER_BYTES)`` uint8), the payload CRCs (int64) and
        whether the slot was read whole (a failed or short read leaves the rest of its part
        unread). Every part has finished when this returns or raises."""
        n = len(slot_list)
        heads = np.empty((n, SLOT_HEADER_BYTES), dtype=np.uint8)
        crcs = np.zeros(n, dtype=np.int64)
        whole = np.zeros(n, dtype=bool)
        in_order = row_list[0] == 0 and is_run(row_list)  # row j for slot j (a batch in slot order)
        per_call = min(_PREREAD_SLOTS_PER_CALL, -(-n // max(1, queue_depth if pool is not None else 1)))
        if is_run(slot_list):
            calls = [(a, min(a + per_call, n)) for a in range(0, n, per_call)]
        else:
            calls, start = [], 0
            for j in range(1, n + 1):
                if j == n or slot_list[j] != slot_list[j - 1] + 1 or j - start == per_call:
                    calls.append((start, j))
                    start = j
        gap, stride, payload = self._gap, self.slot_stride, SLOT_HEADER_BYTES + self.block_bytes
        fd, preadv = self.file.fd, self.io.preadv

        def chunks(call: tuple[int, int], chunked: bool = True) -> list[tuple[int, int, list, list]]:
            """A part as its ``preadv`` calls: even ones of at most ``READ_CHUNK_BYTES``, or
            (``chunked=False``) one for the whole run."""
            a, b = call
            count = -(-((b - a) * stride) // READ_CHUNK_BYTES) if chunked else 1
            step = -(-(b - a) // count)
            out = []
            for c in range(a, b, step):
                d = min(c + step, b)
                mine = list(rows[c:d]) if in_order else [rows[r] for r in row_list[c:d]]
                if gap:
                    buffers = [gap] * (3 * (d - c) - 1)
                    buffers[0::3], buffers[1::3] = list(heads[c:d]), mine
                else:
                    buffers = [None] * (2 * (d - c))
                    buffers[0::2], buffers[1::2] = list(heads[c:d]), mine
                out.append((c, d, buffers, mine))
            return out

        def read(part: list) -> list[int]:
            """The bytes each ``preadv`` of a part returned (-1: failed), stopping at the first
            that comes back short. Runs without the GIL but for the calls themselves."""
            got = []
            for c, d, buffers, _ in part:
                try:
                    nbytes = preadv(fd, buffers, self._offset(slot_list[c]))
                except OSError:
                    nbytes = -1
                got.append(nbytes)
                if nbytes < (d - c - 1) * stride + payload:
                    break
            return got

        def check(part: list, got: list[int]) -> None:
            """The payload CRCs of what a part read whole (on the calling thread)."""
            for (c, d, _, mine), nbytes in zip(part, got):
                done = 0 if nbytes < payload else min(d - c, (nbytes - payload) // stride + 1)
                crcs[c : c + done] = [crc32c(row) for row in mine[:done]]
                whole[c : c + done] = True

        def read_and_check(part: list) -> None:
            for chunk in part:  # each chunk's CRCs right behind its read, while it is in cache
                check([chunk], read([chunk]))
                if not whole[chunk[1] - 1]:
                    return

        if pool is None or len(calls) == 1:
            for call in calls:
                read_and_check(chunks(call))
        else:
            # The pool threads only read, each part with one call per run (so they need the
            # GIL only to start and to finish); this thread reads the first part, checking
            # each chunk behind its read, then checks the other parts' CRCs.
            others, here = [], []
            for call in calls[1:]:
                part = chunks(call, chunked=False)
                try:
                    others.append((part, pool.submit(read, part)))
                except RuntimeError:  # the pool is shutting down (close): read it here
                    here.append(chunks(call))
            try:
                for part in [chunks(calls[0])] + here:
                    read_and_check(part)
            finally:
                futures.wait([f for _, f in others])  # no part may still be writing into ``rows``
            for part, f in others:
                check(part, f.result())  # (raises what a part raised)
        return heads, crcs, whole

    def _read_rows(self, slots: np.ndarray, rows: np.ndarray, pool=None, queue_depth: int = 1) -> bool:
        """Every slot raw: read them all (as ``_read_runs``), then check every header and
        payload CRC at once, as ``_read_slot`` and ``Tier.read`` check each."""
        if self.closed or self.slot_codec[slots].any():
            return False
        slot_list = slots.tolist()
        if slot_list == sorted(slot_list):
            row_list = list(range(len(slot_list)))
        else:
            pairs = sorted(zip(slot_list, range(len(slot_list))))
            slot_list, row_list = [s for s, _ in pairs], [r for _, r in pairs]
        heads, crcs, whole = self._read_runs(slot_list, row_list, rows, pool, queue_depth)
        if not whole.all():
            return False  # a read failed or came back short: the single reads meet and count it
        return raw_headers_verify(heads, self.slot_hash[slot_list], self.block_bytes, crcs)

    def end_batch(self) -> None:
        self._preread.clear()
        super().end_batch()

    def _release_slot(self, slot: int, block_hash: int | None) -> None:
        if slot >= self.high_water:
            return  # never written: nothing in the file to cancel
        self._pwrite(pack_tombstone(self._next_seq(), block_hash), self._offset(slot))

    def free(self, block_hash: int) -> None:
        """Remove a block at the caller's request, as durably as a put (``TierSpec.fsync``).

        The tombstone is written before the block leaves the index: if that write fails,
        the failure is counted in ``write_errors`` and raised as ``TierIOError`` and the
        block stays stored. If the write lands but ``fsync="always"``'s sync fails, the
        block is gone from the store, the free is retried at the next ``flush()`` (unless
        the slot is written again first), and ``TierIOError`` says it is not durable yet."""
        slot = self.hash_to_slot[block_hash]
        try:
            self._release_slot(slot, block_hash)
        except OSError as e:
            self.stats.write_errors += 1
            raise TierIOError(
                e.errno, f"free of block {block_hash:#x} in flash tier {self.name!r}: writing the tombstone of "
                f"slot {slot} of {self.path!r} failed ({e.strerror}); the block is still stored"
            ) from None
        self._forget(block_hash)
        if self.spec.fsync == "always":
            try:
                self._sync()
            except OSError as e:
                self.stats.write_errors += 1
                self._unreleased[slot] = block_hash
                self._free.append(slot)
                raise TierIOError(
                    e.errno, f"free of block {block_hash:#x} in flash tier {self.name!r}: fdatasync of {self.path!r} "
                    f"failed ({e.strerror}); the block is gone from the store, but the free is not durable yet "
                    f"(retried at the next flush)"
                ) from None
        self._free.append(slot)

    def flush(self) -> None:
        """Make every acknowledged put and free durable (``fsync`` "always" and "flush"):
        retry the tombstones that failed, then fdatasync. Raises ``TierIOError`` when the
        sync fails, or when a slot still cannot be marked free (a block freed or evicted
        there could come back after a restart)."""
        if self.closed:
            return
        if self._state_behind:
            try:
                self._write_state()
            except OSError as e:
                self.stats.write_errors += 1
                raise TierIOError(
                    e.errno, f"flush of flash tier {self.name!r}: writing the high-water mark of {self.path!r} failed "
                    f"({e.strerror}); blocks written since the last flush may not survive a power cut"
                ) from None
            self._state_behind = False
        retried = []
        failed = None
        for slot, block_hash in list(self._unreleased.items()):
            try:
                self._release_slot(slot, block_hash)
            except OSError as e:
                self.stats.write_errors += 1
                failed = e
            else:
                retried.append(slot)
        if self.file.dirty and self.spec.fsync != "never":
            try:
                self._sync()
            except OSError as e:
                self.stats.write_errors += 1
                raise TierIOError(
                    e.errno, f"flush of flash tier {self.name!r}: fdatasync of {self.path!r} failed ({e.strerror}); "
                    f"puts and frees since the last successful sync may not survive a power cut"
                ) from None
        for slot in retried:
            del self._unreleased[slot]
        if failed is not None:
            raise TierIOError(
                failed.errno, f"flush of flash tier {self.name!r}: {len(self._unreleased)} slot(s) of {self.path!r} "
                f"whose block was freed or moved could not be marked free ({failed.strerror}); those blocks could "
                f"come back after a restart (slots {sorted(self._unreleased)[:8]})"
            )

    def close(self) -> None:
        """Flush, then release the file and its lock, whatever the flush raised (which is
        then re-raised). Closing twice does nothing."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.file.release(sync=False)

    # -- reopen -----------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        """Check an existing file's header, rebuild the index from its slots, bump the
        generation durably, and tombstone what was reported or superseded."""
        fd = self.file.fd
        size = os.fstat(fd).st_size
        if size == 0:  # never a kvtier file (it is created whole under another name): maybe cut to nothing
            raise FlashFormatError(f"{self.path}: the file is empty (0 bytes), expected a kvtier flash file; if it "
                                   f"was truncated its blocks are lost: delete it to start afresh")
        if size < FILE_HEADER_BYTES:  # what it held cannot be told: say so rather than guess
            raise FlashFormatError(f"{self.path}: the file header page is truncated ({size} of {FILE_HEADER_BYTES} "
                                   f"bytes), expected a whole kvtier flash file; delete it to start afresh")
        page = self.io.pread(fd, FILE_HEADER_BYTES, 0)
        version = self._check_geometry(page)
        state = parse_state(page, self.num_slots) if version == FILE_VERSION else None
        report = RecoveryReport(state_damaged=state is None or state.partner_damaged)
        # A slot is in the file when its header is; the payload is checked against the size.
        in_file = min(max(0, (size - FILE_HEADER_BYTES - SLOT_HEADER_BYTES) // self.slot_stride + 1), self.num_slots)
        if state is None:  # no mark to trust: read every slot; zeros are free
            present = in_file
            scan = self._scan(present, size, generation=None, written_below=0)
        elif not state.partner_damaged:
            present = min(state.high_water, in_file)
            report.missing_slots = list(range(present, state.high_water))
            # Past the mark, slots are read up to the first never-written one: a write whose
            # mark had not reached the file yet (a crash before the flush) is not lost.
            scan = self._scan(present, size, generation=state.generation, written_below=present,
                              then_until_unwritten=in_file)
        else:
            # The newer record copy is damaged: its mark (and generation, one newer at most)
            # is unknown, so every slot is read; since slots are used lowest first, a zeroed
            # header below the last written slot is damage.
            present = min(state.high_water, in_file)
            report.missing_slots = list(range(present, state.high_water))
            scan = self._scan(in_file, size, generation=state.generation + 1, written_below=present)
            last = int(max(scan.slot.max(initial=-1), scan.corrupt.max(initial=-1)))
            scan.corrupt = np.union1d(scan.corrupt, scan.zero[(scan.zero >= present) & (scan.zero < last)])

        kind, seq, hashes = scan.kind, scan.seq, scan.block_hash
        # Two records never share a sequence number: when they do, neither can be trusted.
        collided = np.zeros(kind.size, dtype=bool)
        if kind.size:
            order = np.argsort(seq, kind="stable")
            same = seq[order][1:] == seq[order][:-1]
            collided[order[1:]] |= same
            collided[order[:-1]] |= same
        # Per hash, the newest record decides (a corrupt one too); older copies are never served.
        newest = np.zeros(kind.size, dtype=bool)
        named = np.flatnonzero(kind != _ANONYMOUS)
        if named.size:
            order = named[np.lexsort((seq[named], hashes[named]))]
            last = np.ones(order.size, dtype=bool)
            last[:-1] = hashes[order][1:] != hashes[order][:-1]
            newest[order[last]] = True
        is_block = kind == _BLOCK
        winner = np.flatnonzero(is_block & newest & ~collided)
        corrupt = np.union1d(scan.corrupt, scan.slot[collided])
        report.corrupt_slots = corrupt.tolist()
        report.duplicate_slots = np.sort(scan.slot[is_block & ~newest & ~collided]).tolist()

        # The mark: past every slot the file holds a record in (below it, every slot has one).
        high_water = int(max(scan.slot.max(initial=-1), corrupt.max(initial=-1))) + 1
        if state is None:
            self.generation = scan.max_generation + 1
        else:
            high_water = max(high_water, present)
            self.generation = max(state.generation, scan.max_generation) + 1
            self._record_no = state.record_no
        if self.generation > MAX_GENERATION:
            raise FlashFormatError(f"{self.path}: generation {self.generation} exceeds {MAX_GENERATION}")
        self.high_water = high_water
        # The new generation is durable before any write uses it.
        try:
            if size < self.file_bytes:
                self.io.ftruncate(fd, self.file_bytes)
            self._write_state()
            if report.state_damaged:
                self._write_state()  # both copies: the next open finds the pair intact
            if version != FILE_VERSION:
                self._pwrite(pack_geometry(FILE_VERSION, self.slot_stride, self.num_slots, self.block_bytes), 0)
            self._sync()
        except OSError as e:
            raise TierIOError(e.errno, f"reopening flash tier {self.name!r}: updating the header of {self.path!r} "
                                       f"failed ({e.strerror})") from None

        to_cancel = [*report.corrupt_slots, *report.duplicate_slots]
        zero_free = np.setdiff1d(scan.zero[scan.zero < high_water], corrupt)
        to_cancel += zero_free.tolist()  # free, but below the new mark: a tombstone says so
        for slot in to_cancel:
            try:
                self._release_slot(slot, None)
            except OSError:
                self.stats.write_errors += 1
                self._unreleased[slot] = None  # free, retried at flush; reported again if reopened first
        if to_cancel and self.spec.fsync != "never":
            try:
                self._sync()
            except OSError:
                self.stats.write_errors += 1  # the repairs are redone at the next open

        winner = winner[np.argsort(seq[winner], kind="stable")]  # oldest write first: LRU order follows it
        slots, block_hashes = scan.slot[winner], hashes[winner]
        self.slot_hash[slots] = block_hashes
        self.slot_codec[slots] = scan.codec[winner]
        slot_list, hash_list = slots.tolist(), block_hashes.tolist()
        self.hash_to_slot.update(zip(hash_list, slot_list))
        insert = self.policy.insert
        for slot, block_hash in zip(slot_list, hash_list):
            insert(slot, key=block_hash)
        free_below = np.ones(high_water, dtype=bool)
        free_below[slots] = False
        self._free = list(range(self.num_slots - 1, high_water - 1, -1)) + np.flatnonzero(free_below)[::-1].tolist()
        report.recovered = len(slot_list)
        self.stats.corrupt += report.lost
        self.stats.recovered = report.recovered
        self.stats.blocks_in += report.recovered
        self.stats.bytes_in += report.recovered * self.block_bytes
        return report

    def _check_geometry(self, page: bytes) -> int:
        """The file's format version, after checking its geometry against this tier's."""
        got = parse_geometry(page)
        if isinstance(got, str):
            raise FlashFormatError(f"{self.path}: {got}")
        if got["version"] not in (FILE_VERSION, LEGACY_FILE_VERSION):
            raise FlashFormatError(
                f"{self.path}: file has version={got['version']}, this tier reads version={FILE_VERSION} "
                f"(and upgrades version={LEGACY_FILE_VERSION})"
            )
        want = {"slot_stride": self.slot_stride, "num_slots": self.num_slots, "block_bytes": self.block_bytes}
        for name, w in want.items():
            if got[name] != w:
                raise FlashFormatError(
                    f"{self.path}: file has {name}={got[name]}, this tier expects {name}={w} "
                    f"(reopen with the same capacity_bytes and block geometry)"
                )
        return got["version"]

    def _scan(self, num_slots: int, file_size: int, *, generation: int | None, written_below: int,
              then_until_unwritten: int = 0) -> _Scan:
        """Read the headers (and, with ``verify_on_open``, payloads) of slots ``[0, num_slots)``,
        then of the slots after them up to the first all-zero header (never written) or
        ``then_until_unwritten``. ``generation``: the newest the file can hold (a newer
        sequence number is forged); ``None``: unknown. ``written_below``: slots below it
        were all written, so a zeroed header there is damage."""
        scan = _Scan()
        per_chunk = max(1, _SCAN_CHUNK_BYTES // self.slot_stride)
        for first in range(0, num_slots, per_chunk):
            self._scan_slots(scan, first, min(per_chunk, num_slots - first), file_size, generation, written_below)
        first, count = num_slots, 1  # past the mark usually nothing was written: start small, then grow
        while first < then_until_unwritten:
            count = min(count, then_until_unwritten - first)
            if self._scan_slots(scan, first, count, file_size, generation, written_below, to_first_zero=True):
                break
            first += count
            count = min(2 * count, per_chunk)
        scan.finish()
        return scan

    def _scan_slots(self, scan: _Scan, first: int, count: int, file_size: int, generation: int | None,
                    written_below: int, *, to_first_zero: bool = False) -> bool:
        """Read and classify ``count`` slots from ``first`` with one read. ``to_first_zero``:
        stop at the first all-zero slot (never written) and return True if there was one."""
        stride = self.slot_stride
        try:
            buf = self.io.pread(self.file.fd, count * stride, self._offset(first))
        except OSError:
            if count == 1:
                scan.add(*(np.zeros(0, t) for t in (np.int64, np.uint8, np.uint64, np.uint64, np.uint8)),
                         corrupt=np.array([first]), zero=np.zeros(0, np.int64))
                return False
            for slot in range(first, first + count):  # one bad sector costs one slot
                if self._scan_slots(scan, slot, 1, file_size, generation, written_below, to_first_zero=to_first_zero):
                    return True
            return False
        if len(buf) < count * stride:
            buf += bytes(count * stride - len(buf))  # cut short: the payload check sees the file size
        rows = np.frombuffer(buf, dtype=np.uint8).reshape(count, stride)
        zero = ~rows[:, :SLOT_HEADER_USED_BYTES].any(axis=1)
        stopped = False
        if to_first_zero and zero.any():
            count = int(np.argmax(zero))
            rows, zero, stopped = rows[:count], zero[:count], True
        slots = np.arange(first, first + count, dtype=np.int64)
        head, ok = parse_slot_headers(rows)
        gen = head["seq"] >> np.uint64(SEQ_BITS)
        future = gen >= MAX_GENERATION  # written by an open that never happened: forged or rotted
        if generation is not None:
            future |= gen > generation
        ok &= ~future
        if ok.any():
            scan.max_generation = max(scan.max_generation, int(gen[ok].max()))
        flags = head["flags"]
        freed = (flags & FLAG_FREED) != 0
        block = ok & ~freed
        stored = head["stored_len"].astype(np.int64)
        good = block & (head["raw_len"] == self.block_bytes) & (stored <= self.block_bytes)
        good &= self._offset(slots) + SLOT_HEADER_BYTES + stored <= file_size
        if self.spec.verify_on_open:
            mv = memoryview(buf)
            crcs, lens = head["crc"].tolist(), stored.tolist()
            for i in np.flatnonzero(good).tolist():
                start = i * stride + SLOT_HEADER_BYTES
                if checksum(mv[start : start + lens[i]]) != crcs[i]:
                    good[i] = False
        kinds = np.where(freed, np.where(flags & FLAG_ANONYMOUS, _ANONYMOUS, _TOMBSTONE), np.where(good, _BLOCK, _ROTTEN))
        corrupt = (~zero & ~ok) | (block & ~good) | (zero & (slots < written_below))
        scan.add(slots[ok], kinds[ok].astype(np.uint8), head["block_hash"][ok], head["seq"][ok], head["codec"][ok],
                 corrupt=slots[corrupt], zero=slots[zero])
        return stopped

    # -- checks -----------------------------------------------------------------------

    def check_invariants(self) -> None:
        super().check_invariants()
        hwm = self.high_water
        assert 0 <= hwm <= self.num_slots, f"{self.name}: high-water mark {hwm} outside 0..{self.num_slots}"
        assert all(slot < hwm for slot in self.hash_to_slot.values()), f"{self.name}: a block above the high-water mark"
        assert all(slot < hwm for slot in self._unreleased), f"{self.name}: a slot awaiting release above the mark"
        fresh = [s for s in self._free if s >= hwm]
        assert fresh == list(range(self.num_slots - 1, hwm - 1, -1)), (
            f"{self.name}: never-used slots are not handed out lowest first from the high-water mark")
        assert 1 <= self.generation <= MAX_GENERATION and 0 <= self._count <= _MAX_COUNT + 1
