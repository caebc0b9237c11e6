"""`ludoseresponse analyze` against R 4.2.2 (lme4, nlme, emmeans, pbkrtest, pROC) on every public cohort.

The R outputs were produced by ../shared/reference/stats/R/analyze.R; the key mapping and the
tolerances are those of ../shared/reference/stats/README.md ("Mapping to analysis.json" and
"Recommended tolerances"). R analyses every row of each CSV, so the cut-off is disabled here
(``--min-baseline-volume 0``); a separate test runs nocutoff_s601 with the default cut-off.
Where R's block is ``suspect`` or holds ``error``, the test checks that our output flags the
condition instead of comparing numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from LuDoseResponseLib.cli import main as cli_main

DATASETS = ("paper_like_s1202", "paper_like_s1102", "large_s201", "singular_s3026", "separation_s401",
            "unbalanced_s501", "nocutoff_s601")
GRADES = ("G1", "G2")
_CACHE: dict = {}


def _analyze(stats_reference_dir: Path, tmp_root: Path, name: str, *extra: str) -> dict:
    key = (name, extra)
    if key not in _CACHE:
        out = tmp_root / (name + "_".join(extra).replace("-", ""))
        rc = cli_main(["-q", "analyze", str(stats_reference_dir / f"{name}.csv"), "--out", str(out),
                       "--min-baseline-volume", "0", *extra])
        assert rc == 0
        _CACHE[key] = json.loads((out / "analysis.json").read_text())
    return _CACHE[key]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("analyze_vs_r")


@pytest.fixture(scope="module", params=DATASETS)
def pair(request, stats_reference_dir, tmp_root):
    name = request.param
    ref_path = stats_reference_dir / f"{name}.json"
    assert ref_path.is_file(), f"missing R reference {ref_path}"
    return name, _analyze(stats_reference_dir, tmp_root, name), json.loads(ref_path.read_text())


def close(ours, ref, *, rel=0.0, abs_=0.0, what=""):
    assert ours is not None, f"{what}: ours is None, R has {ref}"
    assert ref is not None, f"{what}: R is null"
    assert math.isfinite(ours), f"{what}: ours is {ours}"
    tol = max(abs_, rel * abs(ref))
    assert abs(ours - ref) <= tol, f"{what}: ours {ours!r} vs R {ref!r} (|diff| {abs(ours - ref):.3g} > {tol:.3g})"


# nlme's own ML algorithm run to its fixed point with tolerances of 1e-12 (Testing/data/stats/nlme_tight.R).
# In two public cases R's lb_fixed_point_ML (analyze.R, BFGS inner step) stopped short of the fixed point
# by more than the README tolerance; there the converged nlme value is an equally valid R reference.
NLME_TIGHT = json.loads((Path(__file__).resolve().parents[1] / "data" / "stats" / "nlme_tight.json").read_text())


def close_to_either(ours, ref, ref_converged, *, rel=0.0, abs_=0.0, what=""):
    """Within tolerance of R's LB fixed point, or of nlme iterated to convergence where that exists."""
    try:
        close(ours, ref, rel=rel, abs_=abs_, what=what)
    except AssertionError:
        if ref_converged is None:
            raise
        close(ours, ref_converged, rel=rel, abs_=abs_, what=what + " (vs nlme run to convergence)")


def _flagged(block: dict) -> bool:
    """A block reports a problem: an error, a warning, or a separation/non-convergence flag."""
    return ("error" in block or bool(block.get("warnings")) or block.get("separation") is True
            or block.get("converged") is False)


def _kr_failure_flagged(block: dict) -> bool:
    """The specific condition under which pbkrtest fails in R: ours says KR is not available (or the
    residual variance collapsed, which is why) and gives no KR p-value; an unrelated warning does not count."""
    if "error" in block:
        return True
    specific = [w for w in block["warnings"]
                if "Kenward-Roger inference not available" in w or "residual variance collapses" in w]
    return bool(specific) and block["p_value"] is None


# ------------------------------------------------------------------------------ summary

def test_summary_matches_r_data_summary(pair):
    name, ours, ref = pair
    for g in ("all", *GRADES):
        o, r = ours["summary"][g], ref["data_summary"][g]
        assert o["n_tumours"] == r["n_tumours"], (name, g)
        assert o["n_patients"] == r["n_patients"], (name, g)
        assert o["n_responders"] == r["n_responders"], (name, g)
        assert o["n_nonresponders"] == r["n_nonresponders"], (name, g)
        for k_o, k_r in (("dose_median_gy", "dose_median"), ("dose_min_gy", "dose_min"),
                         ("dose_max_gy", "dose_max"), ("dv_median", "dv_median"),
                         ("baseline_volume_median_cm3", "volume_median")):
            close(o[k_o], r[k_r], abs_=1e-12, what=f"{name} summary {g} {k_o}")


# ------------------------------------------------------------------------------ (a) response groups

def _lmm_compare(o: dict, r: dict, what: str, *, mean_keys, diff_sign: float, full: bool):
    """Compare one two-group LMM block with R's emmeans (KR) / lmerTest (Satterthwaite) output.

    ``full``: the block has the contract's complete response-group keys (SEs, df, Satterthwaite, variance
    components), each of which must be present; the baseline-volume block has only means, difference, SE, p.
    """
    kr = r["emmeans_kenward_roger"]
    sat = r["emmeans_satterthwaite"]
    singular = r["is_singular"]
    if "error" in kr:
        # pbkrtest failed in R (degenerate residual variance): we must flag, not invent a KR p-value
        assert _kr_failure_flagged(o), f"{what}: R's KR failed ({kr['error'][:60]}); ours {o.get('warnings')}"
        return
    lo, hi = mean_keys
    for i, (m, se, df) in enumerate(((f"mean_{lo}", f"se_{lo}", f"df_{lo}"), (f"mean_{hi}", f"se_{hi}", f"df_{hi}"))):
        close(o[m], kr["means"]["emmean"][i], rel=1e-6, abs_=1e-9, what=f"{what} {m}")
        if full:
            close(o[se], kr["means"]["SE"][i], rel=1e-5, what=f"{what} {se} (KR)")
            close(o[df], kr["means"]["df"][i], rel=1e-5, what=f"{what} {df} (KR)")
    close(o["difference"], diff_sign * kr["pairwise"]["estimate"][0], rel=1e-6, abs_=1e-9, what=f"{what} difference")
    close(o["difference_se"], kr["pairwise"]["SE"][0], rel=1e-5, what=f"{what} difference_se (KR)")
    if full:
        close(o["difference_df"], kr["pairwise"]["df"][0], rel=1e-5, what=f"{what} difference_df (KR)")
    close(o["p_value"], kr["pairwise"]["p.value"][0], abs_=1e-6, what=f"{what} p_value (KR)")
    if full:
        close(o["p_value_satterthwaite"], sat["pairwise"]["p.value"][0], abs_=1e-5, what=f"{what} p (Satterthwaite)")
        close(o["difference_df_satterthwaite"], sat["pairwise"]["df"][0], rel=1e-4, what=f"{what} df (Satt.)")
    if full:
        close(o["sd_residual"], r["sd_residual"], rel=1e-4, what=f"{what} sd_residual")
        if singular:
            # README: patient variance within abs 1e-8 * var_residual of R's 0 for singular fits
            assert o["sd_patient"] ** 2 <= 1e-8 * r["var_residual"], f"{what}: singular, sd_patient {o['sd_patient']}"
        else:
            close(o["sd_patient"], r["sd_patient"], rel=1e-4, what=f"{what} sd_patient")
        close(o["loglik_reml"], r["logLik_REML"], abs_=1e-6, what=f"{what} loglik_reml")
    assert o["singular"] == singular, f"{what}: singular {o['singular']} vs R {singular}"


def test_response_groups_match_emmeans_kenward_roger(pair):
    name, ours, ref = pair
    for g in GRADES:
        for var in ("dose_gy", "activity_gbq"):
            r = ref["lmm_response_groups"][g][var]
            o = ours["response_groups"][g][var]
            what = f"{name} response_groups.{g}.{var}"
            if "error" in r:
                assert "error" in o or o.get("warnings"), what
                continue
            assert "error" not in o, f"{what}: ours errored ({o.get('error')}) but R estimated it"
            # R's contrast is responder0 - responder1; ours is responder - nonresponder
            _lmm_compare(o, r, what, mean_keys=("nonresponder", "responder"), diff_sign=-1.0, full=True)


def test_baseline_volume_matches_emmeans(pair):
    name, ours, ref = pair
    assert ours["baseline_volume"]["cutoff_cm3"] == 30
    for g in GRADES:
        r = ref["exploratory_big_volume"][g]
        o = ours["baseline_volume"][g]
        what = f"{name} baseline_volume.{g}"
        if "error" in r:
            assert "error" in o or o.get("warnings"), what
            continue
        # R's contrast FALSE - TRUE is small - large, the contract's sign
        _lmm_compare(o, r, what, mean_keys=("small", "large"), diff_sign=1.0, full=False)


# ------------------------------------------------------------------------------ (b) TCP

def _tcp_compare(o: dict, r: dict, what: str):
    names = r["vcov"]["rownames"]
    se_r = r["fixef_se"]
    for nm in names:
        est, ref_est = o["coefficients"][nm]["estimate"], r["fixef"][nm]
        close(est, ref_est, rel=1e-4, abs_=1e-3 * se_r[nm], what=f"{what} {nm}")
        close(o["coefficients"][nm]["se"], se_r[nm], rel=1e-3, what=f"{what} se {nm} (deriv12)")
    assert o["vcov"]["names"] == names
    close(o["random_intercept_sd"], r["theta"], rel=1e-3, abs_=1e-3, what=f"{what} theta")
    close(-2 * o["loglik"], r["minus2logLik"], abs_=1e-5, what=f"{what} -2logLik")
    assert o["singular"] == r["is_singular"], what
    for g, pr in r["per_grade"].items():
        pg = o["per_grade"][g]
        for k in ("intercept", "slope_per_gy"):
            close(pg[k], pr[k], rel=1e-4, abs_=1e-3 * pr[k + "_se" if k == "intercept" else "slope_se"],
                  what=f"{what} {g} {k}")
        close(pg["intercept_se"], pr["intercept_se"], rel=1e-3, what=f"{what} {g} intercept_se")
        close(pg["slope_se"], pr["slope_se"], rel=1e-3, what=f"{what} {g} slope_se")
        for item in pr["dose_for_tcp"]:
            mine = pg["dose_at_tcp"][f"{item['tcp']:g}"]
            close(mine["dose_gy"], item["dose_gy"], rel=1e-3, abs_=1e-3, what=f"{what} {g} D{item['tcp']}")
            close(mine["se"], item["se_delta"], rel=1e-3, abs_=1e-3, what=f"{what} {g} D{item['tcp']} se")
        at = pr["at_doses"]
        for i, d in enumerate(at["dose_gy"]):
            mine = pg["at_dose"][f"{d:g}"]
            close(mine["tcp"], at["tcp"][i], abs_=1e-4, what=f"{what} {g} tcp@{d}")
            close(mine["ci_low"], at["lo_logit"][i], abs_=1e-3, what=f"{what} {g} ci_low@{d}")
            close(mine["ci_high"], at["hi_logit"][i], abs_=1e-3, what=f"{what} {g} ci_high@{d}")
            close(mine["odds"], at["odds"][i], rel=1e-3, what=f"{what} {g} odds@{d}")
            close(mine["odds_ci_low"], at["odds_lo"][i], rel=1e-3, what=f"{what} {g} odds_lo@{d}")
            close(mine["odds_ci_high"], at["odds_hi"][i], rel=1e-3, what=f"{what} {g} odds_hi@{d}")
        c, cr = o["curves"][g], r["tcp_curve"][g]
        np.testing.assert_allclose(c["dose_gy"], cr["dose_gy"], atol=1e-12)
        np.testing.assert_allclose(c["tcp"], cr["tcp"], atol=1e-4, err_msg=f"{what} {g} tcp curve")
        np.testing.assert_allclose(c["ci_low"], cr["lo_logit"], atol=1e-3, err_msg=f"{what} {g} ci_low curve")
        np.testing.assert_allclose(c["ci_high"], cr["hi_logit"], atol=1e-3, err_msg=f"{what} {g} ci_high curve")
        np.testing.assert_allclose(c["se_eta"], cr["se_eta"], rtol=1e-3, err_msg=f"{what} {g} se_eta curve")


# glmer refitted with tolPwrss = 1e-14 (Testing/data/stats/glmm_tight_pirls.R). lme4's default PIRLS stops at
# a 1e-7 relative change, so its Laplace objective is slightly off the exact Laplace approximation when theta
# is large; where the default and tight R fits differ by > 1e-6 in -2logLik, the tight fit is the target.
GLMM_TIGHT = json.loads((Path(__file__).resolve().parents[1] / "data" / "stats" / "glmm_tight_pirls.json"
                         ).read_text())["datasets"]


def _laplace_target(name: str, default: dict) -> dict:
    if "error" in default:
        return default
    tight = GLMM_TIGHT[name]["common_intercept"]["laplace"]
    if abs(default["minus2logLik"] - tight["minus2logLik"]) > 1e-6:
        return tight | {"suspect": default["suspect"], "suspect_reasons": default["suspect_reasons"]}
    return default


def test_tcp_laplace_matches_glmer(pair):
    name, ours, ref = pair
    r = _laplace_target(name, ref["glmm_tcp"]["common_intercept"]["laplace"])
    o = ours["tcp"]
    what = f"{name} tcp (Laplace)"
    assert o.get("method", "laplace") == "laplace" if "error" not in o else True
    if "error" in r or r.get("suspect"):
        assert _flagged(o), f"{what}: R is {'error' if 'error' in r else 'suspect'} but ours is not flagged"
        if r.get("suspect") and any("separation" in s for s in r.get("suspect_reasons", [])):
            assert o.get("separation") is True or "error" in o, f"{what}: separation not flagged"
            assert "error" in o or any("separation" in w for w in o["warnings"]), f"{what}: no separation warning"
        return
    assert "error" not in o, f"{what}: {o.get('error')}"
    assert o["formula"] == "responder ~ dose_gy + dose_gy:grade + (1 | patient)"
    assert o["n_agq"] == 1
    _tcp_compare(o, r, what)


@pytest.mark.parametrize("name", ["paper_like_s1202", "unbalanced_s501"])
def test_tcp_agq25_matches_glmer_nagq25(name, stats_reference_dir, tmp_root):
    ours = _analyze(stats_reference_dir, tmp_root, name, "--glmm-method", "agq", "--bootstrap", "0")
    ref = json.loads((stats_reference_dir / f"{name}.json").read_text())
    o = ours["tcp"]
    assert o["method"] == "agq" and o["n_agq"] == 25
    _tcp_compare(o, ref["glmm_tcp"]["common_intercept"]["agq25"], f"{name} tcp (AGQ25)")


# ------------------------------------------------------------------------------ (c) ROC

def test_roc_matches_proc(pair):
    name, ours, ref = pair
    for g in GRADES:
        r = ref["roc"][g]["dose_gy"]
        o = ours["roc"][g]
        what = f"{name} roc.{g}"
        if "error" in r:
            assert "error" in o, what
            continue
        assert o["n_cases"] == r["n_cases"] and o["n_controls"] == r["n_controls"], what
        close(o["auc"], r["auc"], abs_=1e-12, what=f"{what} auc")
        close(o["auc_ci_delong"][0], r["ci_delong"]["lower"], abs_=1e-12, what=f"{what} DeLong lower")
        close(o["auc_ci_delong"][1], r["ci_delong"]["upper"], abs_=1e-12, what=f"{what} DeLong upper")
        spread = 0.0
        if r.get("ci_bootstrap_other_seeds"):
            lows = [s["lower"] for s in r["ci_bootstrap_other_seeds"]] + [r["ci_bootstrap"]["lower"]]
            highs = [s["upper"] for s in r["ci_bootstrap_other_seeds"]] + [r["ci_bootstrap"]["upper"]]
            spread = max(np.ptp(lows), np.ptp(highs))
        tol = max(0.02, 3 * spread)
        assert o["bootstrap_n"] == 10000 and o["seed"] == 1
        close(o["auc_ci_bootstrap"][0], r["ci_bootstrap"]["lower"], abs_=tol, what=f"{what} bootstrap lower")
        close(o["auc_ci_bootstrap"][1], r["ci_bootstrap"]["upper"], abs_=tol, what=f"{what} bootstrap upper")
        yb = r["youden_best"]
        assert len(o["youden"]) == len(yb["threshold"]), f"{what}: Youden ties {o['youden']} vs {yb}"
        for mine, thr, se, sp in zip(o["youden"], yb["threshold"], yb["sensitivity"], yb["specificity"], strict=True):
            close(mine["threshold_gy"], float(thr), abs_=1e-9, what=f"{what} Youden threshold")
            close(mine["sensitivity"], se, abs_=1e-12, what=f"{what} Youden sensitivity")
            close(mine["specificity"], sp, abs_=1e-12, what=f"{what} Youden specificity")
        at = r["at_thresholds"]
        for i, d in enumerate(at["threshold"]):
            mine = o["at_dose"][f"{d:g}"]
            close(mine["sensitivity"], at["sensitivity"][i], abs_=1e-12, what=f"{what} sens@{d}")
            close(mine["specificity"], at["specificity"][i], abs_=1e-12, what=f"{what} spec@{d}")
        if r["auc"] in (0.0, 1.0):
            assert any("perfectly separates" in w for w in o["warnings"]), (
                f"{what}: AUC of {r['auc']} must carry the degenerate-CI warning, got {o['warnings']}")


# ------------------------------------------------------------------------------ (d) dose-response

def _expected_curve(per_grade_coef: dict, vcov: np.ndarray, cA: np.ndarray, cs: np.ndarray, dose):
    """Delta-method curve of A(1 - exp(-D/s)) computed here from R's estimates (analytic Jacobian)."""
    beta = np.array(list(per_grade_coef.values()))
    A, s = cA @ beta, cs @ beta
    e = np.exp(-dose / s)
    J = np.column_stack([1 - e, -A * e * dose / s**2]) @ np.vstack([cA, cs])
    se = np.sqrt(np.einsum("ij,jk,ik->i", J, vcov, J))
    fit = A * (1 - e)
    return fit, fit - 1.96 * se, fit + 1.96 * se


def test_dose_response_matches_nlme_lindstrom_bates(pair):
    name, ours, ref = pair
    coefmaps = {"G2_only": {"G2": (np.array([1.0, 0.0]), np.array([0.0, 1.0]))},
                "both_grades": {"G1": (np.array([1.0, 0, 0, 0]), np.array([0, 0, 1.0, 0])),
                                "G2": (np.array([1.0, 1.0, 0, 0]), np.array([0, 0, 1.0, 1.0]))}}
    for variant, cmap in coefmaps.items():
        r = ref["nlme_asymptotic"][variant]
        o = ours["dose_response"][variant]
        what = f"{name} dose_response.{variant}"
        lb = r.get("lb_fixed_point_ML", {"error": "absent"}) if "error" not in r else r
        if "error" in lb or not lb.get("converged", False):
            assert _flagged(o), f"{what}: R's LB fixed point failed but ours is not flagged"
            continue
        assert "error" not in o, f"{what}: {o.get('error')}"
        assert o["method"] == "ML" and o["estimator"] == "lindstrom-bates"
        for g, pr in lb["per_grade"].items():
            pg = o["per_grade"][g]
            close(pg["amplitude"], pr["A"], rel=1e-5, what=f"{what} {g} A")
            close(pg["scale_gy"], pr["s"], rel=1e-5, what=f"{what} {g} s")
            close(pg["amplitude_se"], pr["A_se"], rel=1e-5, what=f"{what} {g} A_se")
            close(pg["scale_gy_se"], pr["s_se"], rel=1e-5, what=f"{what} {g} s_se")
            vc = np.array(lb["vcov"]["values"])
            fit, lo, hi = _expected_curve(lb["fixef"], vc, *cmap[g], np.asarray(o["curves"][g]["dose_gy"], float))
            np.testing.assert_allclose(o["curves"][g]["dv"], fit, rtol=1e-5, atol=1e-7, err_msg=f"{what} {g} curve")
            np.testing.assert_allclose(o["curves"][g]["ci_low"], lo, rtol=1e-4, atol=1e-6, err_msg=f"{what} {g} lo")
            np.testing.assert_allclose(o["curves"][g]["ci_high"], hi, rtol=1e-4, atol=1e-6, err_msg=f"{what} {g} hi")
        tight = NLME_TIGHT.get(name, {}).get(variant, {})
        if lb["re_sd_A"] > 1e-3 * lb["residual_sd"]:
            close_to_either(o["random_amplitude_sd"], lb["re_sd_A"], tight.get("re_sd_A"), rel=1e-5,
                            what=f"{what} random_amplitude_sd")
        else:
            assert o["random_amplitude_sd"] < 1e-3 * o["residual_sd"], f"{what}: R's random-amplitude SD is ~0"
        close(o["residual_sd"], lb["residual_sd"], rel=1e-5, what=f"{what} residual_sd")
        close_to_either(o["loglik"], lb["logLik"], tight.get("logLik"), abs_=1e-6, what=f"{what} loglik")
        sw = r["ML"]["shapiro_wilk"]["residuals_level1_response"]  # every public reference has it
        # our residuals are at the LB fixed point, R's at nlme's early stop: README expects ~1e-3
        close(o["shapiro_wilk"]["w"], sw["W"], abs_=2e-3, what=f"{what} Shapiro-Wilk W")
        close(o["shapiro_wilk"]["p_value"], sw["p"], abs_=2e-2, what=f"{what} Shapiro-Wilk p")


# ------------------------------------------------------------------------------ default cut-off

def test_nocutoff_with_default_cutoff_excludes_small_tumours_but_keeps_them_for_baseline_volume(
        stats_reference_dir, tmp_path):
    """Default --min-baseline-volume 4: tumours < 4 cm³ leave the dose analyses (paper), while the
    exploratory baseline-volume analysis still uses every tumour, as the paper's 118-tumour analysis
    did, so it still equals R's."""
    csv = stats_reference_dir / "nocutoff_s601.csv"
    ref = json.loads((stats_reference_dir / "nocutoff_s601.json").read_text())
    rc = cli_main(["-q", "analyze", str(csv), "--out", str(tmp_path), "--bootstrap", "200"])
    assert rc == 0
    ours = json.loads((tmp_path / "analysis.json").read_text())
    import pandas as pd

    raw = pd.read_csv(csv)
    n_small = int((raw["baseline_volume_cm3"] < 4).sum())
    assert n_small > 0
    assert ours["input"]["n_excluded"] == n_small
    assert ours["summary"]["all"]["n_tumours"] == len(raw) - n_small
    tumours = pd.read_csv(tmp_path / "tumours.csv")
    assert int(tumours["excluded"].sum()) == n_small
    assert set(tumours.loc[tumours["excluded"] == 1, "tumor"]) == set(raw.loc[raw["baseline_volume_cm3"] < 4, "tumor"])
    for g in GRADES:
        _lmm_compare(ours["baseline_volume"][g], ref["exploratory_big_volume"][g], f"nocutoff baseline_volume.{g}",
                     mean_keys=("small", "large"), diff_sign=1.0, full=False)
