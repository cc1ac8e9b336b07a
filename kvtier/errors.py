"""Exception types that kvtier raises.

Every error that reaches a caller is one of these. Each message names the field (or the
trace line), the value that was given, and what was expected, so a caller never has to
guess what went wrong.
"""

from __future__ import annotations


class KvtierError(Exception):
    """Base class of every error kvtier raises on purpose."""


class ConfigError(KvtierError, ValueError):
    """A spec, config or argument has an invalid value (names field, value, expectation)."""


class UnknownNameError(ConfigError):
    """A preset, tier kind, policy or codec name that kvtier does not know."""


class PayloadError(KvtierError, ValueError):
    """A KV block passed to the store has the wrong dtype, shape or memory layout."""


class BlockNotFoundError(KvtierError, KeyError):
    """An operation needs a resident block (pin, unpin, free) and the block is not stored."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class BlockPinnedError(KvtierError):
    """A pinned block cannot be freed until every pin on it is released."""


class FlashFormatError(KvtierError):
    """A flash tier's file exists but does not match the store's geometry or format."""


class TierIOError(KvtierError, OSError):
    """A tier's device failed an operation whose outcome the caller must know: a ``free``
    that could not be recorded (the block stays stored), or a ``flush``/``close`` whose sync
    failed (what was written since the last sync may not survive a power cut). The message
    names the tier, the file, the operation, the block or slot, and the OS error;
    ``errno`` is the OS error number. A miss or a dropped put is never raised: it is counted."""


class TraceFormatError(KvtierError, ValueError):
    """A trace file is malformed; the message names the file, line and field."""
