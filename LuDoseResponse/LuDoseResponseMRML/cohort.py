"""Cohort analysis in a scene: cohort CSV -> LuDoseResponseLib -> table and chart nodes.

This is what the module's Apply button and ``LuDoseResponseLogic.runCohortAnalysis`` run. The
statistics are the library's (``cohort.load_cohort_csv``, ``analysis.analyze_cohort``); this
module only turns their results into nodes; files are written by the library's
``analysis_io.write_analysis_outputs``, as the command line writes them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings, analyze_cohort
from LuDoseResponseLib.analysis.outputs import write_analysis_outputs
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.response.cohort import Cohort, cohort_output_table, load_cohort_csv
from LuDoseResponseMRML.results import (
    analysisTableNodes,
    analysisTextNode,
    doseResponseChartNode,
    nestedGet,
    requireAnalysisDict,
    tcpChartNode,
)
from LuDoseResponseMRML.tables import columnsFromMapping, tableNodeFromColumns

log = logging.getLogger(__name__)

TUMOURS_TABLE_ROLE = "Table.tumours"
TUMOURS_TABLE_NAME = "LuDoseResponse tumours"
#: unit labels of cohort columns, by name suffix
_UNIT_SUFFIXES = {"_gy": "Gy", "_gbq": "GBq", "_cm3": "cm3", "_days": "d"}


@dataclass(frozen=True)
class CohortAnalysisNodes:
    """What a cohort analysis put in the scene.

    ``analysis``: the analysis.json content; ``tables``: table nodes keyed by analysis block
    (summary, response_groups, tcp, roc, dose_response, baseline_volume) plus ``tumours`` (the
    validated cohort, exclusions marked); ``charts``: ``tcp`` and ``dose_response`` chart nodes;
    ``textNode``: the text node holding analysis.json at full precision; ``outputFiles``: files
    written (empty without an output folder).
    """

    analysis: dict
    tables: dict = field(default_factory=dict)
    charts: dict = field(default_factory=dict)
    textNode: object = None
    outputFiles: tuple[str, ...] = ()


def parseNumberList(text: str, what: str) -> tuple[float, ...]:
    """``"76, 135"`` -> ``(76.0, 135.0)``; InputError naming ``what`` for anything else."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise InputError(f"{what}: give at least one number, comma-separated (e.g. 76,135)")
    values = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"{what}: '{part}' is not a number; use comma-separated numbers such as 76,135") \
                from None
    return tuple(values)


def analysisSettings(**settings) -> AnalysisSettings:
    """``AnalysisSettings`` from keyword options; InputError naming an unknown option."""
    known = {f.name for f in dataclasses.fields(AnalysisSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"unknown cohort analysis option(s) {unknown}; valid options are {sorted(known)}")
    if "doses" in settings:
        settings["doses"] = tuple(float(d) for d in settings["doses"])
    if "tcp_targets" in settings:
        settings["tcp_targets"] = tuple(float(p) for p in settings["tcp_targets"])
    return AnalysisSettings(**settings)


def _unitOf(column: str) -> str:
    for suffix, unit in _UNIT_SUFFIXES.items():
        if column.endswith(suffix):
            return unit
    return ""


def showCohortAnalysis(scene, analysis: Mapping, cohort: Cohort | None = None) -> CohortAnalysisNodes:
    """Put an analysis (analysis.json dict) into ``scene`` as tables and charts.

    With ``cohort`` the validated tumour table becomes a table node too, and the charts show
    the analysed (not excluded) tumours as observed points.
    """
    requireAnalysisDict(analysis)
    tables = analysisTableNodes(scene, analysis)
    observed = None
    if cohort is not None:
        table = cohort_output_table(cohort)
        mapping = {str(c): table[c].tolist() for c in table.columns}
        tables["tumours"] = tableNodeFromColumns(
            scene, TUMOURS_TABLE_NAME, columnsFromMapping(mapping, {c: _unitOf(c) for c in mapping}),
            role=TUMOURS_TABLE_ROLE)
        observed = cohort.included
    charts = {"tcp": tcpChartNode(scene, analysis, observed),
              "dose_response": doseResponseChartNode(scene, analysis, observed)}
    return CohortAnalysisNodes(analysis=dict(analysis), tables=tables, charts=charts,
                               textNode=analysisTextNode(scene, analysis))


def summaryText(analysis: Mapping) -> str:
    """One paragraph for the module panel: tumour counts, D50 per grade, number of warnings."""
    requireAnalysisDict(analysis)
    total = nestedGet(analysis, "summary", "all") or {}
    excluded = nestedGet(analysis, "input", "n_excluded")
    parts = [f"{total.get('n_tumours', '?')} tumours in {total.get('n_patients', '?')} patients analysed"
             + (f" ({excluded} excluded)" if excluded else "")
             + f", {total.get('n_responders', '?')} responders."]
    d50 = []
    for grade in ("G1", "G2"):
        dose = nestedGet(analysis, "tcp", "per_grade", grade, "dose_at_tcp", "0.5", "dose_gy")
        if dose is not None:
            d50.append(f"{grade} {dose:.0f} Gy")
    if nestedGet(analysis, "tcp", "error"):
        parts.append(f"TCP model not estimated: {nestedGet(analysis, 'tcp', 'error')}.")
    elif d50:
        parts.append("Dose for TCP 50 %: " + ", ".join(d50) + ".")
    n_warnings = len(analysis.get("warnings") or [])
    if n_warnings:
        parts.append(f"{n_warnings} warning(s): see the tables' Warnings and Error columns.")
    return " ".join(parts)


def runCohortAnalysis(scene, csvPath, outputDir=None, **settings) -> CohortAnalysisNodes:
    """Load and validate a cohort CSV, run the paper's analyses and show them in ``scene``.

    :param csvPath: cohort table, one row per tumour (contract: cohort-and-analysis.md).
    :param outputDir: if given, the command line's outputs are written there (analysis.json,
        tumours.csv, figures, report.html; see ``LuDoseResponseLib.analysis.outputs``), which needs
        matplotlib.
    :param settings: options of ``AnalysisSettings`` (responder_threshold,
        min_baseline_volume_cm3, glmm_method, bootstrap, seed, doses, tcp_targets, ...).
    :returns: the analysis dict and the nodes created or updated.
    """
    options = analysisSettings(**settings)
    cohort = load_cohort_csv(csvPath, responder_threshold=options.responder_threshold,
                             min_baseline_volume_cm3=options.min_baseline_volume_cm3)
    result = analyze_cohort(cohort, options)
    files = write_analysis_outputs(cohort, result, outputDir) if outputDir else {}
    nodes = showCohortAnalysis(scene, result.to_dict(), cohort)
    log.info("cohort analysis of %s: %d tumours analysed, %d excluded", csvPath, cohort.n_rows - cohort.n_excluded,
             cohort.n_excluded)
    return dataclasses.replace(nodes, outputFiles=tuple(str(p) for p in files.values()))
