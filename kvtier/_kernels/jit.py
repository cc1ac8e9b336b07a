"""The one place that sets kvtier's numba options.

``cache=True`` keeps compiled kernels on disk next to the sources, so only the first
process pays the compile time; ``nogil=True`` lets threads run kernels side by side.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage, debugging).
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def njit(func=None, **overrides):
    """``numba.njit`` with kvtier's options; usable as ``@njit`` or ``@njit(inline=...)``."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)
