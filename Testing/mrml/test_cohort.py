"""Cohort CSV -> library analysis -> nodes, as the module's Apply runs it (real library, real MRML).

Truth for counts and observed points comes from reading the CSV here with pandas and applying
the contract's rules (responder = dv >= threshold; excluded = baseline volume < minimum); the
nodes must agree with analysis.json, which the library wrote.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from LuDoseResponseLib.analysis.summary import summary_text as summaryText
from LuDoseResponseLib.errors import CohortError, InputError
from LuDoseResponseLib.parsing import parse_number_list as parseNumberList
from LuDoseResponseLib.response.synthetic_cohort import generate_cohort
from LuDoseResponseMRML.cohort import analysisSettings, runCohortAnalysis

FAST = {"bootstrap": 200, "seed": 2}


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory):
    """A synthetic cohort with three tumours made small enough to be excluded; without the
    optional responder column, so that the responder threshold can vary."""
    table = generate_cohort(seed=3).drop(columns=["responder"], errors="ignore")
    table.loc[table.index[:3], "baseline_volume_cm3"] = [1.5, 2.0, 3.9]
    path = tmp_path_factory.mktemp("cohort") / "cohort.csv"
    table.to_csv(path, index=False)
    return path


def _column(table_node, name):
    column = table_node.GetTable().GetColumnByName(name)
    assert column is not None, f"{table_node.GetName()}: no column {name}"
    return [column.GetValue(r) for r in range(column.GetNumberOfTuples())]


def _observed(chart, suffix):
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    out = {}
    for s in series:
        if s.GetName().endswith(suffix):
            grade = s.GetName().split()[0]
            out[grade] = (np.array(_column(s.GetTableNode(), s.GetXColumnName()), dtype=float),
                          np.array(_column(s.GetTableNode(), s.GetYColumnName()), dtype=float))
    return out


def test_run_cohort_analysis(scene, cohort_csv, tmp_path):
    truth = pd.read_csv(cohort_csv)
    included = truth[truth["baseline_volume_cm3"] >= 4.0]
    nodes = runCohortAnalysis(scene, cohort_csv, tmp_path / "out", **FAST)

    written = {p.split("/")[-1] for p in nodes.outputFiles}
    assert {"analysis.json", "tumours.csv", "report.html"} <= written
    assert all((tmp_path / "out" / name).is_file() for name in written)
    assert json.loads((tmp_path / "out" / "analysis.json").read_text()) == nodes.analysis
    assert json.loads(nodes.textNode.GetText()) == nodes.analysis
    assert nodes.analysis["input"]["n_rows"] == len(truth)
    assert nodes.analysis["input"]["n_excluded"] == 3

    tumours = nodes.tables["tumours"]
    assert tumours.GetNumberOfRows() == len(truth)
    assert _column(tumours, "tumor") == truth["tumor"].astype(str).tolist()
    assert sum(_column(tumours, "excluded")) == 3
    assert tumours.GetColumnUnitLabel("dose_gy") == "Gy"

    chart = nodes.charts["tcp"]
    observed = _observed(chart, "(responder = 1)")
    assert sorted(observed) == sorted(included["grade"].unique())
    for grade, (doses, responders) in observed.items():
        rows = included[included["grade"] == grade]
        np.testing.assert_allclose(doses, rows["dose_gy"].to_numpy())
        np.testing.assert_array_equal(responders, (rows["dv"].to_numpy() >= 0.66).astype(float))
    for grade in observed:
        curve = [s for s in (chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes()))
                 if s.GetName() == grade][0]
        np.testing.assert_allclose(np.array(_column(curve.GetTableNode(), "TCP"), dtype=float),
                                   nodes.analysis["tcp"]["curves"][grade]["tcp"], rtol=1e-15)

    slopes = _column(nodes.tables["tcp"], "Slope")
    grades = _column(nodes.tables["tcp"], "Grade")
    for grade, slope in zip(grades, slopes, strict=True):
        assert slope == pytest.approx(nodes.analysis["tcp"]["per_grade"][grade]["slope_per_gy"], rel=1e-15)

    text = summaryText(nodes.analysis)
    assert text.startswith(f"{len(included)} tumours in {included['patient'].nunique()} patients analysed "
                           f"(3 excluded), {int((included['dv'] >= 0.66).sum())} responders.")


def test_settings_reach_the_library(scene, cohort_csv):
    truth = pd.read_csv(cohort_csv)
    nodes = runCohortAnalysis(scene, cohort_csv, responder_threshold=0.6, min_baseline_volume_cm3=0.0,
                              doses=[100.0], tcp_targets=(0.75,), **FAST)
    assert nodes.outputFiles == ()
    assert nodes.analysis["settings"]["responder_threshold"] == 0.6
    assert nodes.analysis["input"]["n_excluded"] == 0
    assert nodes.tables["tcp"].GetTable().GetColumnByName("TCP at 100 Gy") is not None
    assert nodes.tables["tcp"].GetTable().GetColumnByName("TCP at 76 Gy") is None
    assert nodes.tables["tcp"].GetTable().GetColumnByName("Dose at TCP 0.75") is not None
    observed = _observed(nodes.charts["tcp"], "(responder = 1)")
    assert sum(len(d) for d, _ in observed.values()) == len(truth)
    assert sum(r.sum() for _, r in observed.values()) == int((truth["dv"] >= 0.6).sum())


def test_errors_are_named(scene, cohort_csv, tmp_path):
    with pytest.raises(InputError, match="unknown cohort analysis option"):
        runCohortAnalysis(scene, cohort_csv, bootstrap_n=10)
    with pytest.raises(InputError, match="TCP report doses: 'abc' is not a number"):
        parseNumberList("76, abc", "TCP report doses")
    assert parseNumberList(" 76 ; 135,", "doses") == (76.0, 135.0)
    assert analysisSettings(doses=[50, 60]).doses == (50.0, 60.0)
    bad = tmp_path / "bad.csv"
    pd.read_csv(cohort_csv).drop(columns=["dv"]).to_csv(bad, index=False)
    with pytest.raises(CohortError, match="dv"):
        runCohortAnalysis(scene, bad, **FAST)
    # the output folder holds the input under an output's name: refuse rather than overwrite it
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "tumours.csv").write_bytes(cohort_csv.read_bytes())
    before = (clash / "tumours.csv").read_bytes()
    with pytest.raises(InputError, match="overwrite"):
        runCohortAnalysis(scene, clash / "tumours.csv", clash, **FAST)
    assert (clash / "tumours.csv").read_bytes() == before
    assert not (clash / "analysis.json").exists()


def test_output_folder_is_checked_before_the_analysis_runs(scene, cohort_csv, tmp_path, monkeypatch):
    """The panel takes the command line's path (analysis.outputs.run_cohort): an input inside the
    output folder, or a folder of the user's files, is refused before any analysis starts."""
    import LuDoseResponseLib.analysis.outputs as outputs

    analysed = []
    real = outputs.analyze_cohort
    monkeypatch.setattr(outputs, "analyze_cohort", lambda *args: analysed.append(args) or real(*args))
    work = tmp_path / "work"  # tmp_path also holds the scene's cache folder
    clash = work / "clash"
    clash.mkdir(parents=True)
    (clash / "cohort.csv").write_bytes(cohort_csv.read_bytes())
    with pytest.raises(InputError, match="would overwrite or delete the input"):
        runCohortAnalysis(scene, clash / "cohort.csv", clash, **FAST)
    mine = work / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(InputError, match="notes.txt"):
        runCohortAnalysis(scene, cohort_csv, mine, **FAST)
    assert analysed == []
    assert sorted(p.name for p in work.iterdir()) == ["clash", "mine"]
    assert (mine / "notes.txt").read_text() == "the user's"
    nodes = runCohortAnalysis(scene, cohort_csv, work / "out", **FAST)  # and a good folder works, once
    assert len(analysed) == 1
    assert {p.split("/")[-1] for p in nodes.outputFiles} == {p.name for p in (work / "out").iterdir()} - {
        "ludoseresponse-run.json"}
