"""Exclusive advisory locks on lock files, released by the operating system when a process dies.

POSIX uses ``fcntl.flock``, Windows ``msvcrt.locking``. A lock held by a process that was killed
(SIGKILL, power cut of the process) is released with its file descriptors, so no stale lock can
block a later run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

#: how often a blocking lock on Windows retries (msvcrt has no wait-forever lock)
_WINDOWS_RETRY_S = 0.05


def try_lock(fd: int, *, blocking: bool) -> bool:
    """Lock the open file ``fd`` exclusively; without ``blocking`` return False if another holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            if not blocking:
                return False
            time.sleep(_WINDOWS_RETRY_S)


def unlock(fd: int) -> None:
    """Release a lock taken with :func:`try_lock` (closing ``fd`` releases it too)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def is_locked_by_another(path: Path) -> bool:
    """True if another process holds the lock on the file ``path`` (False if it does not exist; True
    if it cannot be opened, e.g. another user's, since then no one here can tell)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True
    try:
        if try_lock(fd, blocking=False):
            unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` for the ``with`` block; on POSIX the file
    is removed again on release (waiters notice and retry on the new file), so none is left behind.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try_lock(fd, blocking=True)
        if fcntl is None:
            break
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file we waited on: lock the current one
    try:
        yield
    finally:
        if fcntl is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)
