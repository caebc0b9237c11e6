"""DICOM RT Structure Set (RTSTRUCT) in: ROI contours, rasterised onto an image grid.

Contours (PS3.3 C.8.8.6, ROI Contour Module) are closed planar polygons in patient coordinates
(LPS, mm). The rasterisation rule, applied per ROI on a reference grid (normally the CT the
structure set was drawn on):

1. Every CLOSED_PLANAR contour must lie in a plane of the grid's slices (its points' slice
   index varies by less than 1 % of a slice); other contour types (POINT, OPEN_PLANAR, ...) hold
   no volume and are skipped with a note.
2. A contour plane at slice coordinate k_p fills the slices whose centres lie within half the
   contour-plane spacing h of it (k_p − h/2 ≤ k < k_p + h/2, with h the structure set's most
   common distance between neighbouring contour planes, or one slice for a single plane). When the
   contours were drawn on the grid's own slices this is exactly one slice per contour plane. No
   interpolation between planes.
3. On a plane, a voxel belongs to the ROI when its centre is inside an odd number of the plane's
   contours (the even–odd rule, so a contour drawn inside another is a hole). Centres are tested
   exactly by scan lines through the voxel centres; a centre exactly on an edge is decided by a
   half-open rule (inside on the edge of lower index), so ties depend on the grid's direction.

With this rule the voxel volume equals the contour-area × plane-spacing estimate up to the
voxelisation of the contour edges, which :func:`rasterise_rtstruct` reports for each ROI.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError, LuDoseResponseError
from LuDoseResponseLib.io.dicom.tags import MALFORMED_ELEMENT_ERRORS, get, get_str

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_PLANARITY_TOL_SLICES = 0.01
#: RTROIInterpretedType values (PS3.3 C.8.8.8) of ROIs that are no tumour or organ: never read as one
NOT_ANATOMY = frozenset({"EXTERNAL", "BOLUS", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT",
                         "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT",
                         "FIXATION", "DOSE_REGION", "TREATED_VOLUME", "IRRAD_VOLUME"})


@dataclass(frozen=True, eq=False)   # holds arrays or images: compare by identity
class RoiContours:
    """One ROI of a structure set: its number, name and closed planar contours (each (n, 3), LPS mm)."""

    number: int
    name: str
    contours: tuple[np.ndarray, ...]
    skipped_types: tuple[str, ...] = ()
    interpreted_type: str | None = None     # RTROIInterpretedType (3006,00A4): GTV, ORGAN, EXTERNAL, ...

    @property
    def is_anatomy(self) -> bool:
        """False for ROIs that mark no anatomy (EXTERNAL, MARKER, ISOCENTER, ...: :data:`NOT_ANATOMY`)."""
        return (self.interpreted_type or "").upper() not in NOT_ANATOMY


@dataclass(frozen=True)
class StructureSet:
    """The ROIs of an RTSTRUCT file, with the frame of reference their coordinates are in."""

    path: str
    frame_of_reference_uid: str | None
    rois: tuple[RoiContours, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    referenced_series_uids: tuple[str, ...] = ()   # the image series the contours were drawn on

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rois)

    @property
    def volume_names(self) -> tuple[str, ...]:
        """The ROIs read as tumours or organs: anatomy (:attr:`RoiContours.is_anatomy`) whose contours are
        closed planar, or that have no contour at all (an empty ROI, volume 0: a tumour that has gone)."""
        return tuple(r.name for r in self.rois if r.is_anatomy and (r.contours or not r.skipped_types))


@dataclass(frozen=True, eq=False)   # holds arrays or images: compare by identity
class RasterisedRoi:
    """A rasterised ROI: the mask on the reference grid, its voxel volume and the contour estimate."""

    name: str
    mask: sitk.Image
    volume_ml: float
    contour_volume_ml: float
    warnings: tuple[str, ...] = ()



def _contour_points(item, path: str, roi_name: str) -> np.ndarray:
    raw = get(item, "ContourData")
    if raw is None:
        raise DicomError(f"{path}: ROI '{roi_name}' has a contour without ContourData (3006,0050)")
    try:
        values = np.asarray([float(v) for v in raw], dtype=float)
    except (TypeError, ValueError):
        raise DicomError(f"{path}: ROI '{roi_name}' has non-numeric ContourData (3006,0050)") from None
    if values.size % 3 or values.size < 9 or not np.all(np.isfinite(values)):
        raise DicomError(f"{path}: ROI '{roi_name}' has a contour with {values.size} coordinates; a closed planar "
                         "contour needs at least 3 finite (x, y, z) points")
    return values.reshape(-1, 3)


def read_rtstruct(path: str | Path) -> StructureSet:
    """Read the ROI names and contours of an RTSTRUCT file; DicomError naming the file for bad input."""
    path = str(path)
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DicomError(f"{path}: cannot read as DICOM ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt bytes: a bad file, named
        raise DicomError(f"{path}: cannot read as DICOM ({type(exc).__name__}: {exc})") from None
    if str(get(ds, "SOPClassUID") or "") != RTSTRUCT_SOP_CLASS and get_str(ds, "Modality") != "RTSTRUCT":
        raise DicomError(f"{path}: not an RT Structure Set (Modality {get_str(ds, 'Modality')!r}); give the "
                         "RTSTRUCT file")
    try:
        return _structure_set(ds, path)
    except LuDoseResponseError:
        raise
    except MALFORMED_ELEMENT_ERRORS as exc:
        # a value pydicom parses only on access (a wrong VR, a cut element): the file is malformed
        raise DicomError(f"{path}: malformed RT Structure Set ({type(exc).__name__}: {exc}); export it again "
                         "from the planning system") from None


def _roi_names(ds, path: str) -> tuple[dict[int, str], set[str]]:
    names: dict[int, str] = {}
    listed: list[str] = []
    frames: set[str] = set()
    for roi in get(ds, "StructureSetROISequence") or []:
        try:
            number = int(roi.ROINumber)
        except (AttributeError, TypeError, ValueError):
            raise DicomError(f"{path}: a StructureSetROISequence item has no valid ROINumber (3006,0022)") from None
        if number in names:
            raise DicomError(f"{path}: ROINumber {number} (3006,0022) is used by more than one ROI")
        names[number] = (get_str(roi, "ROIName") or f"ROI {number}").strip()
        listed.append(names[number])
        if get_str(roi, "ReferencedFrameOfReferenceUID"):
            frames.add(get_str(roi, "ReferencedFrameOfReferenceUID"))
    if not names:
        raise DicomError(f"{path}: the structure set has no ROIs (StructureSetROISequence (3006,0020) is empty)")
    duplicates = sorted({n for n in listed if listed.count(n) > 1})
    if duplicates:
        raise DicomError(f"{path}: ROI name(s) {duplicates} occur more than once; tumours are joined by name, so "
                         "rename them in the planning system")
    return names, frames


def _interpreted_types(ds) -> dict[int, str]:
    out = {}
    for obs in get(ds, "RTROIObservationsSequence") or []:
        number, kind = get(obs, "ReferencedROINumber"), get_str(obs, "RTROIInterpretedType")
        if number is not None and kind:
            try:
                out[int(number)] = kind.upper()
            except (TypeError, ValueError):
                continue
    return out


def _referenced_series(ds) -> tuple[str, ...]:
    """SeriesInstanceUIDs of RTReferencedSeriesSequence (C.8.8.5): the images the contours were drawn on."""
    uids = []
    for frame in get(ds, "ReferencedFrameOfReferenceSequence") or []:
        for study in get(frame, "RTReferencedStudySequence") or []:
            for series in get(study, "RTReferencedSeriesSequence") or []:
                uid = get_str(series, "SeriesInstanceUID")
                if uid and uid not in uids:
                    uids.append(uid)
    return tuple(uids)


def _structure_set(ds, path: str) -> StructureSet:
    names, frames = _roi_names(ds, path)
    kinds = _interpreted_types(ds)
    rois, notes, seen = [], [], set()
    for item in get(ds, "ROIContourSequence") or []:
        try:
            number = int(item.ReferencedROINumber)
        except (AttributeError, TypeError, ValueError):
            raise DicomError(f"{path}: a ROIContourSequence item has no valid ReferencedROINumber") from None
        if number not in names:
            raise DicomError(f"{path}: ROIContourSequence refers to ROI {number}, which StructureSetROISequence "
                             "does not define")
        if number in seen:
            raise DicomError(f"{path}: ROIContourSequence holds ROI {number} ('{names[number]}') twice")
        seen.add(number)
        contours, skipped = [], []
        for c in get(item, "ContourSequence") or []:
            kind = (get_str(c, "ContourGeometricType") or "").upper()
            if kind != "CLOSED_PLANAR":
                skipped.append(kind or "unknown")
                continue
            contours.append(_contour_points(c, path, names[number]))
        if skipped:
            notes.append(f"{path}: ROI '{names[number]}': {len(skipped)} contour(s) of type "
                         f"{sorted(set(skipped))} hold no volume and are skipped")
        rois.append(RoiContours(number, names[number], tuple(contours), tuple(skipped), kinds.get(number)))
    for number in sorted(set(names) - seen):   # listed, never contoured: an empty ROI
        notes.append(f"{path}: ROI '{names[number]}' has no contours (an empty ROI)")
        rois.append(RoiContours(number, names[number], (), (), kinds.get(number)))
    for note in notes:
        log.info(note)
    if len(frames) > 1:
        raise DicomError(f"{path}: the ROIs refer to {len(frames)} frames of reference; one is expected")
    frame = next(iter(frames), None)
    if frame is None:
        for ref in get(ds, "ReferencedFrameOfReferenceSequence") or []:
            frame = get_str(ref, "FrameOfReferenceUID") or frame
    return StructureSet(path, frame, tuple(rois), tuple(notes), _referenced_series(ds))


def _to_index(points_lps: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Continuous (i, j, k) indices of LPS points on ``reference``'s grid."""
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    origin = np.asarray(reference.GetOrigin(), dtype=float)
    return np.linalg.solve(direction, (points_lps - origin).T).T / spacing


def _fill_even_odd(polygons_ij: list[np.ndarray], shape_ji: tuple[int, int]) -> np.ndarray:
    """Voxel centres (integer i, j) inside an odd number of polygons, by scan lines (exact)."""
    rows, cols = shape_ji
    inside = np.zeros(shape_ji, dtype=bool)
    edges = []
    for poly in polygons_ij:
        start, end = poly, np.roll(poly, -1, axis=0)
        edges.append(np.concatenate([start, end], axis=1))
    if not edges:
        return inside
    e = np.concatenate(edges)                      # (m, 4): i0, j0, i1, j1
    j_lo = np.minimum(e[:, 1], e[:, 3])
    j_hi = np.maximum(e[:, 1], e[:, 3])
    for j in range(max(0, math.ceil(j_lo.min())), min(rows, math.floor(j_hi.max()) + 1)):
        # half-open rule on the edge's j range: a vertex on the scan line is counted once
        crossing = ((e[:, 1] <= j) & (e[:, 3] > j)) | ((e[:, 3] <= j) & (e[:, 1] > j))
        if not np.any(crossing):
            continue
        c = e[crossing]
        x = c[:, 0] + (j - c[:, 1]) * (c[:, 2] - c[:, 0]) / (c[:, 3] - c[:, 1])
        x = np.sort(np.clip(np.nan_to_num(x, nan=-1.0), -1.0, cols + 1.0))   # far-off points: off the grid
        for left, right in zip(x[0::2], x[1::2], strict=True):
            first, last = max(0, math.ceil(left)), min(cols - 1, math.ceil(right) - 1)
            if first <= last:
                inside[j, first:last + 1] ^= True
    return inside


def _polygon_area_mm2(poly_ij: np.ndarray, spacing: np.ndarray) -> float:
    x, y = poly_ij[:, 0] * spacing[0], poly_ij[:, 1] * spacing[1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _plane_spacing(planes_k: list[float]) -> float:
    unique = np.unique(np.round(np.asarray(planes_k, dtype=float), 6))
    if unique.size < 2:
        return 1.0
    gaps = np.diff(unique)
    values, counts = np.unique(np.round(gaps, 4), return_counts=True)
    return float(values[np.argmax(counts)])


def contour_planes(structure_set: StructureSet, reference: sitk.Image,
                   names: list[str] | tuple[str, ...]) -> dict[str, list[tuple[float, np.ndarray]]]:
    """Each named ROI's contours as (slice coordinate k, (n, 2) in-plane indices) on ``reference``'s grid.

    Rule 1 of the module docstring: InputError for an ROI without closed planar contours, GeometryError for a
    contour that is not in a slice plane. Needs the grid only (no pixels), so it also checks a structure set
    against its reference image before any pixel is read.
    """
    rois = {r.name: r for r in structure_set.rois}
    out: dict[str, list[tuple[float, np.ndarray]]] = {}
    for name in names:
        roi = rois[name]
        if not roi.contours:
            raise InputError(f"{structure_set.path}: ROI '{name}' has no closed planar contours, so no volume")
        planes = []
        for points in roi.contours:
            ijk = _to_index(points, reference)
            if not np.all(np.isfinite(ijk)) or np.ptp(ijk[:, 2]) > _PLANARITY_TOL_SLICES:
                raise GeometryError(f"{structure_set.path}: a contour of ROI '{name}' is not in a slice plane of the "
                                    "reference image (it is oblique to the slices); rasterise onto the image the "
                                    "structure set was drawn on")
            planes.append((float(np.mean(ijk[:, 2])), ijk[:, :2]))
        out[name] = planes
    return out


def rasterise_rtstruct(structure_set: StructureSet, reference: sitk.Image, *,
                       names: list[str] | tuple[str, ...] | None = None) -> dict[str, RasterisedRoi]:
    """Rasterise the named ROIs (default: every ROI with closed contours) onto ``reference``'s grid.

    Returns name → :class:`RasterisedRoi` (uint8 mask with ``reference``'s geometry). The rule is in
    the module docstring. GeometryError for a contour that is not in a slice plane; InputError for an
    unknown name or an ROI that lies wholly outside the grid.
    """
    rois = {r.name: r for r in structure_set.rois}
    wanted = list(names) if names is not None else [r.name for r in structure_set.rois if r.contours]
    unknown = [n for n in wanted if n not in rois]
    if unknown:
        raise InputError(f"{structure_set.path}: no ROI named {unknown}; the structure set holds "
                         f"{list(rois)}")
    size = reference.GetSize()
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    per_roi = contour_planes(structure_set, reference, wanted)
    all_planes = [k for planes in per_roi.values() for k, _ in planes]
    h = _plane_spacing(all_planes)
    out: dict[str, RasterisedRoi] = {}
    for name, planes in per_roi.items():
        mask = np.zeros((size[2], size[1], size[0]), dtype=np.uint8)
        by_plane: dict[float, list[np.ndarray]] = {}
        for k, poly in planes:
            by_plane.setdefault(round(k, 6), []).append(poly)
        contour_volume_mm3 = 0.0
        warnings = []
        for k_plane, polys in sorted(by_plane.items()):
            slice_mask = _fill_even_odd(polys, (size[1], size[0]))
            # even-odd in areas: a contour inside an odd number of others is a hole and subtracts
            area = sum(_polygon_area_mm2(p, spacing) * (-1) ** _nesting_depth(p, polys) for p in polys)
            contour_volume_mm3 += area * h * spacing[2]
            first = math.ceil(k_plane - h / 2 - 1e-9)
            last = math.ceil(k_plane + h / 2 - 1e-9) - 1
            for k in range(max(first, 0), min(last, size[2] - 1) + 1):
                mask[k] |= slice_mask
            if first < 0 or last > size[2] - 1:
                warnings.append(f"ROI '{name}': the contour plane at slice {k_plane:.2f} reaches beyond the grid")
        n_voxels = int(mask.sum())
        if n_voxels == 0:
            raise InputError(f"{structure_set.path}: ROI '{name}' covers no voxel centre of the reference grid "
                             "(it lies outside the image or is smaller than a voxel)")
        image = sitk.GetImageFromArray(mask)
        image.CopyInformation(reference)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        out[name] = RasterisedRoi(name, image, n_voxels * voxel_ml, contour_volume_mm3 / 1000.0, tuple(warnings))
        for w in warnings:
            log.warning("%s: %s", structure_set.path, w)
    return out


def _nesting_depth(poly: np.ndarray, polys: list[np.ndarray]) -> int:
    """How many other contours of the plane contain ``poly`` (its first vertex), for signed areas."""
    point = poly[0]
    depth = 0
    for other in polys:
        if other is poly:
            continue
        x, y = other[:, 0], other[:, 1]
        x2, y2 = np.roll(x, -1), np.roll(y, -1)
        crosses = ((y <= point[1]) & (y2 > point[1])) | ((y2 <= point[1]) & (y > point[1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x + (point[1] - y) * (x2 - x) / (y2 - y)
        depth += int(np.count_nonzero(crosses & (xc > point[0])) % 2)
    return depth
