"""Planar (static or whole-body) NM images: anterior/posterior views with their energy windows.

A planar acquisition is one NM file holding both detectors (frames indexed by DetectorVector and
EnergyWindowVector, DICOM PS3.3 C.8.4.9), or one file per view. Read per file:

- the view of each detector: ViewCodeSequence meaning ("anterior"/"posterior", also in the
  DetectorInformationSequence item), else the text ANT/POST in SeriesDescription or ImageComments,
  else, for a two-detector file, detector 1 = anterior and 2 = posterior (a logged fallback);
- the energy windows (EnergyWindowInformationSequence > EnergyWindowRangeSequence, keV): the
  photopeak is the window that contains 208.4 keV (Lu-177), the scatter windows are the nearest
  windows entirely below and above it;
- the acquisition time (AcquisitionDate/Time), the frame duration (ActualFrameDuration, ms), and for
  a whole-body sweep the scan velocity (ScanVelocity, mm/s) and length (ScanLength, mm);
- the pixel size (PixelSpacing, mm: row, column).

Images are 2-D count arrays [row, column] as displayed: rows run head to foot. Pixels are never
decay- or otherwise corrected here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.dicom.tags import first_item, get, get_float, get_floats, get_str, label, parse_date_time

log = logging.getLogger(__name__)

LU177_PHOTOPEAK_KEV = 208.366
VIEWS = ("anterior", "posterior")
#: adjacent windows may overlap this much (keV): 181.3 ± 6.3 keV ends at 187.6, 208.4 keV − 10 % is 187.56
WINDOW_OVERLAP_KEV = 0.5
#: NM ImageType value 3 of a planar image (PS3.3 C.8.4.6.1.1); TOMO, GATED, DYNAMIC are refused
PLANAR_IMAGE_TYPES = ("STATIC", "WHOLE BODY")


@dataclass(frozen=True)
class EnergyWindow:
    """An energy window [lower_kev, upper_kev]."""

    lower_kev: float
    upper_kev: float

    @property
    def width_kev(self) -> float:
        return self.upper_kev - self.lower_kev

    @property
    def centre_kev(self) -> float:
        return 0.5 * (self.lower_kev + self.upper_kev)

    @classmethod
    def centred(cls, centre_kev: float, half_width_fraction: float) -> EnergyWindow:
        """A window centre ± fraction·centre (208.4 keV ± 10 % → 187.5–229.2 keV)."""
        half = centre_kev * half_width_fraction
        return cls(centre_kev - half, centre_kev + half)


@dataclass(frozen=True)
class PlanarView:
    """One detector's planar image in three energy windows (counts, [row, column] as displayed).

    ``lower``/``upper`` are the scatter windows (None when not acquired). ``duration_s`` is the frame
    duration of a static image. For a whole-body sweep it is the total scan time ScanLength/ScanVelocity
    (``scan_velocity_mm_per_s`` and ``scan_length_mm`` are kept): a point is then seen only for the
    detector's axial field of view / velocity, so the calibration factor of a sweep must be measured with
    the same sweep and expressed per second of total scan time.
    """

    view: str
    peak: np.ndarray
    peak_window: EnergyWindow
    pixel_mm: tuple[float, float]
    duration_s: float
    lower: np.ndarray | None = None
    lower_window: EnergyWindow | None = None
    upper: np.ndarray | None = None
    upper_window: EnergyWindow | None = None
    acquired_at: datetime | None = None
    scan_velocity_mm_per_s: float | None = None
    scan_length_mm: float | None = None
    source: str = "planar view"
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.peak.shape)


def _windows(ds: Dataset, where: str) -> list[EnergyWindow]:
    seq = get(ds, "EnergyWindowInformationSequence")
    if seq is None:
        raise DicomError(f"{where}: no {label('EnergyWindowInformationSequence')}; the energy windows are needed "
                         "for the scatter correction")
    out = []
    for i, item in enumerate(seq):
        rng = first_item(item, "EnergyWindowRangeSequence")
        lo = None if rng is None else get_float(rng, "EnergyWindowLowerLimit")
        hi = None if rng is None else get_float(rng, "EnergyWindowUpperLimit")
        if lo is None or hi is None or hi <= lo:
            raise DicomError(f"{where}: energy window {i + 1} has no valid EnergyWindowLowerLimit/UpperLimit "
                             f"(got {lo}, {hi})")
        out.append(EnergyWindow(lo, hi))
    return out


def _assign_windows(windows: list[EnergyWindow], where: str) -> tuple[int, int | None, int | None]:
    """Indices of the photopeak window (contains 208.4 keV) and of the nearest scatter windows below/above."""
    peaks = [i for i, w in enumerate(windows) if w.lower_kev < LU177_PHOTOPEAK_KEV < w.upper_kev]
    if not peaks:
        shown = ", ".join(f"{w.lower_kev:g}-{w.upper_kev:g}" for w in windows)
        raise DicomError(f"{where}: no energy window contains the Lu-177 photopeak {LU177_PHOTOPEAK_KEV} keV "
                         f"(windows {shown} keV)")
    peak = min(peaks, key=lambda i: windows[i].width_kev)
    pw = windows[peak]
    below = [i for i, w in enumerate(windows) if w.upper_kev <= pw.lower_kev + WINDOW_OVERLAP_KEV]
    above = [i for i, w in enumerate(windows) if w.lower_kev >= pw.upper_kev - WINDOW_OVERLAP_KEV]
    lower = max(below, key=lambda i: windows[i].upper_kev) if below else None
    upper = min(above, key=lambda i: windows[i].lower_kev) if above else None
    return peak, lower, upper


def _view_from_code(item: Dataset | None) -> str | None:
    code = None if item is None else first_item(item, "ViewCodeSequence")
    meaning = None if code is None else (get_str(code, "CodeMeaning") or "").lower()
    if not meaning:
        return None
    if meaning.startswith("anterior") or meaning == "ap":
        return "anterior"
    if meaning.startswith("posterior") or meaning == "pa":
        return "posterior"
    return None


def _view_from_text(ds: Dataset) -> str | None:
    text = " ".join(filter(None, (get_str(ds, "SeriesDescription"), get_str(ds, "ImageComments")))).upper()
    has_ant, has_post = "ANT" in text, "POST" in text
    if has_ant != has_post:
        return "anterior" if has_ant else "posterior"
    return None


def _frame_vector(ds: Dataset, keyword: str, n_frames: int, where: str) -> np.ndarray:
    value = get(ds, keyword)
    if value is None:
        return np.ones(n_frames, dtype=int)
    vec = np.atleast_1d(np.asarray(value, dtype=int))
    if vec.size != n_frames:
        raise DicomError(f"{where}: {label(keyword)} has {vec.size} entries for {n_frames} frames")
    return vec


@dataclass(frozen=True)
class PlanarHeader:
    """What a planar NM file's header says, read without the pixels (for validating a manifest early)."""

    path: Path
    views: dict[int, str]                 # detector number → "anterior" | "posterior"
    rows_columns: tuple[int, int]
    pixel_mm: tuple[float, float]
    duration_s: float
    windows: tuple[EnergyWindow, ...]
    peak_lower_upper: tuple[int, int | None, int | None]   # indices into windows
    acquired_at: datetime | None
    scan_velocity_mm_per_s: float | None
    scan_length_mm: float | None
    notes: dict[int, str]


def _dataset(path: Path, *, pixels: bool) -> Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise DicomError(f"{path}: cannot read as DICOM ({exc})") from None
    if get_str(ds, "Modality") not in (None, "NM"):
        raise DicomError(f"{path}: Modality is {get_str(ds, 'Modality')}, not NM; a planar image is an NM file")
    return ds


def _header(ds: Dataset, path: Path) -> tuple[PlanarHeader, np.ndarray, np.ndarray]:
    """The header and the per-frame (detector, energy window) vectors."""
    where = str(path)
    image_type = (get_str(ds, "ImageType") or "").upper().split("\\")
    if len(image_type) > 2 and image_type[2] not in PLANAR_IMAGE_TYPES:
        raise DicomError(f"{where}: ImageType {'/'.join(image_type)} is not a planar image (expected the third value "
                         f"{' or '.join(PLANAR_IMAGE_TYPES)}); give the anterior/posterior static or whole-body file")
    rows, cols = get_float(ds, "Rows"), get_float(ds, "Columns")
    if not rows or not cols:
        raise DicomError(f"{where}: no Rows/Columns; not an image")
    n_frames = int(get_float(ds, "NumberOfFrames") or 1)
    spacing = get_floats(ds, "PixelSpacing", 2)
    if spacing is None or min(spacing) <= 0:
        raise DicomError(f"{where}: no valid {label('PixelSpacing')}; the pixel size is needed to map the VOIs")
    duration_ms = get_float(ds, "ActualFrameDuration")
    velocity = get_float(ds, "ScanVelocity")
    scan_length = get_float(ds, "ScanLength")
    if duration_ms is None and velocity and scan_length:
        duration_ms = 1000.0 * scan_length / velocity
    if duration_ms is None or duration_ms <= 0:
        raise DicomError(f"{where}: no {label('ActualFrameDuration')} (nor ScanVelocity and ScanLength); "
                         "the acquisition duration is needed for the calibration")
    acquired_at, _src = parse_date_time(ds, "AcquisitionDate", "AcquisitionTime")
    if acquired_at is None:
        acquired_at, _src = parse_date_time(ds, "SeriesDate", "SeriesTime")
    windows = _windows(ds, where)
    peak_lower_upper = _assign_windows(windows, where)
    window_vec = _frame_vector(ds, "EnergyWindowVector", n_frames, where)
    detector_vec = _frame_vector(ds, "DetectorVector", n_frames, where)
    detectors = sorted(set(detector_vec.tolist()))
    det_items = list(get(ds, "DetectorInformationSequence") or [])
    views: dict[int, str] = {}
    notes: dict[int, str] = {}
    for det in detectors:
        item = det_items[det - 1] if 0 < det <= len(det_items) else None
        view = _view_from_code(item) or (_view_from_code(ds) if len(detectors) == 1 else None)
        if view is None and len(detectors) == 1:
            view = _view_from_text(ds)
        if view is None and len(detectors) == 2:
            view = VIEWS[detectors.index(det)]
            notes[det] = (f"{where}: no view code for detector {det}; taken as {view} "
                          "(detector 1 anterior, 2 posterior)")
        if view is None:
            raise DicomError(f"{where}: cannot tell whether detector {det} is the anterior or posterior view "
                             "(no ViewCodeSequence, no ANT/POST in SeriesDescription); name the file in the "
                             "manifest's anterior/posterior keys and set the view code")
        if view in views.values():
            raise DicomError(f"{where}: two detectors are both the {view} view")
        views[det] = view
    header = PlanarHeader(path=path, views=views, rows_columns=(int(rows), int(cols)),
                          pixel_mm=(spacing[0], spacing[1]), duration_s=duration_ms / 1000.0,
                          windows=tuple(windows), peak_lower_upper=peak_lower_upper, acquired_at=acquired_at,
                          scan_velocity_mm_per_s=velocity, scan_length_mm=scan_length, notes=notes)
    return header, detector_vec, window_vec


def read_planar_header(path: str | Path) -> PlanarHeader:
    """The header of one planar NM file (views, matrix, pixel size, duration, windows); pixels are not read."""
    path = Path(path)
    return _header(_dataset(path, pixels=False), path)[0]


def read_planar(path: str | Path) -> dict[str, PlanarView]:
    """The views in one planar NM file: {"anterior": PlanarView, "posterior": PlanarView} or one of them."""
    path = Path(path)
    where = str(path)
    ds = _dataset(path, pixels=True)
    header, detector_vec, window_vec = _header(ds, path)
    try:
        pixels = np.asarray(ds.pixel_array, dtype=float)
    except Exception as exc:  # noqa: BLE001 - any pixel decoding failure is reported the same way
        raise DicomError(f"{where}: cannot decode the pixel data ({exc})") from None
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape[0] != detector_vec.size:
        raise DicomError(f"{where}: {pixels.shape[0]} frames, but the frame vectors list {detector_vec.size}")
    pixels = pixels * (get_float(ds, "RescaleSlope") or 1.0) + (get_float(ds, "RescaleIntercept") or 0.0)
    windows = header.windows
    peak, lower, upper = header.peak_lower_upper
    out: dict[str, PlanarView] = {}
    for det, view in header.views.items():
        if det in header.notes:
            log.info(header.notes[det])

        def frame(index: int | None, det=det):
            if index is None:
                return None
            sel = np.flatnonzero((detector_vec == det) & (window_vec == index + 1))
            if sel.size != 1:
                raise DicomError(f"{where}: expected one frame for detector {det}, energy window {index + 1}; "
                                 f"found {sel.size}")
            return pixels[sel[0]]

        out[view] = PlanarView(
            view=view, peak=frame(peak), peak_window=windows[peak], pixel_mm=header.pixel_mm,
            duration_s=header.duration_s, lower=frame(lower), lower_window=None if lower is None else windows[lower],
            upper=frame(upper), upper_window=None if upper is None else windows[upper],
            acquired_at=header.acquired_at, scan_velocity_mm_per_s=header.scan_velocity_mm_per_s,
            scan_length_mm=header.scan_length_mm, source=f"{where} detector {det}",
            notes=(header.notes[det],) if det in header.notes else ())
    return out


def read_conjugate_views(anterior: str | Path, posterior: str | Path | None = None) -> tuple[PlanarView, PlanarView]:
    """(anterior, posterior) from one two-detector file (``posterior`` None or the same file) or two files."""
    views = dict(read_planar(anterior))
    if posterior is not None and Path(posterior) != Path(anterior):
        for name, view in read_planar(posterior).items():
            if name in views:
                raise DicomError(f"{posterior}: holds a {name} view, but {anterior} has one already; give one "
                                 "anterior and one posterior view")
            views[name] = view
    missing = [v for v in VIEWS if v not in views]
    if missing:
        raise DicomError(f"{anterior}{'' if posterior is None else ' + ' + str(posterior)}: no {missing[0]} view; "
                         "conjugate-view quantification needs both the anterior and the posterior image")
    return views["anterior"], views["posterior"]
