"""The semi-automatic SPECT segmentation out as DICOM SEG (dosimetry/segmentation_export.py): on a SPECT of
two blurred spheres (NM DICOM from dicom_factory), each segment read back by our SEG reader and by pydicom
(bits unpacked with numpy) is the segmentation's mask; the file passes dciodvfy with zero errors."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ge_counts_like, save
from scipy.ndimage import gaussian_filter
from test_dicom_conformance import _validate

from LuDoseResponseLib.dosimetry.segmentation import segment_tumour
from LuDoseResponseLib.dosimetry.segmentation_export import write_spect_segmentation
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.response.volumetry import read_segmentation


def test_spect_segmentation_as_seg(tmp_path):
    shape = (24, 28, 30)
    spect = dicom.read_volume(save(ge_counts_like(np.ones(shape, np.uint16), StudyIds()), tmp_path / "nm.dcm"))
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    centres = {"T1": (8, 10, 9), "T2": (15, 18, 21)}
    truth = np.zeros(shape)
    for (k, j, i), r in zip(centres.values(), (3.5, 2.5), strict=True):
        truth += 100.0 * (((x - i) ** 2 + (y - j) ** 2 + (z - k) ** 2) <= r * r)
    spacing = spect.image.GetSpacing()
    image = sitk.GetImageFromArray(gaussian_filter(truth, 10.0 / 2.3548 / np.asarray(spacing[::-1])))
    image.CopyInformation(spect.image)
    segs = {name: segment_tumour(image, psf_fwhm_mm=10.0, seed_lps_mm=image.TransformIndexToPhysicalPoint((i, j, k)))
            for name, (k, j, i) in centres.items()}
    out = write_spect_segmentation(segs, tmp_path / "out" / "voi.dcm", source=spect.metadata)
    errors, _ = _validate(out)
    assert errors == []
    raw = pydicom.dcmread(out)
    assert [s.SegmentAlgorithmType for s in raw.SegmentSequence] == ["SEMIAUTOMATIC"] * 2
    assert "PSF-model" in raw.SegmentSequence[0].SegmentAlgorithmName
    assert "% of peak" in raw.SegmentSequence[0].SegmentDescription
    back = read_segmentation(out)
    bits = np.unpackbits(np.frombuffer(raw.PixelData, np.uint8), bitorder="little")
    frames = bits[: raw.NumberOfFrames * raw.Rows * raw.Columns].reshape(raw.NumberOfFrames, raw.Rows, raw.Columns)
    for name, seg in segs.items():
        expected = sitk.GetArrayFromImage(seg.mask)
        assert expected.sum() > 10
        info = back.segment(name)
        layer = back.image if back.n_layers == 1 else sitk.VectorIndexSelectionCast(back.image, info.layer)
        on_spect = sitk.Resample(sitk.Cast(layer == info.label_value, sitk.sitkUInt8), spect.image,
                                 sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        assert np.array_equal(sitk.GetArrayFromImage(on_spect), expected), name
        number = next(s.SegmentNumber for s in raw.SegmentSequence if s.SegmentLabel == name)
        planes = [(f, item) for f, item in zip(frames, raw.PerFrameFunctionalGroupsSequence, strict=True)
                  if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == number]
        assert sum(int(f.sum()) for f, _ in planes) == int(expected.sum())    # pydicom's view: the same count
        assert back.volumes_ml()[name] == pytest.approx(seg.volume_ml, rel=1e-12)
