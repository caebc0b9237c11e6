"""Cohort runner: one failing patient is reported and skipped, the others make the table; re-runs resume."""

from __future__ import annotations

import json

import pandas as pd

from LuDoseResponseLib.pipeline.cohort_run import run_cohort
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient


def test_failing_patient_reported_and_skipped(tmp_path):
    good = [write_patient(make_patient(f"P{i}", seed=20 + i, n_tumours=2, scan_hours=(24.0, 96.0, 168.0)),
                          tmp_path / f"P{i}") for i in range(2)]
    bad = tmp_path / "bad" / "manifest.toml"
    bad.parent.mkdir()
    bad.write_text(good[0].read_text().replace('patient = "P0"', 'patient = "PX"').replace('"c1/', '"missing/'))
    cohort_csv, failures = run_cohort([good[0], bad, good[1]], tmp_path / "out")
    assert list(failures) == [str(bad)] and "does not exist" in failures[str(bad)]
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == failures
    df = pd.read_csv(cohort_csv)
    assert sorted(df["patient"].unique()) == ["P0", "P1"] and len(df) == 4
    stamp = (tmp_path / "out" / "000_P0" / "run.json").stat().st_mtime_ns
    run_cohort([good[0], good[1]], tmp_path / "out")          # resume: P0 up to date, not recomputed
    assert (tmp_path / "out" / "000_P0" / "run.json").stat().st_mtime_ns == stamp
