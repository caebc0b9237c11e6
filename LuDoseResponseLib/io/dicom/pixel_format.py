"""What a DICOM file's pixel data must hold, checked from its header before anything is decoded.

A header number is used only after it is checked (PS3.3 C.7.6.3 Image Pixel module, PS3.5 §8):

- Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel: one integer
  of VR US (a value written with another VR, e.g. a DS, is an error, not a guess). Rows and
  Columns in 1–65535; SamplesPerPixel = 1; BitsAllocated 8, 16, 32 or 64; BitsStored in
  1–BitsAllocated; PixelRepresentation 0 or 1.
- NumberOfFrames: one integer (VR IS) in 1–2³¹−1, absent meaning 1; and the file must be large
  enough to hold that many frames (native: the whole pixel data; encapsulated: one 8-byte item
  per frame), so a header alone can never make the reader allocate more than its file's size.

Pixel data (checked on the full file, before any decoder runs, for every decoder path):

- native transfer syntaxes: len(PixelData) = Rows × Columns × frames × SamplesPerPixel ×
  BitsAllocated/8, plus at most one padding byte (PS3.5 §8.1.1). A PixelData a frame short or
  long, or one that does not fit Rows/Columns, is an error: it is never read padded or cropped.
- encapsulated (PS3.5 A.4): the fragments must split into exactly NumberOfFrames frames (by the
  Basic or Extended Offset Table, one fragment per frame, or JPEG end-of-image markers); each
  JPEG / JPEG-LS frame's SOF marker and each JPEG 2000 frame's SIZ marker must give Rows ×
  Columns and one component; each RLE frame must hold SamplesPerPixel × BitsAllocated/8
  segments (PS3.5 G.5). After decoding, the array must be exactly (frames, Rows, Columns).

Memory: before decoding, a read's peak memory is estimated (:func:`read_bytes_estimate`) and a
read above the limit is refused with a DicomError. The limit is ``DEFAULT_MAX_READ_GIB`` (8 GiB:
a 512 × 512 × 2000-slice CT needs about 3.9 GiB), overridden by the environment variable
``LUDR_DICOM_MAX_READ_GIB`` or by the ``max_read_gib`` argument of ``read_volume``.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import UID, ImplicitVRLittleEndian

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.dicom.tags import label

#: the read-memory limit in GiB when neither the argument nor the environment variable sets one
DEFAULT_MAX_READ_GIB = 8.0
#: the environment variable that overrides DEFAULT_MAX_READ_GIB
MAX_READ_GIB_ENV = "LUDR_DICOM_MAX_READ_GIB"

_MAX_FRAMES = 2**31 - 1  # the largest IS value
_ITEM_HEADER_BYTES = 8
_RLE_SYNTAX = "1.2.840.10008.1.2.5"
_JPEG2000_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                      "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
#: JPEG start-of-frame markers (0xFFC0–0xFFCF except DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55 (0xFFF7)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


@dataclass(frozen=True)
class PixelFormat:
    """The checked Image Pixel numbers of one file and its transfer syntax."""

    rows: int
    columns: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    transfer_syntax: UID

    @property
    def encapsulated(self) -> bool:
        return bool(self.transfer_syntax.is_encapsulated)

    @property
    def voxels(self) -> int:
        return self.rows * self.columns * self.frames

    @property
    def native_bytes(self) -> int:
        """Bytes of native pixel data these numbers need (PS3.5 §8.1.1), without the padding byte."""
        return self.voxels * self.bits_allocated // 8


def _element(ds: Dataset, keyword: str):
    try:
        return ds[keyword] if keyword in ds else None
    except Exception:  # noqa: BLE001 - an element pydicom cannot even parse is treated as absent here
        return None


def _header_int(ds: Dataset, keyword: str, name: str, *, vrs: tuple[str, ...], lo: int, hi: int,
                default: int | None = None) -> int:
    """One integer attribute, checked: present (or ``default``), of VR ``vrs``, single-valued, in [lo, hi]."""
    elem = _element(ds, keyword)
    raw = None if elem is None else elem.value
    if raw is None or raw == "" or raw == b"":
        if default is not None:
            return default
        raise DicomError(f"{name}: {label(keyword)} is missing; the pixel data cannot be interpreted")
    if elem.VR not in vrs:
        raise DicomError(f"{name}: {label(keyword)} is written with VR {elem.VR} (value {str(raw)[:40]!r}); "
                         f"it must be {' or '.join(vrs)}. The file is corrupt: re-export it")
    if not isinstance(raw, int) or isinstance(raw, bool):
        what = f"{len(raw)} values" if isinstance(raw, MultiValue | list | tuple) else repr(raw)[:60]
        raise DicomError(f"{name}: {label(keyword)} must be one integer, not {what}; the file is corrupt")
    value = int(raw)
    if not lo <= value <= hi:
        raise DicomError(f"{name}: {label(keyword)} = {value} is outside {lo}–{hi}; the file is corrupt")
    return value


def pixel_format(ds: Dataset, name: str) -> PixelFormat:
    """The checked Image Pixel numbers of ``ds`` (rules in the module docstring); DicomError otherwise."""
    rows = _header_int(ds, "Rows", name, vrs=("US",), lo=1, hi=65535)
    columns = _header_int(ds, "Columns", name, vrs=("US",), lo=1, hi=65535)
    frames = _header_int(ds, "NumberOfFrames", name, vrs=("IS",), lo=1, hi=_MAX_FRAMES, default=1)
    samples = _header_int(ds, "SamplesPerPixel", name, vrs=("US",), lo=1, hi=4, default=1)
    if samples != 1:
        raise DicomError(f"{name}: {label('SamplesPerPixel')} is {samples}, not 1; colour images are not supported")
    bits_allocated = _header_int(ds, "BitsAllocated", name, vrs=("US",), lo=1, hi=64)
    if bits_allocated not in (8, 16, 32, 64):
        raise DicomError(f"{name}: {label('BitsAllocated')} = {bits_allocated} is not supported (8, 16, 32 or 64)")
    bits_stored = _header_int(ds, "BitsStored", name, vrs=("US",), lo=1, hi=bits_allocated)
    signed = _header_int(ds, "PixelRepresentation", name, vrs=("US",), lo=0, hi=1) == 1
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(getattr(meta, "TransferSyntaxUID", None) or ImplicitVRLittleEndian))
    if not syntax.is_transfer_syntax:
        raise DicomError(f"{name}: the transfer syntax {str(syntax)!r} is unknown; the pixel data cannot be read")
    return PixelFormat(rows, columns, frames, bits_allocated, bits_stored, signed, syntax)


def check_file_size(fmt: PixelFormat, file: Path) -> None:
    """The file must be large enough for the frames its header declares (from the header alone)."""
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise DicomError(f"{file}: cannot be read ({exc})") from exc
    need = fmt.frames * _ITEM_HEADER_BYTES if fmt.encapsulated else fmt.native_bytes
    if need > size:
        raise DicomError(f"{file}: {label('Rows')} × {label('Columns')} × {label('NumberOfFrames')} = "
                         f"{fmt.rows} × {fmt.columns} × {fmt.frames} need at least {need} bytes of pixel data, but "
                         f"the file has {size} bytes; the header or the file is corrupt")


def _frame_description(fmt: PixelFormat) -> str:
    return (f"{label('Rows')} × {label('Columns')} × {label('NumberOfFrames')} × {label('BitsAllocated')}/8 = "
            f"{fmt.rows} × {fmt.columns} × {fmt.frames} × {fmt.bits_allocated // 8}")


def check_pixel_data(ds: Dataset, fmt: PixelFormat, name: str) -> None:
    """The pixel data of the full data set ``ds`` must be what ``fmt`` declares (module docstring)."""
    try:
        data = ds.get("PixelData")
    except Exception as exc:  # noqa: BLE001 - an unreadable element is unusable whatever pydicom raised
        raise DicomError(f"{name}: {label('PixelData')} cannot be read ({exc})") from exc
    if not isinstance(data, bytes | bytearray) or not data:
        raise DicomError(f"{name}: {label('PixelData')} is missing or empty (float pixel data are not supported)")
    if not fmt.encapsulated:
        expected = fmt.native_bytes
        if len(data) not in (expected, expected + expected % 2):
            frame = fmt.rows * fmt.columns * fmt.bits_allocated // 8
            frames_held = f"{len(data) / frame:.6g} frames" if frame else "?"
            raise DicomError(f"{name}: {label('PixelData')} holds {len(data)} bytes ({frames_held}) but "
                             f"{_frame_description(fmt)} = {expected} bytes; the pixel data are truncated or the "
                             "header is wrong. Re-export the series; it is not read padded or cropped")
        return
    _check_encapsulated(bytes(data), fmt, name)


def _check_encapsulated(data: bytes, fmt: PixelFormat, name: str) -> None:
    syntax = str(fmt.transfer_syntax)
    n = 0
    try:
        for n, frame in enumerate(generate_frames(data, number_of_frames=fmt.frames), start=1):
            if n > fmt.frames:
                break
            problem = _frame_problem(frame, fmt, syntax)
            if problem:
                raise DicomError(f"{name}: frame {n} of the encapsulated {label('PixelData')} "
                                 f"({fmt.transfer_syntax.name}) {problem}; the header or the pixel data are wrong")
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises ValueError, KeyError, EOFError on broken items
        raise DicomError(f"{name}: the encapsulated {label('PixelData')} cannot be split into "
                         f"{fmt.frames} frame(s) ({type(exc).__name__}: {exc}); the file is corrupt") from exc
    if n != fmt.frames:
        raise DicomError(f"{name}: the encapsulated {label('PixelData')} holds {'more than ' if n > fmt.frames else ''}"
                         f"{n if n <= fmt.frames else fmt.frames} frame(s) but {label('NumberOfFrames')} is "
                         f"{fmt.frames}; the pixel data are truncated or the header is wrong")


def _frame_problem(frame: bytes, fmt: PixelFormat, syntax: str) -> str | None:
    """Why one encapsulated frame cannot hold Rows × Columns single-sample pixels, or None."""
    if syntax == _RLE_SYNTAX:
        if len(frame) < 64:
            return f"has a {len(frame)}-byte RLE header (64 needed)"
        segments = struct.unpack("<I", frame[:4])[0]
        if segments != fmt.bits_allocated // 8:
            return (f"has {segments} RLE segments but {label('BitsAllocated')} = {fmt.bits_allocated} needs "
                    f"{fmt.bits_allocated // 8}")
        return None
    if syntax in _JPEG2000_SYNTAXES:
        size = _j2k_size(frame)
    elif syntax.startswith("1.2.840.10008.1.2.4."):
        size = _jpeg_size(frame)
    else:
        return None  # deflate-like or unknown compression: checked after decoding
    if size is None:
        return "has no readable image size (SOF/SIZ marker)"
    rows, columns, components = size
    if (rows, columns, components) != (fmt.rows, fmt.columns, 1):
        return (f"is {rows} × {columns} pixels with {components} component(s), but the header says "
                f"{label('Rows')} × {label('Columns')} = {fmt.rows} × {fmt.columns} with one")
    return None


def _jpeg_size(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from the first JPEG / JPEG-LS start-of-frame marker (ITU T.81 B.2.2)."""
    i = 2 if frame[:2] == b"\xff\xd8" else None
    while i is not None and i + 4 <= len(frame):
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(frame[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 10 > len(frame):
                return None
            return (int.from_bytes(frame[i + 5:i + 7], "big"), int.from_bytes(frame[i + 7:i + 9], "big"),
                    frame[i + 9])
        if marker == 0xDA or length < 2:  # start of scan before any SOF
            return None
        i += 2 + length
    return None


def _j2k_size(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG 2000 codestream's SIZ marker (ISO 15444-1 A.5.1)."""
    start = frame.find(b"\xff\x4f\xff\x51")  # SOC + SIZ (a JP2 file wraps the same codestream)
    if start < 0 or start + 42 > len(frame):
        return None
    siz = frame[start + 4:]
    x_size, y_size, x_offset, y_offset = struct.unpack(">IIII", siz[4:20])
    components = int.from_bytes(siz[36:38], "big")
    return y_size - y_offset, x_size - x_offset, components


def max_read_bytes(max_read_gib: float | None = None) -> int:
    """The read-memory limit in bytes: the argument, else $LUDR_DICOM_MAX_READ_GIB, else DEFAULT_MAX_READ_GIB."""
    source = "max_read_gib"
    value: object = max_read_gib
    if value is None:
        value, source = os.environ.get(MAX_READ_GIB_ENV), MAX_READ_GIB_ENV
    if value is None or value == "":
        return int(DEFAULT_MAX_READ_GIB * 2**30)
    try:
        gib = float(value)
    except (TypeError, ValueError):
        gib = math.nan
    if not math.isfinite(gib) or gib <= 0:
        raise DicomError(f"{source} = {value!r} is not a positive number of GiB")
    return int(gib * 2**30)


def read_bytes_estimate(fmt: PixelFormat, n_files: int, out_itemsize: int) -> int:
    """Peak bytes of reading a series of ``n_files`` files of format ``fmt`` (an estimate, rounded up).

    Per voxel of one file: its pixel data and the decoded array (BitsAllocated/8 each), the stored
    values as float64 and the mapped float64 values (8 each). For the whole volume: the output
    array and the SimpleITK image made from it (``out_itemsize`` each).
    """
    per_file = fmt.voxels * (2 * fmt.bits_allocated // 8 + 16)
    return per_file + fmt.voxels * n_files * 2 * out_itemsize


def check_read_memory(fmt: PixelFormat, n_files: int, out_itemsize: int, name: str,
                      max_read_gib: float | None = None) -> None:
    """Refuse a read whose estimated peak memory exceeds the limit (module docstring)."""
    need = read_bytes_estimate(fmt, n_files, out_itemsize)
    limit = max_read_bytes(max_read_gib)
    if need > limit:
        raise DicomError(f"{name}: reading {fmt.columns} × {fmt.rows} × {fmt.frames * n_files} voxels needs about "
                         f"{need / 2**30:.3g} GiB, above the limit of {limit / 2**30:.3g} GiB; if the size is right, "
                         f"raise the limit with max_read_gib or the environment variable {MAX_READ_GIB_ENV}")
