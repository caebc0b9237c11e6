"""Many patients: each manifest through :func:`patient.run_patient` in a process pool, then one cohort table.

A failing patient is reported (its error in ``failures.json`` and the log) and skipped, never dropped
silently; a patient whose outputs already exist and whose inputs' hashes match its ``run.json`` is not
recomputed (resume). :func:`run_phantom_demo` generates a small phantom cohort and runs the whole chain,
images to the cohort analysis.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from LuDoseResponseLib.errors import InputError, LuDoseResponseError
from LuDoseResponseLib.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


def _up_to_date(out: Path) -> bool:
    from LuDoseResponseLib.pipeline.patient import sha256

    run = out / "run.json"
    if not (run.is_file() and (out / "tumours.csv").is_file()):
        return False
    try:
        inputs = json.loads(run.read_text(encoding="utf-8"))["inputs"]
        return all(Path(i["path"]).exists() and sha256(Path(i["path"])) == i["sha256"] for i in inputs)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _one(manifest: str, out: str) -> tuple[str, str | None]:
    from LuDoseResponseLib.pipeline.patient import run_patient

    if _up_to_date(Path(out)):
        log.info("%s: outputs up to date in %s; not recomputed", manifest, out)
        return manifest, None
    try:
        run_patient(manifest, out)
    except LuDoseResponseError as exc:
        return manifest, str(exc)
    return manifest, None


def run_cohort(manifests: list[str | Path], out_dir: str | Path, *, jobs: int = 1) -> tuple[Path, dict[str, str]]:
    """Run every manifest into ``out_dir/<n>_<manifest folder>/``; write ``out_dir/cohort.csv``.

    Returns (cohort.csv, failures {manifest: error}). Raises InputError when no patient succeeds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = [(str(m), str(out / f"{i:03d}_{Path(m).resolve().parent.name}")) for i, m in enumerate(manifests)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_one, *zip(*targets, strict=True)))
    else:
        results = [_one(m, o) for m, o in targets]
    failures = {m: err for m, err in results if err is not None}
    for m, err in failures.items():
        log.error("patient %s failed and is skipped: %s", m, err)
    write_text_atomic(out / "failures.json", json.dumps(failures, indent=2))
    # patient_report: each patient's dosimetry page relative to cohort.csv, which the cohort report links
    tables = [pd.read_csv(Path(o) / "tumours.csv").assign(patient_report=f"{Path(o).name}/report.html")
              for m, o in targets if m not in failures]
    if not tables:
        raise InputError(f"cohort: every patient failed ({len(failures)}); see {out / 'failures.json'}")
    cohort_csv = out / "cohort.csv"
    with atomic_path(cohort_csv) as tmp:
        pd.concat(tables, ignore_index=True).to_csv(tmp, index=False)
    return cohort_csv, failures


def run_phantom_demo(out_dir: str | Path, n_patients: int = 6, seed: int = 1, *, jobs: int = 1,
                     settings=None):
    """Generate ``n_patients`` phantom patients under ``out_dir/phantoms``, run the chain, analyse the cohort.

    Returns (cohort.csv path, failures, (Cohort, AnalysisResult)) from ``analysis.run_cohort_analysis``.
    """
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
    from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
    from LuDoseResponseLib.pipeline.phantoms import write_patient

    out = Path(out_dir)
    manifests = [write_patient(make_patient(f"P{i + 1:02d}", seed=seed * 1000 + i), out / "phantoms" / f"P{i + 1:02d}")
                 for i in range(n_patients)]
    cohort_csv, failures = run_cohort(manifests, out / "patients", jobs=jobs)
    analysis = run_cohort_analysis(cohort_csv, out / "analysis", settings)
    return cohort_csv, failures, analysis
