"""``ludoseresponse cohort MANIFEST... --out DIR [--jobs N | --scheduler ADDRESS]``: many patients, then
`analyze` on their table. Exit codes (cli.py): 0 all patients done, 4 some failed and were skipped (see
DIR/failures.json), 3 a patient hit a fault of the program, 2 a user error or every patient failed."""

from __future__ import annotations

import importlib.util

from LuDoseResponseLib.commands.analyze import add_analysis_options, settings_from_args
from LuDoseResponseLib.commands.patient_progress import cohort_exit_code, patient_progress
from LuDoseResponseLib.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("cohort", help="many patients' manifests -> cohort table -> cohort statistics",
                       description="Run `dosimetry` on every manifest (a local process pool with --jobs, or a "
                                   "Dask cluster with --scheduler), collect DIR/cohort.csv and run `analyze` on "
                                   "it into DIR/analysis. A failing patient is reported (DIR/failures.json) and "
                                   "skipped, and the exit code is then 4; patients whose outputs are up to date "
                                   "(same manifest, inputs, settings and version) are not recomputed.")
    p.add_argument("manifests", nargs="+", help="study manifests (TOML)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--jobs", type=int, default=1, help="patients in parallel in local processes (default %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the patients on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                        "tcp://host:8786) instead of local processes; needs `pip install .[cluster]`, and the "
                        "manifests, images and DIR on a file system every worker sees under the same paths")
    add_analysis_options(p)
    p.set_defaults(func=run)


def _check_scheduler_option(args) -> None:
    if args.scheduler is None:
        return
    if args.jobs != 1:
        raise InputError("--jobs sets the local processes; with --scheduler the cluster's workers run the patients: "
                         "give one of them")
    if importlib.util.find_spec("distributed") is None:
        raise InputError("--scheduler needs dask.distributed, which is not installed: pip install "
                         "'LuDoseResponseLib[cluster]' (or, in a checkout, pip install '.[cluster]')")


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
    from LuDoseResponseLib.analysis.summary import summary_text
    from LuDoseResponseLib.pipeline.cohort_run import run_cohort

    if args.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {args.jobs}")
    _check_scheduler_option(args)
    settings = settings_from_args(args)          # bad analysis options fail before any patient is run
    with patient_progress(args) as progress:
        cohort = run_cohort(args.manifests, args.out, jobs=args.jobs, scheduler=args.scheduler, progress=progress)
    _, result = run_cohort_analysis(cohort.cohort_csv, f"{args.out}/analysis", settings)
    print(summary_text(result.to_dict()))
    print(f"  outputs: {args.out}/analysis")
    return cohort_exit_code("cohort", cohort)
