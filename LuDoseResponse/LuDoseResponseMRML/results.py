"""``analysis.json`` (as a dict) -> MRML table nodes and plot charts.

Tables, one row per grade (and model or variable where the analysis has several):
summary, response groups (paper Table 2), TCP parameters, ROC, dose-response, baseline volume.
Charts: the TCP curves of the logistic GLMM with their 95 % CI (paper Fig. 3) and the
asymptotic dose-response curves (paper Fig. 4), each with the observed tumours per grade.
Slicer charts draw lines, not filled bands, so each CI is drawn as two dashed lines.

A saved scene writes table cells as text with 6 significant digits (MRML's table storage), so
the full-precision results also go into the scene as a text node holding analysis.json.

The dict follows ``contracts/cohort-and-analysis.md``. A block holding ``{"error": ...}`` gives
a row whose "Error" cell says why; missing numbers are empty cells.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import slicer

from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA
from LuDoseResponseLib.errors import InputError
from LuDoseResponseMRML.tables import Column, fillTableNode, findNodeByRole, findOrCreateNode

GRADES = ("G1", "G2")
GRADE_COLORS = {"G1": (0.12, 0.47, 0.71), "G2": (0.84, 0.15, 0.16)}
VARIABLES = {"dose_gy": ("Absorbed dose", "Gy"), "activity_gbq": ("Administered activity", "GBq")}
DOSE_RESPONSE_VARIANTS = {"G2_only": "G2 only", "both_grades": "Both grades"}

DOSE_COLUMN = "Dose [Gy]"
TCP_COLUMN = "TCP"
DV_COLUMN = "Volume reduction"
RESPONDER_COLUMN = "Responder"
CI_LOW_COLUMN = "CI low"
CI_HIGH_COLUMN = "CI high"

TABLE_NAMES = {
    "summary": "LuDoseResponse summary",
    "response_groups": "LuDoseResponse response groups",
    "tcp": "LuDoseResponse TCP",
    "roc": "LuDoseResponse ROC",
    "dose_response": "LuDoseResponse dose-response",
    "baseline_volume": "LuDoseResponse baseline volume",
}


def requireAnalysisDict(analysis) -> Mapping:
    """Return ``analysis`` if it is an analysis.json dict of this schema, else raise InputError."""
    if not isinstance(analysis, Mapping):
        raise InputError(f"expected the analysis as a dict (analysis.json), got {type(analysis).__name__}")
    if analysis.get("schema") != SCHEMA:
        raise InputError(f"analysis schema is '{analysis.get('schema')}', this version reads '{SCHEMA}'; "
                         "re-run the analysis with this version of LuDoseResponse")
    return analysis


def nestedGet(block, *keys):
    """``block[k1][k2]...`` or None when a level is missing or not a dict."""
    for key in keys:
        if not isinstance(block, Mapping) or key not in block:
            return None
        block = block[key]
    return block


def _text(values) -> str:
    """Values joined by '; ' (numbers with 6 significant digits); '' for none."""
    return "; ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values) if values else ""


def _rowsToColumns(rows: list[dict], spec: Sequence[tuple[str, str, str]]) -> list[Column]:
    """Columns from row dicts; ``spec`` is (column name, unit, description) in order."""
    return [Column(name, [row.get(name) for row in rows], unit, description) for name, unit, description in spec]


def _errorAndWarnings(block) -> dict:
    return {"Warnings": _text(nestedGet(block, "warnings")), "Error": nestedGet(block, "error") or ""}


_STATUS_SPEC = [("Warnings", "", "warnings of the fit"), ("Error", "", "why the block was not estimated")]


def summaryColumns(analysis: Mapping) -> list[Column]:
    """Per group (all, G1, G2): tumour counts and medians."""
    rows = []
    for group, block in (analysis.get("summary") or {}).items():
        rows.append({
            "Group": group, "Tumours": nestedGet(block, "n_tumours"), "Patients": nestedGet(block, "n_patients"),
            "Responders": nestedGet(block, "n_responders"), "Non-responders": nestedGet(block, "n_nonresponders"),
            "Median dose": nestedGet(block, "dose_median_gy"), "Min dose": nestedGet(block, "dose_min_gy"),
            "Max dose": nestedGet(block, "dose_max_gy"), "Median volume reduction": nestedGet(block, "dv_median"),
            "Median baseline volume": nestedGet(block, "baseline_volume_median_cm3"),
        })
    return _rowsToColumns(rows, [
        ("Group", "", "all analysed tumours, or one grade"), ("Tumours", "", ""), ("Patients", "", ""),
        ("Responders", "", "volume reduction at or above the responder threshold"), ("Non-responders", "", ""),
        ("Median dose", "Gy", "median cumulative tumour absorbed dose"), ("Min dose", "Gy", ""),
        ("Max dose", "Gy", ""), ("Median volume reduction", "", "(vmax - vmin)/vmax"),
        ("Median baseline volume", "cm3", ""),
    ])


def responseGroupsColumns(analysis: Mapping) -> list[Column]:
    """Per grade and variable: responder vs non-responder means from lmer(y ~ responder + (1|patient))."""
    rows = []
    for grade in GRADES:
        for key, (label, unit) in VARIABLES.items():
            block = nestedGet(analysis, "response_groups", grade, key)
            if block is None:
                continue
            rows.append({
                "Grade": grade, "Variable": label, "Unit": unit,
                "Mean non-responders": nestedGet(block, "mean_nonresponder"),
                "Mean responders": nestedGet(block, "mean_responder"),
                "SE non-responders": nestedGet(block, "se_nonresponder"),
                "SE responders": nestedGet(block, "se_responder"),
                "Difference": nestedGet(block, "difference"), "Difference SE": nestedGet(block, "difference_se"),
                "Difference df": nestedGet(block, "difference_df"), "p (Kenward-Roger)": nestedGet(block, "p_value"),
                "p (Satterthwaite)": nestedGet(block, "p_value_satterthwaite"),
                "SD patient": nestedGet(block, "sd_patient"), "SD residual": nestedGet(block, "sd_residual"),
                "Singular": nestedGet(block, "singular"), **_errorAndWarnings(block),
            })
    return _rowsToColumns(rows, [
        ("Grade", "", ""), ("Variable", "", ""), ("Unit", "", "unit of the means, SEs, difference and SDs"),
        ("Mean non-responders", "", "estimated marginal mean"), ("Mean responders", "", "estimated marginal mean"),
        ("SE non-responders", "", ""), ("SE responders", "", ""),
        ("Difference", "", "responders minus non-responders"), ("Difference SE", "", ""),
        ("Difference df", "", "Kenward-Roger degrees of freedom"),
        ("p (Kenward-Roger)", "", "two-sided, as emmeans"), ("p (Satterthwaite)", "", "two-sided"),
        ("SD patient", "", "random-intercept standard deviation"), ("SD residual", "", ""),
        ("Singular", "", "1 when the patient variance is on the boundary"), *_STATUS_SPEC,
    ])


def _orderedKeys(blocks, *path) -> list[str]:
    keys: list[str] = []
    for block in blocks:
        for key in nestedGet(block, *path) or {}:
            if key not in keys:
                keys.append(key)
    return sorted(keys, key=float)


def tcpColumns(analysis: Mapping) -> list[Column]:
    """Per grade: the logistic GLMM's intercept and slope, doses at target TCPs, TCP at doses."""
    tcp = analysis.get("tcp") or {}
    per_grade = [(g, nestedGet(tcp, "per_grade", g)) for g in GRADES if nestedGet(tcp, "per_grade", g) is not None]
    targets = _orderedKeys([b for _, b in per_grade], "dose_at_tcp")
    doses = _orderedKeys([b for _, b in per_grade], "at_dose")
    spec = [("Grade", "", ""), ("Intercept", "", "logit scale"), ("Intercept SE", "", ""),
            ("Slope", "1/Gy", "logit TCP per Gy"), ("Slope SE", "1/Gy", "")]
    for t in targets:
        spec += [(f"Dose at TCP {t}", "Gy", f"dose giving a TCP of {t}"), (f"Dose at TCP {t} SE", "Gy", "")]
    for d in doses:
        spec += [(f"TCP at {d} Gy", "", "population level (random effect 0)"),
                 (f"TCP at {d} Gy CI low", "", "95 % CI on the logit scale"), (f"TCP at {d} Gy CI high", "", ""),
                 (f"Odds at {d} Gy", "", ""), (f"Odds at {d} Gy CI low", "", ""), (f"Odds at {d} Gy CI high", "", "")]
    spec += [("Method", "", "GLMM likelihood approximation"), ("Random intercept SD", "", "patient, logit scale"),
             ("Log-likelihood", "", ""), ("Singular", "", ""), ("Converged", "", ""),
             ("Separation", "", "1 when the outcome is perfectly separated"), *_STATUS_SPEC]
    model = {"Method": nestedGet(tcp, "method"), "Random intercept SD": nestedGet(tcp, "random_intercept_sd"),
             "Log-likelihood": nestedGet(tcp, "loglik"), "Singular": nestedGet(tcp, "singular"),
             "Converged": nestedGet(tcp, "converged"), "Separation": nestedGet(tcp, "separation"),
             **_errorAndWarnings(tcp)}
    rows = []
    for grade, block in per_grade:
        row = {"Grade": grade, "Intercept": nestedGet(block, "intercept"),
               "Intercept SE": nestedGet(block, "intercept_se"),
               "Slope": nestedGet(block, "slope_per_gy"), "Slope SE": nestedGet(block, "slope_se"), **model}
        for t in targets:
            row[f"Dose at TCP {t}"] = nestedGet(block, "dose_at_tcp", t, "dose_gy")
            row[f"Dose at TCP {t} SE"] = nestedGet(block, "dose_at_tcp", t, "se")
        for d in doses:
            for suffix, key in (("", "tcp"), (" CI low", "ci_low"), (" CI high", "ci_high")):
                row[f"TCP at {d} Gy{suffix}"] = nestedGet(block, "at_dose", d, key)
            for suffix, key in (("", "odds"), (" CI low", "odds_ci_low"), (" CI high", "odds_ci_high")):
                row[f"Odds at {d} Gy{suffix}"] = nestedGet(block, "at_dose", d, key)
        rows.append(row)
    if not rows:
        rows.append({"Grade": "", **model})
    return _rowsToColumns(rows, spec)


def rocColumns(analysis: Mapping) -> list[Column]:
    """Per grade: AUC of dose for response, its CIs, Youden thresholds, sensitivity/specificity."""
    blocks = [(g, nestedGet(analysis, "roc", g)) for g in GRADES if nestedGet(analysis, "roc", g) is not None]
    doses = _orderedKeys([b for _, b in blocks], "at_dose")
    spec = [("Grade", "", ""), ("Cases", "", "responders"), ("Controls", "", "non-responders"), ("AUC", "", ""),
            ("AUC CI low (DeLong)", "", "95 %"), ("AUC CI high (DeLong)", "", "95 %"),
            ("AUC CI low (bootstrap)", "", "95 %, stratified percentile"),
            ("AUC CI high (bootstrap)", "", "95 %, stratified percentile"),
            ("Bootstrap replicates", "", ""), ("Seed", "", ""),
            ("Youden threshold", "Gy", "every threshold with the maximal Youden index, ';'-separated"),
            ("Youden sensitivity", "", ""), ("Youden specificity", "", "")]
    for d in doses:
        spec += [(f"Sensitivity at {d} Gy", "", "positive when dose >= threshold"),
                 (f"Specificity at {d} Gy", "", "")]
    spec += _STATUS_SPEC
    rows = []
    for grade, block in blocks:
        delong = nestedGet(block, "auc_ci_delong") or [None, None]
        boot = nestedGet(block, "auc_ci_bootstrap") or [None, None]
        youden = nestedGet(block, "youden") or []
        row = {"Grade": grade, "Cases": nestedGet(block, "n_cases"), "Controls": nestedGet(block, "n_controls"),
               "AUC": nestedGet(block, "auc"), "AUC CI low (DeLong)": delong[0], "AUC CI high (DeLong)": delong[1],
               "AUC CI low (bootstrap)": boot[0], "AUC CI high (bootstrap)": boot[1],
               "Bootstrap replicates": nestedGet(block, "bootstrap_n"), "Seed": nestedGet(block, "seed"),
               "Youden threshold": _text([y.get("threshold_gy") for y in youden]),
               "Youden sensitivity": _text([y.get("sensitivity") for y in youden]),
               "Youden specificity": _text([y.get("specificity") for y in youden]),
               **_errorAndWarnings(block)}
        for d in doses:
            row[f"Sensitivity at {d} Gy"] = nestedGet(block, "at_dose", d, "sensitivity")
            row[f"Specificity at {d} Gy"] = nestedGet(block, "at_dose", d, "specificity")
        rows.append(row)
    return _rowsToColumns(rows, spec)


def doseResponseColumns(analysis: Mapping) -> list[Column]:
    """Per model and grade: dv = A (1 - exp(-D/s)) with a patient random amplitude (nlme, ML)."""
    rows = []
    for variant, label in DOSE_RESPONSE_VARIANTS.items():
        block = nestedGet(analysis, "dose_response", variant)
        if block is None:
            continue
        common = {"Model": label, "Random amplitude SD": nestedGet(block, "random_amplitude_sd"),
                  "Residual SD": nestedGet(block, "residual_sd"), "Log-likelihood": nestedGet(block, "loglik"),
                  "Shapiro-Wilk W": nestedGet(block, "shapiro_wilk", "w"),
                  "Shapiro-Wilk p": nestedGet(block, "shapiro_wilk", "p_value"),
                  "Method": nestedGet(block, "method"), "Estimator": nestedGet(block, "estimator"),
                  **_errorAndWarnings(block)}
        grades = [g for g in GRADES if nestedGet(block, "per_grade", g) is not None]
        for grade in grades:
            params = nestedGet(block, "per_grade", grade)
            rows.append({**common, "Grade": grade, "Amplitude": nestedGet(params, "amplitude"),
                         "Amplitude SE": nestedGet(params, "amplitude_se"), "Scale": nestedGet(params, "scale_gy"),
                         "Scale SE": nestedGet(params, "scale_gy_se")})
        if not grades:
            rows.append({**common, "Grade": ""})
    return _rowsToColumns(rows, [
        ("Model", "", "which grades were fitted together"), ("Grade", "", ""),
        ("Amplitude", "", "A: the asymptotic volume reduction"), ("Amplitude SE", "", ""),
        ("Scale", "Gy", "s: dose scale of the exponential"), ("Scale SE", "Gy", ""),
        ("Random amplitude SD", "", "patient"), ("Residual SD", "", ""), ("Log-likelihood", "", ""),
        ("Shapiro-Wilk W", "", "normality of the residuals"), ("Shapiro-Wilk p", "", ""),
        ("Method", "", ""), ("Estimator", "", ""), *_STATUS_SPEC,
    ])


def baselineVolumeColumns(analysis: Mapping) -> list[Column]:
    """Per grade: volume reduction of small vs large tumours at baseline (exploratory)."""
    block = analysis.get("baseline_volume") or {}
    cutoff = nestedGet(block, "cutoff_cm3")
    rows = []
    for grade in GRADES:
        g = nestedGet(block, grade)
        if g is None:
            continue
        rows.append({"Grade": grade, "Cutoff": cutoff, "Mean small": nestedGet(g, "mean_small"),
                     "Mean large": nestedGet(g, "mean_large"), "Difference": nestedGet(g, "difference"),
                     "Difference SE": nestedGet(g, "difference_se"), "p": nestedGet(g, "p_value"),
                     "Singular": nestedGet(g, "singular"), **_errorAndWarnings(g)})
    return _rowsToColumns(rows, [
        ("Grade", "", ""), ("Cutoff", "cm3", "baseline volume separating small from large"),
        ("Mean small", "", "mean volume reduction, baseline volume <= cutoff"),
        ("Mean large", "", "mean volume reduction, baseline volume > cutoff"),
        ("Difference", "", "large minus small"), ("Difference SE", "", ""), ("p", "", ""),
        ("Singular", "", ""), *_STATUS_SPEC,
    ])


_TABLE_BUILDERS = {
    "summary": summaryColumns,
    "response_groups": responseGroupsColumns,
    "tcp": tcpColumns,
    "roc": rocColumns,
    "dose_response": doseResponseColumns,
    "baseline_volume": baselineVolumeColumns,
}


def analysisTableNodes(scene, analysis: Mapping) -> dict[str, object]:
    """One table node per analysis block (keys as in analysis.json), updated in place on re-runs."""
    requireAnalysisDict(analysis)
    nodes = {}
    for key, build in _TABLE_BUILDERS.items():
        node = findOrCreateNode(scene, "vtkMRMLTableNode", f"Table.{key}", TABLE_NAMES[key])
        fillTableNode(node, build(analysis))
        nodes[key] = node
    return nodes


def analysisTextNode(scene, analysis: Mapping):
    """A text node holding analysis.json (full precision; saved as a .json file with the scene),
    updated in place on re-runs."""
    requireAnalysisDict(analysis)
    node = findOrCreateNode(scene, "vtkMRMLTextNode", "Text.analysis", "LuDoseResponse analysis.json")
    node.SetForceCreateStorageNode(slicer.vtkMRMLTextNode.CreateStorageNodeAlways)
    node.SetText(json.dumps(analysis, indent=2, allow_nan=False))
    return node


def _observedByGrade(observed, valueColumn: str) -> dict[str, tuple[list[float], list[float]]]:
    """``{grade: (doses, values)}`` from a mapping/DataFrame with grade, dose_gy and ``valueColumn``."""
    if observed is None:
        return {}
    try:
        grades = [str(g) for g in observed["grade"]]
        doses = [float(d) for d in observed["dose_gy"]]
        values = [float(v) for v in observed[valueColumn]]
    except KeyError as exc:
        raise InputError(f"observed tumours need the columns grade, dose_gy and {valueColumn}; {exc} is missing") \
            from None
    if not (len(grades) == len(doses) == len(values)):
        raise InputError("observed tumours: grade, dose_gy and "
                         f"{valueColumn} differ in length ({len(grades)}, {len(doses)}, {len(values)})")
    out: dict[str, tuple[list[float], list[float]]] = {}
    for g, d, v in zip(grades, doses, values, strict=True):
        out.setdefault(g, ([], []))
        out[g][0].append(d)
        out[g][1].append(v)
    return out


def _styleSeries(series, grade: str, kind: str) -> None:
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetColor(*GRADE_COLORS.get(grade, (0.3, 0.3, 0.3)))
    if kind == "curve":
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetLineWidth(3)
    elif kind == "ci":
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
        series.SetLineWidth(1)
    else:
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetMarkerSize(7)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)


def _series(scene, role: str, name: str, tableNode, yColumn: str, grade: str, kind: str):
    series = findOrCreateNode(scene, "vtkMRMLPlotSeriesNode", role, name)
    series.SetName(name)
    series.SetAndObserveTableNodeID(tableNode.GetID())
    series.SetXColumnName(DOSE_COLUMN)
    series.SetYColumnName(yColumn)
    _styleSeries(series, grade, kind)
    return series


def _removeRoles(scene, className: str, roles: Sequence[str]) -> None:
    for role in roles:
        node = findNodeByRole(scene, className, role)
        if node is not None:
            scene.RemoveNode(node)


def _curveChart(scene, *, chartRole: str, title: str, yTitle: str, yColumn: str, curves: Mapping,
                curveKey: str, observed: Mapping[str, tuple[list[float], list[float]]], observedColumn: str,
                observedLabel: str):
    """A chart with, per grade, a curve, its CI (two dashed lines) and the observed tumours.
    When the model has curves, only the grades it was fitted to show observed tumours."""
    if curves:
        observed = {g: points for g, points in observed.items() if g in curves}
    chart = findOrCreateNode(scene, "vtkMRMLPlotChartNode", chartRole, title)
    chart.RemoveAllPlotSeriesNodeIDs()
    for grade in GRADES:
        curve = nestedGet(curves, grade)
        curve_roles = [f"{chartRole}.{grade}.{part}" for part in ("curve", "ci_low", "ci_high")]
        if curve is None:
            _removeRoles(scene, "vtkMRMLPlotSeriesNode", curve_roles)
            _removeRoles(scene, "vtkMRMLTableNode", [f"{chartRole}.{grade}.curve"])
        else:
            table = findOrCreateNode(scene, "vtkMRMLTableNode", f"{chartRole}.{grade}.curve", f"{title} {grade}")
            fillTableNode(table, [Column(DOSE_COLUMN, list(curve.get("dose_gy") or []), "Gy"),
                                  Column(yColumn, list(curve.get(curveKey) or [])),
                                  Column(CI_LOW_COLUMN, list(curve.get("ci_low") or []), "", "95 % CI"),
                                  Column(CI_HIGH_COLUMN, list(curve.get("ci_high") or []), "", "95 % CI")])
            for role, column, kind, label in zip(curve_roles, (yColumn, CI_LOW_COLUMN, CI_HIGH_COLUMN),
                                                 ("curve", "ci", "ci"), ("", " CI low", " CI high"), strict=True):
                chart.AddAndObservePlotSeriesNodeID(
                    _series(scene, role, f"{grade}{label}", table, column, grade, kind).GetID())
        obs_role = f"{chartRole}.{grade}.observed"
        if grade in observed:
            doses, values = observed[grade]
            table = findOrCreateNode(scene, "vtkMRMLTableNode", obs_role, f"{title} {grade} observed")
            fillTableNode(table, [Column(DOSE_COLUMN, doses, "Gy"), Column(observedColumn, values)])
            chart.AddAndObservePlotSeriesNodeID(
                _series(scene, obs_role, f"{grade} {observedLabel}", table, observedColumn, grade, "observed")
                .GetID())
        else:
            _removeRoles(scene, "vtkMRMLPlotSeriesNode", [obs_role])
            _removeRoles(scene, "vtkMRMLTableNode", [obs_role])
    chart.SetTitle(title)
    chart.SetXAxisTitle("Tumour absorbed dose [Gy]")
    chart.SetYAxisTitle(yTitle)
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(-0.05, 1.05)
    chart.SetLegendVisibility(True)
    return chart


def tcpChartNode(scene, analysis: Mapping, observed=None):
    """The TCP chart: per grade the population TCP curve, its 95 % CI and the observed tumours
    (responder 1 / non-responder 0 at their dose).

    :param observed: the analysed tumours as a mapping or DataFrame with ``grade``, ``dose_gy``
        and ``responder``; no observed points when None.
    """
    requireAnalysisDict(analysis)
    return _curveChart(scene, chartRole="Chart.tcp", title="Tumour control probability", yTitle="TCP",
                       yColumn=TCP_COLUMN, curves=nestedGet(analysis, "tcp", "curves") or {}, curveKey="tcp",
                       observed=_observedByGrade(observed, "responder"), observedColumn=RESPONDER_COLUMN,
                       observedLabel="tumours (responder = 1)")


def doseResponseChartNode(scene, analysis: Mapping, observed=None, variant: str = "both_grades"):
    """The dose-response chart: per grade dv = A (1 - exp(-D/s)), its 95 % CI and the observed
    volume reductions. ``variant`` picks the model: ``both_grades`` or ``G2_only``."""
    requireAnalysisDict(analysis)
    if variant not in DOSE_RESPONSE_VARIANTS:
        raise InputError(f"dose-response variant must be one of {list(DOSE_RESPONSE_VARIANTS)}, got '{variant}'")
    return _curveChart(scene, chartRole="Chart.dose_response", title="Volume reduction vs dose",
                       yTitle="Relative volume reduction", yColumn=DV_COLUMN,
                       curves=nestedGet(analysis, "dose_response", variant, "curves") or {}, curveKey="dv",
                       observed=_observedByGrade(observed, "dv"), observedColumn=DV_COLUMN,
                       observedLabel="tumours")
