"""Row gather and scatter between a tier's slab and a caller's contiguous batch buffer.

Pure array kernels: ``copy_rows(src, src_rows, dst, dst_rows)`` copies ``src[src_rows[j]]``
to ``dst[dst_rows[j]]`` for ``j`` in order (a later copy to the same row wins), so one
kernel serves both directions (slab -> batch is a gather, batch -> slab a scatter). The
Python wrapper ``kvtier.buffers.copy_rows`` validates shapes and dtypes.
"""

from __future__ import annotations

from kvtier._kernels.jit import njit


@njit
def copy_rows(src, src_rows, dst, dst_rows):
    width = src.shape[1]
    for j in range(src_rows.shape[0]):
        a = src[src_rows[j]]
        b = dst[dst_rows[j]]
        # An explicit byte loop: LLVM vectorises it to full memory speed, where a slice
        # assignment compiles to a much slower generic copy.
        for i in range(width):
            b[i] = a[i]
