"""Stage 6, analysis: the paper's cohort analyses on a cohort table, and their outputs.

Inputs: a validated :class:`~LuDoseResponseLib.response.cohort.Cohort` and
:class:`AnalysisSettings`. Outputs: :class:`AnalysisResult` (``analysis.json``,
:mod:`.cohort_analysis`), the output set of a run (:mod:`.outputs`), the summary paragraph
shared by the command line and Slicer (:mod:`.summary`) and the figures and HTML report (:mod:`.report`).
"""

from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA, AnalysisResult, AnalysisSettings, analyze_cohort
from LuDoseResponseLib.analysis.outputs import (
    CohortRun,
    rewrite_report,
    run_cohort,
    run_cohort_analysis,
    run_table_cohort,
    write_analysis_outputs,
)
from LuDoseResponseLib.analysis.summary import summary_text

__all__ = ["SCHEMA", "AnalysisResult", "AnalysisSettings", "CohortRun", "analyze_cohort", "rewrite_report",
           "run_cohort", "run_cohort_analysis", "run_table_cohort", "summary_text", "write_analysis_outputs"]
