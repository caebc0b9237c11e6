"""RTSTRUCT out (io/rtstruct_write.py): exact voxel-edge contours. Checked against an independent even-odd
point-in-polygon test (matplotlib.path on SimpleITK's physical → index map, not our rasteriser), against
the masks they were made from (through our reader), and for the image each contour references (pydicom
on the CT files); conformance with dciodvfy is in test_dicom_conformance.py."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ct_slices, write_series
from matplotlib.path import Path as MplPath

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.rtstruct import rasterise_rtstruct, read_rtstruct
from LuDoseResponseLib.io.rtstruct_write import write_rtstruct

SHAPE = (9, 20, 24)   # z, y, x


@pytest.fixture
def ct(tmp_path):
    files = write_series(ct_slices(np.zeros(SHAPE), StudyIds()), tmp_path / "ct", seed=4)
    return dicom.read_volume(tmp_path / "ct"), files


def _masks(reference: sitk.Image) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    noise = (rng.random(SHAPE) > 0.55).astype(np.uint8)          # many diagonal contacts and tiny holes
    noise[:, :, :3] = 0
    z, y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1], 0:SHAPE[2]]
    ring = (((x - 12) ** 2 + (y - 10) ** 2 <= 49) & ((x - 12) ** 2 + (y - 10) ** 2 > 9) & (z >= 2) & (z <= 6))
    ring = ring.astype(np.uint8)
    island = np.zeros(SHAPE, np.uint8)
    island[3:5, 8:13, 9:16] = 1
    island[3:5, 9:12, 10:15] = 0
    island[3:5, 10, 12] = 1                                       # an island inside the hole
    return {"noise": noise, "ring": ring, "island": island}


def _image(array, reference):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _even_odd(contours_lps: list[np.ndarray], reference: sitk.Image) -> np.ndarray:
    """Independent rasterisation: voxel centres inside an odd number of contours (matplotlib.path)."""
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    jj, ii = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    centres = np.column_stack([ii.ravel(), jj.ravel()])
    for points in contours_lps:
        index = np.array([reference.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in points])
        k = int(round(index[0, 2]))
        assert np.allclose(index[:, 2], k, atol=1e-6)
        inside = MplPath(index[:, :2]).contains_points(centres).reshape(SHAPE[1], SHAPE[2])
        out[k] ^= inside.astype(np.uint8)
    return out


def test_contours_give_back_the_voxels(tmp_path, ct):
    volume, _ = ct
    masks = _masks(volume.image)
    out = write_rtstruct({n: _image(a, volume.image) for n, a in masks.items()}, tmp_path / "rs.dcm",
                         source=volume.metadata)
    raw = pydicom.dcmread(out)
    ss = read_rtstruct(out)
    assert ss.names == tuple(masks) and ss.frame_of_reference_uid == volume.metadata.frame_of_reference_uid
    assert ss.referenced_series_uids == (volume.metadata.series_uid,)
    rasterised = rasterise_rtstruct(ss, volume.image)
    for roi, (name, truth) in zip(ss.rois, masks.items(), strict=True):
        assert np.array_equal(_even_odd(list(roi.contours), volume.image), truth), name
        assert np.array_equal(sitk.GetArrayFromImage(rasterised[name].mask), truth), name
        # contour area × slice spacing is the voxel volume, exactly (edges on the voxel boundaries)
        assert rasterised[name].contour_volume_ml == pytest.approx(rasterised[name].volume_ml, rel=1e-9)
        assert rasterised[name].volume_ml == pytest.approx(truth.sum() * 0.9 * 0.8 * 2.5 / 1000, rel=1e-12)
    assert all(item.RTROIInterpretedType == "GTV" for item in raw.RTROIObservationsSequence)


def test_each_contour_references_its_slice(tmp_path, ct):
    volume, files = ct
    z_of = {}
    for f in files:
        ds = pydicom.dcmread(f)
        z_of[ds.SOPInstanceUID] = float(ds.ImagePositionPatient[2])
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:8, 5:9, 6:10] = 1
    out = write_rtstruct({"T1": _image(mask, volume.image)}, tmp_path / "rs.dcm", source=volume.metadata)
    raw = pydicom.dcmread(out)
    contours = raw.ROIContourSequence[0].ContourSequence
    assert len(contours) == 7
    for c in contours:
        z = float(c.ContourData[2])
        assert z_of[c.ContourImageSequence[0].ReferencedSOPInstanceUID] == pytest.approx(z, abs=1e-6)
    listed = raw.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert {i.ReferencedSOPInstanceUID for i in listed.ContourImageSequence} == set(z_of)


def test_bad_masks_refused(tmp_path, ct):
    volume, _ = ct
    with pytest.raises(InputError, match="empty"):
        write_rtstruct({"T1": _image(np.zeros(SHAPE, np.uint8), volume.image)}, tmp_path / "a.dcm",
                       source=volume.metadata)
    small = sitk.Image(5, 5, 5, sitk.sitkUInt8) + 1
    with pytest.raises(InputError, match="not the grid"):
        write_rtstruct({"T1": small}, tmp_path / "b.dcm", source=volume.metadata)
    assert not list(tmp_path.glob("*.dcm"))


def test_reference_by_frame_of_reference_prefers_the_ct(tmp_path):
    """A structure set that lists no series is placed by its frame of reference; in a SPECT/CT folder (the NM and
    the CT share it) that is the CT; two CTs in it are an error that lists them."""
    from dicom_factory import ge_counts_like, save

    from LuDoseResponseLib.io.rtstruct_reference import ImageReference, find_reference

    ids = StudyIds()
    write_series(ct_slices(np.zeros(SHAPE), ids), tmp_path / "study" / "ct")
    save(ge_counts_like(np.ones((4, 6, 8), np.uint16), ids), tmp_path / "study" / "nm.dcm")
    ct = dicom.read_volume(tmp_path / "study" / "ct")
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:5, 4:9, 5:11] = 1
    out = write_rtstruct({"T1": _image(mask, ct.image)}, tmp_path / "rs.dcm", source=ct.metadata)
    raw = pydicom.dcmread(out)
    del raw.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    raw.save_as(out)
    ss = read_rtstruct(out)
    assert ss.referenced_series_uids == ()
    found, how = find_reference(ss, [("study", ImageReference(tmp_path / "study"))])
    assert found.series_uid == ct.metadata.series_uid and "same frame of reference" in how
    write_series(ct_slices(np.zeros(SHAPE), ids), tmp_path / "study" / "ct2")
    with pytest.raises(InputError, match=r"holds 3 series in the structure set's frame of reference "
                                         r"\(CT .*, CT .*, NM .*\)"):
        find_reference(ss, [("study", ImageReference(tmp_path / "study"))])
