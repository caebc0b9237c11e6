"""Atomic output: all-or-nothing replacement, ordinary permissions, inputs never overwritten."""

from __future__ import annotations

import os
import stat

import pytest

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import atomic_path, refuse_to_overwrite_input, write_text_atomic

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_new_file_gets_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as f:  # the independent truth: what the umask gives an ordinary file
        f.write("x")
    out = write_text_atomic(tmp_path / "out" / "report.txt", "hello")
    assert out.read_text() == "hello"
    assert _mode(out) == _mode(plain)


@posix_only
def test_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "dose.nrrd"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nrrd")  # writers pick the format by suffix
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["dose.nrrd"]


def test_refuse_to_overwrite_input_sees_through_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cohort.csv").write_text("a")
    with pytest.raises(InputError, match="would overwrite the input"):
        refuse_to_overwrite_input("in/../in/cohort.csv", [tmp_path / "in" / "cohort.csv"])
    refuse_to_overwrite_input("out/cohort.csv", [tmp_path / "in" / "cohort.csv"])


@pytest.mark.parametrize("code", ["EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "ENAMETOOLONG"])
def test_environment_oserrors_become_user_errors_naming_the_path(code):
    import errno

    from LuDoseResponseLib.files import user_environment_error

    if not hasattr(errno, code):
        pytest.skip(f"{code} does not exist on this platform")
    number = getattr(errno, code)
    error = user_environment_error(OSError(number, os.strerror(number)), "/data/out")
    assert isinstance(error, InputError)
    assert str(error).startswith(f"cannot write /data/out: {os.strerror(number)}; ")


@pytest.mark.parametrize("code", ["ENOENT", "EIO", "EBADF", "EINVAL"])
def test_other_oserrors_stay_faults_of_the_program(code):
    import errno

    from LuDoseResponseLib.files import user_environment_error

    assert user_environment_error(OSError(getattr(errno, code), "x"), "/data/out") is None
