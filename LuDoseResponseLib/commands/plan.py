"""``ludoseresponse plan MANIFEST --out DIR``: a dosimetry-guided treatment plan for one patient (research tool).

Runs the patient dosimetry into DIR/dosimetry (or reads an earlier dosimetry folder given with
``--dosimetry``) and publishes the plan (plan.json, plan.csv, plan.png) in DIR/plan.
"""

from __future__ import annotations

import os
from pathlib import Path

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.parsing import parse_number, parse_number_list

_DEFAULTS = {"limit": "27", "fixed": "7.4", "range": "3.7,11.1", "cycles": 9, "tumour_cv": "0.2", "kidney_cv": "0.15"}


def register(sub) -> None:
    p = sub.add_parser("plan", help="research tool: cycles and activities that maximise TCP under the kidney BED limit",
                       description="RESEARCH TOOL, NOT FOR CLINICAL DECISIONS. Run the patient dosimetry of "
                                   "MANIFEST into DIR/dosimetry (or read an earlier dosimetry output with "
                                   "--dosimetry), predict each tumour's and kidney's dose per GBq in future cycles, "
                                   "and score fixed (n x 7.4 GBq) and free-activity schedules: predicted cumulative "
                                   "tumour dose, TCP and kidney BED, each with a 95%% interval. The recommended "
                                   "schedule maximises the mean TCP with every kidney's predicted mean cumulative "
                                   "BED within the limit. Writes DIR/plan/plan.json, plan.csv and plan.png; "
                                   "plan.json lists every assumption.")
    p.add_argument("manifest", nargs="?", help="study manifest (TOML) with tumour and kidney VOIs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (DIR/dosimetry, DIR/plan)")
    p.add_argument("--dosimetry", metavar="FOLDER",
                   help="plan from this earlier dosimetry output folder instead of running the dosimetry")
    p.add_argument("--cohort-model", metavar="ANALYSIS",
                   help="analysis.json (or its folder) whose TCP curve for the patient's grade scores the plan "
                        "(default: the paper's G2 curve)")
    p.add_argument("--grade", choices=("G1", "G2"), help="tumour grade (default: the manifest's)")
    p.add_argument("--kidney-bed-limit", metavar="GY", default=_DEFAULTS["limit"],
                   help="limit on the predicted mean cumulative kidney BED, Gy (default %(default)s; Iluminet "
                        "allowed 40 for some patients)")
    p.add_argument("--kidney-limit-on", choices=("mean", "upper95"), default="mean",
                   help="what the limit holds: the predicted mean cumulative BED (default) or its upper 95%% "
                        "bound (the safer choice: with the mean, the true BED exceeds the limit in many patients)")
    p.add_argument("--fixed-activity", metavar="GBQ", default=_DEFAULTS["fixed"],
                   help="activity per cycle of the fixed schedules (default %(default)s)")
    p.add_argument("--activity-range", metavar="LO,HI", default=_DEFAULTS["range"],
                   help="bounds of the free-activity schedules, GBq per cycle (default %(default)s)")
    p.add_argument("--max-cycles", type=int, metavar="N", default=_DEFAULTS["cycles"],
                   help="most cycles in total, those given included (default %(default)s)")
    p.add_argument("--tumour-model", choices=("decreasing", "constant"), default="decreasing",
                   help="tumour dose per GBq over cycles (default %(default)s: Roth et al. 2022's mean decrease "
                        "per grade, fitted to the patient's cycles)")
    p.add_argument("--kidney-model", choices=("constant", "decreasing"), default="constant",
                   help="kidney dose per GBq over cycles (default %(default)s)")
    p.add_argument("--tumour-cv", metavar="CV", default=_DEFAULTS["tumour_cv"],
                   help="assumed inter-cycle CV of tumour dose per GBq (default %(default)s)")
    p.add_argument("--kidney-cv", metavar="CV", default=_DEFAULTS["kidney_cv"],
                   help="assumed inter-cycle CV of kidney dose per GBq (default %(default)s)")
    p.add_argument("--rtdose", action="store_true", help="dosimetry: also write each cycle's dose map as RT Dose")
    p.set_defaults(func=run)


def settings_from_args(args):
    from LuDoseResponseLib.planning.plan import PlanSettings

    bounds = parse_number_list(args.activity_range, "--activity-range")
    if len(bounds) != 2:
        raise InputError(f"--activity-range: give two numbers LO,HI in GBq, got {args.activity_range!r}")
    try:
        return PlanSettings(kidney_bed_limit_gy=parse_number(args.kidney_bed_limit, "--kidney-bed-limit"),
                            kidney_limit_on=args.kidney_limit_on,
                            fixed_activity_gbq=parse_number(args.fixed_activity, "--fixed-activity"),
                            min_activity_gbq=bounds[0], max_activity_gbq=bounds[1], max_total_cycles=args.max_cycles,
                            tumour_model=args.tumour_model, kidney_model=args.kidney_model,
                            tumour_cv=parse_number(args.tumour_cv, "--tumour-cv"),
                            kidney_cv=parse_number(args.kidney_cv, "--kidney-cv"), grade=args.grade)
    except InputError as exc:
        raise _with_flags(exc) from None


#: library argument names -> the options that set them
_FLAGS = {"kidney_bed_limit_gy": "--kidney-bed-limit", "fixed_activity_gbq": "--fixed-activity",
          "min_activity_gbq": "the --activity-range low bound", "max_activity_gbq": "the --activity-range high bound",
          "tumour_cv": "--tumour-cv", "kidney_cv": "--kidney-cv", "max_total_cycles": "--max-cycles",
          "give grade G1 or G2": "give --grade G1 or G2",
          "give a cohort model": "give --cohort-model"}


def _with_flags(exc: InputError) -> InputError:
    """The library's message with its argument names replaced by this command's options."""
    message = str(exc)
    for name, flag in _FLAGS.items():
        message = message.replace(name, flag)
    return InputError(message)


def _inside(path: Path, folder: Path) -> bool:
    p, f = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return p == f or f in p.parents


def run(args) -> int:
    from LuDoseResponseLib.planning.plan import plan_from_folder

    settings = settings_from_args(args)
    if (args.manifest is None) == (args.dosimetry is None):
        raise InputError("give either MANIFEST (to run the dosimetry) or --dosimetry FOLDER (an earlier one), "
                         "not both or neither")
    out = Path(args.out)
    if args.dosimetry is not None:
        dosimetry = Path(args.dosimetry)
        if _inside(out / "plan", dosimetry):
            raise InputError(f"--out {out} puts the plan inside the dosimetry folder {dosimetry}; choose another DIR")
    else:
        from LuDoseResponseLib.pipeline.patient import run_patient

        dosimetry = out / "dosimetry"
        run_patient(args.manifest, dosimetry, rtdose=args.rtdose)
    try:
        plan, files = plan_from_folder(dosimetry, out / "plan", settings, args.cohort_model)
    except InputError as exc:
        raise _with_flags(exc) from None
    print(plan_summary(plan))
    print(f"wrote {', '.join(sorted(files))} -> {out / 'plan'}")
    return 0


def plan_summary(plan) -> str:
    """Recommended schedules, one line each, under the research notice."""
    from LuDoseResponseLib.planning.plan import RESEARCH_NOTICE

    lines = [RESEARCH_NOTICE, f"patient {plan.patient_id} ({plan.grade}), kidney BED limit "
             f"{plan.settings.kidney_bed_limit_gy:g} Gy"]
    for kind in ("fixed", "free", "overall"):
        i = plan.recommended.get(kind)
        if i is None:
            lines.append(f"  {kind}: no feasible schedule")
            continue
        e = plan.evaluations[i]
        acts = ", ".join(f"{a:.2f}" for a in e.schedule.activities_gbq) or "-"
        lines.append(f"  {kind}: {e.schedule.label} (GBq: {acts}); mean TCP {e.objective_tcp:.2f} "
                     f"(95% CI {e.objective_ci[0]:.2f}-{e.objective_ci[1]:.2f}); max kidney BED "
                     f"{e.max_kidney_bed_gy:.1f} Gy")
    lines += [f"  warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
