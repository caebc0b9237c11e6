"""DICOM Segmentation (SEG) in: one mask per segment, on the grid its frames define.

A SEG (PS3.3 A.51, C.8.20) is a multi-frame image whose frames each hold one segment on one plane.
The geometry comes from the functional groups (C.7.6.16): Plane Orientation (row and column
directions), Pixel Measures (pixel spacing, spacing between slices) and, per frame, Plane
Position (ImagePositionPatient) and Segment Identification (the segment number). Frames may be
given in any order and only where a segment is present; the grid spans the frame planes from the
lowest to the highest along the slice normal row × column, and a plane with no frame for a segment
is empty for it.

BINARY segmentations hold 1 bit per pixel, packed across frames (little-endian bit order,
PS3.5 8.1.1); FRACTIONAL ones hold 8 bits, a fraction = value / MaximumFractionalValue. A
fractional segment's mask is the voxels with fraction ≥ 0.5; :attr:`Segment.fraction` keeps the
fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from LuDoseResponseLib.errors import DicomError, GeometryError, LuDoseResponseError
from LuDoseResponseLib.io.dicom.tags import MALFORMED_ELEMENT_ERRORS, first_item, get, get_floats, get_str

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_LATTICE_TOL = 1e-3      # of the slice spacing: frame planes must lie on one lattice
_IN_PLANE_TOL_MM = 1e-3  # frames' in-plane offsets must agree
_MAX_VOXELS = 2_000_000_000


@dataclass(frozen=True, eq=False)   # holds arrays or images: compare by identity
class Segment:
    """One segment: its number, label, uint8 mask and, for FRACTIONAL SEGs, the float32 fractions."""

    number: int
    label: str
    mask: sitk.Image
    fraction: sitk.Image | None = None



@dataclass(frozen=True, eq=False)   # holds arrays or images: compare by identity
class Segmentation:
    """The segments of a SEG file, by label, with the frame of reference of their grid."""

    path: str
    frame_of_reference_uid: str | None
    segmentation_type: str
    segments: dict
    warnings: tuple[str, ...] = ()



def _functional(ds, frame_item, sequence: str, what: str, path: str):
    """``sequence``'s item for a frame: per-frame first, then shared (C.7.6.16)."""
    for groups in (frame_item, first_item(ds, "SharedFunctionalGroupsSequence")):
        if groups is not None:
            item = first_item(groups, sequence)
            if item is not None:
                return item
    raise DicomError(f"{path}: no {sequence} in the functional groups; the {what} of the frames is unknown")


def _segment_labels(ds, path: str) -> dict[int, str]:
    labels: dict[int, str] = {}
    for item in get(ds, "SegmentSequence") or []:
        try:
            number = int(item.SegmentNumber)
        except (AttributeError, TypeError, ValueError):
            raise DicomError(f"{path}: a SegmentSequence item has no valid SegmentNumber (0062,0004)") from None
        labels[number] = (get_str(item, "SegmentLabel") or f"Segment {number}").strip()
    if not labels:
        raise DicomError(f"{path}: SegmentSequence (0062,0002) is empty; the file defines no segment")
    names = list(labels.values())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DicomError(f"{path}: segment label(s) {duplicates} occur more than once; tumours are joined by name")
    return labels


def _frames_array(ds, n_frames: int, rows: int, cols: int, kind: str, path: str) -> np.ndarray:
    """The frames as (n, rows, cols) uint8, after checking the pixel data's length."""
    bits = int(get(ds, "BitsAllocated") or 0)
    expected_bits = {"BINARY": 1, "FRACTIONAL": 8}[kind]
    if bits != expected_bits:
        raise DicomError(f"{path}: a {kind} SEG needs BitsAllocated {expected_bits}, got {bits}")
    if str(ds.file_meta.TransferSyntaxUID) in pydicom.uid.UncompressedTransferSyntaxes:
        need = math.ceil(n_frames * rows * cols * bits / 8)
        have = len(ds.PixelData)
        if have < need or have > need + 1:
            raise DicomError(f"{path}: PixelData holds {have} bytes, but {n_frames} frames of {rows} × {cols} at "
                             f"{bits} bit need {need}; the file is truncated or its header is wrong")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file, named
        raise DicomError(f"{path}: the segmentation pixels cannot be decoded ({exc})") from None
    return pixels.reshape(n_frames, rows, cols).astype(np.uint8, copy=False)


def _read_dataset(path: str, *, headers_only: bool):
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=headers_only)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DicomError(f"{path}: cannot read as DICOM ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt bytes: a bad file, named
        raise DicomError(f"{path}: cannot read as DICOM ({type(exc).__name__}: {exc})") from None
    if str(get(ds, "SOPClassUID") or "") != SEG_SOP_CLASS:
        raise DicomError(f"{path}: not a DICOM Segmentation (Modality {get_str(ds, 'Modality')!r})")
    return ds


def _malformed(path: str, exc: Exception) -> DicomError:
    # a value pydicom parses only on access (a wrong VR, a cut element): the file is malformed
    return DicomError(f"{path}: malformed DICOM Segmentation ({type(exc).__name__}: {exc}); export it again")


def read_seg_labels(path: str | Path) -> tuple[str, ...]:
    """The segment labels of a DICOM SEG file, from its header alone (no pixels)."""
    path = str(path)
    ds = _read_dataset(path, headers_only=True)
    try:
        return tuple(_segment_labels(ds, path).values())
    except LuDoseResponseError:
        raise
    except MALFORMED_ELEMENT_ERRORS as exc:
        raise _malformed(path, exc) from None


def read_seg(path: str | Path) -> Segmentation:
    """Read every segment of a DICOM SEG file onto the grid its frames define (module docstring)."""
    path = str(path)
    ds = _read_dataset(path, headers_only=False)
    try:
        return _segmentation(ds, path)
    except LuDoseResponseError:
        raise
    except MALFORMED_ELEMENT_ERRORS as exc:
        raise _malformed(path, exc) from None


def _segmentation(ds, path: str) -> Segmentation:
    kind = (get_str(ds, "SegmentationType") or "").upper()
    if kind not in ("BINARY", "FRACTIONAL"):
        raise DicomError(f"{path}: SegmentationType {kind!r} is not BINARY or FRACTIONAL")
    labels = _segment_labels(ds, path)
    rows, cols = int(get(ds, "Rows") or 0), int(get(ds, "Columns") or 0)
    per_frame = list(get(ds, "PerFrameFunctionalGroupsSequence") or [])
    warnings: list[str] = []
    n_frames = int(get(ds, "NumberOfFrames") or 0)
    if rows <= 0 or cols <= 0 or n_frames < 0 or rows * cols * max(n_frames, 1) > _MAX_VOXELS:
        raise DicomError(f"{path}: Rows {rows}, Columns {cols}, NumberOfFrames {n_frames} are not a valid grid")
    if n_frames == 0:   # Type 1 in a SEG; infer it from the pixel data only when that is unambiguous
        bits = int(get(ds, "BitsAllocated") or 0)
        n_frames = _frames_in_pixel_data(len(get(ds, "PixelData") or b""), rows, cols, bits)
        if n_frames is None or n_frames > len(per_frame):
            raise DicomError(f"{path}: NumberOfFrames (0028,0008) is missing and the pixel data does not tell it")
        warnings.append(f"{path}: NumberOfFrames (0028,0008) is missing; {n_frames} frame(s) read from the pixel "
                        f"data length, with the first {n_frames} of {len(per_frame)} per-frame functional groups")
        per_frame = per_frame[:n_frames]
    if len(per_frame) != n_frames:
        raise DicomError(f"{path}: PerFrameFunctionalGroupsSequence has {len(per_frame)} items for "
                         f"{n_frames} frames")
    orientation = get_floats(_functional(ds, per_frame[0], "PlaneOrientationSequence", "orientation", path),
                             "ImageOrientationPatient", 6)
    measures = _functional(ds, per_frame[0], "PixelMeasuresSequence", "pixel spacing", path)
    pixel_spacing = get_floats(measures, "PixelSpacing", 2)
    if orientation is None or len(orientation) != 6 or pixel_spacing is None or len(pixel_spacing) != 2 \
            or min(pixel_spacing) <= 0:
        raise DicomError(f"{path}: ImageOrientationPatient or PixelSpacing of the functional groups is invalid")
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row_dir, col_dir)
    positions, numbers = [], []
    for k, item in enumerate(per_frame):
        position = get_floats(_functional(ds, item, "PlanePositionSequence", "position", path),
                              "ImagePositionPatient", 3)
        ident = first_item(item, "SegmentIdentificationSequence")
        if position is None or len(position) != 3 or ident is None or get(ident, "ReferencedSegmentNumber") is None:
            raise DicomError(f"{path}: frame {k + 1} lacks its ImagePositionPatient or ReferencedSegmentNumber")
        number = int(ident.ReferencedSegmentNumber)
        if number not in labels:
            raise DicomError(f"{path}: frame {k + 1} refers to segment {number}, which SegmentSequence lacks")
        positions.append(position)
        numbers.append(number)
    positions = np.asarray(positions, dtype=float)
    along = positions @ normal
    in_plane = positions - np.outer(along, normal)
    if np.ptp(in_plane, axis=0).max() > _IN_PLANE_TOL_MM:
        raise GeometryError(f"{path}: the frames' positions do not lie on one line along the slice normal; "
                            "a SEG on an oblique or irregular grid is not supported")
    spacing_between = get_floats(measures, "SpacingBetweenSlices", 1)
    unique = np.unique(np.round(along, 6))
    if spacing_between:
        dz = float(spacing_between[0])
    elif unique.size > 1:
        dz = float(np.min(np.diff(unique)))
    else:
        dz = float((get_floats(measures, "SliceThickness", 1) or [1.0])[0])
    if not dz > 0:
        raise DicomError(f"{path}: SpacingBetweenSlices {dz} is not positive")
    index = (along - along.min()) / dz
    if np.max(np.abs(index - np.rint(index))) > _LATTICE_TOL:
        raise GeometryError(f"{path}: frame planes are not multiples of the slice spacing {dz} mm apart")
    index = np.rint(index).astype(int)
    n_slices = int(index.max()) + 1
    if n_slices * rows * cols > _MAX_VOXELS:
        raise DicomError(f"{path}: the frames span {n_slices} planes; too large a grid")
    frames = _frames_array(ds, n_frames, rows, cols, kind, path)
    origin = in_plane[0] + along.min() * normal
    scale = float(get(ds, "MaximumFractionalValue") or 255) if kind == "FRACTIONAL" else 1.0
    segments = {}
    for number, label in labels.items():
        volume = np.zeros((n_slices, rows, cols), dtype=np.float32 if kind == "FRACTIONAL" else np.uint8)
        for k in np.flatnonzero(np.asarray(numbers) == number):
            volume[index[k]] = frames[k] / scale if kind == "FRACTIONAL" else frames[k]
        mask = (volume >= 0.5).astype(np.uint8) if kind == "FRACTIONAL" else volume
        segments[label] = Segment(number, label, _image(mask, origin, pixel_spacing, dz, row_dir, col_dir, normal),
                                  _image(volume, origin, pixel_spacing, dz, row_dir, col_dir, normal)
                                  if kind == "FRACTIONAL" else None)
    return Segmentation(path, get_str(ds, "FrameOfReferenceUID"), kind, segments, tuple(warnings))


def _frames_in_pixel_data(n_bytes: int, rows: int, cols: int, bits: int) -> int | None:
    """The frame count whose packed size is ``n_bytes`` (even-padded), or None if there is none."""
    if bits not in (1, 8):
        return None
    frame_bits = rows * cols * bits
    for n in range(1, (n_bytes * 8) // frame_bits + 1):
        need = math.ceil(n * frame_bits / 8)
        if need in (n_bytes, n_bytes - 1):
            return n
    return None


def _image(array_zyx, origin, pixel_spacing, dz, row_dir, col_dir, normal) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetOrigin([float(v) for v in origin])
    image.SetSpacing([float(pixel_spacing[1]), float(pixel_spacing[0]), float(dz)])  # (column, row, slice)
    image.SetDirection([float(v) for v in np.column_stack([row_dir, col_dir, normal]).ravel()])
    return image
