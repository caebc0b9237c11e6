"""Many patients: each manifest through :func:`patient.run_patient`, then one cohort table.

One task per patient (:func:`run_patient_task`), run in this process, in a local process pool
(``jobs`` > 1) or on a Dask cluster (``scheduler``, :mod:`cohort_dask`); each task returns the
patient's ``tumours.csv`` rows, which stream back as the patients finish and make ``cohort.csv`` in
manifest order. A failing patient is reported (its error in ``failures.json`` and the log) and
skipped, never dropped silently.

Resume: a patient is not recomputed when its folder holds the complete, unchanged output set of an
earlier run (``ludoseresponse-run.json`` lists every file with its SHA-256, and they match) whose
``run.json`` was made by this version of the software, from the same manifest, with the same settings
and study as the manifest gives now, and from inputs whose SHA-256 are unchanged. Anything else is
recomputed; a folder holding files that are not the unchanged outputs of a run is refused (and the
patient reported as failed), never overwritten.

:func:`run_phantom_demo` generates a small phantom cohort and runs the whole chain, images to the cohort
analysis.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import InputError, LuDoseResponseError
from LuDoseResponseLib.files import atomic_path, user_environment_error, write_text_atomic
from LuDoseResponseLib.output_set import RUN_MANIFEST, foreign_entries, read_run_manifest

log = logging.getLogger(__name__)

COMPUTED, UP_TO_DATE, FAILED = "computed", "up to date", "failed"
FAILURES_JSON = "failures.json"
COHORT_CSV = "cohort.csv"


@dataclass(frozen=True)
class PatientTask:
    """One patient of a cohort: its manifest and its output folder (absolute paths)."""

    index: int
    manifest: str
    out: str


@dataclass(frozen=True)
class PatientResult:
    """What a patient task returns: its status, its ``tumours.csv`` rows, or why it failed.

    ``internal`` marks a failure that is a fault of the program (not of the patient's input)."""

    task: PatientTask
    status: str
    rows: pd.DataFrame | None = None
    error: str | None = None
    internal: bool = False
    seconds: float = 0.0


@dataclass
class CohortRun:
    """The outcome of :func:`run_cohort`: the table, the failures, and how each patient went."""

    cohort_csv: Path
    failures: dict[str, str]
    internal_failures: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)


#: called as each patient finishes: (result, patients finished so far, patients in all)
Progress = Callable[[PatientResult, int, int], None]


def _json_round_trip(value):
    return json.loads(json.dumps(value, default=str))


def patient_outputs_up_to_date(manifest: str | Path, out_dir: str | Path) -> bool:
    """True if ``out_dir`` holds this manifest's complete, unchanged outputs (module docstring: resume)."""
    from LuDoseResponseLib.pipeline.patient import sha256
    from LuDoseResponseLib.pipeline.study import load_manifest

    out = Path(out_dir)
    written = read_run_manifest(out)
    if written is None or not {"run.json", "tumours.csv"} <= written.keys() or foreign_entries(out):
        return False
    try:
        manifest_json = json.loads((out / RUN_MANIFEST).read_text(encoding="utf-8"))
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        inputs = run["inputs"]
        if manifest_json.get("command") != "dosimetry" or run.get("version") != __version__:
            return False
        if not inputs or Path(inputs[0]["path"]).resolve() != Path(manifest).resolve():
            return False
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    study = load_manifest(manifest)
    if (run.get("settings") != _json_round_trip(study.settings.to_dict())
            or run.get("study") != _json_round_trip(study.to_dict())):
        return False
    try:
        return all(Path(i["path"]).exists() and sha256(Path(i["path"])) == i["sha256"] for i in inputs)
    except (OSError, KeyError, TypeError):
        return False


def run_patient_task(task: PatientTask, kernel_cache_dir: str | None = None) -> PatientResult:
    """Run (or resume) one patient; never raises for a patient's own failure, which it returns instead.

    ``kernel_cache_dir``: the kernel cache folder to use (``LUDR_CACHE_DIR``), so that every worker of a
    run shares the kernels of the process that started it."""
    from LuDoseResponseLib.pipeline.patient import run_patient

    if kernel_cache_dir:
        os.environ["LUDR_CACHE_DIR"] = kernel_cache_dir
    start = time.perf_counter()
    status, error, internal = COMPUTED, None, False
    try:
        if patient_outputs_up_to_date(task.manifest, task.out):
            status = UP_TO_DATE
        else:
            run_patient(task.manifest, task.out)
        rows = pd.read_csv(Path(task.out) / "tumours.csv")
    except LuDoseResponseError as exc:
        error = str(exc)
    except OSError as exc:
        environment = user_environment_error(exc, exc.filename or task.manifest, "use")
        error = str(environment) if environment is not None else f"{type(exc).__name__}: {exc}"
        internal = environment is None
    except Exception as exc:  # noqa: BLE001 - a fault of the program: reported for this patient, the others go on
        log.exception("patient %s: internal error", task.manifest)
        error, internal = f"internal error: {type(exc).__name__}: {exc}", True
    if error is not None:
        return PatientResult(task, FAILED, error=error, internal=internal, seconds=time.perf_counter() - start)
    return PatientResult(task, status, rows=rows, seconds=time.perf_counter() - start)


def cohort_tasks(manifests: list[str | Path], out_dir: Path) -> list[PatientTask]:
    """One task per manifest, into ``out_dir/<nnn>_<manifest folder>`` (absolute paths, for any worker)."""
    out = out_dir.resolve()
    return [PatientTask(i, str(Path(m).resolve()), str(out / f"{i:03d}_{Path(m).resolve().parent.name}"))
            for i, m in enumerate(manifests)]


def _log_progress(result: PatientResult, done: int, total: int) -> None:
    if result.status == FAILED:
        log.error("patient %d/%d %s failed and is skipped: %s", done, total, result.task.manifest,
                  "; ".join(line.strip() for line in result.error.splitlines() if line.strip()))
    else:
        log.info("patient %d/%d %s: %s (%.1f s)", done, total, result.task.manifest, result.status, result.seconds)


def _run_local(tasks: list[PatientTask], jobs: int, on_result: Callable[[PatientResult], None]) -> None:
    from LuDoseResponseLib.physics.kernel_cache import kernel_cache_dir

    if jobs <= 1:
        for t in tasks:
            on_result(run_patient_task(t))           # this process: its own cache setting, left as it is
        return
    cache = str(kernel_cache_dir())
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_patient_task, t, cache): t for t in tasks}
        for future in as_completed(futures):
            try:
                on_result(future.result())
            except BrokenProcessPool:
                on_result(PatientResult(futures[future], FAILED, error=(
                    "the process running this patient stopped unexpectedly (out of memory, or killed); run the "
                    "cohort again to resume")))


def run_cohort(manifests: list[str | Path], out_dir: str | Path, *, jobs: int = 1, scheduler: str | None = None,
               progress: Progress | None = None) -> CohortRun:
    """Run every manifest into ``out_dir/<nnn>_<manifest folder>/``; write ``cohort.csv`` and ``failures.json``.

    ``jobs``: patients in parallel in a local process pool; ``scheduler``: the address of a Dask
    scheduler to run the patients on instead (needs the ``dask.distributed`` package; the manifests,
    their inputs and ``out_dir`` must then be on a file system that every worker sees under the same
    paths). ``progress`` is called as each patient finishes (default: a log line per patient).
    Raises InputError when no patient succeeds.
    """
    if not manifests:
        raise InputError("cohort: no manifest given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = cohort_tasks(list(manifests), out)
    results: dict[int, PatientResult] = {}
    report = progress or _log_progress

    def on_result(result: PatientResult) -> None:
        results[result.task.index] = result
        report(result, len(results), len(tasks))

    if scheduler is not None:
        from LuDoseResponseLib.pipeline.cohort_dask import run_on_dask

        run_on_dask(tasks, scheduler, on_result)
    else:
        _run_local(tasks, jobs, on_result)
    ordered = [results[t.index] for t in tasks]
    failures = {r.task.manifest: r.error for r in ordered if r.status == FAILED}
    write_text_atomic(out / FAILURES_JSON, json.dumps(failures, indent=2) + "\n")
    # patient_report: each patient's dosimetry page relative to cohort.csv, which the cohort report links
    tables = [r.rows.assign(patient_report=f"{Path(r.task.out).name}/report.html")
              for r in ordered if r.status != FAILED]
    if not tables:
        raise InputError(f"cohort: every patient failed ({len(failures)}); see {out / FAILURES_JSON}")
    cohort_csv = out / COHORT_CSV
    with atomic_path(cohort_csv) as tmp:
        pd.concat(tables, ignore_index=True).to_csv(tmp, index=False)
    return CohortRun(cohort_csv=cohort_csv, failures=failures,
                     internal_failures=[r.task.manifest for r in ordered if r.internal],
                     status={r.task.manifest: r.status for r in ordered})


def run_phantom_demo(out_dir: str | Path, n_patients: int = 6, seed: int = 1, *, jobs: int = 1,
                     settings=None, progress: Progress | None = None):
    """Generate ``n_patients`` phantom patients under ``out_dir/phantoms``, run the chain, analyse the cohort.

    Returns (CohortRun, (Cohort, AnalysisResult)) from ``analysis.run_cohort_analysis``.
    """
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
    from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
    from LuDoseResponseLib.pipeline.phantoms import write_patient

    out = Path(out_dir)
    manifests = [write_patient(make_patient(f"P{i + 1:02d}", seed=seed * 1000 + i), out / "phantoms" / f"P{i + 1:02d}")
                 for i in range(n_patients)]
    cohort = run_cohort(manifests, out / "patients", jobs=jobs, progress=progress)
    analysis = run_cohort_analysis(cohort.cohort_csv, out / "analysis", settings)
    return cohort, analysis
