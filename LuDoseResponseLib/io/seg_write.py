"""DICOM Segmentation (SEG) out: tumour and organ masks as a BINARY SEG other tools can read.

PS3.3 A.51 (Segmentation IOD): one frame per segment and slice that holds the segment (empty
frames are left out, as the standard allows), 1 bit per pixel packed across frames, geometry in the
shared functional groups (Plane Orientation, Pixel Measures) and per frame (Plane Position, Segment
Identification, Frame Content with the dimension index values ReferencedSegmentNumber,
ImagePositionPatient). The SEG joins the source image's patient, study and frame of reference (it
does not reference the source's instances frame by frame: a grid resampled from the SPECT has no
source frame per plane). Checked with dicom3tools' ``dciodvfy`` (zero errors).

Segment codes (SNOMED CT, PS3.16 CID 7150/7151): a name beginning "Kidney" is category 123037004
"Anatomical Structure", type 64033007 "Kidney"; "Liver" 123037004 / 10200004 "Liver"; every other
segment is category 49755003 "Morphologically Altered Structure", type 108369006 "Neoplasm".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.files import atomic_path, refuse_to_overwrite_input
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.io.dicom_instance import copy_patient_and_study, new_instance, require_study_references
from LuDoseResponseLib.io.seg import SEG_SOP_CLASS

ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")
_ANATOMY = ("123037004", "SCT", "Anatomical Structure")
_CODES = {"kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
          "liver": (_ANATOMY, ("10200004", "SCT", "Liver"))}
_TUMOUR = (("49755003", "SCT", "Morphologically Altered Structure"), ("108369006", "SCT", "Neoplasm"))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _segment_item(number: int, name: str, algorithm_type: str, algorithm_name: str,
                  description: str | None = None) -> Dataset:
    category, kind = next((codes for key, codes in _CODES.items() if name.lower().startswith(key)), _TUMOUR)
    item = Dataset()
    item.SegmentNumber = number
    item.SegmentLabel = name[:64]
    if description:
        item.SegmentDescription = description[:64]
    item.SegmentAlgorithmType = algorithm_type
    if algorithm_type != "MANUAL":
        item.SegmentAlgorithmName = algorithm_name[:64]
    item.SegmentedPropertyCategoryCodeSequence = DicomSequence([_code(*category)])
    item.SegmentedPropertyTypeCodeSequence = DicomSequence([_code(*kind)])
    return item


def masks_on_one_grid(masks: Mapping[str, sitk.Image], *,
                      right_handed: bool = True) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    """The masks' common grid and each as a boolean array; InputError/GeometryError for an empty mask, an
    unnamed one or masks on different or left-handed grids."""
    if not masks:
        raise InputError("at least one mask is needed")
    reference = next(iter(masks.values()))
    arrays = {}
    for name, mask in masks.items():
        if not str(name).strip():
            raise InputError("every segment needs a non-empty name")
        if mask.GetDimension() != 3 or mask.GetSize() != reference.GetSize() \
                or not np.allclose(mask.GetSpacing(), reference.GetSpacing(), atol=1e-6) \
                or not np.allclose(mask.GetOrigin(), reference.GetOrigin(), atol=1e-4) \
                or not np.allclose(mask.GetDirection(), reference.GetDirection(), atol=1e-6):
            raise GeometryError(f"mask '{name}' is not on the grid of the first mask; resample the masks onto one "
                                "grid first")
        array = sitk.GetArrayFromImage(mask) != 0
        if not array.any():
            raise InputError(f"mask '{name}' is empty; a SEG segment needs at least one voxel")
        arrays[str(name)] = array
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    if right_handed and abs(float(np.cross(direction[:, 0], direction[:, 1]) @ direction[:, 2]) - 1.0) > 1e-6:
        raise GeometryError("the masks' grid is not right-handed and orthogonal; resample it first")
    return reference, arrays


def write_seg(masks: Mapping[str, sitk.Image], path: str | os.PathLike, *, source: SeriesMetadata,
              algorithm_type: str = "SEMIAUTOMATIC", algorithm_name: str = "LuDoseResponse SPECT segmentation",
              series_description: str = "Tumour segmentation (LuDoseResponse)", series_number: int = 910,
              descriptions: Mapping[str, str] | None = None) -> Path:
    """Write ``masks`` (name → binary image, all on one grid) as a BINARY DICOM SEG of ``source``'s study.

    ``descriptions`` (name → text, 64 characters at most) become each segment's SegmentDescription (0062,0006).
    """
    target = Path(path)
    refuse_to_overwrite_input(target, [Path(source.path)])
    if algorithm_type not in ALGORITHM_TYPES:
        raise InputError(f"algorithm_type must be one of {ALGORITHM_TYPES}, got {algorithm_type!r}")
    require_study_references(source, "a SEG")
    reference, arrays = masks_on_one_grid(masks)
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    sx, sy, sz = (float(v) for v in reference.GetSpacing())
    now = datetime.now()

    ds = new_instance(SEG_SOP_CLASS, "SEG", now)
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    copy_patient_and_study(ds, source)
    ds.SeriesNumber, ds.SeriesDescription = series_number, series_description
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = source.frame_of_reference_uid, ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel, ds.ContentDescription, ds.ContentCreatorName = "TUMOURS", series_description[:64], ""
    ds.SegmentationType = "BINARY"
    ds.SegmentSequence = DicomSequence([_segment_item(i, name, algorithm_type, algorithm_name,
                                                      (descriptions or {}).get(name))
                                        for i, name in enumerate(arrays, start=1)])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = reference.GetSize()[1], reference.GetSize()[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression = "00"
    orientation, measures, shared = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1])]
    measures.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]
    measures.SliceThickness = measures.SpacingBetweenSlices = f"{sz:.10g}"
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    organisation = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = organisation
    dimensions = []
    for pointer, group, label in ((0x0062000B, 0x0062000A, "ReferencedSegmentNumber"),
                                  (0x00200032, 0x00209113, "ImagePositionPatient")):
        item = Dataset()
        item.DimensionOrganizationUID, item.DimensionIndexPointer = organisation, pointer
        item.FunctionalGroupPointer, item.DimensionDescriptionLabel = group, label
        dimensions.append(item)
    ds.DimensionIndexSequence = DicomSequence(dimensions)
    frames, per_frame = [], []
    for number, array in enumerate(arrays.values(), start=1):
        for k in np.flatnonzero(array.reshape(array.shape[0], -1).any(axis=1)):
            position = reference.TransformIndexToPhysicalPoint((0, 0, int(k)))
            item, content, plane, ident = Dataset(), Dataset(), Dataset(), Dataset()
            content.DimensionIndexValues = [number, int(k) + 1]
            plane.ImagePositionPatient = [f"{v:.10g}" for v in position]
            ident.ReferencedSegmentNumber = number
            item.FrameContentSequence = DicomSequence([content])
            item.PlanePositionSequence = DicomSequence([plane])
            item.SegmentIdentificationSequence = DicomSequence([ident])
            per_frame.append(item)
            frames.append(array[k])
    ds.NumberOfFrames = len(frames)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    packed = np.packbits(np.stack(frames).astype(np.uint8).ravel(), bitorder="little").tobytes()
    ds.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target
