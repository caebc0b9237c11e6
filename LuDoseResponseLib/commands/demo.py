"""``ludoseresponse demo --out DIR``: the whole analysis on built-in synthetic data."""

from __future__ import annotations

from pathlib import Path

from LuDoseResponseLib.commands.analyze import add_analysis_options, print_summary, settings_from_args
from LuDoseResponseLib.files import atomic_path


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on a built-in synthetic cohort",
                       description="Generate a synthetic paper-like cohort (deterministic), write it as "
                                   "DIR/cohort.csv and run `analyze` on it into DIR.")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--cohort-seed", type=int, default=13, help="seed of the synthetic cohort (default 13)")
    add_analysis_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cohort_csv = out / "cohort.csv"
    with atomic_path(cohort_csv) as tmp:
        generate_cohort(seed=args.cohort_seed).to_csv(tmp, index=False)
    _, result = run_cohort_analysis(cohort_csv, out, settings_from_args(args))
    print_summary(result, out)
    print(f"  report: {out / 'report.html'}")
    return 0
