"""EANM-style uncertainty propagation checked by Monte Carlo sampling of the measurement model.

The Monte Carlo draws every input (calibration factor, recovery-coefficient model error, VOI volume
and the count noise of each time point), runs the whole estimate (activity → fit → dose), and
compares the spread of the estimates with the first-order budget of ``uncertainty.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from LuDoseResponseLib.dosimetry.integration import time_integral
from LuDoseResponseLib.dosimetry.uncertainty import (
    combine_cycle_sds,
    count_statistics_rel_sd,
    cycle_dose_uncertainty,
    volume_sensitivity,
)
from LuDoseResponseLib.dosimetry.voxelwise_integration import voxelwise_time_integral
from LuDoseResponseLib.errors import InputError

T_H = np.array([1.0, 24.0, 96.0, 168.0])
E_J_PER_DECAY = 0.147923 * 1.602176634e-13     # ICRP-107 electrons (physics/README.md §1)
RHO_G_PER_ML = 1.04


def rc_of_volume(v_ml):
    """A smooth recovery-coefficient curve, RC(V) = 1 − 0.6·V^(−1/3) (V in mL)."""
    return 1.0 - 0.6 * np.asarray(v_ml, dtype=float) ** (-1.0 / 3.0)


def drc_dv(v_ml):
    return 0.2 * v_ml ** (-4.0 / 3.0)


def dose_gy(tia_mbq_h, volume_ml):
    """LED mean dose: Ã·E/m (MBq·h → decays: ×3.6e9)."""
    return tia_mbq_h * 3.6e9 * E_J_PER_DECAY / (RHO_G_PER_ML * volume_ml * 1e-3)


def test_count_statistics_is_poisson():
    np.testing.assert_allclose(count_statistics_rel_sd([100, 2500, 1e6]), [0.1, 0.02, 0.001], rtol=1e-15)
    with pytest.raises(InputError, match="counts"):
        count_statistics_rel_sd([100, 0])


def test_volume_sensitivity_is_the_log_derivative():
    """s_V = d ln[1/(RC(V)·V)] / d ln V, checked by a central difference."""
    v = 12.0
    s = volume_sensitivity(v, rc_of_volume(v), drc_dv(v))
    h = 1e-6
    f = lambda lv: -math.log(rc_of_volume(math.exp(lv)) * math.exp(lv))  # noqa: E731
    numeric = (f(math.log(v) + h) - f(math.log(v) - h)) / (2 * h)
    assert s == pytest.approx(numeric, rel=1e-8)
    assert volume_sensitivity(v) == -1.0
    assert volume_sensitivity(v, rc_of_volume(v), drc_dv(v), mass_from_volume=False) == pytest.approx(numeric + 1)


def test_cycle_budget_matches_monte_carlo():
    """200 000 draws of the full measurement model; the first-order SD agrees within 2 %, as the README claims.

    The Monte Carlo standard error of an SD from n draws is SD·√((κ − 1)/(4n)) (κ: kurtosis of the draws);
    computed here (≈ 0.17 %), the claim is asserted with 3 standard errors to spare. Measured ratio
    budget/MC: 0.990–0.992 over seeds. With u_V = 5 % the first-order (GUM) budget is in its regime; at
    u_V = 10 % the 1/(RC(V)·V) curvature makes the first-order SD about 4–5 % smaller than the Monte Carlo SD:
    a known limit of linear propagation, not tested here.
    """
    rng = np.random.default_rng(2024)
    n = 200_000
    v_true, a0, lam = 20.0, 50.0, math.log(2) / 80.0
    u_q, u_rc, u_v = 0.03, 0.02, 0.05
    counts = np.array([2500.0, 1600.0, 900.0, 400.0])
    rel_counts = count_statistics_rel_sd(counts)
    q_true = 5.7                               # cps/MBq
    a_true = a0 * np.exp(-lam * T_H)
    rate_true = q_true * rc_of_volume(v_true) * a_true
    # draws
    rate_obs = rate_true[:, None] * (1 + rel_counts[:, None] * rng.standard_normal((T_H.size, n)))
    q_hat = q_true * (1 + u_q * rng.standard_normal(n))
    v_hat = v_true * (1 + u_v * rng.standard_normal(n))
    rc_hat = rc_of_volume(v_hat) * (1 + u_rc * rng.standard_normal(n))
    a_hat = rate_obs / (q_hat * rc_hat)
    tia = voxelwise_time_integral(T_H, list(a_hat), model="mono", rel_sd=rel_counts).integral
    d_mc = dose_gy(tia, v_hat)
    # first-order budget
    fit = time_integral(T_H, a_true, model="mono", values_sd=rel_counts * a_true)
    d_true = dose_gy(fit.value, v_true)
    assert fit.value == pytest.approx(a0 / lam, rel=1e-9)
    budget = cycle_dose_uncertainty(d_true, fit_sd_gy=dose_gy(fit.sd, v_true), calibration_rel_sd=u_q,
                                    recovery_rel_sd=u_rc, volume_rel_sd=u_v,
                                    volume_sensitivity=volume_sensitivity(v_true, rc_of_volume(v_true),
                                                                          drc_dv(v_true)))
    mc_sd = float(np.std(d_mc, ddof=1))
    centred = d_mc - d_mc.mean()
    kurtosis = float(np.mean(centred ** 4) / np.mean(centred ** 2) ** 2)
    mc_rel_se = math.sqrt((kurtosis - 1) / (4 * n))
    assert mc_rel_se < 0.02 / 5                            # the Monte Carlo error is well below the tolerance
    assert abs(budget.sd_gy / mc_sd - 1) + 3 * mc_rel_se < 0.02
    assert budget.sd_gy == pytest.approx(mc_sd, rel=0.05)
    assert float(np.median(d_mc)) == pytest.approx(d_true, rel=0.02)
    assert budget.components["volume"] == max(budget.components.values())   # the paper: volume dominates


def test_fit_term_by_hand_for_two_samples():
    """Analytic first-order propagation through the exponential through two samples (no fit freedom):

    λ = ln(y1/y2)/Δt, I = y1·e^(λ t1)/λ, so ∂ln I/∂y1 = 1/y1 + (t1 − 1/λ)/(y1 Δt) and
    ∂ln I/∂y2 = −(t1 − 1/λ)/(y2 Δt); u(I)² = Σ (I·∂ln I/∂y_i·σ_i)². The library's SD comes from the fit
    covariance (JᵀWJ)⁻¹ and a complex-step gradient: a different route to the same first-order quantity.
    """
    t1, t2, y1, y2 = 24.0, 96.0, 3.0, 1.4
    s1, s2 = 0.09, 0.07
    dt = t2 - t1
    lam = math.log(y1 / y2) / dt
    integral = y1 * math.exp(lam * t1) / lam
    d1 = 1 / y1 + (t1 - 1 / lam) / (y1 * dt)
    d2 = -(t1 - 1 / lam) / (y2 * dt)
    expected_sd = integral * math.hypot(d1 * s1, d2 * s2)
    r = time_integral([t1, t2], [y1, y2], model="mono", values_sd=[s1, s2])
    assert r.value == pytest.approx(integral, rel=1e-12)
    assert r.sd == pytest.approx(expected_sd, rel=1e-8)


def test_cycle_budget_by_hand():
    """u(D)/D = √(0.03² + 0.02² + (1.142857·0.05)² + (0.4/10)²) for RC(V) = 1 − 0.6·V^(−1/3) at V = 8 mL:
    RC = 0.7, dRC/dV = 0.2·8^(−4/3) = 0.0125, s_V = −1 − 8·0.0125/0.7 = −1.142857 (hand arithmetic)."""
    s_v = volume_sensitivity(8.0, 0.7, 0.0125)
    assert s_v == pytest.approx(-1 - 1 / 7, rel=1e-14)
    b = cycle_dose_uncertainty(10.0, fit_sd_gy=0.4, calibration_rel_sd=0.03, recovery_rel_sd=0.02,
                               volume_rel_sd=0.05, volume_sensitivity=s_v)
    rel = math.sqrt(0.0009 + 0.0004 + (0.05 * 8 / 7) ** 2 + 0.0016)
    assert b.sd_gy == pytest.approx(10.0 * rel, rel=1e-14)
    assert b.to_dict()["calibration_sd_gy"] == pytest.approx(0.3, rel=1e-14)


@pytest.mark.parametrize("rho", [0.0, 1.0])
def test_cycle_combination_matches_monte_carlo(rho):
    """Four cycles, each with an independent part and a calibration part; shared (ρ = 1) or not (ρ = 0)."""
    rng = np.random.default_rng(11 + int(rho))
    n = 50_000
    d = np.array([30.0, 25.0, 21.0, 18.0])
    u_ind = np.array([0.06, 0.07, 0.08, 0.09])
    u_cal = 0.05
    ind = rng.standard_normal((4, n)) * u_ind[:, None]
    cal = np.repeat(rng.standard_normal((1, n)), 4, axis=0) if rho == 1.0 else rng.standard_normal((4, n))
    total = (d[:, None] * (1 + ind + u_cal * cal)).sum(0)
    sds = d * np.hypot(u_ind, u_cal)
    sd = combine_cycle_sds(sds, calibration_sd_gy=d * u_cal, calibration_correlation=rho)
    mc_sd = float(np.std(total, ddof=1))
    assert math.sqrt(2 / (4 * n)) < 0.02 / 5      # the Monte Carlo SE of an SD (normal draws: κ = 3)
    assert sd == pytest.approx(mc_sd, rel=0.02)


def test_cycle_combination_by_hand():
    """Two cycles of SD 5 Gy whose calibration parts are 3 and 4 Gy: split each into an independent part
    (variance 25 − 9 = 16 and 25 − 16 = 9) and a shared one; with ρ = 1 the shared parts add linearly:
    Var = 16 + 9 + (3 + 4)² = 74. Independent (ρ = 0): 25 + 25 = 50."""
    assert combine_cycle_sds([5.0, 5.0], calibration_sd_gy=[3.0, 4.0], calibration_correlation=1.0) == \
        pytest.approx(math.sqrt(74.0), rel=1e-15)
    assert combine_cycle_sds([5.0, 5.0], calibration_sd_gy=[3.0, 4.0], calibration_correlation=0.5) == \
        pytest.approx(math.sqrt(16 + 9 + 9 + 16 + 2 * 0.5 * 12), rel=1e-15)
    assert combine_cycle_sds([5.0, 5.0]) == pytest.approx(math.sqrt(50.0), rel=1e-15)


def test_relative_uncertainty_of_sum_is_below_single_cycle():
    """The paper (Discussion): summing independent cycles lowers the relative uncertainty; for n equal cycles
    with equal relative SD u the sum's relative SD is u/√n."""
    rel = 0.08
    sd = combine_cycle_sds([20.0 * rel] * 4)
    assert sd / 80.0 == pytest.approx(rel / 2, rel=1e-15)


def test_bad_input():
    with pytest.raises(InputError, match="fit SD is unknown"):
        cycle_dose_uncertainty(10.0, fit_sd_gy=None)
    with pytest.raises(InputError, match="calibration_rel_sd"):
        cycle_dose_uncertainty(10.0, fit_sd_gy=0.1, calibration_rel_sd=-0.1)
    with pytest.raises(InputError, match="exceeds"):
        combine_cycle_sds([1.0, 1.0], calibration_sd_gy=[2.0, 0.5], calibration_correlation=1.0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        combine_cycle_sds([1.0], calibration_correlation=1.5)
    with pytest.raises(InputError, match="recovery coefficient"):
        volume_sensitivity(10.0, 0.0, 0.1)
    with pytest.raises(InputError, match="recovery coefficient must be a number"):
        volume_sensitivity(10.0, "high", 0.1)
    with pytest.raises(InputError, match="drc_dv_per_ml"):
        volume_sensitivity(10.0, 0.8, "steep")
    with pytest.raises(InputError, match="sds_gy must be a sequence"):
        combine_cycle_sds(None)
    with pytest.raises(InputError, match="counts must be numbers"):
        count_statistics_rel_sd(["many"])
    with pytest.raises(InputError, match="volume_sensitivity"):
        cycle_dose_uncertainty(10.0, fit_sd_gy=0.1, volume_sensitivity=float("nan"))


def test_to_dict_is_plain():
    import json

    b = cycle_dose_uncertainty(10.0, fit_sd_gy=0.3, calibration_rel_sd=0.03, volume_rel_sd=0.1)
    d = b.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["sd_gy"] == pytest.approx(10.0 * math.sqrt(0.03 ** 2 + 0.1 ** 2 + 0.03 ** 2), rel=1e-12)
