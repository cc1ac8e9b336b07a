"""The flash tier's file format: the file header, the state record and slot headers.

Pure packing and parsing (no I/O), so the tier, the recovery scan, the fault injectors
and tests agree on one layout. Little-endian throughout.

File (``<path>/<tier name>.kvt``)::

    [0, 4096)      file header page
        [0, 44)        geometry: magic ``KVTIERFL``, format version, slot stride, slot
                       count, block bytes, CRC32C of those fields (written once, at creation)
        [512, 552)     state record, copy A   } the newer valid copy counts; writes alternate,
        [1024, 1064)   state record, copy B   } so a torn write leaves the other one intact
    [4096, ...)    ``num_slots`` slots of ``slot_stride`` bytes (a multiple of 4096)

State record: magic ``KVST``, record number (which copy is newer), *generation* (bumped
durably at every open), *high-water mark* (slots ``[0, hwm)`` have each been written at
least once; past it, slots are read at reopen only up to the first never-written one),
CRC32C. A new file gets both copies (records 0 and 1), so a copy that does not verify is
always damage.

Slot: a 64-byte header, then the stored payload. Header: magic ``KVBK``, version, codec,
flags, block hash, write sequence number, raw length, stored length, payload CRC32C, and a
CRC32C of the header itself. A slot below the high-water mark always holds a block header
or a *tombstone* (flag ``FREED``: the slot was freed, and the hash field names the freed
block, or no block with ``ANONYMOUS``). So a zeroed header below the mark is damage, not a
free slot. Write sequence numbers are ``generation << 32 | n``: every write of a later
open outranks every write of an earlier one, and a sequence number whose generation is
newer than the file's is forged or corrupt.
"""

from __future__ import annotations

import functools
import struct
from typing import NamedTuple

import numpy as np

from kvtier._kernels.crc import check_headers, crc32c_rows, crc32c_table
from kvtier.codec import checksum
from kvtier.codec_ids import CODEC_NAMES, CODEC_NONE
from kvtier.tiers.spec import FLASH_SLOT_HEADER_BYTES

FILE_MAGIC = b"KVTIERFL"
#: Version 1 files (no state record, no tombstones) are read and upgraded in place.
FILE_VERSION = 2
LEGACY_FILE_VERSION = 1
FILE_HEADER_BYTES = 4096
GEOMETRY = struct.Struct("<8sIQQQ")  # magic, version, slot_stride, num_slots, block_bytes
GEOMETRY_FIELDS = ("magic", "version", "slot_stride", "num_slots", "block_bytes")
GEOMETRY_BYTES = GEOMETRY.size + 4

STATE_MAGIC = b"KVST"
_STATE = struct.Struct("<4sIQQQ")  # magic, reserved (0), record number, generation, high-water mark
STATE_BYTES = _STATE.size + 4
STATE_OFFSETS = (512, 1024)  # separate 512-byte sectors: one torn write cannot hit both
#: Write sequence numbers are ``generation << SEQ_BITS | n``.
SEQ_BITS = 32
MAX_GENERATION = 2**32 - 1

SLOT_MAGIC = b"KVBK"
SLOT_VERSION = 1
SLOT_HEADER_BYTES = FLASH_SLOT_HEADER_BYTES
_SLOT_HEADER = struct.Struct("<4sHBBQQIII")  # magic, ver, codec, flags, hash, seq, raw, stored, payload crc
#: Leading bytes of a slot header that its fields and their CRC32C fill; the rest is zero padding.
SLOT_HEADER_USED_BYTES = _SLOT_HEADER.size + 4
ZERO_HEADER = bytes(SLOT_HEADER_BYTES)

FLAG_FREED = 1  # a tombstone: the slot holds no block
FLAG_ANONYMOUS = 2  # with FREED: the tombstone names no block (written over a damaged slot)
_KNOWN_FLAGS = FLAG_FREED | FLAG_ANONYMOUS

#: The slot header's fields as a numpy record (the same layout as ``_SLOT_HEADER`` plus its
#: CRC), for reading many headers at once (``parse_slot_headers``).
SLOT_HEADER_DTYPE = np.dtype([
    ("magic", "S4"), ("version", "<u2"), ("codec", "u1"), ("flags", "u1"), ("block_hash", "<u8"),
    ("seq", "<u8"), ("raw_len", "<u4"), ("stored_len", "<u4"), ("crc", "<u4"), ("header_crc", "<u4"),
])
assert SLOT_HEADER_DTYPE.itemsize == SLOT_HEADER_USED_BYTES
_CRC_TABLE = crc32c_table()


class SlotHeader(NamedTuple):
    """The fields of a slot header that verified (``crc`` is the payload's CRC32C)."""

    codec: int
    block_hash: int
    seq: int
    raw_len: int
    stored_len: int
    crc: int
    flags: int = 0

    @property
    def freed(self) -> bool:
        return bool(self.flags & FLAG_FREED)

    @property
    def names_block(self) -> bool:
        """A block header, or a tombstone that names the block it freed."""
        return not self.flags & FLAG_ANONYMOUS


class StateRecord(NamedTuple):
    """A verified state record. ``partner_damaged``: the other copy does not verify (and is
    not simply unwritten), so it may have held one newer record: a high-water mark one
    higher, or a generation one newer."""

    record_no: int
    generation: int
    high_water: int
    partner_damaged: bool = False


def pack_geometry(version: int, slot_stride: int, num_slots: int, block_bytes: int) -> bytes:
    body = GEOMETRY.pack(FILE_MAGIC, version, slot_stride, num_slots, block_bytes)
    return body + struct.pack("<I", checksum(body))


def parse_geometry(buf: bytes) -> dict | str:
    """The geometry fields at the start of ``buf`` as a dict, or a string saying what is wrong."""
    if buf[:8] != FILE_MAGIC:
        return f"not a kvtier flash file (magic {bytes(buf[:8])!r}, expected {FILE_MAGIC!r})"
    if len(buf) < GEOMETRY_BYTES:
        return f"file header is truncated ({len(buf)} of {GEOMETRY_BYTES} bytes)"
    (stored_crc,) = struct.unpack_from("<I", buf, GEOMETRY.size)
    if stored_crc != checksum(bytes(buf[: GEOMETRY.size])):
        return "file header CRC does not verify"
    return dict(zip(GEOMETRY_FIELDS, GEOMETRY.unpack(bytes(buf[: GEOMETRY.size]))))


def pack_state(record_no: int, generation: int, high_water: int) -> bytes:
    body = _STATE.pack(STATE_MAGIC, 0, record_no, generation, high_water)
    return body + struct.pack("<I", checksum(body))


def state_offset(record_no: int) -> int:
    """Where the state record numbered ``record_no`` is written (copies alternate)."""
    return STATE_OFFSETS[record_no % 2]


def _parse_state_copy(buf: bytes, offset: int, num_slots: int) -> StateRecord | None:
    if len(buf) < STATE_BYTES:
        return None
    (crc,) = struct.unpack_from("<I", buf, _STATE.size)
    if crc != checksum(buf[: _STATE.size]):
        return None
    magic, _reserved, record_no, generation, high_water = _STATE.unpack(buf[: _STATE.size])
    if magic != STATE_MAGIC or high_water > num_slots or generation > MAX_GENERATION:
        return None
    if state_offset(record_no) != offset:
        return None  # a record is only ever written at its own copy's offset
    return StateRecord(record_no, generation, high_water)


def parse_state(header_page: bytes, num_slots: int) -> StateRecord | None:
    """The newer of the two state-record copies in the file header page that verifies
    (CRC, magic, a high-water mark within ``num_slots``), or ``None`` when neither does."""
    copies = [bytes(header_page[offset : offset + STATE_BYTES]) for offset in STATE_OFFSETS]
    parsed = [_parse_state_copy(buf, offset, num_slots) for buf, offset in zip(copies, STATE_OFFSETS)]
    valid = [p for p in parsed if p is not None]
    if not valid:
        return None
    best = max(valid, key=lambda p: p.record_no)
    return best._replace(partner_damaged=len(valid) == 1)  # both copies are written when the file is made


def make_seq(generation: int, n: int) -> int:
    return (generation << SEQ_BITS) | n


def seq_generation(seq: int) -> int:
    return seq >> SEQ_BITS


def pack_slot_header(codec: int, block_hash: int, seq: int, raw_len: int, stored_len: int, crc: int,
                     flags: int = 0) -> bytes:
    """A 64-byte slot header (fields, their CRC32C, zero padding)."""
    body = _SLOT_HEADER.pack(SLOT_MAGIC, SLOT_VERSION, codec, flags, block_hash, seq, raw_len, stored_len, crc)
    return body + struct.pack("<I", checksum(body)) + bytes(SLOT_HEADER_BYTES - SLOT_HEADER_USED_BYTES)


def pack_tombstone(seq: int, block_hash: int | None) -> bytes:
    """The header of a freed slot; ``block_hash=None`` for a tombstone that names no block."""
    if block_hash is None:
        return pack_slot_header(CODEC_NONE, 0, seq, 0, 0, 0, FLAG_FREED | FLAG_ANONYMOUS)
    return pack_slot_header(CODEC_NONE, block_hash, seq, 0, 0, 0, FLAG_FREED)


def parse_slot_header(buf) -> SlotHeader | None:
    """The header at the start of ``buf`` (at least ``SLOT_HEADER_USED_BYTES`` long), or
    ``None`` when its magic, version, codec, flags or CRC does not verify."""
    body = bytes(buf[: _SLOT_HEADER.size])
    magic, version, codec, flags, block_hash, seq, raw_len, stored_len, crc = _SLOT_HEADER.unpack(body)
    if magic != SLOT_MAGIC or version != SLOT_VERSION or codec not in CODEC_NAMES or flags & ~_KNOWN_FLAGS:
        return None
    if flags & FLAG_ANONYMOUS and not flags & FLAG_FREED:
        return None
    (header_crc,) = struct.unpack_from("<I", buf, _SLOT_HEADER.size)
    if header_crc != checksum(body):
        return None
    return SlotHeader(codec, block_hash, seq, raw_len, stored_len, crc, flags)


def parse_slot_headers(heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``parse_slot_header`` over many headers at once: ``heads`` is a ``(n, k)`` uint8 array
    (``k >= SLOT_HEADER_USED_BYTES``), one header per row. Returns the fields as a
    ``SLOT_HEADER_DTYPE`` array and a boolean mask of the rows that verify (the rows
    ``parse_slot_header`` would not return ``None`` for)."""
    raw = np.ascontiguousarray(heads[:, :SLOT_HEADER_USED_BYTES])
    h = raw.view(SLOT_HEADER_DTYPE).reshape(-1)
    flags = h["flags"]
    ok = (h["magic"] == SLOT_MAGIC) & (h["version"] == SLOT_VERSION) & np.isin(h["codec"], list(CODEC_NAMES))
    ok &= (flags & np.uint8(0xFF ^ _KNOWN_FLAGS)) == 0
    ok &= ~(((flags & FLAG_ANONYMOUS) != 0) & ((flags & FLAG_FREED) == 0))
    rows = np.flatnonzero(ok)
    if rows.size:
        crcs = crc32c_rows(raw[rows], _SLOT_HEADER.size, _CRC_TABLE)
        ok[rows] = crcs == h["header_crc"][rows]
    return h, ok


def raw_headers_verify(heads: np.ndarray, block_hashes: np.ndarray, block_bytes: int, payload_crcs: np.ndarray) -> bool:
    """Whether every row of ``heads`` (a ``(n, SLOT_HEADER_BYTES)`` uint8 array) is the
    verifying header of a block stored raw: flags 0, hash ``block_hashes[i]`` (uint64), raw
    and stored length ``block_bytes``, payload CRC ``payload_crcs[i]`` (int64: what the
    payload read with it hashed to). What ``parse_slot_header`` and a single raw read check,
    for a batch, in one compiled pass."""
    template, care = _raw_header_template(block_bytes)
    f = SLOT_HEADER_DTYPE.fields
    return bool(check_headers(heads, template, care, block_hashes, f["block_hash"][1], payload_crcs, f["crc"][1],
                              _SLOT_HEADER.size, f["header_crc"][1], _CRC_TABLE))


@functools.lru_cache(maxsize=8)
def _raw_header_template(block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed bytes of a raw block's header of ``block_bytes`` (magic, version, codec,
    flags, both lengths) and the mask of where they lie; the hash, sequence number and CRCs
    vary from block to block."""
    template = np.frombuffer(pack_slot_header(CODEC_NONE, 0, 0, block_bytes, block_bytes, 0), dtype=np.uint8)
    care = np.zeros(_SLOT_HEADER.size, dtype=np.bool_)
    for name in ("magic", "version", "codec", "flags", "raw_len", "stored_len"):
        dtype, offset = SLOT_HEADER_DTYPE.fields[name][:2]
        care[offset : offset + dtype.itemsize] = True
    return template[: _SLOT_HEADER.size].copy(), care
