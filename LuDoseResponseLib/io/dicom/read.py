"""Finding DICOM series under a path and assembling one series' pixel values.

- :func:`scan` reads headers only (no pixel data) of a file or of every file under a folder,
  and groups them by SeriesInstanceUID. Files that are not DICOM images are skipped.
- :func:`read_pixels` checks each file's pixel data against its header (:mod:`.pixel_format`:
  byte length, fragments and frame sizes, read memory) before decoding, decodes it with pydicom,
  orders slices by the layout (``dicom_geometry``) and maps stored values to output values
  (``dicom_meta.value_mapping``). Compressed pixel data of a transfer syntax that pydicom has no
  decoder for here (e.g. JPEG Lossless, common in PACS exports) is decoded with GDCM through
  SimpleITK, and the stored values recovered from its rescaled output. GDCM is never a fallback
  for data pydicom can decode but finds corrupt: it pads or crops such data silently.
"""

from __future__ import annotations

import logging
import mmap
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.dicom.geometry import Layout
from LuDoseResponseLib.io.dicom.metadata import ValueMapping, value_mapping
from LuDoseResponseLib.io.dicom.pixel_format import (
    MAX_READ_GIB_ENV,
    PixelFormat,
    check_pixel_data,
    check_read_memory,
    pixel_format,
)
from LuDoseResponseLib.io.dicom.tags import get_float, get_str, label

log = logging.getLogger(__name__)

#: file name endings read as images by SimpleITK rather than as DICOM
IMAGE_FILE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
#: endings that are never DICOM (skipped without opening them)
_NOT_DICOM_SUFFIXES = IMAGE_FILE_SUFFIXES + (
    ".raw", ".gz", ".zip", ".txt", ".md", ".json", ".csv", ".tsv", ".xml", ".html", ".toml", ".py",
    ".png", ".jpg", ".jpeg", ".pdf", ".mrml", ".mrb",
)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class DicomSeries:
    """The files of one SeriesInstanceUID with their headers (no pixel data)."""

    uid: str
    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]
    #: files under the same path that could not be read at all and may belong to this series
    unreadable: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The file, or the folder and file count, as messages name the series."""
        if len(self.files) == 1:
            return str(self.files[0])
        return f"{self.files[0].parent} (series {self.uid}, {len(self.files)} files)"


def is_image_file(path: Path) -> bool:
    """True for NRRD, NIfTI and MetaImage files (by name)."""
    return path.name.lower().endswith(IMAGE_FILE_SUFFIXES)


def _may_be_dicom(path: Path) -> bool:
    if path.name.lower().endswith(_NOT_DICOM_SUFFIXES):
        return False
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    # no preamble: a raw data set starts with a group 0x0002 or 0x0008 tag (little endian)
    return head[:2] in (b"\x02\x00", b"\x08\x00")


def dcmread_bounded(path: Path, *, headers_only: bool) -> Dataset:
    """``pydicom.dcmread`` through a read-only memory map of the file.

    A corrupt element length (e.g. 0x7FFFFFF0) then never makes Python reserve more memory than the
    file holds: a plain file's ``read(n)`` allocates n bytes before it finds the end of the file.
    """
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise EOFError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return pydicom.dcmread(mapped, stop_before_pixels=headers_only, force=True)


def _read_header(path: Path) -> tuple[Dataset | None, str | None]:
    """(header, None) of a DICOM image file, or (None, why it is skipped).

    The reason is None for files that are not DICOM at all. A file is an image when it has Rows or
    Columns or an image SOP class; an image whose header is broken is kept (its series then says
    what is wrong), so that a damaged slice is never dropped from a series unnoticed.
    """
    if not _may_be_dicom(path):
        return None, None
    try:
        with path.open("rb") as f:
            preamble = f.read(132)[128:] == b"DICM"
        with warnings.catch_warnings():  # pydicom warns about files that are then skipped anyway
            warnings.simplefilter("ignore")
            ds = dcmread_bounded(path, headers_only=True)
        sop_class = get_str(ds, "SOPClassUID") or get_str(getattr(ds, "file_meta", Dataset()),
                                                          "MediaStorageSOPClassUID")
        get_str(ds, "SeriesInstanceUID")  # touch: a garbage file fails here rather than later
        sop_name = UID(sop_class).name if sop_class else ""
        if sop_class == _DICOMDIR_CLASS:
            return None, "a DICOMDIR"
        if preamble and (len(ds) == 0 or not sop_class):
            return None, "unreadable: it starts like a DICOM file but holds no readable data set (truncated?)"
        if "Rows" in ds or "Columns" in ds or "Image Storage" in sop_name:
            return ds, None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on non-DICOM bytes
        if preamble:
            return None, f"unreadable: it starts like a DICOM file but cannot be read ({type(exc).__name__}: {exc})"
        log.debug("skipping %s: not readable as DICOM (%s)", path, exc)
        return None, None
    what = sop_name if sop_class and sop_name != sop_class else f"SOP class {sop_class or 'missing'}"
    return None, f"not an image ({what}, no {label('Rows')}/{label('Columns')})"


def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return out


def scan(path: str | os.PathLike) -> list[DicomSeries]:
    """All DICOM image series in a file or under a folder (recursively), headers only.

    Raises InputError/DicomError naming the path when it does not exist or holds no DICOM image.
    Each skipped DICOM file that is not an image (RTSTRUCT, SR, DICOMDIR, ...) is noted in one
    INFO line; a file that starts like DICOM but cannot be read is a WARNING and is listed in
    every series' ``unreadable`` (a result warning: it may be a missing slice).
    """
    root = Path(path)
    if not root.exists():
        raise DicomError(f"{root}: no such file or folder")
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped = 0
    unreadable: list[str] = []
    for file in _candidate_files(root):
        ds, why = _read_header(file)
        if ds is None:
            skipped += 1
            if why is not None and why.startswith("unreadable"):
                unreadable.append(f"{file}: {why}; skipped. If it belongs to this series, the series is "
                                  "incomplete: repair or remove the file")
                log.warning("%s", unreadable[-1])
            elif why is not None:
                log.info("%s: skipped, %s", file, why)
            continue
        # without a SeriesInstanceUID a file cannot be grouped safely: it is a series on its own
        uid = get_str(ds, "SeriesInstanceUID") or f"(no SeriesInstanceUID) {file}"
        groups.setdefault(uid, []).append((file, ds))
    if not groups:
        what = "is not a DICOM image file" if root.is_file() else f"holds no DICOM image ({skipped} files skipped)"
        raise DicomError(f"{root} {what}; give a DICOM folder or file, or an NRRD/NIfTI/MetaImage file")
    series = [DicomSeries(uid, tuple(f for f, _ in items), tuple(ds for _, ds in items), tuple(unreadable))
              for uid, items in groups.items()]

    def key(s: DicomSeries):
        number = get_float(s.headers[0], "SeriesNumber")
        return (number if number is not None else float("inf"), s.uid)

    return sorted(series, key=key)


def select_series(series: list[DicomSeries], path: Path, series_uid: str | None) -> DicomSeries:
    """The one series meant: by UID, or the only one. Errors list what the path holds."""
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid:
                return s
        raise DicomError(f"{path}: no series with {label('SeriesInstanceUID')} {series_uid}; it holds "
                         + ", ".join(_describe(s) for s in series))
    if len(series) > 1:
        raise DicomError(f"{path} holds {len(series)} series; choose one with its series_uid: "
                         + "; ".join(_describe(s) for s in series))
    return series[0]


def _describe(s: DicomSeries) -> str:
    ds = s.headers[0]
    text = f"{s.uid} ({get_str(ds, 'Modality') or '?'}, {len(s.files)} file(s)"
    desc = get_str(ds, "SeriesDescription")
    return text + (f", {desc!r})" if desc else ")")


def _pydicom_can_decode(fmt: PixelFormat) -> bool:
    if not fmt.encapsulated:
        return True
    try:
        return bool(get_decoder(fmt.transfer_syntax).is_available)
    except Exception:  # noqa: BLE001 - no decoder registered for this syntax at all
        return False


def _stored_values_via_pydicom(ds: Dataset, file: Path) -> np.ndarray:
    """Decode with pydicom; any inconsistency its decoder reports (a warning) is an error, not a guess."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the pixel data are unusable
        raise DicomError(f"{file}: the pixel data ({syntax}) cannot be decoded ({type(exc).__name__}: "
                         f"{str(exc).strip()[:300]}); the file is corrupt") from exc
    doubts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if doubts:
        raise DicomError(f"{file}: the pixel data disagree with the header ({doubts[0][:300]}); the values would "
                         "be a guess. Correct or re-export the file")
    return arr


def _stored_values(ds: Dataset, file: Path, rows: int, columns: int, frames: int) -> np.ndarray:
    """Stored pixel values of one file as float64, shape (frames, rows, columns), checked against its header
    (:mod:`.pixel_format`) before decoding and against the expected shape after."""
    fmt = pixel_format(ds, str(file))
    if (fmt.rows, fmt.columns, fmt.frames) != (rows, columns, frames):
        raise DicomError(f"{file}: {label('Rows')} × {label('Columns')} × {label('NumberOfFrames')} = {fmt.rows} × "
                         f"{fmt.columns} × {fmt.frames}, not the {rows} × {columns} × {frames} of the series; the "
                         "file changed while it was read or the series mixes sizes")
    check_pixel_data(ds, fmt, str(file))
    if _pydicom_can_decode(fmt):
        arr = _stored_values_via_pydicom(ds, file)
    else:
        arr = _stored_values_via_gdcm(ds, file)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.shape != (frames, rows, columns):
        raise DicomError(f"{file}: the decoded pixel data are {' × '.join(map(str, arr.shape))} (frames × rows × "
                         f"columns) but the header says {frames} × {rows} × {columns}; the file is corrupt")
    return arr


def _stored_values_via_gdcm(ds: Dataset, file: Path) -> np.ndarray:
    """Decode with GDCM (SimpleITK), for encapsulated syntaxes pydicom has no decoder for here (e.g. JPEG
    Lossless). GDCM applies the modality rescale; it is undone exactly."""
    import SimpleITK as sitk

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    syntax_name = f"{syntax} ({syntax.name})" if syntax is not None else "unknown transfer syntax"
    try:
        rescaled = sitk.GetArrayFromImage(sitk.ReadImage(str(file))).astype(np.float64)
    except RuntimeError as exc:
        raise DicomError(f"{file}: the pixel data ({syntax_name}) cannot be decoded: pydicom has no decoder; GDCM: "
                         f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}. Decompress the "
                         "files (e.g. gdcmconv --raw) and try again") from exc
    slope = get_float(ds, "RescaleSlope") or 1.0
    intercept = get_float(ds, "RescaleIntercept") or 0.0
    stored = np.rint((rescaled - intercept) / slope)
    if not np.allclose(stored * slope + intercept, rescaled, rtol=1e-6, atol=1e-6 * abs(slope)):
        raise DicomError(f"{file}: GDCM decoded the pixel data ({syntax_name}) but its values do not match "
                         f"{label('RescaleSlope')}/{label('RescaleIntercept')}; decompress the files first")
    log.info("%s: pixel data (%s) decoded with GDCM", file, syntax_name)
    return stored


def _read_full(file: Path) -> Dataset:
    try:
        return dcmread_bounded(file, headers_only=False)
    except Exception as exc:  # noqa: BLE001 - OSError, EOF, invalid data: all mean the file is unusable
        raise DicomError(f"{file}: cannot be read ({type(exc).__name__}: {exc})") from exc


def _usable(mapping: ValueMapping) -> ValueMapping:
    """The mapping, or the DicomError that says why the stored values cannot be mapped."""
    if mapping.problem is not None:
        raise DicomError(mapping.problem)
    return mapping


def read_pixels(series: DicomSeries, layout: Layout, progress: Callable[[float], None] | None = None,
                max_read_gib: float | None = None) -> np.ndarray:
    """Output values of a series as an array [z, y, x] ordered by the layout's k.

    float32 for CT (Hounsfield units are exact in it, and CT is large), float64 otherwise.
    ``progress`` is called with the fraction of files read (0–1). A read whose estimated memory
    exceeds the limit (``pixel_format.max_read_bytes``) is refused before anything is decoded.
    """
    grid = layout.require_grid()
    cols, rows, n = grid.size
    modality = (get_str(series.headers[0], "Modality") or "").upper()
    dtype = np.float32 if modality == "CT" else np.float64
    if layout.pixel_format is None:
        raise DicomError(f"{series.name}: the Image Pixel attributes were not checked; read it with read_volume")
    check_read_memory(layout.pixel_format, len(series.files) if layout.kind == "stack" else 1,
                      np.dtype(dtype).itemsize, series.name, max_read_gib)
    try:
        out = _mapped_values(series, layout, dtype, (rows, cols, n), progress)
    except MemoryError as exc:
        raise DicomError(f"{series.name}: not enough memory to read {cols} × {rows} × {n} voxels; free memory or "
                         f"lower the limit {MAX_READ_GIB_ENV} so that such reads are refused early") from exc
    if not np.isfinite(out).all():
        raise DicomError(f"{series.name}: mapping the stored values with the rescale or real-world value mapping "
                         "gives values that are not finite (overflow); the slope in the header is corrupt")
    return out


def _mapped_values(series: DicomSeries, layout: Layout, dtype: type, shape: tuple[int, int, int],
                   progress: Callable[[float], None] | None) -> np.ndarray:
    rows, cols, n = shape
    if layout.kind == "multiframe":
        file = series.files[0]
        ds = _read_full(file)
        mapping = _usable(value_mapping(ds, str(file)))
        stored = _stored_values(ds, file, rows, cols, n)
        out = np.take(stored, np.asarray(layout.order, dtype=np.intp), axis=0)
        del stored
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked by the caller
            out *= mapping.slope
            out += mapping.intercept
            out = out.astype(dtype, copy=False)
        if progress is not None:
            progress(1.0)
        return out
    out = np.empty((n, rows, cols), dtype=dtype)
    for k, index in enumerate(layout.order):
        file = series.files[index]
        ds = _read_full(file)
        mapping = _usable(value_mapping(ds, str(file)))
        with np.errstate(over="ignore", invalid="ignore"):
            out[k] = _stored_values(ds, file, rows, cols, 1)[0] * mapping.slope + mapping.intercept
        if progress is not None:
            progress((k + 1) / n)
    return out
