"""Run a cohort analysis from a CSV and write its outputs (CLI and Slicer share this).

Outputs in ``out_dir``: ``analysis.json`` (contract schema), ``tumours.csv`` (the validated
table with exclusions marked), the figures as PNG and SVG, and ``report.html``. Each file is
written atomically; the input CSV is never overwritten.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from LuDoseResponseLib.analysis.cohort_analysis import AnalysisResult, AnalysisSettings, analyze_cohort
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import atomic_path, refuse_to_overwrite_input, write_text_atomic
from LuDoseResponseLib.response.cohort import Cohort, cohort_output_table, load_cohort_csv

log = logging.getLogger(__name__)

ANALYSIS_JSON = "analysis.json"
TUMOURS_CSV = "tumours.csv"


def _check_outputs_spare_input(out_dir: Path, source: str | Path | None) -> None:
    if source:
        for name in (ANALYSIS_JSON, TUMOURS_CSV, "report.html"):
            refuse_to_overwrite_input(out_dir / name, [source])


def write_analysis_outputs(cohort: Cohort, result: AnalysisResult, out_dir: str | Path) -> dict[str, Path]:
    """Write analysis.json, tumours.csv, figures and report.html; return the paths by name."""
    from LuDoseResponseLib.analysis.report import write_figures, write_report_html

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder; choose a folder for the outputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_outputs_spare_input(out_dir, cohort.source)
    analysis = result.to_dict()
    paths = {"analysis": write_text_atomic(out_dir / ANALYSIS_JSON,
                                           json.dumps(analysis, indent=1, allow_nan=False) + "\n")}
    table = cohort_output_table(cohort)
    with atomic_path(out_dir / TUMOURS_CSV) as tmp:
        table.to_csv(tmp, index=False)
    paths["tumours"] = out_dir / TUMOURS_CSV
    figures = write_figures(analysis, table, out_dir)
    for p in figures:
        paths[p.name] = p
    paths["report"] = write_report_html(analysis, figures, out_dir)
    return paths


def run_cohort_analysis(csv_path: str | Path, out_dir: str | Path | None,
                        settings: AnalysisSettings | None = None) -> tuple[Cohort, AnalysisResult]:
    """Load and validate ``csv_path``, run every analysis, and write outputs when ``out_dir`` is given."""
    settings = settings or AnalysisSettings()
    if out_dir is not None:
        _check_outputs_spare_input(Path(out_dir), csv_path)
    cohort = load_cohort_csv(csv_path, responder_threshold=settings.responder_threshold,
                             min_baseline_volume_cm3=settings.min_baseline_volume_cm3)
    result = analyze_cohort(cohort, settings)
    if out_dir is not None:
        write_analysis_outputs(cohort, result, out_dir)
        log.info("wrote %s", Path(out_dir) / ANALYSIS_JSON)
    return cohort, result
