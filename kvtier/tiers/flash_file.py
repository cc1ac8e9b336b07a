"""The flash tier's file handle: the system calls it makes, and how the file is opened,
created, locked and released.

Opening never leaves a half-made file: a new file is built under a temporary name (header
written, size set, synced) and only then linked to its real name. Everything that can go
wrong while opening becomes a ``ConfigError`` naming the ``TierSpec`` field and value.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import secrets
import stat
from typing import Callable

from kvtier.errors import ConfigError

_LINK_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


class FileIO:
    """The system calls the flash tier makes on its file, in one replaceable object.

    The default calls ``os`` directly. ``kvtier.testing.FaultyFileIO`` wraps it to inject
    failed, torn and corrupted I/O; a user may wrap it to trace or throttle I/O.
    """

    def pwritev(self, fd: int, buffers, offset: int) -> int:
        return os.pwritev(fd, buffers, offset)

    def preadv(self, fd: int, buffers, offset: int) -> int:
        return os.preadv(fd, buffers, offset)

    def pwrite(self, fd: int, data, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)


class FlashFile:
    """An open, locked flash file. ``release()`` closes it (releasing the lock) once; the
    tier registers it with a finalizer, so a tier dropped without ``close()`` still lets go
    of its file when collected."""

    def __init__(self, fd: int, path: str, io: FileIO) -> None:
        self.fd = fd
        self.path = path
        self.io = io
        #: Writes since the last successful sync (what a finalizer syncs, best effort).
        self.dirty = False
        self.sync_on_release = True

    def release(self, *, sync: bool | None = None) -> None:
        """Close the descriptor. ``sync`` (default: ``sync_on_release``) first tries one
        fdatasync of unsynced writes; its failure is swallowed here (the tier's ``close()``
        syncs and reports before it calls this)."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if (self.sync_on_release if sync is None else sync) and self.dirty:
                self.io.fdatasync(fd)
        except OSError:
            pass  # nobody to tell: only a tier dropped unclosed gets here with unsynced writes
        finally:
            os.close(fd)


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _where(tier_name: str, path: str) -> str:
    return f"TierSpec.path of tier {tier_name!r}: {path!r}"


def check_size_limit(tier_name: str, capacity_bytes: int, file_bytes: int) -> None:
    """``ConfigError`` when the file would exceed this process's file-size limit (writes past
    it fail with ``EFBIG``)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and file_bytes > soft:
        raise ConfigError(
            f"TierSpec.capacity_bytes of tier {tier_name!r}: got {capacity_bytes}, which needs a file of "
            f"{file_bytes} bytes, over this process's file-size limit of {soft} bytes (RLIMIT_FSIZE); "
            f"expected a capacity whose file fits under the limit"
        )


def _os_error(tier_name: str, path: str, what: str, e: OSError, capacity_bytes: int, file_bytes: int) -> ConfigError:
    if e.errno == errno.EFBIG:
        return ConfigError(
            f"TierSpec.capacity_bytes of tier {tier_name!r}: got {capacity_bytes}; {what} {path!r} as a file of "
            f"{file_bytes} bytes failed ({e.strerror}); expected a capacity the filesystem and process limits allow"
        )
    return ConfigError(f"{_where(tier_name, path)}: {what} it failed ({e.strerror}); expected a writable directory "
                       f"on a filesystem with room for the file's header")


def _lock(tier_name: str, path: str, fd: int) -> None:
    try:
        # One store per file: a second writer would reuse slots the first believes its own.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise ConfigError(
            f"{_where(tier_name, path)} is already open by another store; expected a directory no other "
            f"open store uses (close the other store first)"
        ) from None


def _check_regular(tier_name: str, path: str, fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        kind = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
                stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "not a regular file")
        raise ConfigError(f"{_where(tier_name, path)} is {kind}; expected a regular file (or no file: one is created)")


def _create(tier_name: str, directory: str, path: str, io: FileIO, init_new: Callable[[int], None],
            capacity_bytes: int, file_bytes: int) -> int | None:
    """Build a new file under a temporary name and link it to ``path``; its locked fd, or
    ``None`` when another process created ``path`` first. On failure nothing is left behind."""
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(4)}.new")
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise _os_error(tier_name, path, "creating", e, capacity_bytes, file_bytes) from None
    linked = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh inode: nobody else can hold it
        try:
            init_new(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return None
            except OSError as e:
                if e.errno not in _LINK_UNSUPPORTED:
                    raise
                os.rename(tmp, path)  # no hard links here: last writer wins a creation race
            linked = True
            fsync_directory(directory)  # the new name is durable too
        except OSError as e:
            raise _os_error(tier_name, path, "creating", e, capacity_bytes, file_bytes) from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if not linked:
            os.close(fd)
    return fd


def open_flash_file(tier_name: str, directory, file_name: str, io: FileIO, init_new: Callable[[int], None], *,
                    capacity_bytes: int, file_bytes: int) -> tuple[FlashFile, bool]:
    """Open ``directory/file_name`` for reading and writing, locked (``flock``) for this store;
    create it (``init_new(fd)`` writes its headers) when it does not exist. Returns the file
    and whether it was created. Raises ``ConfigError`` naming the field and value for
    anything that stops it: an unusable path, a file that is not a regular file, a file
    already open by another store, no room for the header, a file-size limit."""
    directory = os.fspath(directory)
    path = os.path.join(directory, file_name)
    if "\0" in path:
        raise ConfigError(f"TierSpec.path of tier {tier_name!r}: got {directory!r}, expected a path without NUL characters")
    check_size_limit(tier_name, capacity_bytes, file_bytes)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"{_where(tier_name, path)}: cannot create directory {directory!r} ({e.strerror}); expected a writable directory"
        ) from None
    for _attempt in range(8):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if os.path.lexists(path):
                raise ConfigError(
                    f"{_where(tier_name, path)} is a symbolic link to a missing file; expected a regular file (or no file)"
                ) from None
            fd = _create(tier_name, directory, path, io, init_new, capacity_bytes, file_bytes)
            if fd is None:
                continue  # another process created it between our open and our link: open theirs
            return FlashFile(fd, path, io), True
        except OSError as e:
            raise ConfigError(
                f"{_where(tier_name, path)}: cannot open it for reading and writing ({e.strerror}); "
                f"expected a writable directory"
            ) from None
        try:
            _check_regular(tier_name, path, fd)
            _lock(tier_name, path, fd)
        except BaseException:
            os.close(fd)
            raise
        return FlashFile(fd, path, io), False
    raise ConfigError(f"{_where(tier_name, path)}: the file kept appearing and vanishing while it was opened; "
                      f"expected a directory no other program rewrites")
