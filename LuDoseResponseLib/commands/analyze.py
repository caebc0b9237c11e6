"""``ludoseresponse analyze COHORT.csv --out DIR``: the paper's cohort statistics."""

from __future__ import annotations

import argparse
import sys

from LuDoseResponseLib.errors import InputError


def float_list(text: str) -> tuple[float, ...]:
    """Parse '76,135' into (76.0, 135.0) for argparse."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The contract's analysis options, shared by `analyze` and `demo`."""
    p.add_argument("--responder-threshold", type=float, default=0.66,
                   help="responder when dv >= this (default 0.66: RECIST 30%% diameter = 66%% volume)")
    p.add_argument("--min-baseline-volume", type=float, default=4.0,
                   help="exclude tumours below this baseline volume in cm3 (default 4; 0 disables)")
    p.add_argument("--glmm-method", choices=("laplace", "agq"), default="laplace",
                   help="GLMM likelihood: Laplace (default) or adaptive Gauss-Hermite with 25 nodes")
    p.add_argument("--bootstrap", type=int, default=10000, help="ROC bootstrap replicates (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    p.add_argument("--doses", type=float_list, default=(76.0, 135.0),
                   help="doses in Gy for TCP, odds, sensitivity and specificity (default 76,135)")
    p.add_argument("--tcp-targets", type=float_list, default=(0.5, 0.9),
                   help="TCP levels at which to report the dose (default 0.5,0.9)")


def settings_from_args(args):
    from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings

    return AnalysisSettings(responder_threshold=args.responder_threshold,
                            min_baseline_volume_cm3=args.min_baseline_volume, glmm_method=args.glmm_method,
                            bootstrap=args.bootstrap, seed=args.seed, doses=tuple(args.doses),
                            tcp_targets=tuple(args.tcp_targets))


def register(sub) -> None:
    p = sub.add_parser("analyze", help="cohort statistics: analysis.json, tables, figures, report",
                       description="Validate a cohort CSV (one row per tumour) and run the paper's analyses: "
                                   "responder-group LMMs, the TCP GLMM, ROC, the mixed asymptotic "
                                   "dose-response model and the baseline-volume analysis.")
    p.add_argument("cohort", help="cohort CSV (columns: patient, tumor, grade, dose_gy, activity_gbq, "
                                  "baseline_volume_cm3, dv[, responder, dose_gy_sd, ...])")
    p.add_argument("--out", required=True, help="output folder")
    add_analysis_options(p)
    p.set_defaults(func=run)


def print_summary(result, out_dir) -> None:
    a = result.to_dict()
    print(f"analysed {a['summary']['all']['n_tumours']} tumours ({a['input']['n_excluded']} excluded) "
          f"-> {out_dir}")
    tcp = a.get("tcp", {})
    for g, pg in (tcp.get("per_grade") or {}).items():
        d = pg.get("dose_at_tcp", {})
        parts = [f"D(TCP={k}) = {v['dose_gy']:.0f} Gy" for k, v in d.items() if v.get("dose_gy") is not None]
        print(f"  {g}: TCP slope {pg.get('slope_per_gy'):.4g}/Gy; " + ", ".join(parts))
    if a.get("warnings"):
        print(f"  {len(a['warnings'])} warning(s): see analysis.json and report.html", file=sys.stderr)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import run_cohort_analysis

    if args.bootstrap < 0:
        raise InputError("--bootstrap must be >= 0")
    _, result = run_cohort_analysis(args.cohort, args.out, settings_from_args(args))
    print_summary(result, args.out)
    return 0
