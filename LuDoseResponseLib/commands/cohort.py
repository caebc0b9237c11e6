"""``ludoseresponse cohort MANIFEST... --out DIR [--jobs N]``: many patients, then `analyze` on their table."""

from __future__ import annotations

import sys

from LuDoseResponseLib.commands.analyze import add_analysis_options, settings_from_args


def register(sub) -> None:
    p = sub.add_parser("cohort", help="many patients' manifests -> cohort table -> cohort statistics",
                       description="Run `dosimetry` on every manifest (a process pool with --jobs), collect "
                                   "DIR/cohort.csv and run `analyze` on it into DIR/analysis. A failing patient "
                                   "is reported and skipped; patients already done are not recomputed.")
    p.add_argument("manifests", nargs="+", help="study manifests (TOML)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--jobs", type=int, default=1, help="parallel patients (default %(default)s)")
    add_analysis_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
    from LuDoseResponseLib.pipeline.cohort_run import run_cohort

    cohort_csv, failures = run_cohort(args.manifests, args.out, jobs=max(1, args.jobs))
    for m, err in failures.items():
        print(f"skipped {m}: {err}", file=sys.stderr)
    from LuDoseResponseLib.analysis.summary import summary_text

    _, result = run_cohort_analysis(cohort_csv, f"{args.out}/analysis", settings_from_args(args))
    print(summary_text(result.to_dict()))
    print(f"  outputs: {args.out}/analysis")
    return 1 if failures else 0
