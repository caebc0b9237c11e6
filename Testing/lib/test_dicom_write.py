"""Writing outputs: RTDOSE read back by SimpleITK (GDCM) and pydicom, NRRD, atomic writes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ge_counts_like, hermes_pt_like, philips_like, save, write_series

from LuDoseResponseLib.errors import DicomError, InputError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.write import write_nrrd, write_rtdose


def _dose_like(image: sitk.Image, seed: int = 0) -> sitk.Image:
    rng = np.random.default_rng(seed)
    arr = rng.gamma(2.0, 5.0, size=sitk.GetArrayViewFromImage(image).shape)  # Gy, 0..~80
    dose = sitk.GetImageFromArray(arr)
    dose.CopyInformation(image)
    return dose


@pytest.mark.parametrize("layout", ["ge_flipped", "philips_oblique", "pt_stack"])
def test_rtdose_round_trip(tmp_path, layout, voxel_points):
    ids = StudyIds()
    stored = np.random.default_rng(1).integers(0, 400, size=(6, 8, 10))
    if layout == "ge_flipped":
        src = save(ge_counts_like(stored, ids), tmp_path / "spect.dcm")
    elif layout == "philips_oblique":
        src = save(philips_like(stored, ids), tmp_path / "spect.dcm")
    else:
        write_series(hermes_pt_like(stored * 10.0, ids), tmp_path / "pt")
        src = tmp_path / "pt"
    spect = dicom.read_volume(src)
    dose = _dose_like(spect.image)
    out = write_rtdose(dose, tmp_path / "out" / "dose.dcm", source=spect.metadata)

    ds = pydicom.dcmread(out)
    scaling = float(ds.DoseGridScaling)
    expected = sitk.GetArrayFromImage(dose)
    assert ds.SOPClassUID == pydicom.uid.RTDoseStorage and ds.Modality == "RTDOSE"
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert ds.StudyInstanceUID == ids.study_uid and ds.FrameOfReferenceUID == ids.frame_of_reference_uid
    assert ds.PatientID == ids.patient_id and ds.SeriesInstanceUID != spect.metadata.series_uid
    assert [r.ReferencedSOPInstanceUID for r in ds.SourceImageSequence] == list(spect.metadata.sop_instance_uids)
    # pydicom: stored × DoseGridScaling within half a quantisation step
    pyd = ds.pixel_array.astype(float) * scaling
    assert np.max(np.abs(pyd - expected)) <= 0.5 * scaling * (1 + 1e-9)
    # geometry, from the raw tags: IPP + i·Δc·row + j·Δr·col + GridFrameOffsetVector[k]·(row × col)
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in ds.PixelSpacing)
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    k, j, i = np.meshgrid(np.arange(ds.NumberOfFrames), np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    raw_points = (np.array([float(v) for v in ds.ImagePositionPatient])[None, :]
                  + np.outer(i.ravel() * d_col, row) + np.outer(j.ravel() * d_row, col)
                  + np.outer(offsets[k.ravel()], np.cross(row, col)))
    np.testing.assert_allclose(raw_points, voxel_points(dose).T, atol=1e-6)

    # SimpleITK (GDCM): same values at the same physical points
    gdcm = sitk.ReadImage(str(out))
    assert gdcm.GetSize() == dose.GetSize()
    np.testing.assert_allclose(voxel_points(gdcm).T, voxel_points(dose).T, atol=1e-6)
    assert np.max(np.abs(sitk.GetArrayFromImage(gdcm) - expected)) <= 0.5 * scaling * (1 + 1e-6)


def test_rtdose_of_a_left_handed_grid_is_written_right_handed(tmp_path, voxel_points):
    ids = StudyIds()
    spect = dicom.read_volume(save(ge_counts_like(np.ones((5, 6, 7)), ids), tmp_path / "s.dcm"))
    arr = np.arange(5 * 6 * 7, dtype=float).reshape(5, 6, 7)
    dose = sitk.GetImageFromArray(arr)
    dose.SetOrigin((10.0, 20.0, 30.0))
    dose.SetSpacing((2.0, 3.0, 4.0))
    dose.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # k runs towards −z
    back = sitk.ReadImage(str(write_rtdose(dose, tmp_path / "d.dcm", source=spect.metadata)))
    assert np.linalg.det(np.asarray(back.GetDirection()).reshape(3, 3)) == pytest.approx(1.0)
    scaling = float(pydicom.dcmread(tmp_path / "d.dcm").DoseGridScaling)
    for point, value in zip(voxel_points(dose).T, arr.ravel(), strict=True):
        index = back.TransformPhysicalPointToIndex(point.tolist())
        assert abs(back[index] - value) <= 0.5 * scaling * (1 + 1e-6)


def test_rtdose_refuses_bad_input_and_keeps_an_existing_file(tmp_path):
    spect = dicom.read_volume(save(ge_counts_like(np.ones((3, 4, 5))), tmp_path / "s.dcm"))
    good = _dose_like(spect.image)
    target = write_rtdose(good, tmp_path / "dose.dcm", source=spect.metadata)
    before = target.read_bytes()
    bad = sitk.Image(good)
    bad[1, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        write_rtdose(bad, target, source=spect.metadata)
    bad[1, 1, 1] = -5.0
    with pytest.raises(InputError, match="negative values"):
        write_rtdose(bad, target, source=spect.metadata)
    assert target.read_bytes() == before
    # no temporary left over (dose_rtplan.dcm is the RT Dose's companion RT Plan, see io/write.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dose.dcm", "dose_rtplan.dcm", "s.dcm"]
    no_frame = spect.metadata.with_value("frame_of_reference_uid", None, "test")
    with pytest.raises(DicomError, match="FrameOfReferenceUID"):
        write_rtdose(good, tmp_path / "x.dcm", source=no_frame)


def test_rtdose_of_a_zero_dose(tmp_path):
    spect = dicom.read_volume(save(ge_counts_like(np.ones((3, 4, 5))), tmp_path / "s.dcm"))
    zero = sitk.Image(spect.image) * 0.0
    ds = pydicom.dcmread(write_rtdose(zero, tmp_path / "z.dcm", source=spect.metadata))
    assert float(ds.DoseGridScaling) > 0 and not ds.pixel_array.any()


def test_nrrd_round_trip_and_atomic_replace(tmp_path, voxel_points):
    spect = dicom.read_volume(save(philips_like(np.ones((3, 4, 5), dtype=np.uint16)), tmp_path / "s.dcm"))
    dose = _dose_like(spect.image)
    path = write_nrrd(dose, tmp_path / "dose_cycle1.nrrd")
    path = write_nrrd(dose * 2.0, path)  # replaced in place
    back = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(dose) * 2.0)
    np.testing.assert_allclose(voxel_points(back).T, voxel_points(dose).T, atol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dose_cycle1.nrrd", "s.dcm"]
    with pytest.raises(InputError, match=".nrrd"):
        write_nrrd(dose, tmp_path / "dose.nii")


def test_outputs_never_overwrite_or_join_their_inputs(tmp_path):
    ids = StudyIds()
    src = save(ge_counts_like(np.ones((3, 4, 5)), ids), tmp_path / "s.dcm")
    spect = dicom.read_volume(src)
    before = src.read_bytes()
    with pytest.raises(InputError, match="would overwrite the input"):
        write_rtdose(_dose_like(spect.image), src, source=spect.metadata)
    assert src.read_bytes() == before
    write_series(hermes_pt_like(np.ones((3, 4, 5)), ids), tmp_path / "pt")
    pt = dicom.read_volume(tmp_path / "pt")
    with pytest.raises(InputError, match="inside the input DICOM folder"):
        write_rtdose(_dose_like(pt.image), tmp_path / "pt" / "dose" / "rd.dcm", source=pt.metadata)
    assert dicom.read_metadata(tmp_path / "pt").n_files == 3  # the folder still holds one series only
    nrrd = write_nrrd(spect.image, tmp_path / "spect.nrrd")
    with pytest.raises(InputError, match="would overwrite the input"):
        write_nrrd(spect.image * 2.0, nrrd, inputs=[nrrd])
