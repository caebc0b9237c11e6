"""ROC of the model-predicted TCP per tumour (Warfvinge et al. 2024, Results: "the optimal threshold
(Youden J) TCP was 65 %, ... an odds ratio of 1.85 (95 % CI 0.71-4.85), and an absorbed dose of 76 Gy").

Model: ``glmer(responder ~ grade + dose_gy:grade + (1|patient), binomial)`` (Laplace), a separate
intercept and slope per grade, as the reference script (reference/stats/R/analyze.R, ``grade_sep``).
Two predictors per tumour of one grade:

- ``population``: expit(x'beta), the random effect set to 0 (R ``predict(re.form = NA)``); a monotone
  function of dose within a grade, so its ROC equals the dose ROC of that grade;
- ``conditional``: expit(x'beta + b_patient), with the patient conditional modes (BLUPs).

The population Youden threshold t is a TCP; it maps to the dose D = (logit t - a_g)/b_g on the grade's
population curve. The paper's "odds ratio" at the threshold is the odds t/(1 - t) (0.65/0.35 = 1.857, the
paper's 1.85), with the Wald CI exp(eta +- 1.96 se(eta)) of the GLMM linear predictor at D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import expit, logit

from LuDoseResponseLib import defaults
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.stats.glmm import fit_binomial_glmm
from LuDoseResponseLib.stats.roc import roc_analysis

FORMULA = "responder ~ grade + dose_gy:grade + (1 | patient)"
Z95 = 1.959963984540054


def _design(dose: np.ndarray, grade: np.ndarray, grades: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """lme4's columns for ``grade + dose_gy:grade``: (Intercept), grade<other>, then one slope per grade."""
    cols = [np.ones_like(dose)] + [(grade == g).astype(float) for g in grades[1:]]
    cols += [(grade == g) * dose for g in grades]
    names = ["(Intercept)"] + [f"grade{g}" for g in grades[1:]] + [f"grade{g}:dose_gy" for g in grades]
    return np.column_stack(cols), names


def predicted_tcp_roc(dose_gy: Sequence[float], grade: Sequence[str], responder: Sequence[int],
                      patient: Sequence[str], *, n_boot: int = defaults.BOOTSTRAP_REPLICATES,
                      seed: int = defaults.BOOTSTRAP_SEED) -> dict:
    """Per grade: the ROC of the population and the conditional predicted TCP, and the population Youden
    threshold as TCP, dose (Gy) and odds with 95 % CI. Grades with one tumour class give an InputError."""
    dose = np.asarray(dose_gy, dtype=float)
    grade_arr = np.asarray(grade, dtype=str)
    y = np.asarray(responder, dtype=int)
    grades = [g for g in defaults.GRADES if np.any(grade_arr == g)]
    if len(grades) == 0:
        raise InputError("predicted_tcp_roc: no tumours of a known grade")
    x, names = _design(dose, grade_arr, grades)
    fit = fit_binomial_glmm(y, x, np.asarray(patient, dtype=str), names=names, n_agq=1)
    eta_pop = x @ fit.fixef
    b = np.array([fit.ranef[str(p)] for p in np.asarray(patient, dtype=str)])
    out: dict = {"formula": FORMULA, "method": "laplace",
                 "coefficients": {n: float(v) for n, v in zip(names, fit.fixef, strict=True)},
                 "warnings": list(fit.warnings), "per_grade": {}}
    for k, g in enumerate(grades):
        idx = grade_arr == g
        a_g = fit.fixef[0] + (fit.fixef[k] if k > 0 else 0.0)
        slope = fit.fixef[len(grades) + k]
        pop = roc_analysis(y[idx], expit(eta_pop[idx]), doses=(), n_boot=n_boot, seed=seed).to_dict()
        cond = roc_analysis(y[idx], expit(eta_pop[idx] + b[idx]), doses=(), n_boot=n_boot, seed=seed).to_dict()
        thresholds = []
        for point in pop["youden"]:
            t = point["threshold_gy"]
            if not (t is not None and 0.0 < t < 1.0) or slope == 0.0:
                continue
            d = (float(logit(t)) - a_g) / slope
            xd = np.zeros(len(names))
            xd[0] = 1.0
            if k > 0:
                xd[k] = 1.0
            xd[len(grades) + k] = d
            se = math.sqrt(float(xd @ fit.vcov @ xd))
            eta = float(xd @ fit.fixef)
            thresholds.append({"tcp": t, "dose_gy": d, "sensitivity": point["sensitivity"],
                               "specificity": point["specificity"], "odds": t / (1.0 - t),
                               "odds_ci_low": math.exp(eta - Z95 * se), "odds_ci_high": math.exp(eta + Z95 * se)})
        for block in (pop, cond):
            block["youden"] = [{"threshold_tcp": p["threshold_gy"], "sensitivity": p["sensitivity"],
                                "specificity": p["specificity"]} for p in block["youden"]]
            block.pop("at_dose", None)
        out["per_grade"][g] = {"population": pop, "conditional": cond, "youden_population": thresholds}
    return out
