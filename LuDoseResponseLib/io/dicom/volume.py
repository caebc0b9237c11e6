"""The DICOM layer's public entry: inspect a path, read a series' metadata, read a volume.

A path may be a DICOM folder (any number of series, chosen by SeriesInstanceUID), a single
DICOM file, or an NRRD / NIfTI / MetaImage file. Headers are read without pixel data for
:func:`inspect` and :func:`read_metadata`; :func:`read_volume` also decodes the pixels.

Images come out as SimpleITK images in LPS (DESIGN.md) with the grid of ``dicom_geometry``
and values mapped as ``dicom_meta`` describes (Bq/mL, counts or HU). Writing is in
``dicom_write``.

Bad files never become made-up voxels: every header number is checked before use and every
file's pixel data against its header before decoding (``pixel_format``), and a read whose
estimated memory exceeds a limit (8 GiB by default; ``max_read_gib`` or the environment
variable ``LUDR_DICOM_MAX_READ_GIB``) is refused with a DicomError.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError, LuDoseResponseError
from LuDoseResponseLib.imaging import read_image_header
from LuDoseResponseLib.io.dicom.geometry import Layout, series_layout
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata, build_metadata
from LuDoseResponseLib.io.dicom.read import DicomSeries, is_image_file, read_pixels, scan, select_series

log = logging.getLogger(__name__)

__all__ = ["SeriesMetadata", "Volume", "inspect", "read_metadata", "read_volume"]

#: how the sources of an image file's geometry are named, by file name ending
_IMAGE_KINDS = ((".nrrd", "NRRD"), (".nhdr", "NRRD"), (".nii", "NIfTI"), (".nii.gz", "NIfTI"), (".mha", "MetaImage"),
                (".mhd", "MetaImage"))


@dataclass(frozen=True, eq=False)  # holds an image: compare by identity
class Volume:
    """A volume as read: the SimpleITK image (LPS) and what its headers said."""

    image: sitk.Image
    metadata: SeriesMetadata

    def to_dict(self) -> dict[str, Any]:
        return self.metadata.to_dict()


def _image_file_metadata(path: Path) -> SeriesMetadata:
    reader = read_image_header(path, "image file")
    if reader.GetDimension() != 3:
        raise GeometryError(f"{path}: the image has {reader.GetDimension()} dimensions; a 3-D volume is needed")
    name = path.name.lower()
    what = next((kind for ends, kind in _IMAGE_KINDS if name.endswith(ends)), "image")
    header = f"{what} header"
    return SeriesMetadata(
        path=str(path), n_files=1,
        size=tuple(int(v) for v in reader.GetSize()),
        spacing_mm=tuple(float(v) for v in reader.GetSpacing()),
        origin_mm=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
        sources={"size": header, "spacing_mm": header, "origin_mm": header, "direction": header},
        warnings=(f"{path}: not DICOM, so there is no acquisition time, duration, units, administration or "
                  "activity in it; give them in the manifest",),
    )


def _dicom_metadata(series: DicomSeries) -> tuple[SeriesMetadata, Layout]:
    """The series' metadata and voxel layout, from its headers."""
    try:
        layout = series_layout(list(series.headers), list(series.files))
        metadata = build_metadata(list(series.headers), list(series.files), layout)
        if series.unreadable:
            metadata = dataclasses.replace(metadata, warnings=metadata.warnings + series.unreadable)
        return metadata, layout
    except LuDoseResponseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a header too malformed for the rules: name the series
        raise DicomError(f"{series.name}: the header cannot be interpreted ({type(exc).__name__}: {exc}); "
                         "check the file with a DICOM validator (e.g. dciodvfy)") from exc


def inspect(path: str | os.PathLike) -> list[SeriesMetadata]:
    """Metadata of every series at ``path`` (headers only), in SeriesNumber order."""
    p = Path(path)
    if p.is_file() and is_image_file(p):
        return [_image_file_metadata(p)]
    return [_dicom_metadata(s)[0] for s in scan(p)]


def read_metadata(path: str | os.PathLike, series_uid: str | None = None) -> SeriesMetadata:
    """Metadata of the one series meant at ``path`` (headers only).

    ``series_uid`` picks a series in a folder that holds several; without it, such a folder is
    an error listing the series it holds.
    """
    p = Path(path)
    if p.is_file() and is_image_file(p):
        return _image_file_metadata(p)
    return _dicom_metadata(select_series(scan(p), p, series_uid))[0]


def read_volume(path: str | os.PathLike, series_uid: str | None = None,
                progress: Callable[[float], None] | None = None, max_read_gib: float | None = None) -> Volume:
    """The volume at ``path`` with its metadata; pixel values mapped (Bq/mL, counts or HU).

    ``progress`` is called with the fraction of DICOM files read (0–1). A DICOM read whose
    estimated memory exceeds ``max_read_gib`` (default: $LUDR_DICOM_MAX_READ_GIB, else
    ``pixel_format.DEFAULT_MAX_READ_GIB``) is refused with a DicomError before decoding.
    """
    p = Path(path)
    if p.is_file() and is_image_file(p):
        metadata = _image_file_metadata(p)
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            raise InputError(f"{p}: cannot read this image file ({str(exc).strip().splitlines()[-1]})") from exc
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{p}: the image has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                             "a scalar volume is needed")
        return Volume(sitk.Cast(image, sitk.sitkFloat64), metadata)
    series = select_series(scan(p), p, series_uid)
    metadata, layout = _dicom_metadata(series)
    grid = layout.require_grid()
    values = read_pixels(series, layout, progress, max_read_gib)
    log.info("read %s %s (%d file(s), %s voxels, units %s)", metadata.modality, series.name, len(series.files),
             "×".join(str(v) for v in grid.size), metadata.units)
    image = sitk.GetImageFromArray(np.ascontiguousarray(values))
    image.SetSpacing(grid.spacing_mm)
    image.SetOrigin(grid.origin_mm)
    image.SetDirection(grid.direction)
    return Volume(image, metadata)
