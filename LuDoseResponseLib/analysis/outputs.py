"""A cohort analysis from a CSV and its outputs, as one set (the command line and Slicer share this).

Outputs in ``out_dir``: ``analysis.json`` (contract schema), ``tumours.csv`` (the validated
table with exclusions marked), the figures as PNG and SVG, ``report.html`` and the list of these
files, ``ludoseresponse-run.json``. They are published as a whole (:mod:`LuDoseResponseLib.output_set`):
``out_dir`` holds the previous run or the new one, never a mix; no input and no file a run did not
write is ever replaced, and the output folder is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA, AnalysisResult, AnalysisSettings, analyze_cohort
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.output_set import output_set, read_run_manifest, sha256_of
from LuDoseResponseLib.response.cohort import Cohort, cohort_output_table, load_cohort_csv

log = logging.getLogger(__name__)

ANALYSIS_JSON = "analysis.json"
TUMOURS_CSV = "tumours.csv"
REPORT_HTML = "report.html"
COHORT_CSV = "cohort.csv"
#: columns of tumours.csv that the figures draw, and which of them are numbers
_FIGURE_COLUMNS = ("patient", "grade", "dose_gy", "dv", "responder", "excluded", "baseline_volume_cm3")
_NUMERIC_FIGURE_COLUMNS = ("dose_gy", "dv", "responder", "excluded", "baseline_volume_cm3")


@dataclass(frozen=True)
class CohortRun:
    """A cohort analysis: the validated cohort, its result, the output folder (resolved; None when
    not given) and the published files by name (``analysis.json``, ``tumours.csv``, ...)."""

    cohort: Cohort
    result: AnalysisResult
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _analyse(csv_path: str | Path, settings: AnalysisSettings, source: Path | None = None
             ) -> tuple[Cohort, AnalysisResult]:
    cohort = load_cohort_csv(csv_path, responder_threshold=settings.responder_threshold,
                             min_baseline_volume_cm3=settings.min_baseline_volume_cm3)
    if source is not None:
        cohort = dataclasses.replace(cohort, source=str(source))
    return cohort, analyze_cohort(cohort, settings)


def _write_run_files(cohort: Cohort, result: AnalysisResult, folder: Path) -> None:
    """analysis.json, tumours.csv, the figures and report.html into ``folder`` (a staging folder)."""
    from LuDoseResponseLib.analysis.report import write_figures, write_report_html

    analysis = result.to_dict()
    (folder / ANALYSIS_JSON).write_text(json.dumps(analysis, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    table = cohort_output_table(cohort)
    table.to_csv(folder / TUMOURS_CSV, index=False)
    write_report_html(analysis, write_figures(analysis, table, folder), folder, table)


def write_analysis_outputs(cohort: Cohort, result: AnalysisResult, out_dir: str | Path) -> dict[str, Path]:
    """Publish analysis.json, tumours.csv, figures and report.html as a set in ``out_dir``; return
    the paths by file name."""
    inputs = [cohort.source] if cohort.source and Path(cohort.source).is_file() else []
    with output_set(out_dir, command="write_analysis_outputs", inputs=inputs) as run:
        _write_run_files(cohort, result, run.stage)
    return run.files


def run_cohort(csv_path: str | Path, out_dir: str | Path | None = None,
               settings: AnalysisSettings | None = None) -> CohortRun:
    """Load and validate ``csv_path``, run every analysis, and publish the outputs in ``out_dir``
    when given (checked before the analysis starts)."""
    settings = settings or AnalysisSettings()
    if out_dir is None:
        return CohortRun(*_analyse(csv_path, settings))
    with output_set(out_dir, command="analyze", inputs=[csv_path]) as run:
        cohort, result = _analyse(csv_path, settings)
        _write_run_files(cohort, result, run.stage)
    log.info("wrote %s", run.out_dir / ANALYSIS_JSON)
    return CohortRun(cohort, result, run.out_dir, run.files)


def run_cohort_analysis(csv_path: str | Path, out_dir: str | Path | None,
                        settings: AnalysisSettings | None = None) -> tuple[Cohort, AnalysisResult]:
    """:func:`run_cohort`, returning ``(cohort, result)``."""
    run = run_cohort(csv_path, out_dir, settings)
    return run.cohort, run.result


def run_table_cohort(make_table: Callable[[], object], out_dir: str | Path,
                     settings: AnalysisSettings | None = None) -> CohortRun:
    """Publish the cohort table that ``make_table()`` returns (a DataFrame, e.g. a synthetic cohort)
    as ``cohort.csv`` together with its analysis outputs, as one set in ``out_dir`` (checked first)."""
    settings = settings or AnalysisSettings()
    with output_set(out_dir, command="demo") as run:
        staged = run.stage / COHORT_CSV
        make_table().to_csv(staged, index=False)
        cohort, result = _analyse(staged, settings, source=run.final_path(staged))
        _write_run_files(cohort, result, run.stage)
    return CohortRun(cohort, result, run.out_dir, run.files)


def _read_analysis(path: Path, shown: Path) -> dict:
    """analysis.json at ``path`` (named ``shown`` in messages)."""
    try:
        analysis = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InputError(f"{shown} is not valid JSON ({exc}); re-run the analysis") from None
    if not isinstance(analysis, dict):
        raise InputError(f"{shown} holds a JSON {type(analysis).__name__}, not an analysis (a JSON object of schema "
                         f"{SCHEMA}); re-run the analysis")
    if analysis.get("schema") != SCHEMA:
        raise InputError(f"{shown} has schema {analysis.get('schema')!r}; this version reads {SCHEMA}: "
                         "re-run the analysis")
    return analysis


def _read_tumours(path: Path, shown: Path):
    """tumours.csv at ``path`` (named ``shown`` in messages), with the columns the figures draw."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{shown} cannot be read as a CSV table ({exc}); re-run the analysis") from None
    missing = [c for c in _FIGURE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{shown} lacks the column(s) {', '.join(missing)}; re-run the analysis")
    for column in _NUMERIC_FIGURE_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"{shown}: column {column!r}, row {row + 1}: {table[column].iloc[row]!r} is not a number; "
                             "re-run the analysis")
        table[column] = values
    return table


def rewrite_report(folder: str | Path) -> dict[str, Path]:
    """Draw the figures and report.html of the run in ``folder`` again from its analysis.json and
    tumours.csv, and publish them with the run's other files as a new set; return the paths by name."""
    from LuDoseResponseLib.analysis.report import FIGURES, write_figures, write_report_html

    folder = Path(folder)
    written = read_run_manifest(folder)
    if written is None:
        raise InputError(f"{folder} holds no list of a run's files (ludoseresponse-run.json): it was not written "
                         "by this version, so its report cannot be redrawn in place; re-run the analysis")
    redrawn = {REPORT_HTML} | {f"{stem}.{ext}" for stem in FIGURES for ext in ("png", "svg")}
    carry = [name for name in written if name not in redrawn and (folder / name).is_file()]
    with output_set(folder, command="report", carry=carry) as run:
        analysis = _read_analysis(run.stage / ANALYSIS_JSON, folder / ANALYSIS_JSON)
        tumours = _read_tumours(run.stage / TUMOURS_CSV, folder / TUMOURS_CSV)
        edited = [name for name in (ANALYSIS_JSON, TUMOURS_CSV) if sha256_of(run.stage / name) != written.get(name)]
        try:
            write_report_html(analysis, write_figures(analysis, tumours, run.stage), run.stage, tumours)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            if not edited:
                raise  # our own unchanged outputs: a fault of the program
            raise InputError(f"{' and '.join(str(folder / n) for n in edited)} changed since the analysis wrote "
                             f"them and cannot be drawn ({type(exc).__name__}: {exc}); re-run the analysis") from None
    return run.files
