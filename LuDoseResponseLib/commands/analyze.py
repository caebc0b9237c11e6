"""``ludoseresponse analyze COHORT.csv --out DIR``: the paper's cohort statistics."""

from __future__ import annotations

import argparse

from LuDoseResponseLib import defaults
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.parsing import parse_number, parse_number_list


def _listed(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The contract's analysis options, shared by `analyze` and `demo` (parsed by ``settings_from_args``)."""
    p.add_argument("--responder-threshold", metavar="DV", default=f"{defaults.RESPONDER_THRESHOLD:g}",
                   help="responder when dv >= this (default %(default)s: RECIST 30%% diameter = 66%% volume)")
    p.add_argument("--min-baseline-volume", metavar="CM3", default=f"{defaults.MIN_BASELINE_VOLUME_CM3:g}",
                   help="exclude tumours below this baseline volume in cm3 (default %(default)s; 0 disables)")
    p.add_argument("--glmm-method", choices=defaults.GLMM_METHODS, default=defaults.GLMM_METHOD,
                   help=f"GLMM likelihood: Laplace or adaptive Gauss-Hermite with {defaults.AGQ_NODES} nodes "
                        "(default %(default)s)")
    p.add_argument("--bootstrap", type=int, metavar="N", default=defaults.BOOTSTRAP_REPLICATES,
                   help="ROC bootstrap replicates, >= 0 (default %(default)s)")
    p.add_argument("--seed", type=int, metavar="N", default=defaults.BOOTSTRAP_SEED,
                   help="bootstrap seed, >= 0 (default %(default)s)")
    p.add_argument("--doses", metavar="GY[,GY...]", default=_listed(defaults.REPORT_DOSES_GY),
                   help="doses in Gy for TCP, odds, sensitivity and specificity (default %(default)s)")
    p.add_argument("--tcp-targets", metavar="P[,P...]", default=_listed(defaults.TCP_TARGETS),
                   help="TCP levels at which to report the dose (default %(default)s)")


def non_negative(value: int, flag: str) -> int:
    if value < 0:
        raise InputError(f"{flag} must be >= 0, got {value}")
    return value


def settings_from_args(args):
    """``AnalysisSettings`` from the options of ``add_analysis_options`` (InputError naming the flag)."""
    from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings

    return AnalysisSettings(responder_threshold=parse_number(args.responder_threshold, "--responder-threshold"),
                            min_baseline_volume_cm3=parse_number(args.min_baseline_volume, "--min-baseline-volume"),
                            glmm_method=args.glmm_method, bootstrap=non_negative(args.bootstrap, "--bootstrap"),
                            seed=non_negative(args.seed, "--seed"), doses=parse_number_list(args.doses, "--doses"),
                            tcp_targets=parse_number_list(args.tcp_targets, "--tcp-targets"))


def register(sub) -> None:
    p = sub.add_parser("analyze", help="cohort statistics: analysis.json, tables, figures, report",
                       description="Validate a cohort CSV (one row per tumour) and run the paper's analyses: "
                                   "responder-group LMMs, the TCP GLMM, ROC, the mixed asymptotic "
                                   "dose-response model and the baseline-volume analysis. The outputs are "
                                   "published in DIR as one set: DIR holds the previous run or this one, "
                                   "never a mix. DIR must be new, empty or the folder of an earlier run.")
    p.add_argument("cohort", help="cohort CSV (columns: patient, tumor, grade, dose_gy, activity_gbq, "
                                  "baseline_volume_cm3, dv[, responder, dose_gy_sd, ...])")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_analysis_options(p)
    p.set_defaults(func=run)


def print_run(run) -> None:
    """The summary of a finished run and where its outputs are (stdout)."""
    from LuDoseResponseLib.analysis.summary import summary_text

    print(summary_text(run.result.to_dict()))
    if run.out_dir is not None:
        print(f"  outputs: {run.out_dir}")


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import run_cohort

    print_run(run_cohort(args.cohort, args.out, settings_from_args(args)))
    return 0
