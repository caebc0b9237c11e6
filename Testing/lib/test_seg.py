"""DICOM SEG in (io/seg.py): pydicom's own SEG test file, and generated multi-frame SEGs whose frames come
sparse and shuffled, checked voxel by voxel against the truth they were made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from seg_factory import seg_dataset

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError
from LuDoseResponseLib.io.seg import read_seg

PYDICOM_SEG = Path(pydicom.__file__).parent / "data" / "test_files" / "liver_1frame.dcm"


def test_pydicom_seg_file():
    seg = read_seg(PYDICOM_SEG)
    raw = pydicom.dcmread(PYDICOM_SEG)
    assert list(seg.segments) == [raw.SegmentSequence[0].SegmentLabel] == ["Liver"]
    # the file has one frame of pixels, no NumberOfFrames and 3 per-frame groups: said, not hidden
    assert "NumberOfFrames" not in raw and len(raw.PerFrameFunctionalGroupsSequence) == 3
    assert any("NumberOfFrames (0028,0008) is missing" in w for w in seg.warnings)
    mask = seg.segments["Liver"].mask
    shared = raw.SharedFunctionalGroupsSequence[0]
    ipp = [float(v) for v in raw.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient]
    assert np.allclose(mask.GetOrigin(), ipp, atol=1e-9)
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert np.allclose(mask.GetSpacing(), (spacing[1], spacing[0], 1.0), atol=1e-12)
    assert mask.GetSize() == (raw.Columns, raw.Rows, 1)
    # the bits, unpacked independently with numpy (little-endian bit order, PS3.5 8.1.1)
    bits = np.unpackbits(np.frombuffer(raw.PixelData, np.uint8), bitorder="little")[: raw.Rows * raw.Columns]
    assert np.array_equal(sitk.GetArrayFromImage(mask).ravel(), bits)
    assert bits.sum() > 0


def _truth():
    z, y, x = np.mgrid[0:9, 0:13, 0:11]
    tumour = ((x - 5) ** 2 + (y - 6) ** 2 + 2 * (z - 4) ** 2 <= 12).astype(np.uint8)
    kidney = ((x >= 1) & (x <= 3) & (y >= 2) & (y <= 9) & (z >= 6)).astype(np.uint8)
    return {"T1": tumour, "Kidney_L": kidney}


def test_generated_binary_seg_shuffled_sparse_frames(tmp_path):
    truth = _truth()
    path = tmp_path / "seg.dcm"
    seg_dataset(truth, seed=3).save_as(path, enforce_file_format=True)
    seg = read_seg(path)
    assert seg.segmentation_type == "BINARY" and set(seg.segments) == set(truth)
    # the grid spans the planes that hold any frame; map it back to the truth's planes by position
    for label, volume in truth.items():
        mask = seg.segments[label].mask
        array = sitk.GetArrayFromImage(mask)
        first_plane = int(round((mask.GetOrigin()[2] - 40.0) / 2.5))
        full = np.zeros_like(volume)
        full[first_plane:first_plane + array.shape[0]] = array
        assert np.array_equal(full, volume), label
        assert mask.GetSpacing() == pytest.approx((0.9, 0.8, 2.5))


def test_generated_fractional_seg(tmp_path):
    truth = {"T1": _truth()["T1"] * 0.75}
    path = tmp_path / "frac.dcm"
    seg_dataset(truth, fractional=True).save_as(path, enforce_file_format=True)
    segment = read_seg(path).segments["T1"]
    fraction = sitk.GetArrayFromImage(segment.fraction)
    first = int(np.flatnonzero(truth["T1"].reshape(9, -1).any(axis=1))[0])
    expected = truth["T1"][first:first + fraction.shape[0]]
    assert np.allclose(fraction, np.rint(expected * 255) / 255, atol=1e-7)
    assert np.array_equal(sitk.GetArrayFromImage(segment.mask), (expected >= 0.5).astype(np.uint8))


def test_bad_seg_files(tmp_path):
    ds = seg_dataset(_truth())
    ds.PixelData = ds.PixelData[:-4]
    ds.save_as(tmp_path / "short.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="truncated"):
        read_seg(tmp_path / "short.dcm")
    ds = seg_dataset(_truth())
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] += 1.0
    ds.save_as(tmp_path / "lattice.dcm", enforce_file_format=True)
    with pytest.raises(GeometryError, match="multiples of the slice spacing"):
        read_seg(tmp_path / "lattice.dcm")
    ds = seg_dataset(_truth())
    ds.SegmentSequence[1].SegmentLabel = "T1"
    ds.save_as(tmp_path / "dup.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="more than once"):
        read_seg(tmp_path / "dup.dcm")
    ds = seg_dataset(_truth())
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    ds.save_as(tmp_path / "nomeasures.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="PixelMeasuresSequence"):
        read_seg(tmp_path / "nomeasures.dcm")
    with pytest.raises(DicomError, match="not a DICOM Segmentation"):
        read_seg(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm")


def test_volumetry_reads_dicom_seg_and_refuses_rtstruct(tmp_path):
    from LuDoseResponseLib.response.volumetry import read_segmentation, segment_names

    truth = _truth()
    path = tmp_path / "seg.dcm"
    seg_dataset(truth, seed=5).save_as(path, enforce_file_format=True)
    assert segment_names(path) == ("T1", "Kidney_L")
    segmentation = read_segmentation(path)
    voxel_ml = 0.9 * 0.8 * 2.5 / 1000.0
    # overlapping-capable layers, one per segment; volumes = voxel count × voxel volume of the truth
    assert segmentation.volumes_ml() == pytest.approx({k: int(v.sum()) * voxel_ml for k, v in truth.items()})
    rtstruct = Path(pydicom.__file__).parent / "data" / "test_files" / "rtstruct.dcm"
    copy = tmp_path / "rs.dcm"
    ds = pydicom.dcmread(rtstruct, force=True)
    ds.save_as(copy, enforce_file_format=True)
    with pytest.raises(InputError, match="give the image series it was drawn on"):
        read_segmentation(copy)


@pytest.mark.parametrize("layout", ["ge_flipped", "philips_oblique"])
def test_write_seg_round_trip(tmp_path, layout):
    """write_seg → read_seg gives the same voxels at the same physical points (overlaps kept)."""
    from dicom_factory import StudyIds, ge_counts_like, philips_like, save

    from LuDoseResponseLib.io import dicom
    from LuDoseResponseLib.io.seg_write import write_seg

    stored = np.ones((6, 8, 10), dtype=np.uint16)
    make = ge_counts_like if layout == "ge_flipped" else philips_like
    source = dicom.read_volume(save(make(stored, StudyIds()), tmp_path / "nm.dcm"))
    rng = np.random.default_rng(8)
    masks = {}
    for name in ("T1", "T2", "Kidney_L"):
        array = (rng.random((6, 8, 10)) < 0.2).astype(np.uint8)
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(source.image)
        masks[name] = image
    path = write_seg(masks, tmp_path / "out" / "seg.dcm", source=source.metadata)
    back = read_seg(path)
    assert list(back.segments) == list(masks)
    for name, mask in masks.items():
        ours = back.segments[name].mask
        on_source = sitk.Resample(ours, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        assert np.array_equal(sitk.GetArrayFromImage(on_source), sitk.GetArrayFromImage(mask)), name
    raw = pydicom.dcmread(path)
    assert raw.StudyInstanceUID == source.metadata.study_uid
    assert raw.FrameOfReferenceUID == source.metadata.frame_of_reference_uid


def test_write_seg_bad_input(tmp_path):
    from dicom_factory import ge_counts_like, save

    from LuDoseResponseLib.io import dicom
    from LuDoseResponseLib.io.seg_write import write_seg

    source = dicom.read_volume(save(ge_counts_like(np.ones((3, 4, 5), dtype=np.uint16)), tmp_path / "nm.dcm"))
    empty = sitk.Image(source.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(source.image)
    with pytest.raises(InputError, match="'T1' is empty"):
        write_seg({"T1": empty}, tmp_path / "s.dcm", source=source.metadata)
    full = empty + 1
    other = sitk.Image(full)
    other.SetOrigin((1.0, 2.0, 3.0))
    with pytest.raises(GeometryError, match="'T2' is not on the grid"):
        write_seg({"T1": full, "T2": other}, tmp_path / "s.dcm", source=source.metadata)
    with pytest.raises(InputError, match="overwrite the input"):
        write_seg({"T1": full}, tmp_path / "nm.dcm", source=source.metadata)
    assert not (tmp_path / "s.dcm").exists()
