"""Cohort analysis in a scene: cohort CSV -> LuDoseResponseLib -> table and chart nodes.

This is what the module's Apply button and ``LuDoseResponseLogic.runCohortAnalysis`` run. The
analysis and its output files go through the library's ``analysis.outputs.run_cohort``, the path
the command line takes (output folder checked before any work, outputs published as one set);
this module only turns the results into nodes. The number-list parser
(``LuDoseResponseLib.parsing.parse_number_list``) and the summary text
(``LuDoseResponseLib.analysis.summary.summary_text``) are the library's too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings
from LuDoseResponseLib.analysis.outputs import run_cohort
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.response.cohort import Cohort, cohort_output_table
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


def unitOfColumn(column: str) -> str:
    """The unit label of a cohort or tumours.csv column, from its name suffix ('' when none)."""
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
            scene, TUMOURS_TABLE_NAME, columnsFromMapping(mapping, {c: unitOfColumn(c) for c in mapping}),
            role=TUMOURS_TABLE_ROLE)
        observed = cohort.included
    charts = {"tcp": tcpChartNode(scene, analysis, observed),
              "dose_response": doseResponseChartNode(scene, analysis, observed)}
    return CohortAnalysisNodes(analysis=dict(analysis), tables=tables, charts=charts,
                               textNode=analysisTextNode(scene, analysis))


def runCohortAnalysis(scene, csvPath, outputDir=None, **settings) -> CohortAnalysisNodes:
    """Load and validate a cohort CSV, run the paper's analyses and show them in ``scene``.

    :param csvPath: cohort table, one row per tumour (contract: cohort-and-analysis.md).
    :param outputDir: if given, the command line's outputs are published there as one set
        (analysis.json, tumours.csv, figures, report.html; see ``LuDoseResponseLib.analysis.outputs``),
        which needs matplotlib. It is checked before the analysis starts: it must be new, empty or
        the folder of an earlier run, and hold no input.
    :param settings: options of ``AnalysisSettings`` (responder_threshold,
        min_baseline_volume_cm3, glmm_method, bootstrap, seed, doses, tcp_targets, ...).
    :returns: the analysis dict and the nodes created or updated.
    """
    run = run_cohort(csvPath, outputDir or None, analysisSettings(**settings))
    nodes = showCohortAnalysis(scene, run.result.to_dict(), run.cohort)
    log.info("cohort analysis of %s: %d tumours analysed, %d excluded", csvPath,
             run.cohort.n_rows - run.cohort.n_excluded, run.cohort.n_excluded)
    return dataclasses.replace(nodes, outputFiles=tuple(str(p) for p in run.files.values()))
