"""Time integration against analytic integrals (physics/README.md §6 and closed forms).

Truths are computed here from the model formulas (A/λ, ΣA_i/λ_i, C(1/λ1 − 1/λ2)) or by
scipy.integrate.quad of the true curve, never from the library's own output.
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.integrate import quad

from LuDoseResponseLib.dosimetry.integration import (
    TimeIntegral,
    hanscheid_2018,
    madsen_2018,
    sum_cycles,
    time_integral,
    tumour_cycle_dose,
)
from LuDoseResponseLib.dosimetry.voxelwise_integration import voxelwise_time_integral
from LuDoseResponseLib.errors import GeometryError, InputError, LuDoseResponseError, ModelFitError

T_HALF_H = 6.647 * 24.0          # ICRP-107, physics/README.md §1
LAM_P = math.log(2) / T_HALF_H
T_TYPICAL = np.array([1.0, 24.0, 96.0, 168.0])   # the paper's nominal sampling (h)


def lam_eff(t_biol_h: float | None) -> float:
    return LAM_P + (0.0 if t_biol_h is None else math.log(2) / t_biol_h)


# ---------------------------------------------------------------- physics/README.md §6 (published/computed)

@pytest.mark.parametrize("t_biol, tia, t_eff", [(None, 230.150, 159.528), (200.0, 128.029, 88.743),
                                               (100.0, 88.680, 61.469)])
@pytest.mark.parametrize("model", ["mono", "auto"])
def test_readme_section6_cases(t_biol, tia, t_eff, model):
    """A0 = 1 MBq sampled at 1, 24, 96, 168 h; README values are given to 3 decimals (±5e-4)."""
    y = np.exp(-lam_eff(t_biol) * T_TYPICAL)
    r = time_integral(T_TYPICAL, y, model=model)
    assert r.model == "mono"
    assert r.value == pytest.approx(tia, abs=6e-4)
    assert r.t_eff_h == pytest.approx(t_eff, abs=6e-4)
    assert not any("capped" in w for w in r.warnings)   # T_eff = T½ exactly is not a cap


def test_physical_tail_overestimates_washout():
    """README §6: a physical-decay tail after the last sample overestimates when the tumour washes out."""
    lam = lam_eff(100.0)
    y = np.exp(-lam * T_TYPICAL)
    t_last = T_TYPICAL[-1]
    truth_phys_tail = (1 - math.exp(-lam * t_last)) / lam + math.exp(-lam * t_last) / LAM_P
    r = time_integral(T_TYPICAL, y, model="mono", tail="physical")
    assert r.value == pytest.approx(truth_phys_tail, rel=1e-9)
    assert r.value > 1.2 * 88.680


# ---------------------------------------------------------------- mono, bi, uptake–washout at typical sampling

def test_bi_exponential_typical_sampling():
    a1, l1, a2, l2 = 3.0, math.log(2) / 5.0, 1.0, lam_eff(150.0)
    y = a1 * np.exp(-l1 * T_TYPICAL) + a2 * np.exp(-l2 * T_TYPICAL)
    r = time_integral(T_TYPICAL, y, model="bi")
    assert r.value == pytest.approx(a1 / l1 + a2 / l2, rel=1e-7)
    assert r.params["lambda_slow_per_h"] == pytest.approx(l2, rel=1e-6)
    assert r.t_eff_h == pytest.approx(math.log(2) / l2, rel=1e-6)
    assert r.sd is None   # four samples, four parameters, no values_sd: no residual dof


def test_bi_exponential_phase_seen_by_one_sample_is_an_error():
    """T_fast = 1.25 h sampled at 4, 24, 72, 168 h: at 24 h the fast phase is 5e-6 of the signal, so only
    the 4 h sample sees it and A_fast/λ_fast is not determined; an error, not an arbitrary number."""
    t = np.array([4.0, 24.0, 72.0, 168.0])
    y = 2.64 * np.exp(-0.5543 * t) + 0.82 * np.exp(-0.00506 * t)
    with pytest.raises(ModelFitError, match="not determined"):
        time_integral(t, y, model="bi")


def test_uptake_washout_typical_sampling_explicit_and_auto():
    c, lw, lu = 2.0, lam_eff(100.0), math.log(2) / 3.0
    y = c * (np.exp(-lw * T_TYPICAL) - np.exp(-lu * T_TYPICAL))
    truth = c * (1 / lw - 1 / lu)
    for model in ("uptake-washout", "auto"):
        r = time_integral(T_TYPICAL, y, model=model)
        assert r.model == "uptake-washout"
        assert r.value == pytest.approx(truth, rel=1e-7)
    # a mono-exponential cannot describe an uptake: it would be capped and far off
    mono = time_integral(T_TYPICAL, y, model="mono")
    assert abs(mono.value / truth - 1) > 0.1
    assert any("capped" in w for w in mono.warnings)


def test_auto_with_values_sd_does_not_keep_a_misfitting_mono():
    """Four noisy uptake samples with known σ: AICc can judge only the mono-exponential, which misfits
    (χ²); auto then compares by AIC and takes uptake–washout, whose SD covers the truth (200 seeds)."""
    c, lw, lu = 2.0, lam_eff(100.0), math.log(2) / 3.0
    y = c * (np.exp(-lw * T_TYPICAL) - np.exp(-lu * T_TYPICAL))
    truth = c * (1 / lw - 1 / lu)
    z = []
    for seed in range(200):
        yn = y * (1 + 0.02 * np.random.default_rng(seed).standard_normal(4))
        r = time_integral(T_TYPICAL, yn, values_sd=0.02 * yn)
        assert r.model == "uptake-washout"
        z.append((r.value - truth) / r.sd)
    assert 0.92 <= np.mean(np.abs(z) <= 2) <= 0.99


@pytest.mark.parametrize("t", [[0.0, 4.0, 24.0, 96.0, 168.0], [1.0, 4.0, 24.0, 96.0, 168.0],
                               [1.0, 24.0, 72.0, 120.0, 168.0]])
@pytest.mark.parametrize("t_uptake_h", [3.0, 20.0])
def test_auto_on_five_uptake_samples_is_not_a_capped_mono(t, t_uptake_h):
    """Five exact uptake–washout samples without values_sd: only the mono-exponential has an AICc
    (n − K − 1 > 0), and it cannot rise: it ran to T_eff = ∞ and was capped, giving −19 % to −100 %
    (0 at a t = 0 sample). auto must compare by AIC instead and return the exact C(1/λ1 − 1/λ2)."""
    t = np.array(t)
    c, lw, lu = 2.0, lam_eff(100.0), math.log(2) / t_uptake_h
    y = c * (np.exp(-lw * t) - np.exp(-lu * t))
    r = time_integral(t, y)
    assert r.model == "uptake-washout"
    assert r.value == pytest.approx(c * (1 / lw - 1 / lu), rel=1e-6)
    assert r.diagnostics["selected_by"] == "AIC (AICc choice capped)"
    assert any("cap" in w for w in r.warnings)


def test_uptake_with_nearly_equal_rates_is_determined():
    """T_uptake = 20 h, T_eff,washout = 61 h at 1, 24, 96, 168 h with 5 % noise: noisy fits often land on
    nearly equal rates, where C and λ2 − λ1 trade off (condition number > 1e8) but the integral does not.
    The fit must not be refused as "not determined" (auto then fell back to a capped mono, −90 %); the SD
    covers the analytic truth at the nominal rate (300 seeds, binomial SE 1.3 %)."""
    c, lw, lu = 2.0, lam_eff(100.0), math.log(2) / 20.0
    truth = c * (1 / lw - 1 / lu)
    rng = np.random.default_rng(5)
    z = []
    for _ in range(300):
        y = c * (np.exp(-lw * T_TYPICAL) - np.exp(-lu * T_TYPICAL)) * (1 + 0.05 * rng.standard_normal(4))
        explicit = time_integral(T_TYPICAL, y, model="uptake-washout", values_sd=0.05 * y)
        assert time_integral(T_TYPICAL, y, values_sd=0.05 * y).model == "uptake-washout"
        z.append((explicit.value - truth) / explicit.sd)
    assert 0.92 <= np.mean(np.abs(z) <= 2) <= 0.985


T_DENSE = np.array([0.0, 1.0, 4.0, 12.0, 24.0, 48.0, 72.0, 96.0, 168.0])


@pytest.mark.parametrize("truth_model", ["mono", "bi", "uptake-washout"])
def test_auto_selects_the_true_model_on_dense_sampling(truth_model):
    if truth_model == "mono":
        y, truth = 5.0 * np.exp(-lam_eff(80.0) * T_DENSE), 5.0 / lam_eff(80.0)
    elif truth_model == "bi":
        l1, l2 = math.log(2) / 6.0, lam_eff(120.0)
        y, truth = 4.0 * np.exp(-l1 * T_DENSE) + 1.5 * np.exp(-l2 * T_DENSE), 4.0 / l1 + 1.5 / l2
    else:
        lw, lu = lam_eff(90.0), math.log(2) / 4.0
        y, truth = 3.0 * (np.exp(-lw * T_DENSE) - np.exp(-lu * T_DENSE)), 3.0 * (1 / lw - 1 / lu)
    r = time_integral(T_DENSE, y)
    assert r.model == truth_model
    assert r.diagnostics["selected_by"] == "AICc"
    assert r.value == pytest.approx(truth, rel=1e-6)
    assert set(r.aicc) == {"mono", "bi", "uptake-washout"}


def test_two_samples_give_the_exponential_through_them():
    """λ = ln(y1/y2)/Δt, A = y1·e^(λ t1): ∫ = A/λ; model aliases are accepted."""
    t, y = [24.0, 96.0], [2.0, 1.0]
    lam = math.log(2.0) / 72.0
    for model in ("auto", "mono", "Mono-exponential"):
        r = time_integral(t, y, model=model)
        assert r.model == "mono"
        assert r.value == pytest.approx(2.0 * math.exp(lam * 24.0) / lam, rel=1e-9)
        assert r.sd is None and r.warnings


def test_t0_sample_allowed_and_units_are_value_hours():
    """Dose rate in Gy/h → Gy: 0.5 Gy/h with T_eff = 50 h integrates to 0.5·50/ln2 Gy."""
    t = np.array([0.0, 24.0, 72.0, 144.0])
    lam = math.log(2) / 50.0
    r = time_integral(t, 0.5 * np.exp(-lam * t), model="mono")
    assert r.value == pytest.approx(0.5 / lam, rel=1e-9)


def test_fitted_half_life_above_physical_is_capped_with_warning():
    """y = e^(−0.002 t): T_eff = 347 h > 159.5 h; refit with λ = λ_phys and amplitude by WLS."""
    t = np.array([1.0, 24.0, 72.0, 120.0, 168.0])
    y = np.exp(-0.002 * t)
    r = time_integral(t, y, model="mono")
    e = np.exp(-LAM_P * t)
    w = 1 / y ** 2                      # default relative weighting σ ∝ y
    a_fixed = np.sum(w * e * y) / np.sum(w * e * e)
    assert r.params["lambda_per_h"] == pytest.approx(LAM_P, rel=1e-12)
    assert r.value == pytest.approx(a_fixed / LAM_P, rel=1e-9)
    assert r.t_eff_h == pytest.approx(T_HALF_H, rel=1e-12)
    assert any("capped" in w_ for w_ in r.warnings)
    assert r.diagnostics["capped"] is True
    cov = r.covariance_matrix
    assert cov[1, 1] == 0.0 and cov[0, 0] > 0


def test_capped_bi_keeps_every_decay_constant_at_or_above_physical():
    """Retention close to physical decay (T_biol = 2000 h, 5 % noise): the bi fit's slow rate is capped.

    The refit must hold the other rate ≥ λ_phys too; before, it ran to 1e-7 /h, was reordered into the slow
    phase and gave ~1000× the dose. With both rates ≥ λ_phys and data that decay slower than physics, the
    best bi curve is the physical decay through the weighted amplitude (closed form as in the mono test).
    """
    t = np.array([1.0, 4.0, 24.0, 96.0, 168.0])
    y = np.array([0.943, 0.936, 0.885, 0.621, 0.476])
    r = time_integral(t, y, model="bi")
    assert min(r.params["lambda_fast_per_h"], r.params["lambda_slow_per_h"]) >= LAM_P * (1 - 1e-12)
    e = np.exp(-LAM_P * t)
    w = 1 / y ** 2
    a_fixed = np.sum(w * e * y) / np.sum(w * e * e)
    assert r.value == pytest.approx(a_fixed / LAM_P, rel=1e-6)
    assert r.value <= (r.params["amplitude_fast"] + r.params["amplitude_slow"]) / LAM_P * (1 + 1e-9)
    assert any("capped" in w_ for w_ in r.warnings)


# ---------------------------------------------------------------- trapezoid: explicit head and tail

def _piecewise_truth(knots_t, knots_y, head: str, tail_lam: float) -> float:
    """quad of: head (0 → y0 linear, or constant y0), linear between knots, y_last·e^(−λ(t−t_last)) after."""
    t0, y0 = knots_t[0], knots_y[0]

    def f(t):
        if t < t0:
            return y0 * t / t0 if head == "linear" else y0
        if t <= knots_t[-1]:
            return float(np.interp(t, knots_t, knots_y))
        return knots_y[-1] * math.exp(-tail_lam * (t - knots_t[-1]))

    pts = list(knots_t)
    inner = quad(f, 0, knots_t[-1], points=pts, limit=200, epsabs=0, epsrel=1e-12)[0]
    tail = quad(f, knots_t[-1], np.inf, epsabs=0, epsrel=1e-12)[0]
    return inner + tail


@pytest.mark.parametrize("head", ["linear", "constant"])
def test_trapezoid_head_and_fitted_tail_exact_on_piecewise_curve(head):
    """The last two samples decay with λ = 0.02 /h; with tail_points=2 the fitted tail is that exponential."""
    lam = 0.02
    t = np.array([2.0, 24.0, 72.0, 120.0])
    y = np.array([3.0, 5.0, 4.0, 4.0 * math.exp(-lam * 48.0)])
    truth = _piecewise_truth(t, y, head, lam)
    r = time_integral(t, y, method="trapezoid", tail="fit", head=head, tail_points=2)
    assert r.value == pytest.approx(truth, rel=1e-9)
    assert r.params["lambda_tail_per_h"] == pytest.approx(lam, rel=1e-12)
    assert r.diagnostics["head_value"] == pytest.approx(3.0 if head == "linear" else 6.0, rel=1e-12)


def test_trapezoid_physical_tail_and_exact_exponential_tail_fit():
    t = np.array([4.0, 24.0, 96.0, 168.0])
    y = np.array([1.0, 2.0, 1.5, 1.2])
    truth = _piecewise_truth(t, y, "linear", LAM_P)
    r = time_integral(t, y, method="trapezoid", tail="physical")
    assert r.value == pytest.approx(truth, rel=1e-9)
    # exponential data: the three last samples lie on e^(−λt), so the fitted tail is exact
    lam = lam_eff(60.0)
    ye = np.exp(-lam * T_TYPICAL)
    r = time_integral(T_TYPICAL, ye, method="trapezoid")
    assert r.diagnostics["tail_value"] == pytest.approx(ye[-1] / lam, rel=1e-9)
    assert r.value > 1 / lam   # trapezoids of a convex decay overestimate


def test_trapezoid_tail_rising_is_capped_to_physical():
    t = np.array([1.0, 24.0, 96.0, 168.0])
    y = np.array([1.0, 2.0, 2.5, 2.6])     # still rising: the maximum is the last sample
    r = time_integral(t, y, method="trapezoid", tail="fit")
    assert r.params["lambda_tail_per_h"] == pytest.approx(LAM_P, rel=1e-12)
    assert any("physical decay used" in w for w in r.warnings)
    y2 = np.array([1.0, 3.0, 2.9, 2.85])   # a slow decline: T_eff above the physical half-life
    r2 = time_integral(t, y2, method="trapezoid", tail="fit")
    assert r2.params["lambda_tail_per_h"] == pytest.approx(LAM_P, rel=1e-12)
    assert any("capped" in w for w in r2.warnings)


def test_trapezoid_sd_propagates_values_sd():
    """The trapezoid with a physical tail is linear in y: SD² = Σ (∂I/∂y_i · σ_i)² with known weights."""
    t = np.array([1.0, 24.0, 96.0, 168.0])
    y = np.array([1.0, 2.0, 1.5, 1.2])
    sd = np.array([0.1, 0.1, 0.2, 0.05])
    dt = np.diff(t)
    weights = np.array([t[0] / 2 + dt[0] / 2, (dt[0] + dt[1]) / 2, (dt[1] + dt[2]) / 2, dt[2] / 2 + 1 / LAM_P])
    r = time_integral(t, y, method="trapezoid", tail="physical", values_sd=sd)
    assert r.value == pytest.approx(float(weights @ y), rel=1e-12)
    assert r.sd == pytest.approx(float(np.sqrt(np.sum((weights * sd) ** 2))), rel=1e-6)


def test_trapezoid_sd_with_a_fitted_tail_has_the_analytic_gradient():
    """tail_points = 2: tail = y_n/λ with λ = ln(y_{n−1}/y_n)/Δt, so ∂tail/∂y_n = 1/λ + 1/(λ²Δt) and
    ∂tail/∂y_{n−1} = −1/(λ²Δt)·y_n/y_{n−1}; the body and the linear head add their trapezoid weights."""
    t = np.array([2.0, 24.0, 96.0, 168.0])
    y = np.array([1.0, 2.0, 1.5, 0.9])
    sd = np.array([0.05, 0.1, 0.08, 0.06])
    dt = np.diff(t)
    lam = math.log(y[2] / y[3]) / dt[2]
    grad = np.array([t[0] / 2 + dt[0] / 2, (dt[0] + dt[1]) / 2, (dt[1] + dt[2]) / 2, dt[2] / 2])
    grad[3] += 1 / lam + 1 / (lam ** 2 * dt[2])
    grad[2] += -1 / (lam ** 2 * dt[2]) * y[3] / y[2]
    r = time_integral(t, y, method="trapezoid", tail="fit", tail_points=2, values_sd=sd)
    assert r.sd == pytest.approx(float(np.sqrt(np.sum((grad * sd) ** 2))), rel=1e-6)


# ---------------------------------------------------------------- noisy data: the SD has the right coverage

def _coverage(model, t, truth_fn, truth, rel_noise, n_seeds, seed):
    rng = np.random.default_rng(seed)
    z = np.empty(n_seeds)
    for i in range(n_seeds):
        y_true = truth_fn(t)
        y = y_true * (1 + rel_noise * rng.standard_normal(t.size))
        r = time_integral(t, y, model=model, values_sd=rel_noise * y)   # σ from the observed values
        z[i] = (r.value - truth) / r.sd
    return z


def test_noisy_mono_sd_coverage():
    """300 seeds, 5 % noise at 1, 24, 96, 168 h: |error| ≤ 2 SD in ≈ 95.4 % (binomial SE 1.2 %)."""
    lam = math.log(2) / 60.0
    z = _coverage("mono", T_TYPICAL, lambda t: 2.0 * np.exp(-lam * t), 2.0 / lam, 0.05, 300, 20240611)
    cov2, cov1 = np.mean(np.abs(z) <= 2), np.mean(np.abs(z) <= 1)
    assert 0.92 <= cov2 <= 0.985, cov2
    assert 0.60 <= cov1 <= 0.76, cov1
    assert abs(np.mean(z)) < 0.2 and 0.85 < np.std(z) < 1.15


def test_noisy_bi_sd_coverage():
    t = np.array([1.0, 4.0, 12.0, 24.0, 48.0, 96.0, 144.0, 168.0])
    l1, l2 = math.log(2) / 8.0, lam_eff(150.0)
    z = _coverage("bi", t, lambda tt: 3.0 * np.exp(-l1 * tt) + np.exp(-l2 * tt), 3.0 / l1 + 1.0 / l2, 0.03, 300, 7)
    cov2 = np.mean(np.abs(z) <= 2)
    assert 0.92 <= cov2 <= 0.985, cov2


def test_coverage_without_values_sd_uses_student_t():
    """σ estimated from 2 residual dof: ±2 SD covers only ≈ 82 % (Student t); ±k95·SD covers ≈ 95 %."""
    lam = math.log(2) / 60.0
    rng = np.random.default_rng(99)
    hits2, hits_k = [], []
    for _ in range(300):
        y = 2.0 * np.exp(-lam * T_TYPICAL) * (1 + 0.05 * rng.standard_normal(4))
        r = time_integral(T_TYPICAL, y, model="mono")
        err = abs(r.value - 2.0 / lam)
        hits2.append(err <= 2 * r.sd)
        hits_k.append(err <= r.diagnostics["k95"] * r.sd)
    assert r.diagnostics["k95"] == pytest.approx(4.302653, rel=1e-6)   # t(0.975, 2 dof)
    assert 0.92 <= np.mean(hits_k) <= 0.985
    assert 0.74 <= np.mean(hits2) <= 0.89


def test_sd_from_residuals_without_values_sd():
    """Relative weighting: covariance scaled by WRSS/(n−p); exact data give SD ≈ 0, noisy data SD > 0."""
    lam = lam_eff(80.0)
    r = time_integral(T_TYPICAL, np.exp(-lam * T_TYPICAL), model="mono")
    assert r.sd == pytest.approx(0.0, abs=1e-9)
    y = np.exp(-lam * T_TYPICAL) * np.array([1.03, 0.98, 1.02, 0.97])
    r = time_integral(T_TYPICAL, y, model="mono")
    assert r.sd > 0 and r.diagnostics["weighting"] == "relative" and r.diagnostics["dof"] == 2


# ---------------------------------------------------------------- single time point

@pytest.mark.parametrize("t_sample", [24.0, 96.0, 150.0])
def test_hanscheid_exact_when_t_eff_is_t_or_half_t(t_sample):
    for t_eff in (t_sample, t_sample / 2):
        lam = math.log(2) / t_eff
        r = hanscheid_2018(t_sample, 3.0 * math.exp(-lam * t_sample))
        assert r.value == pytest.approx(3.0 / lam, rel=1e-12)
        assert r.model == "hanscheid-2018"
        assert r.t_eff_h is None          # not estimated: the same value is exact for T_eff = t and t/2


def test_hanscheid_error_bound_between():
    """Between T_eff = t/2 and t the approximation is high by at most 2/(e·ln2) − 1 = 6.15 %."""
    t = 96.0
    ratios = []
    for t_eff in np.linspace(t / 2, t, 41):
        lam = math.log(2) / t_eff
        ratios.append(hanscheid_2018(t, math.exp(-lam * t)).value * lam)
    ratios = np.array(ratios)
    assert np.all(ratios >= 1 - 1e-12)
    assert ratios.max() == pytest.approx(2 / (math.e * math.log(2)), rel=2e-3)


def test_madsen_exact_with_true_half_life_and_insensitive_at_optimal_time():
    t_eff = 70.0
    lam = math.log(2) / t_eff
    for t in (24.0, 96.0, 168.0):
        r = madsen_2018(t, 5.0 * math.exp(-lam * t), t_eff)
        assert r.value == pytest.approx(5.0 / lam, rel=1e-12)
    t_opt = t_eff / math.log(2)   # Madsen's optimal time 1/λ
    y = 5.0 * math.exp(-lam * t_opt)
    for wrong in (0.8, 1.2):
        est = madsen_2018(t_opt, y, wrong * t_eff).value
        # T' = k·T sampled at t = 1/λ: k·e^(1/k − 1) − 1 = +2.7 % (k = 0.8) and +1.6 % (k = 1.2),
        # second order in the 20 % half-life error
        expected = wrong * math.exp(1 / wrong - 1) - 1
        assert est * lam / 5.0 - 1 == pytest.approx(expected, rel=1e-9)
        assert 0 < expected < 0.03
    r = madsen_2018(t_opt, y, t_eff, t_eff_sd_h=10.0)
    assert r.sd == pytest.approx(0.0, abs=1e-9 * r.value)
    r = madsen_2018(24.0, 5.0 * math.exp(-lam * 24.0), t_eff, t_eff_sd_h=7.0)
    h = 1e-4
    num = (madsen_2018(24.0, 5.0 * math.exp(-lam * 24.0), t_eff + h).value
           - madsen_2018(24.0, 5.0 * math.exp(-lam * 24.0), t_eff - h).value) / (2 * h)
    assert r.sd == pytest.approx(abs(num) * 7.0, rel=1e-6)


def test_single_time_point_via_time_integral():
    lam = math.log(2) / 96.0
    r = time_integral([96.0], [math.exp(-lam * 96.0)], method="hanscheid")
    assert r.value == pytest.approx(1 / lam, rel=1e-12)
    r = time_integral([50.0], [math.exp(-lam * 50.0)], method="madsen", population_t_eff_h=96.0)
    assert r.value == pytest.approx(1 / lam, rel=1e-12)
    with pytest.raises(InputError, match="population_t_eff_h"):
        time_integral([50.0], [1.0], method="madsen")
    with pytest.raises(InputError, match="exactly one sample"):
        time_integral([24.0, 96.0], [1.0, 0.5], method="hanscheid")


# ---------------------------------------------------------------- bad input: library errors, not numpy errors

@pytest.mark.parametrize("times, values, kwargs, match", [
    ([1, 24, 96], [1.0, float("nan"), 0.5], {}, "NaN"),
    ([1, 24, 96], [1.0, -0.1, 0.5], {}, "negative"),
    ([1, 96, 24], [1.0, 0.5, 0.7], {}, "strictly increasing"),
    ([1, 24, 24], [1.0, 0.5, 0.7], {}, "strictly increasing"),
    ([-2, 24, 96], [1.0, 0.5, 0.3], {}, "before administration"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"model": "bi"}, "4 parameters but only 3 samples"),
    ([1, 24], [1.0, 0.5, 0.3], {}, "2 times but 3 values"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"model": "gamma"}, "unknown model"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"tail": "zero"}, "unknown tail"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"method": "simpson"}, "unknown method"),
    ([1, 24, 96], [[1.0, 0.5, 0.3]], {}, "one-dimensional"),
    ([1, 24, 96], ["a", "b", "c"], {}, "must be numbers"),
    ([24.0], [1.0], {}, "one sample cannot be fitted"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"values_sd": [0.1, 0.0, 0.1]}, "values_sd must be > 0"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"values_sd": [0.1, 0.1]}, "values_sd has 2 entries"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"half_life_h": "6.647 d"}, "half_life_h must be finite and > 0"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"half_life_h": None}, "half_life_h"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"method": "trapezoid", "tail_points": 1}, "tail_points"),
    ([1, 24, 96], [1.0, 0.5, 0.3], {"method": "trapezoid", "tail_points": True}, "tail_points"),
    ([50.0], [1.0], {"method": "madsen", "population_t_eff_h": "70 h"}, "population effective half-life"),
    ([50.0], [1.0], {"method": "madsen", "population_t_eff_h": 70.0, "population_t_eff_sd_h": None}, "t_eff_sd_h"),
])
def test_bad_input_raises_library_error(times, values, kwargs, match):
    with pytest.raises(InputError, match=match):
        time_integral(times, values, **kwargs)


def test_tail_points_accepts_numpy_integers():
    t, y = np.array([1.0, 24.0, 96.0, 168.0]), np.array([1.0, 2.0, 1.5, 0.9])
    lam = math.log(1.5 / 0.9) / 72.0          # the two last samples: the fitted tail is their exponential
    r = time_integral(t, y, method="trapezoid", tail_points=np.int64(2))
    assert r.params["lambda_tail_per_h"] == pytest.approx(lam, rel=1e-12)


def test_voxelwise_and_cycle_sum_bad_arguments_are_library_errors():
    maps = [np.ones(3), 0.5 * np.ones(3)]
    for kwargs, match in (({"half_life_h": 0.0}, "half_life_h"), ({"chunk_voxels": 0}, "chunk_voxels"),
                          ({"model": "trapezoid", "tail_points": 0}, "tail_points")):
        with pytest.raises(InputError, match=match):
            voxelwise_time_integral([1.0, 24.0], maps, **kwargs)
    with pytest.raises(InputError, match="maps must be a sequence"):
        voxelwise_time_integral([1.0, 24.0], None)
    with pytest.raises(InputError, match="2 cycles but 1 calibration SDs"):
        sum_cycles([1, 2], [1.0, 2.0], [7400.0, 7400.0], sds_gy=[0.1, 0.2], calibration_sd_gy=[0.05],
                   calibration_correlation=1.0)
    with pytest.raises(InputError, match="cycle SD"):
        sum_cycles([1, 2], [1.0, 2.0], [7400.0, 7400.0], sds_gy=["0.1", "n/a"])
    with pytest.raises(InputError, match="cycles must be a sequence"):
        sum_cycles(None, [1.0], [7400.0])


def test_all_zero_samples_integrate_to_zero():
    r = time_integral(T_TYPICAL, np.zeros(4))
    assert r.value == 0.0 and r.model == "zero" and r.warnings


def test_to_dict_is_json_ready():
    import json

    r = time_integral(T_TYPICAL, np.exp(-lam_eff(100.0) * T_TYPICAL), model="bi")
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert "NaN" not in text
    assert d["sd"] is None and d["model"] == "bi"
    assert isinstance(r, TimeIntegral)


# ---------------------------------------------------------------- per tumour and voxel-wise

def _maps(times, shape, rates_fn):
    return [rates_fn(t) for t in times]


def test_tumour_cycle_dose_from_voi_mean_dose_rate():
    """VOI at 0.8 Gy/h·e^(−λt) inside, a hotter background outside: D = 0.8/λ Gy."""
    lam = lam_eff(90.0)
    mask = np.zeros((6, 7, 8), bool)
    mask[2:4, 2:5, 3:6] = True
    maps = []
    for t in T_TYPICAL:
        m = np.full(mask.shape, 5.0 * math.exp(-0.05 * t))
        m[mask] = 0.8 * math.exp(-lam * t)
        maps.append(m)
    r = tumour_cycle_dose(T_TYPICAL, maps, mask, model="mono", what="T1 cycle 1")
    assert r.value == pytest.approx(0.8 / lam, rel=1e-9)
    # SimpleITK images on one grid work; a mask on another grid is a GeometryError naming it
    imgs = [sitk.GetImageFromArray(m) for m in maps]
    for img in imgs:
        img.SetSpacing((4.8, 4.8, 4.8))
    smask = sitk.GetImageFromArray(mask.astype(np.uint8))
    smask.SetSpacing((4.8, 4.8, 4.8))
    assert tumour_cycle_dose(T_TYPICAL, imgs, smask, model="mono").value == pytest.approx(0.8 / lam, rel=1e-9)
    smask.SetSpacing((2.0, 2.0, 2.0))
    with pytest.raises(GeometryError, match="T7"):
        tumour_cycle_dose(T_TYPICAL, imgs, smask, what="T7")
    with pytest.raises(GeometryError, match="empty"):
        tumour_cycle_dose(T_TYPICAL, maps, np.zeros_like(mask))


def test_voxelwise_mono_matches_analytic_and_scalar_fit():
    rng = np.random.default_rng(3)
    shape = (5, 20, 30)
    amp = rng.uniform(0.1, 2.0, shape)
    t_eff = rng.uniform(20.0, 150.0, shape)
    t_eff[0, 0, :5] = 400.0          # longer than physical: capped
    lam = math.log(2) / t_eff
    maps = [amp * np.exp(-lam * t) for t in T_TYPICAL]
    maps_zero = [m.copy() for m in maps]
    r = voxelwise_time_integral(T_TYPICAL, maps, model="mono")
    expected = amp / lam
    ok = t_eff < T_HALF_H
    np.testing.assert_allclose(r.integral[ok], expected[ok], rtol=1e-8)
    assert r.n_capped == 5
    np.testing.assert_allclose(r.lambda_per_h[~ok], LAM_P, rtol=1e-12)
    # noisy voxels: the same objective as the scalar fit with values_sd = rel·y
    noisy = [m * (1 + 0.05 * rng.standard_normal(shape)) for m in maps]
    rel = np.array([0.02, 0.03, 0.05, 0.08])
    rv = voxelwise_time_integral(T_TYPICAL, noisy, model="mono", rel_sd=rel)
    for idx in [(1, 2, 3), (4, 19, 29), (2, 10, 0), (0, 0, 1)]:
        y = np.array([m[idx] for m in noisy])
        rs = time_integral(T_TYPICAL, y, model="mono", values_sd=rel * y)
        assert rv.integral[idx] == pytest.approx(rs.value, rel=1e-6)
    # a voxel with a zero sample falls back to the trapezoid; zero voxels stay 0; mask respected
    maps_zero[3][1, 1, 1] = 0.0
    for m in maps_zero:
        m[2, 2, 2] = 0.0
    mask = np.ones(shape, bool)
    mask[4] = False
    rz = voxelwise_time_integral(T_TYPICAL, maps_zero, model="mono", mask=mask)
    assert rz.fallback[1, 1, 1] and rz.fallback.sum() == 2
    y = np.array([m[1, 1, 1] for m in maps_zero])
    assert rz.integral[1, 1, 1] == pytest.approx(time_integral(T_TYPICAL, y, method="trapezoid").value, rel=1e-9)
    assert rz.integral[2, 2, 2] == 0.0 and np.all(rz.integral[4] == 0.0)


def test_voxelwise_mono_blocks_pooling_and_threads_match_the_scalar_fit(monkeypatch):
    """Tiny blocks and one-iteration rounds (voxels pooled across blocks at every step), on two threads:
    each voxel still matches the independent scalar fit, and the map is the same bit for bit as one block."""
    from LuDoseResponseLib.dosimetry import voxelwise_integration as vw

    rng = np.random.default_rng(11)
    shape = (3, 8, 10)
    amp = rng.uniform(0.1, 2.0, shape)
    lam = math.log(2) / rng.uniform(20.0, 150.0, shape)
    noisy = [amp * np.exp(-lam * t) * (1 + 0.05 * rng.standard_normal(shape)) for t in T_TYPICAL]
    rel = np.array([0.02, 0.03, 0.05, 0.08])
    one = voxelwise_time_integral(T_TYPICAL, noisy, model="mono", rel_sd=rel, workers=1)
    monkeypatch.setattr(vw, "_BLOCK_VOXELS", 7)
    monkeypatch.setattr(vw, "_ROUND_ITERATIONS", 1)
    many = voxelwise_time_integral(T_TYPICAL, noisy, model="mono", rel_sd=rel, workers=2)
    assert np.array_equal(many.integral, one.integral)
    assert np.array_equal(many.lambda_per_h, one.lambda_per_h)
    for flat in rng.choice(amp.size, 10, replace=False):
        idx = np.unravel_index(flat, shape)
        y = np.array([m[idx] for m in noisy])
        assert many.integral[idx] == pytest.approx(time_integral(T_TYPICAL, y, model="mono", values_sd=rel * y).value,
                                                   rel=1e-6)
    with pytest.raises(InputError, match="workers"):
        voxelwise_time_integral(T_TYPICAL, noisy, workers=0)


def test_voxelwise_trapezoid_matches_the_piecewise_truth_and_image_roundtrip():
    """Each voxel against quad of its piecewise curve (linear head, linear between samples, exponential
    tail); the fitted tail λ from np.polyfit of ln y over the last samples at or after the maximum (at most
    3, the default), capped at λ_phys; unequal rel_sd weights the tail fit by 1/rel²."""
    rng = np.random.default_rng(5)
    shape = (3, 4, 5)
    maps = [rng.uniform(0.5, 2.0, shape) * math.exp(-0.01 * t) for t in T_TYPICAL]
    rel = np.array([0.02, 0.03, 0.05, 0.08])
    for tail in ("fit", "physical"):
        r = voxelwise_time_integral(T_TYPICAL, maps, model="trapezoid", tail=tail, rel_sd=rel)
        for idx in [(0, 0, 0), (2, 3, 4), (1, 2, 1), (0, 3, 2)]:
            y = np.array([m[idx] for m in maps])
            lam = LAM_P
            if tail == "fit":
                use = np.arange(max(int(np.argmax(y)), y.size - 3), y.size)
                if use.size >= 2:
                    slope = np.polyfit(T_TYPICAL[use], np.log(y[use]), 1, w=1 / rel[use])[0]
                    lam = max(-slope, LAM_P)
            truth = _piecewise_truth(T_TYPICAL, y, "linear", lam)
            assert r.integral[idx] == pytest.approx(truth, rel=1e-9), (tail, idx)
    imgs = []
    for m in maps:
        img = sitk.GetImageFromArray(m)
        img.SetSpacing((4.0, 4.0, 5.0))
        img.SetOrigin((1.0, 2.0, 3.0))
        imgs.append(img)
    out = voxelwise_time_integral(T_TYPICAL, imgs, model="trapezoid").integral_image()
    assert out.GetSpacing() == (4.0, 4.0, 5.0) and out.GetOrigin() == (1.0, 2.0, 3.0)


def test_voxelwise_bad_input():
    with pytest.raises(InputError, match="negative"):
        voxelwise_time_integral([1.0, 24.0], [np.ones(3), -np.ones(3)])
    with pytest.raises(GeometryError, match="shape"):
        voxelwise_time_integral([1.0, 24.0], [np.ones(3), np.ones(4)])
    with pytest.raises(InputError, match="2 times but 3 maps"):
        voxelwise_time_integral([1.0, 24.0], [np.ones(3)] * 3)


# ---------------------------------------------------------------- sums over cycles

def test_cycle_sums_exact_and_until_best_response():
    doses = [12.3456789, 10.1, 8.76543, 7.0000001]
    acts = [7400.0, 7350.0, 7420.0, 7390.0]
    when = [datetime(2019, 3, 4, 9, 30), datetime(2019, 5, 13, 9, 0), datetime(2019, 7, 22, 10, 0),
            datetime(2019, 9, 30, 9, 45)]
    sds = [1.0, 0.8, 0.9, 0.7]
    total = sum_cycles([1, 2, 3, 4], doses, acts, sds_gy=sds, administered_at=when)
    assert total.dose_gy == math.fsum(doses)
    assert total.activity_gbq == pytest.approx(sum(acts) / 1000, rel=1e-15)
    assert total.sd_gy == pytest.approx(math.sqrt(sum(s * s for s in sds)), rel=1e-15)
    # best response on a CT dated the day of cycle 3: cycles 1 and 2 were administered before it
    until = sum_cycles([1, 2, 3, 4], doses, acts, sds_gy=sds, administered_at=when, before=date(2019, 7, 22))
    assert until.cycles == (1, 2)
    assert until.dose_gy == doses[0] + doses[1]
    assert until.sd_gy == pytest.approx(math.hypot(sds[0], sds[1]), rel=1e-15)
    with pytest.raises(InputError, match="administration time"):
        sum_cycles([1, 2], [1.0, 2.0], [1.0, 1.0], before=date(2019, 1, 1))
    with pytest.raises(InputError, match="finite and >= 0"):
        sum_cycles([1, 2], [1.0, float("nan")], [1.0, 1.0])


def test_library_errors_share_the_family(caplog):
    with caplog.at_level(logging.WARNING):
        with pytest.raises(LuDoseResponseError):
            time_integral([1, 2], [1, 2], model="bi")
