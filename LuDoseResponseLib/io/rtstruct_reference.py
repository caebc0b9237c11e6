"""An RTSTRUCT's reference image: finding the series its contours were drawn on, and its masks on that grid.

An RT Structure Set holds contours in patient coordinates, not voxels; it is rasterised
(:func:`io.rtstruct.rasterise_rtstruct`) onto the grid of the image series it was drawn on. That
series is found from headers alone (no pixels) among candidate places, in the order given
(the manifest's ``reference``, then the cycle's CT, then the RTSTRUCT's own folder):

1. a series whose SeriesInstanceUID the structure set lists in RTReferencedSeriesSequence
   (3006,0014), the series the planning system drew on;
2. else, when the structure set lists no series found there, the one image series whose
   FrameOfReferenceUID equals the structure set's; of a SPECT/CT sharing it, the one CT; several
   candidates otherwise are an error that lists them (name the series);
3. a non-DICOM image (NRRD, NIfTI) given explicitly is taken as it is: it has no frame of reference
   to check, so the contours must fall on its slices (the rasteriser checks each plane).

Only anatomy ROIs become masks (:attr:`io.rtstruct.StructureSet.volume_names`); an ROI with no
contours is an empty mask (volume 0), as a tumour that has disappeared stays in a segmentation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError, LuDoseResponseError
from LuDoseResponseLib.io.dicom.read import is_image_file
from LuDoseResponseLib.io.dicom.volume import inspect, read_metadata
from LuDoseResponseLib.io.rtstruct import StructureSet, contour_planes, rasterise_rtstruct, read_rtstruct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageReference:
    """An image series: a DICOM folder or file (``series_uid`` picks one of several), or an image file."""

    path: Path
    series_uid: str | None = None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "series_uid": self.series_uid}


def find_reference(structure_set: StructureSet,
                   candidates: Sequence[tuple[str, ImageReference]]) -> tuple[ImageReference, str]:
    """The series ``structure_set`` was drawn on, among ``candidates`` ((where, place) pairs, searched in
    order; module docstring); returns it with a note saying how it was matched. Headers only.

    InputError naming the RTSTRUCT, the places searched and what the structure set refers to, when none
    matches.
    """
    wanted = set(structure_set.referenced_series_uids)
    frame = structure_set.frame_of_reference_uid
    looked: list[str] = []
    for where, place in candidates:
        if place.path.is_file() and is_image_file(place.path):
            return place, f"{where} {place.path} (not DICOM: taken as given, its frame of reference unknown)"
        try:
            series = inspect(place.path)
        except LuDoseResponseError as exc:
            looked.append(f"{where} {place.path} ({exc})")
            continue
        if place.series_uid is not None:
            series = [s for s in series if s.series_uid == place.series_uid]
        by_uid = [s for s in series if s.series_uid in wanted]
        if by_uid:
            s = by_uid[0]
            return ImageReference(place.path, s.series_uid), (f"{where}: series {s.series_uid} of {place.path}, "
                                                             "referenced by the structure set")
        by_frame = [s for s in series if frame is not None and s.frame_of_reference_uid == frame]
        if len(by_frame) > 1 and sum(s.modality == "CT" for s in by_frame) == 1:   # SPECT/CT: drawn on the CT
            by_frame = [s for s in by_frame if s.modality == "CT"]
        if len(by_frame) == 1:
            s = by_frame[0]
            return ImageReference(place.path, s.series_uid), (f"{where}: series {s.series_uid} of {place.path}, "
                                                             f"same frame of reference {frame}")
        if len(by_frame) > 1:
            raise InputError(f"{structure_set.path}: {place.path} holds {len(by_frame)} series in the structure "
                             f"set's frame of reference ({', '.join(f'{s.modality} {s.series_uid}' for s in by_frame)})"
                             "; name the series the contours were drawn on")
        found = ", ".join(f"{s.modality} {s.series_uid} (frame {s.frame_of_reference_uid})" for s in series)
        looked.append(f"{where} {place.path} ({found or 'no such series'})")
    refers = (f"series {sorted(wanted)}" if wanted else "no series") + f" and frame of reference {frame}"
    raise InputError(f"{structure_set.path}: the image series the contours were drawn on was not found. The "
                     f"structure set refers to {refers}; searched: {'; '.join(looked) or 'nowhere'}. Give the CT "
                     "(or other image) the structure set was drawn on")


def reference_grid(reference: ImageReference) -> sitk.Image:
    """An empty uint8 image on ``reference``'s voxel grid, from its headers (no pixels read)."""
    meta = read_metadata(reference.path, reference.series_uid)
    if None in (meta.size, meta.spacing_mm, meta.origin_mm):
        problems = "; ".join(meta.warnings) or "no voxel grid in its headers"
        raise GeometryError(f"{reference.path}: cannot serve as the grid of a structure set: {problems}")
    grid = sitk.Image([int(v) for v in meta.size], sitk.sitkUInt8)
    grid.SetSpacing([float(v) for v in meta.spacing_mm])
    grid.SetOrigin([float(v) for v in meta.origin_mm])
    grid.SetDirection([float(v) for v in (meta.direction or (1, 0, 0, 0, 1, 0, 0, 0, 1))])
    return grid


def rtstruct_masks(path: str | Path, reference: ImageReference) -> dict[str, sitk.Image]:
    """Each anatomy ROI of the RTSTRUCT at ``path`` as a uint8 mask on ``reference``'s grid (module docstring).

    The voxel volume and the contour-area × plane-spacing estimate of each ROI are logged; an ROI without
    contours is an empty mask.
    """
    structure_set = read_rtstruct(path)
    names = structure_set.volume_names
    if not names:
        raise DicomError(f"{path}: no ROI of the structure set holds a volume (only "
                         f"{', '.join(structure_set.names)}, which are markers, points or the body outline)")
    grid = reference_grid(reference)
    rois = {r.name: r for r in structure_set.rois}
    contoured = [n for n in names if rois[n].contours]
    rasterised = rasterise_rtstruct(structure_set, grid, names=contoured) if contoured else {}
    out = {}
    for name in names:
        if name in rasterised:
            roi = rasterised[name]
            log.info("%s: ROI '%s' on %s: %.4g mL voxels, %.4g mL contour area × plane spacing", path, name,
                     reference.path, roi.volume_ml, roi.contour_volume_ml)
            out[name] = roi.mask
        else:
            empty = sitk.Image(grid.GetSize(), sitk.sitkUInt8)
            empty.CopyInformation(grid)
            out[name] = empty
    return out



def check_on_reference(structure_set: StructureSet, reference: ImageReference) -> None:
    """Before any pixel is read: every anatomy ROI's contours lie in slice planes of ``reference`` and reach
    into its grid (GeometryError / InputError naming the RTSTRUCT and the ROI otherwise)."""
    grid = reference_grid(reference)
    rois = {r.name: r for r in structure_set.rois}
    names = [n for n in structure_set.volume_names if rois[n].contours]
    size = grid.GetSize()
    for name, planes in contour_planes(structure_set, grid, names).items():
        inside = any(-0.5 <= k <= size[2] - 0.5 and ij[:, 0].max() >= -0.5 and ij[:, 0].min() <= size[0] - 0.5
                     and ij[:, 1].max() >= -0.5 and ij[:, 1].min() <= size[1] - 0.5 for k, ij in planes)
        if not inside:
            raise InputError(f"{structure_set.path}: ROI '{name}' lies outside the image {reference.path}; is this "
                             "the image the structure set was drawn on?")
