"""Partial-volume correction: closed-form and numerical recovery coefficients, GTM, phantom RC curve,
the pipeline function and the dose-map scaling.

References, all independent of the code under test:
- the physics reference (/work/shared/reference/physics/README.md §4): RC_mean of the 37 mm and 10 mm
  spheres at FWHM 10 mm (0.730, 0.215), and the blurred-sphere profile P_in(r), re-implemented here
  from its printed formula and integrated by adaptive quadrature (scipy.integrate.quad);
- Monte Carlo: uniform points in a ball displaced by Gaussian noise;
- the large-sphere asymptote RC ≈ 1 − 3σ/(√(2π)R) (surface loss of a Gaussian-blurred sphere);
- direct pairwise summation over voxel pairs with the analytic Gaussian weights (numerical RC);
- phantoms blurred by scipy.ndimage.gaussian_filter in its default 'reflect' mode (GTM), and Poisson
  noise (GTM bias against its standard error);
- synthetic phantom-sphere data of known A and FWHM (curve fit and its covariance, by replicates).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.integrate import quad
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from LuDoseResponseLib.dosimetry.psf import blur
from LuDoseResponseLib.dosimetry.pvc import (
    GeometricTransferMatrix,
    gtm,
    numerical_recovery_coefficient,
    recovery_coefficient,
    recovery_coefficient_derivatives,
)
from LuDoseResponseLib.dosimetry.pvc_correction import correct_partial_volume, scale_dose_map
from LuDoseResponseLib.dosimetry.rc_curve import PhantomRecoveryCurve
from LuDoseResponseLib.dosimetry.uncertainty import cycle_dose_uncertainty
from LuDoseResponseLib.errors import GeometryError, InputError, ModelFitWarning, PhysicsError

K = 2.0 * math.sqrt(2.0 * math.log(2.0))            # FWHM / σ
NEMA_DIAMETERS_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)   # NEMA NU-2 / IEC body phantom spheres
FWHMS_MM = (8.0, 10.0, 12.0, 15.0, 20.0)


def volume_ml(d_mm):
    return math.pi / 6.0 * d_mm ** 3 / 1000.0


def p_in(r, radius, sigma):
    """P_in(r) exactly as printed in the physics reference §4 (r > 0)."""
    s2 = sigma * math.sqrt(2.0)
    return (0.5 * (erf((radius - r) / s2) + erf((radius + r) / s2))
            - sigma / (r * math.sqrt(2 * math.pi))
            * (math.exp(-(radius - r) ** 2 / (2 * sigma ** 2)) - math.exp(-(radius + r) ** 2 / (2 * sigma ** 2))))


def rc_by_quadrature(d_mm, fwhm_mm):
    radius, sigma = d_mm / 2.0, fwhm_mm / K
    val, _ = quad(lambda r: p_in(r, radius, sigma) * r * r, 1e-12, radius, epsabs=1e-14, epsrel=1e-12)
    return 3.0 / radius ** 3 * val


def image_of(array_zyx, spacing=(4.0, 4.0, 4.0), origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def ball(shape, spacing_xyz, centre_xyz_mm, radius_mm):
    z, y, x = np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, reversed(spacing_xyz), strict=True)],
                          indexing="ij")
    return (x - centre_xyz_mm[0]) ** 2 + (y - centre_xyz_mm[1]) ** 2 + (z - centre_xyz_mm[2]) ** 2 <= radius_mm ** 2


# --------------------------------------------------------------------------------------------
# Closed form
# --------------------------------------------------------------------------------------------

def test_closed_form_reproduces_the_physics_reference_values():
    # README §4: 37 mm sphere at FWHM 10 mm: 0.730; 10 mm sphere: 0.215 (Monte Carlo checked to 1e-4)
    assert recovery_coefficient(volume_ml(37.0), 10.0) == pytest.approx(0.730, abs=1e-3)
    assert recovery_coefficient(volume_ml(10.0), 10.0) == pytest.approx(0.215, abs=1e-3)


def test_closed_form_equals_quadrature_of_the_reference_profile_for_nema_spheres():
    """The NEMA-sphere RC table at FWHM 8–20 mm, computed here by quadrature of README §4's P_in."""
    vols = np.array([volume_ml(d) for d in NEMA_DIAMETERS_MM])
    for fwhm in FWHMS_MM:
        table = np.array([rc_by_quadrature(d, fwhm) for d in NEMA_DIAMETERS_MM])
        got = recovery_coefficient(vols, fwhm)           # vectorised over volumes
        assert got.shape == vols.shape
        np.testing.assert_allclose(got, table, atol=1e-6, rtol=0)   # the issue asks 1e-3
        grid = recovery_coefficient(vols[:, None], np.array(FWHMS_MM)[None, :])   # and broadcast over FWHMs
        np.testing.assert_allclose(grid[:, FWHMS_MM.index(fwhm)], table, atol=1e-6, rtol=0)


def test_closed_form_agrees_with_monte_carlo():
    rng = np.random.default_rng(7)
    n = 2_000_000
    for d_mm, fwhm in ((13.0, 12.0), (28.0, 8.0), (37.0, 20.0)):
        radius, sigma = d_mm / 2, fwhm / K
        u = rng.normal(size=(n, 3))
        pts = u / np.linalg.norm(u, axis=1, keepdims=True) * radius * np.cbrt(rng.uniform(size=(n, 1)))
        moved = pts + rng.normal(scale=sigma, size=(n, 3))
        frac = np.mean(np.einsum("ij,ij->i", moved, moved) <= radius ** 2)
        se = math.sqrt(frac * (1 - frac) / n)
        assert abs(recovery_coefficient(volume_ml(d_mm), fwhm) - frac) < 5 * se


def test_closed_form_is_monotone_bounded_and_has_the_right_limits():
    v = np.geomspace(1e-4, 1e5, 400)
    for fwhm in FWHMS_MM:
        rc = recovery_coefficient(v, fwhm)
        assert np.all(np.diff(rc) > 0) and np.all(rc <= 1.0) and np.all(rc > 0)
    # large spheres: 1 − 3σ/(√(2π) R) (+ O(σ²/R²)); small: the point-source limit V·g(0) = √2 a³/(3√π)
    sigma = 10.0 / K
    big_r = np.cbrt(3 * 1e5 * 1000 / (4 * math.pi))
    assert recovery_coefficient(1e5, 10.0) == pytest.approx(1 - 3 * sigma / (math.sqrt(2 * math.pi) * big_r), abs=2e-4)
    a = np.cbrt(3 * 1e-9 * 1000 / (4 * math.pi)) / sigma
    assert recovery_coefficient(1e-9, 10.0) == pytest.approx(math.sqrt(2) * a ** 3 / (3 * math.sqrt(math.pi)), rel=1e-3)
    assert isinstance(recovery_coefficient(10.0, 10.0), float)


def test_derivatives_match_central_differences():
    for v, f in ((0.5, 8.0), (5.0, 10.0), (120.0, 15.0)):
        drc_dv, drc_df = recovery_coefficient_derivatives(v, f)
        hv, hf = 1e-5 * v, 1e-5 * f
        assert drc_dv == pytest.approx((recovery_coefficient(v + hv, f) - recovery_coefficient(v - hv, f)) / (2 * hv),
                                       rel=1e-6)
        assert drc_df == pytest.approx((recovery_coefficient(v, f + hf) - recovery_coefficient(v, f - hf)) / (2 * hf),
                                       rel=1e-6)
        assert drc_dv > 0 > drc_df


def test_blurring_conserves_counts():
    rng = np.random.default_rng(3)
    arr = np.zeros((40, 44, 48))
    arr[12:28, 14:30, 16:32] = rng.uniform(0, 10, size=(16, 16, 16))
    for fwhm in (10.0, (8.0, 9.0, 14.0)):
        out = blur(arr, (4.0, 4.0, 4.0), fwhm)
        assert out.sum() == pytest.approx(arr.sum(), rel=1e-6)
        assert out.max() < arr.max()


# --------------------------------------------------------------------------------------------
# Numerical RC
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("v_ml", "fwhm"), [(10.0, 10.0), (2.0, 12.0), (26.5, 8.0)])
def test_numerical_rc_on_fine_voxels_reproduces_the_closed_form(v_ml, fwhm):
    h = 1.0
    radius = np.cbrt(3 * v_ml * 1000 / (4 * math.pi))
    n = int(2 * radius / h) + 3
    c = (n - 1) / 2 * h + 0.3
    voi = ball((n, n, n), (h, h, h), (c, c - 0.2, c + 0.1), radius)
    rc = numerical_recovery_coefficient(image_of(voi.astype(np.uint8), (h, h, h)), fwhm)
    assert rc == pytest.approx(recovery_coefficient(v_ml, fwhm), rel=0.02)


def _pairwise_rc(voi, spacing_xyz, fwhm_xyz):
    """Σ_j Σ_i Π_axes w(Δ)/N with w the unit-sum sampled Gaussian of each axis (direct, untruncated)."""
    idx = np.argwhere(voi)                                     # [z, y, x]
    total = np.ones((len(idx), len(idx)))
    for ax, (h, f) in enumerate(zip(reversed(spacing_xyz), reversed(fwhm_xyz), strict=True)):
        sigma = f / K / h
        k = np.arange(-400, 401)
        norm = np.exp(-k ** 2 / (2 * sigma ** 2)).sum()
        d = idx[:, ax][:, None] - idx[:, ax][None, :]
        total *= np.exp(-d ** 2 / (2 * sigma ** 2)) / norm
    return total.sum() / len(idx)


@pytest.mark.parametrize("fwhm", [10.0, (8.0, 8.0, 16.0)])
def test_numerical_rc_at_clinical_voxels_matches_direct_summation(fwhm):
    spacing = (4.8, 4.8, 4.8)
    shape = (9, 11, 10)
    voi = ball(shape, spacing, (22.0, 25.0, 20.0), 13.4)         # 10 mL sphere on 4.8 mm voxels, off-centre
    voi[4, 5, 8] = True                                          # and not quite a sphere
    f_xyz = (fwhm,) * 3 if np.isscalar(fwhm) else fwhm
    rc = numerical_recovery_coefficient(voi, fwhm, spacing_mm=spacing)
    assert rc == pytest.approx(_pairwise_rc(voi, spacing, f_xyz), rel=1e-5)


def test_numerical_rc_ignores_the_field_of_view_edge():
    voi = np.zeros((5, 5, 5), bool)
    voi[:2, :2, :2] = True                                       # at the corner of the array
    rc = numerical_recovery_coefficient(voi, 10.0, spacing_mm=(4.0, 4.0, 4.0))
    assert rc == pytest.approx(_pairwise_rc(voi, (4.0,) * 3, (10.0,) * 3), rel=1e-5)


# --------------------------------------------------------------------------------------------
# GTM
# --------------------------------------------------------------------------------------------

SPACING = (4.0, 4.0, 4.0)
SHAPE = (40, 44, 48)
SPHERES = {  # name: (centre x, y, z mm; diameter mm; true concentration)
    "t37": ((50.0, 52.0, 80.0), 37.0, 8.0),
    "t22": ((120.0, 56.0, 82.0), 22.0, 10.0),
    "t13": ((90.0, 120.0, 80.0), 13.0, 12.0),
    "t28": ((60.0, 120.0, 60.0), 28.0, 6.0),
}
BACKGROUND_BQ_PER_ML = 1.0


def _phantom():
    truth = np.full(SHAPE, BACKGROUND_BQ_PER_ML)
    masks = {}
    for name, (c, d, conc) in SPHERES.items():
        m = ball(SHAPE, SPACING, c, d / 2)
        truth[m] = conc
        masks[name] = image_of(m.astype(np.uint8), SPACING)
    return truth, masks


def _blurred(truth, fwhm_xyz):
    sigma_zyx = [f / K / h for f, h in zip(reversed(fwhm_xyz), reversed(SPACING), strict=True)]
    return gaussian_filter(truth, sigma_zyx)                     # scipy's default 'reflect' edge


@pytest.mark.parametrize("fwhm", [10.0, 14.0, (9.0, 9.0, 15.0)])
def test_gtm_is_exact_on_a_noiseless_phantom_with_warm_background(fwhm):
    truth, masks = _phantom()
    f_xyz = (fwhm,) * 3 if np.isscalar(fwhm) else fwhm
    img = image_of(_blurred(truth, f_xyz), SPACING)
    got = gtm(img, masks, fwhm)
    for name, (_, _, conc) in SPHERES.items():
        assert got[name] == pytest.approx(conc, rel=0.01)
        assert float(sitk.GetArrayViewFromImage(img)[sitk.GetArrayViewFromImage(masks[name]) > 0].mean()) < conc
    assert got["background"] == pytest.approx(BACKGROUND_BQ_PER_ML, rel=0.01)


def test_gtm_accepts_a_label_image_and_a_cold_background():
    truth, masks = _phantom()
    truth[truth == BACKGROUND_BQ_PER_ML] = 0.0
    labels = np.zeros(SHAPE, np.uint16)
    for k, m in enumerate(masks.values(), start=1):
        labels[sitk.GetArrayViewFromImage(m) > 0] = k
    img = image_of(_blurred(truth, (11.0,) * 3), SPACING)
    names = {name: k for k, name in enumerate(masks, start=1)}
    got = gtm(img, image_of(labels, SPACING), 11.0, labels=names, background=None)
    assert set(got) == set(SPHERES)
    assert gtm(img, image_of(labels, SPACING), 11.0, labels={k: n for n, k in names.items()}, background=None) == got
    for name, (_, _, conc) in SPHERES.items():
        assert got[name] == pytest.approx(conc, rel=0.01)


def test_gtm_is_unbiased_under_poisson_noise():
    """Mean over 120 noise realisations vs the truth, within 4 standard errors of that mean."""
    truth, masks = _phantom()
    fwhm = 12.0
    expected_counts = _blurred(truth, (fwhm,) * 3) * 20.0          # ~20–200 counts per voxel
    rng = np.random.default_rng(2024)
    solver = GeometricTransferMatrix(image_of(expected_counts, SPACING), masks, fwhm)
    est = []
    for _ in range(120):
        noisy = image_of(rng.poisson(expected_counts).astype(float) / 20.0, SPACING)
        est.append(solver.correct(noisy).corrected)
    assert gtm(noisy, masks, fwhm) == pytest.approx(est[-1], rel=1e-12)  # the one-call form is the same solve
    for name, (_, _, conc) in {**SPHERES, "background": (None, None, BACKGROUND_BQ_PER_ML)}.items():
        vals = np.array([e[name] for e in est])
        se = vals.std(ddof=1) / math.sqrt(len(vals))
        assert abs(vals.mean() - conc) < 4 * se, (name, vals.mean(), conc, se)
        assert vals.std() > 0


def test_gtm_reports_and_warns_about_conditioning(caplog):
    truth, masks = _phantom()
    img = image_of(_blurred(truth, (10.0,) * 3), SPACING)
    with caplog.at_level("INFO", logger="LuDoseResponseLib.dosimetry.pvc"), warnings.catch_warnings():
        warnings.simplefilter("error")                     # well conditioned: no warning
        g = GeometricTransferMatrix(img, masks, 10.0)
    assert 1.0 < g.condition_number < 100 and "condition number" in caplog.text
    assert gtm(img, masks, 10.0).condition_number == pytest.approx(g.condition_number)
    # two small adjacent spheres at coarse resolution: ill-conditioned, warned
    a = ball(SHAPE, SPACING, (90.0, 90.0, 80.0), 5.0)
    b = ball(SHAPE, SPACING, (98.0, 90.0, 80.0), 3.0) & ~a
    pair = {"left": image_of(a.astype(np.uint8), SPACING), "right": image_of(b.astype(np.uint8), SPACING)}
    with pytest.warns(ModelFitWarning, match="ill-conditioned"):
        GeometricTransferMatrix(img, pair, 30.0)


def test_gtm_singular_is_an_error():
    truth, masks = _phantom()
    img = image_of(truth, SPACING)
    with pytest.raises(InputError, match="singular"):
        gtm(img, masks, 1e7)                               # every region spread function is the same flat field


def test_gtm_bad_masks_and_fwhm():
    truth, masks = _phantom()
    img = image_of(_blurred(truth, (10.0,) * 3), SPACING)
    empty = image_of(np.zeros(SHAPE, np.uint8), SPACING)
    with pytest.raises(InputError, match="empty mask.*'lost'"):
        gtm(img, {**masks, "lost": empty}, 10.0)
    clash = sitk.GetArrayFromImage(masks["t37"]).copy()
    clash[np.nonzero(clash)[0][0], np.nonzero(clash)[1][0], np.nonzero(clash)[2][0]] = 1
    dup = image_of(clash, SPACING)
    with pytest.raises(InputError, match="overlapping masks: 't37' and 'copy'"):
        gtm(img, {"t37": masks["t37"], "copy": dup}, 10.0)
    far = image_of(sitk.GetArrayFromImage(masks["t22"]), SPACING, origin=(5000.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="'t22' lies outside the image"):
        gtm(img, {"t22": far}, 10.0)
    shifted = image_of(sitk.GetArrayFromImage(masks["t22"]), SPACING, origin=(2.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="'t22' is not on the image grid"):
        gtm(img, {"t22": shifted}, 10.0)
    for bad in (0.0, -3.0, math.nan, (10.0, 0.0, 10.0)):
        with pytest.raises(PhysicsError, match="FWHM must be finite and > 0"):
            gtm(img, masks, bad)
    with pytest.raises(PhysicsError):
        recovery_coefficient(5.0, 0.0)
    with pytest.raises(PhysicsError):
        recovery_coefficient([5.0, -1.0], 10.0)
    with pytest.raises(PhysicsError, match="FWHM must be finite and > 0"):
        recovery_coefficient([1.0, 5.0], [10.0, -1.0])
    with pytest.raises(PhysicsError):
        numerical_recovery_coefficient(sitk.GetArrayFromImage(masks["t13"]), -1.0, spacing_mm=SPACING)
    nan_img = image_of(np.where(sitk.GetArrayFromImage(masks["t13"]) > 0, np.nan, 1.0), SPACING)
    with pytest.raises(PhysicsError, match="NaN"):
        gtm(nan_img, masks, 10.0)


# --------------------------------------------------------------------------------------------
# Phantom RC curve
# --------------------------------------------------------------------------------------------

NEMA_VOLUMES_ML = np.array([volume_ml(d) for d in NEMA_DIAMETERS_MM])


def test_phantom_curve_recovers_a_known_curve_exactly():
    truth_a, truth_f = 0.93, 13.5
    rc = truth_a * np.array([rc_by_quadrature(d, truth_f) for d in NEMA_DIAMETERS_MM])   # independent RCs
    curve = PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML, rc, rc_sd=np.full(6, 0.01))
    assert curve.amplitude == pytest.approx(truth_a, rel=1e-6)
    assert curve.fwhm_mm == pytest.approx(truth_f, rel=1e-6)
    v = np.geomspace(0.3, 500, 50)
    pred = [curve.evaluate(x).recovery_coefficient for x in v]
    assert np.all(np.diff(pred) > 0) and max(pred) < truth_a


def test_phantom_curve_uncertainty_matches_replicate_spread():
    """300 phantom experiments with RC noise SD 0.02: the predicted RC SD (delta method, covariance
    scaled by the residuals) equals the spread of the fitted RC across experiments within 15 %, and the
    fitted RC is unbiased within 4 standard errors."""
    rng = np.random.default_rng(11)
    truth_a, truth_f, noise = 0.95, 12.0, 0.02
    rc_true = truth_a * recovery_coefficient(NEMA_VOLUMES_ML, truth_f)
    targets = (4.0, 30.0)
    fitted = {t: [] for t in targets}
    predicted = {t: [] for t in targets}
    for _ in range(300):
        curve = PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML, rc_true + rng.normal(scale=noise, size=6),
                                         rc_sd=np.full(6, noise))
        for t in targets:
            r = curve.evaluate(t)
            fitted[t].append(r.recovery_coefficient)
            predicted[t].append(r.sd)
    for t in targets:
        f = np.array(fitted[t])
        assert np.mean(predicted[t]) == pytest.approx(f.std(ddof=1), rel=0.15)
        assert abs(f.mean() - truth_a * recovery_coefficient(t, truth_f)) < 4 * f.std(ddof=1) / math.sqrt(len(f))


def test_phantom_curve_bad_input_and_extrapolation():
    rc = 0.9 * recovery_coefficient(NEMA_VOLUMES_ML, 11.0)
    with pytest.raises(InputError, match="at least 3 spheres"):
        PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML[:2], rc[:2])
    with pytest.raises(InputError, match="6 volumes but 5"):
        PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML, rc[:5])
    with pytest.raises(InputError, match="> 0"):
        PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML, np.r_[rc[:5], -0.1])
    curve = PhantomRecoveryCurve.fit(NEMA_VOLUMES_ML, rc + np.array([1, -1, 1, -1, 1, -1]) * 1e-3)
    assert any("extrapolated" in w for w in curve.evaluate(0.2).warnings)
    assert not curve.evaluate(5.0).warnings


# --------------------------------------------------------------------------------------------
# The pipeline function and the dose map
# --------------------------------------------------------------------------------------------

def _analytic_sphere_image(v_ml, fwhm, conc, h=2.0):
    """A uniform sphere blurred exactly (README §4 profile sampled at voxel centres), cold background."""
    radius = np.cbrt(3 * v_ml * 1000 / (4 * math.pi))
    n = int(2 * (radius + 3 * fwhm) / h) + 1
    c = np.array([(n - 1) / 2 * h + 0.37, (n - 1) / 2 * h - 0.21, (n - 1) / 2 * h + 0.13])
    z, y, x = np.meshgrid(*[np.arange(n) * h] * 3, indexing="ij")
    r = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    vec = np.vectorize(lambda rr: p_in(max(rr, 1e-9), radius, fwhm / K))
    return image_of(conc * vec(r), (h, h, h)), image_of((r <= radius).astype(np.uint8), (h, h, h))


def test_rc_correction_recovers_the_true_concentration_and_activity():
    v_ml, fwhm, conc = 8.0, 10.0, 5.0e5
    img, mask = _analytic_sphere_image(v_ml, fwhm, conc)
    res = correct_partial_volume(img, {"lesion": mask}, pvc="rc", psf_fwhm_mm=fwhm, volumes_ml={"lesion": v_ml})
    t = res.tumours["lesion"]
    assert t.mean_bq_per_ml == pytest.approx(conc, rel=0.02)       # the VOI is the voxelised sphere (2 mm voxels)
    assert t.activity_mbq == pytest.approx(conc * v_ml * 1e-6, rel=0.02)
    assert t.recovery_coefficient == pytest.approx(rc_by_quadrature(2 * np.cbrt(3 * v_ml * 1000 / (4 * math.pi)),
                                                                    fwhm), rel=1e-9)
    assert t.scale_factor == pytest.approx(1 / t.recovery_coefficient)
    none = correct_partial_volume(img, {"lesion": mask}, pvc="none").tumours["lesion"]
    assert none.mean_bq_per_ml == none.measured_mean_bq_per_ml and none.recovery_coefficient == 1.0


def test_rc_correction_of_the_voi_shape_and_gtm_are_exact_on_a_discrete_phantom():
    truth, masks = _phantom()
    truth[truth == BACKGROUND_BQ_PER_ML] = 0.0
    img = image_of(_blurred(truth, (10.0,) * 3), SPACING)
    voi = correct_partial_volume(img, masks, pvc="rc", psf_fwhm_mm=10.0, rc_model="voi")
    g = correct_partial_volume(img, masks, pvc="gtm", psf_fwhm_mm=10.0)
    for name, (_, _, conc) in SPHERES.items():
        assert voi.tumours[name].mean_bq_per_ml == pytest.approx(conc, rel=0.005)
        assert g.tumours[name].mean_bq_per_ml == pytest.approx(conc, rel=0.005)
    assert g.condition_number == pytest.approx(GeometricTransferMatrix(img, masks, 10.0).condition_number)


def test_correction_uncertainty_flows_into_the_eanm_budget():
    v_ml, fwhm, fwhm_sd = 8.0, 10.0, 1.0
    img, mask = _analytic_sphere_image(v_ml, fwhm, 1e5, h=4.0)
    t = correct_partial_volume(img, {"lesion": mask}, psf_fwhm_mm=fwhm, psf_fwhm_sd_mm=fwhm_sd,
                               volumes_ml={"lesion": v_ml}).tumours["lesion"]
    step = 1e-4
    drc_df = (recovery_coefficient(v_ml, fwhm + step) - recovery_coefficient(v_ml, fwhm - step)) / (2 * step)
    rc = recovery_coefficient(v_ml, fwhm)
    assert t.recovery_sd == pytest.approx(abs(drc_df) * fwhm_sd, rel=1e-5)
    assert t.recovery_rel_sd == pytest.approx(t.recovery_sd / rc, rel=1e-9)
    assert t.activity_sd_mbq == pytest.approx(t.activity_mbq * t.recovery_sd / rc, rel=1e-9)
    drc_dv = (recovery_coefficient(v_ml * (1 + step), fwhm) - recovery_coefficient(v_ml * (1 - step), fwhm)) / (
        2 * step * v_ml)
    s_v = t.volume_sensitivity()
    assert s_v == pytest.approx(-1 - v_ml * drc_dv / rc, rel=1e-5)     # Gear et al. 2018: mass and RC correlated
    u = cycle_dose_uncertainty(20.0, fit_sd_gy=0.0, recovery_rel_sd=t.recovery_rel_sd, volume_rel_sd=0.1,
                               volume_sensitivity=s_v)
    assert u.rel_sd == pytest.approx(math.hypot(abs(drc_df) * fwhm_sd / rc, 0.1 * s_v), rel=1e-6)


def test_scale_dose_map_scales_each_tumour_by_its_factor():
    truth, masks = _phantom()
    dose = image_of(_blurred(truth, (10.0,) * 3) * 3.0, SPACING)
    factors = {name: 1.0 + k * 0.25 for k, name in enumerate(SPHERES)}
    out = scale_dose_map(dose, masks, factors)
    before, after = sitk.GetArrayViewFromImage(dose), sitk.GetArrayViewFromImage(out)
    inside = np.zeros(SHAPE, bool)
    for name, m in masks.items():
        sel = sitk.GetArrayViewFromImage(m) > 0
        inside |= sel
        assert after[sel].mean() == pytest.approx(factors[name] * before[sel].mean(), rel=1e-12)
    np.testing.assert_array_equal(after[~inside], before[~inside])
    with pytest.raises(InputError, match="'t28'"):
        scale_dose_map(dose, masks, {k: v for k, v in factors.items() if k != "t28"})


def test_pipeline_bad_settings():
    truth, masks = _phantom()
    img = image_of(truth, SPACING)
    with pytest.raises(InputError, match="pvc must be one of"):
        correct_partial_volume(img, masks, pvc="yes")
    with pytest.raises(InputError, match="isotropic PSF"):
        correct_partial_volume(img, masks, pvc="rc", psf_fwhm_mm=(8.0, 8.0, 14.0))
    with pytest.raises(PhysicsError):
        correct_partial_volume(img, masks, pvc="gtm", psf_fwhm_mm=0.0)
    with pytest.raises(InputError, match="'t13'"):
        correct_partial_volume(img, masks, volumes_ml={"t13": -2.0})


def test_gtm_sd_from_an_uncertain_fwhm_is_the_first_order_propagation():
    truth, masks = _phantom()
    img = image_of(_blurred(truth, (10.0,) * 3), SPACING)
    res = correct_partial_volume(img, masks, pvc="gtm", psf_fwhm_mm=10.0, psf_fwhm_sd_mm=0.5)
    up, dn = gtm(img, masks, 10.05), gtm(img, masks, 9.95)
    for name in SPHERES:
        t = res.tumours[name]
        assert t.mean_sd_bq_per_ml == pytest.approx(abs(up[name] - dn[name]) / 0.1 * 0.5, rel=0.02)
        assert t.recovery_coefficient == pytest.approx(t.measured_mean_bq_per_ml / t.mean_bq_per_ml)
        assert t.volume_sensitivity() == -1.0            # the GTM does not use RC(V)
