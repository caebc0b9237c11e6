"""Generated DICOM SEG files (pydicom): BINARY (1 bit, packed) or FRACTIONAL (8 bit), frames only where a
segment is present, in shuffled order, as real SEGs often come."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def seg_dataset(truth: dict[str, np.ndarray], *, spacing=(0.9, 0.8, 2.5), origin=(-20.0, -15.0, 40.0),
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
