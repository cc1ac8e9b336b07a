"""numba kernels: pure functions over arrays, no Python objects, no imports of the store.

Each kernel is private to the package; the Python layer (``kvtier.hashing``,
``kvtier.policies``, ...) validates its inputs and wraps it.
"""
