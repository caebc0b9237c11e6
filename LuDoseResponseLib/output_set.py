"""Whole-run outputs: a run is written into a hidden folder beside its output folder and published
as a set, so the output folder holds the previous run or the new one, never a mix.

The rule (stated in the README):

- The output folder may be new, empty, or the folder of an earlier run: it then holds only files
  listed in its ``ludoseresponse-run.json`` (the list of files the run wrote, with their SHA-256),
  unchanged since. Anything else in it (a file the run did not write, a sub-folder, an output
  edited since) is the user's: the run is refused before any work, and nothing is deleted.
- No input may lie inside the output folder, since publishing replaces the folder as a whole.
- Publishing swaps the staged folder with the output folder in one rename (Linux
  ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, between which the folder briefly does
  not exist) and then deletes the previous run. A run that fails leaves the output folder as it
  was and deletes its staging folder; one that is killed leaves a staging folder that the next
  run into the same output folder deletes.
- Concurrent runs into one output folder each stage their own set; publishing is serialised by a
  lock file beside the folder (removed on release), so the last to finish wins, with a complete set.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import replacement_mode, user_environment_error
from LuDoseResponseLib.locks import exclusive_lock, is_locked_by_another, try_lock

log = logging.getLogger(__name__)

RUN_MANIFEST = "ludoseresponse-run.json"
MANIFEST_SCHEMA = "ludoseresponse.run/1"
#: the lock file inside a staging folder that marks it as in use by a live process
_STAGE_LOCK = ".stage-lock"
#: the entries of a foreign folder named in a refusal
_SHOWN_ENTRIES = 5


def _stage_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.ludoseresponse-stage-"


def _lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.ludoseresponse-lock"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_run_manifest(out_dir: Path) -> dict[str, str] | None:
    """Names -> SHA-256 of the files the run in ``out_dir`` wrote, or None if it has no valid manifest."""
    try:
        manifest = json.loads((out_dir / RUN_MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("schema") == MANIFEST_SCHEMA and all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            return dict(files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def foreign_entries(out_dir: Path, *, carried: Iterable[str] = ()) -> list[str]:
    """Entries of ``out_dir`` that a new run may not replace, with the reason: files no run wrote,
    sub-folders, and outputs changed since their run. ``carried`` outputs are kept, so may differ."""
    try:
        entries = sorted(os.listdir(out_dir))
    except FileNotFoundError:
        return []
    if not entries:
        return []
    written = read_run_manifest(out_dir)
    if written is None:
        return [f"{name} (no {RUN_MANIFEST} lists it)" for name in entries]
    carried = set(carried)
    foreign = []
    for name in entries:
        path = out_dir / name
        if name == RUN_MANIFEST:
            continue
        if name not in written or path.is_symlink() or not path.is_file():
            foreign.append(f"{name} (not written by the run)")
        elif name not in carried and sha256_of(path) != written[name]:
            foreign.append(f"{name} (changed since the run wrote it)")
    return foreign


def _refuse_foreign(out_dir: Path, foreign: list[str]) -> None:
    if foreign:
        shown = ", ".join(foreign[:_SHOWN_ENTRIES]) + (f" and {len(foreign) - _SHOWN_ENTRIES} more"
                                                        if len(foreign) > _SHOWN_ENTRIES else "")
        raise InputError(f"output folder {out_dir} holds files that are not the unchanged outputs of an earlier "
                         f"run: {shown}. A run replaces its output folder as a whole and never deletes your "
                         "files: choose a new or empty output folder, or move those files away")


def check_output_folder(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                        carried: Iterable[str] = ()) -> Path:
    """Check before any work that ``out_dir`` can receive a run; return its resolved path.

    Refuses (InputError): a path that is a file or lies below a file, a folder that is not writable,
    a folder holding files that are not an earlier run's (see the module docstring), and an input
    inside the folder.
    """
    out = Path(os.path.realpath(out_dir))
    if out.parent == out:
        raise InputError(f"output folder {out_dir} is the root of the file system; choose a sub-folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out_dir} exists and is a file; choose a folder")
    if os.path.ismount(out):
        raise InputError(f"output folder {out_dir} is a mount point, which cannot be replaced as a whole; "
                         "choose a sub-folder of it")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output folder {out_dir} cannot be created: {existing} is a file")
    for folder in {existing, out.parent} if out.exists() else {existing}:
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"output folder {out_dir} cannot be written: {folder} is not writable "
                             "(permissions or a read-only file system); choose a writable folder")
    for p in inputs:
        real = Path(os.path.realpath(p))
        if real == out or out in real.parents:
            raise InputError(f"the input {p} lies inside the output folder {out_dir}: a run replaces that folder "
                             "as a whole and would overwrite or delete the input; choose another output folder")
    foreign = foreign_entries(out, carried=carried)
    if foreign:  # a concurrent run may have swapped sets while we read: look again where none can
        with exclusive_lock(_lock_path(out)):
            foreign = foreign_entries(out, carried=carried)
    _refuse_foreign(out, foreign)
    return out


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` to disk, so that a published set survives a power cut (folders: POSIX only)."""
    if directory and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)  # Windows flushes only writable handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2); False where not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # this kernel or file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def remove_stale_stages(out_dir: Path) -> None:
    """Delete staging folders of ``out_dir`` left by killed runs (call while holding the folder's lock)."""
    prefix = _stage_prefix(out_dir)
    for entry in out_dir.parent.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink() \
                and not is_locked_by_another(entry / _STAGE_LOCK):
            log.info("removing %s, left by an interrupted run", entry)
            shutil.rmtree(entry, ignore_errors=True)


class OutputSet:
    """The staging folder of one run; see :func:`output_set`."""

    def __init__(self, out_dir: Path, stage: Path, stage_lock_fd: int):
        self.out_dir = out_dir
        self.stage = stage
        self._stage_lock_fd: int | None = stage_lock_fd
        self.files: dict[str, Path] = {}

    def release_stage_lock(self) -> None:
        if self._stage_lock_fd is not None:
            os.close(self._stage_lock_fd)
            self._stage_lock_fd = None

    def final_path(self, staged: str | os.PathLike) -> Path:
        """Where a file written into the stage will be once published."""
        return self.out_dir / Path(staged).relative_to(self.stage)

    def _write_manifest(self, command: str) -> None:
        names = sorted(p.name for p in self.stage.iterdir() if p.name != _STAGE_LOCK)
        for name in names:
            if not (self.stage / name).is_file():
                raise RuntimeError(f"output set {self.stage} holds {name}, which is not a file")
            _fsync(self.stage / name)
        manifest = {"schema": MANIFEST_SCHEMA, "command": command,
                    "files": {name: sha256_of(self.stage / name) for name in names}}
        (self.stage / RUN_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _fsync(self.stage / RUN_MANIFEST)
        self.files = {name: self.out_dir / name for name in names}

    def publish(self, command: str, carried: Iterable[str]) -> None:
        """Replace the output folder with the stage (hold the folder's lock)."""
        _refuse_foreign(self.out_dir, foreign_entries(self.out_dir, carried=carried))
        self._write_manifest(command)
        self.release_stage_lock()  # under the folder's lock no one can take the stage for stale meanwhile
        (self.stage / _STAGE_LOCK).unlink()
        _fsync(self.stage, directory=True)
        os.chmod(self.stage, replacement_mode(self.out_dir, 0o777))
        if not self.out_dir.exists():
            os.rename(self.stage, self.out_dir)
        elif _exchange(self.stage, self.out_dir):
            shutil.rmtree(self.stage, ignore_errors=True)  # now the previous run
        else:
            previous = Path(tempfile.mkdtemp(prefix=_stage_prefix(self.out_dir), dir=self.out_dir.parent))
            os.rename(self.out_dir, previous / "previous")
            os.rename(self.stage, self.out_dir)
            shutil.rmtree(previous, ignore_errors=True)
        _fsync(self.out_dir.parent, directory=True)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _environment_error(exc: OSError, out: Path, stage: Path | None) -> InputError | None:
    """The user error for an OSError of the environment: naming the output folder when it came from
    writing the run (the folder, its parents, the stage, the lock), else the file it came from (an
    input that cannot be read, say)."""
    if isinstance(exc.filename, str | os.PathLike):
        path = Path(os.path.realpath(exc.filename))
        ours = (_within(path, out) or _within(out, path) or (stage is not None and _within(path, stage))
                or path.name.startswith(f".{out.name}.ludoseresponse-"))
        if not ours:
            return user_environment_error(exc, exc.filename, "use")
    return user_environment_error(exc, out, "write the outputs to")


@contextlib.contextmanager
def output_set(out_dir: str | os.PathLike, *, command: str, inputs: Iterable[str | os.PathLike] = (),
               carry: Iterable[str] = ()) -> Iterator[OutputSet]:
    """Stage a run's outputs and publish them as a whole when the ``with`` block succeeds.

    Write every output into ``run.stage``; ``run.files`` holds the published paths afterwards.
    ``carry`` names files of the previous run in ``out_dir`` that the new set keeps (copied into the
    stage first, e.g. the analysis a re-drawn report is made from). All checks of
    :func:`check_output_folder` run first, before any work. An OSError from the environment (no
    space, no permission, read-only) becomes an InputError naming the output path; the output
    folder is then as before and the staging folder is deleted.
    """
    inputs, carry = list(inputs), list(carry)
    out = check_output_folder(out_dir, inputs, carry)
    stage, run = None, None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(_lock_path(out)):
            remove_stale_stages(out)
            stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(out), dir=out.parent))
            run = OutputSet(out, stage, os.open(stage / _STAGE_LOCK, os.O_RDWR | os.O_CREAT, 0o600))
            try_lock(run._stage_lock_fd, blocking=True)
            for name in carry:
                shutil.copy2(out / name, stage / name)
        yield run
        with exclusive_lock(_lock_path(out)):
            run.publish(command, carry)
        stage = None
    except OSError as exc:
        err = _environment_error(exc, out, stage)
        if err is None:
            raise
        raise err from exc
    finally:
        if run is not None:
            run.release_stage_lock()
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
