"""Random-intercept LMM (REML) + Kenward-Roger + Satterthwaite + emmeans, against R and closed forms.

R reference: ``stats/public/*.json`` written by ``reference/stats/R/analyze.R`` (lme4 1.1-31, pbkrtest 0.5.2,
lmerTest 3.1-3, emmeans 1.8.4), blocks ``lmm_response_groups.G.{dose_gy,activity_gbq}`` and
``exploratory_big_volume.G``. Tolerances are those of the reference README.
Closed forms: balanced one-way designs, where REML/ML have explicit estimates and the t tests are exact.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from LuDoseResponseLib.errors import InputError, ModelFitError
from LuDoseResponseLib.stats.lmm import fit_random_intercept_lmm, fit_two_group_lmm

DATASETS = (
    "paper_like_s1202",
    "paper_like_s1102",
    "large_s201",
    "singular_s3026",
    "separation_s401",
    "unbalanced_s501",
    "nocutoff_s601",
)
CASES = [(ds, g, v) for ds in DATASETS for g in ("G1", "G2") for v in ("dose_gy", "activity_gbq", "big")]

REL_FIXEF = 1e-6
REL_SE = 1e-5
REL_VAR = 1e-4
ABS_SINGULAR_VAR = 1e-8  # x var_residual
ABS_LOGLIK = 1e-6
REL_KR = 1e-5
ABS_KR_P = 1e-6
REL_SATT_DF = 1e-4
ABS_SATT_P = 1e-5

RESPONSE_KEYS = {
    "mean_nonresponder",
    "mean_responder",
    "se_nonresponder",
    "se_responder",
    "df_nonresponder",
    "df_responder",
    "difference",
    "difference_se",
    "difference_df",
    "p_value",
    "p_value_satterthwaite",
    "difference_df_satterthwaite",
    "sd_patient",
    "sd_residual",
    "loglik_reml",
    "singular",
    "warnings",
}
VOLUME_KEYS = {"mean_small", "mean_large", "difference", "difference_se", "p_value", "singular", "warnings"}


@functools.cache
def _load(folder: str, dataset: str) -> tuple[pd.DataFrame, dict]:
    base = Path(folder) / dataset
    return pd.read_csv(base.with_suffix(".csv")), json.loads(base.with_suffix(".json").read_text())


def _case(folder: Path, dataset: str, grade: str, var: str):
    df, ref = _load(str(folder), dataset)
    d = df[df["grade"] == grade]
    patient = d["patient"].to_numpy(str)
    if var == "big":
        big = d["baseline_volume_cm3"].to_numpy(float) > 30.0
        res = fit_two_group_lmm(d["dv"].to_numpy(float), big, patient, levels=(False, True))
        return d, "dv", ref["exploratory_big_volume"][grade], res
    res = fit_two_group_lmm(d[var].to_numpy(float), d["responder"].to_numpy(int), patient, levels=(0, 1))
    return d, var, ref["lmm_response_groups"][grade][var], res


def _rel(ours: float | None, ref: float, tol: float, what: str) -> None:
    assert ours is not None, f"{what}: ours is None, R {ref!r}"
    assert abs(ours - ref) <= tol * abs(ref), (
        f"{what}: ours {ours!r}, R {ref!r}, rel {abs(ours - ref) / abs(ref):.3g}"
    )


def _abs(ours: float | None, ref: float, tol: float, what: str) -> None:
    assert ours is not None, f"{what}: ours is None, R {ref!r}"
    assert abs(ours - ref) <= tol, f"{what}: ours {ours!r}, R {ref!r}, diff {abs(ours - ref):.3g}"


def test_all_public_datasets_are_covered(stats_reference_dir: Path) -> None:
    assert {p.stem for p in stats_reference_dir.glob("*.json")} == set(DATASETS)


@pytest.mark.parametrize(("dataset", "grade", "var"), CASES)
def test_matches_lme4_pbkrtest_lmertest_emmeans(
    stats_reference_dir: Path, dataset: str, grade: str, var: str
) -> None:
    d, yname, ref, res = _case(stats_reference_dir, dataset, grade, var)
    tag = f"{dataset}.{grade}.{var}"
    blocks = (
        res.to_dict(),
        res.to_response_groups_block() if var != "big" else res.to_baseline_volume_block(),
    )
    for block in blocks:
        json.dumps(block, allow_nan=False)
    if "error" in ref.get("vcov_KR_adjusted", {}) or "error" in ref.get("emmeans_kenward_roger", {}):
        _check_collapsed(d, yname, ref, res, tag)
        return
    assert "error" not in ref, tag
    assert res.kr_error is None and not res.residual_variance_collapsed, tag
    assert res.n_obs == ref["n_obs"] and res.n_patients == ref["n_patients"], tag

    fixef = list(ref["fixef"].values())
    _rel(res.fixef[0], fixef[0], REL_FIXEF, f"{tag} (Intercept)")
    _rel(res.fixef[1], fixef[1], REL_FIXEF, f"{tag} {list(ref['fixef'])[1]}")
    vcov = np.array(ref["vcov"]["values"])
    for i in range(2):
        _rel(math.sqrt(res.vcov[i][i]), math.sqrt(vcov[i, i]), REL_SE, f"{tag} unadjusted SE[{i}]")
    _rel(res.vcov[0][1], vcov[0, 1], REL_SE, f"{tag} unadjusted cov")

    assert res.singular is ref["is_singular"], tag
    _rel(res.var_residual, ref["var_residual"], REL_VAR, f"{tag} var_residual")
    _rel(res.sd_residual, ref["sd_residual"], REL_VAR, f"{tag} sd_residual")
    if ref["is_singular"]:
        _abs(
            res.var_patient, ref["var_patient"], ABS_SINGULAR_VAR * ref["var_residual"], f"{tag} var_patient"
        )
        _abs(res.theta, ref["theta"], 1e-4, f"{tag} theta")  # lme4 isSingular threshold
    else:
        _rel(res.var_patient, ref["var_patient"], REL_VAR, f"{tag} var_patient")
        _rel(res.sd_patient, ref["sd_patient"], REL_VAR, f"{tag} sd_patient")
        _rel(res.theta, ref["theta"], REL_VAR, f"{tag} theta")
    _abs(res.loglik_reml, ref["logLik_REML"], ABS_LOGLIK, f"{tag} logLik_REML")

    kr_vcov = np.array(ref["vcov_KR_adjusted"]["values"])
    for i, j in ((0, 0), (0, 1), (1, 1)):
        _rel(res.vcov_kr[i][j], kr_vcov[i, j], REL_KR, f"{tag} vcov_KR_adjusted[{i},{j}]")
    kr = ref["emmeans_kenward_roger"]
    means, pair = kr["means"], kr["pairwise"]
    _rel(res.mean_reference, means["emmean"][0], REL_FIXEF, f"{tag} emmean ref")
    _rel(res.mean_other, means["emmean"][1], REL_FIXEF, f"{tag} emmean other")
    _rel(res.se_reference, means["SE"][0], REL_KR, f"{tag} KR SE ref")
    _rel(res.se_other, means["SE"][1], REL_KR, f"{tag} KR SE other")
    _rel(res.df_reference, means["df"][0], REL_KR, f"{tag} KR df ref")
    _rel(res.df_other, means["df"][1], REL_KR, f"{tag} KR df other")
    _rel(-res.difference, pair["estimate"][0], REL_FIXEF, f"{tag} contrast (ref - other)")
    _rel(res.difference_se, pair["SE"][0], REL_KR, f"{tag} KR contrast SE")
    _rel(res.difference_df, pair["df"][0], REL_KR, f"{tag} KR contrast df")
    _abs(res.p_value, pair["p.value"][0], ABS_KR_P, f"{tag} KR p")
    coef_kr = ref["coef_table_kenward_roger"]["values"]
    _rel(res.difference_df, coef_kr[1][2], REL_KR, f"{tag} lmerTest KR df")

    sat = ref["emmeans_satterthwaite"]
    _rel(res.se_reference_unadjusted, sat["means"]["SE"][0], REL_SE, f"{tag} Satterthwaite SE ref")
    _rel(res.se_other_unadjusted, sat["means"]["SE"][1], REL_SE, f"{tag} Satterthwaite SE other")
    _rel(res.df_reference_satterthwaite, sat["means"]["df"][0], REL_SATT_DF, f"{tag} Satterthwaite df ref")
    _rel(res.df_other_satterthwaite, sat["means"]["df"][1], REL_SATT_DF, f"{tag} Satterthwaite df other")
    _rel(
        res.difference_se_satterthwaite, sat["pairwise"]["SE"][0], REL_SE, f"{tag} Satterthwaite contrast SE"
    )
    _rel(res.difference_df_satterthwaite, sat["pairwise"]["df"][0], REL_SATT_DF, f"{tag} Satterthwaite df")
    _abs(res.p_value_satterthwaite, sat["pairwise"]["p.value"][0], ABS_SATT_P, f"{tag} Satterthwaite p")
    coef_s = ref["coef_table_satterthwaite"]["values"]
    _rel(res.difference_df_satterthwaite, coef_s[1][2], REL_SATT_DF, f"{tag} lmerTest Satterthwaite df")

    if ref["is_singular"]:
        assert any("singular" in w for w in res.warnings), tag
    _check_blocks(res, var, kr, sat, ref, tag)


def _check_blocks(res, var: str, kr: dict, sat: dict, ref: dict, tag: str) -> None:
    """The analysis.json blocks, mapped to R as in the README table (signs included)."""
    if var == "big":
        block = res.to_baseline_volume_block()
        assert set(block) == VOLUME_KEYS, tag
        _rel(block["mean_small"], kr["means"]["emmean"][0], REL_FIXEF, f"{tag} mean_small")
        _rel(block["mean_large"], kr["means"]["emmean"][1], REL_FIXEF, f"{tag} mean_large")
        _rel(block["difference"], kr["pairwise"]["estimate"][0], REL_FIXEF, f"{tag} small - large")
        _rel(block["difference_se"], kr["pairwise"]["SE"][0], REL_KR, f"{tag} difference_se")
        _abs(block["p_value"], kr["pairwise"]["p.value"][0], ABS_KR_P, f"{tag} p_value")
        assert block["singular"] is ref["is_singular"], tag
        return
    block = res.to_response_groups_block()
    assert set(block) == RESPONSE_KEYS, tag
    for ours, col, row in (("mean_nonresponder", "emmean", 0), ("mean_responder", "emmean", 1)):
        _rel(block[ours], kr["means"][col][row], REL_FIXEF, f"{tag} {ours}")
    for ours, col, row in (
        ("se_nonresponder", "SE", 0),
        ("se_responder", "SE", 1),
        ("df_nonresponder", "df", 0),
        ("df_responder", "df", 1),
    ):
        _rel(block[ours], kr["means"][col][row], REL_KR, f"{tag} {ours}")
    _rel(block["difference"], -kr["pairwise"]["estimate"][0], REL_FIXEF, f"{tag} responder - nonresponder")
    _rel(block["difference_se"], kr["pairwise"]["SE"][0], REL_KR, f"{tag} difference_se")
    _rel(block["difference_df"], kr["pairwise"]["df"][0], REL_KR, f"{tag} difference_df")
    _abs(block["p_value"], kr["pairwise"]["p.value"][0], ABS_KR_P, f"{tag} p_value")
    _abs(
        block["p_value_satterthwaite"],
        sat["pairwise"]["p.value"][0],
        ABS_SATT_P,
        f"{tag} p_value_satterthwaite",
    )
    _rel(
        block["difference_df_satterthwaite"], sat["pairwise"]["df"][0], REL_SATT_DF, f"{tag} Satterthwaite df"
    )
    _rel(block["sd_residual"], ref["sd_residual"], REL_VAR, f"{tag} sd_residual")
    if not ref["is_singular"]:
        _rel(block["sd_patient"], ref["sd_patient"], REL_VAR, f"{tag} sd_patient")
    _abs(block["loglik_reml"], ref["logLik_REML"], ABS_LOGLIK, f"{tag} loglik_reml")
    assert block["singular"] is ref["is_singular"], tag


def _check_collapsed(d: pd.DataFrame, yname: str, ref: dict, res, tag: str) -> None:
    """R: 'failed to converge', pbkrtest 'computationally singular'. We flag it and give no inference.

    The data: y is constant within every patient, so the REML criterion has no finite optimum. R's own
    fixed effects there are numerically unreliable (lme4 stops at theta ~ 1e7), so they are not a target.
    The limit of the GLS estimate is analytic: the within-patient group contrast is 0 and the intercept is
    the unweighted mean of the patient values.
    """
    assert any("failed to converge" in w for w in ref["warnings"]), tag
    spread = d.groupby("patient")[yname].agg(lambda s: s.max() - s.min())
    assert float(spread.max()) == 0.0, f"{tag}: precondition, {yname} constant within patients"
    assert res.residual_variance_collapsed, tag
    assert res.kr_error is not None and "collaps" in res.kr_error, tag
    assert any("residual variance collapses" in w for w in res.warnings), tag
    assert any("Kenward-Roger" in w for w in res.warnings), tag
    for name in (
        "se_reference",
        "se_other",
        "df_reference",
        "df_other",
        "difference_se",
        "difference_df",
        "p_value",
        "vcov_kr",
        "p_value_satterthwaite",
        "difference_df_satterthwaite",
        "loglik_reml",
    ):
        assert getattr(res, name) is None, f"{tag} {name}"
    assert res.sd_residual == 0.0 and res.var_residual == 0.0, tag
    patient_values = d.groupby("patient")[yname].first()
    _rel(res.mean_reference, float(patient_values.mean()), 1e-12, f"{tag} limit intercept")
    assert abs(res.difference) <= 1e-12 * float(patient_values.abs().max()), tag


# ----------------------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------------------
def _balanced_between(q: int, m: int, n_ref: int, seed: int, sd_patient: float):
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(q), m)
    group = (patient >= n_ref).astype(int)
    y = 10.0 + 3.0 * group + rng.normal(0.0, sd_patient, q)[patient] + rng.normal(0.0, 1.0, q * m)
    ybar = y.reshape(q, m).mean(axis=1)
    g = group.reshape(q, m)[:, 0]
    gmean = np.array([ybar[g == 0].mean(), ybar[g == 1].mean()])
    ssw = float(((y.reshape(q, m) - ybar[:, None]) ** 2).sum())
    ssb = float(m * ((ybar - gmean[g]) ** 2).sum())
    return y, group, patient, gmean, ssw, ssb


def test_balanced_between_patient_factor_closed_form() -> None:
    """Balanced one-way design, group constant within patient: MSW, (MSB - MSW)/m, exact t with q - 2 df."""
    q, m, n_ref = 9, 4, 4
    y, group, patient, gmean, ssw, ssb = _balanced_between(q, m, n_ref, seed=3, sd_patient=2.0)
    msw, msb = ssw / (q * (m - 1)), ssb / (q - 2)
    assert msb > msw
    res = fit_two_group_lmm(y, group, patient)
    _rel(res.var_residual, msw, 1e-10, "var_residual")
    _rel(res.var_patient, (msb - msw) / m, 1e-9, "var_patient")
    _rel(res.mean_reference, gmean[0], 1e-12, "mean ref")
    _rel(res.mean_other, gmean[1], 1e-12, "mean other")
    se_exact = math.sqrt(msb / m * (1.0 / n_ref + 1.0 / (q - n_ref)))
    _rel(res.difference_se, se_exact, 1e-10, "KR SE")
    _rel(res.difference_se_satterthwaite, se_exact, 1e-10, "unadjusted SE")
    _rel(res.se_reference, math.sqrt(msb / m / n_ref), 1e-10, "KR SE of a mean")
    for name in ("difference_df", "difference_df_satterthwaite", "df_reference", "df_other_satterthwaite"):
        _rel(getattr(res, name), q - 2.0, 1e-10, name)
    p_exact = 2.0 * stats.t.sf(abs(gmean[1] - gmean[0]) / se_exact, q - 2)
    _abs(res.p_value, p_exact, 1e-12, "KR p")
    _abs(res.p_value_satterthwaite, p_exact, 1e-12, "Satterthwaite p")
    assert not res.singular and res.kr_error is None

    x = np.column_stack([np.ones_like(y), group])
    ml = fit_random_intercept_lmm(y, x, patient, reml=False)
    _rel(ml.var_residual, msw, 1e-10, "ML var_residual")
    _rel(ml.var_patient, (ssb / q - msw) / m, 1e-9, "ML var_patient")


def test_balanced_within_patient_factor_exact_df() -> None:
    """Each patient has both levels twice: the contrast is a within-patient one with n - q - 1 error df."""
    q = 7
    rng = np.random.default_rng(5)
    patient = np.repeat(np.arange(q), 4)
    group = np.tile([0, 0, 1, 1], q)
    y = 10.0 + 3.0 * group + rng.normal(0.0, 2.0, q)[patient] + rng.normal(0.0, 1.0, 4 * q)
    yy = y.reshape(q, 4)
    effect = float((yy[:, 2:].mean(axis=1) - yy[:, :2].mean(axis=1)).mean())
    resid = yy - yy.mean(axis=1, keepdims=True) - np.array([-1.0, -1.0, 1.0, 1.0]) * effect / 2.0
    dof = q * 3 - 1
    msw = float((resid**2).sum()) / dof
    res = fit_two_group_lmm(y, group, patient)
    _rel(res.difference, effect, 1e-10, "difference")
    _rel(res.var_residual, msw, 1e-9, "var_residual")
    _rel(res.difference_se, math.sqrt(msw / q), 1e-9, "KR SE")
    _rel(res.difference_df, dof, 1e-9, "KR df")
    _rel(res.difference_df_satterthwaite, dof, 1e-9, "Satterthwaite df")


def test_boundary_fit_is_pooled_least_squares() -> None:
    """Patient means equal within each group (MSB = 0 < MSW): REML puts var_patient at 0, OLS variance."""
    patient = np.repeat(np.arange(6), 4)
    group = (patient >= 3).astype(int)
    within = np.array([-1.0, 0.5, 1.5, -1.0])
    y = 20.0 + 4.0 * group + np.tile(within, 6) * (1.0 + 0.1 * patient)
    y -= np.repeat(y.reshape(6, 4).mean(axis=1) - (20.0 + 4.0 * group.reshape(6, 4)[:, 0]), 4)
    res = fit_two_group_lmm(y, group, patient)
    assert res.singular and res.theta == 0.0 and res.var_patient == 0.0
    ols_rss = float(((y - np.where(group == 1, 24.0, 20.0)) ** 2).sum())
    _rel(res.var_residual, ols_rss / (y.size - 2), 1e-10, "var_residual")
    _rel(res.mean_other - res.mean_reference, 4.0, 1e-12, "difference")
    _rel(res.difference_se_satterthwaite, math.sqrt(res.var_residual * (1 / 12 + 1 / 12)), 1e-10, "OLS SE")
    assert any("singular" in w for w in res.warnings)


def test_patient_level_outcome_is_flagged() -> None:
    patient = np.repeat(np.arange(5), 3)
    group = np.tile([0, 1, 1], 5)
    y = np.repeat([30.0, 22.2, 44.4, 29.6, 37.0], 3)
    res = fit_two_group_lmm(y, group, patient, y_name="activity_gbq")
    assert res.residual_variance_collapsed and res.kr_error is not None
    assert res.p_value is None and res.p_value_satterthwaite is None
    _rel(res.mean_reference, float(np.mean([30.0, 22.2, 44.4, 29.6, 37.0])), 1e-12, "limit intercept")
    json.dumps(res.to_response_groups_block(), allow_nan=False)


# ----------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------
GOOD_Y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]
GOOD_G = [0, 0, 1, 1, 0, 1]
GOOD_P = ["a", "a", "b", "b", "c", "c"]


@pytest.mark.parametrize(
    ("y", "group", "patient", "levels", "match"),
    [
        (GOOD_Y[:5], GOOD_G, GOOD_P, (0, 1), "same length"),
        ([1.0, float("nan"), 3.0, 4.0, 5.0, 6.5], GOOD_G, GOOD_P, (0, 1), "dose_gy has 1 missing"),
        (GOOD_Y, [0, 1, 1, 1, 1, 1], GOOD_P, (0, 1), "level 0 has 1 observation"),
        (GOOD_Y, [1] * 6, GOOD_P, (0, 1), "level 0 has 0 observation"),
        (GOOD_Y, [0, 0, 1, 2, 0, 1], GOOD_P, (0, 1), "neither level"),
        (GOOD_Y, GOOD_G, ["a", None, "b", "b", "c", "c"], (0, 1), "patient is missing"),
        (GOOD_Y, GOOD_G, GOOD_P, (1, 1), "two different values"),
    ],
)
def test_bad_input_is_reported(y, group, patient, levels, match) -> None:
    with pytest.raises(InputError, match=match):
        fit_two_group_lmm(y, group, patient, levels=levels, y_name="dose_gy", group_name="responder")


def test_one_patient_per_row_is_not_estimable() -> None:
    with pytest.raises(ModelFitError, match="dose_gy ~ responder"):
        fit_two_group_lmm(GOOD_Y, GOOD_G, list("abcdef"), y_name="dose_gy", group_name="responder")


def test_block_level_conventions_are_enforced() -> None:
    res = fit_two_group_lmm(GOOD_Y, GOOD_G, GOOD_P, levels=(1, 0))
    with pytest.raises(InputError, match="non-responders"):
        res.to_response_groups_block()
    with pytest.raises(InputError, match="False"):
        res.to_baseline_volume_block()
