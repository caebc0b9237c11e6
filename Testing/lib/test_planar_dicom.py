"""Planar NM DICOM reading: views as detectors of one file or separate files, energy windows, times,
whole-body sweeps, and the errors for a missing view or window (files built with pydicom)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from dicom_factory import save
from planar_factory import LOWER, PEAK, UPPER, planar_nm_dataset

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.planar import read_conjugate_views, read_planar

WHEN = datetime(2019, 3, 4, 10, 30, 15)


def _views(names=("anterior", "posterior")):
    rng = np.random.default_rng(0)
    return {n: {w: rng.integers(0, 200, (6, 5)).astype(float) for w in ("peak", "lower", "upper")} for n in names}


def test_two_detectors_in_one_file(tmp_path):
    views = _views()
    path = save(planar_nm_dataset(views, pixel_mm=4.42, duration_s=600.0, acquired_at=WHEN), tmp_path / "wb.dcm")
    ant, post = read_conjugate_views(path)
    assert (ant.view, post.view) == ("anterior", "posterior")
    for got, name in ((ant, "anterior"), (post, "posterior")):
        np.testing.assert_array_equal(got.peak, views[name]["peak"])
        np.testing.assert_array_equal(got.lower, views[name]["lower"])
        np.testing.assert_array_equal(got.upper, views[name]["upper"])
        assert (got.peak_window.lower_kev, got.peak_window.upper_kev) == pytest.approx(PEAK)
        assert (got.lower_window.lower_kev, got.lower_window.upper_kev) == pytest.approx(LOWER)
        assert (got.upper_window.lower_kev, got.upper_window.upper_kev) == pytest.approx(UPPER)
        assert got.duration_s == 600.0 and got.pixel_mm == (4.42, 4.42) and got.acquired_at == WHEN
        assert got.shape == (6, 5) and got.notes == ()


def test_separate_files_and_detector_order_fallback(tmp_path):
    views = _views()
    a = save(planar_nm_dataset({"anterior": views["anterior"]}, pixel_mm=4.0, duration_s=300.0, acquired_at=WHEN),
             tmp_path / "ant.dcm")
    p = save(planar_nm_dataset({"posterior": views["posterior"]}, pixel_mm=4.0, duration_s=300.0, acquired_at=WHEN),
             tmp_path / "post.dcm")
    ant, post = read_conjugate_views(a, p)
    np.testing.assert_array_equal(post.peak, views["posterior"]["peak"])
    assert ant.duration_s == 300.0
    # without view codes, detector 1 is taken as anterior and 2 as posterior, and that is noted
    path = save(planar_nm_dataset(views, pixel_mm=4.0, duration_s=300.0, acquired_at=WHEN, view_codes=False),
                tmp_path / "nocode.dcm")
    ant, post = read_conjugate_views(path)
    np.testing.assert_array_equal(ant.peak, views["anterior"]["peak"])
    assert "detector 1 anterior" in ant.notes[0]


def test_whole_body_sweep_duration(tmp_path):
    path = save(planar_nm_dataset(_views(), pixel_mm=4.0, duration_s=0.0, acquired_at=WHEN,
                                  whole_body=(2.5, 1800.0)), tmp_path / "wb.dcm")
    ant, _ = read_conjugate_views(path)
    assert ant.scan_velocity_mm_per_s == 2.5 and ant.scan_length_mm == 1800.0
    assert ant.duration_s == pytest.approx(1800.0 / 2.5)


def test_missing_posterior_view(tmp_path):
    a = save(planar_nm_dataset({"anterior": _views()["anterior"]}, pixel_mm=4.0, duration_s=300.0,
                               acquired_at=WHEN), tmp_path / "ant.dcm")
    with pytest.raises(DicomError, match="no posterior view"):
        read_conjugate_views(a)
    a2 = save(planar_nm_dataset({"anterior": _views()["anterior"]}, pixel_mm=4.0, duration_s=300.0,
                                acquired_at=WHEN), tmp_path / "ant2.dcm")
    with pytest.raises(DicomError, match="ant2.dcm: holds a anterior view, but .*ant.dcm has one already"):
        read_conjugate_views(a, a2)


def test_no_photopeak_window_and_single_view_without_code(tmp_path):
    ds = planar_nm_dataset(_views(), pixel_mm=4.0, duration_s=300.0, acquired_at=WHEN)
    for item in ds.EnergyWindowInformationSequence:
        rng = item.EnergyWindowRangeSequence[0]
        rng.EnergyWindowLowerLimit, rng.EnergyWindowUpperLimit = 126.0, 154.0   # a Tc-99m window
    with pytest.raises(DicomError, match="no energy window contains the Lu-177 photopeak"):
        read_planar(save(ds, tmp_path / "tc.dcm"))
    single = planar_nm_dataset({"anterior": _views()["anterior"]}, pixel_mm=4.0, duration_s=300.0,
                               acquired_at=WHEN, view_codes=False)
    with pytest.raises(DicomError, match="cannot tell whether detector 1"):
        read_planar(save(single, tmp_path / "unknown.dcm"))
    single.SeriesDescription = "WB POST"
    assert list(read_planar(save(single, tmp_path / "post.dcm"))) == ["posterior"]
