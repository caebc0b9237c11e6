"""DICOM metadata: times, durations, activity, units and their sources, per vendor layout and
for broken variants. Expected values are what the factory wrote (e.g. 48 views × 15 s = 720 s)."""

from __future__ import annotations

import json
from datetime import date, datetime, time

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import (
    ct_slices,
    ge_counts_like,
    hermes_pt_like,
    philips_like,
    save,
    set_raw,
    siemens_xspect_like,
    write_series,
)
from pydicom.dataset import Dataset

from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.dicom.tags import parse_da, parse_dt, parse_tm


def _meta(ds, tmp_path, name="x.dcm"):
    return dicom.read_metadata(save(ds, tmp_path / name))


def _warned(meta, *fragments) -> bool:
    return any(all(f in w for f in fragments) for w in meta.warnings)


def test_siemens_like(tmp_path, nm_values):
    m = _meta(siemens_xspect_like(nm_values, total_dose_bq=7.4e9), tmp_path)
    assert m.modality == "NM" and m.units == "bq_per_ml"
    assert m.acquired_at == datetime(2019, 3, 5, 10, 2, 15)
    assert m.sources["acquired_at"] == "AcquisitionDate (0008,0022) + AcquisitionTime (0008,0032)"
    assert m.duration_s == 720.0
    assert "RotationInformationSequence" in m.sources["duration_s"]
    assert m.administered_at == datetime(2019, 3, 4, 9, 30)
    assert "RadiopharmaceuticalStartDateTime (0018,1078)" in m.sources["administered_at"]
    assert m.activity_mbq == pytest.approx(7400.0, rel=1e-12)
    assert m.sources["activity_mbq"].endswith("[Bq]")
    assert m.hours_since_administration == pytest.approx(24 + 32 / 60 + 15 / 3600, rel=1e-12)
    assert m.half_life_h == pytest.approx(6.647 * 24, rel=1e-9)
    assert m.warnings == ()


def test_ge_like_time_only_injection_is_not_completed_with_a_guessed_date(tmp_path, nm_values):
    m = _meta(ge_counts_like(nm_values), tmp_path)
    assert m.administered_at is None and m.hours_since_administration is None
    assert _warned(m, "RadiopharmaceuticalStartTime (0018,1072)", "without a date", "manifest")
    assert m.units == "counts" and _warned(m, "taken as counts")
    assert m.duration_s == 2 * 30 * 20.0  # two rotations of 30 views × 20 s
    assert m.activity_mbq == pytest.approx(7400.0)


def test_philips_like(tmp_path, nm_values):
    m = _meta(philips_like(nm_values.astype(np.uint16)), tmp_path)
    assert m.acquired_at == datetime(2019, 3, 6, 11, 5)
    assert m.sources["acquired_at"] == "AcquisitionDateTime (0008,002A)"
    assert m.duration_s == 32 * 25.0 and "top level" in m.sources["duration_s"]
    assert m.units == "bq_per_ml" and "RealWorldValueMappingSequence" in m.sources["units"]
    assert m.activity_mbq == pytest.approx(7350.0)


def test_pt_style(tmp_path, nm_values):
    write_series(hermes_pt_like(nm_values), tmp_path / "pt")
    m = dicom.read_metadata(tmp_path / "pt")
    assert m.modality == "PT" and m.units == "bq_per_ml" and m.decay_correction == "START"
    assert m.duration_s == 1800.0 and "whole frame" in m.sources["duration_s"]
    assert m.n_files == 4 and len(m.sop_instance_uids) == 4
    assert m.hours_since_administration == pytest.approx(4 * 24 + 40 / 60)


def test_ct(tmp_path):
    write_series(ct_slices(np.zeros((3, 4, 4))), tmp_path / "ct")
    m = dicom.read_metadata(tmp_path / "ct")
    assert m.units == "hu" and m.duration_s is None and m.activity_mbq is None
    assert not _warned(m, "Radiopharmaceutical")  # CT carries none, and that is fine


def test_no_acquisition_time_falls_back_to_series_then_content_with_warning(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    del ds.AcquisitionDate, ds.AcquisitionTime
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.acquired_at == datetime(2019, 3, 5, 10, 35)
    assert "SeriesDate" in m.sources["acquired_at"]
    assert _warned(m, "acquisition start taken from SeriesDate (0008,0021)")
    del ds.SeriesDate, ds.SeriesTime
    m = _meta(ds, tmp_path, "b.dcm")
    assert m.acquired_at == datetime(2019, 3, 5, 10, 35, 10)
    assert _warned(m, "ContentDate (0008,0023)")
    del ds.ContentDate, ds.ContentTime
    m = _meta(ds, tmp_path, "c.dcm")
    assert m.acquired_at is None and m.hours_since_administration is None
    assert _warned(m, "no acquisition date and time", "acquired_at")
    assert "acquired_at" not in m.sources


def test_acquisition_time_without_date_is_not_combined_with_another_date(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    del ds.AcquisitionDate
    m = _meta(ds, tmp_path)
    assert m.acquired_at == datetime(2019, 3, 5, 10, 35)  # SeriesDate + SeriesTime, not 10:02:15
    assert _warned(m, "AcquisitionTime (0008,0032) is given without AcquisitionDate (0008,0022)")


def test_invalid_time_value_is_reported(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    with pytest.warns(UserWarning, match="Invalid value for VR TM"):  # pydicom agrees it is invalid
        ds.AcquisitionTime = "25:99"
    m = _meta(ds, tmp_path)
    assert m.sources["acquired_at"].startswith("SeriesDate")
    assert _warned(m, "invalid value '25:99'")


def test_dose_in_mbq_is_read_as_mbq_with_a_warning(tmp_path, nm_values):
    m = _meta(siemens_xspect_like(nm_values, total_dose_bq=7400.0), tmp_path)
    assert m.activity_mbq == 7400.0 and m.sources["activity_mbq"].endswith("[MBq]")
    assert _warned(m, "RadionuclideTotalDose (0018,1074) = 7400", "read as MBq")


@pytest.mark.parametrize("value", [0.0, 3e5, 1e12])
def test_implausible_dose_is_not_used(tmp_path, value, nm_values):
    m = _meta(siemens_xspect_like(nm_values, total_dose_bq=value), tmp_path)
    assert m.activity_mbq is None
    assert _warned(m, "implausible both in Bq and in MBq")


def test_low_activity_in_bq_is_kept_with_a_range_warning(tmp_path, nm_values):
    m = _meta(siemens_xspect_like(nm_values, total_dose_bq=2.0e8), tmp_path)  # a 200 MBq phantom
    assert m.activity_mbq == pytest.approx(200.0)
    assert _warned(m, "outside the usual Lu-177 therapy range")


def test_missing_radiopharmaceutical_sequence(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    del ds.RadiopharmaceuticalInformationSequence
    m = _meta(ds, tmp_path)
    assert m.administered_at is None and m.activity_mbq is None
    assert _warned(m, "RadiopharmaceuticalInformationSequence (0054,0016) is absent")


def test_injection_after_acquisition_is_a_warning(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20190306093000"
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "093000"
    m = _meta(ds, tmp_path)
    assert m.hours_since_administration < 0
    assert _warned(m, "before the injection")


def test_start_time_contradicting_start_datetime(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "101500"
    m = _meta(ds, tmp_path)
    assert m.administered_at == datetime(2019, 3, 4, 9, 30)
    assert _warned(m, "contradicts")


def test_other_nuclide_half_life_is_a_warning(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife = "21624.12"  # Tc-99m
    assert _warned(_meta(ds, tmp_path), "is not Lu-177's")


def test_duration_rules_and_contradiction(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.AcquisitionDuration = 900.0
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.duration_s == 720.0 and _warned(m, "AcquisitionDuration (0018,9073) = 900 s contradicts")
    del ds.RotationInformationSequence
    m = _meta(ds, tmp_path, "b.dcm")
    assert m.duration_s == 900.0 and m.sources["duration_s"] == "AcquisitionDuration (0018,9073)"
    del ds.AcquisitionDuration
    ds.ActualFrameDuration = 15000  # per view, but the number of views is unknown
    m = _meta(ds, tmp_path, "c.dcm")
    assert m.duration_s is None and _warned(m, "acquisition duration unknown")


def test_duration_in_wrong_unit_is_flagged(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RotationInformationSequence[0].ActualFrameDuration = 15  # seconds written where ms belong
    m = _meta(ds, tmp_path)
    assert m.duration_s == pytest.approx(0.72)
    assert _warned(m, "outside the plausible")


def test_units_rules(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.Units = "GML"
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.units is None and _warned(m, "Units (0054,1001) = 'GML'")
    ds = philips_like(nm_values.astype(np.uint16))
    ds.Units = "BQML"  # BQML with RescaleSlope 2 vs a Bq/ml mapping with slope 0.37: contradictory
    m = _meta(ds, tmp_path, "b.dcm")
    assert m.units == "bq_per_ml" and _warned(m, "give different Bq/mL")
    ds = philips_like(nm_values.astype(np.uint16))
    ds.RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "kBq/ml"
    m = _meta(ds, tmp_path, "c.dcm")
    assert m.units == "bq_per_ml" and "kBq/ml" in m.sources["units"]


def test_kbq_mapping_is_scaled_to_bq(tmp_path):
    ds = philips_like(np.full((4, 5, 6), 10, dtype=np.uint16), rwvm_slope=0.5)
    ds.RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "kBq/ml"
    volume = dicom.read_volume(save(ds, tmp_path / "k.dcm"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), 10 * 0.5 * 1e3)


def test_to_dict_is_flat_json(tmp_path, nm_values):
    d = _meta(ge_counts_like(nm_values), tmp_path).to_dict()
    text = json.dumps(d, allow_nan=False)
    for key in ("modality", "patient_id", "series_uid", "acquired_at", "duration_s", "administered_at",
                "activity_mbq", "hours_since_administration", "units", "size", "spacing_mm", "origin_mm",
                "frame_of_reference_uid", "sources", "warnings"):
        assert key in d
    assert d["acquired_at"] == "2019-03-05T09:50:00" and d["administered_at"] is None
    assert isinstance(d["size"], list) and all(isinstance(v, int) for v in d["size"])
    assert "sop_instance_uids" not in text


def test_parsers():
    assert parse_da("20190305") == date(2019, 3, 5) and parse_da("2019.03.05") == date(2019, 3, 5)
    assert parse_da("20190230") is None and parse_da("March") is None
    assert parse_tm("0930") == time(9, 30) and parse_tm("093000.5") == time(9, 30, 0, 500000)
    assert parse_tm("09:30:15") == time(9, 30, 15) and parse_tm("235960") == time(23, 59, 59)
    assert parse_tm("2561") is None
    assert parse_dt("20190304093000.000000+0100") == (datetime(2019, 3, 4, 9, 30), "+0100")
    assert parse_dt("201903040930") == (datetime(2019, 3, 4, 9, 30), None)
    assert parse_dt("20190304") == (None, None)  # a date alone is not a start time


def test_acquisition_datetime_contradicting_date_and_time(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.AcquisitionDateTime = "20190305110215"  # one hour after AcquisitionDate + AcquisitionTime
    m = _meta(ds, tmp_path)
    assert m.acquired_at == datetime(2019, 3, 5, 11, 2, 15)
    assert _warned(m, "AcquisitionDateTime (0008,002A) 2019-03-05T11:02:15 contradicts")


def test_utc_offsets_are_reported_in_the_sources(tmp_path, nm_values):
    ds = philips_like(nm_values.astype(np.uint16))
    ds.AcquisitionDateTime = "20190306110500+0100"
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20190304093000+0100"
    m = _meta(ds, tmp_path)
    assert m.acquired_at == datetime(2019, 3, 6, 11, 5) and m.administered_at == datetime(2019, 3, 4, 9, 30)
    assert "UTC offset +0100 dropped" in m.sources["acquired_at"]
    assert "UTC offset +0100 dropped" in m.sources["administered_at"]


@pytest.mark.parametrize("slope", ["0", "-2", "abc", "nan", "1\\2"])
def test_unusable_rescale_slope_is_never_read_as_one(tmp_path, slope, nm_values):
    """A present but unusable RescaleSlope must not silently become the identity (that would be stored values
    read as Bq/mL: here 32000 instead of 100)."""
    ds = siemens_xspect_like(nm_values)
    set_raw(ds, "RescaleSlope", slope)
    m = _meta(ds, tmp_path)
    assert m.units is None and "units" not in m.sources
    assert _warned(m, "x.dcm", "RescaleSlope (0028,1053)", repr(slope) if "\\" not in slope else "RescaleSlope")


def test_unusable_rescale_intercept_and_modality_lut(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    set_raw(ds, "RescaleIntercept", "abc")
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.units is None and _warned(m, "a.dcm", "RescaleIntercept (0028,1052) = 'abc'")
    ds = siemens_xspect_like(nm_values)
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.ModalityLUTSequence = [Dataset()]
    m = _meta(ds, tmp_path, "b.dcm")
    assert m.units is None and _warned(m, "b.dcm", "ModalityLUTSequence (0028,3000)")


def test_real_world_mapping_on_stored_values_survives_a_broken_rescale(tmp_path):
    """PS3.3 C.7.6.16.2.11: the real-world mapping applies to stored values, so the rescale is not needed."""
    ds = philips_like(np.full((4, 5, 6), 10, dtype=np.uint16), rwvm_slope=0.5)
    set_raw(ds, "RescaleSlope", "abc")
    volume = dicom.read_volume(save(ds, tmp_path / "p.dcm"))
    assert volume.metadata.units == "bq_per_ml"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), 10 * 0.5)


def test_unusable_real_world_slope_is_ignored_with_a_warning(tmp_path, nm_values):
    ds = philips_like(nm_values.astype(np.uint16))
    ds.RealWorldValueMappingSequence[0].RealWorldValueSlope = 0.0
    m = _meta(ds, tmp_path)
    assert m.units == "counts" and m.sources["units"].startswith("Units (0054,1001) CNTS")
    assert _warned(m, "RealWorldValueMappingSequence[0] has no usable RealWorldValueSlope")


def test_daylight_saving_change_between_injection_and_scan_is_a_warning(tmp_path, nm_values):
    """Injection 2019-03-29 09:30 CET (+0100), scan 2019-04-01 11:05 CEST (+0200): the clocks are 73 h 35 min
    apart, the true elapsed time is 72 h 35 min (08:30 UTC to 09:05 UTC three days later)."""
    ds = philips_like(nm_values.astype(np.uint16))
    ds.AcquisitionDateTime = "20190401110500+0200"
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20190329093000+0100"
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.hours_since_administration == pytest.approx(73 + 35 / 60, rel=1e-12)  # local clock times, as documented
    assert _warned(m, "a.dcm", "UTC offset (+2 h) differs from the injection's (+1 h)", "true elapsed time is 72.58 h",
                   "acquired_at = 2019-04-01T10:05:00")
    # the classic tags with TimezoneOffsetFromUTC (0008,0201) and an offset-free start DT are on one clock
    ds = siemens_xspect_like(nm_values)
    ds.TimezoneOffsetFromUTC = "+0100"
    assert not _warned(_meta(ds, tmp_path, "b.dcm"), "UTC offset")
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20190304093000-0500"
    assert _warned(_meta(ds, tmp_path, "c.dcm"), "UTC offset (+1 h) differs from the injection's (-5 h)")


def test_start_datetime_with_only_a_date_takes_the_time_of_the_same_item(tmp_path, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20190304"
    m = _meta(ds, tmp_path, "a.dcm")
    assert m.administered_at == datetime(2019, 3, 4, 9, 30)
    assert "(date only) + RadiopharmaceuticalStartTime (0018,1072)" in m.sources["administered_at"]
    assert _warned(m, "a.dcm", "has no time of day")
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime
    m = _meta(ds, tmp_path, "b.dcm")
    assert m.administered_at is None
    assert _warned(m, "RadiopharmaceuticalStartDateTime (0018,1078) has no time of day '20190304'")


def test_a_rotation_without_duration_spoils_the_sum(tmp_path, nm_values):
    """Two rotations of 30 views × 20 s, one with ActualFrameDuration 0: not 600 s, but unknown."""
    ds = ge_counts_like(nm_values.astype(np.uint16))
    ds.RotationInformationSequence[1].ActualFrameDuration = 0
    m = _meta(ds, tmp_path)
    assert m.duration_s is None and "duration_s" not in m.sources
    assert _warned(m, "an item of RotationInformationSequence (0054,0052) lacks a positive")
