"""Statistics of each tier and of the store: plain counters that serialise to dicts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class TierStats:
    """Counters of one tier. Traffic is counted in raw (decoded) bytes unless named ``stored``.

    Residency accounting holds at every step: ``blocks_in - blocks_out`` equals the blocks
    resident, and ``bytes_in - bytes_out`` their raw bytes.
    """

    hits: int = 0  # fetches this tier served
    misses: int = 0  # fetches that looked here and did not find the block
    blocks_in: int = 0  # blocks that became resident: put, demoted in, promoted in, recovered
    blocks_out: int = 0  # blocks that stopped being resident, for any reason
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_written: int = 0  # raw bytes of payload written into this tier
    bytes_read: int = 0  # raw bytes of payload read out of this tier (fetches and moves)
    stored_bytes_written: int = 0  # bytes after the codec, as they hit the backend
    evictions: int = 0  # victims chosen here to make room
    demotions: int = 0  # victims moved from here to the next tier down
    promotions: int = 0  # blocks moved from here to a faster tier on a hit
    drops: int = 0  # victims that left this tier and are kept nowhere below
    frees: int = 0  # blocks removed by the caller (free)
    corrupt: int = 0  # slots whose header or CRC did not verify (never served)
    write_errors: int = 0  # backend writes that failed (block reported dropped)
    read_errors: int = 0  # backend reads that failed (block reported missing)
    recovered: int = 0  # blocks found in the backend on reopen
    # Codec counters: filled in the snapshots ``TieredStore.stats()`` returns.
    compress_ns: int = 0
    decompress_ns: int = 0
    codec_raw_bytes: int = 0
    codec_stored_bytes: int = 0

    @property
    def compression_ratio(self) -> float:
        """Raw / stored bytes over everything this tier's codec encoded (1.0 without a codec)."""
        return self.codec_raw_bytes / self.codec_stored_bytes if self.codec_stored_bytes else 1.0

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["compression_ratio"] = self.compression_ratio
        return out


@dataclass
class StoreStats:
    """Store-wide counters; ``tiers`` maps tier name to that tier's ``TierStats`` (a copy)."""

    puts: int = 0
    puts_dropped: int = 0  # puts that found no tier with room (every slot pinned)
    put_hits: int = 0  # puts of a block already stored (treated as an access)
    fetches: int = 0
    fetch_hits: int = 0
    fetch_misses: int = 0  # not stored anywhere, or found corrupt/unreadable
    tiers: dict[str, TierStats] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "tiers"}
        out["tiers"] = {name: t.as_dict() for name, t in self.tiers.items()}
        return out
