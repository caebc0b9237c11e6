"""Stage 6, analysis: the paper's cohort analyses on a cohort table, and their outputs.

Inputs: a validated :class:`~LuDoseResponseLib.response.cohort.Cohort` and
:class:`AnalysisSettings`. Outputs: :class:`AnalysisResult` (``analysis.json``,
:mod:`.cohort_analysis`), the output set of a run (:mod:`.outputs`) and the figures and HTML
report (:mod:`.report`).
"""

from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA, AnalysisResult, AnalysisSettings, analyze_cohort
from LuDoseResponseLib.analysis.outputs import run_cohort_analysis, write_analysis_outputs

__all__ = ["SCHEMA", "AnalysisResult", "AnalysisSettings", "analyze_cohort", "run_cohort_analysis",
           "write_analysis_outputs"]
