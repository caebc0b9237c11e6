"""``ludoseresponse demo --out DIR``: the whole analysis on built-in synthetic data.

``--phantoms N`` runs the main job on N digital phantom patients (DICOM SPECT/CT, segmentations and a
manifest each, written under DIR/phantoms): images → doses per patient (DIR/patients) → cohort
statistics (DIR/analysis), with a progress bar on a terminal; exit 4 when some patients failed and
were skipped (as `cohort`). Without it, a synthetic paper-like cohort table is analysed.
"""

from __future__ import annotations

import json
from pathlib import Path

from LuDoseResponseLib.commands.analyze import add_analysis_options, non_negative, print_run, settings_from_args
from LuDoseResponseLib.commands.patient_progress import cohort_exit_code, patient_progress
from LuDoseResponseLib.errors import InputError

#: marks a folder written by the phantom demo, so that running it again there is safe
PHANTOM_DEMO_MARKER = "ludoseresponse-demo.json"
_PHANTOM_DEMO_ENTRIES = {PHANTOM_DEMO_MARKER, "phantoms", "patients", "analysis"}


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on built-in synthetic data",
                       description="With --phantoms N: write N digital phantom patients (DICOM SPECT/CT, "
                                   "segmentations, manifests) under DIR/phantoms, run `dosimetry` on each "
                                   "(DIR/patients) and `analyze` on their table (DIR/analysis). Without it: "
                                   "generate a synthetic paper-like cohort table (deterministic) and publish it "
                                   "as DIR/cohort.csv with the outputs of `analyze` on it, as one set. DIR must "
                                   "be new, empty or the folder of an earlier demo of the same kind.")
    p.add_argument("--out", default="demo_output", metavar="DIR", help="output folder (default demo_output)")
    p.add_argument("--cohort-seed", type=int, default=13, help="seed of the synthetic data, >= 0 (default 13)")
    p.add_argument("--phantoms", "--patients", dest="phantoms", type=int, default=0, metavar="N",
                   help="run the imaging chain on N phantom patients (default 0: the cohort table only); "
                        "--patients is the same option")
    p.add_argument("--jobs", type=int, default=1, help="patients in parallel with --phantoms (default 1)")
    add_analysis_options(p)
    p.set_defaults(func=run)


def _check_phantom_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} exists and is a file; choose a folder")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if entries and not (PHANTOM_DEMO_MARKER in entries and entries <= _PHANTOM_DEMO_ENTRIES):
            raise InputError(f"output folder {out} is not empty and was not written by the phantom demo; choose a "
                             "new or empty folder")


def _run_phantoms(args, settings) -> int:
    from LuDoseResponseLib.analysis.outputs import REPORT_HTML
    from LuDoseResponseLib.analysis.summary import summary_text
    from LuDoseResponseLib.files import write_text_atomic
    from LuDoseResponseLib.pipeline.cohort_run import run_phantom_demo

    out = Path(args.out)
    n = non_negative(args.phantoms, "--phantoms")
    _check_phantom_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / PHANTOM_DEMO_MARKER, json.dumps({"patients": n, "seed": args.cohort_seed}) + "\n")
    jobs = max(1, non_negative(args.jobs, "--jobs"))
    with patient_progress(args) as progress:
        cohort, (_, result) = run_phantom_demo(out, n_patients=n, seed=args.cohort_seed, jobs=jobs,
                                               settings=settings, progress=progress)
    print(summary_text(result.to_dict()))
    print(f"  outputs: {out}  (phantoms/, patients/, analysis/)")
    print(f"  report: {out / 'analysis' / REPORT_HTML}")
    return cohort_exit_code("demo", cohort)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import REPORT_HTML, run_table_cohort
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

    settings = settings_from_args(args)
    seed = non_negative(args.cohort_seed, "--cohort-seed")
    if args.phantoms:
        return _run_phantoms(args, settings)
    run = run_table_cohort(lambda: generate_cohort(seed=seed), args.out, settings)
    print_run(run)
    print(f"  report: {run.files[REPORT_HTML]}")
    return 0
