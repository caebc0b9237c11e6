"""The exit-code rule: a user mistake is exit 2 with one error line on stderr and nothing changed on
disk; exit 3 only for a fault of the program. Inputs are never overwritten by any output.

Each case states the mistake; the truth is the byte content of the folders before the command.
"""

from __future__ import annotations

import json
import shutil

import pytest

from LuDoseResponseLib.cli import COMMANDS
from LuDoseResponseLib.cli import main as cli_main
from LuDoseResponseLib.response.synthetic_cohort import generate_cohort


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A complete demo run (no bootstrap, to stay fast)."""
    out = tmp_path_factory.mktemp("run") / "demo"
    assert cli_main(["-q", "demo", "--out", str(out), "--bootstrap", "0"]) == 0
    return out


@pytest.fixture
def cohort_csv(tmp_path):
    path = tmp_path / "input" / "cohort.csv"
    path.parent.mkdir()
    generate_cohort(seed=4).to_csv(path, index=False)
    return path


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_lines(err: str) -> list[str]:
    """stderr without log records (INFO:/WARNING: lines from the logging channel)."""
    return [line for line in err.splitlines() if not line.startswith(("INFO:", "WARNING:", "DEBUG:"))]


def _assert_user_error(capsys, argv: list[str], match: str) -> None:
    rc = cli_main(argv)
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert rc == 2, err
    command = next(a for a in argv if not a.startswith("-"))
    assert len(lines) == 1 and lines[0].startswith(f"ludoseresponse {command}: error: "), err
    assert match in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(("option", "value", "match"), [
    ("--seed", "-1", "--seed must be >= 0, got -1"),
    ("--bootstrap", "-5", "--bootstrap must be >= 0"),
    ("--doses", "76,nan", "--doses: 'nan' is not a number"),
    ("--doses", "1e999", "--doses: '1e999' is too large"),
    ("--doses", "", "--doses: give at least one number"),
    ("--tcp-targets", "\u0660.\u0665", "--tcp-targets: '\u0660.\u0665' is not a number"),  # Arabic-Indic 0.5
    ("--tcp-targets", "\uff10.5", "is not a number"),  # full-width zero
    ("--responder-threshold", "inf", "--responder-threshold: 'inf' is not a number"),
    ("--min-baseline-volume", "1_000", "--min-baseline-volume: '1_000' is not a number"),
])
def test_bad_option_values_are_user_errors_before_any_work(capsys, tmp_path, cohort_csv, option, value, match):
    out = tmp_path / "out"
    _assert_user_error(capsys, ["-q", "analyze", str(cohort_csv), "--out", str(out), option, value], match)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input"]


def test_demo_cohort_seed_must_not_be_negative(capsys, tmp_path):
    _assert_user_error(capsys, ["-q", "demo", "--out", str(tmp_path / "out"), "--cohort-seed", "-1"],
                       "--cohort-seed must be >= 0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_out_that_is_or_lies_below_a_file(capsys, tmp_path, cohort_csv, where):
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("user file")
    out = blocker if where == "a file" else blocker / "sub" / "out"
    _assert_user_error(capsys, ["-q", "analyze", str(cohort_csv), "--out", str(out)], "is a file")
    assert blocker.read_text() == "user file"


def test_analyze_never_overwrites_its_input_with_a_figure(capsys, tmp_path, run_dir):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    before = _tree(folder)
    _assert_user_error(capsys, ["-q", "analyze", str(folder / "fig_tcp.svg"), "--out", str(folder)],
                       "would overwrite or delete the input")
    assert _tree(folder) == before


def test_demo_never_replaces_a_users_cohort_csv(capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "cohort.csv").write_text("patient,tumor\nP1,T1\n")
    _assert_user_error(capsys, ["-q", "demo", "--out", str(folder)], "cohort.csv (no ludoseresponse-run.json lists it)")
    assert _tree(folder) == {"cohort.csv": b"patient,tumor\nP1,T1\n"}


def test_no_command_and_unknown_option_are_one_line(capsys):
    assert cli_main([]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"ludoseresponse: error: choose a command: {', '.join(COMMANDS)} (see ludoseresponse --help)"]
    with pytest.raises(SystemExit) as stop:
        cli_main(["analyze", "x.csv", "--out", "o", "--no-such-option"])
    assert stop.value.code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "unrecognized arguments: --no-such-option" in lines[0]


def _corrupt_json(text: str) -> str:
    analysis = json.loads(text)
    analysis["tcp"]["curves"]["G1"]["dose_gy"] = ["not", "numbers"]
    return json.dumps(analysis)


def _corrupt_dose(text: str) -> str:
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(text))
    table["dose_gy"] = table["dose_gy"].astype(object)
    table.loc[2, "dose_gy"] = "lots"
    return table.to_csv(index=False)


@pytest.mark.parametrize(("name", "corrupt", "match"), [
    ("analysis.json", lambda t: t[: len(t) // 2], "is not valid JSON"),
    ("analysis.json", lambda t: "[1, 2]", "holds a JSON list, not an analysis"),
    ("analysis.json", lambda t: t.replace("ludoseresponse.analysis/1", "other/9"), "has schema 'other/9'"),
    ("analysis.json", _corrupt_json, "changed since the analysis wrote them and cannot be drawn"),
    ("tumours.csv", lambda t: b"\x00\xff garbage", "cannot be read as a CSV table"),
    ("tumours.csv", lambda t: t.replace("dose_gy", "dose", 1), "lacks the column(s) dose_gy"),
    ("tumours.csv", _corrupt_dose, "column 'dose_gy', row 3: 'lots' is not a number"),
])
def test_report_on_broken_outputs_is_a_user_error(capsys, tmp_path, run_dir, name, corrupt, match):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    corrupted = corrupt((folder / name).read_text())
    (folder / name).write_bytes(corrupted if isinstance(corrupted, bytes) else corrupted.encode())
    before = _tree(folder)
    _assert_user_error(capsys, ["-q", "report", str(folder)], match)
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_report_failing_on_its_own_unchanged_outputs_is_an_internal_error(capsys, tmp_path, run_dir, monkeypatch):
    import LuDoseResponseLib.analysis.report as report

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    before = _tree(folder)

    def broken(*args, **kwargs):
        raise KeyError("a bug in the figure code")

    monkeypatch.setattr(report, "write_figures", broken)
    assert cli_main(["-q", "report", str(folder)]) == 3
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("ludoseresponse report: internal error: KeyError")
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_internal_error_keeps_the_previous_run(capsys, tmp_path, run_dir, monkeypatch):
    import LuDoseResponseLib.analysis.outputs as outputs

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    before = _tree(folder)

    def broken(cohort, settings):
        raise ZeroDivisionError("a bug in the analysis")

    monkeypatch.setattr(outputs, "analyze_cohort", broken)
    assert cli_main(["-q", "demo", "--out", str(folder), "--bootstrap", "0"]) == 3
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "internal error: ZeroDivisionError: a bug in the analysis" in lines[0]
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_rerun_into_the_same_folder_replaces_the_run(tmp_path, run_dir):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    assert cli_main(["-q", "demo", "--out", str(folder), "--bootstrap", "0", "--cohort-seed", "21"]) == 0
    assert (folder / "cohort.csv").read_text() == generate_cohort(seed=21).to_csv(index=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_table_with_several_problems_is_still_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,tumor,grade,dose_gy,activity_gbq,baseline_volume_cm3,dv\n"
                   "P1,T1,G1,abc,7,5,0.5\nP2,T2,G2,100,7,5,x\n")
    argv = ["-q", "analyze", str(bad), "--out", str(tmp_path / "out")]
    _assert_user_error(capsys, argv, "row 1 (line 2), column 'dose_gy': 'abc' is not a number")
    assert cli_main(argv) == 2
    line = _error_lines(capsys.readouterr().err)[0]
    assert "; row 2 (line 3), column 'dv': 'x' is not a number" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
