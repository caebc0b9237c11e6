"""Density on the SPECT grid: the unit is stated and checked, never guessed; CT pre-smoothing.

Independent references: the definition of the Hounsfield scale (water 0 HU, air −1000 HU; stored
CT values are HU − RescaleIntercept, −1024 on most scanners), local energy deposition
Ḋ = C·E_e/ρ (exact, so a wrong density shows as a wrong dose factor), and the analytic profile of
a sharp density step smoothed by a Gaussian of variance (h_SPECT² − h_CT²)/12 (density.py's
documented pre-filter): ρ(d) = ρ₁ + (ρ₂ − ρ₁)·Φ(d/σ), Φ the normal CDF.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.stats import norm

from LuDoseResponseLib.dosimetry import doserate as dr
from LuDoseResponseLib.errors import DataQualityWarning, InputError, PhysicsError
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.physics.density import HuDensityCalibration, density_on_grid

E_E_J = 2.36999e-14          # physics README §1: all electrons, J per decay
CONC = 1.0e6                 # Bq/mL


def _image(arr, spacing=(4.8, 4.8, 4.8), origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _led_water_gy_per_h():
    return CONC * E_E_J / 1e-3 * 3600.0          # Gy/h in water (1 g/mL)


def _led_dose(density, **kwargs):
    spect = _image(np.full((6, 6, 6), CONC))
    return sitk.GetArrayFromImage(dr.dose_rate_map(spect, method="led", density=density, dtype=np.float64, **kwargs))


def _body_ct(water_hu=0.0, air_hu=-1000.0, bone_hu=1000.0):
    """A 6³ CT on the SPECT grid: an air shell, soft tissue inside, one bone voxel."""
    ct = np.full((6, 6, 6), air_hu)
    ct[1:5, 1:5, 1:5] = water_hu
    ct[2, 2, 2] = bone_hu
    return ct


# ---------------------------------------------------------------------------------------------
# The four silent-wrong-density cases of issue 17
# ---------------------------------------------------------------------------------------------

def test_all_10_hu_ct_is_not_read_as_10_g_per_cm3():
    # A uniform 10-HU CT is water-like tissue: 1.006 g/cm³ by the calibration, not 10 g/cm³ (dose × 0.1).
    ct = _image(np.full((6, 6, 6), 10.0))
    out = _led_dose(ct, density_unit="auto")
    np.testing.assert_allclose(out, _led_water_gy_per_h() / float(HuDensityCalibration().to_density(10.0)),
                               rtol=1e-5)
    with pytest.raises(PhysicsError, match="above 3 g/cm3.*HU"):
        _led_dose(ct, density_unit="g_per_cm3")


def test_all_0_hu_ct_is_water_not_an_empty_density():
    # 0 HU is water by definition of the scale: the dose is the water dose, not ×10 (density 0 → floor 0.1).
    ct = _image(np.zeros((6, 6, 6)))
    np.testing.assert_allclose(_led_dose(ct, density_unit="auto"), _led_water_gy_per_h(), rtol=1e-6)
    with pytest.raises(PhysicsError, match="no voxel lies above 0.05 g/cm3"):
        _led_dose(ct, density_unit="g_per_cm3")


def test_hu_without_the_rescale_is_refused():
    # Stored values of a CT before RescaleIntercept = −1024: air 24, water 1024, bone 2024. Read as HU they
    # would make water 1.61 g/cm³ (dose × 0.62).
    raw = _image(_body_ct(water_hu=1024.0, air_hu=24.0, bone_hu=2024.0))
    with pytest.raises(PhysicsError, match="without the modality rescale"):
        _led_dose(raw, density_unit="hu")
    with pytest.raises(InputError, match="cannot tell the unit"):
        _led_dose(raw, density_unit="auto")
    rescaled = _image(_body_ct(water_hu=1024.0, air_hu=24.0, bone_hu=2024.0) - 1024.0)
    out = _led_dose(rescaled, density_unit="hu")
    np.testing.assert_allclose(out[1:5, 1:5, 1:5][out[1:5, 1:5, 1:5] < 2 * _led_water_gy_per_h()].min(),
                               _led_water_gy_per_h() / HuDensityCalibration().to_density(1000.0), rtol=1e-5)
    assert out[3, 3, 3] == pytest.approx(_led_water_gy_per_h(), rel=1e-6)


def test_kg_per_m3_passed_as_g_per_cm3_is_refused_and_kg_per_m3_is_converted():
    # Water 1000 kg/m³ read as 1000 g/cm³ gives dose × 0.001.
    rho_kg = np.full((6, 6, 6), 1.205)              # air
    rho_kg[1:5, 1:5, 1:5] = 1000.0
    with pytest.raises(PhysicsError, match="kg/m3"):
        _led_dose(_image(rho_kg), density_unit="g_per_cm3")
    out = _led_dose(_image(rho_kg), density_unit="kg_per_m3", min_density_g_per_cm3=1e-3)
    np.testing.assert_allclose(out, _led_water_gy_per_h() / (rho_kg / 1000.0), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The unit is stated: by the caller or by the DICOM header
# ---------------------------------------------------------------------------------------------

def test_the_density_unit_is_required():
    with pytest.raises(InputError, match="density_unit='hu'"):
        _led_dose(_image(_body_ct()))
    with pytest.raises(InputError, match="density_unit must be one of"):
        _led_dose(_image(_body_ct()), density_unit="HU?")


def test_unit_from_the_ct_series_metadata():
    ct = _image(_body_ct())
    meta = SeriesMetadata(path="ct/", n_files=6, modality="CT", units="hu")
    np.testing.assert_array_equal(_led_dose(ct, density_metadata=meta), _led_dose(ct, density_unit="hu"))
    assert dr.density_unit_from_metadata(meta) == "hu"
    with pytest.raises(InputError, match="contradicts"):
        _led_dose(ct, density_metadata=meta, density_unit="g_per_cm3")
    nm = SeriesMetadata(path="spect/", n_files=1, modality="NM", units="bq_per_ml")
    with pytest.raises(InputError, match="spect/.*not a CT"):
        _led_dose(ct, density_metadata=nm)
    broken = SeriesMetadata(path="ct2/", n_files=6, modality="CT", units=None)   # unusable rescale
    with pytest.raises(InputError, match="ct2/"):
        _led_dose(ct, density_metadata=broken)


def test_a_density_map_stated_as_hu_is_refused():
    rho = np.full((6, 6, 6), 0.0012)
    rho[1:5, 1:5, 1:5] = 1.04
    with pytest.raises(PhysicsError, match="density map in g/cm3"):
        _led_dose(_image(rho), density_unit="hu")
    np.testing.assert_allclose(_led_dose(_image(rho), density_unit="auto"),
                               _led_water_gy_per_h() / np.maximum(rho, dr.DEFAULT_MIN_DENSITY_G_PER_CM3), rtol=1e-6)


def test_a_plausible_body_ct_gives_no_warning_and_doubtful_ones_do():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _led_dose(_image(_body_ct()), density_unit="hu")
    with pytest.warns(DataQualityWarning, match="no soft-tissue peak"):
        _led_dose(_image(np.full((6, 6, 6), 400.0)), density_unit="hu")
    with pytest.raises(InputError, match="cannot tell"):            # auto never takes a doubtful reading
        _led_dose(_image(np.full((6, 6, 6), 400.0)), density_unit="auto")


# ---------------------------------------------------------------------------------------------
# CT pre-smoothing to the SPECT voxel size
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h_spect_mm", [4.0, 5.0])
def test_ct_step_is_smoothed_to_the_spect_resolution(h_spect_mm):
    # A CT of 0.25 mm voxels along x with a sharp water (0 HU, 1.0 g/cm³) → bone (1530 HU, 1.92 g/cm³) step at
    # x0 = 39.875 mm (between the voxel centres 39.75 and 40.0). density.py smooths with a Gaussian of variance
    # (h² − 0.25²)/12 mm² along x before resampling; SPECT voxel centres are put on CT voxel centres so that the
    # linear resampling adds nothing. Expected at a distance d from the edge: 1 + 0.92·Φ(d/σ) (the CT voxels are
    # 4.6σ⁻¹ fine, so the discrete filter is the continuous one to < 0.5 % of the step). Without the smoothing,
    # every SPECT voxel would read 1.0 or 1.92 exactly.
    ct = np.zeros((12, 12, 320))
    ct[:, :, 160:] = 1530.0
    ct_img = _image(ct, spacing=(0.25, 1.0, 1.0))
    sigma = math.sqrt((h_spect_mm**2 - 0.25**2) / 12.0)
    distances, measured = [], []
    for shift in range(int(h_spect_mm)):
        origin_x = 20.0 + shift
        spect = _image(np.ones((2, 2, 6)), spacing=(h_spect_mm,) * 3, origin=(origin_x, 3.0, 3.0))
        rho = density_on_grid(ct_img, spect, unit="hu")
        distances += list(origin_x + h_spect_mm * np.arange(6) - 39.875)
        measured += list(rho[0, 0, :])
    d, measured = np.array(distances), np.array(measured)
    expected = 1.0 + 0.92 * norm.cdf(d / sigma)
    raw_step = np.where(d > 0, 1.92, 1.0)
    near = np.abs(d) < 1.5 * sigma
    assert near.sum() >= 3
    np.testing.assert_allclose(measured, expected, rtol=0, atol=0.01 * 0.92)       # 1 % of the step
    assert np.max(np.abs(measured[near] - raw_step[near])) > 0.2 * 0.92            # clearly not the raw step
