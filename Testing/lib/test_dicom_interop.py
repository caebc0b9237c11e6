"""Reading others' DICOM (issue 13, reading items): RT Dose geometry and units, NM whole-body duration,
a note for each skipped non-image file.

The RT Dose, RT Structure Set and SR files are pydicom's own test files (not written by this
project); every value is compared with a plain pydicom computation from the raw tags:
P(i, j, k) = IPP + i·Δcol·row + j·Δrow·col + GridFrameOffsetVector[k]·(row × col) (PS3.3 C.8.8.3.2)
and dose = stored × DoseGridScaling (PS3.3 C.8.8.3.4).
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ct_slices, hermes_pt_like, save, siemens_xspect_like, write_series
from pydicom.data import get_testdata_file

from LuDoseResponseLib.errors import DicomError, GeometryError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.write import write_rtdose


def _pydicom_rtdose(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(voxel points (N, 3) in frame, row, column order; dose values (N,)) from the raw RT Dose tags."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in ds.PixelSpacing)
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    if offsets[0] != 0:  # z coordinates of an axial grid (PS3.3 C.8.8.3.2 b)
        offsets = offsets - ipp[2]
    k, j, i = np.meshgrid(np.arange(int(ds.NumberOfFrames)), np.arange(ds.Rows), np.arange(ds.Columns),
                          indexing="ij")
    points = (ipp + np.outer(i.ravel() * d_col, row) + np.outer(j.ravel() * d_row, col)
              + np.outer(offsets[k.ravel()], np.cross(row, col)))
    return points, ds.pixel_array.astype(float).ravel() * float(ds.DoseGridScaling)


def _check_against_pydicom(volume: dicom.Volume, ds: pydicom.Dataset, voxel_points) -> None:
    """Every voxel's value at its point equals pydicom's value at the same point (order-free)."""
    expected_points, expected_values = _pydicom_rtdose(ds)
    ours_points = voxel_points(volume.image).T
    ours_values = sitk.GetArrayFromImage(volume.image).ravel()
    key = np.lexsort(np.round(expected_points, 6).T)
    ours_key = np.lexsort(np.round(ours_points, 6).T)
    np.testing.assert_allclose(ours_points[ours_key], expected_points[key], atol=1e-6)
    np.testing.assert_array_equal(ours_values[ours_key], expected_values[key])


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm"])
def test_pydicom_rtdose_geometry_and_values(name, voxel_points):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    volume = dicom.read_volume(path)
    _check_against_pydicom(volume, ds, voxel_points)
    meta = volume.metadata
    assert meta.spacing_mm == (10.0, 10.0, 5.0) and meta.size == (10, 10, 15)
    assert meta.sources["spacing_mm"].startswith("PixelSpacing (0028,0030) + GridFrameOffsetVector (3004,000C)")
    # DoseUnits RELATIVE: not Gy, said so
    assert meta.units is None
    assert any("DoseUnits (3004,0002) is RELATIVE, not GY" in w for w in meta.warnings)
    (inspected,) = dicom.inspect(path)
    assert inspected.spacing_mm == meta.spacing_mm and inspected.origin_mm == meta.origin_mm


@pytest.mark.parametrize("variant", ["z coordinates", "decreasing"])
def test_rtdose_offset_variants_land_on_the_same_points(tmp_path, variant, voxel_points):
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    if variant == "z coordinates":  # PS3.3 C.8.8.3.2 b: the first value is the z of IPP
        ds.GridFrameOffsetVector = [f"{float(ds.ImagePositionPatient[2]) + v:.10g}" for v in offsets]
    else:
        ds.GridFrameOffsetVector = [f"{-v:.10g}" for v in offsets]
    path = tmp_path / "dose.dcm"
    ds.save_as(path)
    volume = dicom.read_volume(path)
    _check_against_pydicom(volume, ds, voxel_points)
    assert np.linalg.det(np.asarray(volume.image.GetDirection()).reshape(3, 3)) == pytest.approx(1.0)


def test_rtdose_with_offsets_that_do_not_fit_is_refused(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    ds.GridFrameOffsetVector = ds.GridFrameOffsetVector[:-1]
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(DicomError, match=r"short\.dcm: GridFrameOffsetVector \(3004,000C\) holds 14 value\(s\), "
                                         r"not NumberOfFrames \(0028,0008\) = 15"):
        dicom.read_volume(tmp_path / "short.dcm")
    with pytest.raises(DicomError, match="GridFrameOffsetVector"):  # pydicom's 1-frame file keeps 15 offsets
        dicom.read_volume(get_testdata_file("rtdose_1frame.dcm"))


@pytest.mark.parametrize("layout", ["nm", "pt"])
def test_our_rtdose_reads_back_in_gy(tmp_path, layout, voxel_points):
    ids = StudyIds()
    rng = np.random.default_rng(7)
    if layout == "nm":
        src = save(siemens_xspect_like(rng.uniform(0, 1e5, size=(5, 6, 7)), ids), tmp_path / "spect.dcm")
    else:
        write_series(hermes_pt_like(rng.uniform(0, 1e5, size=(5, 6, 7)), ids), tmp_path / "pt")
        src = tmp_path / "pt"
    spect = dicom.read_volume(src)
    dose = sitk.GetImageFromArray(rng.gamma(2.0, 5.0, size=(5, 6, 7)))
    dose.CopyInformation(spect.image)
    out = write_rtdose(dose, tmp_path / "out" / "dose.dcm", source=spect.metadata)
    back = dicom.read_volume(out)
    ds = pydicom.dcmread(out)
    _check_against_pydicom(back, ds, voxel_points)
    assert back.metadata.units == "gy"
    assert back.metadata.sources["units"] == "DoseGridScaling (3004,000E) [DoseUnits (3004,0002) GY]"
    scaling = float(ds.DoseGridScaling)
    assert np.max(np.abs(sitk.GetArrayFromImage(back.image) - sitk.GetArrayFromImage(dose))) <= 0.5 * scaling * (
        1 + 1e-9)
    np.testing.assert_allclose(voxel_points(back.image), voxel_points(dose), atol=1e-6)


def test_nm_whole_body_duration_from_actual_frame_duration(tmp_path):
    ds = siemens_xspect_like(np.ones((2, 8, 4)))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]
    del ds.RotationInformationSequence
    ds.ActualFrameDuration = 1_200_000  # ms: a 20-minute whole-body pass, ANT and POST at the same time
    path = save(ds, tmp_path / "wb.dcm")
    meta = dicom.read_metadata(path)
    assert meta.duration_s == float(pydicom.dcmread(path).ActualFrameDuration) / 1000.0
    assert meta.sources["duration_s"].startswith("ActualFrameDuration (0018,1242) (NM WHOLE BODY")
    with pytest.raises(DicomError, match="WHOLE BODY"):  # planar frames, not a volume
        dicom.read_volume(path)


def test_each_skipped_non_image_file_gets_one_note(tmp_path, caplog):
    hu = np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5)
    write_series(ct_slices(hu), tmp_path / "study")
    for name in ("rtstruct.dcm", "test-SR.dcm", "rtplan.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / "study" / name)
    with caplog.at_level("INFO", logger="LuDoseResponseLib.io.dicom.read"):
        volume = dicom.read_volume(tmp_path / "study")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), hu)
    notes = sorted(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    expected_kinds = {name: pydicom.uid.UID(pydicom.dcmread(get_testdata_file(name), force=True).SOPClassUID).name
                      for name in ("rtstruct.dcm", "test-SR.dcm", "rtplan.dcm")}
    assert len(notes) == 3
    for name, kind in expected_kinds.items():
        assert sum(f"{name}: skipped, not an image ({kind}" in n for n in notes) == 1, (name, notes)


def test_evenly_missing_slices_are_a_warning(tmp_path):
    """Every other CT slice removed still gives evenly spaced positions (2 × 2.5 mm): the volume is read as
    the files say, but SliceThickness 2.5 mm against 5 mm apart is reported."""
    hu = np.arange(6 * 4 * 5, dtype=float).reshape(6, 4, 5)
    slices = ct_slices(hu, slice_spacing=2.5)
    write_series(slices[::2], tmp_path / "ct")
    volume = dicom.read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), hu[::2])
    assert volume.metadata.spacing_mm[2] == pytest.approx(5.0)
    assert any("the slices are 5 mm apart but SliceThickness (0018,0050) is 2.5 mm" in w
               for w in volume.metadata.warnings)
    write_series(slices, tmp_path / "complete")
    assert not any("apart but SliceThickness" in w for w in dicom.read_metadata(tmp_path / "complete").warnings)


def _pydicom_data_file(name: str):
    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"pydicom's test file {name} is missing: install the test extra (pip install pydicom-data)")
    return path


def test_enhanced_ct_from_functional_groups():
    """pydicom's Enhanced CT (eCT_Supplemental.dcm: 2 frames, orientation (-1,0,0,0,1,0), frame 1 below frame 2,
    rescale only in PixelValueTransformationSequence) against a plain pydicom computation: frames ordered by
    IPP·(row × col), HU = stored × slope + intercept, P(i, j, k) = IPP_k + i·Δcol·row + j·Δrow·col."""
    path = _pydicom_data_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    d_row, d_col = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    row, col = iop[:3], iop[3:]
    ipp = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                    for f in ds.PerFrameFunctionalGroupsSequence])
    order = np.argsort(ipp @ np.cross(row, col))
    pvt = shared.PixelValueTransformationSequence[0]
    hu = ds.pixel_array[order].astype(float) * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    volume = dicom.read_volume(path)
    image = volume.image
    assert volume.metadata.units == "hu" and "PixelValueTransformationSequence" in volume.metadata.sources["units"]
    assert np.array_equal(sitk.GetArrayFromImage(image), hu)
    for k in range(2):
        for i, j in ((0, 0), (511, 0), (0, 511), (300, 17)):
            expected = ipp[order[k]] + i * d_col * row + j * d_row * col
            assert np.allclose(image.TransformIndexToPhysicalPoint((i, j, k)), expected, atol=1e-6)
    # the normal row × col is −z, and the file's first frame is the lower one: the frames are reversed
    assert order.tolist() == [1, 0] and ipp[0, 2] < ipp[1, 2]


def test_enhanced_objects_that_are_not_one_volume(tmp_path):
    ds = pydicom.dcmread(_pydicom_data_file("eCT_Supplemental.dcm"))
    second = ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    second.ImagePositionPatient = list(ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
                                       .ImagePositionPatient)
    ds.save_as(tmp_path / "two_stacks.dcm")
    with pytest.raises(GeometryError, match="two_stacks.dcm: frames 1 and 2 lie at the same position"):
        dicom.read_volume(tmp_path / "two_stacks.dcm")
    ds = pydicom.dcmread(_pydicom_data_file("eCT_Supplemental.dcm"))
    shared = ds.SharedFunctionalGroupsSequence[0]
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pvt = pydicom.Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1 + k, -1024, "US"
        item.PixelValueTransformationSequence = pydicom.Sequence([pvt])
    del shared.PixelValueTransformationSequence
    ds.save_as(tmp_path / "per_frame.dcm")
    with pytest.raises(DicomError, match="per_frame.dcm: the frames have different RescaleSlope"):
        dicom.read_volume(tmp_path / "per_frame.dcm")
    # pydicom's Enhanced MR test file is stripped of its functional groups: no geometry, and it says so
    with pytest.raises(DicomError, match="emri_small.dcm: no ImagePositionPatient"):
        dicom.read_volume(_pydicom_data_file("emri_small.dcm"))
