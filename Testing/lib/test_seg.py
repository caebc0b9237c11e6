"""DICOM SEG in (io/seg.py): pydicom's own SEG test file, and generated multi-frame SEGs whose frames come
sparse and shuffled, checked voxel by voxel against the truth they were made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from LuDoseResponseLib.errors import DicomError, GeometryError
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


def _seg_dataset(truth: dict[str, np.ndarray], *, spacing=(0.9, 0.8, 2.5), origin=(-20.0, -15.0, 40.0),
                 fractional: bool = False, seed: int = 0) -> Dataset:
    """A SEG of ``truth`` (label → [z, y, x] array): only planes where a segment is present, shuffled."""
    rng = np.random.default_rng(seed)
    frames, items = [], []
    for number, volume in enumerate(truth.values(), start=1):
        for z in np.flatnonzero(volume.reshape(volume.shape[0], -1).any(axis=1)):
            frames.append((number, int(z), volume[z]))
    rng.shuffle(frames)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.FrameOfReferenceUID = "SEG", generate_uid()
    ds.SegmentationType = "FRACTIONAL" if fractional else "BINARY"
    segs = []
    for number, label in enumerate(truth, start=1):
        s = Dataset()
        s.SegmentNumber, s.SegmentLabel = number, label
        segs.append(s)
    ds.SegmentSequence = DicomSequence(segs)
    any_volume = next(iter(truth.values()))
    ds.Rows, ds.Columns = any_volume.shape[1], any_volume.shape[2]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [spacing[1], spacing[0]]
    measures.SpacingBetweenSlices = spacing[2]
    measures.SliceThickness = spacing[2]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    for number, z, _ in frames:
        item, pos, ident = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [origin[0], origin[1], origin[2] + z * spacing[2]]
        ident.ReferencedSegmentNumber = number
        item.PlanePositionSequence = DicomSequence([pos])
        item.SegmentIdentificationSequence = DicomSequence([ident])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    stack = np.stack([f for _, _, f in frames])
    if fractional:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.MaximumFractionalValue = 255
        ds.PixelData = np.rint(stack * 255).astype(np.uint8).tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
        packed = np.packbits(stack.astype(np.uint8).ravel(), bitorder="little").tobytes()
        ds.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    return ds


def _truth():
    z, y, x = np.mgrid[0:9, 0:13, 0:11]
    tumour = ((x - 5) ** 2 + (y - 6) ** 2 + 2 * (z - 4) ** 2 <= 12).astype(np.uint8)
    kidney = ((x >= 1) & (x <= 3) & (y >= 2) & (y <= 9) & (z >= 6)).astype(np.uint8)
    return {"T1": tumour, "Kidney_L": kidney}


def test_generated_binary_seg_shuffled_sparse_frames(tmp_path):
    truth = _truth()
    path = tmp_path / "seg.dcm"
    _seg_dataset(truth, seed=3).save_as(path, enforce_file_format=True)
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
    _seg_dataset(truth, fractional=True).save_as(path, enforce_file_format=True)
    segment = read_seg(path).segments["T1"]
    fraction = sitk.GetArrayFromImage(segment.fraction)
    first = int(np.flatnonzero(truth["T1"].reshape(9, -1).any(axis=1))[0])
    expected = truth["T1"][first:first + fraction.shape[0]]
    assert np.allclose(fraction, np.rint(expected * 255) / 255, atol=1e-7)
    assert np.array_equal(sitk.GetArrayFromImage(segment.mask), (expected >= 0.5).astype(np.uint8))


def test_bad_seg_files(tmp_path):
    ds = _seg_dataset(_truth())
    ds.PixelData = ds.PixelData[:-4]
    ds.save_as(tmp_path / "short.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="truncated"):
        read_seg(tmp_path / "short.dcm")
    ds = _seg_dataset(_truth())
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] += 1.0
    ds.save_as(tmp_path / "lattice.dcm", enforce_file_format=True)
    with pytest.raises(GeometryError, match="multiples of the slice spacing"):
        read_seg(tmp_path / "lattice.dcm")
    ds = _seg_dataset(_truth())
    ds.SegmentSequence[1].SegmentLabel = "T1"
    ds.save_as(tmp_path / "dup.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="more than once"):
        read_seg(tmp_path / "dup.dcm")
    ds = _seg_dataset(_truth())
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    ds.save_as(tmp_path / "nomeasures.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="PixelMeasuresSequence"):
        read_seg(tmp_path / "nomeasures.dcm")
    with pytest.raises(DicomError, match="not a DICOM Segmentation"):
        read_seg(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm")
