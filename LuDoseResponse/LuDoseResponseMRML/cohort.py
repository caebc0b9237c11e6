"""Cohort analysis in a scene: cohort CSV -> LuDoseResponseLib -> table and chart nodes.

This is what the module's Apply button and ``LuDoseResponseLogic.runCohortAnalysis`` run. The
statistics are the library's (``cohort.load_cohort_csv``, ``analysis.analyze_cohort``); this
module only turns their results into nodes and, on request, files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from LuDoseResponseLib.analysis import AnalysisSettings, analyze_cohort
from LuDoseResponseLib.atomic import atomic_path, refuse_to_overwrite_input, write_text_atomic
from LuDoseResponseLib.cohort import Cohort, cohort_output_table, load_cohort_csv
from LuDoseResponseLib.errors import InputError
from LuDoseResponseMRML.results import (
    analysisTableNodes,
    analysisTextNode,
    doseResponseChartNode,
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


def writeCohortOutputs(outputDir, analysis: Mapping, cohort: Cohort, inputPath) -> tuple[str, ...]:
    """Write ``analysis.json`` and ``tumours.csv`` into ``outputDir`` (atomically; never over
    the input). Returns the paths written."""
    out = Path(outputDir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; choose a folder")
    json_path, csv_path = out / "analysis.json", out / "tumours.csv"
    for path in (json_path, csv_path):
        refuse_to_overwrite_input(path, [inputPath])
    write_text_atomic(json_path, json.dumps(analysis, indent=2, allow_nan=False) + "\n")
    with atomic_path(csv_path) as tmp:
        cohort_output_table(cohort).to_csv(tmp, index=False)
    return (str(json_path), str(csv_path))


def runCohortAnalysis(scene, csvPath, outputDir=None, **settings) -> CohortAnalysisNodes:
    """Load and validate a cohort CSV, run the paper's analyses and show them in ``scene``.

    :param csvPath: cohort table, one row per tumour (contract: cohort-and-analysis.md).
    :param outputDir: if given, analysis.json and tumours.csv are written there.
    :param settings: options of ``AnalysisSettings`` (responder_threshold,
        min_baseline_volume_cm3, glmm_method, bootstrap, seed, doses, tcp_targets, ...).
    :returns: the analysis dict and the nodes created or updated.
    """
    options = analysisSettings(**settings)
    cohort = load_cohort_csv(csvPath, responder_threshold=options.responder_threshold,
                             min_baseline_volume_cm3=options.min_baseline_volume_cm3)
    analysis = analyze_cohort(cohort, options).to_dict()
    files = writeCohortOutputs(outputDir, analysis, cohort, csvPath) if outputDir else ()
    nodes = showCohortAnalysis(scene, analysis, cohort)
    log.info("cohort analysis of %s: %d tumours analysed, %d excluded", csvPath, cohort.n_rows - cohort.n_excluded,
             cohort.n_excluded)
    return dataclasses.replace(nodes, outputFiles=files)
