"""Voxel grids from DICOM headers alone: NM multi-frame volumes and stacks of single-frame slices.

Convention (ITK, LPS, DESIGN.md): the physical point of voxel (i, j, k) is

    P(i, j, k) = origin + D · diag(spacing) · (i, j, k)ᵀ,

where D's columns are the directions of increasing column index i (the first triplet of
ImageOrientationPatient), of increasing row index j (the second triplet) and of increasing
slice index k. Spacing along i is PixelSpacing[1] (the column spacing) and along j is
PixelSpacing[0] (the row spacing), as PS3.3 C.7.6.2.1.1 defines them.

Every grid returned here is right-handed: D[:, 2] = row × col, and k increases along it.
- NM multi-frame (PS3.3 C.8.4.15): frame f lies at IPP + f · SpacingBetweenSlices · (row × col),
  with ImagePositionPatient/ImageOrientationPatient from DetectorInformationSequence (or the top
  level). A negative SpacingBetweenSlices stacks the slices in front of the first one; such a
  stack is reversed so that k increases along the normal.
- RT Dose (PS3.3 C.8.8.3.2): frame f lies at IPP + GridFrameOffsetVector[f] · (row × col) (relative
  offsets, first 0), or at z = GridFrameOffsetVector[f] for an axial grid whose first value is the
  z of IPP; the offsets must be evenly spaced.
- Enhanced multi-frame (Enhanced CT/MR/PET, PS3.3 C.7.6.16): from the functional groups
  (:mod:`.enhanced`), frames ordered by their position along the normal.
- Slice stacks (CT, PT, single-frame NM): slices are ordered by their position along the normal,
  never by file name or InstanceNumber, and must be evenly spaced without shear (gantry tilt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError
from LuDoseResponseLib.io.dicom.pixel_format import PixelFormat, check_file_size, pixel_format
from LuDoseResponseLib.io.dicom.tags import first_item, get, get_float, get_floats, get_str, label

#: ImageType value 3 of NM objects that hold projections or planar frames, not a volume
NM_NOT_A_VOLUME = ("TOMO", "GATED TOMO", "STATIC", "DYNAMIC", "GATED", "WHOLE BODY")

_UNIT_TOL = 1e-3        # direction cosines: |v| = 1 and row·col = 0 within this
_SPACING_RTOL = 1e-3    # slice spacing may vary by this fraction (or by _SPACING_ATOL_MM)
_SPACING_ATOL_MM = 0.01
_SHEAR_TOL_MM = 0.05    # in-plane drift of slice positions (gantry tilt) allowed
#: voxel spacings (mm) and positions (|mm|) outside these bounds are corrupt headers, not images
SPACING_RANGE_MM = (1e-3, 1e4)
MAX_POSITION_MM = 1e6
#: a slice stack whose spacing exceeds SliceThickness by this factor gets a warning (gaps or missing slices)
GAP_WARNING_RATIO = 1.5


@dataclass(frozen=True)
class Grid:
    """A 3-D voxel grid in LPS: size (i, j, k), spacing (mm), origin (mm), direction (9, row-major)."""

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    def matrix(self) -> np.ndarray:
        """D · diag(spacing): maps an index (i, j, k) to a displacement from the origin in mm."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing_mm)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS box (min, max) of the voxels' outer faces."""
        lo_hi = [(-0.5, n - 0.5) for n in self.size]
        corners = np.array([[a, b, c] for a in lo_hi[0] for b in lo_hi[1] for c in lo_hi[2]])
        points = np.asarray(self.origin_mm) + corners @ self.matrix().T
        return points.min(axis=0), points.max(axis=0)


@dataclass(frozen=True)
class Layout:
    """How a series' pixels form a volume: the grid, and which frame or file goes to each k.

    ``order[k]`` is the frame index (multi-frame: a ``range``, never materialised from a header
    number) or the file index (stack) of slice k. ``pixel_format`` holds the checked Image Pixel
    numbers of the first file. When no grid can be built, ``grid`` is None and ``problem`` says
    why (raised when pixels are needed).
    """

    kind: str                       # "multiframe" or "stack"
    size: tuple[int, int, int]      # columns, rows, frames or files (known even without a grid); 0 = unknown
    grid: Grid | None
    order: Sequence[int]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    problem: InputError | None = None
    pixel_format: PixelFormat | None = None

    def require_grid(self) -> Grid:
        """The grid, or the error that explains why there is none."""
        if self.grid is None:
            raise self.problem or GeometryError("no voxel grid could be built from the DICOM headers")
        return self.grid


def _direction_cosines(iop: tuple[float, ...], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    if (abs(np.linalg.norm(row) - 1) > _UNIT_TOL or abs(np.linalg.norm(col) - 1) > _UNIT_TOL
            or abs(float(row @ col)) > _UNIT_TOL):
        raise GeometryError(f"{where}: {label('ImageOrientationPatient')} {list(iop)} is not two orthogonal "
                            "unit vectors; the file is corrupt or non-standard")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _plane(ds: Dataset, prefer_detector: bool) -> tuple[tuple | None, tuple | None, str, str, list[str]]:
    """(ImagePositionPatient, ImageOrientationPatient, where each was found, disagreements) of one header.

    NM keeps them in DetectorInformationSequence (PS3.3 C.8.4.10); some vendors write them at the
    top level instead. Each is taken from the first place that has it; a second place holding a
    different value is reported (as text naming both) rather than silently ignored.
    """
    places = [("DetectorInformationSequence[0] > ", first_item(ds, "DetectorInformationSequence")), ("", ds)]
    if not prefer_detector:
        places.reverse()
    found: dict[str, tuple[tuple, str]] = {}
    disagreements: list[str] = []
    for prefix, item in places:
        if item is None:
            continue
        for keyword, n, tol in (("ImagePositionPatient", 3, _SPACING_ATOL_MM), ("ImageOrientationPatient", 6, 1e-4)):
            value = get_floats(item, keyword, n)
            if value is None:
                continue
            if keyword not in found:
                found[keyword] = (value, prefix)
            elif np.max(np.abs(np.subtract(value, found[keyword][0]))) > tol:
                used, where = found[keyword]
                disagreements.append(f"{where}{label(keyword)} {list(used)} differs from {prefix or 'top-level '}"
                                     f"{keyword} {list(value)}; the former is used")
    ipp, ipp_where = found.get("ImagePositionPatient", (None, ""))
    iop, iop_where = found.get("ImageOrientationPatient", (None, ""))
    return ipp, iop, ipp_where, iop_where, disagreements


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(spacing along i, spacing along j) in mm from PixelSpacing [row spacing, column spacing]."""
    ps = get_floats(ds, "PixelSpacing", 2)
    if ps is None or not all(_spacing_ok(v) for v in ps):
        return None
    return ps[1], ps[0]


def _spacing_ok(value_mm: float) -> bool:
    return SPACING_RANGE_MM[0] <= value_mm <= SPACING_RANGE_MM[1]


_SPACING_BOUNDS = f"missing, not a number or outside {SPACING_RANGE_MM[0]:g}–{SPACING_RANGE_MM[1]:g} mm"


def _position_problem(ipp: tuple[float, ...], where: str) -> GeometryError | None:
    if max(abs(v) for v in ipp) > MAX_POSITION_MM:
        return GeometryError(f"{where}: {label('ImagePositionPatient')} {list(ipp)} is more than "
                             f"{MAX_POSITION_MM:g} mm from the origin; the file is corrupt")
    return None


def image_type_3(ds: Dataset) -> str | None:
    """Value 3 of ImageType (e.g. 'RECON TOMO', 'WHOLE BODY'), upper case, or None."""
    value = get(ds, "ImageType")
    if value is None or isinstance(value, str):
        return None
    items = [str(v).strip().upper() for v in value]
    return items[2] if len(items) > 2 else None


def multiframe_layout(ds: Dataset, name: str, fmt: PixelFormat) -> Layout:
    """Grid of a multi-frame NM (or legacy multi-frame) volume from its header (PS3.3 C.8.4.15).

    ``fmt`` holds its checked Rows, Columns and NumberOfFrames (:func:`pixel_format.pixel_format`).
    """
    cols, rows, n = fmt.columns, fmt.rows, fmt.frames
    size = (cols, rows, n)
    sources = {"size": f"{label('Columns')}, {label('Rows')}, {label('NumberOfFrames')}"}
    modality = (get_str(ds, "Modality") or "").upper()

    def fail(exc: InputError, warnings: tuple[str, ...] = ()) -> Layout:
        return Layout("multiframe", size, None, range(n), sources, warnings + (str(exc),), exc, fmt)

    if get(ds, "PerFrameFunctionalGroupsSequence") is not None:
        from LuDoseResponseLib.io.dicom.enhanced import enhanced_layout  # it builds on this module's helpers

        return enhanced_layout(ds, name, fmt)
    kind = image_type_3(ds)
    if modality == "NM" and kind in NM_NOT_A_VOLUME:
        return fail(DicomError(f"{name}: {label('ImageType')} value 3 is {kind!r}: projections or planar frames, "
                               "not a reconstructed volume (RECON TOMO); reconstruct the SPECT first"))
    if kind == "RECON GATED TOMO":
        return fail(DicomError(f"{name}: {label('ImageType')} is RECON GATED TOMO; gated reconstructions are "
                               "not supported, export an ungated reconstruction"))
    n_slices = get_float(ds, "NumberOfSlices")
    if n_slices is not None and int(n_slices) != n:
        return fail(DicomError(f"{name}: {label('NumberOfFrames')} = {n} but {label('NumberOfSlices')} = "
                               f"{int(n_slices)}; multi-window, multi-detector or gated volumes in one object "
                               "are not supported"))
    ipp, iop, ipp_where, iop_where, disagreements = _plane(ds, prefer_detector=(modality == "NM"))
    if ipp is None or iop is None:
        return fail(DicomError(f"{name}: no {label('ImagePositionPatient')} and {label('ImageOrientationPatient')} "
                               "in DetectorInformationSequence (0054,0022) or at the top level; the volume "
                               "cannot be placed in patient space"))
    if (far := _position_problem(ipp, name)) is not None:
        return fail(far)
    try:
        row, col, normal = _direction_cosines(iop, name)
    except GeometryError as exc:
        return fail(exc)
    in_plane = _pixel_spacing(ds)
    if in_plane is None:
        return fail(DicomError(f"{name}: {label('PixelSpacing')} {_SPACING_BOUNDS}"))

    warnings: list[str] = [f"{name}: {d}" for d in disagreements]
    sbs = get_float(ds, "SpacingBetweenSlices")
    thickness = get_float(ds, "SliceThickness")
    if sbs is not None and sbs != 0 and not _spacing_ok(abs(sbs)):
        return fail(DicomError(f"{name}: {label('SpacingBetweenSlices')} = {sbs:g} mm is outside "
                               f"{SPACING_RANGE_MM[0]:g}–{SPACING_RANGE_MM[1]:g} mm; the file is corrupt"))
    if thickness is not None and thickness > 0 and not _spacing_ok(thickness):
        thickness = None  # unusable as a spacing; said below if it would be needed
    if get(ds, "GridFrameOffsetVector") is not None:  # RT Dose (PS3.3 C.8.8.3.2)
        offsets = _grid_frame_offsets(ds, name, n, ipp, iop)
        if isinstance(offsets, InputError):
            return fail(offsets, tuple(warnings))
        step, spacing_source = offsets
        if n == 1:
            if thickness is None or thickness <= 0:
                return fail(DicomError(f"{name}: a single-frame RT Dose without a usable {label('SliceThickness')}; "
                                       "its thickness is unknown"), tuple(warnings))
            step = thickness
            spacing_source = f"{label('PixelSpacing')} + {label('SliceThickness')} (single frame)"
        elif thickness is not None and abs(thickness - abs(step)) > 0.01 * abs(step):
            warnings.append(f"{name}: {label('SliceThickness')} = {thickness:g} mm disagrees with the "
                            f"{label('GridFrameOffsetVector')} spacing {abs(step):g} mm; the offsets are used")
    elif sbs is not None and sbs != 0:
        step = sbs
        spacing_source = f"{label('PixelSpacing')} + {label('SpacingBetweenSlices')} = {sbs:g}"
        if sbs < 0:
            spacing_source += " (negative: slices stacked in front of the first; stack reversed)"
    elif n == 1 and thickness is not None and thickness > 0:
        step = thickness
        spacing_source = f"{label('PixelSpacing')} + {label('SliceThickness')} (single frame)"
    elif thickness is not None and thickness > 0:
        step = thickness
        spacing_source = f"{label('PixelSpacing')} + {label('SliceThickness')} = {thickness:g}"
        sbs_raw = get(ds, "SpacingBetweenSlices")
        what = "is missing" if sbs_raw is None else f"= {str(sbs_raw)!r} is not a usable spacing"
        warnings.append(f"{name}: {label('SpacingBetweenSlices')} {what}; slice spacing taken from "
                        f"{label('SliceThickness')} = {thickness:g} mm (contiguous slices assumed)")
    else:
        return fail(DicomError(f"{name}: {label('SpacingBetweenSlices')} and {label('SliceThickness')} are both "
                               "missing or zero; the slice spacing is unknown. Re-export the reconstruction "
                               "or convert it to NRRD with the correct spacing"), tuple(warnings))

    order = range(n) if step > 0 else range(n - 1, -1, -1)
    origin = np.asarray(ipp) + (0 if step > 0 else (n - 1) * step) * normal
    grid = Grid(size, (in_plane[0], in_plane[1], abs(step)), tuple(float(v) for v in origin),
                tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
    sources.update({
        "origin_mm": f"{ipp_where}{label('ImagePositionPatient')}",
        "direction": f"{iop_where}{label('ImageOrientationPatient')}",
        "spacing_mm": spacing_source,
    })
    return Layout("multiframe", size, grid, order, sources, tuple(warnings), None, fmt)


def _grid_frame_offsets(ds: Dataset, name: str, n: int, ipp: tuple[float, ...],
                        iop: tuple[float, ...]) -> tuple[float, str] | InputError:
    """(signed frame step in mm along row × col, source) from an RT Dose GridFrameOffsetVector (PS3.3 C.8.8.3.2).

    The offsets are relative to ImagePositionPatient when the first is 0; otherwise, for an axial
    grid only, they are z coordinates and the first must equal the z of ImagePositionPatient.
    The frames must be evenly spaced.
    """
    offsets = get_floats(ds, "GridFrameOffsetVector", n)
    if offsets is None:
        raw = get(ds, "GridFrameOffsetVector")
        count = len(raw) if isinstance(raw, MultiValue | list | tuple) else 1
        return DicomError(f"{name}: {label('GridFrameOffsetVector')} holds {count} value(s), not "
                          f"{label('NumberOfFrames')} = {n} numbers; the frames cannot be placed")
    values = np.asarray(offsets)
    kind = "offsets from ImagePositionPatient"
    if values[0] != 0:
        axial = np.allclose(iop, (1, 0, 0, 0, 1, 0), atol=1e-4)
        if not axial or abs(values[0] - ipp[2]) > _SPACING_ATOL_MM:
            return DicomError(f"{name}: {label('GridFrameOffsetVector')} starts at {values[0]:g}, neither 0 (offsets "
                              f"from {label('ImagePositionPatient')}) nor its z = {ipp[2]:g} of an axial grid")
        values = values - values[0]
        kind = "z coordinates of an axial grid"
    source = f"{label('PixelSpacing')} + {label('GridFrameOffsetVector')} ({kind})"
    if n == 1:
        return 0.0, source
    gaps = np.diff(values)
    step = round(float(np.mean(gaps)), 6)
    if not _spacing_ok(abs(step)) or np.max(np.abs(gaps - step)) > max(_SPACING_ATOL_MM, _SPACING_RTOL * abs(step)):
        return GeometryError(f"{name}: {label('GridFrameOffsetVector')} is not evenly spaced within "
                             f"{SPACING_RANGE_MM[0]:g}–{SPACING_RANGE_MM[1]:g} mm (steps {np.min(gaps):g} to "
                             f"{np.max(gaps):g} mm); resample the dose grid first")
    if step < 0:
        source += " (decreasing: frames stacked in front of the first; stack reversed)"
    return step, source


def stack_layout(headers: list[Dataset], names: list[str], formats: list[PixelFormat]) -> Layout:
    """Grid of a series of single-frame slices (CT, PT, single-frame NM), ordered by position.

    ``formats`` holds each file's checked Image Pixel numbers (:func:`pixel_format.pixel_format`).
    """
    n = len(headers)
    first = headers[0]
    cols, rows = formats[0].columns, formats[0].rows
    size = (cols, rows, n)
    sources = {"size": f"{label('Columns')}, {label('Rows')}, number of files ({n})"}
    modality = (get_str(first, "Modality") or "").upper()

    def fail(exc: InputError) -> Layout:
        return Layout("stack", size, None, tuple(range(n)), sources, (str(exc),), exc, formats[0])

    planes, disagreements = [], []
    for ds, nm, fmt in zip(headers, names, formats, strict=True):
        if (fmt.columns, fmt.rows) != (cols, rows):
            return fail(GeometryError(f"{nm}: {label('Rows')}/{label('Columns')} differ from {names[0]} in the "
                                      "same series; the series mixes images of different sizes"))
        ipp, iop, ipp_where, iop_where, differ = _plane(ds, prefer_detector=(modality == "NM"))
        disagreements += [f"{nm}: {d}" for d in differ]
        if ipp is None or iop is None:
            return fail(DicomError(f"{nm}: {label('ImagePositionPatient')} or {label('ImageOrientationPatient')} "
                                   "missing; the slice cannot be placed"))
        if (far := _position_problem(ipp, nm)) is not None:
            return fail(far)
        planes.append((np.asarray(ipp), np.asarray(iop), ipp_where, iop_where))
    iop0 = planes[0][1]
    for (_, iop, _, _), nm in zip(planes, names, strict=True):
        if np.max(np.abs(iop - iop0)) > 1e-4:
            return fail(GeometryError(f"{nm}: {label('ImageOrientationPatient')} differs from {names[0]}; the "
                                      "series mixes orientations"))
    try:
        row, col, normal = _direction_cosines(tuple(iop0), names[0])
    except GeometryError as exc:
        return fail(exc)
    in_plane = _pixel_spacing(first)
    if in_plane is None:
        return fail(DicomError(f"{names[0]}: {label('PixelSpacing')} {_SPACING_BOUNDS}"))
    for ds, nm in zip(headers[1:], names[1:], strict=True):
        other = _pixel_spacing(ds)
        if other is None or not np.allclose(other, in_plane, rtol=1e-4):
            return fail(GeometryError(f"{nm}: {label('PixelSpacing')} differs from {names[0]}"))

    positions = np.array([p[0] for p in planes])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along_sorted = along[order]
    more = f" (and {len(disagreements) - 1} more like it in the series)" if len(disagreements) > 1 else ""
    warnings: list[str] = [disagreements[0] + more] if disagreements else []
    sbs = get_float(first, "SpacingBetweenSlices")
    if n == 1:
        thickness = get_float(first, "SliceThickness")
        step = abs(sbs) if sbs else thickness
        if not step or not _spacing_ok(step):
            return fail(DicomError(f"{names[0]}: a single slice without a usable {label('SpacingBetweenSlices')} "
                                   f"or {label('SliceThickness')} ({_SPACING_BOUNDS}); its thickness is unknown"))
        spacing_source = f"{label('PixelSpacing')} + slice thickness of a single slice"
        warnings.append(f"{names[0]}: the series has a single slice; its z spacing {step:g} mm is the slice "
                        "thickness")
    else:
        gaps = np.diff(along_sorted)
        if np.min(gaps) < _SPACING_ATOL_MM:
            k = int(np.argmin(gaps))
            return fail(GeometryError(f"{names[order[k]]} and {names[order[k + 1]]} lie at the same slice "
                                      "position; the folder mixes acquisitions of one series. Separate them"))
        step = round(float(np.mean(gaps)), 6)  # µm: below any DS precision that matters, no float noise
        if not _spacing_ok(step):
            return fail(GeometryError(f"{names[0]} (series of {n} files): the slices are {step:g} mm apart, outside "
                                      f"{SPACING_RANGE_MM[0]:g}–{SPACING_RANGE_MM[1]:g} mm; the positions are corrupt"))
        if np.max(np.abs(gaps - step)) > max(_SPACING_ATOL_MM, _SPACING_RTOL * step):
            return fail(GeometryError(f"{names[0]} (series of {n} files): slice spacing varies from "
                                      f"{np.min(gaps):.4g} to {np.max(gaps):.4g} mm; slices are missing or the "
                                      "series is irregular. Re-export the complete series"))
        displacement = positions[order] - positions[order[0]]
        drift = displacement - np.outer(displacement @ normal, normal)
        if np.max(np.linalg.norm(drift, axis=1)) > _SHEAR_TOL_MM:
            return fail(GeometryError(f"{names[0]} (series of {n} files): slice positions are not along the "
                                      "slice normal (gantry tilt or shear); resample the series first"))
        spacing_source = (f"{label('PixelSpacing')} + distance between {label('ImagePositionPatient')} "
                          "along the slice normal")
        if sbs is not None and abs(abs(sbs) - step) > 0.01 * step:
            warnings.append(f"{names[0]}: {label('SpacingBetweenSlices')} = {sbs:g} mm disagrees with the slice "
                            f"positions ({step:.4g} mm apart); the positions are used")
        thickness = get_float(first, "SliceThickness")
        if thickness is not None and thickness > 0 and step > GAP_WARNING_RATIO * thickness:
            warnings.append(f"{names[0]} (series of {n} files): the slices are {step:.4g} mm apart but "
                            f"{label('SliceThickness')} is {thickness:g} mm: there are gaps between slices, or "
                            "evenly spaced slices are missing (e.g. every other file). Check the series is complete")
    origin = positions[order[0]]
    grid = Grid(size, (in_plane[0], in_plane[1], float(step)), tuple(float(v) for v in origin),
                tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
    sources.update({
        "origin_mm": f"{planes[0][2]}{label('ImagePositionPatient')} of the first slice along the normal",
        "direction": f"{planes[0][3]}{label('ImageOrientationPatient')}",
        "spacing_mm": spacing_source,
    })
    return Layout("stack", size, grid, tuple(int(i) for i in order), sources, tuple(warnings), None, formats[0])


def series_layout(headers: list[Dataset], files: list[Path]) -> Layout:
    """The layout of one series: a single multi-frame file, or a stack of single-frame files.

    Every file's Image Pixel numbers are checked first (:mod:`.pixel_format`), and the file must
    be large enough for them; otherwise there is no grid and ``problem`` says why.
    """
    names = [str(f) for f in files]
    formats = []
    try:
        for ds, file, nm in zip(headers, files, names, strict=True):
            fmt = pixel_format(ds, nm)
            check_file_size(fmt, file)
            formats.append(fmt)
    except DicomError as exc:
        kind = "multiframe" if len(headers) == 1 else "stack"
        return Layout(kind, (0, 0, 0), None, range(len(headers)), {}, (str(exc),), exc)
    frames = [fmt.frames for fmt in formats]
    if len(headers) == 1 and frames[0] > 1:
        return multiframe_layout(headers[0], names[0], formats[0])
    if max(frames) > 1:
        multi = [nm for nm, f in zip(names, frames, strict=True) if f > 1]
        exc = DicomError(f"{multi[0]}: the series has {len(headers)} files and {len(multi)} of them are "
                         "multi-frame; read one multi-frame file at a time")
        return Layout("stack", (0, 0, len(headers)), None, tuple(range(len(headers))), {}, (str(exc),), exc)
    if len(headers) == 1 and (get_str(headers[0], "Modality") or "").upper() in ("NM", "RTDOSE"):
        return multiframe_layout(headers[0], names[0], formats[0])
    return stack_layout(headers, names, formats)
