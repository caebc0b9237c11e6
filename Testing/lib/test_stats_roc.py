"""ROC (LuDoseResponseLib.stats.roc) against pROC 1.18 and against analytic results.

References:
- ``roc.{G1,G2}.dose_gy`` of every public R JSON (pROC ``roc``/``auc``/``ci.auc``/``coords``), exact
  quantities at abs 1e-12 (README "Recommended tolerances"); the bootstrap CI, which is seed-dependent,
  at abs max(0.02, 3 x the spread over R's seeds 1..6 where recorded).
- scipy's Mann–Whitney U (AUC = U / (n_cases n_controls)), a brute-force DeLong from its definition
  and hand-worked small examples (ties, Youden ties, direction ">", the >= rule at a dose equal
  to a data value).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu, norm

from LuDoseResponseLib.errors import InputError, ModelFitError
from LuDoseResponseLib.stats.roc import _bootstrap_aucs, roc_analysis

PUBLIC = ("paper_like_s1202", "paper_like_s1102", "large_s201", "singular_s3026", "separation_s401",
          "unbalanced_s501", "nocutoff_s601")
GRADES = ("G1", "G2")
EXACT = 1e-12


def _num(x) -> float:
    return float(x)  # R writes +-Inf as the strings "Inf"/"-Inf"; float() reads both


@cache
def _load(ref_dir: str, name: str) -> tuple[pd.DataFrame, dict]:
    ref = Path(ref_dir)
    return pd.read_csv(ref / f"{name}.csv"), json.loads((ref / f"{name}.json").read_text())


@cache
def _fit(ref_dir: str, name: str, grade: str):
    df, _ = _load(ref_dir, name)
    d = df[df["grade"] == grade]
    return roc_analysis(d["responder"].to_numpy(int), d["dose_gy"].to_numpy(float))


def test_public_set_is_complete(stats_reference_dir):
    names = sorted(p.stem for p in Path(stats_reference_dir).glob("*.json"))
    assert names == sorted(PUBLIC)


@pytest.mark.parametrize("grade", GRADES)
@pytest.mark.parametrize("name", PUBLIC)
def test_exact_quantities_match_proc(stats_reference_dir, name, grade):
    _, ref = _load(str(stats_reference_dir), name)
    r = ref["roc"][grade]["dose_gy"]
    assert "error" not in r
    res = _fit(str(stats_reference_dir), name, grade)
    what = f"{name} {grade}"
    assert (res.n_cases, res.n_controls, res.direction) == (r["n_cases"], r["n_controls"], r["direction"]), what
    assert res.auc == pytest.approx(r["auc"], abs=EXACT), what
    assert res.auc_ci_delong[0] == pytest.approx(r["ci_delong"]["lower"], abs=EXACT), what
    assert res.auc_ci_delong[1] == pytest.approx(r["ci_delong"]["upper"], abs=EXACT), what

    ca = r["coords_all"]
    assert len(res.coords) == len(ca["threshold"]), what
    for p, t, se, sp in zip(res.coords, ca["threshold"], ca["sensitivity"], ca["specificity"], strict=True):
        t = _num(t)
        if math.isinf(t):
            assert p.threshold == t, what
        else:
            assert p.threshold == pytest.approx(t, abs=EXACT), what
        assert (p.sensitivity, p.specificity) == (pytest.approx(se, abs=EXACT), pytest.approx(sp, abs=EXACT)), what

    yb = r["youden_best"]
    assert len(res.youden) == len(yb["threshold"]), f"{what}: Youden rows"
    for p, t, se, sp, yj in zip(res.youden, yb["threshold"], yb["sensitivity"], yb["specificity"], yb["youden"],
                                strict=True):
        assert p.threshold == pytest.approx(_num(t), abs=EXACT), what
        assert p.sensitivity == pytest.approx(se, abs=EXACT) and p.specificity == pytest.approx(sp, abs=EXACT)
        assert p.sensitivity + p.specificity == pytest.approx(yj, abs=EXACT), "pROC youden = sens + spec"

    at = r["at_thresholds"]
    for i, dose in enumerate(at["threshold"]):
        p = res.at_dose[f"{dose:g}"]
        assert p.sensitivity == pytest.approx(at["sensitivity"][i], abs=EXACT), f"{what} sens@{dose}"
        assert p.specificity == pytest.approx(at["specificity"][i], abs=EXACT), f"{what} spec@{dose}"


@pytest.mark.parametrize("grade", GRADES)
@pytest.mark.parametrize("name", PUBLIC)
def test_bootstrap_ci_within_seed_spread(stats_reference_dir, name, grade):
    _, ref = _load(str(stats_reference_dir), name)
    r = ref["roc"][grade]["dose_gy"]
    res = _fit(str(stats_reference_dir), name, grade)
    b = r["ci_bootstrap"]
    assert (res.bootstrap_n, res.seed) == (b["boot_n"], b["seed"]) == (10000, 1)
    spread = 0.0
    if r.get("ci_bootstrap_other_seeds"):
        for key in ("lower", "median", "upper"):
            vals = [b[key]] + [s[key] for s in r["ci_bootstrap_other_seeds"]]
            spread = max(spread, max(vals) - min(vals))
    tol = max(0.02, 3.0 * spread)
    assert res.auc_ci_bootstrap[0] == pytest.approx(b["lower"], abs=tol)
    assert res.auc_ci_bootstrap[1] == pytest.approx(b["upper"], abs=tol)
    assert res.bootstrap_median == pytest.approx(b["median"], abs=tol)


@pytest.mark.parametrize("name", PUBLIC)
def test_perfect_separation_is_flagged_as_proc_warns(stats_reference_dir, name):
    _, ref = _load(str(stats_reference_dir), name)
    for g in GRADES:
        r = ref["roc"][g]["dose_gy"]
        res = _fit(str(stats_reference_dir), name, g)
        r_warns = r["warnings"] if isinstance(r["warnings"], list) else [r["warnings"]]
        proc_warned = any("AUC == 1" in w for w in r_warns)
        assert proc_warned == any("perfectly separates" in w for w in res.warnings), f"{name} {g}"
        if proc_warned:
            assert res.auc_ci_delong == (1.0, 1.0) and res.auc_ci_bootstrap == (1.0, 1.0)


@pytest.mark.parametrize("name", PUBLIC)
def test_auc_equals_mann_whitney_u_and_delong_from_definition(stats_reference_dir, name):
    df, _ = _load(str(stats_reference_dir), name)
    for g in GRADES:
        d = df[df["grade"] == g]
        res = _fit(str(stats_reference_dir), name, g)
        cases = d.loc[d["responder"] == 1, "dose_gy"].to_numpy()
        ctrls = d.loc[d["responder"] == 0, "dose_gy"].to_numpy()
        if res.direction == ">":
            cases, ctrls = -cases, -ctrls
        u = mannwhitneyu(cases, ctrls).statistic
        assert res.auc == pytest.approx(u / (cases.size * ctrls.size), abs=EXACT)
        # DeLong (1988) from the pair kernel psi(x, y) = 1 if x > y, 1/2 if equal
        psi = (cases[:, None] > ctrls[None, :]) + 0.5 * (cases[:, None] == ctrls[None, :])
        v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
        var = v10.var(ddof=1) / cases.size + v01.var(ddof=1) / ctrls.size
        lo, hi = norm.interval(0.95, loc=psi.mean(), scale=math.sqrt(var)) if var > 0 else (psi.mean(),) * 2
        assert res.auc_ci_delong == (pytest.approx(max(lo, 0.0), abs=EXACT), pytest.approx(min(hi, 1.0), abs=EXACT))


def test_hand_worked_youden_ties_and_midpoints():
    # cases {2, 4}, controls {1, 3}: thresholds -Inf, 1.5, 2.5, 3.5, Inf
    # sens 1, 1, .5, .5, 0; spec 0, .5, .5, 1, 1 -> sens+spec peaks (1.5) at 1.5 and 3.5
    res = roc_analysis([1, 1, 0, 0], [2.0, 4.0, 1.0, 3.0], n_boot=50)
    assert [p.threshold for p in res.coords] == [-math.inf, 1.5, 2.5, 3.5, math.inf]
    assert [p.sensitivity for p in res.coords] == [1.0, 1.0, 0.5, 0.5, 0.0]
    assert [p.specificity for p in res.coords] == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert [(p.threshold, p.sensitivity, p.specificity) for p in res.youden] == [(1.5, 1.0, 0.5), (3.5, 0.5, 1.0)]
    assert res.auc == 0.75  # pairs (2>1), (4>1), (4>3) of 4
    d = res.to_dict()
    assert d["coords"]["threshold_gy"][0] == "-Inf" and d["coords"]["threshold_gy"][-1] == "Inf"
    json.dumps(d, allow_nan=False)


def test_ties_between_groups_count_one_half_and_dose_rule_is_greater_or_equal():
    # cases {76, 100}, controls {50, 76}: pairs 76>50, 76=76 (1/2), 100>50, 100>76 -> AUC = 3.5/4
    res = roc_analysis([1, 1, 0, 0], [76.0, 100.0, 50.0, 76.0], doses=(76.0, 100.5), n_boot=50)
    assert res.auc == 0.875
    at76 = res.at_dose["76"]  # positive when dose >= 76: both cases, one control (76)
    assert (at76.sensitivity, at76.specificity) == (1.0, 0.5)
    at = res.at_dose["100.5"]
    assert (at.sensitivity, at.specificity) == (0.0, 1.0)
    assert list(res.to_dict()["at_dose"]) == ["76", "100.5"]


def test_direction_greater_when_non_responders_have_higher_doses():
    # controls {5, 7, 9} above cases {1, 3, 6}: pROC picks ">" (median 7 > 3); AUC = P(case < control)
    res = roc_analysis([0, 0, 0, 1, 1, 1], [5.0, 7.0, 9.0, 1.0, 3.0, 6.0], doses=(6.0,), n_boot=50)
    assert res.direction == ">"
    assert res.auc == pytest.approx(8 / 9, abs=EXACT)  # 6 < 5 is the only failing pair
    assert any("direction '>'" in w for w in res.warnings)
    thr = [p.threshold for p in res.coords]
    assert thr[0] == math.inf and thr[-1] == -math.inf and thr == sorted(thr, reverse=True)
    at6 = res.at_dose["6"]  # ">": positive when dose <= 6 -> all 3 cases, control 5
    assert (at6.sensitivity, at6.specificity) == (1.0, pytest.approx(2 / 3, abs=EXACT))


def test_stratified_bootstrap_moments_match_the_exact_resampling_variance():
    """Resampling m cases and n controls with replacement gives E[AUC*] = AUC and
    Var[AUC*] = (s2 + (n-1) s10 + (m-1) s01) / (m n), with s2, s10, s01 the (ddof 0) variances of the pair
    kernel, of its case means and of its control means (two-sample V-statistic algebra)."""
    rng = np.random.default_rng(7)
    cases = np.round(rng.normal(1.0, 1.0, 9), 1)  # rounding makes ties
    ctrls = np.round(rng.normal(0.0, 1.0, 15), 1)
    psi = (cases[:, None] > ctrls[None, :]) + 0.5 * (cases[:, None] == ctrls[None, :])
    m, n = psi.shape
    var = (psi.var() + (n - 1) * psi.mean(axis=1).var() + (m - 1) * psi.mean(axis=0).var()) / (m * n)
    n_boot = 20000
    aucs = _bootstrap_aucs(ctrls, cases, "<", n_boot, np.random.default_rng(11))
    assert abs(aucs.mean() - psi.mean()) < 5 * math.sqrt(var / n_boot)
    assert aucs.var() == pytest.approx(var, rel=0.05)  # Monte-Carlo SE of a variance ~ sqrt(2/B) = 1 %
    assert np.allclose(aucs * 2 * m * n, np.round(aucs * 2 * m * n))  # every replicate keeps m and n
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    a = roc_analysis(y, np.r_[cases, ctrls], n_boot=500, seed=3)
    assert a.auc_ci_bootstrap == roc_analysis(y, np.r_[cases, ctrls], n_boot=500, seed=3).auc_ci_bootstrap


@pytest.mark.parametrize(("resp", "pred"), [([1, 0, 0, 0], [1.0, 2.0, 3.0, 4.0]), ([1, 1, 1, 0], [1.0, 2.0, 3.0, 4.0])])
def test_too_few_cases_or_controls_is_a_model_fit_error(resp, pred):
    with pytest.raises(ModelFitError, match="at least 2 responders and 2 non-responders"):
        roc_analysis(resp, pred)


def test_bad_input_names_the_argument_and_row():
    with pytest.raises(InputError, match="'predictor' row 2"):
        roc_analysis([0, 1, 0, 1], [1.0, 2.0, float("nan"), 4.0])
    with pytest.raises(InputError, match="'responder' must be 0 or 1; row 1"):
        roc_analysis([0, 2, 0, 1], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InputError, match="4 values but 'predictor' has 3"):
        roc_analysis([0, 1, 0, 1], [1.0, 2.0, 3.0])


def test_to_dict_has_the_contract_keys_and_is_json_ready(stats_reference_dir):
    d = _fit(str(stats_reference_dir), "paper_like_s1202", "G2").to_dict()
    contract = {"n_cases", "n_controls", "auc", "auc_ci_delong", "auc_ci_bootstrap", "bootstrap_n", "seed",
                "youden", "at_dose", "warnings"}
    assert contract <= set(d) and set(d) - contract <= {"direction", "bootstrap_median", "coords"}
    assert set(d["youden"][0]) == {"threshold_gy", "sensitivity", "specificity"}
    assert set(d["at_dose"]) == {"76", "135"}
    json.dumps(d, allow_nan=False)


def test_zero_bootstrap_replicates_skip_the_bootstrap_but_not_the_rest() -> None:
    y = [1, 1, 1, 0, 0, 0]
    x = [5.0, 7.0, 3.0, 1.0, 4.0, 2.0]
    res = roc_analysis(y, x, n_boot=0)
    # AUC by counting case>control pairs: (5,7,3) vs (1,4,2): 3 + 3 + 2 = 8 of 9
    assert res.auc == pytest.approx(8 / 9, abs=1e-15)
    d = res.to_dict()
    assert d["auc_ci_bootstrap"] is None and d["bootstrap_n"] == 0 and d["bootstrap_median"] is None
    assert d["auc_ci_delong"][0] < res.auc <= d["auc_ci_delong"][1]
    with pytest.raises(InputError):
        roc_analysis(y, x, n_boot=-1)
