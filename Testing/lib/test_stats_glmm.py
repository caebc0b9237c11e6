"""Binomial GLMM (stats.glmm) against lme4::glmer (R 4.2.2, lme4 1.1-31) and analytic results.

References:
* ``stats_reference_dir``/*.json, ``glmm_tcp.<model>.{laplace,agq25}``: glmer with default control.
* ``Testing/data/stats/glmm_tight_pirls.json`` (made by ``glmm_tight_pirls.R`` beside it): the same fits
  with ``tolPwrss = 1e-14``. lme4's default PIRLS stops at a relative change of 1e-7 and takes log|L|^2
  from the previous iterate's weights, so its Laplace objective is off the exact Laplace approximation
  by O(sqrt(tolPwrss)) and depends on where its stage-1 optimiser stopped. Where R's default and tight
  Laplace optima differ by more than the README's -2logLik margin (1e-6), the default block is not a
  tight target and the tight refit is used; the selection is computed from the two R outputs.

Tolerances (reference/stats/README.md): -2logLik abs 1e-5 (ours may be lower by up to ~1e-6), fixed
effects rel 1e-4 or abs 1e-3 SE, theta abs or rel 1e-3, deriv12 SEs rel 1e-3, accurate-Hessian SEs
rel 5e-2. Laplace is only compared with Laplace and AGQ with AGQ.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize
from scipy.special import expit

from LuDoseResponseLib.errors import InputError, ModelFitError
from LuDoseResponseLib.stats.glmm import deriv12, fit_binomial_glmm, glmm_deviance, is_separated

DATASETS = ("large_s201", "nocutoff_s601", "paper_like_s1102", "paper_like_s1202", "separation_s401",
            "singular_s3026", "unbalanced_s501")
MODELS = ("common_intercept", "grade_sep", "G2_only", "G1_only")
METHODS = {"laplace": 1, "agq25": 25}
TIGHT_JSON = Path(__file__).resolve().parents[1] / "data" / "stats" / "glmm_tight_pirls.json"
M2LL_ABS = 1e-5
M2LL_MARGIN = 1e-6


@cache
def _r_json(ref_dir: Path, name: str) -> dict:
    return json.loads((ref_dir / f"{name}.json").read_text())


@cache
def _tight() -> dict:
    return json.loads(TIGHT_JSON.read_text())["datasets"]


def design(data: pd.DataFrame, model: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Fixed-effect design of R's formula for ``model`` (treatment contrasts, G1 reference)."""
    if model in ("G2_only", "G1_only"):
        data = data[data["grade"] == model[:2]]
    dose = data["dose_gy"].to_numpy(float)
    g2 = (data["grade"] == "G2").to_numpy(float)
    one = np.ones(len(data))
    if model == "common_intercept":      # responder ~ dose_gy + dose_gy:grade
        return data, np.column_stack([one, dose, dose * g2]), ["(Intercept)", "dose_gy", "dose_gy:gradeG2"]
    if model == "grade_sep":             # responder ~ grade + dose_gy:grade
        return data, np.column_stack([one, g2, dose * (1 - g2), dose * g2]), [
            "(Intercept)", "gradeG2", "gradeG1:dose_gy", "gradeG2:dose_gy"]
    return data, np.column_stack([one, dose]), ["(Intercept)", "dose_gy"]


@cache
def _fit(ref_dir: Path, name: str, model: str, n_agq: int):
    data, x, names = design(pd.read_csv(ref_dir / f"{name}.csv"), model)
    try:
        return fit_binomial_glmm(data["responder"].to_numpy(), x, data["patient"].to_numpy(), names=names,
                                 n_agq=n_agq)
    except ModelFitError as exc:
        return exc


def laplace_target(default: dict, tight: dict) -> dict:
    """R block to compare with: the default fit unless R itself moves by > 1e-6 under tight PIRLS."""
    if abs(default["minus2logLik"] - tight["minus2logLik"]) > M2LL_MARGIN:
        return tight
    return default


def _vec(block: dict, key: str) -> np.ndarray:
    return np.array(list(block[key].values()), dtype=float)


def assert_matches_r(fit, ref: dict) -> None:
    """The README tolerances, every quantity of one fit."""
    assert list(ref["fixef"]) == list(fit.names)
    d_m2ll = fit.minus2loglik - ref["minus2logLik"]
    assert abs(d_m2ll) <= M2LL_ABS and d_m2ll <= 1e-7, d_m2ll
    beta_r, se_r = _vec(ref, "fixef"), _vec(ref, "fixef_se")
    np.testing.assert_array_less(np.abs(fit.fixef - beta_r), np.maximum(1e-4 * np.abs(beta_r), 1e-3 * se_r))
    assert abs(fit.theta - ref["theta"]) <= max(1e-3, 1e-3 * ref["theta"])
    np.testing.assert_allclose(fit.se, se_r, rtol=1e-3)
    v_r = np.array(ref["vcov"]["values"])
    scale = np.sqrt(np.outer(np.diag(v_r), np.diag(v_r)))
    np.testing.assert_array_less(np.abs(fit.vcov - v_r), 2e-3 * scale)
    se_rx = np.sqrt(np.diag(ref["vcov_RX"]["values"]))
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov_rx)), se_rx, rtol=1e-3)
    h_r = np.array(ref["hessian_deviance_theta_beta"]["values"])
    h_scale = np.sqrt(np.abs(np.outer(np.diag(h_r), np.diag(h_r))))
    np.testing.assert_array_less(np.abs(fit.hessian - h_r), 1e-3 * h_scale + 1e-9)
    ranef_r = ref["ranef_patient"]
    assert sorted(fit.ranef) == sorted(ranef_r)
    np.testing.assert_allclose([fit.ranef[k] for k in ranef_r], list(ranef_r.values()), atol=1e-3)
    assert fit.singular == ref["is_singular"]
    assert fit.converged
    assert math.isclose(fit.loglik, -0.5 * fit.minus2loglik)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", DATASETS)
def test_glmm_against_lme4(stats_reference_dir: Path, name: str, model: str, method: str) -> None:
    default = _r_json(stats_reference_dir, name)["glmm_tcp"][model][method]
    tight = _tight()[name][model][method]
    fit = _fit(stats_reference_dir, name, model, METHODS[method])
    if "error" in default:
        # lme4 fails (PIRLS); the fixed effects separate the outcome, so the ML estimates are infinite
        assert isinstance(fit, ModelFitError), fit
        assert "separated" in str(fit)
        return
    assert not isinstance(fit, ModelFitError), fit
    json.dumps(fit.to_dict(), allow_nan=False)
    reasons = " ".join(default["suspect_reasons"])
    if default["suspect"] and "separation" in reasons:
        # max |eta| > 15: R's numbers are not a sensible target; we must flag the condition
        assert fit.separation
        assert any("separation" in w for w in fit.warnings)
        assert fit.minus2loglik <= default["minus2logLik"] + 1e-7
        assert fit.singular == default["is_singular"]
        return
    if default["suspect"]:
        # lme4's optimiser stopped short (large_s201 G2_only Laplace, max|grad| 0.009). Its deriv12 and
        # even its Richardson SEs come from the stale-weight objective, which is not smooth at that scale
        # (intercept SE 0.0077 and 0.26), so they are no target. We must reach at least as low a deviance
        # and match the tight-PIRLS refit, which converges without warnings.
        assert "converge" in reasons
        assert fit.minus2loglik <= default["minus2logLik"] + 1e-7
        assert not tight["conv_messages"] or all("Rescale" in m for m in tight["conv_messages"])
        assert_matches_r(fit, tight)
        assert_se_close_to_accurate_hessian(fit, tight)
        return
    assert_matches_r(fit, laplace_target(default, tight) if method == "laplace" else default)
    assert_se_close_to_accurate_hessian(fit, tight)
    assert not fit.separation


def assert_se_close_to_accurate_hessian(fit, tight: dict) -> None:
    """deriv12 (delta = 1e-4) SEs vs SEs from numDeriv's Richardson Hessian of R's tight-PIRLS objective.

    On the smooth (exact-mode) objective deriv12's truncation error is small: measured <= 9e-4 relative
    on the public data. The README's 'up to ~4 %' (se_rel_diff_lme4_vs_richardson) was measured on lme4's
    default objective, whose stale-weight log|L|^2 is not smooth at Richardson's small steps.
    """
    rich = tight["polished"]["fixef_se_richardson"]
    np.testing.assert_allclose(fit.se, [rich[k] for k in fit.names], rtol=2e-3)


@pytest.mark.parametrize("name", DATASETS)
def test_tight_reference_is_for_these_csvs(stats_reference_dir: Path, name: str) -> None:
    md5 = hashlib.md5((stats_reference_dir / f"{name}.csv").read_bytes()).hexdigest()
    assert _tight()[name]["csv_md5"] == md5
    assert _r_json(stats_reference_dir, name)["meta"]["csv_md5"] == md5


def test_every_public_dataset_is_covered(stats_reference_dir: Path) -> None:
    assert sorted(p.stem for p in stats_reference_dir.glob("*.json")) == sorted(DATASETS)


def test_lme4_default_laplace_is_the_stale_weight_objective(stats_reference_dir: Path) -> None:
    """Why the tight refit is needed: at R's own default estimates, our exact Laplace objective equals
    R's deviance once log|L|^2 is recomputed at the final modes (from R's ranef, fixef and deviance)."""
    name, model = "paper_like_s1202", "G1_only"
    ref = _r_json(stats_reference_dir, name)["glmm_tcp"][model]["laplace"]
    data, x, _ = design(pd.read_csv(stats_reference_dir / f"{name}.csv"), model)
    theta, beta = ref["theta"], _vec(ref, "fixef")
    ours = glmm_deviance(data["responder"], x, data["patient"], theta=theta, beta=beta)
    b = data["patient"].map(ref["ranef_patient"]).to_numpy(float)
    mu = expit(x @ beta + b)
    y = data["responder"].to_numpy(float)
    aic = -2.0 * np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu))
    sqr_l = sum((v / theta) ** 2 for v in ref["ranef_patient"].values())
    w = pd.Series(mu * (1 - mu)).groupby(data["patient"].to_numpy()).sum().to_numpy()
    exact = aic + sqr_l + np.sum(np.log1p(theta**2 * w))
    assert abs(ours - exact) < 1e-6                     # same objective, evaluated independently
    assert abs(ref["minus2logLik"] - exact) > 1e-4      # lme4's default value is off by ~3e-4 here


def test_singular_fit_is_ordinary_logistic_regression(stats_reference_dir: Path) -> None:
    """theta = 0: the GLMM is the GLM. Reference: the Bernoulli likelihood maximised by scipy BFGS with its
    analytic gradient, covariance = inverse Fisher information X'WX."""
    data, x, names = design(pd.read_csv(stats_reference_dir / "singular_s3026.csv"), "common_intercept")
    y = data["responder"].to_numpy(float)
    scale = np.abs(x).max(axis=0)

    def nll(b: np.ndarray) -> tuple[float, np.ndarray]:
        eta = (x / scale) @ b
        return float(np.sum(np.logaddexp(0, eta) - y * eta)), (x / scale).T @ (expit(eta) - y)

    opt = optimize.minimize(nll, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-12})
    beta = opt.x / scale
    w = expit(x @ beta) * (1 - expit(x @ beta))
    fit = fit_binomial_glmm(data["responder"], x, data["patient"], names=names)
    assert fit.singular and fit.theta == 0.0
    np.testing.assert_allclose(fit.fixef, beta, rtol=1e-6)
    assert fit.minus2loglik == pytest.approx(2 * opt.fun, abs=1e-9)
    np.testing.assert_allclose(fit.vcov_rx, np.linalg.inv(x.T @ (w[:, None] * x)), rtol=1e-5)
    assert all(v == 0.0 for v in fit.ranef.values())


def test_agq_objective_equals_numerical_integral() -> None:
    """-2 log of the marginal likelihood, integrated per group with scipy.quad, vs the 25-node AGQ."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 6])
    dose = rng.uniform(20, 250, groups.size)
    x = np.column_stack([np.ones(groups.size), dose])
    beta, theta = np.array([-2.0, 0.02]), 1.3
    y = (rng.uniform(size=groups.size) < expit(x @ beta + theta * rng.normal(size=6)[groups])).astype(float)
    total = 0.0
    for g in range(6):
        sel = groups == g

        def integrand(b: float, sel: np.ndarray = sel) -> float:
            p = expit(x[sel] @ beta + b)
            return float(np.prod(np.where(y[sel] == 1, p, 1 - p)) * math.exp(-0.5 * (b / theta) ** 2))

        val, _ = integrate.quad(integrand, -12 * theta, 12 * theta, epsabs=0, epsrel=1e-13, limit=200)
        total += -2 * math.log(val / (math.sqrt(2 * math.pi) * theta))
    agq = glmm_deviance(y, x, groups, theta=theta, beta=beta, n_agq=25)
    assert agq == pytest.approx(total, abs=1e-8)
    laplace = glmm_deviance(y, x, groups, theta=theta, beta=beta, n_agq=1)
    assert abs(laplace - total) > 1e-4                  # Laplace is an approximation, AGQ converges


def test_deviance_at_theta_zero_is_glm_deviance() -> None:
    x = np.column_stack([np.ones(5), [1.0, 2.0, 3.0, 4.0, 5.0]])
    y = np.array([0, 1, 0, 1, 1])
    beta = np.array([-1.0, 0.4])
    p = expit(x @ beta)
    expected = -2 * np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
    for n_agq in (1, 7, 25):
        assert glmm_deviance(y, x, ["a", "a", "b", "b", "c"], theta=0.0, beta=beta, n_agq=n_agq) == (
            pytest.approx(expected, abs=1e-12))


def test_deriv12_stencil_is_lme4s() -> None:
    """Central differences with delta = 1e-4: exact for quadratics, +2 delta^2 on x^4 (truncation term)."""
    def f(v: np.ndarray) -> float:
        x, y = v
        return x**4 + 3 * x * y + y**2 + x**2 * y**2

    x0 = np.array([0.7, -1.2])
    g, h = deriv12(f, x0)
    d = 1e-4
    exact_h = np.array([[12 * 0.7**2 + 2 * d**2 + 2 * 1.44, 3 + 4 * 0.7 * -1.2],
                        [3 + 4 * 0.7 * -1.2, 2 + 2 * 0.49]])
    np.testing.assert_allclose(h, exact_h, rtol=1e-6)
    exact_g = np.array([4 * 0.7**3 + 4 * 0.7 * d**2 + 3 * -1.2 + 2 * 0.7 * 1.44,
                        3 * 0.7 - 2.4 + 2 * 0.49 * -1.2])
    np.testing.assert_allclose(g, exact_g, rtol=1e-8)


def test_separation_linear_programme() -> None:
    x = np.column_stack([np.ones(6), [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    assert is_separated(x, [0, 0, 0, 1, 1, 1])           # complete
    assert is_separated(x, [0, 0, 0, 0, 0, 0])           # constant outcome: intercept -> -inf
    assert not is_separated(x, [0, 1, 0, 1, 0, 1])       # overlap
    xq = np.column_stack([np.ones(6), [10.0, 20.0, 30.0, 30.0, 50.0, 60.0]])
    assert is_separated(xq, [0, 0, 0, 1, 1, 1])          # quasi-complete (tie at the boundary)


def test_separated_input_raises_and_names_the_columns() -> None:
    x = np.column_stack([np.ones(8), np.arange(8.0)])
    with pytest.raises(ModelFitError, match=r"separated.*dose"):
        fit_binomial_glmm([0, 0, 0, 0, 1, 1, 1, 1], x, list("aabbccdd"), names=["(Intercept)", "dose"])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"y": [0, 1, 2, 1]}, InputError, "0/1"),
    ({"X": [[1.0, np.nan]] * 4}, InputError, "non-finite"),
    ({"groups": ["a", "a", "b"]}, InputError, "groups"),
    ({"names": ["a"]}, InputError, "names"),
    ({"n_agq": 0}, InputError, "n_agq"),
    ({"n_agq": 26}, InputError, "n_agq"),
    ({"y": [1, 1, 1, 1]}, ModelFitError, "constant"),
    ({"X": [[1.0, 2.0]] * 4}, ModelFitError, "rank deficient"),
    ({"groups": ["a"] * 4}, ModelFitError, "2 groups"),
    ({"groups": ["a", "b", "c", "d"]}, ModelFitError, "fewer groups"),
])
def test_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = {"y": [0, 1, 1, 0], "X": [[1.0, 1.0], [1.0, 2.0], [1.0, 3.0], [1.0, 4.0]],
            "groups": ["a", "a", "b", "b"], "names": ["(Intercept)", "x"], "n_agq": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit_binomial_glmm(args["y"], args["X"], args["groups"], names=args["names"], n_agq=args["n_agq"])
