"""The paper's TCP analysis (stats.tcp) against R: ``glmm_tcp.common_intercept.{laplace,agq25}``.

Mapping (reference/stats/README.md): tcp.coefficients <- fixef / fixef_se, random_intercept_sd <- re_sd,
loglik <- logLik, singular <- is_singular; per_grade.G.{intercept, intercept_se, slope_per_gy, slope_se}
as named; dose_at_tcp <- dose_for_tcp (dose_gy, se_delta); at_dose <- at_doses (tcp, lo_logit/hi_logit,
odds, odds_lo/odds_hi); curves.G <- tcp_curve.G (dose_gy, tcp, se_eta, lo_logit, hi_logit).
Tolerances: fixed effects rel 1e-4 or abs 1e-3 SE, SEs rel 1e-3, TCP abs 1e-4, CI bounds abs 1e-3,
D50/D90 rel 1e-3 (and their SEs rel 1e-3), odds rel 1e-3. For Laplace the target is R's default
fit unless R's tight-PIRLS refit moves -2logLik by > 1e-6 (see test_stats_glmm.py).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from LuDoseResponseLib.errors import InputError, ModelFitError
from LuDoseResponseLib.stats.tcp import tcp_analysis

DATASETS = ("large_s201", "nocutoff_s601", "paper_like_s1102", "paper_like_s1202", "separation_s401",
            "singular_s3026", "unbalanced_s501")
METHODS = {"laplace": "laplace", "agq25": "agq"}
TIGHT_JSON = Path(__file__).resolve().parents[1] / "data" / "stats" / "glmm_tight_pirls.json"
TOP_KEYS = {"formula", "method", "n_agq", "coefficients", "vcov", "random_intercept_sd", "loglik", "singular",
            "converged", "separation", "warnings", "per_grade", "curves"}        # the contract's tcp block
GRADE_KEYS = {"intercept", "intercept_se", "slope_per_gy", "slope_se", "dose_at_tcp", "at_dose"}
AT_DOSE_KEYS = {"tcp", "ci_low", "ci_high", "odds", "odds_ci_low", "odds_ci_high"}
CURVE_KEYS = {"dose_gy", "tcp", "se_eta", "ci_low", "ci_high"}


@cache
def _data(ref_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(ref_dir / f"{name}.csv")


@cache
def _r_block(ref_dir: Path, name: str, model: str, method: str) -> dict:
    default = json.loads((ref_dir / f"{name}.json").read_text())["glmm_tcp"][model][method]
    if method == "laplace" and "error" not in default:
        tight = json.loads(TIGHT_JSON.read_text())["datasets"][name][model][method]
        if abs(default["minus2logLik"] - tight["minus2logLik"]) > 1e-6:
            return tight | {"suspect": default["suspect"], "suspect_reasons": default["suspect_reasons"],
                            "re_sd": tight["theta"], "logLik": -0.5 * tight["minus2logLik"]}
    return default


@cache
def _tcp(ref_dir: Path, name: str, method: str) -> dict:
    d = _data(ref_dir, name)
    res = tcp_analysis(d["dose_gy"], d["grade"], d["responder"], d["patient"], method=METHODS[method])
    return res.to_dict()


def _close_coef(ours: float, ref: float, se: float) -> bool:
    return abs(ours - ref) <= max(1e-4 * abs(ref), 1e-3 * se)


def assert_grade_matches(ours: dict, pg: dict, curve_r: dict, curve: dict) -> None:
    assert set(ours) == GRADE_KEYS
    assert _close_coef(ours["intercept"], pg["intercept"], pg["intercept_se"])
    assert _close_coef(ours["slope_per_gy"], pg["slope_per_gy"], pg["slope_se"])
    assert ours["intercept_se"] == pytest.approx(pg["intercept_se"], rel=1e-3)
    assert ours["slope_se"] == pytest.approx(pg["slope_se"], rel=1e-3)
    assert list(ours["dose_at_tcp"]) == [f"{t['tcp']:g}" for t in pg["dose_for_tcp"]]
    for t in pg["dose_for_tcp"]:
        o = ours["dose_at_tcp"][f"{t['tcp']:g}"]
        assert set(o) == {"dose_gy", "se", "ci_low", "ci_high"}
        assert o["dose_gy"] == pytest.approx(t["dose_gy"], rel=1e-3)
        assert o["se"] == pytest.approx(t["se_delta"], rel=1e-3)
    ad = pg["at_doses"]
    assert list(ours["at_dose"]) == [f"{d:g}" for d in ad["dose_gy"]]
    for i, dose in enumerate(ad["dose_gy"]):
        o = ours["at_dose"][f"{dose:g}"]
        assert set(o) == AT_DOSE_KEYS
        assert o["tcp"] == pytest.approx(ad["tcp"][i], abs=1e-4)
        assert o["ci_low"] == pytest.approx(ad["lo_logit"][i], abs=1e-3)
        assert o["ci_high"] == pytest.approx(ad["hi_logit"][i], abs=1e-3)
        for k, rk in (("odds", "odds"), ("odds_ci_low", "odds_lo"), ("odds_ci_high", "odds_hi")):
            assert o[k] == pytest.approx(ad[rk][i], rel=1e-3)
    assert set(curve) == CURVE_KEYS
    np.testing.assert_array_equal(curve["dose_gy"], curve_r["dose_gy"])
    np.testing.assert_allclose(curve["tcp"], curve_r["tcp"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(curve["se_eta"], curve_r["se_eta"], rtol=1e-3)
    np.testing.assert_allclose(curve["ci_low"], curve_r["lo_logit"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(curve["ci_high"], curve_r["hi_logit"], rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", DATASETS)
def test_tcp_against_r(stats_reference_dir: Path, name: str, method: str) -> None:
    ref = _r_block(stats_reference_dir, name, "common_intercept", method)
    res = _tcp(stats_reference_dir, name, method)
    json.dumps(res, allow_nan=False)
    assert set(res) == TOP_KEYS
    assert res["formula"] == ref["formula"] == "responder ~ dose_gy + dose_gy:grade + (1 | patient)"
    assert res["method"] == METHODS[method] and res["n_agq"] == ref["nAGQ"]
    assert list(res["coefficients"]) == list(ref["fixef"]) == res["vcov"]["names"]
    assert set(res["per_grade"]) == set(res["curves"]) == {"G1", "G2"}
    if ref["suspect"]:
        # separation_s401: G2 perfectly separated at 80 Gy, max |eta| = 95; flag, do not match numbers
        assert "separation" in " ".join(ref["suspect_reasons"])
        assert res["separation"] is True
        assert any("G2" in w and "separated" in w for w in res["warnings"])
        assert res["singular"] == ref["is_singular"]
        return
    assert res["separation"] is False and res["converged"] is True
    assert res["singular"] == ref["is_singular"]
    assert res["random_intercept_sd"] == pytest.approx(ref["re_sd"], abs=max(1e-3, 1e-3 * ref["re_sd"]))
    assert res["loglik"] == pytest.approx(ref["logLik"], abs=0.5e-5)
    for k, c in res["coefficients"].items():
        assert _close_coef(c["estimate"], ref["fixef"][k], ref["fixef_se"][k])
        assert c["se"] == pytest.approx(ref["fixef_se"][k], rel=1e-3)
    v_r = np.array(ref["vcov"]["values"])
    np.testing.assert_array_less(np.abs(np.array(res["vcov"]["values"]) - v_r),
                                 2e-3 * np.sqrt(np.outer(np.diag(v_r), np.diag(v_r))))
    for g in ("G1", "G2"):
        assert_grade_matches(res["per_grade"][g], ref["per_grade"][g], ref["tcp_curve"][g], res["curves"][g])


@pytest.mark.parametrize("name", ["paper_like_s1202", "paper_like_s1102", "nocutoff_s601"])
def test_paper_parametrisation_and_ci_claims(stats_reference_dir: Path, name: str) -> None:
    """README 'Parametrisation in the paper', checked on R's numbers and on ours."""
    ref = _r_block(stats_reference_dir, name, "common_intercept", "laplace")
    res = _tcp(stats_reference_dir, name, "laplace")
    for block, coef in ((ref["per_grade"], ref["fixef"]),
                        (res["per_grade"], {k: v["estimate"] for k, v in res["coefficients"].items()})):
        # G2 intercept is the single shared coefficient beta0; G2 slope is beta1 + beta2
        assert block["G2"]["intercept"] == pytest.approx(coef["(Intercept)"], rel=1e-12)
        assert block["G1"]["intercept"] == pytest.approx(coef["(Intercept)"], rel=1e-12)
        g2_slope = coef["dose_gy"] + coef["dose_gy:gradeG2"]
        assert block["G2"]["slope_per_gy"] == pytest.approx(g2_slope, rel=1e-12)
        assert block["G1"]["slope_per_gy"] == pytest.approx(coef["dose_gy"], rel=1e-12)
    for g in ("G1", "G2"):
        ad = ref["per_grade"][g]["at_doses"]
        for i, dose in enumerate(ad["dose_gy"]):
            eta, se = ad["eta"][i], ad["se_eta"][i]
            # R: odds = exp(eta) = p/(1-p), odds CI = exp(eta -+ 1.96 se_eta), TCP CI on the logit scale
            assert ad["odds"][i] == pytest.approx(ad["tcp"][i] / (1 - ad["tcp"][i]), rel=1e-12)
            assert ad["odds_lo"][i] == pytest.approx(math.exp(eta - 1.96 * se), rel=1e-12)
            assert ad["hi_logit"][i] == pytest.approx(expit(eta + 1.96 * se), rel=1e-12)
            ours = res["per_grade"][g]["at_dose"][f"{dose:g}"]
            # ours obey the same formulas, the CI is asymmetric around the TCP, and lies inside (0, 1)
            eta_o = float(logit(ours["tcp"]))
            se_o = (float(logit(ours["ci_high"])) - float(logit(ours["ci_low"]))) / (2 * 1.96)
            assert ours["odds"] == pytest.approx(math.exp(eta_o), rel=1e-9)
            assert ours["odds_ci_low"] == pytest.approx(math.exp(eta_o - 1.96 * se_o), rel=1e-9)
            assert ours["odds_ci_high"] == pytest.approx(math.exp(eta_o + 1.96 * se_o), rel=1e-9)
            assert 0 < ours["ci_low"] < ours["tcp"] < ours["ci_high"] < 1
        # D_p solves TCP(D_p) = p on the population curve (R's numbers and ours)
        for t in ref["per_grade"][g]["dose_for_tcp"]:
            pg = ref["per_grade"][g]
            tcp_r = expit(pg["intercept"] + pg["slope_per_gy"] * t["dose_gy"])
            assert tcp_r == pytest.approx(t["tcp"], abs=1e-12)
            o = res["per_grade"][g]
            d_p = o["dose_at_tcp"][f"{t['tcp']:g}"]["dose_gy"]
            assert expit(o["intercept"] + o["slope_per_gy"] * d_p) == pytest.approx(t["tcp"], abs=1e-12)


@pytest.mark.parametrize("grade", ["G2", "G1"])
def test_single_grade_fits_the_per_grade_model(stats_reference_dir: Path, grade: str) -> None:
    """With one grade the interaction column is collinear; the model is R's G<k>_only."""
    d = _data(stats_reference_dir, "paper_like_s1102")
    d = d[d["grade"] == grade]
    res = tcp_analysis(d["dose_gy"], d["grade"], d["responder"], d["patient"]).to_dict()
    ref = _r_block(stats_reference_dir, "paper_like_s1102", f"{grade}_only", "laplace")
    assert res["formula"] == "responder ~ dose_gy + (1 | patient)"
    assert list(res["coefficients"]) == list(ref["fixef"]) == ["(Intercept)", "dose_gy"]
    assert set(res["per_grade"]) == set(res["curves"]) == {grade}
    assert any("only grade" in w for w in res["warnings"])
    assert_grade_matches(res["per_grade"][grade], ref["per_grade"][grade], ref["tcp_curve"][grade],
                         res["curves"][grade])


def test_custom_doses_targets_and_grid(stats_reference_dir: Path) -> None:
    d = _data(stats_reference_dir, "paper_like_s1202")
    res = tcp_analysis(d["dose_gy"], d["grade"], d["responder"], d["patient"], doses_gy=[100, 62.5],
                       tcp_targets=[0.25], dose_grid_gy=[0.0, 135.0]).to_dict()
    ref = _r_block(stats_reference_dir, "paper_like_s1202", "common_intercept", "laplace")
    g2 = res["per_grade"]["G2"]
    assert list(g2["at_dose"]) == ["100", "62.5"] and list(g2["dose_at_tcp"]) == ["0.25"]
    assert res["curves"]["G2"]["dose_gy"] == [0.0, 135.0]
    tcp_135_r = ref["per_grade"]["G2"]["at_doses"]["tcp"][1]
    assert res["curves"]["G2"]["tcp"][1] == pytest.approx(tcp_135_r, abs=1e-4)
    pg = ref["per_grade"]["G2"]
    assert g2["dose_at_tcp"]["0.25"]["dose_gy"] == pytest.approx(
        (logit(0.25) - pg["intercept"]) / pg["slope_per_gy"], rel=1e-3)


def test_unestimable_block_raises(stats_reference_dir: Path) -> None:
    """G2 alone in separation_s401 is perfectly separated: glmer fails, so must we (block -> error)."""
    d = _data(stats_reference_dir, "separation_s401")
    d = d[d["grade"] == "G2"]
    assert "error" in _r_block(stats_reference_dir, "separation_s401", "G2_only", "laplace")
    with pytest.raises(ModelFitError, match="separated"):
        tcp_analysis(d["dose_gy"], d["grade"], d["responder"], d["patient"])


@pytest.mark.parametrize(("change", "match"), [
    ({"grade": ["G1", "G3", "G1", "G2", "G2", "G2"]}, "grade row 1"),
    ({"responder": [0, 1, 2, 1, 0, 1]}, "responder row 2"),
    ({"dose_gy": [10, -5, 30, 40, 50, 60]}, "dose_gy row 1"),
    ({"dose_gy": [10, float("nan"), 30, 40, 50, 60]}, "non-finite"),
    ({"patient": ["a", "a", "b"]}, "patient has 3 values"),
    ({"patient": ["a", "", "b", "b", "c", "c"]}, "patient row 1"),
    ({"method": "pql"}, "method"),
    ({"tcp_targets": [0.5, 1.0]}, "tcp_targets"),
    ({"doses_gy": [76, 76.0]}, "duplicate"),
])
def test_bad_input(change: dict, match: str) -> None:
    args = {"dose_gy": [10, 20, 30, 40, 50, 60], "grade": ["G1", "G1", "G1", "G2", "G2", "G2"],
            "responder": [0, 1, 0, 1, 0, 1], "patient": ["a", "a", "b", "b", "c", "c"]}
    args.update(change)
    kw = {k: args.pop(k) for k in ("method", "tcp_targets", "doses_gy") if k in args}
    with pytest.raises(InputError, match=match):
        tcp_analysis(args["dose_gy"], args["grade"], args["responder"], args["patient"], **kw)
