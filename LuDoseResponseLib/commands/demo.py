"""``ludoseresponse demo --out DIR``: the whole analysis on built-in synthetic data."""

from __future__ import annotations

from LuDoseResponseLib.commands.analyze import add_analysis_options, non_negative, print_run, settings_from_args


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on a built-in synthetic cohort",
                       description="Generate a synthetic paper-like cohort (deterministic) and publish it as "
                                   "DIR/cohort.csv together with the outputs of `analyze` on it, as one set. "
                                   "DIR must be new, empty or the folder of an earlier run.")
    p.add_argument("--out", default="demo_output", metavar="DIR", help="output folder (default demo_output)")
    p.add_argument("--cohort-seed", type=int, default=13, help="seed of the synthetic cohort, >= 0 (default 13)")
    add_analysis_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import REPORT_HTML, run_table_cohort
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

    settings = settings_from_args(args)
    seed = non_negative(args.cohort_seed, "--cohort-seed")
    run = run_table_cohort(lambda: generate_cohort(seed=seed), args.out, settings)
    print_run(run)
    print(f"  report: {run.files[REPORT_HTML]}")
    return 0
