"""Asymptotic NLMM (LuDoseResponseLib.stats.nlmm) against R's nlme and against closed forms.

References (every public dataset, both variants G2_only and both_grades):
- ``nlme_asymptotic.X.lb_fixed_point_ML`` (analyze.R): the Lindstrom–Bates fixed point, README tolerance
  rel 1e-5 (fixed effects, SEs, per-grade A/s, sigmas) and logLik abs 1e-6;
- ``Testing/data/stats/nlme_tight.json`` (Testing/data/stats/nlme_tight.R): nlme's own ML algorithm with
  pnlsTol = tolerance = 1e-12, i.e. nlme iterated to its fixed point; tighter tolerances;
- ``nlme_asymptotic.X.ML`` (nlme defaults, stops at pnlsTol 1e-3): README's looser tolerances;
- R's ``curve`` blocks and ``shapiro_wilk`` on R's stored residuals;
- ``nlme_asymptotic.X.exact_marginal_ML`` for the optional estimator="exact-ml";
- closed forms: at a singular fit (sd_b = 0) the model is the fixed-effects NLS fit (scipy curve_fit)
  and the log-likelihood the Gaussian one, -N/2 (log(2 pi RSS/N) + 1).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import curve_fit

from LuDoseResponseLib.errors import InputError, ModelFitError
from LuDoseResponseLib.stats import nlmm
from LuDoseResponseLib.stats.nlmm import asymptotic_curve, fit_asymptotic_nlmm

PUBLIC = ("paper_like_s1202", "paper_like_s1102", "large_s201", "singular_s3026", "separation_s401",
          "unbalanced_s501", "nocutoff_s601")
VARIANTS = {"G2_only": ("G2",), "both_grades": ("G1", "G2")}
TIGHT_JSON = Path(__file__).resolve().parents[1] / "data" / "stats" / "nlme_tight.json"
BOUNDARY = 1e-3  # R's sd_b / sigma below this: the random-amplitude variance is on the boundary


@cache
def _load(ref_dir: str, name: str) -> tuple[pd.DataFrame, dict]:
    ref = Path(ref_dir)
    return pd.read_csv(ref / f"{name}.csv"), json.loads((ref / f"{name}.json").read_text())["nlme_asymptotic"]


@cache
def _tight() -> dict:
    return json.loads(TIGHT_JSON.read_text())


@cache
def _fit(ref_dir: str, name: str, variant: str) -> nlmm.AsymptoticNlmmResult:
    df, _ = _load(ref_dir, name)
    return fit_asymptotic_nlmm(df["dose_gy"], df["dv"], df["patient"], df["grade"], grades=VARIANTS[variant])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _on_boundary(block: dict) -> bool:
    return block["re_sd_A"] < BOUNDARY * block["residual_sd"]


cases = pytest.mark.parametrize(("name", "variant"), [(n, v) for n in PUBLIC for v in VARIANTS])


def test_public_set_is_complete(stats_reference_dir):
    assert sorted(p.stem for p in Path(stats_reference_dir).glob("*.json")) == sorted(PUBLIC)
    assert set(_tight()) - {"meta"} == set(PUBLIC)


@cases
def test_matches_r_lindstrom_bates_fixed_point(stats_reference_dir, name, variant):
    _, ref = _load(str(stats_reference_dir), name)
    lb = ref[variant]["lb_fixed_point_ML"]
    assert "error" not in lb and lb["converged"]
    res = _fit(str(stats_reference_dir), name, variant)
    tight = _tight()[name][variant]
    what = f"{name} {variant}"
    assert res.converged and res.method == "ML" and res.estimator == "lindstrom-bates"
    assert res.coefficient_names == tuple(lb["fixef"])
    for mine, r in zip(res.fixef, lb["fixef"].values(), strict=True):
        assert _rel(mine, r) < 1e-5, f"{what} fixef {mine} vs {r}"
    for i, r in enumerate(lb["fixef_se"].values()):
        assert _rel(math.sqrt(res.vcov[i][i]), r) < 1e-5, f"{what} SE[{i}]"
    vr = np.array(lb["vcov"]["values"])
    sd = np.sqrt(np.diag(vr))
    assert np.max(np.abs(np.array(res.vcov) - vr) / np.outer(sd, sd)) < 1e-5, f"{what} vcov"
    for g, pr in lb["per_grade"].items():
        pg = res.per_grade[g]
        for mine, key in ((pg.amplitude, "A"), (pg.amplitude_se, "A_se"), (pg.scale_gy, "s"), (pg.scale_gy_se, "s_se")):
            assert _rel(mine, pr[key]) < 1e-5, f"{what} {g} {key}"
    assert _rel(res.residual_sd, lb["residual_sd"]) < 1e-5, what
    if _on_boundary(lb):  # R's optimiser stops anywhere near 0 (bounded log-SD); ours is exactly 0
        assert res.random_amplitude_sd < BOUNDARY * res.residual_sd and res.singular, what
    else:
        target = _target(lb["re_sd_A"], tight["re_sd_A"], 1e-5 * lb["re_sd_A"])
        assert _rel(res.random_amplitude_sd, target) < 1e-5 and not res.singular, what
    target = _target(lb["logLik"], tight["logLik"], 1e-6)
    assert abs(res.loglik - target) < 1e-6, f"{what} logLik {res.loglik} vs {target}"


def _target(lb_value: float, tight_value: float, tol: float) -> float:
    """The LB reference, unless it and nlme iterated to convergence (nlme_tight) disagree by more than the
    tolerance: then analyze.R's BFGS inner step stopped early and the converged value is the target."""
    return tight_value if abs(tight_value - lb_value) > tol else lb_value


def test_reference_disagreements_are_the_documented_ones(stats_reference_dir):
    """Keep the exceptions above honest: where the two R references differ beyond the README tolerance.

    large_s201 both_grades: logLik 242.44530283 (analyze.R LB) vs 242.44530416 (nlme converged).
    paper_like_s1202 G2_only: sd_b 0.0158638687 vs 0.0158625656 (rel 8e-5; lambda = sd_b^2/sigma^2 = 0.02
    lies on a flat part of the likelihood, so sd_b moves 50x more than beta)."""
    off = []
    for n in PUBLIC:
        for v in VARIANTS:
            lb, t = _load(str(stats_reference_dir), n)[1][v]["lb_fixed_point_ML"], _tight()[n][v]
            if abs(t["logLik"] - lb["logLik"]) > 1e-6:
                off.append((n, v, "logLik"))
            if not _on_boundary(lb) and _rel(t["re_sd_A"], lb["re_sd_A"]) > 1e-5:
                off.append((n, v, "re_sd_A"))
    assert sorted(off) == [("large_s201", "both_grades", "logLik"), ("paper_like_s1202", "G2_only", "re_sd_A")]


@cases
def test_matches_nlme_iterated_to_convergence(stats_reference_dir, name, variant):
    t = _tight()[name][variant]
    assert "error" not in t
    res = _fit(str(stats_reference_dir), name, variant)
    what = f"{name} {variant}"
    # nlme cannot reach sd_b = 0 (log-SD parametrisation): on the boundary its beta carries an O(sd_b^2) bias
    fe_tol = 1e-5 if _on_boundary(t) else 1e-7
    for mine, r in zip(res.fixef, t["fixef"].values(), strict=True):
        assert _rel(mine, r) < fe_tol, f"{what} fixef"
    for i, r in enumerate(t["fixef_se"].values()):
        assert _rel(math.sqrt(res.vcov[i][i]), r) < 1e-6, f"{what} SE[{i}]"
    assert _rel(res.residual_sd, t["residual_sd"]) < 1e-6, what
    if not _on_boundary(t):  # sd_b is weakly determined (flat in lambda): rel 1e-5
        assert _rel(res.random_amplitude_sd, t["re_sd_A"]) < 1e-5, what
    assert abs(res.loglik - t["logLik"]) < 1e-7, what


@cases
def test_close_to_nlme_default_ml(stats_reference_dir, name, variant):
    """README tolerances for nlme's default stop: A rel 2e-3, s rel 5e-3, sigmas rel 2e-3, SE rel 1e-2,
    logLik abs 5e-3."""
    _, ref = _load(str(stats_reference_dir), name)
    ml, lb = ref[variant]["ML"], ref[variant]["lb_fixed_point_ML"]
    res = _fit(str(stats_reference_dir), name, variant)
    what = f"{name} {variant}"
    for g, pr in ml["per_grade"].items():
        pg = res.per_grade[g]
        assert _rel(pg.amplitude, pr["A"]) < 2e-3 and _rel(pg.scale_gy, pr["s"]) < 5e-3, f"{what} {g}"
        assert _rel(pg.amplitude_se, pr["A_se"]) < 1e-2 and _rel(pg.scale_gy_se, pr["s_se"]) < 1e-2, f"{what} {g}"
    assert _rel(res.residual_sd, ml["residual_sd"]) < 2e-3, what
    if _on_boundary(ml):
        assert res.singular, what
    else:
        assert _rel(res.random_amplitude_sd, ml["re_sd_A"]) < 2e-3, what
    # nlme's early stop has a higher exact logLik than the LB fixed point. R's own LB differs from R's ML
    # by 5.9e-3 on large_s201 both_grades, beyond the README's 5e-3; there the difference must equal R's.
    if abs(lb["logLik"] - ml["logLik"]) <= 5e-3:
        assert abs(res.loglik - ml["logLik"]) < 5e-3, what
    else:
        assert res.loglik - ml["logLik"] == pytest.approx(lb["logLik"] - ml["logLik"], abs=1e-5), what


@cases
def test_curves(stats_reference_dir, name, variant):
    _, ref = _load(str(stats_reference_dir), name)
    ml, lb = ref[variant]["ML"], ref[variant]["lb_fixed_point_ML"]
    res = _fit(str(stats_reference_dir), name, variant)
    what = f"{name} {variant}"
    for g, rc in ml["curve"].items():
        dose = np.asarray(rc["dose_gy"], float)
        # (1) the delta-method curve function reproduces R's ML curve from R's own ML estimates
        pr = ml["per_grade"][g]
        cov = [[pr["A_se"] ** 2, pr["cov_A_s"]], [pr["cov_A_s"], pr["s_se"] ** 2]]
        c = asymptotic_curve(pr["A"], pr["s"], cov, dose)
        np.testing.assert_allclose(c.dv, rc["fit"], rtol=1e-12, atol=1e-15, err_msg=what)
        np.testing.assert_allclose(c.se, rc["se"], rtol=1e-9, atol=1e-15, err_msg=what)
        np.testing.assert_allclose(c.ci_low, rc["lo"], rtol=1e-9, atol=1e-12, err_msg=what)
        np.testing.assert_allclose(c.ci_high, rc["hi"], rtol=1e-9, atol=1e-12, err_msg=what)
        # (2) our fitted curve vs the delta method applied here to R's LB estimates and varFix
        mine = res.curves[g]
        assert np.array_equal(np.asarray(mine.dose_gy), dose)
        beta, vc = np.array(list(lb["fixef"].values())), np.array(lb["vcov"]["values"])
        k = res.grades.index(g)
        ca, cs = nlmm_coef_rows(len(res.grades))[k]
        a, s = ca @ beta, cs @ beta
        e = np.exp(-dose / s)
        jac = np.column_stack((1 - e, -a * e * dose / s**2)) @ np.vstack((ca, cs))
        se = np.sqrt(np.einsum("ij,jk,ik->i", jac, vc, jac))
        np.testing.assert_allclose(mine.dv, a * (1 - e), rtol=1e-5, atol=1e-12, err_msg=what)
        np.testing.assert_allclose(mine.se, se, rtol=1e-5, atol=1e-12, err_msg=what)
        # (3) vs nlme's default stop, tolerances propagated from the README's (A 2e-3, s 5e-3, SE 1e-2):
        # |d fit| <= A (2e-3 + 5e-3 max_x x e^-x) and |d se| <= 1e-2 se
        tol_fit = pr["A"] * (2e-3 + 5e-3 / math.e)
        assert np.max(np.abs(np.asarray(mine.dv) - rc["fit"])) < tol_fit, what
        assert np.all(np.abs(np.asarray(mine.se) - rc["se"]) <= 1e-2 * np.asarray(rc["se"]) + 1e-12), what
        for ours_b, r_b in ((mine.ci_low, rc["lo"]), (mine.ci_high, rc["hi"])):
            assert np.all(np.abs(np.asarray(ours_b) - r_b) <= tol_fit + 1.96e-2 * np.asarray(rc["se"]) + 1e-12), what


def nlmm_coef_rows(n_grades: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(A, s) = (cA beta, cs beta) per grade, treatment contrasts as in analyze.R."""
    if n_grades == 1:
        return [(np.array([1.0, 0.0]), np.array([0.0, 1.0]))]
    return [(np.array([1.0, 0, 0, 0]), np.array([0, 0, 1.0, 0])), (np.array([1.0, 1, 0, 0]), np.array([0, 0, 1.0, 1]))]


@cases
def test_shapiro_wilk(stats_reference_dir, name, variant):
    ml = _load(str(stats_reference_dir), name)[1][variant]["ML"]
    sw = ml["shapiro_wilk"]["residuals_level1_response"]
    # the call: scipy's Royston algorithm on R's residuals reproduces R's shapiro.test
    ours_on_r = stats.shapiro(np.asarray(ml["residuals_level1"], float))
    assert ours_on_r.statistic == pytest.approx(sw["W"], abs=1e-6)
    assert ours_on_r.pvalue == pytest.approx(sw["p"], abs=1e-6)
    # the fit: residuals at the LB fixed point vs nlme's early stop (README: W within about 1e-3)
    res = _fit(str(stats_reference_dir), name, variant)
    assert len(res.residuals_level1) == len(ml["residuals_level1"])
    assert res.shapiro_wilk_w == pytest.approx(sw["W"], abs=1e-3)
    assert res.shapiro_wilk_p == pytest.approx(sw["p"], abs=1e-2)


def test_singular_fits_are_the_fixed_effects_nls_fit(stats_reference_dir):
    """sd_b = 0: V = sigma^2 I, so beta is the NLS estimate and logLik = -N/2 (log(2 pi RSS/N) + 1)."""
    singular = [(n, v) for n in PUBLIC for v in VARIANTS if _fit(str(stats_reference_dir), n, v).singular]
    assert len(singular) >= 4  # singular_s3026, separation_s401, unbalanced_s501, nocutoff_s601 (both variants)
    for name, variant in singular:
        _check_nls(stats_reference_dir, name, variant)


def _check_nls(stats_reference_dir, name: str, variant: str) -> None:
    res = _fit(str(stats_reference_dir), name, variant)
    assert res.random_amplitude_sd == 0.0
    df, _ = _load(str(stats_reference_dir), name)
    d = df[df["grade"].isin(res.grades)]
    gi = d["grade"].map({g: k for k, g in enumerate(res.grades)}).to_numpy()
    rows = np.array([r for r in nlmm_coef_rows(len(res.grades))], dtype=object)

    def model(dose, *beta):
        beta = np.asarray(beta)
        a = np.array([rows[k][0] @ beta for k in gi])
        s = np.array([rows[k][1] @ beta for k in gi])
        return a * (1 - np.exp(-dose / s))

    popt, _ = curve_fit(model, d["dose_gy"].to_numpy(float), d["dv"].to_numpy(float), p0=res.fixef,
                        xtol=1e-14, ftol=1e-14, gtol=1e-14)
    np.testing.assert_allclose(res.fixef, popt, rtol=1e-7)
    rss = float(np.sum((d["dv"].to_numpy() - model(d["dose_gy"].to_numpy(float), *popt)) ** 2))
    n = len(d)
    assert res.loglik == pytest.approx(-0.5 * n * (math.log(2 * math.pi * rss / n) + 1), abs=1e-9)
    assert res.residual_sd == pytest.approx(math.sqrt(rss / n), rel=1e-9)


@cases
def test_flat_ridge_is_flagged(stats_reference_dir, name, variant):
    """A plateau above 1 (dv cannot exceed 1) or |corr(A, s)| > 0.95 in R's LB estimates means A and s
    drift along a flat ridge (separation_s401 G1: A = 1.26, s = 205 Gy); we must say so, and only then."""
    lb = _load(str(stats_reference_dir), name)[1][variant]["lb_fixed_point_ML"]
    vc = np.array(lb["vcov"]["values"])
    res = _fit(str(stats_reference_dir), name, variant)
    for k, g in enumerate(res.grades):
        ca, cs = nlmm_coef_rows(len(res.grades))[k]
        corr = (ca @ vc @ cs) / math.sqrt((ca @ vc @ ca) * (cs @ vc @ cs))
        ridge_in_r = lb["per_grade"][g]["A"] > 1 or abs(corr) > 0.95
        flagged = any(w.startswith(f"grade {g}:") and "ridge" in w for w in res.warnings)
        assert flagged == ridge_in_r, f"{name} {variant} {g}: corr {corr:.3f}, warnings {res.warnings}"


@cases
def test_exact_marginal_ml_estimator(stats_reference_dir, name, variant):
    """estimator="exact-ml" vs analyze.R's exact_marginal_ML (README: rel 1e-4, logLik abs 1e-6). Being the
    maximum of the exact likelihood, its logLik is at least the LB fixed point's."""
    e = _load(str(stats_reference_dir), name)[1][variant]["exact_marginal_ML"]
    df, _ = _load(str(stats_reference_dir), name)
    res = fit_asymptotic_nlmm(df["dose_gy"], df["dv"], df["patient"], df["grade"], grades=VARIANTS[variant],
                              estimator="exact-ml")
    what = f"{name} {variant}"
    assert res.converged and res.estimator == "exact-ml" and res.to_dict()["estimator"] == "exact-ml"
    for i, (b, se) in enumerate(zip(e["beta"].values(), e["beta_se"].values(), strict=True)):
        assert _rel(res.fixef[i], b) < 1e-4, f"{what} beta[{i}]"
        assert _rel(math.sqrt(res.vcov[i][i]), se) < 1e-4, f"{what} SE[{i}]"
    assert _rel(res.residual_sd, e["residual_sd"]) < 1e-4, what
    if _on_boundary(e):
        assert res.singular, what
    else:
        assert _rel(res.random_amplitude_sd, e["re_sd_A"]) < 1e-4, what
    assert abs(res.loglik - e["logLik"]) < 1e-6, what
    assert res.loglik >= _fit(str(stats_reference_dir), name, variant).loglik - 1e-9, what


def test_separation_g1_is_on_the_ridge(stats_reference_dir):
    res = _fit(str(stats_reference_dir), "separation_s401", "both_grades")
    assert any("grade G1" in w and "exceeds the largest possible" in w for w in res.warnings)
    assert any("grade G1" in w and "confounded" in w for w in res.warnings)


def test_non_convergence_is_reported(stats_reference_dir, monkeypatch):
    monkeypatch.setattr(nlmm, "MAX_OUTER", 1)
    df, _ = _load(str(stats_reference_dir), "paper_like_s1202")
    res = fit_asymptotic_nlmm(df["dose_gy"], df["dv"], df["patient"], df["grade"], grades=("G2",))
    assert not res.converged and any("did not converge" in w for w in res.warnings)
    assert res.to_dict()["converged"] is False


def test_unestimable_inputs_raise():
    dose = np.linspace(20, 300, 12)
    dv = 0.8 * (1 - np.exp(-dose / 40)) + np.tile([0.03, -0.03], 6)
    pat = np.repeat(["P1", "P2", "P3", "P4", "P5", "P6"], 2)
    with pytest.raises(ModelFitError, match="at least 2 patients"):
        fit_asymptotic_nlmm(dose, dv, ["P1"] * 12, ["G2"] * 12)
    with pytest.raises(ModelFitError, match="at least 3 tumours of grade G1"):
        fit_asymptotic_nlmm(dose, dv, pat, ["G2"] * 10 + ["G1"] * 2, grades=("G1", "G2"))
    with pytest.raises(ModelFitError, match="same dose"):
        fit_asymptotic_nlmm(np.full(12, 100.0), dv, pat, ["G2"] * 12)
    with pytest.raises(ModelFitError, match="zero residual variance"):
        fit_asymptotic_nlmm(dose, 0.8 * (1 - np.exp(-dose / 40)), pat, ["G2"] * 12)


def test_bad_input_names_argument_and_row():
    dose = np.linspace(20, 300, 12)
    dv = 0.8 * (1 - np.exp(-dose / 40))
    pat, grade = np.repeat(["P1", "P2", "P3", "P4", "P5", "P6"], 2), ["G2"] * 12
    bad = dose.copy()
    bad[4] = np.nan
    with pytest.raises(InputError, match="'dose_gy' row 4"):
        fit_asymptotic_nlmm(bad, dv, pat, grade)
    bad[4] = -1.0
    with pytest.raises(InputError, match="'dose_gy' row 4 is negative"):
        fit_asymptotic_nlmm(bad, dv, pat, grade)
    with pytest.raises(InputError, match="'dv' has 11"):
        fit_asymptotic_nlmm(dose, dv[:11], pat, grade)
    with pytest.raises(InputError, match="'grades'"):
        fit_asymptotic_nlmm(dose, dv, pat, grade, grades=("G2", "G2"))
    with pytest.raises(InputError, match="'estimator'"):
        fit_asymptotic_nlmm(dose, dv, pat, grade, estimator="REML")


def test_to_dict_is_the_contract_block(stats_reference_dir):
    d = _fit(str(stats_reference_dir), "paper_like_s1202", "both_grades").to_dict()
    contract = {"method", "estimator", "per_grade", "random_amplitude_sd", "residual_sd", "loglik",
                "shapiro_wilk", "curves", "warnings"}
    assert contract <= set(d) and set(d) - contract <= {"converged", "iterations", "singular"}
    assert set(d["per_grade"]["G2"]) == {"amplitude", "amplitude_se", "scale_gy", "scale_gy_se"}
    assert set(d["shapiro_wilk"]) == {"w", "p_value"}
    assert set(d["curves"]["G1"]) == {"dose_gy", "dv", "ci_low", "ci_high"}
    assert d["curves"]["G1"]["dose_gy"] == [float(x) for x in range(0, 401, 5)]
    json.dumps(d, allow_nan=False)
