"""Fault injection for the flash tier: a ``FileIO`` that fails, tears and rots I/O.

``FaultyFileIO`` wraps the flash tier's system calls and, on a seeded schedule, makes a
slot write fail with ``ENOSPC`` or ``EIO``, *tears* a write (it reports success but only
the first half of the bytes land, as a lying or crashing device leaves them), fails a
header write (a free's tombstone, the file's high-water record) with ``EIO``, fails a read
with ``EIO``, or flips one bit of a stored slot just before it is read (rot at rest).
Pass it to a store: ``TieredStore(..., flash_io=FaultyFileIO(FaultRates(...), seed=1))``.

The store's promise under every fault: it returns the right bytes or reports the block
missing, keeps its invariants, keeps serving, and counts the fault (``write_errors``,
``read_errors``, ``corrupt``); a ``free`` the device fails raises ``TierIOError`` and the
block stays stored. ``injected`` counts what was done, for comparison.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from kvtier.errors import ConfigError
from kvtier.tiers.flash_file import FileIO
from kvtier.tiers.flash_format import SLOT_HEADER_BYTES, SLOT_HEADER_USED_BYTES, parse_slot_header
from kvtier.validation import check_number

_WRITE_FAULTS = ("write_enospc", "write_eio", "torn_write")
_HEADER_FAULTS = ("header_eio",)
_READ_FAULTS = ("read_eio", "bitflip")
FAULT_KINDS = _WRITE_FAULTS + _HEADER_FAULTS + _READ_FAULTS


@dataclass(frozen=True, kw_only=True)
class FaultRates:
    """Probability of each fault per slot write (first three), per header write (a slot's
    tombstone or the file's state record: ``header_eio``) or per slot read (last two)."""

    write_enospc: float = 0.0
    write_eio: float = 0.0
    torn_write: float = 0.0
    header_eio: float = 0.0
    read_eio: float = 0.0
    bitflip: float = 0.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = check_number(getattr(self, kind), f"FaultRates.{kind}", minimum=0, maximum=1)
            object.__setattr__(self, kind, rate)
        if self.write_enospc + self.write_eio + self.torn_write > 1.0:
            raise ConfigError("FaultRates: write_enospc + write_eio + torn_write must not exceed 1")
        if self.read_eio + self.bitflip > 1.0:
            raise ConfigError("FaultRates: read_eio + bitflip must not exceed 1")


class FaultyFileIO(FileIO):
    """A ``FileIO`` that injects faults on a seeded schedule (deterministic per seed).

    Slot writes (``pwritev``), header writes (``pwrite``) and slot reads (``preadv``) are
    faulted; recovery scans (``pread``), syncs and the creation of a file pass through.
    ``armed=False`` turns injection off (e.g. while reopening) without changing the
    schedule of what follows.
    """

    def __init__(self, rates: FaultRates, *, seed: int, inner: FileIO | None = None) -> None:
        self.rates = rates
        self.inner = inner if inner is not None else FileIO()
        self._rng = np.random.default_rng(seed)
        self.injected: Counter[str] = Counter()
        self.armed = True

    def _draw(self, kinds: tuple[str, ...]) -> str | None:
        """One draw of the schedule: the fault of ``kinds`` to inject now (counted), or
        ``None``. The kinds' rates are consecutive bands of [0, 1), so at most one fires."""
        if not self.armed:
            return None
        u = self._rng.random()
        for kind in kinds:
            rate = getattr(self.rates, kind)
            if u < rate:
                self.injected[kind] += 1
                return kind
            u -= rate
        return None

    def pwritev(self, fd, buffers, offset):
        fault = self._draw(_WRITE_FAULTS)
        if fault == "write_enospc":
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        if fault == "write_eio":
            raise OSError(errno.EIO, "Input/output error (injected)")
        if fault == "torn_write":
            data = b"".join(bytes(memoryview(b).cast("B")) for b in buffers)
            self.inner.pwrite(fd, data[: len(data) // 2], offset)
            return len(data)  # the caller is told everything landed
        return self.inner.pwritev(fd, buffers, offset)

    def preadv(self, fd, buffers, offset):
        fault = self._draw(_READ_FAULTS)
        if fault == "read_eio":
            raise OSError(errno.EIO, "Input/output error (injected)")
        if fault == "bitflip":
            self._flip_a_stored_bit(fd, offset)
        return self.inner.preadv(fd, buffers, offset)

    def _flip_a_stored_bit(self, fd: int, offset: int) -> None:
        """Flip one bit inside the slot's header or stored payload (never in padding)."""
        head = self.inner.pread(fd, SLOT_HEADER_BYTES, offset)
        parsed = parse_slot_header(head) if len(head) == SLOT_HEADER_BYTES else None
        covered = SLOT_HEADER_USED_BYTES  # the rest of the header is zero padding
        k = int(self._rng.integers(covered + (parsed.stored_len if parsed else 0)))
        pos = offset + (k if k < covered else SLOT_HEADER_BYTES + k - covered)
        byte = self.inner.pread(fd, 1, pos)
        self.inner.pwrite(fd, bytes([byte[0] ^ (1 << int(self._rng.integers(8)))]), pos)

    def pwrite(self, fd, data, offset):
        if self.rates.header_eio and self._draw(_HEADER_FAULTS) == "header_eio":
            raise OSError(errno.EIO, "Input/output error (injected)")
        return self.inner.pwrite(fd, data, offset)

    def pread(self, fd, size, offset):
        return self.inner.pread(fd, size, offset)

    def fdatasync(self, fd):
        return self.inner.fdatasync(fd)

    def ftruncate(self, fd, size):
        return self.inner.ftruncate(fd, size)


class PowerCutFileIO(FileIO):
    """A device with a volatile write cache: ``power_cut()`` undoes every write since the
    last ``fdatasync`` of its file, as a power loss would. Writes go through to the file
    at once (so reads see them, as from a cache); each remembers the bytes it replaced.

    Use it to test durability: after ``power_cut()`` abandon the store without closing it
    (``abandon(store)``), reopen the directory, and check that every block acknowledged as
    durable under the tier's ``fsync`` policy is there, bit for bit.
    """

    def __init__(self, inner: FileIO | None = None) -> None:
        self.inner = inner if inner is not None else FileIO()
        self._undo: list[tuple[int, int, bytes]] = []

    def _remember(self, fd: int, offset: int, size: int) -> None:
        old = self.inner.pread(fd, size, offset)
        self._undo.append((fd, offset, old + bytes(size - len(old))))

    def pwritev(self, fd, buffers, offset):
        self._remember(fd, offset, sum(memoryview(b).nbytes for b in buffers))
        return self.inner.pwritev(fd, buffers, offset)

    def pwrite(self, fd, data, offset):
        self._remember(fd, offset, memoryview(data).nbytes)
        return self.inner.pwrite(fd, data, offset)

    def fdatasync(self, fd):
        self.inner.fdatasync(fd)
        self._undo = [u for u in self._undo if u[0] != fd]

    def ftruncate(self, fd, size):
        self.inner.ftruncate(fd, size)

    @property
    def unsynced_writes(self) -> int:
        return len(self._undo)

    def power_cut(self) -> int:
        """Undo every unsynced write (newest first); returns how many were lost."""
        lost = len(self._undo)
        for fd, offset, old in reversed(self._undo):
            os.pwrite(fd, old, offset)
        self._undo.clear()
        return lost


def abandon(store) -> None:
    """Drop a store as a crash would: close its flash files (releasing their locks) without
    flushing or syncing anything. The store must not be used afterwards."""
    for tier in store.tiers:
        file = getattr(tier, "file", None)
        if file is not None:
            file.release(sync=False)
