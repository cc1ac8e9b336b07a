"""Host buffers for KV blocks: page-aligned, so block copies between them run at full speed."""

from __future__ import annotations

import numpy as np

from kvtier.errors import ConfigError
from kvtier.validation import is_int

#: Where KV pages start: a multiple of the 4 KiB memory page (so of the 64-byte cache line).
PAGE_ALIGN_BYTES = 4096


def aligned_empty(shape, dtype, *, align_bytes: int = PAGE_ALIGN_BYTES) -> np.ndarray:
    """An uninitialised C-contiguous array whose first byte is at a multiple of ``align_bytes``.

    ``np.empty`` gives only malloc's 16-byte alignment, so two buffers usually start at
    different offsets within a 64-byte cache line. A block copy between such buffers can
    run at half speed: on the AMD EPYC this was measured on, glibc copies 64 KiB with
    ``rep movsb``, which takes about 10 us instead of 6 us when the destination starts 16
    bytes further into its cache line than the source (``kvtier.examples.copy_alignment``
    measures it). Inference engines align their KV pools; so do the memory tiers' slabs, the
    example's ``PagedKV`` pages and its calibration buffers: give ``TieredStore.fetch`` an
    ``out`` made here.
    """
    if not is_int(align_bytes) or align_bytes < 1 or align_bytes & (align_bytes - 1):
        raise ConfigError(f"align_bytes: got {align_bytes!r}, expected a power of two >= 1")
    align_bytes = int(align_bytes)
    dtype = np.dtype(dtype)
    dims = (shape,) if is_int(shape) else tuple(shape)
    if not all(is_int(n) and n >= 0 for n in dims):
        raise ConfigError(f"shape: got {shape!r}, expected sizes >= 0")
    shape = tuple(int(n) for n in dims)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align_bytes, dtype=np.uint8)
    start = -raw.ctypes.data % align_bytes
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def copy_rows(src: np.ndarray, src_rows, dst: np.ndarray, dst_rows) -> None:
    """Copy row ``src[src_rows[j]]`` into ``dst[dst_rows[j]]`` for every ``j``, in order (a
    later copy to the same row wins), with one compiled loop. ``src`` and ``dst`` are 2-D
    uint8 arrays with rows of equal width, ``dst`` writeable with contiguous rows; the row
    numbers are integer sequences of equal length, within bounds. Raises ``ConfigError``
    naming the field otherwise; nothing is copied then."""
    from kvtier._kernels.gather import copy_rows as kernel

    for name, a in (("src", src), ("dst", dst)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.uint8:
            raise ConfigError(f"{name}: got {getattr(a, 'dtype', type(a).__name__)} "
                              f"{getattr(a, 'shape', '')}, expected a 2-D uint8 array")
    if src.shape[1] != dst.shape[1]:
        raise ConfigError(f"dst.shape[1]: got {dst.shape[1]}, expected {src.shape[1]} (the width of src's rows)")
    if not dst.flags.writeable or (dst.shape[0] and dst.strides[1] != 1):
        raise ConfigError("dst: got a read-only array or rows that are not contiguous, expected writeable rows")
    rows = []
    for name, idx in (("src_rows", src_rows), ("dst_rows", dst_rows)):
        try:
            arr = idx if type(idx) is np.ndarray and idx.dtype == np.int64 else np.asarray(idx, dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: got {type(idx).__name__}, expected a sequence of row numbers") from None
        if arr.ndim != 1:
            raise ConfigError(f"{name}: got shape {arr.shape}, expected a 1-D sequence of row numbers")
        rows.append(arr)
    if rows[0].shape != rows[1].shape:
        raise ConfigError(f"dst_rows: got {rows[1].size} rows, expected {rows[0].size} (as many as src_rows)")
    n = rows[0].size
    if n > 1 and _one_run(rows[0], src.shape[0]) and _one_run(rows[1], dst.shape[0]):
        # Both sides one run of adjacent rows (a batch into fresh slots): one memcpy, whose
        # streaming stores beat the kernel's when the destination is not in cache.
        s0, d0 = int(rows[0][0]), int(rows[1][0])
        np.copyto(dst[d0 : d0 + n], src[s0 : s0 + n])
        return
    bad = kernel(src, rows[0], dst, rows[1])
    if bad >= 0:
        s, d = int(rows[0][bad]), int(rows[1][bad])
        field, got, bound = ("src_rows", s, src.shape[0]) if not 0 <= s < src.shape[0] else ("dst_rows", d, dst.shape[0])
        raise ConfigError(f"{field}[{bad}]: got {got}, expected a row in 0..{bound - 1}")


def is_run(rows: list[int]) -> bool:
    """Whether ``rows`` (a non-empty list of ints) is ``first, first + 1, ...``: adjacent
    rows, each once, in order (a batch into fresh slots; checked at C speed)."""
    first = rows[0]
    return rows[-1] - first == len(rows) - 1 and rows == list(range(first, first + len(rows)))


def _one_run(rows: np.ndarray, bound: int) -> bool:
    first, last = int(rows[0]), int(rows[-1])
    if first < 0 or last >= bound or last - first != rows.size - 1:
        return False  # (the common miss costs no array pass)
    return bool((rows[1:] == rows[:-1] + 1).all())


__all__ = ["PAGE_ALIGN_BYTES", "aligned_empty", "copy_rows", "is_run"]
