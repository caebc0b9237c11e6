"""DICOM RT Structure Set (RTSTRUCT) out: tumour and organ masks as contours that planning systems read.

PS3.3 A.19 (RT Structure Set IOD): Patient, General Study, RT Series, Frame of Reference, General Equipment,
Structure Set, ROI Contour, RT ROI Observations and SOP Common modules; checked with dicom3tools'
``dciodvfy`` (zero errors, zero warnings).

Contours are exact: on each slice, every connected region of a mask (and every hole in it) becomes a
CLOSED_PLANAR polygon that runs along the voxel edges (the boundary between inside and outside voxels,
at half-voxel offsets from the voxel centres), with collinear vertices dropped. Diagonally touching
voxels make separate polygons. Rasterised by the rule of :mod:`io.rtstruct` (a voxel belongs to the ROI
when its centre is inside an odd number of a plane's contours) onto the same grid, the contours give
back exactly the mask; their area × slice spacing is exactly the voxel volume. Tools that interpolate
between planes or smooth the contours will differ by up to about half a voxel at the edges.

The structure set references the source series (its study, frame of reference and, per slice, the
image each contour lies on where the source is a stack of single-frame instances).
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

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import atomic_path, refuse_to_overwrite_input
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.io.dicom_instance import copy_patient_and_study, new_instance, require_study_references
from LuDoseResponseLib.io.rtstruct import RTSTRUCT_SOP_CLASS
from LuDoseResponseLib.io.seg_write import masks_on_one_grid

_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"    # Detached Study Management (retired), as RT objects reference
_COLOURS = ((255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 160, 0), (200, 0, 255), (0, 200, 200),
            (255, 255, 0), (255, 0, 160))


def _loops(inside: np.ndarray) -> list[np.ndarray]:
    """Closed polygons along the voxel edges of a 2-D mask [j, i], as (n, 2) corner coordinates (i, j) where
    corner (a, b) lies at voxel index (a − 0.5, b − 0.5). The inside is on the left of every edge; where two
    loops touch at a corner (diagonal voxels), each takes the left turn, so the loops stay simple."""
    padded = np.pad(inside, 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    jj, ii = np.nonzero(inside)
    for j, i in zip(jj.tolist(), ii.tolist(), strict=True):
        pj, pi = j + 1, i + 1                                  # in padded coordinates
        if not padded[pj - 1, pi]:
            edges.setdefault((i, j), []).append((i + 1, j))
        if not padded[pj, pi + 1]:
            edges.setdefault((i + 1, j), []).append((i + 1, j + 1))
        if not padded[pj + 1, pi]:
            edges.setdefault((i + 1, j + 1), []).append((i, j + 1))
        if not padded[pj, pi - 1]:
            edges.setdefault((i, j + 1), []).append((i, j))
    loops = []
    while edges:
        # start where only one edge leaves, so that a loop never passes through its start twice
        start = next((v for v, out in edges.items() if len(out) == 1), next(iter(edges)))
        loop, here, heading = [start], start, None
        while True:
            options = edges[here]
            if len(options) == 1 or heading is None:
                nxt = options.pop(0)
            else:   # two ways out of a corner: the left turn (cross product of heading and step > 0)
                nxt = max(options, key=lambda p, h=heading, c=here: h[0] * (p[1] - c[1]) - h[1] * (p[0] - c[0]))
                options.remove(nxt)
            if not options:
                del edges[here]
            heading, here = (nxt[0] - here[0], nxt[1] - here[1]), nxt
            if here == start:
                break
            loop.append(here)
        loops.append(_drop_collinear(np.asarray(loop, dtype=float)))
    return loops


def _drop_collinear(loop: np.ndarray) -> np.ndarray:
    before, after = np.roll(loop, 1, axis=0), np.roll(loop, -1, axis=0)
    into, out = loop - before, after - loop
    turn = into[:, 0] * out[:, 1] - into[:, 1] * out[:, 0]
    return loop[turn != 0]


def _ds(value: float) -> str:
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def mask_contours(mask: sitk.Image) -> list[tuple[int, np.ndarray]]:
    """The exact voxel-edge contours of a binary mask (module docstring): (slice k, (n, 3) LPS mm) pairs."""
    array = sitk.GetArrayViewFromImage(mask) != 0
    direction = np.asarray(mask.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(mask.GetSpacing(), dtype=float)
    origin = np.asarray(mask.GetOrigin(), dtype=float)
    out = []
    for k in np.flatnonzero(array.reshape(array.shape[0], -1).any(axis=1)):
        for loop in _loops(array[k]):
            index = np.column_stack([loop - 0.5, np.full(len(loop), float(k))])
            out.append((int(k), origin + (index * spacing) @ direction.T))
    return out


def _referenced_frame(source: SeriesMetadata, n_slices: int) -> Dataset:
    frame = Dataset()
    frame.FrameOfReferenceUID = source.frame_of_reference_uid
    if source.series_uid and source.sop_class_uid and len(source.sop_instance_uids) == n_slices:
        images = []
        for uid in source.sop_instance_uids:
            image = Dataset()
            image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = source.sop_class_uid, uid
            images.append(image)
        series = Dataset()
        series.SeriesInstanceUID = source.series_uid
        series.ContourImageSequence = DicomSequence(images)
        study = Dataset()
        study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = _STUDY_SOP_CLASS, source.study_uid
        study.RTReferencedSeriesSequence = DicomSequence([series])
        frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


def write_rtstruct(masks: Mapping[str, sitk.Image], path: str | os.PathLike, *, source: SeriesMetadata,
                   interpreted_type: str = "GTV", label: str = "TUMOURS",
                   series_description: str = "Tumour contours (LuDoseResponse)", series_number: int = 911) -> Path:
    """Write ``masks`` (name → binary image, all on the grid of ``source``, the image they were drawn on) as an
    RTSTRUCT of ``source``'s study, with exact voxel-edge contours (module docstring).

    ``interpreted_type`` is the RTROIInterpretedType of every ROI (GTV; ORGAN for organs).
    """
    target = Path(path)
    refuse_to_overwrite_input(target, [Path(source.path)])
    require_study_references(source, "an RTSTRUCT")
    reference, arrays = masks_on_one_grid(masks, right_handed=False)
    if source.size is not None and tuple(reference.GetSize()) != tuple(source.size):
        raise InputError(f"the masks' grid {reference.GetSize()} is not the grid {source.size} of {source.path}; "
                         "contours are referenced to the source's slices, so give masks on its grid")
    now = datetime.now()
    ds = new_instance(RTSTRUCT_SOP_CLASS, "RTSTRUCT", now)
    copy_patient_and_study(ds, source)
    ds.SeriesNumber, ds.SeriesDescription = series_number, series_description
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = source.frame_of_reference_uid, ""
    ds.StructureSetLabel, ds.StructureSetName = label[:16], label[:64]
    ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    n_slices = reference.GetSize()[2]
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(source, n_slices)])
    images = ds.ReferencedFrameOfReferenceSequence[0].get("RTReferencedStudySequence")
    rois, contours, observations = [], [], []
    for number, (name, array) in enumerate(arrays.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, source.frame_of_reference_uid
        roi.ROIName, roi.ROIGenerationAlgorithm = name[:64], "SEMIAUTOMATIC"
        rois.append(roi)
        mask = sitk.GetImageFromArray(array.astype(np.uint8))
        mask.CopyInformation(reference)
        items = []
        for k, points in mask_contours(mask):
            c = Dataset()
            if images is not None:
                ref = Dataset()
                ref.ReferencedSOPClassUID = source.sop_class_uid
                ref.ReferencedSOPInstanceUID = source.sop_instance_uids[k]
                c.ContourImageSequence = DicomSequence([ref])
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
            c.ContourData = [_ds(v) for v in points.ravel()]
            items.append(c)
        item = Dataset()
        item.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        item.ReferencedROINumber = number
        item.ContourSequence = DicomSequence(items)
        contours.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = interpreted_type, ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target
