"""Quantification round trips: a known activity → counts (by the definition of the calibration
factor, S = count rate / activity) → DICOM → Bq/mL, and Bq/mL images passing through unchanged.

The forward model here is the definition itself: a source of A MBq imaged for t s by a system of
sensitivity S cps/MBq gives N = A·S·t counts. Conservation: Σ C·V_voxel must give A back.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import ge_counts_like, hermes_pt_like, save, siemens_xspect_like, write_series

from LuDoseResponseLib.dosimetry.quantification import (
    calibration_warnings,
    counts_to_bq_per_ml,
    quantify_spect,
    values_time,
)
from LuDoseResponseLib.errors import InputError, PhysicsError
from LuDoseResponseLib.io import dicom

# ICRP-107 T½ of Lu-177 (physics README §1), written out here rather than taken from the library
HALF_LIFE_H = 6.647 * 24.0
CALIBRATION = 5.7          # cps/MBq (EJNMMI Res 2018: 5.67)
DURATION_S = 1200.0        # what ge_counts_like writes: 2 rotations × 30 views × 20 s


def _phantom_activity_mbq() -> np.ndarray:
    """Activity per voxel (MBq) whose counts A·S·t are whole numbers: 0.05 MBq → 342 counts; not symmetric
    in any axis, so a flipped or transposed stack shows."""
    act = np.zeros((7, 9, 11))
    act[2:5, 3:7, 4:9] = 0.05
    act[1, 2, 3] = 0.35
    return act


def test_known_activity_to_counts_to_concentration(tmp_path):
    activity = _phantom_activity_mbq()
    counts = np.rint(activity * CALIBRATION * DURATION_S)  # definition of S (cps/MBq)
    np.testing.assert_allclose(counts, activity * CALIBRATION * DURATION_S, rtol=1e-12)  # exact integers
    volume = dicom.read_volume(save(ge_counts_like(counts.astype(np.uint16)), tmp_path / "ge.dcm"))
    assert volume.metadata.units == "counts" and volume.metadata.duration_s == DURATION_S
    result = quantify_spect(volume.image, units=volume.metadata.units, calibration_cps_per_mbq=CALIBRATION,
                            duration_s=volume.metadata.duration_s)
    conc = sitk.GetArrayFromImage(result.image)
    voxel_ml = np.prod(volume.image.GetSpacing()) / 1000.0
    # total activity is conserved ...
    total_mbq = conc.sum() * voxel_ml / 1e6
    assert total_mbq == pytest.approx(activity.sum(), rel=1e-9)
    # ... and every voxel holds its own activity. ge_counts_like stores the frames with a negative
    # SpacingBetweenSlices (each in front of the previous), so k = 0 of the LPS volume is the last stored frame.
    np.testing.assert_allclose(conc, activity[::-1] * 1e6 / voxel_ml, rtol=1e-9)
    assert result.decay_factor == 1.0 and result.warnings == ()


def test_decay_correction_to_administration_recovers_a0(tmp_path):
    """A0 at injection decays to A0·2^(−Δt/T½) at the scan; correcting back recovers A0."""
    a0 = _phantom_activity_mbq()
    ds = ge_counts_like(np.zeros((7, 9, 11), dtype=np.uint16))
    acquired = datetime(2019, 3, 5, 9, 50)
    administered = datetime(2019, 3, 4, 9, 30)
    elapsed_h = (acquired - administered).total_seconds() / 3600.0
    at_scan = a0 * 2.0 ** (-elapsed_h / HALF_LIFE_H)
    counts = at_scan * CALIBRATION * DURATION_S  # not integers: store ×1000 with RescaleSlope 0.001
    stored = np.rint(counts * 1000.0)
    ds.PixelData = stored.astype("<u4").tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.RescaleSlope, ds.RescaleIntercept = "0.001", "0"
    volume = dicom.read_volume(save(ds, tmp_path / "ge.dcm"))
    assert volume.metadata.acquired_at == acquired
    result = quantify_spect(volume.image, units="counts", calibration_cps_per_mbq=CALIBRATION,
                            duration_s=DURATION_S, value_time=acquired, reference_time=administered)
    voxel_ml = np.prod(volume.image.GetSpacing()) / 1000.0
    recovered_mbq = sitk.GetArrayFromImage(result.image).sum() * voxel_ml / 1e6
    stored_mbq = (stored * 0.001).sum() / (CALIBRATION * DURATION_S) * 2.0 ** (elapsed_h / HALF_LIFE_H)
    assert recovered_mbq == pytest.approx(stored_mbq, rel=1e-12)  # the arithmetic itself
    assert recovered_mbq == pytest.approx(a0.sum(), rel=1e-6)      # within the 1e-3-count storage rounding
    assert result.decay_factor == pytest.approx(2.0 ** (elapsed_h / HALF_LIFE_H), rel=1e-12)


def test_bq_per_ml_passes_through_unchanged(tmp_path):
    conc = np.random.default_rng(2).uniform(0, 3e5, size=(5, 6, 7))
    ds = siemens_xspect_like(conc)
    volume = dicom.read_volume(save(ds, tmp_path / "s.dcm"))
    result = quantify_spect(volume.image, units=volume.metadata.units, calibration_cps_per_mbq=5.7)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.image), sitk.GetArrayFromImage(volume.image))
    assert result.scale_bq_per_ml_per_unit == 1.0
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), conc, atol=float(ds.RescaleSlope) / 2)


def test_scalar_formula():
    # 1 MBq for 1 s at 1 cps/MBq gives 1 count; spread over 1 mL it is 1e6 Bq/mL
    assert counts_to_bq_per_ml(1.0, calibration_cps_per_mbq=1.0, duration_s=1.0, voxel_volume_ml=1.0) == 1e6
    assert counts_to_bq_per_ml(5130.0, calibration_cps_per_mbq=5.7, duration_s=1800.0,
                               voxel_volume_ml=0.1) == pytest.approx(5130 / (5.7 * 1800) * 1e6 / 0.1, rel=1e-15)
    with pytest.raises(InputError, match="duration_s"):
        counts_to_bq_per_ml(1.0, calibration_cps_per_mbq=5.7, duration_s=0.0, voxel_volume_ml=1.0)


@pytest.mark.parametrize(("factor", "warns"), [(5.7, False), (3.0, False), (15.0, False), (2.0, True),
                                               (57.0, True)])
def test_calibration_range_warning(factor, warns):
    assert bool(calibration_warnings(factor)) is warns


def test_counts_need_calibration_and_duration():
    image = sitk.Image(3, 3, 3, sitk.sitkFloat64)
    with pytest.raises(InputError, match="calibration_cps_per_mbq is needed"):
        quantify_spect(image, units="counts", duration_s=100.0, name="c1/spect_24h")
    with pytest.raises(InputError, match="c1/spect_24h.*duration_s"):
        quantify_spect(image, units="counts", calibration_cps_per_mbq=5.7, name="c1/spect_24h")
    with pytest.raises(InputError, match="'counts' or 'bq_per_ml'"):
        quantify_spect(image, units=None)
    with pytest.raises(InputError, match="needs the time the values refer to"):
        quantify_spect(image, units="bq_per_ml", reference_time=datetime(2019, 1, 1))
    result = quantify_spect(image, units="counts", calibration_cps_per_mbq=30.0, duration_s=100.0)
    assert any("outside the plausible" in w for w in result.warnings)


def test_values_time_follows_decay_correction(tmp_path):
    datasets = hermes_pt_like(np.ones((2, 3, 3)))
    for ds in datasets:
        ds.DecayCorrection = "ADMIN"
    write_series(datasets, tmp_path / "pt")
    meta = dicom.read_metadata(tmp_path / "pt")
    assert values_time(meta) == meta.administered_at == datetime(2019, 3, 4, 9, 30)
    assert any("decay-corrected to the administration" in w for w in meta.warnings)
    assert values_time(meta.with_value("decay_correction", "START", "test")) == meta.acquired_at
    assert math.isclose(quantify_spect(sitk.Image(2, 2, 2, sitk.sitkFloat64), units="bq_per_ml",
                                       value_time=meta.administered_at,
                                       reference_time=meta.administered_at).decay_factor, 1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels_are_an_error_naming_the_image(bad):
    arr = np.full((3, 4, 5), 100.0)
    arr[1, 2, 3] = bad
    image = sitk.GetImageFromArray(arr)
    with pytest.raises(PhysicsError, match="c1/spect_24h: the SPECT image has 1 NaN or infinite voxels"):
        quantify_spect(image, units="bq_per_ml", name="c1/spect_24h")
    with pytest.raises(PhysicsError, match="c1/spect_24h"):
        quantify_spect(image, units="counts", calibration_cps_per_mbq=5.7, duration_s=100.0, name="c1/spect_24h")
