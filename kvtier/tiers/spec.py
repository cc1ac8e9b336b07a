"""``TierSpec``: what a tier is (kind, capacity, bandwidth, latency, codec, policy).

Light on purpose: it imports only kvtier's errors, checks, sourced data and codec name
table, so the targets and the cost model can name tier kinds without loading a backend.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from kvtier._data import hardware_data
from kvtier.codec_ids import CODEC_IDS
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.validation import check_bool, check_choice, check_int, check_name, check_number

TIER_KINDS = ("sram", "hbm", "dram", "flash")
FSYNC_POLICIES = ("always", "flush", "never")

#: The flash file's slot geometry, all that sizing a flash tier needs (the format itself is
#: ``kvtier.tiers.flash_tier``'s): a header before each block's payload, slots aligned.
FLASH_SLOT_HEADER_BYTES = 64
FLASH_ALIGN_BYTES = 4096


def flash_slot_bytes(block_bytes: int) -> int:
    """Bytes of flash capacity one block takes: its 64-byte header plus the payload,
    rounded up to 4 KiB. Size a flash tier as ``n * flash_slot_bytes(block_bytes)``."""
    return -(-(FLASH_SLOT_HEADER_BYTES + block_bytes) // FLASH_ALIGN_BYTES) * FLASH_ALIGN_BYTES


def _default_figures() -> dict[str, dict]:
    """Default bandwidth/latency per kind, read from the sourced hardware data.

    sram: one Groq LPU v1 chip's SRAM; hbm: H100 SXM HBM3; dram: host DRAM as an H100
    sees it over PCIe Gen5 x16; flash: one NVMe Gen5 SSD (Micron 9550). Latencies of
    SRAM/HBM/DRAM are estimates in the data (``latency_estimate``).
    """
    hw = hardware_data()
    h100 = {t["name"]: t for t in hw["targets"]["nvidia_h100_sxm"]["tiers"]}
    groq = {t["name"]: t for t in hw["targets"]["groq_lpu_v1"]["tiers"]}
    picks = {
        "sram": groq["sram"],
        "hbm": h100["hbm3"],
        "dram": h100["host_dram_via_pcie5_x16"],
        "flash": hw["generic_tiers"]["nvme_gen5_ssd"],
    }
    return {
        kind: {k: t[k] for k in ("read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s")}
        for kind, t in picks.items()
    }


@dataclass(frozen=True, kw_only=True)
class TierSpec:
    """One tier of the chain, fastest first in a store.

    Fields left ``None`` take the kind's sourced defaults (``TierSpec.defaults(kind)``).
    ``checksum``: CRC32C of stored bytes, verified on every read; always on for flash,
    off by default for memory tiers (it costs a pass over the bytes). ``path``: the
    directory of a flash tier's file (required for flash). ``fsync``: when a flash write is
    durable: ``"always"`` (before ``put`` returns), ``"flush"`` (at ``flush()``/``close()``),
    ``"never"`` (left to the OS). ``verify_on_open``: check every payload's CRC when a flash
    file is reopened (otherwise only headers, and payloads at their first read).
    """

    kind: str
    capacity_bytes: int
    name: str | None = None
    read_bw_bytes_per_s: float | None = None
    write_bw_bytes_per_s: float | None = None
    latency_s: float | None = None
    codec: str = "none"
    policy: str = "lru"
    checksum: bool | None = None
    path: str | None = None
    fsync: str = "flush"
    verify_on_open: bool = True

    def __post_init__(self) -> None:
        check_choice(self.kind, "TierSpec.kind", TIER_KINDS, error=UnknownNameError)
        object.__setattr__(self, "capacity_bytes", check_int(self.capacity_bytes, "TierSpec.capacity_bytes"))
        defaults = _default_figures()[self.kind]
        for field, default in defaults.items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, float(default))
        for field in ("read_bw_bytes_per_s", "write_bw_bytes_per_s"):
            check_number(getattr(self, field), f"TierSpec.{field}", minimum=0.0, min_exclusive=True)
        check_number(self.latency_s, "TierSpec.latency_s", minimum=0.0)
        if self.name is None:
            object.__setattr__(self, "name", self.kind)
        check_name(self.name, "TierSpec.name", charset="-_")
        check_choice(self.codec, "TierSpec.codec", tuple(CODEC_IDS), error=UnknownNameError)
        check_choice(self.fsync, "TierSpec.fsync", FSYNC_POLICIES, error=UnknownNameError)
        if self.kind == "flash":
            if not self.path:
                raise ConfigError("TierSpec.path: got None, expected a directory for the flash tier's file")
            path = os.fspath(self.path) if isinstance(self.path, (str, os.PathLike)) else None
            if not isinstance(path, str) or "\0" in path:
                raise ConfigError(f"TierSpec.path: got {self.path!r}, expected a directory path (a str or os.PathLike "
                                  f"of text, without NUL characters)")
            if self.checksum is False:
                raise ConfigError("TierSpec.checksum: got False, expected True or None for flash (CRC is part of its format)")
            object.__setattr__(self, "checksum", True)
        elif self.checksum is None:
            object.__setattr__(self, "checksum", False)
        if not isinstance(self.policy, str):
            raise ConfigError(f"TierSpec.policy: got {self.policy!r}, expected a policy name")
        for field in ("checksum", "verify_on_open"):
            if getattr(self, field) is not None:
                check_bool(getattr(self, field), f"TierSpec.{field}")
        # Policy names are checked when the tier is built, so policies may register late.

    @staticmethod
    def defaults(kind: str) -> dict:
        """The sourced bandwidth/latency defaults of a tier kind."""
        check_choice(kind, "kind", TIER_KINDS, error=UnknownNameError)
        return dict(_default_figures()[kind])

    def replace(self, **changes) -> "TierSpec":
        return dataclasses.replace(self, **changes)


def sram(capacity_bytes: int, **kw) -> TierSpec:
    """An on-chip SRAM tier spec (payload in a preallocated numpy slab)."""
    return TierSpec(kind="sram", capacity_bytes=capacity_bytes, **kw)


def hbm(capacity_bytes: int, **kw) -> TierSpec:
    """An HBM tier spec (payload in a preallocated numpy slab)."""
    return TierSpec(kind="hbm", capacity_bytes=capacity_bytes, **kw)


def dram(capacity_bytes: int, **kw) -> TierSpec:
    """A host-DRAM tier spec (payload in a preallocated numpy slab)."""
    return TierSpec(kind="dram", capacity_bytes=capacity_bytes, **kw)


def flash(capacity_bytes: int, path, **kw) -> TierSpec:
    """A flash tier spec whose payload lives in a real file under directory ``path``."""
    return TierSpec(kind="flash", capacity_bytes=capacity_bytes, path=str(path), **kw)
