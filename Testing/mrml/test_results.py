"""analysis.json dict -> table nodes and charts: every cell and every curve point against the
dict it came from (read back with plain vtk calls), re-runs update in place, bad input named."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import slicer

from LuDoseResponseLib.errors import InputError
from LuDoseResponseMRML.results import analysisTableNodes, doseResponseChartNode, tcpChartNode


def readTable(node) -> dict[str, list]:
    table = node.GetTable()
    out = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        out[column.GetName()] = [column.GetValue(r) for r in range(table.GetNumberOfRows())]
    return out


def assertCell(cell, expected, where=""):
    if expected is None:
        assert cell == "" or (isinstance(cell, float) and math.isnan(cell)), f"{where}: {cell!r} should be empty"
    elif isinstance(expected, bool):
        assert cell == int(expected), where
    elif isinstance(expected, (int, float)):
        assert cell == pytest.approx(expected, rel=1e-12, abs=0.0), where
    else:
        assert cell == expected, where


def assertRow(table: dict, row: int, expected: dict, where: str):
    for column, value in expected.items():
        assert column in table, f"{where}: no column '{column}'"
        assertCell(table[column][row], value, f"{where}, {column}")


def test_summary_and_response_groups(scene, analysis_dict):
    nodes = analysisTableNodes(scene, analysis_dict)
    summary = readTable(nodes["summary"])
    assert summary["Group"] == ["all", "G1", "G2"]
    for row, group in enumerate(summary["Group"]):
        block = analysis_dict["summary"][group]
        assertRow(summary, row, {"Tumours": block["n_tumours"], "Patients": block["n_patients"],
                                 "Responders": block["n_responders"], "Non-responders": block["n_nonresponders"],
                                 "Median dose": block["dose_median_gy"], "Max dose": block["dose_max_gy"],
                                 "Median volume reduction": block["dv_median"],
                                 "Median baseline volume": block["baseline_volume_median_cm3"]}, group)
    assert nodes["summary"].GetColumnUnitLabel("Median dose") == "Gy"

    groups = readTable(nodes["response_groups"])
    assert list(zip(groups["Grade"], groups["Variable"], strict=True)) == [
        ("G1", "Absorbed dose"), ("G1", "Administered activity"), ("G2", "Absorbed dose"),
        ("G2", "Administered activity")]
    for row, (grade, key) in enumerate([("G1", "dose_gy"), ("G1", "activity_gbq"), ("G2", "dose_gy")]):
        block = analysis_dict["response_groups"][grade][key]
        assertRow(groups, row, {"Mean non-responders": block["mean_nonresponder"],
                                "Mean responders": block["mean_responder"], "Difference": block["difference"],
                                "Difference SE": block["difference_se"], "Difference df": block["difference_df"],
                                "p (Kenward-Roger)": block["p_value"],
                                "p (Satterthwaite)": block["p_value_satterthwaite"],
                                "SD patient": block["sd_patient"], "Singular": block["singular"], "Error": ""},
                  f"{grade} {key}")
    assert groups["Unit"] == ["Gy", "GBq", "Gy", "GBq"]
    failed = analysis_dict["response_groups"]["G2"]["activity_gbq"]
    assertRow(groups, 3, {"Error": failed["error"], "Warnings": "too few patients", "Mean responders": None,
                          "p (Kenward-Roger)": None}, "G2 activity (failed block)")


def test_tcp_table(scene, analysis_dict):
    tcp = readTable(analysisTableNodes(scene, analysis_dict)["tcp"])
    model = analysis_dict["tcp"]
    assert tcp["Grade"] == ["G1", "G2"]
    for row, grade in enumerate(tcp["Grade"]):
        block = model["per_grade"][grade]
        expected = {"Intercept": block["intercept"], "Intercept SE": block["intercept_se"],
                    "Slope": block["slope_per_gy"], "Slope SE": block["slope_se"],
                    "Method": model["method"], "Random intercept SD": model["random_intercept_sd"],
                    "Log-likelihood": model["loglik"], "Converged": model["converged"],
                    "Separation": model["separation"], "Singular": model["singular"],
                    "Warnings": "boundary fit; slow convergence"}
        for target in ("0.5", "0.9"):
            expected[f"Dose at TCP {target}"] = block["dose_at_tcp"][target]["dose_gy"]
            expected[f"Dose at TCP {target} SE"] = block["dose_at_tcp"][target]["se"]
        for dose in ("76", "135"):
            at = block["at_dose"][dose]
            expected |= {f"TCP at {dose} Gy": at["tcp"], f"TCP at {dose} Gy CI low": at["ci_low"],
                         f"TCP at {dose} Gy CI high": at["ci_high"], f"Odds at {dose} Gy": at["odds"],
                         f"Odds at {dose} Gy CI high": at["odds_ci_high"]}
        assertRow(tcp, row, expected, f"TCP {grade}")


def test_tcp_table_when_the_model_failed(scene, analysis_dict):
    analysis_dict["tcp"] = {"error": "separation: all responders above 150 Gy"}
    tcp = readTable(analysisTableNodes(scene, analysis_dict)["tcp"])
    assert tcp["Error"] == ["separation: all responders above 150 Gy"]


def test_roc_dose_response_and_baseline_tables(scene, analysis_dict):
    nodes = analysisTableNodes(scene, analysis_dict)
    roc = readTable(nodes["roc"])
    for row, grade in enumerate(["G1", "G2"]):
        block = analysis_dict["roc"][grade]
        assertRow(roc, row, {"Grade": grade, "Cases": block["n_cases"], "Controls": block["n_controls"],
                             "AUC": block["auc"], "AUC CI low (DeLong)": block["auc_ci_delong"][0],
                             "AUC CI high (DeLong)": block["auc_ci_delong"][1],
                             "AUC CI low (bootstrap)": block["auc_ci_bootstrap"][0],
                             "AUC CI high (bootstrap)": block["auc_ci_bootstrap"][1],
                             "Bootstrap replicates": block["bootstrap_n"],
                             "Sensitivity at 135 Gy": block["at_dose"]["135"]["sensitivity"],
                             "Specificity at 76 Gy": block["at_dose"]["76"]["specificity"]}, f"ROC {grade}")
        thresholds = [float(x) for x in roc["Youden threshold"][row].split("; ")]
        assert thresholds == pytest.approx([y["threshold_gy"] for y in block["youden"]])
        sensitivities = [float(x) for x in roc["Youden sensitivity"][row].split("; ")]
        assert sensitivities == pytest.approx([y["sensitivity"] for y in block["youden"]])

    dose_response = readTable(nodes["dose_response"])
    rows = list(zip(dose_response["Model"], dose_response["Grade"], strict=True))
    assert rows == [("G2 only", "G2"), ("Both grades", "G1"), ("Both grades", "G2")]
    for row, (variant, grade) in enumerate([("G2_only", "G2"), ("both_grades", "G1"), ("both_grades", "G2")]):
        block = analysis_dict["dose_response"][variant]
        params = block["per_grade"][grade]
        assertRow(dose_response, row, {"Amplitude": params["amplitude"], "Amplitude SE": params["amplitude_se"],
                                       "Scale": params["scale_gy"], "Scale SE": params["scale_gy_se"],
                                       "Random amplitude SD": block["random_amplitude_sd"],
                                       "Residual SD": block["residual_sd"],
                                       "Shapiro-Wilk W": block["shapiro_wilk"]["w"],
                                       "Shapiro-Wilk p": block["shapiro_wilk"]["p_value"],
                                       "Estimator": block["estimator"]}, f"{variant} {grade}")
    assert nodes["dose_response"].GetColumnUnitLabel("Scale") == "Gy"

    baseline = readTable(nodes["baseline_volume"])
    g2 = analysis_dict["baseline_volume"]["G2"]
    assertRow(baseline, 0, {"Grade": "G1", "Error": "no G1 tumour above 30 cm3", "Mean small": None,
                            "Cutoff": 30.0}, "baseline G1")
    assertRow(baseline, 1, {"Grade": "G2", "Mean small": g2["mean_small"], "Mean large": g2["mean_large"],
                            "Difference": g2["difference"], "p": g2["p_value"], "Singular": True,
                            "Warnings": "singular fit"}, "baseline G2")


def _series(chart):
    return [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]


def _column(table_node, name):
    column = table_node.GetTable().GetColumnByName(name)
    return np.array([column.GetValue(r) for r in range(column.GetNumberOfTuples())])


def test_tcp_chart_curves_and_observed_points(scene, analysis_dict, observed_tumours):
    chart = tcpChartNode(scene, analysis_dict, observed_tumours)
    series = {s.GetName(): s for s in _series(chart)}
    assert sorted(series) == sorted(["G1", "G1 CI low", "G1 CI high", "G1 tumours (responder = 1)",
                                     "G2", "G2 CI low", "G2 CI high", "G2 tumours (responder = 1)"])
    for grade in ("G1", "G2"):
        curve = analysis_dict["tcp"]["curves"][grade]
        for name, key in ((grade, "tcp"), (f"{grade} CI low", "ci_low"), (f"{grade} CI high", "ci_high")):
            s = series[name]
            table = s.GetTableNode()
            np.testing.assert_allclose(_column(table, s.GetXColumnName()), curve["dose_gy"], rtol=1e-15)
            np.testing.assert_allclose(_column(table, s.GetYColumnName()), curve[key], rtol=1e-15)
        assert series[grade].GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleSolid
        assert series[f"{grade} CI low"].GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleDash
        points = series[f"{grade} tumours (responder = 1)"]
        assert points.GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleNone
        assert points.GetMarkerStyle() != slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone
        mine = [i for i, g in enumerate(observed_tumours["grade"]) if g == grade]
        np.testing.assert_allclose(_column(points.GetTableNode(), points.GetXColumnName()),
                                   [observed_tumours["dose_gy"][i] for i in mine])
        np.testing.assert_array_equal(_column(points.GetTableNode(), points.GetYColumnName()),
                                      [observed_tumours["responder"][i] for i in mine])
        color = series[grade].GetColor()
        assert points.GetColor() == pytest.approx(color)
    assert chart.GetXAxisTitle() == "Tumour absorbed dose [Gy]"


def test_rerun_updates_in_place_and_drops_stale_series(scene, analysis_dict, observed_tumours):
    analysisTableNodes(scene, analysis_dict)
    tcpChartNode(scene, analysis_dict, observed_tumours)
    counts = {c: scene.GetNumberOfNodesByClass(c)
              for c in ("vtkMRMLTableNode", "vtkMRMLPlotSeriesNode", "vtkMRMLPlotChartNode")}
    analysisTableNodes(scene, analysis_dict)
    chart = tcpChartNode(scene, analysis_dict, observed_tumours)
    assert {c: scene.GetNumberOfNodesByClass(c) for c in counts} == counts

    fewer = copy.deepcopy(analysis_dict)
    del fewer["tcp"]["curves"]["G1"]
    fewer["tcp"]["per_grade"]["G2"]["slope_per_gy"] = 0.05
    tables = analysisTableNodes(scene, fewer)
    chart = tcpChartNode(scene, fewer, None)
    assert sorted(s.GetName() for s in _series(chart)) == ["G2", "G2 CI high", "G2 CI low"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 3
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
    assert readTable(tables["tcp"])["Slope"][1] == pytest.approx(0.05)


def test_dose_response_chart(scene, analysis_dict, observed_tumours):
    chart = doseResponseChartNode(scene, analysis_dict, observed_tumours)
    series = {s.GetName(): s for s in _series(chart)}
    assert len(series) == 8
    s = series["G1"]
    np.testing.assert_allclose(_column(s.GetTableNode(), s.GetYColumnName()),
                               analysis_dict["dose_response"]["both_grades"]["curves"]["G1"]["dv"], rtol=1e-15)
    only_g2 = doseResponseChartNode(scene, analysis_dict, observed_tumours, variant="G2_only")
    names = sorted(s.GetName() for s in _series(only_g2))
    assert names == ["G2", "G2 CI high", "G2 CI low", "G2 tumours"]
    points = {s.GetName(): s for s in _series(only_g2)}["G2 tumours"]
    mine = [v for g, v in zip(observed_tumours["grade"], observed_tumours["dv"], strict=True) if g == "G2"]
    np.testing.assert_allclose(_column(points.GetTableNode(), points.GetYColumnName()), mine)


def test_bad_input_is_named(scene, analysis_dict, observed_tumours):
    with pytest.raises(InputError, match="schema"):
        analysisTableNodes(scene, {**analysis_dict, "schema": "ludoseresponse.analysis/0"})
    with pytest.raises(InputError, match="dict"):
        tcpChartNode(scene, [analysis_dict])
    with pytest.raises(InputError, match="variant"):
        doseResponseChartNode(scene, analysis_dict, variant="G1_only")
    with pytest.raises(InputError, match="responder"):
        tcpChartNode(scene, analysis_dict, {k: v for k, v in observed_tumours.items() if k != "responder"})
