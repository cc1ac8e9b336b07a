"""The flash tier: payload in a real file of fixed-size slots, verified by CRC32C.

File layout (little-endian), ``<path>/<tier name>.kvt``:

* a 4096-byte file header: magic ``KVTIERFL``, format version, slot stride, slot count,
  block bytes, and a CRC32C of those fields;
* ``num_slots`` slots of ``slot_stride`` bytes (a multiple of 4096), each a 64-byte slot
  header followed by the stored payload.

Slot header: magic ``KVBK``, version, codec, flags, block hash, write sequence number,
raw length, stored length, payload CRC32C, and a CRC32C of the header itself. A write is
one ``pwritev`` of header and payload; a free writes a zeroed header. Reopening scans
the slot headers, keeps every slot whose header (and, with ``verify_on_open``, payload)
verifies, keeps the newest copy when a hash appears twice, and zeroes and reports the
rest. Reads verify the header and payload again, so a torn or rotted slot is a miss,
never wrong bytes.

Durability follows ``TierSpec.fsync``: ``always`` fdatasyncs after every write, ``flush``
at ``flush()``/``close()``, ``never`` leaves it to the OS.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kvtier.codec import CODEC_NAMES, CODEC_NONE, Encoded, checksum
from kvtier.errors import ConfigError, FlashFormatError
from kvtier.tiers.base import CorruptSlot, Tier
from kvtier.tiers.spec import FLASH_ALIGN_BYTES, FLASH_SLOT_HEADER_BYTES, TierSpec, flash_slot_bytes  # noqa: F401

FILE_MAGIC = b"KVTIERFL"
FILE_VERSION = 1
FILE_HEADER_BYTES = 4096
_FILE_HEADER = struct.Struct("<8sIQQQ")  # magic, version, slot_stride, num_slots, block_bytes
SLOT_MAGIC = b"KVBK"
SLOT_VERSION = 1
SLOT_HEADER_BYTES = FLASH_SLOT_HEADER_BYTES
_SLOT_HEADER = struct.Struct("<4sHBBQQIII")  # magic, ver, codec, flags, hash, seq, raw, stored, payload crc
#: Leading bytes of a slot header that its fields and their CRC32C fill; the rest is zero padding.
SLOT_HEADER_USED_BYTES = _SLOT_HEADER.size + 4
_ALIGN = FLASH_ALIGN_BYTES
_ZERO_HEADER = bytes(SLOT_HEADER_BYTES)


class FileIO:
    """The system calls the flash tier makes on its file, in one replaceable object.

    The default calls ``os`` directly. ``kvtier.testing.FaultyFileIO`` wraps it to inject
    failed, torn and corrupted I/O; a user may wrap it to trace or throttle I/O.
    """

    def pwritev(self, fd: int, buffers, offset: int) -> int:
        return os.pwritev(fd, buffers, offset)

    def preadv(self, fd: int, buffers, offset: int) -> int:
        return os.preadv(fd, buffers, offset)

    def pwrite(self, fd: int, data, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class RecoveryReport:
    """What reopening a flash file found."""

    recovered: int = 0  # blocks back in the index
    corrupt_slots: list[int] = field(default_factory=list)  # header or payload did not verify
    duplicate_slots: list[int] = field(default_factory=list)  # older copies of a hash kept elsewhere


class SlotHeader(NamedTuple):
    """The fields of a slot header that verified (``crc`` is the payload's CRC32C)."""

    codec: int
    block_hash: int
    seq: int
    raw_len: int
    stored_len: int
    crc: int


def _pack_slot_header(codec: int, block_hash: int, seq: int, raw_len: int, stored_len: int, crc: int) -> bytes:
    body = _SLOT_HEADER.pack(SLOT_MAGIC, SLOT_VERSION, codec, 0, block_hash, seq, raw_len, stored_len, crc)
    return body + struct.pack("<I", checksum(body)) + bytes(SLOT_HEADER_BYTES - SLOT_HEADER_USED_BYTES)


def parse_slot_header(buf) -> SlotHeader | None:
    """The header at the start of ``buf`` (at least ``SLOT_HEADER_USED_BYTES`` long), or
    ``None`` when its magic, version, codec or CRC does not verify."""
    body = bytes(buf[: _SLOT_HEADER.size])
    magic, version, codec, _flags, block_hash, seq, raw_len, stored_len, crc = _SLOT_HEADER.unpack(body)
    if magic != SLOT_MAGIC or version != SLOT_VERSION or codec not in CODEC_NAMES:
        return None
    (header_crc,) = struct.unpack_from("<I", buf, _SLOT_HEADER.size)
    if header_crc != checksum(body):
        return None
    return SlotHeader(codec, block_hash, seq, raw_len, stored_len, crc)


class FlashTier(Tier):
    """A tier whose blocks live in one file on disk."""

    kind = "flash"

    def __init__(self, spec: TierSpec, block_bytes: int, *, io: FileIO | None = None) -> None:
        super().__init__(spec, block_bytes)
        self.io = io if io is not None else FileIO()
        self.path = os.path.join(spec.path, f"{spec.name}.kvt")
        self._seq = 0
        self._dirty = False
        self._fd = self._open_file()
        self._buf = bytearray(self.slot_stride)
        self._view = memoryview(self._buf)
        self._head = self._view[:SLOT_HEADER_BYTES]
        # Codec of each slot, known since its write (or the recovery scan): a raw payload
        # is read straight into the caller's buffer.
        self.slot_codec = np.zeros(self.num_slots, dtype=np.uint8)
        self.recovery = self._recover()

    def _slot_stride(self, block_bytes: int) -> int:
        return flash_slot_bytes(block_bytes)

    def _offset(self, slot: int) -> int:
        return FILE_HEADER_BYTES + slot * self.slot_stride

    # -- file -------------------------------------------------------------------------

    def _open_file(self) -> int:
        try:
            os.makedirs(self.spec.path, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(
                f"TierSpec.path of tier {self.name!r}: cannot open {self.path!r} for reading and writing "
                f"({e.strerror}); expected a writable directory"
            ) from None
        try:
            # One store per file: a second writer would reuse slots the first believes its own.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"TierSpec.path of tier {self.name!r}: {self.path!r} is already open by another store; "
                f"expected a directory no other open store uses (close the other store first)"
            ) from None
        try:
            size = os.fstat(fd).st_size
            want = _FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, self.slot_stride, self.num_slots, self.block_bytes)
            want += struct.pack("<I", checksum(want))
            if size == 0:
                os.pwrite(fd, want.ljust(FILE_HEADER_BYTES, b"\0"), 0)
                os.ftruncate(fd, FILE_HEADER_BYTES + self.num_slots * self.slot_stride)
                os.fsync(fd)
                _fsync_directory(self.spec.path)  # the new file's name is durable too
            else:
                self._check_file_header(os.pread(fd, len(want), 0), want)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_file_header(self, got: bytes, want: bytes) -> None:
        if got[:8] != FILE_MAGIC:
            raise FlashFormatError(f"{self.path}: not a kvtier flash file (magic {got[:8]!r}, expected {FILE_MAGIC!r})")
        if len(got) < len(want):
            raise FlashFormatError(f"{self.path}: file header is truncated ({len(got)} of {len(want)} bytes)")
        (stored_crc,) = struct.unpack_from("<I", got, _FILE_HEADER.size)
        if stored_crc != checksum(got[: _FILE_HEADER.size]):
            raise FlashFormatError(f"{self.path}: file header CRC does not verify")
        fields = _FILE_HEADER.unpack(got[: _FILE_HEADER.size])
        expected = _FILE_HEADER.unpack(want[: _FILE_HEADER.size])
        for name, g, w in zip(("magic", "version", "slot_stride", "num_slots", "block_bytes"), fields, expected):
            if g != w:
                raise FlashFormatError(
                    f"{self.path}: file has {name}={g}, this tier expects {name}={w} "
                    f"(reopen with the same capacity_bytes and block geometry)"
                )

    def _recover(self) -> RecoveryReport:
        """Rebuild the index from the slot headers of an existing file."""
        report = RecoveryReport()
        found: dict[int, tuple[int, int]] = {}  # hash -> (seq, slot)
        codecs: dict[int, int] = {}
        for slot in range(self.num_slots):
            try:
                head = self.io.pread(self._fd, SLOT_HEADER_BYTES, self._offset(slot))
            except OSError:
                report.corrupt_slots.append(slot)  # unreadable: not served, zeroed below if possible
                continue
            if len(head) < SLOT_HEADER_BYTES or head == _ZERO_HEADER:
                continue
            parsed = parse_slot_header(head)
            if parsed is not None and self.spec.verify_on_open:
                parsed = self._verify_payload(slot, parsed)
            if parsed is None or parsed.raw_len != self.block_bytes or parsed.stored_len > self.block_bytes:
                report.corrupt_slots.append(slot)
                continue
            codec, block_hash, seq, _raw, _stored, _crc = parsed
            codecs[slot] = codec
            self._seq = max(self._seq, seq + 1)
            if block_hash in found:
                old_seq, old_slot = found[block_hash]
                if old_seq >= seq:
                    report.duplicate_slots.append(slot)
                    continue
                report.duplicate_slots.append(old_slot)
            found[block_hash] = (seq, slot)
        for slot in report.corrupt_slots + report.duplicate_slots:
            try:
                self.io.pwrite(self._fd, _ZERO_HEADER, self._offset(slot))
            except OSError:
                pass  # left as is: it fails verification again at the next open, never served
        self.stats.corrupt += len(report.corrupt_slots)
        free = set(range(self.num_slots))
        for block_hash, (_seq, slot) in sorted(found.items(), key=lambda kv: kv[1][0]):
            self.slot_hash[slot] = block_hash
            self.slot_codec[slot] = codecs[slot]
            self.hash_to_slot[block_hash] = slot
            self.policy.insert(slot, key=block_hash)  # oldest write first: LRU order follows write order
            free.discard(slot)
        self._free = sorted(free, reverse=True)
        report.recovered = len(found)
        self.stats.recovered = report.recovered
        self.stats.blocks_in += report.recovered
        self.stats.bytes_in += report.recovered * self.block_bytes
        return report

    def _verify_payload(self, slot: int, parsed: SlotHeader) -> SlotHeader | None:
        stored_len, crc = parsed.stored_len, parsed.crc
        if stored_len > self.slot_stride - SLOT_HEADER_BYTES:
            return None
        try:
            data = self.io.pread(self._fd, stored_len, self._offset(slot) + SLOT_HEADER_BYTES)
        except OSError:
            return None
        return parsed if len(data) == stored_len and checksum(data) == crc else None

    # -- backend ----------------------------------------------------------------------

    def _write_slot(self, slot: int, block_hash: int, enc: Encoded) -> None:
        data = memoryview(enc.data).cast("B")
        header = _pack_slot_header(enc.codec, block_hash, self._seq, enc.raw_len, len(data), enc.crc)
        self._seq += 1
        want = SLOT_HEADER_BYTES + len(data)
        written = self.io.pwritev(self._fd, [header, data], self._offset(slot))
        if written != want:
            raise OSError(28, f"short write to {self.path}: {written} of {want} bytes")  # ENOSPC
        self.slot_codec[slot] = enc.codec
        if self.spec.fsync == "always":
            self.io.fdatasync(self._fd)
        else:
            self._dirty = True

    def _read_slot(self, slot: int, block_hash: int, out: np.ndarray | None = None) -> Encoded:
        in_place = out is not None and self.slot_codec[slot] == CODEC_NONE
        if in_place:  # one preadv: header into our buffer, payload into the caller's
            n = self.io.preadv(self._fd, [self._head, out], self._offset(slot))
        else:
            n = self.io.preadv(self._fd, [self._view], self._offset(slot))
        parsed = parse_slot_header(self._head) if n >= SLOT_HEADER_BYTES else None
        if parsed is None:
            raise CorruptSlot
        codec, got_hash, _seq, raw_len, stored_len, crc = parsed
        if got_hash != block_hash or raw_len != self.block_bytes or SLOT_HEADER_BYTES + stored_len > n:
            raise CorruptSlot
        if in_place:
            if codec != CODEC_NONE or stored_len != raw_len:
                raise CorruptSlot  # the header disagrees with what this slot was written as
            data = out
        else:
            data = self._view[SLOT_HEADER_BYTES : SLOT_HEADER_BYTES + stored_len]
        # The payload CRC is checked by Tier.read (checksum is always on for flash).
        return Encoded(codec, raw_len, data, crc)

    def _release_slot(self, slot: int) -> None:
        self.io.pwrite(self._fd, _ZERO_HEADER, self._offset(slot))

    def flush(self) -> None:
        if self._fd >= 0 and self._dirty and self.spec.fsync != "never":
            self.io.fdatasync(self._fd)
        self._dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
