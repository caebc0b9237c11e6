"""Faults around a run: killed at random and at every step of publishing, disk full, read-only output
folder, concurrent runs. After each, the output folder holds the previous run or the new one —
each a complete set that agrees with its own ``ludoseresponse-run.json`` — never a mix, and a
later run leaves no temporary file.

Disk full and read-only use real small tmpfs mounts where the test may mount (root with
CAP_SYS_ADMIN, as in the project's container); elsewhere they fall back to permission bits or an
injected OSError, and the test's id says which ran.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from LuDoseResponseLib.cli import main as cli_main
from LuDoseResponseLib.output_set import RUN_MANIFEST, output_set
from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and mounts")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _complete_set(folder: Path) -> dict[str, bytes]:
    """The folder's files, after checking that they are exactly the set its manifest lists, unchanged."""
    return _check_set(_tree(folder), str(folder))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The files of the folder ``folder`` names at this instant (read through one directory handle, so a
    swap of the path meanwhile cannot mix two folders into one reading)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        files = {}
        for name in sorted(os.listdir(fd)):
            file_fd = os.open(name, os.O_RDONLY, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as f:
                files[name] = f.read()
        return files
    finally:
        os.close(fd)


def _check_set(files: dict[str, bytes], where: str) -> dict[str, bytes]:
    files = dict(files)
    manifest = json.loads(files.pop(RUN_MANIFEST))
    assert set(files) == set(manifest["files"]), f"{where}: files differ from the manifest (a mix)"
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == manifest["files"][name], f"{where}/{name}: from another run"
    return files


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".ludoseresponse-" in p.name)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _demo_cmd(out: Path, cohort_seed: int) -> list[str]:
    return [sys.executable, "-m", "LuDoseResponseLib", "-q", "demo", "--out", str(out), "--bootstrap", "0",
            "--cohort-seed", str(cohort_seed)]


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """A complete demo run with cohort seed 1: the 'previous run' of the fault tests."""
    out = tmp_path_factory.mktemp("old") / "run"
    assert cli_main(["-q", "demo", "--out", str(out), "--bootstrap", "0", "--cohort-seed", "1"]) == 0
    return out


# ------------------------------------------------------------------------------------------ kill

@posix_only
def test_killed_at_random_points_of_a_run(tmp_path, old_run):
    """SIGKILL at seeded random times during `demo` over a previous run: old or new set, never a mix."""
    rng = np.random.default_rng(20261202)
    old = _tree(old_run)
    new_cohort = generate_cohort(seed=2).to_csv(index=False).encode()
    seen = set()
    for trial, delay_s in enumerate(rng.uniform(0.2, 3.5, size=4)):
        parent = tmp_path / f"trial{trial}"
        out = parent / "run"
        shutil.copytree(old_run, out)
        proc = subprocess.Popen(_demo_cmd(out, 2), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        files = _complete_set(out)
        if _tree(out) == old:
            seen.add("old")
        else:
            assert files["cohort.csv"] == new_cohort
            seen.add("new")
        with output_set(out, command="test") as run:  # a later run cleans up after the killed one
            (run.stage / "later.txt").write_text("later")
        assert _leftovers(parent) == [] and sorted(p.name for p in parent.iterdir()) == ["run"]
    assert seen, "no trial ran"


_KILL_AT_STEP = r"""
import os, shutil, signal, sys
from LuDoseResponseLib import output_set as m

out, kill_at, exchange, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
count = [0]

def step():
    count[0] += 1
    if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def killing(fn):
    def wrapper(*args, **kwargs):
        step()
        result = fn(*args, **kwargs)
        step()
        return result
    return wrapper

m._exchange = killing(m._exchange if exchange else (lambda a, b: False))
m._fsync = killing(m._fsync)
m.sha256_of = killing(m.sha256_of)
os.rename = killing(os.rename)
os.chmod = killing(os.chmod)
os.unlink = killing(os.unlink)
shutil.rmtree = killing(shutil.rmtree)
with m.output_set(out, command="test") as run:
    for i in range(4):
        (run.stage / f"f{i}.txt").write_text(tag)
print("finished")
"""


@posix_only
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_killed_at_every_step_of_publishing(tmp_path, exchange):
    """SIGKILL before and after each file-system step of staging and publishing (deterministic)."""
    outcomes = []
    for kill_at in range(1, 200):
        parent = tmp_path / f"k{kill_at}"
        out = parent / "run"
        with output_set(out, command="test") as run:
            for i in range(3):
                (run.stage / f"f{i}.txt").write_text("old")
        proc = subprocess.run([sys.executable, "-c", _KILL_AT_STEP, str(out), str(kill_at), str(int(exchange)), "new"],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        if out.exists():
            files = _complete_set(out)
            tags = set(files.values())
            assert tags in ({b"old"}, {b"new"}) and len(files) == (3 if tags == {b"old"} else 4)
            outcomes.append(tags.pop().decode())
        else:
            assert not exchange, "with an atomic exchange the output folder never disappears"
            outcomes.append("nothing")
        with output_set(out, command="test") as run:  # a later run cleans up after the killed one
            (run.stage / "later.txt").write_text("later")
        assert _leftovers(parent) == [] and _tree(out).keys() == {"later.txt", RUN_MANIFEST}
        if proc.returncode == 0:
            break
    assert proc.returncode == 0 and "finished" in proc.stdout, "the run was never allowed to finish"
    assert "old" in outcomes and "new" in outcomes  # kills landed both before and after the swap


# ------------------------------------------------------------------------------ disk full, read-only

def _can_mount() -> bool:
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("mount") is not None


class _Tmpfs:
    def __init__(self, root: Path):
        self.root, self.mounted = root, []

    def mount(self, name: str, size: str, *options: str) -> Path | None:
        point = self.root / name
        point.mkdir()
        opts = ",".join((f"size={size}", *options))
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True).returncode:
            return None
        self.mounted.append(point)
        return point

    def remount_read_only(self, point: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, capture_output=True)

    def unmount_all(self) -> None:
        for point in reversed(self.mounted):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts small tmpfs file systems (None where this process may not mount)."""
    if not _can_mount():
        yield None
        return
    mounts = _Tmpfs(tmp_path)
    try:
        yield mounts
    finally:
        mounts.unmount_all()


def _user_error(capsys, argv) -> str:
    rc = cli_main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("INFO:", "WARNING:"))]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_disk_full_on_a_real_small_file_system(tmpfs, capsys, old_run):
    """A 1.4 MB tmpfs holds the previous run (about 0.9 MB) but not a second one beside it."""
    fs = tmpfs.mount("full", "1400k") if tmpfs else None
    if fs is None:
        pytest.skip("cannot mount a tmpfs here; test_disk_full_injected covers ENOSPC")
    out = fs / "run"
    shutil.copytree(old_run, out)
    before = _tree(out)
    line = _user_error(capsys, ["-q", "demo", "--out", str(out), "--bootstrap", "0", "--cohort-seed", "2"])
    assert f"cannot write the outputs to {out}: No space left on device" in line
    assert _tree(out) == before
    assert sorted(p.name for p in fs.iterdir()) == ["run"]
    tiny = tmpfs.mount("tiny", "64k")
    line = _user_error(capsys, ["-q", "demo", "--out", str(tiny / "new"), "--bootstrap", "0"])
    assert "No space left on device" in line and list(tiny.iterdir()) == []


def test_disk_full_injected(capsys, tmp_path, old_run, monkeypatch):
    """ENOSPC raised by the figure writer (as a full disk raises it) over a previous run."""
    import matplotlib.figure

    def full(self, fname, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    out = tmp_path / "run"
    shutil.copytree(old_run, out)
    before = _tree(out)
    line = _user_error(capsys, ["-q", "demo", "--out", str(out), "--bootstrap", "0", "--cohort-seed", "2"])
    assert f"cannot write the outputs to {out}: No space left on device" in line
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_read_only_output_folder(tmpfs, capsys, tmp_path, old_run):
    if tmpfs is not None and (fs := tmpfs.mount("ro", "2m")) is not None:
        kind = "read-only tmpfs"
        shutil.copytree(old_run, fs / "run")
        tmpfs.remount_read_only(fs)
        parent, cases = fs, [fs / "run", fs / "new"]
    elif os.name == "posix" and os.geteuid() != 0:
        kind = "folder without write permission"
        parent = tmp_path / "locked"
        shutil.copytree(old_run, parent / "run")
        os.chmod(parent / "run", 0o555)
        os.chmod(parent, 0o555)
        cases = [parent / "run", parent / "new"]
    else:
        pytest.skip("root without mount: permission bits do not bind; test_read_only_injected covers EROFS")
    before = _tree(parent / "run")
    try:
        for out in cases:
            line = _user_error(capsys, ["-q", "demo", "--out", str(out), "--bootstrap", "0"])
            assert "cannot be written" in line and "read-only" in line, (kind, line)
        assert _tree(parent / "run") == before
        assert sorted(p.name for p in parent.iterdir()) == ["run"]
    finally:
        if kind.startswith("folder"):
            os.chmod(parent, 0o755)
            os.chmod(parent / "run", 0o755)


def test_read_only_injected(capsys, tmp_path, monkeypatch):
    """EROFS from creating the staging folder (what a read-only file system answers)."""
    import LuDoseResponseLib.output_set as output_set

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(output_set.tempfile, "mkdtemp", read_only)
    line = _user_error(capsys, ["-q", "demo", "--out", str(tmp_path / "run"), "--bootstrap", "0"])
    assert f"cannot write the outputs to {tmp_path / 'run'}: Read-only file system" in line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- concurrency

@posix_only
def test_two_concurrent_cli_runs_leave_one_complete_run(tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(_demo_cmd(out, seed), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for seed in (5, 6)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("Traceback" in e for e in errors)
    files = _complete_set(out)
    assert files["cohort.csv"] in {generate_cohort(seed=s).to_csv(index=False).encode() for s in (5, 6)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


_PUBLISH_MANY = r"""
import sys
from LuDoseResponseLib.output_set import output_set

out, tag = sys.argv[1], sys.argv[2]
for i in range(30):
    with output_set(out, command="test") as run:
        for k in range(4):
            (run.stage / f"f{k}.txt").write_text(f"{tag}-{i}")
"""


@posix_only
def test_many_concurrent_publishers_never_mix_sets(tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISH_MANY, str(out), f"p{n}"], cwd=ROOT, env=_env(),
                              stderr=subprocess.PIPE) for n in range(4)]
    snapshots = []
    while any(p.poll() is None for p in procs):  # look at the folder while they publish
        try:
            snapshots.append(_check_set(_snapshot(out), str(out)))
        except FileNotFoundError:  # not yet published, or a replaced set being deleted under the reader
            pass
        time.sleep(0.01)
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    snapshots.append(_complete_set(out))
    for files in snapshots:
        assert len(set(files.values())) == 1 and len(files) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
