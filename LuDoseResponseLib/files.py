"""Atomic file output: write to a temporary name in the target folder, then rename.

A crash or an error mid-write never leaves a half-written result, and an existing file is
replaced only once the new one is complete (``os.replace`` is atomic on POSIX and Windows).
The result gets the permissions a plain ``open(path, "w")`` would give it (those of the file it
replaces, else 0666 less the umask), not the owner-only 0600 of a temporary file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from LuDoseResponseLib.errors import InputError


def replacement_mode(target: Path, new_mode: int = 0o666) -> int:
    """Permission bits for what replaces ``target``: its own if it exists, else ``new_mode`` less the umask
    (0o666 for a file, 0o777 for a folder, as ``open`` and ``mkdir`` give)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return new_mode & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Use it with writers that need a filename (SimpleITK, matplotlib, pydicom). The temporary
    name keeps the target's suffix, so writers that pick a format by extension still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    if target.name.endswith(".seg.nrrd"):
        suffix = ".seg.nrrd"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, replacement_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def csv_text(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """Rows as CSV text (RFC 4180, ``\n`` line ends) in ``columns`` order: a missing value, None or NaN is an
    empty cell, numbers are written in full (``repr``), as pandas writes them."""
    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return value

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return out.getvalue()


def record_columns(rows: Sequence[Mapping], leading: Sequence[str] = ()) -> list[str]:
    """``leading``, then every other key of ``rows`` in the order it first appears."""
    columns = list(leading)
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def refuse_to_overwrite_input(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> None:
    """Raise if ``output`` resolves to one of ``inputs`` (results never overwrite inputs)."""
    out = Path(output).resolve()
    for p in inputs:
        if Path(p).resolve() == out:
            raise InputError(f"output {output} would overwrite the input {p}; choose another output path")


#: OSErrors that come from the user's environment (permissions, a read-only or full file system,
#: a path through a file), by errno, with what to do about each
_ENVIRONMENT_ERRNOS = {
    errno.EACCES: "check its permissions or choose another folder",
    errno.EPERM: "check its permissions or choose another folder",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOSPC: "the disk is full: free some space or choose another folder",
    errno.ENOTDIR: "a part of the path is a file: choose another folder",
    errno.EISDIR: "a folder is in the way: choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
}
if hasattr(errno, "EDQUOT"):
    _ENVIRONMENT_ERRNOS[errno.EDQUOT] = "the disk quota is exhausted: free some space or choose another folder"


def user_environment_error(exc: OSError, path: str | os.PathLike, action: str = "write") -> InputError | None:
    """The InputError for an OSError caused by the user's environment while ``action`` ("write",
    "read", ...) ``path``, or None when ``exc`` is of another kind (a fault of the program)."""
    advice = _ENVIRONMENT_ERRNOS.get(exc.errno)
    if advice is None:
        return None
    return InputError(f"cannot {action} {path}: {exc.strerror or os.strerror(exc.errno)}; {advice}")
