"""Scale invariance of every integration path (issues 9 and 17).

∫ c·f dt = c·∫ f dt and a weighted least-squares fit of c·y with SDs c·σ has the parameters of the fit of y with
the amplitudes times c: an identity, so the result for samples in any unit must equal c times the result for
the unscaled samples (relative 1e-9; the inputs c·y themselves carry a rounding of 1e-16). Before the fix,
absolute solver tolerances made the mono-exponential 0.37× at c = 1e-14, 0.06× at 1e-13, 1069× at 1e-18,
and raised ValueError at 1e-300.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from LuDoseResponseLib.dosimetry.integration import hanscheid_2018, madsen_2018, time_integral
from LuDoseResponseLib.dosimetry.voxelwise_integration import voxelwise_time_integral

SCALES = [1e-300, 1e-200, 1e-100, 1e-18, 1e-14, 1e-13, 1e-5, 3.7, 1e5, 1e13, 1e100, 1e200, 1e300]
T_TYPICAL = np.array([1.0, 24.0, 96.0, 168.0])
T_DENSE = np.array([1.0, 4.0, 12.0, 24.0, 48.0, 72.0, 96.0, 168.0])
LAM_P = math.log(2) / (6.647 * 24.0)
NOISE = np.array([0.04, -0.03, 0.05, -0.02, 0.03, -0.04, 0.02, -0.05])   # fixed, so every fit has residuals


def _curve(model: str, t: np.ndarray) -> np.ndarray:
    if model == "mono":
        y = 2.0 * np.exp(-math.log(2) / 60.0 * t)
    elif model == "bi":
        y = 4.0 * np.exp(-math.log(2) / 6.0 * t) + 1.5 * np.exp(-(LAM_P + math.log(2) / 120.0) * t)
    else:
        y = 2.0 * (np.exp(-(LAM_P + math.log(2) / 100.0) * t) - np.exp(-math.log(2) / 5.0 * t))
    return y * (1 + NOISE[:t.size])


def _assert_scaled(scaled, ref, c):
    assert scaled.model == ref.model
    assert scaled.value / c == pytest.approx(ref.value, rel=1e-9)
    if ref.sd is None:
        assert scaled.sd is None
    else:
        assert scaled.sd / c == pytest.approx(ref.sd, rel=1e-9)
    if ref.t_eff_h is not None:
        assert scaled.t_eff_h == pytest.approx(ref.t_eff_h, rel=1e-9)
    for name, v in ref.params.items():
        factor = c if name.startswith("amplitude") else 1.0
        assert scaled.params[name] / factor == pytest.approx(v, rel=1e-9, abs=1e-300), name
    assert len(scaled.warnings) == len(ref.warnings)


@pytest.mark.parametrize("c", SCALES)
@pytest.mark.parametrize("model, t", [("mono", T_TYPICAL), ("mono", T_DENSE), ("bi", T_DENSE),
                                      ("uptake-washout", T_DENSE), ("auto", T_TYPICAL), ("auto", T_DENSE)])
@pytest.mark.parametrize("with_sd", [False, True])
def test_fit_is_scale_invariant(c, model, t, with_sd):
    y = _curve("bi" if model == "auto" and t is T_DENSE else ("mono" if model == "auto" else model), t)
    sd = 0.05 * y if with_sd else None
    ref = time_integral(t, y, model=model, values_sd=sd)
    scaled = time_integral(t, y * c, model=model, values_sd=None if sd is None else sd * c)
    _assert_scaled(scaled, ref, c)
    if ref.covariance is not None and 1e-100 <= c <= 1e100:   # amplitude variances ~c² leave the float range
        s = np.array([c if n.startswith("amplitude") else 1.0 for n in ref.param_names])
        np.testing.assert_allclose(scaled.covariance_matrix / np.outer(s, s), ref.covariance_matrix, rtol=1e-7,
                                   atol=1e-12 * np.max(np.abs(ref.covariance_matrix)))


def test_issue_examples_are_no_longer_scale_dependent():
    """The issue's numbers: at 1e-14 the mono fit was 4× low (0.37×), at 1e-300 a ValueError."""
    y = np.exp(-0.01 * T_TYPICAL) * (1 + 0.05 * np.array([1, -1, 0.5, -0.3]))
    ref = time_integral(T_TYPICAL, y, model="mono").value
    for c in (1e-300, 1e-18, 1e-14, 1e-13, 1e300):
        assert time_integral(T_TYPICAL, y * c, model="mono").value / c == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("c", SCALES)
@pytest.mark.parametrize("tail, head", [("fit", "linear"), ("physical", "constant")])
def test_trapezoid_is_scale_invariant(c, tail, head):
    y = _curve("uptake-washout", T_DENSE)
    ref = time_integral(T_DENSE, y, method="trapezoid", tail=tail, head=head, values_sd=0.05 * y)
    scaled = time_integral(T_DENSE, y * c, method="trapezoid", tail=tail, head=head, values_sd=0.05 * y * c)
    _assert_scaled(scaled, ref, c)
    for k in ("head_value", "body_value", "tail_value"):
        assert scaled.diagnostics[k] / c == pytest.approx(ref.diagnostics[k], rel=1e-9)


@pytest.mark.parametrize("c", SCALES)
def test_single_time_point_methods_are_scale_invariant(c):
    ref_h = hanscheid_2018(96.0, 0.7, value_sd=0.05)
    _assert_scaled(hanscheid_2018(96.0, 0.7 * c, value_sd=0.05 * c), ref_h, c)
    _assert_scaled(time_integral([96.0], [0.7 * c], method="hanscheid", values_sd=[0.05 * c]), ref_h, c)
    ref_m = madsen_2018(50.0, 0.7, 70.0, t_eff_sd_h=8.0, value_sd=0.05)
    _assert_scaled(madsen_2018(50.0, 0.7 * c, 70.0, t_eff_sd_h=8.0, value_sd=0.05 * c), ref_m, c)
    _assert_scaled(time_integral([50.0], [0.7 * c], method="madsen", population_t_eff_h=70.0,
                                 population_t_eff_sd_h=8.0, values_sd=[0.05 * c]), ref_m, c)


@pytest.mark.parametrize("model", ["mono", "trapezoid"])
def test_voxelwise_is_scale_invariant_per_voxel(model):
    """Each voxel is normalised on its own: one map may hold voxels in wildly different units."""
    rng = np.random.default_rng(8)
    n = 400
    amp = rng.uniform(0.2, 2.0, n)
    lam = math.log(2) / rng.uniform(20.0, 300.0, n)          # some above the physical half-life: capped
    maps = [amp * np.exp(-lam * t) * (1 + 0.08 * rng.standard_normal(n)) for t in T_TYPICAL]
    rel = np.array([0.02, 0.03, 0.05, 0.08])
    ref = voxelwise_time_integral(T_TYPICAL, maps, model=model, rel_sd=rel)
    for c in SCALES:
        out = voxelwise_time_integral(T_TYPICAL, [m * c for m in maps], model=model, rel_sd=rel)
        np.testing.assert_allclose(out.integral / c, ref.integral, rtol=1e-9)
        np.testing.assert_allclose(out.lambda_per_h, ref.lambda_per_h, rtol=1e-9)
        assert out.n_capped == ref.n_capped
    mixed = np.array(SCALES)[rng.integers(0, len(SCALES), n)]
    out = voxelwise_time_integral(T_TYPICAL, [m * mixed for m in maps], model=model, rel_sd=rel)
    np.testing.assert_allclose(out.integral / mixed, ref.integral, rtol=1e-9)
