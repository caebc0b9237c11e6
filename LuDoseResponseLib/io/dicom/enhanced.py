"""Enhanced multi-frame images (Enhanced CT/MR/PET, PS3.3 C.7.6.16): geometry and rescale from the
functional groups.

Each frame's attributes are in PerFrameFunctionalGroupsSequence, or, when the same for all frames, in
SharedFunctionalGroupsSequence (per-frame first). A volume is built when the frames form one stack:

- Plane Orientation (ImageOrientationPatient) and Pixel Measures (PixelSpacing) equal for every frame;
- Plane Position (ImagePositionPatient): frames ordered by their position along the normal row × col
  (never by frame number or dimension index), evenly spaced, without in-plane drift (no shear), and no
  two frames at one position (several stacks, time points or echoes in one object are refused: they
  are not one volume);
- Pixel Value Transformation (RescaleSlope, RescaleIntercept) equal for every frame, used where the top
  level has none.

A single frame takes its slice spacing from SpacingBetweenSlices or SliceThickness of Pixel Measures.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError
from LuDoseResponseLib.io.dicom.geometry import (
    _SHEAR_TOL_MM,
    _SPACING_ATOL_MM,
    _SPACING_RTOL,
    Grid,
    Layout,
    _direction_cosines,
    _position_problem,
    _spacing_ok,
)
from LuDoseResponseLib.io.dicom.pixel_format import PixelFormat
from LuDoseResponseLib.io.dicom.tags import first_item, get, get_float, get_floats, label


def functional_item(ds: Dataset, frame: Dataset | None, sequence: str) -> Dataset | None:
    """The item of functional group ``sequence`` for one frame: per-frame first, then shared."""
    for groups in (frame, first_item(ds, "SharedFunctionalGroupsSequence")):
        if groups is not None:
            item = first_item(groups, sequence)
            if item is not None:
                return item
    return None


def _per_frame(ds: Dataset) -> list:
    return list(get(ds, "PerFrameFunctionalGroupsSequence") or [])


def enhanced_layout(ds: Dataset, name: str, fmt: PixelFormat) -> Layout:
    """The grid of an enhanced multi-frame image from its functional groups (module docstring)."""
    cols, rows, n = fmt.columns, fmt.rows, fmt.frames
    size = (cols, rows, n)
    sources = {"size": f"{label('Columns')}, {label('Rows')}, {label('NumberOfFrames')}"}

    def fail(exc: InputError) -> Layout:
        return Layout("multiframe", size, None, range(n), sources, (str(exc),), exc, fmt)

    frames = _per_frame(ds)
    if len(frames) != n:
        return fail(DicomError(f"{name}: {label('PerFrameFunctionalGroupsSequence')} has {len(frames)} items for "
                               f"{label('NumberOfFrames')} = {n}"))
    iops, spacings, positions = [], [], []
    for f, item in enumerate(frames):
        iop = get_floats(functional_item(ds, item, "PlaneOrientationSequence") or Dataset(),
                         "ImageOrientationPatient", 6)
        ps = get_floats(functional_item(ds, item, "PixelMeasuresSequence") or Dataset(), "PixelSpacing", 2)
        ipp = get_floats(functional_item(ds, item, "PlanePositionSequence") or Dataset(), "ImagePositionPatient", 3)
        if iop is None or ps is None or ipp is None:
            return fail(DicomError(f"{name}: frame {f + 1} has no {label('ImageOrientationPatient')}, "
                                   f"{label('PixelSpacing')} or {label('ImagePositionPatient')} in its functional "
                                   "groups; it cannot be placed"))
        if not all(_spacing_ok(v) for v in ps):
            return fail(DicomError(f"{name}: frame {f + 1}: {label('PixelSpacing')} {list(ps)} is not a usable "
                                   "spacing"))
        if (far := _position_problem(ipp, name)) is not None:
            return fail(far)
        iops.append(iop)
        spacings.append(ps)
        positions.append(ipp)
    iops, spacings, positions = np.asarray(iops), np.asarray(spacings), np.asarray(positions)
    if np.max(np.abs(iops - iops[0])) > 1e-4 or not np.allclose(spacings, spacings[0], rtol=1e-4):
        return fail(GeometryError(f"{name}: the frames differ in orientation or pixel spacing; they are not one "
                                  "volume (export each stack as its own series)"))
    try:
        row, col, normal = _direction_cosines(tuple(iops[0]), name)
    except GeometryError as exc:
        return fail(exc)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if n == 1:
        measures = functional_item(ds, frames[0], "PixelMeasuresSequence") or Dataset()
        step = get_float(measures, "SpacingBetweenSlices") or get_float(measures, "SliceThickness")
        if not step or not _spacing_ok(abs(step)):
            return fail(DicomError(f"{name}: a single frame without a usable {label('SpacingBetweenSlices')} or "
                                   f"{label('SliceThickness')} in its Pixel Measures; its thickness is unknown"))
        step = abs(step)
    else:
        gaps = np.diff(along[order])
        if np.min(gaps) < _SPACING_ATOL_MM:
            return fail(GeometryError(f"{name}: frames {int(order[np.argmin(gaps)]) + 1} and "
                                      f"{int(order[np.argmin(gaps) + 1]) + 1} lie at the same position: the object "
                                      "holds several stacks, time points or echoes, which are not one volume"))
        step = round(float(np.mean(gaps)), 6)
        if not _spacing_ok(step) or np.max(np.abs(gaps - step)) > max(_SPACING_ATOL_MM, _SPACING_RTOL * step):
            return fail(GeometryError(f"{name}: the frames are unevenly spaced ({np.min(gaps):.4g} to "
                                      f"{np.max(gaps):.4g} mm apart along the normal); resample it first"))
        displacement = positions[order] - positions[order[0]]
        drift = displacement - np.outer(displacement @ normal, normal)
        if np.max(np.linalg.norm(drift, axis=1)) > _SHEAR_TOL_MM:
            return fail(GeometryError(f"{name}: the frame positions are not along the slice normal (shear or "
                                      "tilt); resample it first"))
    grid = Grid(size, (float(spacings[0][1]), float(spacings[0][0]), float(step)),
                tuple(float(v) for v in positions[order[0]]),
                tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
    where = "functional groups (PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence)"
    sources.update({"origin_mm": f"{label('ImagePositionPatient')} of the first frame along the normal, {where}",
                    "direction": f"{label('ImageOrientationPatient')}, {where}",
                    "spacing_mm": f"{label('PixelSpacing')} + distance between frame positions, {where}"})
    return Layout("multiframe", size, grid, tuple(int(i) for i in order), sources, (), None, fmt)


def functional_rescale(ds: Dataset, name: str) -> Dataset | None:
    """A data set holding the RescaleSlope/RescaleIntercept of the Pixel Value Transformation functional group,
    when the top level has none and every frame agrees; None when there is no such group. DicomError when
    the frames disagree (a per-frame rescale is not supported)."""
    frames = _per_frame(ds)
    if not frames or get(ds, "RescaleSlope") is not None or get(ds, "RescaleIntercept") is not None:
        return None
    values = set()
    for item in frames:
        group = functional_item(ds, item, "PixelValueTransformationSequence")
        if group is None:
            return None
        values.add((get_float(group, "RescaleSlope"), get_float(group, "RescaleIntercept")))
    if len(values) > 1:
        raise DicomError(f"{name}: the frames have different {label('RescaleSlope')}/{label('RescaleIntercept')} "
                         "in their Pixel Value Transformation; a per-frame rescale is not supported")
    slope, intercept = values.pop()
    out = Dataset()
    if slope is not None:
        out.RescaleSlope = slope
    if intercept is not None:
        out.RescaleIntercept = intercept
    return out
