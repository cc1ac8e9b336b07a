"""The one place that sets kvtier's numba options.

``cache=True`` keeps compiled kernels on disk next to the sources, so only the first
process pays the compile time; ``nogil=True`` lets threads run kernels side by side.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage, debugging).

Numba keys a module's disk cache on that module's source file alone, but the kernels
inline each other's helpers (the table, the lists, the policy rules): a cached loop can
be stale after an edit elsewhere, and stale machine code may crash. So the first import
drops every cached kernel whenever any kernel source has changed since the cache was
written (``_drop_stale_cache``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def njit(func=None, **overrides):
    """``numba.njit`` with kvtier's options; usable as ``@njit`` or ``@njit(inline=...)``."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)


def _drop_stale_cache() -> None:
    """Delete the kernels' cached machine code unless it was compiled from the kernel
    sources as they are now (a digest of every ``kvtier/_kernels/*.py``)."""
    kernels = Path(__file__).resolve().parent
    cache = kernels / "__pycache__"
    try:
        digest = hashlib.sha256()
        for f in sorted(kernels.glob("*.py")):
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
        stamp = digest.hexdigest()
        marker = cache / "kernels.digest"
        if marker.exists() and marker.read_text() == stamp:
            return
        for f in cache.glob("*.nb[ic]"):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        marker.write_text(stamp)
    except OSError:  # a read-only install keeps whatever cache it has
        pass


_drop_stale_cache()
