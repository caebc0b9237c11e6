"""BED of a decaying source (dosimetry/bed.py) against closed forms, limits, quadrature and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from LuDoseResponseLib.dosimetry.bed import (
    KIDNEY_ALPHA_BETA_GY,
    KIDNEY_REPAIR_HALF_TIME_H,
    bed_from_exponentials,
    bed_from_time_integral,
    bed_mono_exponential,
    cumulative_bed,
)
from LuDoseResponseLib.dosimetry.integration import time_integral
from LuDoseResponseLib.errors import InputError

LN2 = math.log(2)


def test_mono_exponential_by_hand():
    # D = 10 Gy, T_eff = 50 h, α/β = 2.6 Gy, T_μ = 2.8 h: λ = 0.0138629/h, μ = 0.2475526/h,
    # G = λ/(λ+μ) = 0.0530303..., BED = 10 + 100·G/2.6
    lam, mu = LN2 / 50.0, LN2 / 2.8
    expected = 10.0 + 100.0 * (lam / (lam + mu)) / 2.6
    assert expected == pytest.approx(12.0396, abs=1e-4)
    result = bed_mono_exponential(10.0, 50.0, alpha_beta_gy=2.6, repair_half_time_h=2.8)
    assert result.bed_gy == pytest.approx(expected, rel=1e-12)
    assert result.g_factor == pytest.approx(2.8 / (2.8 + 50.0), rel=1e-12)   # λ/(λ+μ) = T_μ/(T_μ+T_eff)


def test_exponential_sum_equals_mono_formula_and_kidney_defaults():
    assert (KIDNEY_ALPHA_BETA_GY, KIDNEY_REPAIR_HALF_TIME_H) == (2.6, 2.8)
    lam = LN2 / 40.0
    a = bed_from_exponentials([0.3], [lam])
    b = bed_mono_exponential(0.3 / lam, 40.0)
    assert a.bed_gy == pytest.approx(b.bed_gy, rel=1e-12) and a.dose_gy == pytest.approx(0.3 / lam, rel=1e-14)


def _g_by_quadrature(rate, dose_gy, mu):
    """Dale's G from the double integral, by adaptive quadrature (independent of the closed form)."""
    inner = lambda w, t: rate(t) * rate(w) * math.exp(-mu * (t - w))   # noqa: E731
    value, _ = integrate.dblquad(inner, 0.0, 2000.0, 0.0, lambda t: t, epsabs=1e-12, epsrel=1e-10)
    return 2.0 * value / dose_gy**2


def test_uptake_washout_and_bi_exponential_against_quadrature():
    mu = LN2 / 2.8
    c, l_wash, l_up = 0.5, LN2 / 60.0, LN2 / 3.0           # Ḋ = c(e^(−λw t) − e^(−λu t))
    res = bed_from_exponentials([c, -c], [l_wash, l_up])
    rate = lambda t: c * (math.exp(-l_wash * t) - math.exp(-l_up * t))   # noqa: E731
    assert res.dose_gy == pytest.approx(c * (1 / l_wash - 1 / l_up), rel=1e-12)
    assert res.g_factor == pytest.approx(_g_by_quadrature(rate, res.dose_gy, mu), rel=1e-6)
    a1, b1, a2, b2 = 0.2, LN2 / 5.0, 0.1, LN2 / 80.0
    res = bed_from_exponentials([a1, a2], [b1, b2])
    rate = lambda t: a1 * math.exp(-b1 * t) + a2 * math.exp(-b2 * t)   # noqa: E731
    assert res.g_factor == pytest.approx(_g_by_quadrature(rate, res.dose_gy, mu), rel=1e-6)


def test_limits_no_repair_and_acute():
    # instantaneous repair: BED → D; a dose delivered much faster than repair: BED → D(1 + D/(α/β))
    fast_repair = bed_mono_exponential(5.0, 60.0, repair_half_time_h=1e-6)
    assert fast_repair.bed_gy == pytest.approx(5.0, rel=1e-7)
    acute = bed_mono_exponential(5.0, 1e-6, alpha_beta_gy=2.6)
    assert acute.bed_gy == pytest.approx(5.0 * (1 + 5.0 / 2.6), rel=1e-6)
    # uptake slows delivery and lowers G below the mono-exponential value with the same washout
    lam = LN2 / 60.0
    with_uptake = bed_from_exponentials([1.0, -1.0], [lam, LN2 / 2.0])
    assert with_uptake.g_factor < lam / (lam + LN2 / 2.8)


def test_mono_uncertainty_against_monte_carlo():
    rng = np.random.default_rng(4)
    dose, t_eff, sd_dose, sd_t = 6.0, 45.0, 0.6, 4.5
    result = bed_mono_exponential(dose, t_eff, dose_sd_gy=sd_dose, t_eff_sd_h=sd_t)
    d = rng.normal(dose, sd_dose, 200_000)
    t = rng.normal(t_eff, sd_t, 200_000)
    lam, mu = LN2 / t, LN2 / 2.8
    draws = d + d**2 * (lam / (lam + mu)) / 2.6
    assert result.sd_gy == pytest.approx(draws.std(), rel=0.02)   # first order vs MC (MC error ~0.2 %)


def test_bed_from_fitted_curve():
    lam = LN2 / 50.0
    times = np.array([4.0, 24.0, 96.0, 168.0])
    fit = time_integral(times, 0.2 * np.exp(-lam * times), model="mono")
    res = bed_from_time_integral(fit)
    assert res.bed_gy == pytest.approx(bed_mono_exponential(0.2 / lam, 50.0).bed_gy, rel=1e-6)
    trapezoid = time_integral(times, 0.2 * np.exp(-lam * times), method="trapezoid")
    with pytest.raises(InputError, match="fitted dose-rate curve"):
        bed_from_time_integral(trapezoid)


def test_fitted_bed_sd_against_repeated_noisy_fits():
    rng = np.random.default_rng(11)
    lam = LN2 / 50.0
    times = np.array([2.0, 24.0, 72.0, 120.0, 168.0])
    truth = 0.2 * np.exp(-lam * times)
    beds, sds = [], []
    for _ in range(300):
        noisy = truth * (1 + 0.05 * rng.standard_normal(times.size))
        fit = time_integral(times, noisy, model="mono", values_sd=0.05 * truth)
        res = bed_from_time_integral(fit)
        beds.append(res.bed_gy)
        sds.append(res.sd_gy)
    # the propagated SD describes the spread of BED over repeated measurements (300 draws: ±8 % at 2σ)
    assert np.mean(sds) == pytest.approx(np.std(beds), rel=0.12)


def test_cumulative_bed():
    beds = [bed_mono_exponential(4.0, 50.0, dose_sd_gy=0.4), bed_mono_exponential(3.0, 45.0, dose_sd_gy=0.3)]
    total, sd = cumulative_bed(beds)
    assert total == pytest.approx(beds[0].bed_gy + beds[1].bed_gy)
    assert sd == pytest.approx(math.hypot(beds[0].sd_gy, beds[1].sd_gy))
    assert cumulative_bed(beds, correlation=1.0)[1] == pytest.approx(beds[0].sd_gy + beds[1].sd_gy)


@pytest.mark.parametrize("kwargs, match", [
    ({"dose_gy": -1.0, "t_eff_h": 50.0}, "dose_gy"),
    ({"dose_gy": 5.0, "t_eff_h": 0.0}, "t_eff_h"),
    ({"dose_gy": 5.0, "t_eff_h": 50.0, "alpha_beta_gy": float("nan")}, "alpha_beta_gy"),
    ({"dose_gy": 5.0, "t_eff_h": 50.0, "repair_half_time_h": -2.8}, "repair_half_time_h"),
    ({"dose_gy": 5.0, "t_eff_h": 50.0, "dose_sd_gy": -0.1}, "dose_sd_gy"),
    ({"dose_gy": "five", "t_eff_h": 50.0}, "dose_gy"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        bed_mono_exponential(**kwargs)


def test_bad_curves():
    with pytest.raises(InputError, match="equal-length"):
        bed_from_exponentials([1.0, 2.0], [0.1])
    with pytest.raises(InputError, match="rate"):
        bed_from_exponentials([1.0], [0.0])
    with pytest.raises(InputError, match="positive dose"):
        bed_from_exponentials([-1.0], [0.1])
    with pytest.raises(InputError, match="correlation"):
        cumulative_bed([bed_mono_exponential(1.0, 50.0)], correlation=2.0)
