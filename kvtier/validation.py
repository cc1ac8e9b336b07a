"""The one place that says what a valid integer, number or name is.

Every public entry point checks its arguments with these, so one field is held to one
rule everywhere: integers are Python or numpy integers and never ``bool`` (``True`` is an
``int`` to Python, never a count to kvtier); numbers are integers or floats (numpy's
too), finite unless the caller allows infinity; names are non-empty strings. Each check
raises ``error`` (``ConfigError`` unless the caller names another kvtier exception, such
as ``TraceFormatError`` with the trace line in ``field``) with a message that names the
field, the value and what was expected, and returns the value as a plain Python type.

This module imports nothing from kvtier but its exceptions, so any layer may use it.
"""

from __future__ import annotations

import math

import numpy as np

from kvtier.errors import ConfigError

_INTEGER_TYPES = (int, np.integer)
_NUMBER_TYPES = (int, float, np.integer, np.floating)


def is_int(value) -> bool:
    """Whether ``value`` is an integer kvtier accepts (``int`` or numpy integer, not ``bool``)."""
    return isinstance(value, _INTEGER_TYPES) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """Whether ``value`` is a real number kvtier accepts (integer or float, numpy's too,
    not ``bool``); it may be infinite or NaN."""
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, (bool, np.bool_))


def _bounds_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def _int_text(minimum, maximum) -> str:
    if maximum is None and minimum == 1:
        return "a positive integer"
    if maximum is None and minimum == 0:
        return "a non-negative integer"
    return "an integer" + _bounds_text(minimum, maximum)


def check_int(value, field: str, *, minimum: int | None = 1, maximum: int | None = None,
              optional: bool = False, error: type[Exception] = ConfigError) -> int | None:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]`` (either bound
    ``None``: unbounded; the default asks for a positive integer), ``None`` if it is
    ``None`` and ``optional``; else raise ``error`` naming ``field``."""
    if value is None and optional:
        return None
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        expected = _int_text(minimum, maximum) + (" or None" if optional else "")
        raise error(f"{field}: got {value!r}, expected {expected}")
    return int(value)


def check_number(value, field: str, *, minimum: float | None = None, maximum: float | None = None,
                 min_exclusive: bool = False, max_exclusive: bool = False, finite: bool = True,
                 optional: bool = False, error: type[Exception] = ConfigError) -> float | None:
    """``value`` as a ``float`` if it is a number (finite unless ``finite=False``; never
    NaN) within the bounds (``min_exclusive``/``max_exclusive`` make them strict), ``None``
    if it is ``None`` and ``optional``; else raise ``error`` naming ``field``."""
    if value is None and optional:
        return None
    ok = is_number(value) and not math.isnan(value) and (not finite or math.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if min_exclusive else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if max_exclusive else value <= maximum
    if not ok:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if min_exclusive else '>='} {minimum}")
        if maximum is not None:
            parts.append(f"{'<' if max_exclusive else '<='} {maximum}")
        expected = ("a finite number" if finite else "a number") + (" " + " and ".join(parts) if parts else "")
        raise error(f"{field}: got {value!r}, expected {expected}" + (" or None" if optional else ""))
    return float(value)


def check_uint64(value, field: str, *, error: type[Exception] = ConfigError) -> int:
    """``value`` as an ``int`` if it is an integer in ``[0, 2**64)`` (a block hash or a hash
    root: one unsigned 64-bit word); else raise ``error`` naming ``field``."""
    if not is_int(value) or not 0 <= int(value) < 2**64:
        raise error(f"{field}: got {value!r}, expected an integer in [0, 2**64)")
    return int(value)


def check_bool(value, field: str, *, error: type[Exception] = ConfigError) -> bool:
    """``value`` if it is a ``bool`` (numpy's too); else raise ``error`` naming ``field``."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{field}: got {value!r}, expected True or False")
    return bool(value)


def check_name(value, field: str, *, charset: str | None = None, error: type[Exception] = ConfigError) -> str:
    """``value`` if it is a non-empty string; with ``charset`` (extra characters besides
    letters and digits, e.g. ``"-_."``) every character must be one of those too, and at
    least one must be a letter or digit (``"-"`` names nothing)."""
    ok = isinstance(value, str) and bool(value)
    if ok and charset is not None:
        ok = all(c.isalnum() or c in charset for c in value) and any(c.isalnum() for c in value)
    if not ok:
        extra = ""
        if charset is not None:
            extra = " of letters, digits" + "".join(f", {c!r}" for c in charset)
        raise error(f"{field}: got {value!r}, expected a non-empty string{extra}")
    return value


def check_choice(value, field: str, choices, *, error: type[Exception] = ConfigError):
    """``value`` if it is one of ``choices``; else raise ``error`` listing them."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value is in no mapping or set of names
        known = False
    if not known:
        raise error(f"{field}: got {value!r}, expected one of {sorted(choices, key=str)}")
    return value


__all__ = ["check_bool", "check_choice", "check_int", "check_name", "check_number", "check_uint64", "is_int",
           "is_number"]
