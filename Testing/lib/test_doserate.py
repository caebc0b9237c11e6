"""Dose-rate maps: unit chain, convolution exactness, LED, spheres, density, bad input.

Independent references: scipy.signal.fftconvolve, the kernels themselves (unit-source reproduction,
README §2 test 1), the uniform infinite medium (test 2), E_e = 2.36999e-14 J from ICRP-107 (LED),
the sphere-centre bound (test 4) and the uniform-sphere S-values (README §3).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.signal import fftconvolve

from LuDoseResponseLib.dosimetry import doserate as dr
from LuDoseResponseLib.errors import GeometryError, InputError, PhysicsError
from LuDoseResponseLib.physics import convolution as kc
from LuDoseResponseLib.physics.density import HuDensityCalibration
from LuDoseResponseLib.physics.kernel_files import load_lanconelli_kernel
from LuDoseResponseLib.physics.kernels import lu177_kernel, lu177_voxel_kernel

E_E_J = 2.36999e-14          # README §1: all electrons, J per decay


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


def _image(arr, spacing=(4.8, 4.8, 4.8), origin=(0.0, 0.0, 0.0), direction=None):
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _arr(img):
    return sitk.GetArrayFromImage(img)


def _place(kernel, shape, at):
    """The kernel (centred) placed at voxel ``at`` of an array of ``shape`` (cropped at the borders)."""
    out = np.zeros(shape)
    c = np.array(kernel.shape) // 2
    lo = np.array(at) - c
    src = tuple(slice(max(0, -lo[a]), min(kernel.shape[a], shape[a] - lo[a])) for a in range(3))
    dst = tuple(slice(max(0, lo[a]), max(0, lo[a]) + (src[a].stop - src[a].start)) for a in range(3))
    out[dst] = kernel[src]
    return out


# ---------------------------------------------------------------------------------------------
# Unit chain and convolution
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing", [(4.8, 4.8, 4.8), (2.0, 3.0, 4.0)])
def test_unit_source_reproduces_the_kernel(spacing):
    # README §2 test 1: a unit TIA in one voxel, convolved, reproduces the kernel exactly (rtol 1e-6).
    shape = (31, 36, 33)
    at = (12, 20, 9)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    act = np.zeros(shape)
    act[at] = 1e6 / voxel_ml                      # 1 MBq in the voxel
    img = _image(act, spacing)
    out = _arr(dr.dose_rate_map(img, dtype=np.float64)) / 3.6      # Gy/h → mGy/s per MBq
    expected = _place(lu177_voxel_kernel(tuple(spacing)), shape, at)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-12 * expected.max())
    out32 = _arr(dr.dose_rate_map(img))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32 / 3.6, expected, rtol=0, atol=2e-6 * expected.max())


def test_unit_source_with_a_published_kernel(physics_reference_dir):
    lan = load_lanconelli_kernel(physics_reference_dir / "lanconelli2012_via_MIRDCalculation" / "177Lu4.8mmsoft.txt")
    act = np.zeros((15, 16, 17))
    act[7, 3, 8] = 1e6 / (4.8**3 / 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _arr(dr.dose_rate_map(_image(act), kernel=lan, dtype=np.float64)) / 3.6
    expected = _place(lan.values, act.shape, (7, 3, 8))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-12)


def test_uniform_infinite_medium_gives_activity_times_kernel_sum():
    # README §2 test 2: uniform activity gives Ã_voxel·ΣK in the interior (rtol 1e-6).
    kern = lu177_kernel(4.8, photon_radius_mm=30.0)
    half = kern.values.shape[0] // 2
    conc = 2.5e5                                           # Bq/mL
    img = _image(np.full((2 * half + 9,) * 3, conc))
    out = _arr(dr.dose_rate_map(img, kernel=kern, dtype=np.float64))
    interior = out[half:-half, half:-half, half:-half]
    a_mbq = conc * 4.8**3 / 1000 * 1e-6
    np.testing.assert_allclose(interior, a_mbq * kern.values.sum() * 3.6, rtol=1e-6)


def test_matches_scipy_fftconvolve_for_random_activity_and_asymmetric_kernels():
    rng = np.random.default_rng(7)
    x = rng.random((23, 40, 37))
    sym = lu177_voxel_kernel((2.0, 2.5, 3.0), photon_radius_mm=12.0)
    asym = rng.random((5, 9, 3))
    for kern in (sym, asym):
        ref = fftconvolve(x, kern, mode="same")
        for block in (10_000, 32 * 2**20):
            conv = kc.KernelConvolver(kern, x.shape, dtype=np.float64, block_bytes=block)
            np.testing.assert_allclose(conv(x), ref, rtol=1e-10, atol=1e-13 * np.abs(ref).max())
        # A kept work buffer holds the last call's data: the next call must clear its padding.
        conv = kc.KernelConvolver(kern, x.shape, dtype=np.float64, keep_buffer=True)
        y = rng.random(x.shape)
        conv(x)
        np.testing.assert_allclose(conv(y), fftconvolve(y, kern, mode="same"), rtol=1e-10, atol=1e-13)


def test_kernel_larger_than_the_grid_is_cropped_without_wraparound():
    k = lu177_voxel_kernel(2.0)                      # 101³ (photons to 100 mm)
    x = np.zeros((6, 7, 8))
    x[0, 0, 0] = 1.0
    x[5, 6, 7] = 2.0
    conv = kc.KernelConvolver(k, x.shape, dtype=np.float64)
    np.testing.assert_allclose(conv(x), fftconvolve(x, k, mode="same"), rtol=1e-10, atol=1e-14)


def test_geometry_and_dtype_are_kept():
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    img = _image(np.ones((8, 9, 10), dtype=np.float32), spacing=(3.0, 3.0, 3.0), origin=(-10.0, 5.0, 2.5),
                 direction=direction)
    for method in ("kernel", "led"):
        out = dr.dose_rate_map(img, method=method)
        assert out.GetSize() == img.GetSize() and out.GetSpacing() == img.GetSpacing()
        assert out.GetOrigin() == img.GetOrigin() and out.GetDirection() == img.GetDirection()
        assert out.GetPixelID() == sitk.sitkFloat32
    assert dr.dose_rate_map(img, dtype=np.float64).GetPixelID() == sitk.sitkFloat64


def test_kernel_spectrum_is_reused_for_the_next_time_point():
    kc.clear_convolver_cache()
    img = _image(np.ones((20, 21, 22)), spacing=(4.0, 4.0, 4.0))
    dr.dose_rate_map(img)
    before = kc.convolver_cache_info()
    dr.dose_rate_map(_image(2 * np.ones((20, 21, 22)), spacing=(4.0, 4.0, 4.0)))
    after = kc.convolver_cache_info()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]


# ---------------------------------------------------------------------------------------------
# Local energy deposition and spheres
# ---------------------------------------------------------------------------------------------

def test_led_is_exact():
    # Ḋ = C·E_e/ρ: 1 Bq/mL in water gives E_e/(1 g) per second.
    conc = np.full((4, 5, 6), 1.0e6)
    out = _arr(dr.dose_rate_map(_image(conc), method="led", dtype=np.float64))
    np.testing.assert_allclose(out, 1.0e6 * E_E_J / 1e-3 * 3600.0, rtol=2e-6)
    rho = _image(np.full((4, 5, 6), 2.0))
    out_rho = _arr(dr.dose_rate_map(_image(conc), method="led", density=rho, density_unit="g_per_cm3",
                                    dtype=np.float64))
    np.testing.assert_allclose(out_rho, out / 2.0, rtol=1e-12)


def _sphere(radius_mm, h_mm, margin=3, sub=4):
    """Fractional occupancy of a centred sphere on a grid of cubic voxels (sub³ samples per voxel)."""
    n = int(math.ceil(radius_mm / h_mm)) + margin
    shape = (2 * n + 1,) * 3
    c = (np.arange(2 * n + 1) - n) * h_mm
    off = ((np.arange(sub) + 0.5) / sub - 0.5) * h_mm
    occ = np.zeros(shape)
    for dz in off:
        for dy in off:
            for dx in off:
                z, y, x = np.meshgrid(c + dz, c + dy, c + dx, indexing="ij")
                occ += (x * x + y * y + z * z <= radius_mm**2)
    return occ / sub**3


def test_dose_at_the_centre_of_a_water_sphere_is_bounded():
    # README §2 test 4: ≥ 10 mL uniform water sphere, dose per decay at the centre in [0.90, 1.08]·E_e/m;
    # LED gives exactly 1.000·E_e/m in the interior.
    h, radius = 2.0, 15.0                                  # 14.1 mL
    occ = _sphere(radius, h)
    conc = 1.0e6
    img = _image(occ * conc, spacing=(h, h, h))
    total_bq = conc * occ.sum() * h**3 / 1000.0
    mass_kg = occ.sum() * h**3 / 1e6
    per_decay = E_E_J / mass_kg                            # Gy per decay (mean over the sphere, LED)
    c = tuple(s // 2 for s in occ.shape)
    for method, lo, hi in (("kernel", 0.90, 1.08), ("led", 1.0 - 1e-6, 1.0 + 1e-6)):
        d = _arr(dr.dose_rate_map(img, method=method, dtype=np.float64))[c] / 3600.0 / total_bq
        assert lo <= d / per_decay <= hi, method


@pytest.mark.parametrize("mass_index, voxel_mm", [(6, 0.25), (9, 1.0), (11, 2.0), (14, 4.0)])
def test_uniform_sphere_s_values_at_fine_voxels(physics_reference_dir, mass_index, voxel_mm):
    # README §3: S-values of uniform spheres (composition 100 %/0 %, ρ = 1.03); masses 0.932, 14.6, 116, 932 g.
    # The sphere is voxelized (voxel centre inside), activity and dose both on that voxel set; its mass differs
    # from the nominal one by < 1.2 %, corrected to first order with S ∝ 1/m.
    ref = json.loads((physics_reference_dir / "PyTheranostics_spheres_svalues.json").read_text())["100%/0%"]
    mass_g, s_ref = ref["tumor_mass"][mass_index], ref["total_s_value"][mass_index]
    rho = 1.03
    radius_mm = 10.0 * (3 * mass_g / rho / (4 * math.pi)) ** (1 / 3)
    inside = _sphere(radius_mm, voxel_mm, sub=1)
    kern = lu177_kernel(voxel_mm, density_g_per_cm3=rho, photon_radius_mm=2.05 * radius_mm)
    conc = 1.0e6
    out = _arr(dr.dose_rate_map(_image(inside * conc, spacing=(voxel_mm,) * 3), kernel=kern, dtype=np.float64))
    mean_gy_per_s = float(out[inside > 0].mean()) / 3600.0
    volume_ml = inside.sum() * voxel_mm**3 / 1000.0
    s_ours = mean_gy_per_s / (conc * volume_ml)
    assert s_ours * (rho * volume_ml) / mass_g / s_ref == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------------------------------------
# Density
# ---------------------------------------------------------------------------------------------

def test_hu_calibration_default_points():
    cal = HuDensityCalibration()
    np.testing.assert_allclose(cal.to_density([-2000.0, -1000.0, -500.0, 0.0, 1530.0, 3060.0]),
                               [0.001205, 0.001205, 0.5006025, 1.0, 1.92, 2.84], rtol=1e-5)
    with pytest.raises(InputError, match="increase"):
        HuDensityCalibration(hu=(0.0, -1.0), density_g_per_cm3=(1.0, 1.0))


def test_ct_in_hu_is_resampled_and_scales_the_dose():
    spect = _image(np.full((10, 10, 10), 1.0e5), spacing=(4.0, 4.0, 4.0))
    water = dr.dose_rate_map(spect, dtype=np.float64)
    ct = np.zeros((80, 80, 80), dtype=np.int16)            # 1 mm CT covering the SPECT
    ct[:, :, :40] = 1530                                    # bone half (x < 40 mm)
    ct_img = _image(ct, spacing=(1.0, 1.0, 1.0), origin=(-10.0, -10.0, -10.0))
    out = _arr(dr.dose_rate_map(spect, density=ct_img, density_unit="hu", dtype=np.float64))
    base = _arr(water)
    # Voxel centres at x = 4i mm: x ≤ 24 mm is inside the bone half, x ≥ 36 mm in water (away from the edge).
    np.testing.assert_allclose(out[:, :, :6], base[:, :, :6] / 1.92, rtol=1e-3)
    np.testing.assert_allclose(out[:, :, 9:], base[:, :, 9:], rtol=1e-3)


def test_air_and_lung_do_not_blow_up():
    spect = _image(np.full((6, 6, 6), 1.0e5))
    air = _image(np.full((6, 6, 6), -1000.0))
    base = _arr(dr.dose_rate_map(spect, dtype=np.float64))
    out = _arr(dr.dose_rate_map(spect, density=air, density_unit="hu", dtype=np.float64))
    np.testing.assert_allclose(out, base / dr.DEFAULT_MIN_DENSITY_G_PER_CM3, rtol=1e-6)
    lung = _image(np.full((6, 6, 6), -750.0))               # 0.2509 g/cm³
    out = _arr(dr.dose_rate_map(spect, density=lung, density_unit="hu", dtype=np.float64))
    np.testing.assert_allclose(out, base / HuDensityCalibration().to_density(-750.0), rtol=1e-5)


def test_ct_partly_outside_warns_and_uses_water():
    spect = _image(np.full((6, 6, 6), 1.0e5))
    ct = _image(np.full((6, 6, 3), 1530.0), origin=(0.0, 0.0, 0.0))      # covers x < 3 voxels only
    base = _arr(dr.dose_rate_map(spect, dtype=np.float64))
    with pytest.warns(UserWarning, match="outside the CT"):
        out = _arr(dr.dose_rate_map(spect, density=ct, density_unit="hu", dtype=np.float64))
    np.testing.assert_allclose(out[:, :, 4:], base[:, :, 4:], rtol=1e-6)
    assert np.all(out[:, :, :2] < base[:, :, :2])


def test_ct_without_overlap_is_refused():
    spect = _image(np.ones((6, 6, 6)))
    ct = _image(np.full((6, 6, 6), -80.0), origin=(500.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="does not overlap"):
        dr.dose_rate_map(spect, density=ct, density_unit="hu")


def test_density_image_on_another_grid_is_refused():
    spect = _image(np.ones((6, 6, 6)))
    rho = _image(np.ones((6, 6, 6)), spacing=(4.0, 4.0, 4.0))
    with pytest.raises(GeometryError, match="not on the activity image's grid"):
        dr.dose_rate_map(spect, density=rho, density_unit="g_per_cm3")
    with pytest.raises(GeometryError, match="not on the activity image's grid"):
        dr.dose_rate_map(spect, density=rho, density_unit="auto")     # auto: all 1, only g/cm³ is plausible


def test_density_with_nan_is_refused():
    rho = np.ones((6, 6, 6))
    rho[2, 2, 2] = np.nan
    with pytest.raises(PhysicsError, match="NaN"):
        dr.dose_rate_map(_image(np.ones((6, 6, 6))), density=_image(rho), density_unit="g_per_cm3")


# ---------------------------------------------------------------------------------------------
# Activity checks and bad input
# ---------------------------------------------------------------------------------------------

def _noisy():
    act = np.full((12, 12, 12), 1.0e5)
    act[3, 4, 5] = -2.0e4
    act[8, 8, 8] = -1.0e4
    return act


def test_small_negative_activity_is_clipped_with_a_warning():
    act = _noisy()
    with pytest.warns(UserWarning, match="2 negative voxels"):
        out = _arr(dr.dose_rate_map(_image(act), dtype=np.float64))
    expected = _arr(dr.dose_rate_map(_image(np.maximum(act, 0)), dtype=np.float64))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_negative_activity_can_be_kept_or_refused():
    act = _noisy()
    with pytest.warns(UserWarning, match="kept"):
        out = _arr(dr.dose_rate_map(_image(act), negative_activity="keep", dtype=np.float64))
    conv = kc.KernelConvolver(lu177_voxel_kernel(4.8), act.shape, dtype=np.float64)
    np.testing.assert_allclose(out, conv(act) * (4.8**3 / 1000 * 1e-6 * 3.6), rtol=1e-10, atol=1e-15)
    with pytest.raises(PhysicsError, match="negative"):
        dr.dose_rate_map(_image(act), negative_activity="error")
    with pytest.raises(InputError, match="negative_activity"):
        dr.dose_rate_map(_image(act), negative_activity="ignore")


def test_mostly_negative_activity_is_refused():
    act = _noisy()
    act[:6] = -act[:6]
    with pytest.raises(PhysicsError, match="not reconstruction noise"):
        dr.dose_rate_map(_image(act))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_activity_is_refused(bad):
    act = np.ones((5, 5, 5))
    act[1, 2, 3] = bad
    with pytest.raises(PhysicsError, match="1 NaN or infinite"):
        dr.dose_rate_map(_image(act))


def test_bad_arguments_give_clear_errors(physics_reference_dir):
    img = _image(np.ones((5, 5, 5)))
    with pytest.raises(InputError, match="method"):
        dr.dose_rate_map(img, method="mc")
    with pytest.raises(InputError, match="dtype"):
        dr.dose_rate_map(img, dtype=np.int32)
    with pytest.raises(InputError, match="3-D"):
        dr.dose_rate_map(sitk.GetImageFromArray(np.ones((5, 5))))
    with pytest.raises(InputError, match="SimpleITK"):
        dr.dose_rate_map(np.ones((5, 5, 5)))
    lan = load_lanconelli_kernel(physics_reference_dir / "lanconelli2012_via_MIRDCalculation" / "177Lu4mmsoft.txt")
    with pytest.raises(GeometryError, match="voxel size"):
        dr.dose_rate_map(img, kernel=lan)
    lan48 = load_lanconelli_kernel(physics_reference_dir / "lanconelli2012_via_MIRDCalculation" / "177Lu4.8mmsoft.txt")
    with pytest.raises(InputError, match="photon part"):
        dr.dose_rate_map(img, kernel=lan48, include_photons=False)
    with pytest.raises(InputError, match="kernel applies to method='kernel'"):
        dr.dose_rate_map(img, method="led", kernel=lan48)     # would be ignored silently
    with pytest.raises(InputError, match="min_density"):
        dr.dose_rate_map(img, min_density_g_per_cm3=0.0)
    with pytest.raises(InputError, match="density image must be a SimpleITK image"):
        dr.dose_rate_map(img, density=np.ones((5, 5, 5)), density_unit="hu")


def test_led_with_photons_adds_the_photon_kernel():
    act = np.zeros((21, 21, 21))
    act[10, 10, 10] = 1e6 / (4.8**3 / 1000)
    img = _image(act)
    led = _arr(dr.dose_rate_map(img, method="led", dtype=np.float64))
    both = _arr(dr.dose_rate_map(img, method="led", include_photons=True, dtype=np.float64))
    photon = _place(lu177_voxel_kernel(4.8, electrons=False), act.shape, (10, 10, 10)) * 3.6
    np.testing.assert_allclose(both - led, photon, rtol=1e-6, atol=1e-12 * photon.max())


# ---------------------------------------------------------------------------------------------
# Numbers out of range (issue 9): refused with a clear error, never NaN voxels or a MemoryError
# ---------------------------------------------------------------------------------------------

def test_activity_that_overflows_float32_is_refused_not_nan():
    # 1e38 Bq/mL times a kernel sum ~1e-4 Gy/h per Bq/mL exceeds float32's 3.4e38 after the FFT: NaN voxels today.
    act = np.zeros((9, 9, 9))
    act[4, 4, 4] = 1e38
    with pytest.raises(PhysicsError, match="non-finite.*float32.*Bq/mL"):
        dr.dose_rate_map(_image(act))
    # float64 holds it, and the map scales linearly with the activity (a linear operator).
    big = _arr(dr.dose_rate_map(_image(act), dtype=np.float64))
    act[4, 4, 4] = 1e6
    small = _arr(dr.dose_rate_map(_image(act), dtype=np.float64))
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big, small * 1e32, rtol=1e-9)


@pytest.mark.parametrize("spacing_mm", [1e-6, 1e6])
def test_absurd_voxel_sizes_are_a_physics_error_not_a_memory_error(spacing_mm):
    img = _image(np.ones((4, 4, 4)), spacing=(spacing_mm,) * 3)
    with pytest.raises(PhysicsError, match="voxel_size_mm.*outside the supported"):
        dr.dose_rate_map(img)
    with pytest.raises(PhysicsError, match="outside the supported"):
        lu177_voxel_kernel(spacing_mm)


def test_a_kernel_box_too_large_is_refused_before_allocation():
    # 0.1 mm voxels with photons to 100 mm would be a 2001³ box (64 GB per float64 array).
    with pytest.raises(PhysicsError, match="exceeds the limit"):
        lu177_voxel_kernel(0.1, photon_radius_mm=100.0)
