"""Cohort runner: one failing patient is reported and skipped, the others make the table; re-runs resume
only from outputs that are complete, unchanged, and made from the same manifest, inputs, settings and
software version (anything else is recomputed; files that are not a run's outputs are never overwritten)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from LuDoseResponseLib.output_set import RUN_MANIFEST, sha256_of
from LuDoseResponseLib.pipeline.cohort_run import COMPUTED, FAILED, UP_TO_DATE, run_cohort
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient

TINY = {"n_tumours": 2, "n_cycles": 1, "shape_zyx": (32, 48, 64), "scan_hours": (24.0, 96.0, 168.0)}


def _patient(folder, name: str, seed: int):
    return write_patient(make_patient(name, seed=seed, **TINY), folder / name)


@pytest.fixture
def cohort(tmp_path):
    manifests = [_patient(tmp_path, f"P{i}", 20 + i) for i in range(2)]
    run = run_cohort(manifests, tmp_path / "out")
    assert run.status == {str(m): COMPUTED for m in manifests}
    return tmp_path, manifests, run


def test_failing_patient_reported_and_skipped(tmp_path):
    good = [_patient(tmp_path, f"P{i}", 20 + i) for i in range(2)]
    bad = tmp_path / "bad" / "manifest.toml"
    bad.parent.mkdir()
    bad.write_text(good[0].read_text().replace('patient = "P0"', 'patient = "PX"').replace('"c1/', '"missing/'))
    run = run_cohort([good[0], bad, good[1]], tmp_path / "out")
    assert list(run.failures) == [str(bad)] and "does not exist" in run.failures[str(bad)]
    assert run.status[str(bad)] == FAILED and not run.internal_failures
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == run.failures
    df = pd.read_csv(run.cohort_csv)
    assert sorted(df["patient"].unique()) == ["P0", "P1"] and len(df) == 4
    truth = {t["tumor"] for g in good for t in json.loads((g.parent / "truth.json").read_text())["tumours"]}
    assert set(df["tumor"]) == truth


def test_every_patient_failing_is_an_input_error(tmp_path):
    with pytest.raises(Exception, match="every patient failed"):
        run_cohort([tmp_path / "none" / "manifest.toml"], tmp_path / "out")


def _stamps(out):
    return {p.name: (p / "run.json").stat().st_mtime_ns for p in sorted(out.iterdir()) if p.is_dir()}


def test_resume_reuses_only_unchanged_outputs(cohort):
    tmp_path, manifests, first = cohort
    out = tmp_path / "out"
    before, table = _stamps(out), first.cohort_csv.read_bytes()
    again = run_cohort(manifests, out)
    assert again.status == {str(m): UP_TO_DATE for m in manifests}
    assert _stamps(out) == before and again.cohort_csv.read_bytes() == table
    _patient(tmp_path, "P1", 21)                       # P1's images rewritten (new UIDs, new noise file bytes)
    third = run_cohort(manifests, out)
    assert third.status == {str(manifests[0]): UP_TO_DATE, str(manifests[1]): COMPUTED}
    assert _stamps(out)["000_P0"] == before["000_P0"] and _stamps(out)["001_P1"] != before["001_P1"]


def _rewrite_run_json(folder, change) -> None:
    """Make ``folder`` look like a complete run made differently: run.json changed, its set manifest updated."""
    run = json.loads((folder / "run.json").read_text())
    change(run)
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    listing = json.loads((folder / RUN_MANIFEST).read_text())
    listing["files"]["run.json"] = sha256_of(folder / "run.json")
    (folder / RUN_MANIFEST).write_text(json.dumps(listing))


#: ways in which an earlier, complete and unchanged output set was made differently from what the manifest asks now
MADE_DIFFERENTLY = {
    "settings": lambda run: run["settings"].update(pvc="gtm"),    # e.g. other defaults at the time
    "version": lambda run: run.update(version="0.0.0"),           # another version of the software
    "study": lambda run: run["study"]["cycles"][0].update(activity_mbq=1.0),
}


def test_outputs_made_differently_are_recomputed(cohort):
    tmp_path, manifests, _ = cohort
    for what, change in MADE_DIFFERENTLY.items():
        _rewrite_run_json(tmp_path / "out" / "000_P0", change)
        rerun = run_cohort(manifests, tmp_path / "out")
        assert rerun.status == {str(manifests[0]): COMPUTED, str(manifests[1]): UP_TO_DATE}, what


def test_an_edited_output_is_reported_never_overwritten(cohort):
    tmp_path, manifests, _ = cohort
    edited = tmp_path / "out" / "000_P0" / "tumours.csv"
    edited.write_text(edited.read_text() + "my note\n")
    rerun = run_cohort(manifests, tmp_path / "out")
    assert rerun.status[str(manifests[0])] == FAILED and "changed since the run wrote it" in rerun.failures[
        str(manifests[0])]
    assert edited.read_text().endswith("my note\n")
    assert rerun.status[str(manifests[1])] == UP_TO_DATE
