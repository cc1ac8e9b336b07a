"""CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of many short rows in one call, and
the check of a batch of slot headers built on it (``check_headers``).

A slot header is 64 bytes, of which its CRC covers the first 36: one call per header to
the SIMD CRC (``kvtier.codec.checksum``, the ``fastcrc`` package) costs more in Python
than the CRC itself, so the headers of a batched flash read or of the recovery scan go
through this table-driven loop instead, a row at a time. Payloads, long and one per
block, stay with the SIMD CRC, which agrees with this bit for bit (tests/test_crc.py).
"""

from __future__ import annotations

import numpy as np

from kvtier._kernels.jit import njit

POLY_REFLECTED = 0x82F63B78


def crc32c_table() -> np.ndarray:
    """The 256-entry lookup table of the reflected CRC32C polynomial (uint32)."""
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (POLY_REFLECTED if c & 1 else 0)
        table[i] = c
    return table


@njit
def crc32c_rows(data, nbytes, table):
    """The CRC32C of ``data[i, :nbytes]`` for every row ``i`` of a 2-D uint8 array, as int64
    (standard CRC32C: initial value and final XOR 0xFFFFFFFF). ``table``: ``crc32c_table()``."""
    if nbytes < 0 or nbytes > data.shape[1]:
        raise ValueError("crc32c_rows: nbytes must lie within a row")
    out = np.empty(data.shape[0], dtype=np.int64)
    for i in range(data.shape[0]):
        c = 0xFFFFFFFF
        for j in range(nbytes):
            c = np.int64(table[(c ^ np.int64(data[i, j])) & 0xFF]) ^ (c >> 8)
        out[i] = c ^ 0xFFFFFFFF
    return out


@njit
def _le(row, at, width):
    """The little-endian unsigned integer of ``width`` bytes at ``row[at:]`` (as int64; a
    64-bit field wraps, which equality tests do not mind)."""
    v = np.int64(0)
    for k in range(width):
        v |= np.int64(row[at + k]) << (8 * k)
    return v


@njit
def check_headers(heads, template, care, hashes, hash_at, crcs, crc_at, crc_len, header_crc_at, table):
    """Whether every row of ``heads`` (2-D uint8) is ``template`` where ``care`` is set,
    holds ``hashes[i]`` as 8 little-endian bytes at ``hash_at`` and ``crcs[i]`` as 4 at
    ``crc_at``, and whose first ``crc_len`` bytes have the CRC32C stored as 4 bytes at
    ``header_crc_at``: a batch of slot headers checked in one pass (the layout is the
    caller's, ``kvtier.tiers.flash_format.raw_headers_verify``)."""
    if template.shape[0] > heads.shape[1] or crc_len > heads.shape[1] or header_crc_at + 4 > heads.shape[1]:
        raise ValueError("check_headers: the template or a field lies past the row")
    for i in range(heads.shape[0]):
        row = heads[i]
        for j in range(template.shape[0]):
            if care[j] and row[j] != template[j]:
                return False
        if _le(row, hash_at, 8) != np.int64(hashes[i]) or _le(row, crc_at, 4) != crcs[i]:
            return False
        c = 0xFFFFFFFF
        for j in range(crc_len):
            c = np.int64(table[(c ^ np.int64(row[j])) & 0xFF]) ^ (c >> 8)
        if c ^ 0xFFFFFFFF != _le(row, header_crc_at, 4):
            return False
    return True
