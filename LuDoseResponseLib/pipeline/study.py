"""One patient's study: data classes and the validated manifest (contracts/study-manifest.md).

:func:`load_manifest` reads the TOML manifest with ``tomllib``, checks every key, value, file and
time, and reads DICOM headers (never pixels) to fill in what the manifest leaves out. Every
problem found is collected, and they are raised together in one :class:`ManifestError` naming
the manifest file and each key, before any heavy work starts.

A value written in the manifest overrides DICOM. Each override (and each value taken from
DICOM because the manifest left it out) is logged and kept in ``Study.overrides``.

Images stay on disk: a :class:`TimePoint` holds a path and header metadata, and
:meth:`TimePoint.load_image` reads the pixels when the pipeline needs them.

Reduced imaging (issue 11): a cycle with one SPECT and no planars may set ``kinetics`` to
``"stp-hanscheid"``, ``"stp-madsen"`` (with ``population_t_eff_h`` and optionally
``population_t_eff_sd_h``) or ``"from-cycle-1"`` (the tumour's effective half-life from cycle 1, which
must then have several SPECTs or planars); see :mod:`LuDoseResponseLib.dosimetry.reduced_imaging`.
A cycle with ``[[cycles.planar]]`` entries (the hybrid method) needs at least two of them; a SPECT
outside the planar times is a warning (its planar activity is extrapolated).

Extension to the contract: ``ct`` may be a path or a table ``{ path = "...", series_uid = "..." }``
for a folder that holds several series; ``[[cycles.spect]]`` and ``[[cycles.planar]]`` accept
``series_uid`` likewise.

Organs (issue 15): ``[[cycles]] organs = "c1/organs.seg.nrrd"`` names the cycle's kidney VOIs (segments
``Kidney_L``, ``Kidney_R`` or ``Kidneys``, :mod:`.organ_names`); segments with these names inside the
``tumours`` segmentation are organs too, not tumours. ``[settings]`` ``kidney_pvc`` (rc | none),
``kidney_alpha_beta_gy`` and ``kidney_repair_half_time_h`` (defaults in ``dosimetry.bed``) set the organ
dosimetry of :mod:`.organs`.

Tumour segmentations (``tumours`` of a cycle or a follow-up) may be a label image, a Slicer ``.seg.nrrd``,
a DICOM SEG or an RTSTRUCT. An RTSTRUCT is rasterised onto the image series it was drawn on, found from
headers (:func:`io.rtstruct_reference.find_reference`: the series the structure set references by
SeriesInstanceUID, else the one in its frame of reference) in ``reference`` (a path, or
``{ path = "...", series_uid = "..." }``) when the entry gives one, and only there; otherwise in the
cycle's ``ct`` and then in the RTSTRUCT's own folder. Its contours are checked against that grid before
any pixel is read.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib import defaults
from LuDoseResponseLib.dosimetry.bed import KIDNEY_ALPHA_BETA_GY, KIDNEY_REPAIR_HALF_TIME_H
from LuDoseResponseLib.dosimetry.quantification import calibration_warnings
from LuDoseResponseLib.dosimetry.reduced_imaging import KINETICS
from LuDoseResponseLib.errors import LuDoseResponseError, ManifestError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.dicom.geometry import Grid
from LuDoseResponseLib.io.dicom.metadata import THERAPY_ACTIVITY_RANGE_MBQ, SeriesMetadata
from LuDoseResponseLib.io.planar import PlanarHeader, read_planar_header
from LuDoseResponseLib.io.rtstruct import read_rtstruct
from LuDoseResponseLib.io.rtstruct_reference import ImageReference, check_on_reference, find_reference
from LuDoseResponseLib.pipeline.organ_names import is_organ, organ_name_problems
from LuDoseResponseLib.response.volumetry import segment_names, segmentation_file_kind

log = logging.getLogger(__name__)

#: partial-volume correction of organ (kidney) VOIs: pipeline/organs.py
KIDNEY_PVC = ("rc", "none")
SETTINGS_CHOICES = {
    "dose_method": ("kernel", "led"),
    "pvc": ("none", "rc", "gtm"),
    "integration": ("auto", "mono", "bi", "uptake-washout", "trapezoid"),
    "tail": ("fit", "physical"),
    "kidney_pvc": KIDNEY_PVC,
}
UNITS = ("counts", "bq_per_ml")
GRADES = defaults.GRADES
_TOP_KEYS = {"patient", "grade", "settings", "cycles", "followups"}
_SETTINGS_KEYS = {"dose_method", "density_correction", "pvc", "psf_fwhm_mm", "integration", "tail", "kidney_pvc",
                  "kidney_alpha_beta_gy", "kidney_repair_half_time_h"}
_CYCLE_KEYS = {"number", "administered_at", "activity_mbq", "calibration_cps_per_mbq", "ct", "tumours",
               "reference", "spect", "planar", "kinetics", "population_t_eff_h", "population_t_eff_sd_h", "organs"}
_SPECT_KEYS = {"path", "series_uid", "acquired_at", "duration_s", "units"}
_PLANAR_KEYS = {"anterior", "posterior", "series_uid", "acquired_at", "calibration_cps_per_mbq"}
_CT_KEYS = {"path", "series_uid"}
_FOLLOWUP_KEYS = {"date", "tumours", "reference"}
#: two DICOM injection times closer than this are the same injection (s)
_SAME_TIME_S = 60.0
#: two DICOM activities closer than this fraction are the same administration
_SAME_ACTIVITY_RTOL = 0.005
_LATE_SCAN_H = 60 * 24.0


@dataclass(frozen=True)
class Settings:
    """Pipeline settings ([settings]); defaults as in the contract."""

    dose_method: str = "kernel"
    density_correction: bool = True
    pvc: str = "rc"
    psf_fwhm_mm: float = 11.0
    integration: str = "auto"
    tail: str = "fit"
    kidney_pvc: str = "rc"                       # organ VOIs: pipeline/organs.py
    kidney_alpha_beta_gy: float = KIDNEY_ALPHA_BETA_GY
    kidney_repair_half_time_h: float = KIDNEY_REPAIR_HALF_TIME_H

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Patient:
    """The patient label of the manifest and the optional tumour grade (G1 | G2)."""

    id: str
    grade: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "grade": self.grade}


@dataclass(frozen=True)
class TimePoint:
    """One quantitative SPECT of a cycle: where it is, when it was taken, what its values are."""

    key: str
    path: Path
    series_uid: str | None
    acquired_at: datetime
    hours_since_administration: float
    duration_s: float | None
    units: str
    metadata: SeriesMetadata

    def load_image(self) -> sitk.Image:
        """The SPECT voxels as stored (``units``: counts or Bq/mL), read now."""
        return dicom.read_volume(self.path, self.series_uid).image

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "series_uid": self.series_uid,
                "acquired_at": self.acquired_at.isoformat(),
                "hours_since_administration": self.hours_since_administration,
                "duration_s": self.duration_s, "units": self.units}


@dataclass(frozen=True)
class PlanarPair:
    """An anterior/posterior planar pair for hybrid planar–SPECT quantification."""

    key: str
    anterior: Path
    posterior: Path
    series_uid: str | None
    acquired_at: datetime
    hours_since_administration: float
    calibration_cps_per_mbq: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "anterior": str(self.anterior), "posterior": str(self.posterior),
                "series_uid": self.series_uid, "acquired_at": self.acquired_at.isoformat(),
                "hours_since_administration": self.hours_since_administration,
                "calibration_cps_per_mbq": self.calibration_cps_per_mbq}


@dataclass(frozen=True)
class Cycle:
    """One treatment cycle: administration, calibration, images."""

    number: int
    administered_at: datetime
    activity_mbq: float
    calibration_cps_per_mbq: float | None
    tumours: Path
    ct: Path | None = None
    ct_series_uid: str | None = None
    spect: tuple[TimePoint, ...] = ()
    planar: tuple[PlanarPair, ...] = ()
    tumours_reference: ImageReference | None = None   # the image an RTSTRUCT ``tumours`` was drawn on
    kinetics: str | None = None                  # reduced imaging: one of dosimetry.reduced_imaging.KINETICS
    population_t_eff_h: float | None = None      # for kinetics "stp-madsen"
    population_t_eff_sd_h: float | None = None
    organs: Path | None = None                   # the segmentation holding Kidney_L / Kidney_R / Kidneys
    organs_reference: ImageReference | None = None   # the image an RTSTRUCT ``organs`` was drawn on

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "administered_at": self.administered_at.isoformat(),
                "activity_mbq": self.activity_mbq, "calibration_cps_per_mbq": self.calibration_cps_per_mbq,
                "tumours": str(self.tumours),
                "tumours_reference": self.tumours_reference.to_dict() if self.tumours_reference else None,
                "ct": str(self.ct) if self.ct else None,
                "ct_series_uid": self.ct_series_uid, "spect": [t.to_dict() for t in self.spect],
                "planar": [p.to_dict() for p in self.planar], "kinetics": self.kinetics,
                "population_t_eff_h": self.population_t_eff_h, "population_t_eff_sd_h": self.population_t_eff_sd_h,
                "organs": str(self.organs) if self.organs else None}


@dataclass(frozen=True)
class FollowUp:
    """A follow-up CT segmentation; the first follow-up is the baseline."""

    date: date
    tumours: Path
    tumours_reference: ImageReference | None = None   # the image an RTSTRUCT ``tumours`` was drawn on

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "tumours": str(self.tumours),
                "tumours_reference": self.tumours_reference.to_dict() if self.tumours_reference else None}


@dataclass(frozen=True)
class Study:
    """A validated manifest: the patient, settings, cycles and follow-ups."""

    manifest: Path
    patient: Patient
    settings: Settings
    cycles: tuple[Cycle, ...]
    followups: tuple[FollowUp, ...] = ()
    overrides: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": str(self.manifest), "patient": self.patient.to_dict(),
                "settings": self.settings.to_dict(), "cycles": [c.to_dict() for c in self.cycles],
                "followups": [f.to_dict() for f in self.followups], "overrides": list(self.overrides),
                "warnings": list(self.warnings)}


@dataclass
class _Checker:
    """Collects every problem of one manifest so that they are reported together."""

    manifest: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    segmentations: list[tuple[str, Path]] = field(default_factory=list)  # (key, file) of every tumours entry

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")

    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.manifest, message)
        self.warnings.append(message)

    def note(self, message: str) -> None:
        log.info("%s: %s", self.manifest, message)
        self.overrides.append(message)

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(key, f"must be a table, got {type(value).__name__}")
            return {}
        for k in sorted(set(value) - allowed):
            self.error(f"{key}.{k}" if key else k, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def array(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, "must be an array of tables ([[...]])")
            return []
        return value

    def string(self, value: Any, key: str, *, required: bool = False, choices=None) -> str | None:
        if value is None:
            if required:
                self.error(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(key, f"must be a non-empty string, got {value!r}")
            return None
        if choices is not None and value not in choices:
            self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
            return None
        return value

    def number(self, value: Any, key: str, *, positive: bool = True) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.error(key, f"must be a number, got {value!r}")
            return None
        if positive and value <= 0:
            self.error(key, f"must be positive, got {value!r}")
            return None
        return float(value)

    def when(self, value: Any, key: str) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                self.error(key, f"must be a local date-time like 2019-03-04T09:30:00, got {value!r}")
                return None
        if not isinstance(value, datetime):
            self.error(key, f"must be a local date-time like 2019-03-04T09:30:00 (a date alone is not enough), "
                            f"got {value!r}")
            return None
        if value.tzinfo is not None:
            self.error(key, "must be a local clock time without a UTC offset, as DICOM stores it")
            return None
        return value

    def file(self, value: Any, key: str, *, required: bool = True) -> Path | None:
        text = self.string(value, key, required=required)
        if text is None:
            return None
        path = (self.manifest.parent / text).resolve() if not Path(text).is_absolute() else Path(text)
        if not path.exists():
            self.error(key, f"{path} does not exist (paths are relative to the manifest)")
            return None
        return path

    def dicom_warnings(self, key: str, meta: SeriesMetadata) -> None:
        """Pass on what the reader found odd in the headers (fallbacks, contradictions), naming the key."""
        for w in meta.warnings:
            self.warn(f"{key}: {w}")

    def header(self, path: Path, series_uid: str | None, key: str) -> SeriesMetadata | None:
        try:
            return dicom.read_metadata(path, series_uid)
        except LuDoseResponseError as exc:
            self.error(key, str(exc))
            return None


def _choose(checker: _Checker, key: str, manifest_value: Any, dicom_value: Any, dicom_source: str | None,
            where: str) -> Any:
    """The manifest value if given (logging an override), else the DICOM value (logging it)."""
    if manifest_value is not None:
        if dicom_value is not None and dicom_value != manifest_value:
            checker.note(f"{key} = {_show(manifest_value)} overrides DICOM {_show(dicom_value)} "
                         f"({dicom_source}) of {where}")
        return manifest_value
    if dicom_value is not None:
        checker.note(f"{key} not in the manifest; taken from DICOM {_show(dicom_value)} ({dicom_source}) of {where}")
    return dicom_value


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else repr(value)


def _grid(meta: SeriesMetadata | None) -> Grid | None:
    if meta is None or meta.size is None or meta.spacing_mm is None or meta.origin_mm is None:
        return None
    return Grid(meta.size, meta.spacing_mm, meta.origin_mm, meta.direction or (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _overlap(a: Grid, b: Grid) -> bool:
    lo_a, hi_a = a.bounds_mm()
    lo_b, hi_b = b.bounds_mm()
    return bool(np.all(np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b)))


def _image_reference(checker: _Checker, raw: Any, key: str) -> ImageReference | None:
    """A ``reference`` value: a path, or a table {path, series_uid}."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        table = checker.table(raw, key, _CT_KEYS)
        path = checker.file(table.get("path"), f"{key}.path")
        uid = checker.string(table.get("series_uid"), f"{key}.series_uid")
        return ImageReference(path, uid) if path is not None else None
    path = checker.file(raw, key)
    return ImageReference(path) if path is not None else None


def _tumours_reference(checker: _Checker, key: str, tumours: Path | None, raw: Any,
                       ct: ImageReference | None, field: str = "tumours") -> ImageReference | None:
    """For an RTSTRUCT ``tumours`` (or ``organs``: ``field``): the image series it was drawn on (module
    docstring), checked against its contours from headers; None for a segmentation with its own grid."""
    explicit = _image_reference(checker, raw, f"{key}.reference")
    if tumours is None:
        return None
    try:
        if segmentation_file_kind(tumours) != "rtstruct":
            if explicit is not None:
                checker.error(f"{key}.reference", f"is for an RTSTRUCT; {tumours} carries its own grid, so remove "
                                                  "the reference")
            return None
        structure_set = read_rtstruct(tumours)
    except LuDoseResponseError as exc:
        checker.error(f"{key}.{field}", str(exc))
        return None
    if raw is not None and explicit is None:
        return None                                   # the reference key itself was wrong, already said
    if explicit is not None:
        candidates = [(f"{key}.reference", explicit)]
    else:
        candidates = [(f"{key}.ct", ct)] if ct is not None else []
        candidates.append(("the RTSTRUCT's folder", ImageReference(tumours.parent)))
    try:
        reference, how = find_reference(structure_set, candidates)
        check_on_reference(structure_set, reference)
    except LuDoseResponseError as exc:
        checker.error(f"{key}.{field}", f"{exc}" + ("" if explicit is not None else
                                                    f" (set {key}.reference to the image it was drawn on)"))
        return None
    checker.note(f"{key}.{field}: the RTSTRUCT {tumours} is rasterised onto {how}")
    return reference


def _check_ct_overlap(checker: _Checker, key: str, spect: SeriesMetadata, ct: SeriesMetadata | None,
                      ct_key: str) -> None:
    if ct is None:
        return
    g_spect, g_ct = _grid(spect), _grid(ct)
    if g_spect is None or g_ct is None:
        return
    overlap = _overlap(g_spect, g_ct)
    same_frame = (spect.frame_of_reference_uid is not None
                  and spect.frame_of_reference_uid == ct.frame_of_reference_uid)
    if not overlap:
        frames = "the same frame of reference" if same_frame else "different frames of reference"
        checker.error(key, f"{spect.path} and the CT {ct.path} ({ct_key}) have {frames} and do not overlap in "
                           "space; register the SPECT to the CT first")
    elif not same_frame:
        checker.warn(f"{key}: {spect.path} and the CT {ct.path} have different (or missing) frames of reference; "
                     "they overlap in space, so they are assumed registered")


def _spect(checker: _Checker, raw: Any, key: str, ct_meta: SeriesMetadata | None, ct_key: str):
    """Validate one [[cycles.spect]] entry; returns (fields, metadata) for the cycle to finish."""
    table = checker.table(raw, key, _SPECT_KEYS)
    path = checker.file(table.get("path"), f"{key}.path")
    series_uid = checker.string(table.get("series_uid"), f"{key}.series_uid")
    acquired_at = checker.when(table.get("acquired_at"), f"{key}.acquired_at")
    duration_s = checker.number(table.get("duration_s"), f"{key}.duration_s")
    units = checker.string(table.get("units"), f"{key}.units", choices=UNITS)
    if path is None:
        return None
    meta = checker.header(path, series_uid, f"{key}.path")
    if meta is None:
        return None
    checker.dicom_warnings(f"{key}.path", meta)
    if meta.modality not in (None, "NM", "PT"):
        checker.error(f"{key}.path", f"{meta.path} is a {meta.modality} series, not a SPECT (NM or PT)")
        return None
    if meta.spacing_mm is None:
        problems = "; ".join(meta.warnings) or "no voxel grid"
        checker.error(f"{key}.path", f"{meta.path} cannot be read as a volume: {problems}")
        return None
    where = meta.path
    acquired_at = _choose(checker, f"{key}.acquired_at", acquired_at, meta.acquired_at,
                          meta.sources.get("acquired_at"), where)
    units = _choose(checker, f"{key}.units", units, meta.units, meta.sources.get("units"), where)
    duration_s = _choose(checker, f"{key}.duration_s", duration_s, meta.duration_s,
                         meta.sources.get("duration_s"), where)
    if acquired_at is None:
        checker.error(f"{key}.acquired_at", f"not in the manifest and not in the DICOM of {where}; give it")
    if units not in UNITS:
        checker.error(f"{key}.units", f"not in the manifest and not known from {where} (DICOM says "
                                      f"{meta.units!r}); give counts or bq_per_ml")
    elif units == "counts" and duration_s is None:
        checker.error(f"{key}.duration_s", f"the SPECT is in counts and {where} gives no acquisition duration; "
                                           "give duration_s in seconds")
    for name, value in (("acquired_at", acquired_at), ("units", units), ("duration_s", duration_s)):
        if value is not None and value != getattr(meta, name):
            meta = meta.with_value(name, value, f"manifest {checker.manifest} {key}.{name}")
    _check_ct_overlap(checker, key, meta, ct_meta, ct_key)
    return {"key": key, "path": path, "series_uid": series_uid, "acquired_at": acquired_at,
            "duration_s": duration_s, "units": units}, meta


def _planar(checker: _Checker, raw: Any, key: str):
    table = checker.table(raw, key, _PLANAR_KEYS)
    anterior = checker.file(table.get("anterior"), f"{key}.anterior")
    posterior = checker.file(table.get("posterior"), f"{key}.posterior")
    series_uid = checker.string(table.get("series_uid"), f"{key}.series_uid")
    acquired_at = checker.when(table.get("acquired_at"), f"{key}.acquired_at")
    calibration = checker.number(table.get("calibration_cps_per_mbq"), f"{key}.calibration_cps_per_mbq")
    if calibration is None and "calibration_cps_per_mbq" not in table:
        checker.error(f"{key}.calibration_cps_per_mbq", "is required for planar images")
    elif calibration is not None:
        for w in calibration_warnings(calibration, f"{key}.calibration_cps_per_mbq"):
            checker.warn(w)
    headers: dict[str, PlanarHeader] = {}
    for side, path in (("anterior", anterior), ("posterior", posterior)):
        if path is not None:
            try:
                headers[side] = read_planar_header(path)
            except LuDoseResponseError as exc:
                checker.error(f"{key}.{side}", str(exc))
    for side, header in headers.items():
        if side not in header.views.values():
            checker.error(f"{key}.{side}", f"{header.path} holds no {side} view (it has "
                                           f"{', '.join(sorted(set(header.views.values())))}); conjugate-view "
                                           "quantification needs both views")
    if len(headers) == 2:
        a, p = headers["anterior"], headers["posterior"]
        if a.rows_columns != p.rows_columns or not np.allclose(a.pixel_mm, p.pixel_mm, rtol=1e-4):
            checker.error(f"{key}.posterior", f"{p.path} has a {p.rows_columns} matrix of {p.pixel_mm} mm pixels, "
                                              f"the anterior {a.path} {a.rows_columns} of {a.pixel_mm} mm; both views "
                                              "must share matrix and pixel size")
    front = headers.get("anterior")
    if front is not None:
        acquired_at = _choose(checker, f"{key}.acquired_at", acquired_at, front.acquired_at,
                              "AcquisitionDate/AcquisitionTime", str(front.path))
    if acquired_at is None and anterior is not None:
        checker.error(f"{key}.acquired_at", "not in the manifest and not in the anterior image's DICOM; give it")
    return {"key": key, "anterior": anterior, "posterior": posterior, "series_uid": series_uid,
            "acquired_at": acquired_at, "calibration_cps_per_mbq": calibration, "header": front}


def _check_planar_grids(checker: _Checker, planars: list[dict[str, Any]]) -> None:
    """Every planar time point of a cycle on the first one's matrix and pixel size (the ROIs are shared)."""
    headed = [(f["key"], f["header"]) for f in planars if f.get("header") is not None]
    for key, header in headed[1:]:
        first_key, first = headed[0]
        if header.rows_columns != first.rows_columns or not np.allclose(header.pixel_mm, first.pixel_mm, rtol=1e-4):
            checker.error(f"{key}.anterior", f"{header.path} has a {header.rows_columns} matrix of {header.pixel_mm} "
                                             f"mm pixels, {first_key} {first.rows_columns} of {first.pixel_mm} mm; "
                                             "every planar time point of a cycle must use the same matrix and pixel "
                                             "size")


def _agreed(checker: _Checker, key: str, found: list[tuple[Any, str, str]], same) -> tuple[Any, str, str] | None:
    """The one DICOM value all SPECTs agree on, or an error naming the disagreeing files."""
    if not found:
        return None
    first = found[0]
    for other in found[1:]:
        if not same(first[0], other[0]):
            checker.error(key, f"not in the manifest, and the DICOM files disagree: {_show(first[0])} in {first[2]} "
                               f"vs {_show(other[0])} in {other[2]}; give it in the manifest")
            return None
    return first


def _cycle(checker: _Checker, raw: Any, key: str) -> Cycle | None:
    table = checker.table(raw, key, _CYCLE_KEYS)
    number_raw = table.get("number")
    number = None
    if number_raw is None:
        checker.error(f"{key}.number", "is required")
    elif isinstance(number_raw, bool) or not isinstance(number_raw, int) or number_raw < 1:
        checker.error(f"{key}.number", f"must be a positive integer, got {number_raw!r}")
    else:
        number = number_raw
    administered_at = checker.when(table.get("administered_at"), f"{key}.administered_at")
    activity_mbq = checker.number(table.get("activity_mbq"), f"{key}.activity_mbq")
    calibration = checker.number(table.get("calibration_cps_per_mbq"), f"{key}.calibration_cps_per_mbq")
    if calibration is not None:
        for w in calibration_warnings(calibration, f"{key}.calibration_cps_per_mbq"):
            checker.warn(w)
    tumours = checker.file(table.get("tumours"), f"{key}.tumours")
    if tumours is not None:
        checker.segmentations.append((f"{key}.tumours", tumours))
    organs = _organs(checker, table, key, tumours)

    ct_raw, ct, ct_uid, ct_meta = table.get("ct"), None, None, None
    if isinstance(ct_raw, dict):
        ct_table = checker.table(ct_raw, f"{key}.ct", _CT_KEYS)
        ct = checker.file(ct_table.get("path"), f"{key}.ct.path")
        ct_uid = checker.string(ct_table.get("series_uid"), f"{key}.ct.series_uid")
    elif ct_raw is not None:
        ct = checker.file(ct_raw, f"{key}.ct")
    ct_reference = ImageReference(ct, ct_uid) if ct is not None else None
    reference = _tumours_reference(checker, key, tumours, table.get("reference"), ct_reference)
    organs_reference = reference if organs == tumours else \
        _tumours_reference(checker, key, organs, table.get("reference"), ct_reference, field="organs")
    if ct is not None:
        ct_meta = checker.header(ct, ct_uid, f"{key}.ct")
        if ct_meta is not None and ct_meta.modality not in (None, "CT"):
            checker.error(f"{key}.ct", f"{ct_meta.path} is a {ct_meta.modality} series, not a CT")
            ct_meta = None
        elif ct_meta is not None:
            checker.dicom_warnings(f"{key}.ct", ct_meta)

    spect_raw = checker.array(table.get("spect"), f"{key}.spect")
    if not spect_raw and "spect" not in table:
        checker.error(f"{key}.spect", "at least one [[cycles.spect]] is required")
    spects = [_spect(checker, s, f"{key}.spect[{i}]", ct_meta, f"{key}.ct") for i, s in enumerate(spect_raw)]
    spects = [s for s in spects if s is not None]
    planars = [_planar(checker, p, f"{key}.planar[{i}]")
               for i, p in enumerate(checker.array(table.get("planar"), f"{key}.planar"))]
    _check_planar_grids(checker, planars)
    for fields in planars:
        fields.pop("header")

    # administration: manifest, else the value all SPECT headers agree on
    metas = [m for _, m in spects]
    dicom_admin = _agreed(checker, f"{key}.administered_at",
                          [(m.administered_at, m.sources.get("administered_at", ""), m.path)
                           for m in metas if m.administered_at is not None] if administered_at is None else [],
                          lambda a, b: abs((a - b).total_seconds()) <= _SAME_TIME_S)
    dicom_activity = _agreed(checker, f"{key}.activity_mbq",
                             [(m.activity_mbq, m.sources.get("activity_mbq", ""), m.path)
                              for m in metas if m.activity_mbq is not None] if activity_mbq is None else [],
                             lambda a, b: math.isclose(a, b, rel_tol=_SAME_ACTIVITY_RTOL))
    for m in metas:  # log what the manifest overrides
        if administered_at is not None and m.administered_at is not None:
            _choose(checker, f"{key}.administered_at", administered_at, m.administered_at,
                    m.sources.get("administered_at"), m.path)
        if activity_mbq is not None and m.activity_mbq is not None:
            _choose(checker, f"{key}.activity_mbq", activity_mbq, m.activity_mbq,
                    m.sources.get("activity_mbq"), m.path)
    if administered_at is None and dicom_admin is not None:
        administered_at = _choose(checker, f"{key}.administered_at", None, *dicom_admin)
    if activity_mbq is None and dicom_activity is not None:
        activity_mbq = _choose(checker, f"{key}.activity_mbq", None, *dicom_activity)
    if administered_at is None and not any(e.startswith(f"{key}.administered_at") for e in checker.errors):
        checker.error(f"{key}.administered_at", "not in the manifest and no SPECT's DICOM gives the injection "
                                                "date and time; give it")
    if activity_mbq is None and not any(e.startswith(f"{key}.activity_mbq") for e in checker.errors):
        checker.error(f"{key}.activity_mbq", "not in the manifest and no SPECT's DICOM gives it; give it in MBq")
    elif activity_mbq is not None and not (THERAPY_ACTIVITY_RANGE_MBQ[0] <= activity_mbq
                                           <= THERAPY_ACTIVITY_RANGE_MBQ[1]):
        checker.warn(f"{key}.activity_mbq = {activity_mbq:g} MBq is outside the usual Lu-177 therapy range")
    if any(fields["units"] == "counts" for fields, _ in spects) and calibration is None:
        checker.error(f"{key}.calibration_cps_per_mbq", "is required: a SPECT of this cycle is in counts")

    timepoints: list[TimePoint] = []
    for fields, meta in spects:
        hours = _hours_after(checker, fields["key"], fields["acquired_at"], administered_at)
        if hours is not None:
            timepoints.append(TimePoint(**fields, hours_since_administration=hours, metadata=meta))
    _check_distinct(checker, timepoints)
    pairs: list[PlanarPair] = []
    for fields in planars:
        hours = _hours_after(checker, fields["key"], fields["acquired_at"], administered_at)
        if hours is not None and None not in (fields["anterior"], fields["posterior"],
                                              fields["calibration_cps_per_mbq"]):
            pairs.append(PlanarPair(**fields, hours_since_administration=hours))
    kinetics = _kinetics(checker, table, key, n_spect=len(spect_raw), n_planar=len(planars))
    _check_planar_cover(checker, key, timepoints, pairs)
    if None in (number, administered_at, activity_mbq, tumours):
        return None
    return Cycle(number=number, administered_at=administered_at, activity_mbq=activity_mbq,
                 calibration_cps_per_mbq=calibration, tumours=tumours, tumours_reference=reference, ct=ct,
                 ct_series_uid=ct_uid,
                 spect=tuple(sorted(timepoints, key=lambda t: t.acquired_at)),
                 planar=tuple(sorted(pairs, key=lambda p: p.acquired_at)), organs=organs,
                 organs_reference=organs_reference, **kinetics)


def _organs(checker: _Checker, table: dict[str, Any], key: str, tumours: Path | None) -> Path | None:
    """The cycle's organ segmentation: ``organs``, else ``tumours`` when it names kidney segments
    (:mod:`.organ_names`); None when the cycle has no kidney VOI. Names are read from the headers."""
    organs = checker.file(table.get("organs"), f"{key}.organs", required=False)
    candidates = [(f"{key}.organs", organs, True), (f"{key}.tumours", tumours, False)]
    if organs is not None and organs == tumours:      # one file holding tumours and organs
        candidates = [(f"{key}.organs", organs, False)]
    found = []
    for what, path, organs_file in candidates:
        if path is None:
            continue
        try:
            names = segment_names(path)
        except LuDoseResponseError as exc:
            if organs_file:
                checker.error(what, str(exc))
            continue                                 # a tumours file that cannot be read is reported below
        if names is None:
            if organs_file:
                checker.error(what, f"{path} is a label image without segment names; organ VOIs must be named "
                                    "segments (Kidney_L, Kidney_R or Kidneys), e.g. a Slicer .seg.nrrd")
            continue
        for problem in organ_name_problems(names, organs_file=organs_file):
            checker.error(what, f"{path}: {problem}")
        if any(is_organ(n) for n in names):
            found.append((what, path))
    if len(found) == 2:
        checker.error(f"{key}.organs", f"the kidneys are given twice: in {found[0][1]} and as segments of "
                                       f"{key}.tumours {found[1][1]}; keep one")
    return found[0][1] if found else None


def _kinetics(checker: _Checker, table: dict[str, Any], key: str, *, n_spect: int, n_planar: int) -> dict[str, Any]:
    """The reduced-imaging keys of a cycle: ``kinetics`` and, for stp-madsen, the population half-life."""
    kinetics = checker.string(table.get("kinetics"), f"{key}.kinetics", choices=KINETICS)
    t_eff = checker.number(table.get("population_t_eff_h"), f"{key}.population_t_eff_h")
    t_eff_sd = checker.number(table.get("population_t_eff_sd_h"), f"{key}.population_t_eff_sd_h", positive=False)
    if t_eff_sd is not None and t_eff_sd < 0:
        checker.error(f"{key}.population_t_eff_sd_h", f"must be ≥ 0, got {t_eff_sd!r}")
    if kinetics is not None and (n_spect != 1 or n_planar):
        checker.error(f"{key}.kinetics", f"applies to a cycle with one SPECT and no planars (reduced imaging); this "
                                         f"cycle has {n_spect} SPECT(s) and {n_planar} planar(s): remove kinetics, "
                                         "its time–activity curve is measured")
    if kinetics == "stp-madsen" and t_eff is None:
        checker.error(f"{key}.population_t_eff_h", "is required with kinetics = \"stp-madsen\" (the population "
                                                   "effective half-life in hours)")
    if kinetics != "stp-madsen" and (t_eff is not None or t_eff_sd is not None):
        checker.error(f"{key}.population_t_eff_h", "is used only with kinetics = \"stp-madsen\"; remove it or set "
                                                   "kinetics")
    if n_planar == 1:
        checker.error(f"{key}.planar", "the hybrid planar–SPECT method needs at least two [[cycles.planar]] time "
                                       "points for the kinetics")
    return {"kinetics": kinetics, "population_t_eff_h": t_eff, "population_t_eff_sd_h": t_eff_sd}


def _check_planar_cover(checker: _Checker, key: str, timepoints: list[TimePoint], pairs: list[PlanarPair]) -> None:
    """Hybrid method: a SPECT outside the planar times makes the absolute scale an extrapolation."""
    if len(pairs) < 2:
        return
    lo = min(p.hours_since_administration for p in pairs)
    hi = max(p.hours_since_administration for p in pairs)
    for tp in timepoints:
        if not lo <= tp.hours_since_administration <= hi:
            checker.warn(f"{tp.key}: the SPECT at {tp.hours_since_administration:.1f} h is outside the planar times "
                         f"{lo:.1f}–{hi:.1f} h of {key}; the planar activity at the SPECT time is extrapolated with "
                         "the exponential through the two nearest planar samples, so the hybrid scale rests on it")


def _check_from_cycle_1(checker: _Checker, cycles: list[Cycle], raw_cycles: list[Any]) -> None:
    """``kinetics = "from-cycle-1"`` needs a cycle 1 with a measured time–activity curve."""
    keys = {r.get("number"): f"cycles[{i}]" for i, r in enumerate(raw_cycles) if isinstance(r, dict)}
    first = next((c for c in cycles if c.number == 1), None)
    for c in cycles:
        if c.kinetics != "from-cycle-1":
            continue
        key = f"{keys.get(c.number, 'cycles')}.kinetics"
        if c.number == 1:
            checker.error(key, "\"from-cycle-1\" cannot be used by cycle 1 itself")
        elif first is None:
            checker.error(key, "\"from-cycle-1\" needs a cycle with number = 1 in the manifest")
        elif len(first.spect) < 2 and len(first.planar) < 2:
            checker.error(key, f"\"from-cycle-1\" needs cycle 1 ({keys[1]}) to have several SPECTs or planars, so "
                               "that the tumour's effective half-life is measured")


def _check_distinct(checker: _Checker, timepoints: list[TimePoint]) -> None:
    """Two [[cycles.spect]] entries of one cycle must be different scans at different times."""
    for i, a in enumerate(timepoints):
        for b in timepoints[i + 1:]:
            if (a.path, a.series_uid) == (b.path, b.series_uid):
                checker.error(f"{b.key}.path", f"{b.path} is the same series as {a.key}; list each scan once")
            elif a.acquired_at == b.acquired_at:
                checker.error(f"{b.key}.acquired_at", f"{b.acquired_at.isoformat()} is also the time of {a.key}; "
                                                      "two scans of a cycle cannot start at the same time")


def _hours_after(checker: _Checker, key: str, acquired_at: datetime | None,
                 administered_at: datetime | None) -> float | None:
    if acquired_at is None or administered_at is None:
        return None
    hours = (acquired_at - administered_at).total_seconds() / 3600.0
    if hours < 0:
        checker.error(f"{key}.acquired_at", f"{acquired_at.isoformat()} is before the administration "
                                            f"{administered_at.isoformat()}")
        return None
    if hours > _LATE_SCAN_H:
        checker.warn(f"{key}: acquired {hours / 24:.0f} days after the administration; is it of this cycle?")
    return hours


def _followups(checker: _Checker, raw: Any) -> list[FollowUp]:
    out: list[FollowUp] = []
    files: list[tuple[str, Path]] = []
    for i, item in enumerate(checker.array(raw, "followups")):
        key = f"followups[{i}]"
        table = checker.table(item, key, _FOLLOWUP_KEYS)
        day = table.get("date")
        if day is None:
            checker.error(f"{key}.date", "is required")
        elif isinstance(day, datetime) or not isinstance(day, date):
            checker.error(f"{key}.date", f"must be a date like 2019-02-20, got {day!r}")
            day = None
        tumours = checker.file(table.get("tumours"), f"{key}.tumours")
        reference = _tumours_reference(checker, key, tumours, table.get("reference"), None)
        if tumours is not None:
            files.append((f"{key}.tumours", tumours))
        if day is not None and tumours is not None:
            if out and day <= out[-1].date:
                checker.error(f"{key}.date", f"{day.isoformat()} is not after the previous follow-up "
                                             f"{out[-1].date.isoformat()}; list follow-ups in date order, "
                                             "the baseline first")
            out.append(FollowUp(day, tumours, reference))
    checker.segmentations[:0] = files  # follow-ups first: the baseline leads the name check
    return out


def _check_tumour_names(checker: _Checker) -> None:
    """Tumours are joined by name: every segmentation must name the same tumours as the first one (the
    baseline follow-up, else the first cycle's). Read from the .seg.nrrd headers; label images without
    names are checked when they are read."""
    named = []
    for key, path in checker.segmentations:
        try:
            names = segment_names(path)
        except LuDoseResponseError as exc:
            checker.error(key, str(exc))
            continue
        if names is not None:
            named.append((key, path, tuple(n for n in names if not is_organ(n))))
    if not named:
        return
    ref_key, ref_path, ref_names = named[0]
    for key, path, names in named[1:]:
        missing = [n for n in ref_names if n not in names]
        extra = [n for n in names if n not in ref_names]
        if missing or extra:
            what = "; ".join(part for part in (
                f"lacks {', '.join(map(repr, missing))}" if missing else "",
                f"has {', '.join(map(repr, extra))}, unknown in {ref_key}" if extra else "") if part)
            checker.error(key, f"{path} {what} ({ref_path} names {', '.join(map(repr, ref_names))}). Tumours are "
                               "joined by name: give each tumour the same segment name in every segmentation")


def load_manifest(path: str | Path) -> Study:
    """Read and validate a study manifest; raise one ManifestError listing every problem."""
    manifest = Path(path)
    try:
        raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: the manifest does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{manifest}: cannot read the manifest ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{manifest}: not valid TOML: {exc}") from None
    checker = _Checker(manifest.resolve())
    top = checker.table(raw, "", _TOP_KEYS)
    patient_id = checker.string(top.get("patient"), "patient", required=True)
    grade = checker.string(top.get("grade"), "grade", choices=GRADES)

    settings_raw = checker.table(top.get("settings", {}), "settings", _SETTINGS_KEYS)
    values: dict[str, Any] = {}
    for name, choices in SETTINGS_CHOICES.items():
        value = checker.string(settings_raw.get(name), f"settings.{name}", choices=choices)
        if value is not None:
            values[name] = value
    if "density_correction" in settings_raw:
        if isinstance(settings_raw["density_correction"], bool):
            values["density_correction"] = settings_raw["density_correction"]
        else:
            checker.error("settings.density_correction", "must be true or false")
    psf = checker.number(settings_raw.get("psf_fwhm_mm"), "settings.psf_fwhm_mm")
    if psf is not None:
        values["psf_fwhm_mm"] = psf
    for name in ("kidney_alpha_beta_gy", "kidney_repair_half_time_h"):
        value = checker.number(settings_raw.get(name), f"settings.{name}")
        if value is not None:
            values[name] = value
    settings = Settings(**values)

    cycles_raw = checker.array(top.get("cycles"), "cycles")
    if not cycles_raw and "cycles" not in top:
        checker.error("cycles", "at least one [[cycles]] is required")
    cycles = [c for c in (_cycle(checker, c, f"cycles[{i}]") for i, c in enumerate(cycles_raw)) if c is not None]
    numbers = [c.number for c in cycles]
    for n in sorted({n for n in numbers if numbers.count(n) > 1}):
        checker.error("cycles", f"cycle number {n} is used more than once")
    _check_from_cycle_1(checker, cycles, cycles_raw)
    followups = _followups(checker, top.get("followups"))
    _check_tumour_names(checker)

    patient_ids = {tp.metadata.patient_id for c in cycles for tp in c.spect if tp.metadata.patient_id}
    if len(patient_ids) > 1:
        checker.warn(f"the SPECTs carry different DICOM PatientIDs {sorted(patient_ids)}; check that they are "
                     "one patient's")
    if checker.errors:
        raise ManifestError(f"{manifest}: {len(checker.errors)} problem(s):\n  "
                            + "\n  ".join(checker.errors))
    return Study(manifest=checker.manifest, patient=Patient(patient_id, grade), settings=settings,
                 cycles=tuple(sorted(cycles, key=lambda c: c.number)), followups=tuple(followups),
                 overrides=tuple(checker.overrides), warnings=tuple(checker.warnings))
