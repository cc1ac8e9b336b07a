"""Codec names and the ids stored in flash slot headers and binary traces.

The table alone, apart from the codecs themselves (``kvtier.codec``), so that a spec can
check a codec name without importing the compression and checksum libraries.
"""

from __future__ import annotations

from kvtier.errors import UnknownNameError

CODEC_NONE = 0
CODEC_LZ4 = 1
CODEC_IDS = {"none": CODEC_NONE, "lz4": CODEC_LZ4}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}


def codec_id(name: str) -> int:
    """The id of codec ``name``; ``UnknownNameError`` naming the codecs otherwise."""
    try:
        return CODEC_IDS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"codec: got {name!r}, expected one of {sorted(CODEC_IDS)}") from None


__all__ = ["CODEC_IDS", "CODEC_LZ4", "CODEC_NAMES", "CODEC_NONE", "codec_id"]
