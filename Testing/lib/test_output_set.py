"""Whole-run outputs (LuDoseResponseLib.output_set): a set is published as a whole, never over a
user's file or an input, and leaves nothing behind.

The truth is the file system itself: file names and bytes written by the test, the permission bits
``os.mkdir`` gives a plain folder, and the lock state seen by a second open file description.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from LuDoseResponseLib import output_set as output_set_module
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.output_set import RUN_MANIFEST, output_set

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits and locks")


def _publish(out, files: dict[str, str], **kwargs):
    with output_set(out, command="test", **kwargs) as run:
        for name, text in files.items():
            (run.stage / name).write_text(text)
    return run


def _listing(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(parent, out_name="out") -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{out_name}."))


def test_new_folder_holds_the_set_and_its_manifest(tmp_path):
    run = _publish(tmp_path / "out", {"a.txt": "A", "b.csv": "B"})
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.txt", "b.csv", RUN_MANIFEST])
    manifest = json.loads((out / RUN_MANIFEST).read_text())
    assert manifest["files"] == {"a.txt": hashlib.sha256(b"A").hexdigest(), "b.csv": hashlib.sha256(b"B").hexdigest()}
    assert run.files == {"a.txt": out / "a.txt", "b.csv": out / "b.csv"}
    assert _leftovers(tmp_path) == []


@posix_only
def test_published_folder_has_the_permissions_of_a_plain_folder(tmp_path):
    plain = tmp_path / "plain"
    os.mkdir(plain)  # the independent truth: what the umask gives an ordinary folder
    _publish(tmp_path / "out", {"a.txt": "A"})
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    existing = tmp_path / "kept"
    existing.mkdir()
    os.chmod(existing, 0o750)
    _publish(existing, {"a.txt": "A"})
    assert stat.S_IMODE(existing.stat().st_mode) == 0o750


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_rerun_replaces_the_whole_set(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(output_set_module, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    _publish(out, {"a.txt": "old", "only_old.txt": "x"})
    _publish(out, {"a.txt": "new", "only_new.txt": "y"})
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.txt", "only_new.txt", RUN_MANIFEST])
    assert (out / "a.txt").read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_a_failed_run_leaves_the_old_set_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"a.txt": "old"})
    before = _listing(out)
    with pytest.raises(RuntimeError, match="analysis failed"), output_set(out, command="test") as run:
        (run.stage / "a.txt").write_text("half")
        raise RuntimeError("analysis failed")
    assert _listing(out) == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("intruder", ["file", "folder", "edited", "no-manifest"])
def test_a_folder_with_user_files_is_refused_before_any_work(tmp_path, intruder):
    out = tmp_path / "out"
    if intruder == "no-manifest":
        out.mkdir()
        (out / "analysis.json").write_text("mine")
    else:
        _publish(out, {"a.txt": "run"})
        if intruder == "file":
            (out / "notes.txt").write_text("mine")
        elif intruder == "folder":
            (out / "data").mkdir()
        else:
            (out / "a.txt").write_text("edited by the user")
    before = _listing(out) if intruder != "folder" else None
    started = []
    with pytest.raises(InputError, match="not the unchanged outputs of an earlier run"), \
            output_set(out, command="test"):
        started.append(True)
    assert started == []
    if before is not None:
        assert _listing(out) == before
    assert _leftovers(tmp_path) == []


def test_user_file_added_during_the_run_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"a.txt": "old"})
    with pytest.raises(InputError, match="notes.txt"), output_set(out, command="test") as run:
        (run.stage / "a.txt").write_text("new")
        (out / "notes.txt").write_text("written by the user while the run worked")
    assert (out / "notes.txt").read_text() == "written by the user while the run worked"
    assert (out / "a.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_inputs_inside_the_output_folder_are_refused(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"cohort.csv": "input"})
    with pytest.raises(InputError, match="would overwrite or delete the input"):
        _publish(out, {"a.txt": "x"}, inputs=[tmp_path / "out" / ".." / "out" / "cohort.csv"])
    assert (out / "cohort.csv").read_text() == "input"


@pytest.mark.parametrize("where", ["is-a-file", "below-a-file", "root"])
def test_impossible_output_paths_are_refused(tmp_path, where):
    (tmp_path / "f").write_text("user file")
    out = {"is-a-file": tmp_path / "f", "below-a-file": tmp_path / "f" / "x" / "out", "root": "/"}[where]
    with pytest.raises(InputError, match="is a file|root of the file system"):
        _publish(out, {"a.txt": "x"})
    assert (tmp_path / "f").read_text() == "user file"


@posix_only
def test_symlinked_output_folder_is_published_at_its_target(tmp_path):
    target = tmp_path / "target"
    _publish(target, {"a.txt": "old"})
    (tmp_path / "link").symlink_to(target)
    _publish(tmp_path / "link", {"a.txt": "new"})
    assert (tmp_path / "link").is_symlink() and (target / "a.txt").read_text() == "new"


def test_carried_files_are_kept_even_if_edited(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"analysis.json": "run", "fig.svg": "old figure"})
    (out / "analysis.json").write_text("edited")
    with output_set(out, command="report", carry=["analysis.json"]) as run:
        assert (run.stage / "analysis.json").read_text() == "edited"
        (run.stage / "fig.svg").write_text("new figure")
    listing = _listing(out)
    assert sorted(listing) == sorted(["analysis.json", "fig.svg", RUN_MANIFEST])
    assert listing["analysis.json"] == b"edited" and listing["fig.svg"] == b"new figure"


@posix_only
def test_stale_stages_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.ludoseresponse-stage-dead"
    stale.mkdir()
    (stale / ".stage-lock").write_text("")
    (stale / "analysis.json").write_text("from a killed run")
    unlocked = tmp_path / ".out.ludoseresponse-stage-old"  # a previous run left after a swap (no lock file)
    unlocked.mkdir()
    live = tmp_path / ".out.ludoseresponse-stage-live"
    live.mkdir()
    from LuDoseResponseLib.locks import try_lock

    fd = os.open(live / ".stage-lock", os.O_RDWR | os.O_CREAT)
    try:
        assert try_lock(fd, blocking=False)  # held by "another run" (another open file description)
        _publish(out, {"a.txt": "x"})
        assert _leftovers(tmp_path) == [live.name]
    finally:
        os.close(fd)
    _publish(out, {"a.txt": "y"})
    assert _leftovers(tmp_path) == []


def test_environment_errors_name_the_final_path(tmp_path, monkeypatch):
    import errno

    out = tmp_path / "out"
    _publish(out, {"a.txt": "old"})
    full = r"cannot write the outputs to .*out: No space left on device; the disk is full"
    with pytest.raises(InputError, match=full), output_set(out, command="test") as run:
        raise OSError(errno.ENOSPC, "No space left on device", str(run.stage / "b.txt"))
    assert (out / "a.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []
    with pytest.raises(OSError) as info, output_set(out, command="test"):
        raise FileNotFoundError(errno.ENOENT, "gone", "x")  # not the user's environment: not translated
    assert not isinstance(info.value, InputError)


def test_environment_errors_of_other_files_name_those_files(tmp_path):
    import errno

    unreadable = tmp_path / "input" / "cohort.csv"
    with pytest.raises(InputError, match=r"cannot use .*input.cohort\.csv: Permission denied"), \
            output_set(tmp_path / "out", command="test"):
        raise PermissionError(errno.EACCES, "Permission denied", str(unreadable))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.ismount("/proc"), reason="needs a mount point to aim at")
def test_a_mount_point_is_refused():
    with pytest.raises(InputError, match="is a mount point"):
        _publish("/proc", {"a.txt": "x"})
