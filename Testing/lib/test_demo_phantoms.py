"""``ludoseresponse demo --phantoms N``: the imaging chain on phantom patients, end to end, safely re-run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from LuDoseResponseLib.cli import main


def test_phantom_demo_runs_the_chain_and_reruns(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["-q", "demo", "--out", str(out), "--phantoms", "3", "--cohort-seed", "2", "--bootstrap", "0"]
    assert main(args) == 0
    assert (out / "analysis" / "report.html").is_file() and (out / "analysis" / "analysis.json").is_file()
    cohort = pd.read_csv(out / "patients" / "cohort.csv")
    truth = []
    for patient in sorted((out / "phantoms").iterdir()):
        truth += json.loads((patient / "truth.json").read_text())["tumours"]
    truth = pd.DataFrame(truth)
    joined = cohort.merge(truth, on="tumor", suffixes=("", "_true"))
    assert len(joined) == len(cohort) == len(truth) > 0
    assert (joined["responder"] == joined["responder_true"]).all()   # volumetry against the phantom's truth
    assert main(args) == 0                                             # the same folder again is safe


def test_phantom_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["-q", "demo", "--out", str(tmp_path), "--patients", "2"]) == 2   # --patients = --phantoms
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert "not written by the phantom demo" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-1"])
def test_phantom_count_must_not_be_negative(tmp_path, capsys, bad):
    assert main(["-q", "demo", "--out", str(tmp_path / "d"), "--phantoms", bad]) == 2
