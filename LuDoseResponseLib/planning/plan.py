"""Dosimetry-guided treatment planning: how many more cycles, and how much activity, for this patient.

From the cycles imaged so far (:mod:`.inputs`) the dose per GBq of each tumour and kidney in future
cycles is predicted (:mod:`.prediction`), and each schedule is scored (:mod:`.schedules`): fixed
schedules of n more cycles of one activity (7.4 GBq by default), and free schedules of n more cycles
whose activities (3.7–11.1 GBq by default, half to one and a half of the standard 7.4 GBq) maximise the
expected tumour control. A schedule is feasible when every kidney VOI's predicted mean cumulative BED,
including the BED already received, stays within the limit: 27 Gy by default, or 40 Gy, the Iluminet
trial's limits (Sundlöv et al., Eur J Nucl Med Mol Imaging 2022;49:3830; the paper's Methods). The
recommended schedule is the feasible one with the highest mean TCP; schedules within 0.001 of it count
as equal, and of those the one with the fewest cycles (then the least activity) is chosen.

This is a research tool: every plan states so and lists each assumption it rests on.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from LuDoseResponseLib import __version__
from LuDoseResponseLib.defaults import GRADES
from LuDoseResponseLib.dosimetry.bed import KIDNEY_ALPHA_BETA_GY, KIDNEY_REPAIR_HALF_TIME_H, bed_mono_exponential
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.planning.inputs import PatientDosimetry, read_dosimetry
from LuDoseResponseLib.planning.prediction import (
    DEFAULT_KIDNEY_CV,
    DEFAULT_LOG_SLOPE_SD,
    DEFAULT_PRIOR_DF,
    DEFAULT_TUMOUR_CV,
    MODELS,
    TUMOUR_DECREASE_PER_CYCLE,
    TrendModel,
    fit_dose_per_gbq,
)
from LuDoseResponseLib.planning.schedules import LIMIT_STATISTICS, Evaluation, KidneyTerm, Problem, TumourTerm
from LuDoseResponseLib.planning.tcp_curve import PAPER_CITATION, TcpCurve, paper_tcp_curve, tcp_curve_from_analysis

log = logging.getLogger(__name__)

SCHEMA = "ludoseresponse.plan/1"
RESEARCH_NOTICE = ("RESEARCH TOOL - NOT FOR CLINICAL DECISIONS. These schedules are model predictions resting on "
                   "the assumptions listed; they are not validated for treatment and must not replace the "
                   "judgement of the treating team.")
#: the paper excluded tumours below 4 cm³ from its TCP model (Methods)
MIN_TCP_MODEL_MASS_G = 4.0
#: schedules whose mean TCP is within this of the best count as equal; the one with fewest cycles is chosen
TCP_TIE = 1e-3


@dataclass(frozen=True)
class PlanSettings:
    """The planner's options; defaults as documented in the module docstrings."""

    kidney_bed_limit_gy: float = 27.0
    kidney_limit_on: str = "mean"                    # or "upper95": the upper 95 % bound is held to the limit
    fixed_activity_gbq: float = 7.4
    min_activity_gbq: float = 3.7
    max_activity_gbq: float = 11.1
    max_total_cycles: int = 9
    tumour_model: str = "decreasing"
    kidney_model: str = "constant"
    tumour_cv: float = DEFAULT_TUMOUR_CV
    kidney_cv: float = DEFAULT_KIDNEY_CV
    tumour_decrease_per_cycle: float | None = None   # None: by grade, Roth et al. 2022
    kidney_decrease_per_cycle: float = 0.0
    log_slope_sd: float = DEFAULT_LOG_SLOPE_SD
    prior_df: float = DEFAULT_PRIOR_DF
    alpha_beta_gy: float = KIDNEY_ALPHA_BETA_GY
    repair_half_time_h: float = KIDNEY_REPAIR_HALF_TIME_H
    grade: str | None = None                         # None: the grade in run.json

    def __post_init__(self):
        for name in ("kidney_bed_limit_gy", "fixed_activity_gbq", "min_activity_gbq", "max_activity_gbq",
                     "tumour_cv", "kidney_cv", "alpha_beta_gy", "repair_half_time_h"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                    and value > 0):
                raise InputError(f"{name} must be a finite number > 0, got {value!r}")
        if self.min_activity_gbq > self.max_activity_gbq:
            raise InputError(f"min_activity_gbq ({self.min_activity_gbq:g}) exceeds max_activity_gbq "
                             f"({self.max_activity_gbq:g})")
        if isinstance(self.max_total_cycles, bool) or not isinstance(self.max_total_cycles, int) \
                or not 1 <= self.max_total_cycles <= 20:
            raise InputError(f"max_total_cycles must be a whole number from 1 to 20, got {self.max_total_cycles!r}")
        if self.kidney_limit_on not in LIMIT_STATISTICS:
            raise InputError(f"kidney_limit_on must be one of {LIMIT_STATISTICS}, got {self.kidney_limit_on!r}")
        for name in ("tumour_model", "kidney_model"):
            if getattr(self, name) not in MODELS:
                raise InputError(f"{name} must be one of {MODELS}, got {getattr(self, name)!r}")
        if self.grade is not None and self.grade not in GRADES:
            raise InputError(f"grade must be one of {GRADES}, got {self.grade!r}")

    def trend(self, kind: str, grade: str) -> TrendModel:
        if kind == "tumour":
            decrease = self.tumour_decrease_per_cycle
            decrease = TUMOUR_DECREASE_PER_CYCLE[grade] if decrease is None else decrease
            return TrendModel(self.tumour_model, decrease if self.tumour_model == "decreasing" else 0.0,
                              self.log_slope_sd, self.tumour_cv, self.prior_df)
        return TrendModel(self.kidney_model, self.kidney_decrease_per_cycle if self.kidney_model == "decreasing"
                          else 0.0, self.log_slope_sd, self.kidney_cv, self.prior_df)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Plan:
    """A patient's plan: every schedule considered, the recommended ones, the fits, assumptions, warnings."""

    patient_id: str
    grade: str
    settings: PlanSettings
    curve: TcpCurve
    cycles_received: dict[int, float]
    tumour_terms: tuple[TumourTerm, ...]
    kidney_terms: tuple[KidneyTerm, ...]
    evaluations: tuple[Evaluation, ...]
    recommended: dict[str, int | None]
    assumptions: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    inputs: tuple[Path, ...] = ()

    @property
    def best(self) -> Evaluation | None:
        i = self.recommended.get("overall")
        return None if i is None else self.evaluations[i]

    def _schedule_dict(self, i: int, e: Evaluation) -> dict:
        s = e.schedule
        return {"id": i, "kind": s.kind, "label": s.label, "n_further_cycles": s.n_cycles, "cycles": list(s.cycles),
                "activities_gbq": list(s.activities_gbq), "total_activity_gbq": float(sum(s.activities_gbq)),
                "feasible": e.feasible, "kidney_limit_binds": e.limit_binds,
                "mean_tcp": e.objective_tcp, "mean_tcp_ci": list(e.objective_ci),
                "max_kidney_bed_gy": e.max_kidney_bed_gy, "limited_kidney_bed_gy": e.limited_bed_gy,
                "tumours": e.tumours, "kidneys": e.kidneys}

    def to_dict(self) -> dict:
        last = max(self.cycles_received)
        future = list(range(last + 1, max(last, self.settings.max_total_cycles) + 1))
        return {
            "schema": SCHEMA, "notice": RESEARCH_NOTICE,
            "software": {"name": "LuDoseResponse", "version": __version__},
            "inputs": [str(p) for p in self.inputs],
            "patient": {"id": self.patient_id, "grade": self.grade},
            "settings": self.settings.to_dict(),
            "assumptions": list(self.assumptions),
            "tcp_curve": self.curve.to_dict(),
            "received": {
                "cycles": {str(k): {"activity_gbq": v} for k, v in self.cycles_received.items()},
                "tumours": {t.name: {"dose_gy": t.received_gy, "dose_sd_gy": math.sqrt(t.received_var)}
                            for t in self.tumour_terms},
                "kidneys": {k.name: {"bed_gy": k.received_bed_gy, "bed_sd_gy": math.sqrt(k.received_var)}
                            for k in self.kidney_terms}},
            "predictions": {
                "tumours": {t.name: {**t.fit.to_dict(), "future": t.fit.predicted(future)} for t in self.tumour_terms},
                "kidneys": {k.name: {**k.fit.to_dict(), "g_factor": k.g_factor, "future": k.fit.predicted(future)}
                            for k in self.kidney_terms}},
            "schedules": [self._schedule_dict(i, e) for i, e in enumerate(self.evaluations)],
            "recommended": self.recommended,
            "warnings": list(self.warnings),
        }

    def to_table(self):
        """plan.csv: one row per schedule and structure (tumour or kidney)."""
        import pandas as pd

        rows = []
        for i, e in enumerate(self.evaluations):
            s = e.schedule
            base = {"schedule": i, "kind": s.kind, "label": s.label, "n_further_cycles": s.n_cycles,
                    "activities_gbq": " ".join(f"{a:.3f}" for a in s.activities_gbq),
                    "total_activity_gbq": float(sum(s.activities_gbq)), "feasible": int(e.feasible),
                    "recommended": int(i == self.recommended.get("overall")), "mean_tcp": e.objective_tcp,
                    "mean_tcp_ci_low": e.objective_ci[0], "mean_tcp_ci_high": e.objective_ci[1]}
            for name, t in e.tumours.items():
                rows.append({**base, "structure": name, "structure_type": "tumour", **t})
            for name, k in e.kidneys.items():
                rows.append({**base, "structure": name, "structure_type": "kidney", **k})
        return pd.DataFrame(rows)


def _assumptions(settings: PlanSettings, grade: str, curve: TcpCurve, tumour_model: TrendModel,
                 kidney_model: TrendModel) -> tuple[str, ...]:
    trend = (f"tumour dose per GBq falls by {tumour_model.decrease_per_cycle:.0%} per cycle a priori (Roth et al., "
             f"J Nucl Med 2022;63:399, the paper's reference 7, for {grade}), log-slope prior SD "
             f"{tumour_model.log_slope_sd:g} per cycle (assumed), updated by the patient's own cycles"
             if tumour_model.kind == "decreasing" else "tumour dose per GBq is constant over cycles")
    kidney = ("kidney dose per GBq is constant over cycles" if kidney_model.kind == "constant" else
              f"kidney dose per GBq falls by {kidney_model.decrease_per_cycle:.0%} per cycle a priori")
    return (
        trend,
        kidney,
        f"inter-cycle variability of the true dose per GBq about the trend: CV {settings.tumour_cv:.0%} for tumours "
        f"and {settings.kidney_cv:.0%} for kidneys (assumed, log-normal; the kidney value is of the order of the "
        "13 % single-cycle uncertainty of kidney SPECT dosimetry, Staanum et al., EJNMMI Phys 2021;8:78, plus "
        f"biological variation), pooled with the patient's residual scatter (prior weight {settings.prior_df:g} "
        "cycles) when there are more cycles than trend parameters",
        "measured doses carry their stated SDs (dose_sd_gy), independent between cycles and structures",
        "future cycles follow the last imaged one without a gap; cycle number is the only time variable",
        f"kidney BED: linear-quadratic model with a mono-exponential dose rate, alpha/beta {settings.alpha_beta_gy:g} "
        f"Gy, repair half-time {settings.repair_half_time_h:g} h (dosimetry.bed), future effective half-life = the "
        "mean of the kidney's measured ones, complete repair between cycles (cumulative BED = sum)",
        f"the limit ({settings.kidney_bed_limit_gy:g} Gy) applies to the predicted "
        + ("mean cumulative BED of every kidney VOI in organ_cycles.csv, including the BED already received; the "
           "true BED exceeds a limit met by the mean in a large share of patients (its upper 95 % bound is given)"
           if settings.kidney_limit_on == "mean" else
           "upper 95 % bound of the cumulative BED of every kidney VOI in organ_cycles.csv, including the BED "
           "already received"),
        f"TCP: population curve ({curve.source}), random effect 0, evaluated at the predicted mean cumulative dose "
        "over all cycles; its CI adds the curve's coefficient covariance and the dose's predictive variance",
        "the plan maximises the mean TCP over the patient's tumours (the expected fraction controlled); tumours "
        "are independent; no toxicity other than the kidney BED limit (e.g. bone marrow) is considered",
        "intervals are 95 %: log-normal with the predicted mean and variance for doses and BED, logit scale for TCP",
        f"all tumours have the patient's grade ({grade}); tumours below 4 cm3 are outside the TCP curve's data",
        f"schedules: n more cycles of {settings.fixed_activity_gbq:g} GBq, or n more cycles with any activity from "
        f"{settings.min_activity_gbq:g} to {settings.max_activity_gbq:g} GBq (continuous, not rounded to what can be "
        f"dispensed), at most {settings.max_total_cycles} cycles in all; schedules within {TCP_TIE:g} of the best mean "
        "TCP count as equal and the one with fewest cycles is recommended",
    ) + (("the paper's G2 curve: intercept -1.44 (SE 0.78), slope 0.027 per Gy; its SE of the slope and the "
          "intercept-slope covariance are solved from the paper's 95 % CIs at 76 Gy (odds 0.71-4.85) and 135 Gy "
          "(TCP 64 %-98 %)",) if curve.source == PAPER_CITATION else ())


def _grade(dosimetry: PatientDosimetry, settings: PlanSettings) -> str:
    grade = settings.grade or dosimetry.grade
    if grade is None:
        raise InputError(f"patient {dosimetry.patient_id!r}: no tumour grade (run.json has none); the TCP curve "
                         "depends on the grade: give grade G1 or G2")
    return grade


def plan_treatment(dosimetry: PatientDosimetry, settings: PlanSettings | None = None,
                   curve: TcpCurve | None = None) -> Plan:
    """Score every fixed and free schedule for one patient and pick the best feasible ones (module docstring).

    ``curve`` defaults to the paper's G2 curve (:func:`paper_tcp_curve`). Raises InputError when the
    limit is below the BED already received, or when the curve's grade is not the patient's.
    """
    settings = settings or PlanSettings()
    grade = _grade(dosimetry, settings)
    curve = curve or paper_tcp_curve(grade)
    if curve.grade != grade:
        raise InputError(f"the TCP curve is for grade {curve.grade} but the patient's tumours are {grade}")
    warns = list(dosimetry.warnings)
    tumour_model, kidney_model = settings.trend("tumour", grade), settings.trend("kidney", grade)
    tumours = []
    for t in dosimetry.tumours:
        fit = fit_dose_per_gbq(f"tumour {t.name!r}", t.cycles, t.dose_gy, t.dose_sd_gy, t.activity_gbq, tumour_model)
        tumours.append(TumourTerm(t.name, float(sum(t.dose_gy)), float(np.sum(np.square(t.dose_sd_gy))), fit))
        if t.mass_g is not None and t.mass_g < MIN_TCP_MODEL_MASS_G:
            warns.append(f"tumour {t.name!r}: {t.mass_g:.3g} g is below the 4 cm3 the TCP curve was fitted on "
                         "(the paper excluded smaller tumours); its TCP is an extrapolation")
    kidneys = []
    for k in dosimetry.kidneys:
        fit = fit_dose_per_gbq(f"kidney {k.name!r}", k.cycles, k.dose_gy, k.dose_sd_gy, k.activity_gbq, kidney_model)
        g = bed_mono_exponential(1.0, float(np.mean(k.t_eff_h)), alpha_beta_gy=settings.alpha_beta_gy,
                                 repair_half_time_h=settings.repair_half_time_h).g_factor
        kidneys.append(KidneyTerm(k.name, float(sum(k.bed_gy)), float(np.sum(np.square(k.bed_sd_gy))), fit, g,
                                  settings.alpha_beta_gy))
    limit = settings.kidney_bed_limit_gy
    over = [k for k in kidneys if k.received_bed_gy > limit]
    if over:
        raise InputError(f"the kidney BED limit ({limit:g} Gy) is below the BED already received by "
                         + ", ".join(f"{k.name} ({k.received_bed_gy:.3g} Gy)" for k in over)
                         + "; no further cycle can be planned under it (raise kidney_bed_limit_gy if that is "
                         "clinically intended)")
    n_received = len(dosimetry.activity_gbq)
    remaining = max(settings.max_total_cycles - n_received, 0)
    if remaining == 0:
        warns.append(f"the patient has had {n_received} cycles, the maximum considered ({settings.max_total_cycles})")
    problem = Problem(tumours, kidneys, curve, limit, max(dosimetry.activity_gbq), settings.kidney_limit_on)
    fixed = [problem.fixed(n, settings.fixed_activity_gbq) for n in range(remaining + 1)]
    free = [problem.free(n, settings.min_activity_gbq, settings.max_activity_gbq) for n in range(1, remaining + 1)]
    fixed = _mark_fixed_binding(fixed)
    if fixed[0].limited_bed_gy > limit:
        warns.append(f"the upper 95 % bound of the BED already received ({fixed[0].limited_bed_gy:.3g} Gy) exceeds the "
                     f"{limit:g} Gy limit: no further cycle is planned")
    evaluations = tuple(fixed + free)
    by_kind = {kind: [i for i, e in enumerate(evaluations) if e.schedule.kind == kind] for kind in ("fixed", "free")}
    recommended = {kind: _best(evaluations, ids) for kind, ids in by_kind.items()}
    recommended["overall"] = _best(evaluations, [i for i in recommended.values() if i is not None])
    if recommended["free"] is None and remaining:
        warns.append(f"no free-activity schedule fits under the kidney limit: even one cycle of "
                     f"{settings.min_activity_gbq:g} GBq would exceed {limit:g} Gy")
    for w in warns:
        log.warning("plan: %s", w)
    return Plan(dosimetry.patient_id, grade, settings, curve, dict(dosimetry.activity_gbq), tuple(tumours),
                tuple(kidneys), evaluations, recommended,
                _assumptions(settings, grade, curve, tumour_model, kidney_model), tuple(dict.fromkeys(warns)),
                dosimetry.files)


def _mark_fixed_binding(fixed: list[Evaluation]) -> list[Evaluation]:
    """A fixed schedule binds when it is feasible and one more cycle would not be."""
    return [replace(e, limit_binds=e.feasible and n + 1 < len(fixed) and not fixed[n + 1].feasible)
            for n, e in enumerate(fixed)]


def _best(evaluations: tuple[Evaluation, ...], ids: list[int]) -> int | None:
    """The feasible schedule with the fewest cycles (then least activity) within TCP_TIE of the best mean TCP."""
    ids = [i for i in ids if evaluations[i].feasible]
    if not ids:
        return None
    top = max(evaluations[i].objective_tcp for i in ids)
    near = [i for i in ids if evaluations[i].objective_tcp >= top - TCP_TIE]
    return min(near, key=lambda i: (evaluations[i].schedule.n_cycles, sum(evaluations[i].schedule.activities_gbq),
                                    -evaluations[i].objective_tcp))


def write_plan(plan: Plan, out_dir: str | Path, *, extra_inputs: tuple[Path, ...] = ()) -> dict[str, Path]:
    """Publish plan.json, plan.csv and plan.png in ``out_dir`` as one output set."""
    from LuDoseResponseLib.output_set import output_set
    from LuDoseResponseLib.planning.figure import plan_figure

    inputs = list(plan.inputs) + list(extra_inputs)
    with output_set(out_dir, command="plan", inputs=inputs) as run:
        document = plan.to_dict()
        document["inputs"] = [str(p) for p in inputs]
        (run.stage / "plan.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        plan.to_table().to_csv(run.stage / "plan.csv", index=False)
        plan_figure(plan, run.stage / "plan.png")
    return dict(run.files)


def plan_from_folder(dosimetry_dir: str | Path, out_dir: str | Path, settings: PlanSettings | None = None,
                     cohort_model: str | Path | None = None) -> tuple[Plan, dict[str, Path]]:
    """Read a dosimetry output folder, plan, and publish the plan in ``out_dir``.

    ``cohort_model``: an ``analysis.json`` (or its folder) whose TCP curve for the patient's grade is used;
    None for the paper's G2 curve.
    """
    settings = settings or PlanSettings()
    dosimetry = read_dosimetry(dosimetry_dir)
    curve, extra = None, ()
    if cohort_model is not None:
        curve = tcp_curve_from_analysis(cohort_model, _grade(dosimetry, settings))
        p = Path(cohort_model)
        extra = (p / "analysis.json" if p.is_dir() else p,)
    plan = plan_treatment(dosimetry, settings, curve)
    return plan, write_plan(plan, out_dir, extra_inputs=extra)
