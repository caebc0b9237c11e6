"""DICOM reading: geometry and pixel values against independent readers.

- CT and PT slice stacks: SimpleITK's ImageSeriesReader (GDCM), which sorts and places slices
  by its own code.
- NM multi-frame: plain pydicom arithmetic from the raw tags, P = IPP + i·Δcol·row + j·Δrow·col
  + f·SpacingBetweenSlices·(row × col) for frame f (PS3.3 C.7.6.2.1.1, C.8.4.15). Stored values
  encode their own (i, j, f), so every voxel's position and value are checked together.
"""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import (
    StudyIds,
    ct_slices,
    gdcm_jpeg_lossless,
    ge_counts_like,
    hermes_pt_like,
    philips_like,
    save,
    set_raw,
    siemens_xspect_like,
    write_series,
)

from LuDoseResponseLib.errors import DicomError, GeometryError
from LuDoseResponseLib.io import dicom

NF, NR, NC = 7, 9, 11  # frames, rows, columns: all different, so any axis swap shows


def _index_pattern() -> np.ndarray:
    """Stored values that encode (i, j, f): value = 1 + i + NC·j + NC·NR·f (fits uint16)."""
    f, j, i = np.meshgrid(np.arange(NF), np.arange(NR), np.arange(NC), indexing="ij")
    return (1 + i + NC * j + NC * NR * f).astype(np.uint16)


def _decode(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.rint(stored).astype(int) - 1
    return v % NC, (v // NC) % NR, v // (NC * NR)


def _pydicom_point(ds: pydicom.Dataset, i, j, f) -> np.ndarray:
    """Independent placement of stored voxel (i, j, f) from the raw NM tags."""
    plane = ds.DetectorInformationSequence[0] if "DetectorInformationSequence" in ds else ds
    ipp = np.array([float(v) for v in plane.ImagePositionPatient])
    iop = np.array([float(v) for v in plane.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in ds.PixelSpacing)  # PixelSpacing = [row spacing, column spacing]
    sbs = float(ds.SpacingBetweenSlices)
    return (ipp[:, None] + np.outer(row, i * d_col) + np.outer(col, j * d_row)
            + np.outer(np.cross(row, col), f * sbs))


def _check_nm_against_pydicom(path, ds, mapping_slope: float, voxel_points) -> float:
    volume = dicom.read_volume(path)
    values = sitk.GetArrayFromImage(volume.image)
    i, j, f = _decode(values / mapping_slope)
    expected = _pydicom_point(ds, i.ravel(), j.ravel(), f.ravel())
    error = np.max(np.abs(voxel_points(volume.image) - expected))
    # the reader normalises the DS-rounded direction cosines (10 digits) to unit length; over ~100 mm
    # that moves points by ~1e-9 mm. 1e-6 mm is far below any physical relevance.
    assert error < 1e-6
    # every stored voxel appears once
    assert sorted((f * NC * NR + j * NC + i).ravel().tolist()) == list(range(NF * NR * NC))
    direction = np.asarray(volume.image.GetDirection()).reshape(3, 3)
    assert np.linalg.det(direction) == pytest.approx(1.0, abs=1e-9)  # always right-handed
    return error


def test_siemens_like_bqml_geometry_and_values(tmp_path, voxel_points):
    conc = _index_pattern().astype(float) * 37.0  # Bq/mL, encodes the index
    ds = siemens_xspect_like(conc)
    path = save(ds, tmp_path / "siemens.dcm")
    _check_nm_against_pydicom(path, ds, 37.0, voxel_points)  # stored × slope = 37·index within slope/2 ≪ 37/2
    values = sitk.GetArrayFromImage(dicom.read_volume(path).image)
    back = pydicom.dcmread(path)
    np.testing.assert_array_equal(values, back.pixel_array.astype(float) * float(back.RescaleSlope))


def test_ge_like_negative_spacing_is_stacked_in_front(tmp_path, voxel_points):
    ds = ge_counts_like(_index_pattern())
    path = save(ds, tmp_path / "ge.dcm")
    _check_nm_against_pydicom(path, ds, 1.0, voxel_points)
    image = dicom.read_volume(path).image
    # the first stored frame lies at IPP, the others in front of it (towards −z here)
    assert image.GetOrigin()[2] == pytest.approx(120.0 - (NF - 1) * 4.42)
    assert image.GetSpacing()[2] == pytest.approx(4.42)


def test_ge_like_agrees_with_gdcm(tmp_path, voxel_points):
    """GDCM (SimpleITK) keeps the stored order with a −z axis; the same voxels land at the same points."""
    ds = ge_counts_like(_index_pattern())
    path = save(ds, tmp_path / "ge.dcm")
    ours = dicom.read_volume(path).image
    gdcm = sitk.ReadImage(str(path))
    ours_values = sitk.GetArrayFromImage(ours).ravel()
    gdcm_values = sitk.GetArrayFromImage(gdcm).astype(float).ravel()
    ours_at = dict(zip(ours_values.tolist(), voxel_points(ours).T.tolist(), strict=True))
    gdcm_at = dict(zip(gdcm_values.tolist(), voxel_points(gdcm).T.tolist(), strict=True))
    worst = max(np.max(np.abs(np.subtract(ours_at[v], gdcm_at[v]))) for v in ours_at)
    assert worst < 1e-9


def test_philips_like_top_level_oblique_geometry_and_rwvm_on_stored_values(tmp_path, voxel_points):
    ds = philips_like(_index_pattern(), rescale_slope=2.0, rwvm_slope=0.37)
    path = save(ds, tmp_path / "philips.dcm")
    _check_nm_against_pydicom(path, ds, 0.37, voxel_points)
    volume = dicom.read_volume(path)
    assert volume.metadata.units == "bq_per_ml"
    values = sitk.GetArrayFromImage(volume.image)
    # the real-world mapping applies to stored values (PS3.3 C.7.6.16.2.11), not to rescaled counts
    np.testing.assert_array_equal(np.sort(values.ravel()), np.sort(_index_pattern().ravel() * 0.37))


def test_ct_series_against_gdcm_in_shuffled_file_order(tmp_path, voxel_points):
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 2000, size=(12, 20, 24)).astype(float)
    angle = np.deg2rad(20.0)
    iop = (np.cos(angle), 0.0, -np.sin(angle), 0.0, 1.0, 0.0)  # oblique about y
    files = write_series(ct_slices(hu, iop=iop), tmp_path / "ct", seed=7)
    assert [f.name for f in files] != sorted(f.name for f in files)  # names unrelated to position
    ours = dicom.read_volume(tmp_path / "ct").image
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    gdcm = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(gdcm).astype(np.float32))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), hu.astype(np.float32))
    assert np.max(np.abs(voxel_points(ours) - voxel_points(gdcm))) < 1e-6
    np.testing.assert_allclose(ours.GetSpacing(), gdcm.GetSpacing(), atol=1e-9)


def test_ct_acquired_feet_first_is_ordered_by_position(tmp_path):
    hu = np.arange(5 * 6 * 7, dtype=float).reshape(5, 6, 7)
    slices = ct_slices(hu, slice_spacing=3.0)
    for ds in slices:  # InstanceNumber now runs opposite to position
        ds.InstanceNumber = 100 - ds.InstanceNumber
    write_series(slices, tmp_path / "ct")
    image = dicom.read_volume(tmp_path / "ct").image
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
    assert image.GetOrigin() == pytest.approx((-200.0, -180.0, -100.0))


def test_pt_style_spect_per_slice_rescale_against_gdcm(tmp_path, voxel_points):
    rng = np.random.default_rng(5)
    conc = rng.uniform(0, 2e5, size=(6, 10, 12)) * np.linspace(0.1, 3, 6)[:, None, None]
    datasets = hermes_pt_like(conc)
    assert len({ds.RescaleSlope for ds in datasets}) == 6
    write_series(datasets, tmp_path / "pt", seed=2)
    volume = dicom.read_volume(tmp_path / "pt")
    expected = np.stack([ds.pixel_array * float(ds.RescaleSlope) for ds in datasets])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), expected)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "pt")))
    gdcm = reader.Execute()
    np.testing.assert_allclose(sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(gdcm), rtol=1e-12)
    assert np.max(np.abs(voxel_points(volume.image) - voxel_points(gdcm))) < 1e-6
    assert volume.metadata.units == "bq_per_ml"


def test_mixed_folder_is_split_by_series_and_chosen_by_uid(tmp_path):
    ids = StudyIds()
    folder = tmp_path / "mixed"
    nm = siemens_xspect_like(_index_pattern() * 3.0, ids)
    save(nm, folder / "nm.dcm")
    save(ge_counts_like(_index_pattern(), ids), folder / "sub" / "ge.dcm")
    write_series(ct_slices(np.zeros((4, 8, 8)), ids), folder / "ct")
    write_series(hermes_pt_like(np.ones((3, 5, 5)), ids), folder, prefix="PT")
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "DICOMDIR_like").write_bytes(b"\x08\x00garbage")
    found = dicom.inspect(folder)
    assert sorted(m.modality for m in found) == ["CT", "NM", "NM", "PT"]
    with pytest.raises(DicomError, match="holds 4 series"):
        dicom.read_volume(folder)
    volume = dicom.read_volume(folder, series_uid=nm.SeriesInstanceUID)
    assert volume.metadata.series_uid == nm.SeriesInstanceUID
    with pytest.raises(DicomError, match="no series with SeriesInstanceUID"):
        dicom.read_metadata(folder, series_uid="1.2.3.4")


def test_missing_spacing_between_slices_falls_back_to_thickness_with_warning(tmp_path):
    ds = siemens_xspect_like(np.ones((NF, NR, NC)))
    del ds.SpacingBetweenSlices
    ds.SliceThickness = "5.5"
    meta = dicom.read_metadata(save(ds, tmp_path / "nm.dcm"))
    assert meta.spacing_mm[2] == 5.5
    assert any("SpacingBetweenSlices (0018,0088) is missing" in w for w in meta.warnings)


def test_no_slice_spacing_at_all_is_an_error_naming_file_and_tags(tmp_path):
    ds = siemens_xspect_like(np.ones((NF, NR, NC)))
    del ds.SpacingBetweenSlices
    del ds.SliceThickness
    path = save(ds, tmp_path / "nm.dcm")
    meta = dicom.read_metadata(path)
    assert meta.spacing_mm is None and meta.origin_mm is None
    assert meta.size == (NC, NR, NF)
    with pytest.raises(DicomError, match=r"nm\.dcm.*SpacingBetweenSlices \(0018,0088\).*SliceThickness"):
        dicom.read_volume(path)


def test_projections_are_not_read_as_a_volume(tmp_path):
    ds = siemens_xspect_like(np.ones((NF, NR, NC)))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    path = save(ds, tmp_path / "proj.dcm")
    with pytest.raises(DicomError, match=r"proj\.dcm.*ImageType \(0008,0008\).*'TOMO'"):
        dicom.read_volume(path)


def test_missing_position_is_an_error_naming_the_tag(tmp_path):
    ds = siemens_xspect_like(np.ones((NF, NR, NC)))
    del ds.DetectorInformationSequence[0].ImagePositionPatient
    with pytest.raises(DicomError, match="ImagePositionPatient \\(0020,0032\\)"):
        dicom.read_volume(save(ds, tmp_path / "nm.dcm"))


def test_ct_with_a_missing_slice_or_duplicate_is_refused(tmp_path):
    slices = ct_slices(np.zeros((6, 4, 4)))
    write_series(slices[:2] + slices[3:], tmp_path / "gap")
    with pytest.raises(GeometryError, match="slice spacing varies"):
        dicom.read_volume(tmp_path / "gap")
    dup = ct_slices(np.zeros((1, 4, 4)), series_uid=slices[0].SeriesInstanceUID)[0]
    write_series(slices + [dup], tmp_path / "dup")
    with pytest.raises(GeometryError, match="same slice position"):
        dicom.read_volume(tmp_path / "dup")


def test_jpeg_lossless_ct_is_decoded_with_gdcm(tmp_path, caplog):
    """PACS exports are often JPEG Lossless, which pydicom alone cannot decode here."""
    hu = np.random.default_rng(1).integers(-1000, 1500, size=(3, 16, 16)).astype(float)
    plain = write_series(ct_slices(hu), tmp_path / "plain")
    for src in plain:  # recompress each file with GDCM, keeping its header
        gdcm_jpeg_lossless(src, tmp_path / "jpeg" / src.name)
    sample = pydicom.dcmread(tmp_path / "jpeg" / plain[0].name)
    assert sample.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    with pytest.raises(Exception):  # noqa: B017 - pydicom has no decoder for it in this environment
        _ = sample.pixel_array
    with caplog.at_level(logging.INFO, logger="LuDoseResponseLib.io.dicom.read"):
        image = dicom.read_volume(tmp_path / "jpeg").image
    assert "decoded with GDCM" in caplog.text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu.astype(np.float32))


@pytest.mark.parametrize(("suffix", "kind"), [(".nrrd", "NRRD"), (".nii.gz", "NIfTI"), (".mha", "MetaImage")])
def test_image_files_keep_their_geometry(tmp_path, suffix, kind):
    arr = np.random.default_rng(0).random((5, 6, 7))
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((4.1, 4.2, 4.3))
    image.SetOrigin((-10.0, 20.0, -30.0))
    path = tmp_path / f"spect{suffix}"
    sitk.WriteImage(image, str(path))
    volume = dicom.read_volume(path)
    np.testing.assert_allclose(sitk.GetArrayFromImage(volume.image), arr)
    assert volume.metadata.spacing_mm == pytest.approx((4.1, 4.2, 4.3))
    assert volume.metadata.origin_mm == pytest.approx((-10.0, 20.0, -30.0))
    assert volume.metadata.units is None and volume.metadata.acquired_at is None
    assert any("not DICOM" in w for w in volume.metadata.warnings)
    assert volume.metadata.sources["spacing_mm"] == f"{kind} header"


def test_not_dicom_and_missing_paths_are_errors(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(DicomError, match="holds no DICOM image"):
        dicom.inspect(tmp_path)
    with pytest.raises(DicomError, match="no such file"):
        dicom.inspect(tmp_path / "absent")


def test_position_and_orientation_may_sit_in_different_places(tmp_path, voxel_points):
    ds = ge_counts_like(_index_pattern())
    ds.ImageOrientationPatient = ds.DetectorInformationSequence[0].ImageOrientationPatient
    del ds.DetectorInformationSequence[0].ImageOrientationPatient
    path = save(ds, tmp_path / "split.dcm")
    meta = dicom.read_metadata(path)
    assert meta.sources["origin_mm"].startswith("DetectorInformationSequence[0] > ImagePositionPatient")
    assert meta.sources["direction"] == "ImageOrientationPatient (0020,0037)"
    ds.DetectorInformationSequence[0].ImageOrientationPatient = ds.ImageOrientationPatient  # for _pydicom_point
    _check_nm_against_pydicom(path, ds, 1.0, voxel_points)


def test_truncated_pixel_data_is_an_error_naming_the_file(tmp_path):
    path = save(siemens_xspect_like(np.ones((NF, NR, NC))), tmp_path / "cut.dcm")
    data = path.read_bytes()
    path.write_bytes(data[:-200])
    assert dicom.read_metadata(path).size == (NC, NR, NF)  # the header is intact
    with pytest.raises(DicomError, match=r"cut\.dcm"):
        dicom.read_volume(path)


def test_a_file_gone_between_scan_and_read_is_named(tmp_path):
    from LuDoseResponseLib.io.dicom.geometry import series_layout
    from LuDoseResponseLib.io.dicom.read import read_pixels, scan

    files = write_series(ct_slices(np.zeros((3, 4, 4))), tmp_path / "ct")
    (series,) = scan(tmp_path / "ct")
    layout = series_layout(list(series.headers), list(series.files))
    files[1].unlink()
    with pytest.raises(DicomError, match=f"{files[1].name}: cannot be read"):
        read_pixels(series, layout)


def test_progress_is_reported_per_file(tmp_path):
    write_series(ct_slices(np.zeros((4, 3, 3))), tmp_path / "ct")
    seen: list[float] = []
    dicom.read_volume(tmp_path / "ct", progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]


def test_unusable_rescale_slope_is_an_error_naming_file_and_tag(tmp_path):
    ds = siemens_xspect_like(np.ones((NF, NR, NC)))
    set_raw(ds, "RescaleSlope", "0")
    with pytest.raises(DicomError, match=r"nm\.dcm: RescaleSlope \(0028,1053\) = '0' is not a finite number > 0"):
        dicom.read_volume(save(ds, tmp_path / "nm.dcm"))
    slices = ct_slices(np.zeros((3, 4, 4)))
    set_raw(slices[1], "RescaleIntercept", "-1024x")
    files = write_series(slices, tmp_path / "ct")
    with pytest.raises(DicomError, match=rf"{files[1].name}: RescaleIntercept \(0028,1052\)"):
        dicom.read_volume(tmp_path / "ct")


def test_position_in_two_places_that_disagree_is_a_warning(tmp_path, voxel_points):
    """NM: DetectorInformationSequence is used (as GDCM does); a different top-level copy is reported."""
    ds = ge_counts_like(_index_pattern())
    ds.ImagePositionPatient = ["-141", "-141", "100"]  # 20 mm from the detector sequence's 120
    path = save(ds, tmp_path / "two.dcm")
    meta = dicom.read_metadata(path)
    assert any("two.dcm: DetectorInformationSequence[0] > ImagePositionPatient (0020,0032) [-141.0, -141.0, 120.0] "
               "differs from top-level ImagePositionPatient" in w for w in meta.warnings), meta.warnings
    _check_nm_against_pydicom(path, ds, 1.0, voxel_points)  # placed by the detector sequence
    ds.ImagePositionPatient = ds.DetectorInformationSequence[0].ImagePositionPatient  # agreeing copies: silent
    assert not any("differs" in w for w in dicom.read_metadata(save(ds, tmp_path / "same.dcm")).warnings)
