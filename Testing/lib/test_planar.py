"""Planar conjugate-view quantification against analytic references: TEW on linear spectra, the
conjugate-view formula on an analytic water-cylinder phantom (μ of water at 208 keV from NIST XCOM),
Buijs background correction, VOI projection, registration by the body outline, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from planar_factory import LOWER, MU_WATER_PER_MM, PEAK, UPPER, CylinderPhantom, Sphere, conjugate_pairs

from LuDoseResponseLib.dosimetry.planar import (
    PlanarGeometry,
    centred_geometry,
    geometric_mean,
    mu_map_208kev,
    planar_tumour_activities,
    register_by_body_outline,
    tew_primary_counts,
)
from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.io.planar import EnergyWindow

LN2 = np.log(2.0)
TIMES_H = (1.0, 24.0, 96.0, 168.0)


def mono(a0_mbq, t_eff_h):
    return lambda t: a0_mbq * np.exp(-LN2 * t / t_eff_h)


def _phantom(**kwargs) -> CylinderPhantom:
    spheres = [Sphere("T1", (-40.0, -30.0, 20.0), 25.0, mono(30.0, 80.0)),
               Sphere("T2", (40.0, 35.0, -30.0), 18.0, mono(15.0, 120.0))]
    return CylinderPhantom(spheres, **kwargs)


def _truth_geometry(ph: CylinderPhantom) -> PlanarGeometry:
    return PlanarGeometry(ph.planar_shape, (ph.pixel_mm, ph.pixel_mm), ph.planar_origin_mm)


def _pixel_sampled_activity(ph: CylinderPhantom, sphere: Sphere, t_h: float) -> float:
    """Σ over pixel centres of chord × pixel area × concentration: the sphere as the pixel grid samples it."""
    x, z = ph.pixel_centres()
    cx, _, cz = sphere.centre_mm
    chord = 2 * np.sqrt(np.clip(sphere.radius_mm ** 2 - (x - cx) ** 2 - (z - cz) ** 2, 0, None))
    return float(chord.sum() * ph.pixel_mm ** 2 * sphere.activity_mbq_at(t_h) / sphere.volume_mm3)


# ---------------------------------------------------------------------------------------------- TEW

def _window_counts(a, b, window):
    """∫ (a + b·E) dE over the window, analytically."""
    lo, hi = window
    return a * (hi - lo) + b * (hi ** 2 - lo ** 2) / 2


@pytest.mark.parametrize("lower,upper", [(LOWER, UPPER), ((170.0, 185.0), (232.0, 250.0))])
def test_tew_exact_on_linear_scatter_spectra(lower, upper):
    rng = np.random.default_rng(3)
    primary = rng.uniform(0, 500, (5, 7))
    b = rng.uniform(-0.2, 0.2, (5, 7))
    a = rng.uniform(2, 10, (5, 7)) - b * 208.4 + 60 * np.abs(b)   # density > 0 over 170–250 keV
    peak = primary + _window_counts(a, b, PEAK)
    out = tew_primary_counts(peak, _window_counts(a, b, lower), _window_counts(a, b, upper), EnergyWindow(*PEAK),
                             EnergyWindow(*lower), EnergyWindow(*upper))
    np.testing.assert_allclose(out, primary, rtol=1e-10, atol=1e-9)


def test_tew_is_ogawa_trapezoid_for_symmetric_windows_and_not_exact_for_curved_spectra():
    c_lo, c_up, c_pk = 120.0, 60.0, 900.0
    w_pk, w_s = PEAK[1] - PEAK[0], UPPER[1] - UPPER[0]
    out = tew_primary_counts(c_pk, c_lo, c_up, EnergyWindow(*PEAK), EnergyWindow(*LOWER), EnergyWindow(*UPPER))
    # Ogawa et al. 1991: S = (C_lo/w_lo + C_up/w_up)·w_pk/2 (these windows are symmetric about 208.4 keV)
    assert float(out) == pytest.approx(c_pk - (c_lo / w_s + c_up / w_s) * w_pk / 2, rel=1e-3)
    # a quadratic spectrum is not removed exactly: the test can fail
    e = np.linspace(170, 250, 8001)
    dens = 1e-3 * (e - 160.0) ** 2

    def integral(w):
        sel = (e >= w[0]) & (e <= w[1])
        return float(np.trapezoid(dens[sel], e[sel]))

    residual = tew_primary_counts(integral(PEAK), integral(LOWER), integral(UPPER), EnergyWindow(*PEAK),
                                  EnergyWindow(*LOWER), EnergyWindow(*UPPER))
    assert abs(float(residual)) > 1.0


def test_tew_rejects_windows_that_do_not_bracket_the_photopeak():
    with pytest.raises(InputError, match="below and above"):
        tew_primary_counts(1.0, 1.0, 1.0, EnergyWindow(*PEAK), EnergyWindow(*UPPER), EnergyWindow(*LOWER))


# ---------------------------------------------------------------------------------------------- μ-map, GM

def test_mu_map_bilinear_at_208_kev():
    ct = sitk.GetImageFromArray(np.array([[[-1000.0, 0.0, 1530.0]]], dtype=np.float32))
    mu = sitk.GetArrayFromImage(mu_map_208kev(ct)).ravel()
    # NIST XCOM water, 200 keV 0.1370 and 300 keV 0.1186 cm²/g: log-log at 208.4 keV is 0.1350 cm²/g
    assert mu[1] == pytest.approx(0.01350, rel=2e-3)
    assert mu[0] == pytest.approx(0.001205 * 0.01350, rel=1e-2)     # air density (ICRU 46)
    assert mu[2] == pytest.approx(1.92 * mu[1], rel=1e-4)           # bone line: ICRU-44 cortical bone at +1530 HU


def test_geometric_mean_flips_the_posterior():
    ant = np.zeros((3, 4))
    post = np.zeros((3, 4))
    ant[1, 0], post[1, 3] = 400.0, 100.0    # one source: left column anterior is right column posterior
    gm = geometric_mean(ant, post)
    assert gm[1, 0] == pytest.approx(200.0) and np.count_nonzero(gm) == 1


# ---------------------------------------------------------------------------------------------- phantom

def test_conjugate_view_exact_without_background():
    """No background, no noise: the attenuation and self-attenuation corrected geometric mean equals the
    pixel-sampled sphere activity (the only difference is the VOI voxelisation of the chord in f)."""
    ph = _phantom(background_mbq_per_ml_at=lambda t: 0.0)
    pairs = conjugate_pairs(ph, (24.0,), noise=False)
    res, _, warns = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks(), geometry=_truth_geometry(ph),
                                             background="none")
    assert warns == []
    for s in ph.spheres:
        assert res[s.name][0].activity_mbq == pytest.approx(_pixel_sampled_activity(ph, s, 24.0), rel=5e-3)
        # and the pixel sampling itself is within 2 % of the sphere's true activity
        assert _pixel_sampled_activity(ph, s, 24.0) == pytest.approx(s.activity_mbq_at(24.0), rel=0.02)


def test_planar_phantom_four_time_points_recover_truth():
    """Poisson noise, scatter (TEW), a background washing out with T_eff 30 h, μ of water: after attenuation
    and Buijs background correction every tumour activity is within 6 % of the truth; without the
    background correction the 1-h activities are > 30 % high."""
    ph = _phantom()
    pairs = conjugate_pairs(ph, TIMES_H, seed=1)
    res, geometry, warns = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks())
    assert warns == []
    assert geometry.origin_mm == pytest.approx(ph.planar_origin_mm, abs=1.0)   # registered by the body outline
    for s in ph.spheres:
        errors = [a.activity_mbq / s.activity_mbq_at(a.time_h) - 1 for a in res[s.name]]
        assert [a.time_h for a in res[s.name]] == list(TIMES_H)
        assert np.max(np.abs(errors)) < 0.06, (s.name, errors)
    raw, _, _ = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks(), geometry=geometry, background="none")
    for s in ph.spheres:
        assert raw[s.name][0].activity_mbq / s.activity_mbq_at(1.0) - 1 > 0.3


def test_camera_blur_needs_an_roi_margin():
    """A Gaussian camera blur (σ 1.5 px, FWHM 14 mm) spreads counts outside the VOI projection: the bare
    projection loses > 10 %; a margin of about half the FWHM (2 px) recovers every time point within 7 %."""
    ph = _phantom()
    pairs = conjugate_pairs(ph, TIMES_H, seed=7, blur_sigma_px=1.5)
    bare, geometry, _ = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks())
    wide, _, _ = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks(), geometry=geometry, roi_margin_px=2,
                                          background_gap_px=3)
    for s in ph.spheres:
        assert all(a.activity_mbq / s.activity_mbq_at(a.time_h) - 1 < -0.10 for a in bare[s.name])
        errors = [a.activity_mbq / s.activity_mbq_at(a.time_h) - 1 for a in wide[s.name]]
        assert np.max(np.abs(errors)) < 0.07, (s.name, errors)


def test_register_by_body_outline_recovers_a_shift():
    ph = _phantom(planar_origin_mm=(-120.0, 116.0))      # 6 mm and 10 mm off the centred frame
    pairs = conjugate_pairs(ph, (24.0,), seed=2)
    start = centred_geometry(pairs[0].anterior, ph.ct_hu())
    assert np.max(np.abs(np.subtract(start.origin_mm, ph.planar_origin_mm))) > 5.0
    from LuDoseResponseLib.dosimetry.planar import primary_counts

    gm = geometric_mean(primary_counts(pairs[0].anterior), primary_counts(pairs[0].posterior))
    found = register_by_body_outline(gm, ph.ct_hu(), start)
    assert found.origin_mm == pytest.approx(ph.planar_origin_mm, abs=1.0)


def test_register_on_the_section_the_ct_shows():
    """A planar field (384 mm) longer than the CT (z −38…162 mm), which shows only the upper end of the
    cylinder (z −80…80 mm): matching the outlines within the CT's field still finds the shift, where the
    centroids of the two outlines would be 22 mm apart. (The CT slices and planar rows both sample z = 80 mm,
    so that the two renderings of the cylinder's end agree; offset grids differ by up to half a pixel.)"""
    ph = _phantom(planar_shape=(96, 64), planar_origin_mm=(-120.0, 180.0), ct_z_offset_mm=62.0)
    pairs = conjugate_pairs(ph, (24.0,), seed=5)
    from LuDoseResponseLib.dosimetry.planar import primary_counts

    gm = geometric_mean(primary_counts(pairs[0].anterior), primary_counts(pairs[0].posterior))
    start = centred_geometry(pairs[0].anterior, ph.ct_hu()).shifted(-8.0, 12.0)
    found = register_by_body_outline(gm, ph.ct_hu(), start)
    assert found.origin_mm == pytest.approx(ph.planar_origin_mm, abs=1.0)


def test_overlapping_tumour_projections_are_reported():
    spheres = [Sphere("A", (0.0, -40.0, 0.0), 15.0, mono(10.0, 80.0)),
               Sphere("B", (10.0, 40.0, 0.0), 15.0, mono(10.0, 80.0))]
    ph = CylinderPhantom(spheres)
    pairs = conjugate_pairs(ph, (24.0,), seed=4)
    _, _, warns = planar_tumour_activities(pairs, ph.ct_hu(), ph.masks(), geometry=_truth_geometry(ph),
                                           background="none")
    assert len(warns) == 1 and "'A' and 'B' overlap" in warns[0]


# ---------------------------------------------------------------------------------------------- bad input

def test_missing_posterior_view():
    ph = _phantom()
    pair = conjugate_pairs(ph, (24.0,), noise=False)[0]
    with pytest.raises(InputError, match="posterior view is missing"):
        planar_tumour_activities([replace(pair, posterior=None)], ph.ct_hu(), ph.masks())


def test_mismatched_matrix_and_pixel_size():
    ph = _phantom()
    pair = conjugate_pairs(ph, (24.0,), noise=False)[0]
    small = replace(pair.posterior, peak=pair.posterior.peak[:-1], lower=pair.posterior.lower[:-1],
                    upper=pair.posterior.upper[:-1])
    with pytest.raises(GeometryError, match="matrices differ"):
        planar_tumour_activities([replace(pair, posterior=small)], ph.ct_hu(), ph.masks())
    with pytest.raises(GeometryError, match="pixel size"):
        planar_tumour_activities([replace(pair, posterior=replace(pair.posterior, pixel_mm=(4.8, 4.8)))],
                                 ph.ct_hu(), ph.masks())
    # a later time point on another matrix than the first one
    other = conjugate_pairs(_phantom(planar_shape=(60, 64)), (96.0,), noise=False)[0]
    with pytest.raises(GeometryError, match="same matrix"):
        planar_tumour_activities([pair, other], ph.ct_hu(), ph.masks())


def test_tumour_outside_the_planar_field():
    ph = _phantom(planar_shape=(20, 64), planar_origin_mm=(-126.0, 70.0))   # z 72 mm down to -8 mm only
    pairs = conjugate_pairs(ph, (24.0,), noise=False)
    with pytest.raises(GeometryError, match="tumour 'T2'.*outside the planar field"):
        planar_tumour_activities(pairs, ph.ct_hu(), ph.masks(), geometry=_truth_geometry(ph))


def test_phantom_mu_is_nist_water():
    """The phantom's μ (NIST XCOM, typed in) agrees with what the library derives from HU 0."""
    ct = sitk.GetImageFromArray(np.zeros((1, 1, 1), dtype=np.float32))
    assert float(sitk.GetArrayFromImage(mu_map_208kev(ct))[0, 0, 0]) == pytest.approx(MU_WATER_PER_MM, rel=2e-3)
