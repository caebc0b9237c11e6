"""The 95 % CI of the dose at a TCP target (stats.tcp.dose_interval_at_tcp, Fieller's theorem).

Definition: the doses at which the target lies inside the pointwise 95 % band plogis(eta ∓ 1.96 se_eta)
that the report draws. Independent references:
- R's fitted GLMM (``glmm_tcp.common_intercept.laplace.per_grade``: intercept, slope, their SEs and
  covariance), with the band crossings found by bracketing root search (scipy brentq), not by the
  closed-form quadratic; tolerance rel 1e-3 (the README's D50/D90 tolerance, which our fit meets);
- R's own band on its 5-Gy grid (``tcp_curve``: lo_logit/hi_logit), crossing by linear
  interpolation of the band's logit; the interpolation error of a hyperbola over 5 Gy is below
  0.05 Gy here, so abs 0.1 Gy;
- limits: no uncertainty gives the point dose; a slope indistinguishable from 0 gives no bounded interval.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit

from LuDoseResponseLib.stats.tcp import Z95, dose_interval_at_tcp, tcp_analysis

DATASETS = ("paper_like_s1202", "paper_like_s1102", "large_s201", "nocutoff_s601")


def _band_crossings(a, b, vaa, vab, vbb, p):
    """Where the upper and the lower band cross p, by root bracketing on a wide dose grid."""
    def se(d):
        return math.sqrt(vaa + 2 * d * vab + d * d * vbb)

    def upper(d):
        return expit(a + b * d + Z95 * se(d)) - p

    def lower(d):
        return expit(a + b * d - Z95 * se(d)) - p

    grid = np.linspace(-3000.0, 6000.0, 9001)
    roots = []
    for f in (upper, lower):
        v = np.array([f(d) for d in grid])
        k = np.flatnonzero(np.sign(v[:-1]) != np.sign(v[1:]))
        roots += [brentq(f, grid[i], grid[i + 1], xtol=1e-10) for i in k]
    return sorted(roots)


@pytest.mark.parametrize("name", DATASETS)
def test_dose_ci_equals_the_band_crossings_of_r_fit(stats_reference_dir, name):
    r = json.loads((stats_reference_dir / f"{name}.json").read_text())["glmm_tcp"]["common_intercept"]["laplace"]
    if r.get("suspect"):
        pytest.skip(f"{name}: R's fit is flagged suspect")
    d = pd.read_csv(stats_reference_dir / f"{name}.csv")
    ours = tcp_analysis(d["dose_gy"], d["grade"], d["responder"], d["patient"]).to_dict()
    bounded = 0
    for g, pg in r["per_grade"].items():
        for item in pg["dose_for_tcp"]:
            p = item["tcp"]
            roots = _band_crossings(pg["intercept"], pg["slope_per_gy"], pg["intercept_se"] ** 2,
                                    pg["cov_intercept_slope"], pg["slope_se"] ** 2, p)
            mine = ours["per_grade"][g]["dose_at_tcp"][f"{p:g}"]
            if abs(pg["slope_per_gy"]) <= Z95 * pg["slope_se"]:
                # the band contains p over a half-line (or everywhere): no bounded interval
                assert mine["ci_low"] is None and mine["ci_high"] is None
                assert not (len(roots) == 2 and roots[0] < item["dose_gy"] < roots[1])
                continue
            bounded += 1
            assert len(roots) == 2, (name, g, p, roots)
            assert mine["ci_low"] == pytest.approx(roots[0], rel=1e-3, abs=1e-3 * item["se_delta"])
            assert mine["ci_high"] == pytest.approx(roots[1], rel=1e-3, abs=1e-3 * item["se_delta"])
            assert mine["ci_low"] < mine["dose_gy"] < mine["ci_high"]
    assert bounded >= 2


@pytest.mark.parametrize("name", ("paper_like_s1202", "large_s201"))
def test_dose_ci_reads_off_r_band_on_its_grid(stats_reference_dir, name):
    r = json.loads((stats_reference_dir / f"{name}.json").read_text())["glmm_tcp"]["common_intercept"]["laplace"]
    checked = 0
    for g, pg in r["per_grade"].items():
        c = r["tcp_curve"][g]
        dose = np.asarray(c["dose_gy"], float)
        for item in pg["dose_for_tcp"]:
            p = item["tcp"]
            low, high = dose_interval_at_tcp(pg["intercept"], pg["slope_per_gy"], pg["intercept_se"] ** 2,
                                             pg["cov_intercept_slope"], pg["slope_se"] ** 2, p)
            # lower bound: the upper band reaches p; upper bound: the lower band reaches p (both rise with dose)
            for bound, band in ((low, "hi_logit"), (high, "lo_logit")):
                if not dose[0] <= bound <= dose[-1]:
                    continue
                x = np.interp(logit(p), logit(np.asarray(c[band], float)), dose)
                assert bound == pytest.approx(x, abs=0.1), (g, p, band)
                checked += 1
    assert checked >= 2


def test_dose_ci_limits():
    a, b, p = -1.5, 0.03, 0.9
    point = (logit(p) - a) / b
    assert dose_interval_at_tcp(a, b, 0.0, 0.0, 0.0, p) == pytest.approx((point, point), rel=1e-12)
    # only the intercept uncertain: se constant, so the bounds are (logit p − a ∓ z·se)/b exactly
    low, high = dose_interval_at_tcp(a, b, 0.25, 0.0, 0.0, p)
    assert (low, high) == pytest.approx(((logit(p) - a - Z95 * 0.5) / b, (logit(p) - a + Z95 * 0.5) / b), rel=1e-12)
    # a slope within 1.96 SE of 0: the band never leaves p on one side, no bounded interval
    assert all(math.isnan(x) for x in dose_interval_at_tcp(a, b, 0.5, 0.0, (b / 1.9) ** 2, p))


def test_unbounded_ci_is_a_warning_not_a_number():
    rng = np.random.default_rng(3)
    dose = rng.uniform(20, 200, 40)
    resp = (rng.uniform(size=40) < 0.5).astype(int)        # no dose dependence
    patients = [f"P{i // 2}" for i in range(40)]
    res = tcp_analysis(dose, ["G2"] * 40, resp, patients).to_dict()
    d90 = res["per_grade"]["G2"]["dose_at_tcp"]["0.9"]
    slope, se = res["per_grade"]["G2"]["slope_per_gy"], res["per_grade"]["G2"]["slope_se"]
    assert abs(slope) < Z95 * se
    assert d90["ci_low"] is None and d90["ci_high"] is None
    assert any("CI of the dose at TCP 0.9 is unbounded" in w for w in res["warnings"])
