"""``ludoseresponse analyze COHORT.csv --out DIR``: the paper's cohort statistics."""

from __future__ import annotations

import argparse
import sys

from LuDoseResponseLib import defaults
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


def _listed(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The contract's analysis options, shared by `analyze` and `demo`."""
    p.add_argument("--responder-threshold", type=float, default=defaults.RESPONDER_THRESHOLD,
                   help="responder when dv >= this (default %(default)s: RECIST 30%% diameter = 66%% volume)")
    p.add_argument("--min-baseline-volume", type=float, default=defaults.MIN_BASELINE_VOLUME_CM3,
                   help="exclude tumours below this baseline volume in cm3 (default %(default)s; 0 disables)")
    p.add_argument("--glmm-method", choices=defaults.GLMM_METHODS, default=defaults.GLMM_METHOD,
                   help=f"GLMM likelihood: Laplace or adaptive Gauss-Hermite with {defaults.AGQ_NODES} nodes "
                        "(default %(default)s)")
    p.add_argument("--bootstrap", type=int, default=defaults.BOOTSTRAP_REPLICATES,
                   help="ROC bootstrap replicates (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.BOOTSTRAP_SEED, help="bootstrap seed (default %(default)s)")
    p.add_argument("--doses", type=float_list, default=defaults.REPORT_DOSES_GY,
                   help="doses in Gy for TCP, odds, sensitivity and specificity "
                        f"(default {_listed(defaults.REPORT_DOSES_GY)})")
    p.add_argument("--tcp-targets", type=float_list, default=defaults.TCP_TARGETS,
                   help=f"TCP levels at which to report the dose (default {_listed(defaults.TCP_TARGETS)})")


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
