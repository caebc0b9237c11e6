"""`ludoseresponse cohort` outcomes and exit codes (cli.py): 0 every patient done; 4 a partial cohort (the run
completed and was analysed without the failed patients, each named on stderr and in failures.json); 2 a
user error before any work, or every patient failed. The truth is the set of patients given."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from LuDoseResponseLib.cli import EXIT_PARTIAL
from LuDoseResponseLib.cli import main as cli_main
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient

TINY = {"n_tumours": 2, "n_cycles": 2, "shape_zyx": (24, 40, 64), "scan_hours": (24.0, 96.0, 168.0),
        "volume_range_ml": (2.0, 60.0), "grade": "G2"}
SEEDS = (89, 91, 98)        # each patient has a responder and a non-responder, so the cohort can be analysed


def _error_lines(err: str) -> list[str]:
    """The command's own stderr lines (not log records or Python warnings shown by the test runner)."""
    return [line for line in err.splitlines() if line.startswith(("skipped ", "ludoseresponse "))]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    good = [write_patient(make_patient(f"P{i}", seed=seed, **TINY), root / f"P{i}") for i, seed in enumerate(SEEDS)]
    bad = root / "bad" / "manifest.toml"
    bad.parent.mkdir()
    bad.write_text(good[0].read_text().replace('patient = "P0"', 'patient = "PX"').replace('"c1/', '"missing/'))
    return good, bad


def test_partial_cohort_is_exit_4_with_every_skipped_patient_named(capsys, tmp_path, manifests):
    good, bad = manifests
    out = tmp_path / "out"
    rc = cli_main(["-q", "cohort", str(good[0]), str(bad), *map(str, good[1:]), "--out", str(out), "--bootstrap", "0"])
    captured = capsys.readouterr()
    assert rc == EXIT_PARTIAL == 4, captured.err
    lines = _error_lines(captured.err)
    assert lines[0].startswith(f"skipped {bad}: ") and "does not exist" in lines[0]
    assert lines[1] == ("ludoseresponse cohort: 1 of 4 patients failed and were skipped "
                        f"(see {out / 'failures.json'}); the analysis used the other 3")
    assert list(json.loads((out / "failures.json").read_text())) == [str(bad)]
    assert sorted(pd.read_csv(out / "cohort.csv")["patient"].unique()) == ["P0", "P1", "P2"]
    assert (out / "analysis" / "analysis.json").is_file()
    rc = cli_main(["-q", "cohort", *map(str, good), "--out", str(out), "--bootstrap", "0"])   # resumed, complete
    assert rc == 0 and json.loads((out / "failures.json").read_text()) == {}


def test_every_patient_failing_is_a_user_error(capsys, tmp_path, manifests):
    _, bad = manifests
    assert cli_main(["-q", "cohort", str(bad), "--out", str(tmp_path / "out")]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert lines[-1].startswith("ludoseresponse cohort: error: cohort: every patient failed (1)")


@pytest.mark.parametrize(("extra", "match"), [
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--scheduler", "tcp://127.0.0.1:1", "--jobs", "2"], "give one of them"),
    (["--doses", "x"], "--doses: 'x' is not a number"),
])
def test_bad_options_are_user_errors_before_any_patient(capsys, tmp_path, manifests, extra, match):
    good, _ = manifests
    out = tmp_path / "out"
    assert cli_main(["-q", "cohort", str(good[0]), "--out", str(out), *extra]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and match in lines[0]
    assert not out.exists()


def test_scheduler_without_dask_names_the_install(capsys, tmp_path, manifests, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else
                        find_spec(name, *a))
    good, _ = manifests
    assert cli_main(["-q", "cohort", str(good[0]), "--out", str(tmp_path / "out"), "--scheduler", "tcp://h:1"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "pip install" in lines[0] and "[cluster]" in lines[0]


def test_unreachable_scheduler_is_a_user_error(capsys, tmp_path, manifests, monkeypatch):
    import LuDoseResponseLib.pipeline.cohort_dask as cohort_dask

    monkeypatch.setattr(cohort_dask, "CONNECT_TIMEOUT_S", 1.0)
    good, _ = manifests
    assert cli_main(["-q", "cohort", str(good[0]), "--out", str(tmp_path / "out"), "--scheduler",
                     "tcp://127.0.0.1:9"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'" in lines[0]
