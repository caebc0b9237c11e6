"""What a DICOM series says about itself: times, activity, units, identifiers, each with its tag.

Every value in :class:`SeriesMetadata` comes with the tag it was read from (``sources``), and
every fallback, contradiction or implausible value is a message in ``warnings``. A value that
the headers do not give is None, never a guess.

Rules
-----
Acquisition start (``acquired_at``), first rule that gives a valid value, earliest over files:
  1. AcquisitionDateTime (0008,002A)
  2. AcquisitionDate (0008,0022) + AcquisitionTime (0008,0032)
  3. SeriesDate (0008,0021) + SeriesTime (0008,0031)            -> a warning names the fallback
  4. ContentDate (0008,0023) + ContentTime (0008,0033)          -> a warning names the fallback
  A time without its date is never combined with another date.

Acquisition duration (``duration_s``), wall-clock seconds of acquisition:
  1. Σ over RotationInformationSequence (0054,0052) items of
     ActualFrameDuration (0018,1242, ms per view) × NumberOfFramesInRotation (0054,0053).
     NumberOfFramesInRotation counts the views of one detector; detectors acquire at the same
     time, so this is the time per view × views, not × views × detectors.
  2. The same two attributes at the top level (some vendors flatten the sequence).
  3. PT objects, and NM WHOLE BODY or STATIC images (ImageType value 3): ActualFrameDuration
     (0018,1242) is the duration of each frame (a whole-body pass, a static view; the detectors'
     frames are acquired at the same time).
  4. AcquisitionDuration (0018,9073, s).
  A SPECT calibration factor in cps/MBq must be defined with this same wall-clock duration.

Administration (RadiopharmaceuticalInformationSequence (0054,0016), first item):
  - ``administered_at`` only from RadiopharmaceuticalStartDateTime (0018,1078). A time-only
    RadiopharmaceuticalStartTime (0018,1072) is reported in a warning and never combined with a
    guessed date: Lu-177 scans are days after the injection. (A StartDateTime that holds only the
    date is completed with the StartTime of the same item, with a warning.)
  - ``hours_since_administration`` is the difference of the two local clock times. When both
    times carry a UTC offset (a DT suffix or TimezoneOffsetFromUTC (0008,0201)) and the offsets
    differ (a daylight-saving change between injection and scan), a warning gives the true
    elapsed time and the acquisition time on the injection's clock for the manifest.
  - ``activity_mbq`` from RadionuclideTotalDose (0018,1074). Vendors store Bq; the standard's text
    says MBq. A value in [1e6, 5e10] is read as Bq; a value in [1, 5e4] (impossible as Bq for a
    therapy) is read as MBq with a warning; anything else is None with a warning.
  - ``half_life_h`` from RadionuclideHalfLife (0018,1075, s); a warning if it is not Lu-177's.

Units of the output pixel values (``units``: 'bq_per_ml', 'counts', 'hu', 'gy' or None):
  0. RT Dose: stored values × DoseGridScaling (3004,000E) (PS3.3 C.8.8.3.4), in Gy when DoseUnits
     (3004,0002) is GY; RELATIVE dose has no unit (None, with a warning). A RescaleSlope that
     differs from DoseGridScaling is reported and not used.
  1. a linear RealWorldValueMappingSequence (0040,9096) item in Bq/mL (or kBq/mL, MBq/mL),
     applied to the *stored* values as PS3.3 C.7.6.16.2.11 defines it;
  2. Units (0054,1001) BQML with the modality rescale (RescaleSlope/Intercept);
  3. a real-world mapping in counts, then Units CNTS;
  4. CT: Hounsfield units with the modality rescale;
  5. NM without Units or a usable mapping: counts (the NM default), with a warning.
  A RescaleSlope (0028,1053) or RescaleIntercept (0028,1052) that is present but not a usable
  number (not finite; a slope <= 0), or a Modality LUT Sequence (0028,3000), leaves the units
  unknown (None) with a warning, unless a real-world value mapping (applied to stored values)
  gives them: such values are never read as if the rescale were absent.

Lossy compression: LossyImageCompression (0028,2110) = 01 in any file of the series, or a lossy
transfer syntax (JPEG Baseline/Extended, JPEG-LS near-lossless, JPEG 2000, HTJ2K), is a warning:
the stored values are not those the scanner reconstructed, so activities and doses are not exact.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.dicom.enhanced import functional_rescale
from LuDoseResponseLib.io.dicom.geometry import Layout, image_type_3
from LuDoseResponseLib.io.dicom.tags import (
    first_item,
    get,
    get_float,
    get_str,
    label,
    parse_da,
    parse_date_time,
    parse_dt,
    parse_tm,
)
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H

#: RadionuclideTotalDose read as Bq when within this range (1 MBq – 50 GBq)
TOTAL_DOSE_BQ_RANGE = (1e6, 5e10)
#: RadionuclideTotalDose read as MBq (the standard's text) when within this range
TOTAL_DOSE_MBQ_RANGE = (1.0, 5e4)
#: administered activity per Lu-177 DOTATATE cycle outside which a warning is given (MBq)
THERAPY_ACTIVITY_RANGE_MBQ = (1000.0, 12000.0)
#: acquisition durations outside this range (s) are implausible for a SPECT and give a warning
DURATION_RANGE_S = (60.0, 3 * 3600.0)

_START_RULES = (
    ("AcquisitionDateTime",),
    ("AcquisitionDate", "AcquisitionTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
)
_BQ_PER_ML_CODES = {"bq/ml": 1.0, "bq/cm3": 1.0, "bqml": 1.0, "kbq/ml": 1e3, "kbq/cm3": 1e3,
                    "mbq/ml": 1e6, "mbq/cm3": 1e6}
_COUNT_CODES = {"{counts}", "{cnts}", "counts", "cnts", "{count}"}
_UTC_OFFSET = re.compile(r"^([+\-])(\d{2}):?(\d{2})$")
_DATE_ONLY_DT = re.compile(r"^(\d{8})(?:[+\-]\d{4})?$")
#: transfer syntaxes that may hold lossy compressed pixel data (PS3.5 §8.2, A.4)
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline", "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}


@dataclass(frozen=True)
class ValueMapping:
    """How one file's stored pixel values become output values: out = slope · stored + intercept.

    ``problem`` says why the stored values cannot be mapped at all (then ``units`` is None and
    reading the pixels is an error).
    """

    slope: float
    intercept: float
    units: str | None
    source: str
    warnings: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class SeriesMetadata:
    """One series as read: identifiers, times, activity, units and grid, with sources and warnings.

    Times are naive local datetimes; ``hours_since_administration`` is derived from them.
    Grid fields follow ITK/LPS (``dicom_geometry``); they are None where no grid could be built.
    """

    path: str
    n_files: int
    modality: str | None = None
    sop_class_uid: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    study_uid: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    study_id: str | None = None
    accession_number: str | None = None
    study_description: str | None = None
    series_uid: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    frame_of_reference_uid: str | None = None
    image_type: str | None = None
    acquired_at: datetime | None = None
    duration_s: float | None = None
    administered_at: datetime | None = None
    activity_mbq: float | None = None
    half_life_h: float | None = None
    radionuclide: str | None = None
    units: str | None = None
    decay_correction: str | None = None
    size: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    origin_mm: tuple[float, float, float] | None = None
    direction: tuple[float, ...] | None = None
    sop_instance_uids: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def hours_since_administration(self) -> float | None:
        """(acquired_at − administered_at) in hours, or None if either is unknown."""
        if self.acquired_at is None or self.administered_at is None:
            return None
        return (self.acquired_at - self.administered_at).total_seconds() / 3600.0

    def with_value(self, name: str, value: Any, source: str) -> SeriesMetadata:
        """A copy with ``name`` set to ``value`` and its source recorded (used for manifest overrides)."""
        if name not in {f.name for f in dataclasses.fields(self)} or name in ("sources", "warnings"):
            raise KeyError(name)
        return dataclasses.replace(self, **{name: value}, sources={**self.sources, name: source})

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict: ISO datetimes, plain floats and lists, None for unknown."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "sop_instance_uids":
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[f.name] = value
        hours = self.hours_since_administration
        out["hours_since_administration"] = hours
        return out


# ----------------------------------------------------------------------------------------- times


def _offset_note(offsets: set[str | None]) -> str:
    """' (UTC offset +0100 dropped: local clock time)' when a DT carried one; the offset is kept visible
    so that a daylight-saving change between injection and scan can be seen."""
    given = sorted(o for o in offsets if o)
    return f" (UTC offset {', '.join(given)} dropped: local clock time)" if given else ""


def _utc_offset_h(ds: Dataset, own_offset: str | None) -> float | None:
    """UTC offset (h) of a time read from ``ds``: a DT's own '&ZZXX', else TimezoneOffsetFromUTC (0008,0201)."""
    text = own_offset or get_str(ds, "TimezoneOffsetFromUTC")
    m = _UTC_OFFSET.match(text or "")
    if not m:
        return None
    return (1 if m[1] == "+" else -1) * (int(m[2]) + int(m[3]) / 60.0)


def acquisition_start(headers: list[Dataset], name: str
                      ) -> tuple[datetime | None, str | None, list[str], float | None]:
    """Acquisition start by the rules in the module docstring: (value, source, warnings, UTC offset in h).

    The UTC offset is that of the earliest value, when its header gives one (else None).
    """
    skipped: list[str] = []
    for i, rule in enumerate(_START_RULES):
        values, problems, offsets = [], [], set()
        for ds in headers:
            offset = None
            if len(rule) == 1:
                raw = get(ds, rule[0])
                if raw is None:
                    continue
                value, offset = parse_dt(raw)
                offsets.add(offset)
                if value is None:
                    problems.append(f"{label(rule[0])} has an invalid value {str(raw)!r}")
            else:
                value, problem = parse_date_time(ds, *rule)
                if problem:
                    problems.append(problem)
            if value is not None:
                values.append((value, _utc_offset_h(ds, offset)))
        if values:
            earliest, earliest_offset_h = min(values, key=lambda v: v[0])
            values = [v for v, _ in values]
            source = " + ".join(label(k) for k in rule)
            if len(headers) > 1:
                source += f" (earliest of {len(headers)} files)"
            source += _offset_note(offsets)
            warnings = []
            if i > 1:  # rules 1 and 2 are the same information (enhanced vs classic objects)
                missing = "; ".join(skipped) if skipped else "earlier rules give no value"
                warnings.append(f"{name}: acquisition start taken from {' + '.join(label(k) for k in rule)} "
                                f"because {missing}; confirm it or give acquired_at in the manifest")
            if i == 0:  # both forms present and different: contradictory
                classic = [v for ds in headers if (v := parse_date_time(ds, *_START_RULES[1])[0]) is not None]
                if classic and abs((min(classic) - min(values)).total_seconds()) > 1.0:
                    warnings.append(f"{name}: {label('AcquisitionDateTime')} {min(values).isoformat()} contradicts "
                                    f"{label('AcquisitionDate')} + {label('AcquisitionTime')} "
                                    f"{min(classic).isoformat()}; the former is used")
            return earliest, source, warnings, earliest_offset_h
        names = " + ".join(rule)
        skipped.append(f"{names}: {problems[0]}" if problems else f"{names} absent")
    return None, None, [f"{name}: no acquisition date and time ({'; '.join(skipped)}); "
                        "give acquired_at in the manifest"], None


def acquisition_duration(ds: Dataset, modality: str, name: str) -> tuple[float | None, str | None, list[str]]:
    """Wall-clock acquisition duration in s by the rules in the module docstring."""
    warnings: list[str] = []
    duration, source = None, None
    rotations = get(ds, "RotationInformationSequence")
    if rotations is not None:
        total, ok = 0.0, True
        for item in rotations:
            ms, views = get_float(item, "ActualFrameDuration"), get_float(item, "NumberOfFramesInRotation")
            if ms is None or views is None or ms <= 0 or views <= 0:  # one unusable rotation spoils the sum
                ok = False
                break
            total += ms / 1000.0 * views
        if ok:
            duration = total
            source = (f"RotationInformationSequence (0054,0052) [{len(rotations)} item(s)] > "
                      f"{label('ActualFrameDuration')} × {label('NumberOfFramesInRotation')}")
        else:
            warnings.append(f"{name}: an item of {label('RotationInformationSequence')} lacks a positive "
                            f"{label('ActualFrameDuration')} or {label('NumberOfFramesInRotation')}")
    if duration is None:
        ms, views = get_float(ds, "ActualFrameDuration"), get_float(ds, "NumberOfFramesInRotation")
        if ms is not None and views is not None and ms > 0 and views > 0:
            duration = ms / 1000.0 * views
            source = f"{label('ActualFrameDuration')} × {label('NumberOfFramesInRotation')} (top level)"
        elif ms is not None and ms > 0 and modality == "PT":
            duration = ms / 1000.0
            source = f"{label('ActualFrameDuration')} (PT: duration of the whole frame)"
        elif ms is not None and ms > 0 and modality == "NM" and image_type_3(ds) in ("WHOLE BODY", "STATIC"):
            duration = ms / 1000.0
            source = (f"{label('ActualFrameDuration')} (NM {image_type_3(ds)}: duration of each frame, the "
                      "detectors' frames simultaneous)")
    declared = get_float(ds, "AcquisitionDuration")
    if duration is None and declared is not None and declared > 0:
        duration, source = declared, label("AcquisitionDuration")
    elif duration is not None and declared is not None and abs(declared - duration) > 0.02 * duration:
        warnings.append(f"{name}: {label('AcquisitionDuration')} = {declared:g} s contradicts {source} = "
                        f"{duration:g} s; the latter is used. Check and give duration_s in the manifest")
    if duration is None:
        if modality in ("NM", "PT"):
            warnings.append(f"{name}: acquisition duration unknown (no {label('RotationInformationSequence')}, "
                            f"{label('ActualFrameDuration')} with {label('NumberOfFramesInRotation')}, or "
                            f"{label('AcquisitionDuration')}); give duration_s in the manifest")
        return None, None, warnings
    if not DURATION_RANGE_S[0] <= duration <= DURATION_RANGE_S[1]:
        warnings.append(f"{name}: acquisition duration {duration:g} s from {source} is outside the plausible "
                        f"{DURATION_RANGE_S[0]:g}–{DURATION_RANGE_S[1]:g} s (ms read as s?); check it")
    return duration, source, warnings


def _clock_change(ds: Dataset, name: str, acquired_at: datetime, acquired_offset_h: float | None,
                  administered_at: datetime) -> list[str]:
    """A warning when the acquisition and the injection carry different UTC offsets (a daylight-saving
    change between them): the local clock times then differ from the true elapsed time."""
    item = first_item(ds, "RadiopharmaceuticalInformationSequence")
    start_raw = get(item, "RadiopharmaceuticalStartDateTime") if item is not None else None
    admin_offset_h = _utc_offset_h(ds, parse_dt(start_raw)[1] if start_raw is not None else None)
    if acquired_offset_h is None or admin_offset_h is None or acquired_offset_h == admin_offset_h:
        return []
    shift = timedelta(hours=acquired_offset_h - admin_offset_h)
    clock_h = (acquired_at - administered_at).total_seconds() / 3600.0
    true_h = clock_h - shift.total_seconds() / 3600.0
    return [f"{name}: the acquisition's UTC offset ({acquired_offset_h:+g} h) differs from the injection's "
            f"({admin_offset_h:+g} h), e.g. a daylight-saving change: the local clock times are {clock_h:.4g} h "
            f"apart but the true elapsed time is {true_h:.4g} h. Give acquired_at = "
            f"{(acquired_at - shift).isoformat()} (the injection's clock) in the manifest"]


# ------------------------------------------------------------------------------- administration


def _activity_mbq(raw: Any, name: str) -> tuple[float | None, str | None, list[str]]:
    tag = label("RadionuclideTotalDose")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None, None, [f"{name}: {tag} has an invalid value {str(raw)!r}; give activity_mbq in the manifest"]
    if TOTAL_DOSE_BQ_RANGE[0] <= value <= TOTAL_DOSE_BQ_RANGE[1]:
        activity, source, warnings = value / 1e6, f"RadiopharmaceuticalInformationSequence[0] > {tag} [Bq]", []
    elif TOTAL_DOSE_MBQ_RANGE[0] <= value <= TOTAL_DOSE_MBQ_RANGE[1]:
        activity, source = value, f"RadiopharmaceuticalInformationSequence[0] > {tag} [MBq]"
        warnings = [f"{name}: {tag} = {value:g} is implausible in Bq (the vendors' unit) and was read as MBq "
                    "(the unit the standard's text gives); confirm activity_mbq in the manifest"]
    else:
        return None, None, [f"{name}: {tag} = {value:g} is implausible both in Bq and in MBq; "
                            "give activity_mbq in the manifest"]
    if not THERAPY_ACTIVITY_RANGE_MBQ[0] <= activity <= THERAPY_ACTIVITY_RANGE_MBQ[1]:
        warnings.append(f"{name}: administered activity {activity:g} MBq is outside the usual Lu-177 "
                        f"therapy range {THERAPY_ACTIVITY_RANGE_MBQ[0]:g}–{THERAPY_ACTIVITY_RANGE_MBQ[1]:g} MBq")
    return activity, source, warnings


def administration(ds: Dataset, name: str) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """administered_at, activity_mbq, half_life_h and radionuclide from the radiopharmaceutical sequence."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    seq = get(ds, "RadiopharmaceuticalInformationSequence")
    if seq is None:
        if (get_str(ds, "Modality") or "").upper() in ("NM", "PT"):
            warnings.append(f"{name}: {label('RadiopharmaceuticalInformationSequence')} is absent; the "
                            "administration time and activity must be given in the manifest")
        return values, sources, warnings
    item = seq[0]
    prefix = "RadiopharmaceuticalInformationSequence[0] > "
    if len(seq) > 1:
        warnings.append(f"{name}: {label('RadiopharmaceuticalInformationSequence')} has {len(seq)} items; "
                        "the first is used")
    start_dt_raw = get(item, "RadiopharmaceuticalStartDateTime")
    start_tm_raw = get(item, "RadiopharmaceuticalStartTime")
    date_only = _DATE_ONLY_DT.match(str(start_dt_raw).strip()) if start_dt_raw is not None else None
    clock = parse_tm(start_tm_raw) if start_tm_raw is not None else None
    if date_only and parse_da(date_only[1]) is not None and clock is not None:
        # a DT holding only the date, and the time in the same item: both are of this injection, nothing guessed
        values["administered_at"] = datetime.combine(parse_da(date_only[1]), clock)
        sources["administered_at"] = (f"{prefix}{label('RadiopharmaceuticalStartDateTime')} (date only) + "
                                      f"{label('RadiopharmaceuticalStartTime')}")
        warnings.append(f"{name}: {label('RadiopharmaceuticalStartDateTime')} {str(start_dt_raw).strip()!r} has no "
                        f"time of day; the injection time {clock} is taken from "
                        f"{label('RadiopharmaceuticalStartTime')} of the same item. Confirm administered_at")
    elif start_dt_raw is not None:
        start, offset = parse_dt(start_dt_raw)
        if start is None:
            what = "has no time of day" if date_only else "has an invalid value"
            warnings.append(f"{name}: {label('RadiopharmaceuticalStartDateTime')} {what} {str(start_dt_raw)!r}; "
                            "give administered_at in the manifest")
        else:
            values["administered_at"] = start
            sources["administered_at"] = prefix + label("RadiopharmaceuticalStartDateTime") + _offset_note({offset})
            if clock is not None and clock.replace(microsecond=0) != start.time().replace(microsecond=0):
                warnings.append(f"{name}: {label('RadiopharmaceuticalStartTime')} {clock} contradicts "
                                f"{label('RadiopharmaceuticalStartDateTime')} {start}; the date-time is used")
    elif start_tm_raw is not None:
        warnings.append(f"{name}: only the time {str(start_tm_raw).strip()!r} of the injection is given "
                        f"({label('RadiopharmaceuticalStartTime')}), without a date; it is not combined with a "
                        "guessed date. Give administered_at in the manifest")
    else:
        warnings.append(f"{name}: no injection time ({label('RadiopharmaceuticalStartDateTime')}); give "
                        "administered_at in the manifest")

    dose_raw = get(item, "RadionuclideTotalDose")
    if dose_raw is None:
        warnings.append(f"{name}: {label('RadionuclideTotalDose')} is absent; give activity_mbq in the manifest")
    else:
        activity, source, w = _activity_mbq(dose_raw, name)
        warnings += w
        if activity is not None:
            values["activity_mbq"], sources["activity_mbq"] = activity, source

    half_life_s = get_float(item, "RadionuclideHalfLife")
    if half_life_s is not None and half_life_s > 0:
        values["half_life_h"] = half_life_s / 3600.0
        sources["half_life_h"] = prefix + label("RadionuclideHalfLife")
        if abs(values["half_life_h"] / LU177_HALF_LIFE_H - 1.0) > 0.01:
            warnings.append(f"{name}: {label('RadionuclideHalfLife')} = {half_life_s:g} s "
                            f"({values['half_life_h']:.4g} h) is not Lu-177's {LU177_HALF_LIFE_H:.6g} h; "
                            "this software assumes Lu-177")
    code = first_item(item, "RadionuclideCodeSequence")
    nuclide = get_str(code, "CodeMeaning") if code is not None else None
    if nuclide:
        values["radionuclide"] = nuclide
        sources["radionuclide"] = prefix + "RadionuclideCodeSequence (0054,0300) > " + label("CodeMeaning")
    elif get_str(item, "Radiopharmaceutical"):
        values["radionuclide"] = get_str(item, "Radiopharmaceutical")
        sources["radionuclide"] = prefix + label("Radiopharmaceutical")
    return values, sources, warnings


# ---------------------------------------------------------------------------------------- units


def _rwvm_candidates(ds: Dataset, name: str) -> tuple[list[tuple[str, float, float, str]], list[str]]:
    """Linear real-world value mappings of ``ds`` as (units, slope, intercept, source)."""
    out, warnings = [], []
    seq = get(ds, "RealWorldValueMappingSequence")
    for n, item in enumerate(seq or []):
        code = first_item(item, "MeasurementUnitsCodeSequence")
        code_value = (get_str(code, "CodeValue") or "") if code is not None else ""
        key = code_value.strip().lower()
        where = f"RealWorldValueMappingSequence[{n}]"
        slope, intercept = get_float(item, "RealWorldValueSlope"), get_float(item, "RealWorldValueIntercept")
        slope_raw, intercept_raw = get(item, "RealWorldValueSlope"), get(item, "RealWorldValueIntercept")
        if slope is None or slope <= 0 or (intercept is None and intercept_raw is not None):
            if get(item, "RealWorldValueLUTData") is not None:
                warnings.append(f"{name}: {where} is a lookup table ({label('RealWorldValueLUTData')}); "
                                "only linear mappings are supported, it is ignored")
            else:
                warnings.append(f"{name}: {where} has no usable {label('RealWorldValueSlope')} (finite, > 0) and "
                                f"{label('RealWorldValueIntercept')} (slope {str(slope_raw)!r}, intercept "
                                f"{str(intercept_raw)!r}); it is ignored")
            continue
        intercept = intercept or 0.0
        if key in _BQ_PER_ML_CODES:
            scale = _BQ_PER_ML_CODES[key]
            out.append(("bq_per_ml", slope * scale, intercept * scale,
                        f"{where} > {label('RealWorldValueSlope')}/{label('RealWorldValueIntercept')} "
                        f"[{code_value}] applied to stored values"))
        elif key in _COUNT_CODES:
            out.append(("counts", slope, intercept,
                        f"{where} > {label('RealWorldValueSlope')}/{label('RealWorldValueIntercept')} "
                        f"[{code_value}] applied to stored values"))
        else:
            warnings.append(f"{name}: {where} has units {code_value!r}, neither Bq/mL nor counts; ignored")
    return out, warnings


def _rescale_problem(ds: Dataset, name: str) -> str | None:
    """Why the modality rescale (PS3.3 C.11.1.1.2) of ``ds`` cannot be applied, or None.

    An absent RescaleSlope/RescaleIntercept is the identity; a present one must be a finite
    number (slope > 0). A Modality LUT Sequence is a non-linear mapping this reader does not apply.
    """
    slope_raw, intercept_raw = get(ds, "RescaleSlope"), get(ds, "RescaleIntercept")
    slope, intercept = get_float(ds, "RescaleSlope"), get_float(ds, "RescaleIntercept")
    if slope_raw is not None and (slope is None or slope <= 0):
        return (f"{name}: {label('RescaleSlope')} = {str(slope_raw)!r} is not a finite number > 0, so the stored "
                "pixel values cannot be mapped to counts, Bq/mL or HU; correct the file (or convert it to NRRD "
                "with the right values)")
    if intercept_raw is not None and intercept is None:
        return (f"{name}: {label('RescaleIntercept')} = {str(intercept_raw)!r} is not a finite number, so the "
                "stored pixel values cannot be mapped; correct the file (or convert it to NRRD with the right "
                "values)")
    if slope_raw is None and get(ds, "ModalityLUTSequence") is not None:
        return (f"{name}: the stored values are mapped by a {label('ModalityLUTSequence')}, which is not "
                "supported; export the series with RescaleSlope/RescaleIntercept or as NRRD")
    return None


def _rt_dose_mapping(ds: Dataset, name: str) -> ValueMapping:
    """Rule 0 of the units: dose = stored × DoseGridScaling (PS3.3 C.8.8.3.4)."""
    scaling_raw, scaling = get(ds, "DoseGridScaling"), get_float(ds, "DoseGridScaling")
    if scaling is None or scaling <= 0:
        problem = (f"{name}: {label('DoseGridScaling')} = {str(scaling_raw)!r} is not a finite number > 0, so the "
                   "stored values cannot be mapped to dose; correct the file")
        return ValueMapping(math.nan, math.nan, None, "no usable mapping", (problem,), problem)
    warnings = []
    slope = get_float(ds, "RescaleSlope")
    if slope is not None and not math.isclose(slope, scaling, rel_tol=1e-6):
        warnings.append(f"{name}: {label('RescaleSlope')} = {slope:g} differs from {label('DoseGridScaling')} = "
                        f"{scaling:g}; the RT Dose scaling is used")
    dose_units = (get_str(ds, "DoseUnits") or "").upper()
    source = f"{label('DoseGridScaling')} [{label('DoseUnits')} {dose_units or 'missing'}]"
    if dose_units == "GY":
        return ValueMapping(scaling, 0.0, "gy", source, tuple(warnings))
    warnings.append(f"{name}: {label('DoseUnits')} is {dose_units or 'missing'}, not GY: the values are not an "
                    "absolute dose in Gy")
    return ValueMapping(scaling, 0.0, None, source, tuple(warnings))


def value_mapping(ds: Dataset, name: str) -> ValueMapping:
    """Choose how ``ds``'s stored values map to output values, by the unit rules in the module docstring."""
    modality = (get_str(ds, "Modality") or "").upper()
    if modality == "RTDOSE":
        return _rt_dose_mapping(ds, name)
    try:
        functional = functional_rescale(ds, name)
    except DicomError as exc:
        return ValueMapping(math.nan, math.nan, None, "no usable mapping", (str(exc),), str(exc))
    rescale_ds = functional if functional is not None else ds   # enhanced: its Pixel Value Transformation
    slope = get_float(rescale_ds, "RescaleSlope")
    intercept = get_float(rescale_ds, "RescaleIntercept")
    rescale = (1.0 if slope is None else slope, 0.0 if intercept is None else intercept)
    rescale_source = (f"{label('RescaleSlope')}/{label('RescaleIntercept')}" if slope is not None
                      else "stored values (no RescaleSlope)")
    if functional is not None:
        rescale_source = f"{label('PixelValueTransformationSequence')} {rescale_source}"
    problem = _rescale_problem(rescale_ds, name)
    units_tag = (get_str(ds, "Units") or "").upper() or None
    rwvm, warnings = _rwvm_candidates(ds, name)
    by_units = {u: (s, i, src) for u, s, i, src in reversed(rwvm)}

    if "bq_per_ml" in by_units:
        s, i, src = by_units["bq_per_ml"]
        if problem is None and units_tag == "BQML" and not (
                math.isclose(s, rescale[0], rel_tol=1e-6) and math.isclose(i, rescale[1], rel_tol=1e-6, abs_tol=1e-9)):
            warnings.append(f"{name}: {label('RealWorldValueMappingSequence')} (slope {s:g}) and {label('Units')} "
                            f"BQML with {rescale_source} (slope {rescale[0]:g}) give different Bq/mL; the "
                            "real-world value mapping is used")
        return ValueMapping(s, i, "bq_per_ml", src, tuple(warnings))
    if problem is not None:
        if "counts" in by_units and units_tag != "BQML":
            s, i, src = by_units["counts"]
            return ValueMapping(s, i, "counts", src, tuple(warnings))
        return ValueMapping(math.nan, math.nan, None, "no usable mapping", (*warnings, problem), problem)
    if units_tag == "BQML":
        return ValueMapping(*rescale, "bq_per_ml", f"{label('Units')} BQML with {rescale_source}", tuple(warnings))
    if "counts" in by_units:
        s, i, src = by_units["counts"]
        return ValueMapping(s, i, "counts", src, tuple(warnings))
    if units_tag == "CNTS":
        return ValueMapping(*rescale, "counts", f"{label('Units')} CNTS with {rescale_source}", tuple(warnings))
    if modality == "CT":
        return ValueMapping(*rescale, "hu", f"CT {rescale_source}", tuple(warnings))
    if modality == "NM" and units_tag is None:
        warnings.append(f"{name}: neither {label('Units')} nor a {label('RealWorldValueMappingSequence')} in "
                        "Bq/mL; the NM pixel values are taken as counts. If they are Bq/mL, set units = "
                        "\"bq_per_ml\" in the manifest")
        return ValueMapping(*rescale, "counts", f"NM default (no {label('Units')}) with {rescale_source}",
                            tuple(warnings))
    what = f"{label('Units')} = {units_tag!r}" if units_tag else f"no {label('Units')}"
    warnings.append(f"{name}: {what}; the pixel values are neither counts nor Bq/mL as far as the header "
                    "says. Give units in the manifest")
    return ValueMapping(*rescale, None, f"{what} with {rescale_source}", tuple(warnings))


def lossy_compression(headers: list[Dataset], name: str) -> list[str]:
    """A warning when any file's pixel values were lossy compressed (module docstring), else nothing."""
    flagged = [ds for ds in headers if (get_str(ds, "LossyImageCompression") or "").strip() == "01"]
    syntaxes = {str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "") for ds in headers}
    lossy_syntaxes = sorted(LOSSY_TRANSFER_SYNTAXES[s] for s in syntaxes if s in LOSSY_TRANSFER_SYNTAXES)
    if not flagged and not lossy_syntaxes:
        return []
    how = []
    if flagged:
        ratio, method = get_str(flagged[0], "LossyImageCompressionRatio"), get_str(flagged[0],
                                                                                  "LossyImageCompressionMethod")
        detail = ", ".join(x for x in (f"ratio {ratio}" if ratio else "", f"method {method}" if method else "") if x)
        how.append(f"{label('LossyImageCompression')} = 01 in {len(flagged)} of {len(headers)} file(s)"
                   + (f" ({detail})" if detail else ""))
    if lossy_syntaxes:
        how.append(f"a lossy transfer syntax ({', '.join(lossy_syntaxes)})")
    return [f"{name}: the pixel values were lossy compressed ({'; '.join(how)}); they are not the values the "
            "scanner reconstructed, so activities and doses computed from them are not exact. Quantify the "
            "original, uncompressed images"]


# -------------------------------------------------------------------------------------- builder


def _identifiers(ds: Dataset) -> dict[str, Any]:
    number = get_float(ds, "SeriesNumber")
    return {
        "modality": (get_str(ds, "Modality") or "").upper() or None,
        "sop_class_uid": get_str(ds, "SOPClassUID"),
        "manufacturer": get_str(ds, "Manufacturer"),
        "model_name": get_str(ds, "ManufacturerModelName"),
        "patient_id": get_str(ds, "PatientID"),
        "patient_name": get_str(ds, "PatientName"),
        "patient_birth_date": get_str(ds, "PatientBirthDate"),
        "patient_sex": get_str(ds, "PatientSex"),
        "study_uid": get_str(ds, "StudyInstanceUID"),
        "study_date": get_str(ds, "StudyDate"),
        "study_time": get_str(ds, "StudyTime"),
        "study_id": get_str(ds, "StudyID"),
        "accession_number": get_str(ds, "AccessionNumber"),
        "study_description": get_str(ds, "StudyDescription"),
        "series_uid": get_str(ds, "SeriesInstanceUID"),
        "series_number": int(number) if number is not None else None,
        "series_description": get_str(ds, "SeriesDescription"),
        "frame_of_reference_uid": get_str(ds, "FrameOfReferenceUID"),
        "image_type": get_str(ds, "ImageType"),
        "decay_correction": (get_str(ds, "DecayCorrection") or "").upper() or None,
    }


_ID_SOURCES = {
    "modality": "Modality", "sop_class_uid": "SOPClassUID", "manufacturer": "Manufacturer",
    "model_name": "ManufacturerModelName", "patient_id": "PatientID", "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate", "patient_sex": "PatientSex", "study_uid": "StudyInstanceUID",
    "study_date": "StudyDate", "study_time": "StudyTime", "study_id": "StudyID",
    "accession_number": "AccessionNumber", "study_description": "StudyDescription",
    "series_uid": "SeriesInstanceUID", "series_number": "SeriesNumber", "series_description": "SeriesDescription",
    "frame_of_reference_uid": "FrameOfReferenceUID", "image_type": "ImageType", "decay_correction": "DecayCorrection",
}


def build_metadata(headers: list[Dataset], files: list[Path], layout: Layout) -> SeriesMetadata:
    """SeriesMetadata of one series from its headers (in any order) and its layout.

    ``path`` is the file of a one-file series, else the deepest folder holding all its files.
    """
    first = headers[0]
    if len(files) == 1:
        path = name = str(files[0])
    else:
        path = os.path.commonpath([str(f.parent) for f in files])
        name = f"{path} (series of {len(files)} files)"
    values = _identifiers(first)
    sources = {k: label(v) for k, v in _ID_SOURCES.items() if values.get(k) is not None}
    warnings: list[str] = list(layout.warnings)
    modality = values["modality"] or ""

    for key, kw in (("modality", "Modality"), ("frame_of_reference_uid", "FrameOfReferenceUID")):
        others = {get_str(ds, kw) for ds in headers[1:]} - {get_str(first, kw)}
        if others:
            warnings.append(f"{name}: {label(kw)} differs between files of one series ({sorted(map(str, others))} "
                            f"vs {values[key]!r})")
    if values["frame_of_reference_uid"] is None and modality in ("NM", "PT", "CT"):
        warnings.append(f"{name}: {label('FrameOfReferenceUID')} is missing; registration to the CT cannot be "
                        "checked")
    if values["series_uid"] is None:
        warnings.append(f"{name}: {label('SeriesInstanceUID')} is missing; the file is read as a series on its own")
    if values["patient_id"] is None:
        warnings.append(f"{name}: {label('PatientID')} is missing")

    acquired_at, src, w, acquired_offset_h = acquisition_start(headers, name)
    warnings += w
    if acquired_at is not None:
        values["acquired_at"], sources["acquired_at"] = acquired_at, src

    if modality in ("NM", "PT"):
        duration, src, w = acquisition_duration(first, modality, name)
        warnings += w
        if duration is not None:
            values["duration_s"], sources["duration_s"] = duration, src
        admin_values, admin_sources, w = administration(first, name)
        values.update(admin_values)
        sources.update(admin_sources)
        warnings += w

    mappings = [value_mapping(ds, str(f)) for ds, f in zip(headers, files, strict=True)]
    warnings += list(dict.fromkeys(w for m in mappings for w in m.warnings))  # once each, in order
    unit_set = {m.units for m in mappings}
    if len(unit_set) > 1:
        warnings.append(f"{name}: files of one series give different units {sorted(map(str, unit_set))}")
        values["units"] = None
    else:
        values["units"] = mappings[0].units
        if values["units"] is not None:  # an unknown value has no source (the warnings say why)
            sources["units"] = mappings[0].source
    warnings += lossy_compression(headers, name)
    if values.get("decay_correction") == "ADMIN":
        warnings.append(f"{name}: pixel values are decay-corrected to the administration time "
                        f"({label('DecayCorrection')} ADMIN), not to the acquisition start")

    admin_at = values.get("administered_at")
    if acquired_at is not None and admin_at is not None:
        hours = (acquired_at - admin_at).total_seconds() / 3600.0
        if hours < 0:
            warnings.append(f"{name}: the acquisition ({acquired_at.isoformat()}) is before the injection "
                            f"({admin_at.isoformat()}); one of the two times is wrong")
        elif hours > 60 * 24:
            warnings.append(f"{name}: the acquisition is {hours / 24:.0f} days after the injection; is the "
                            "injection date that of this cycle?")
        warnings += _clock_change(first, name, acquired_at, acquired_offset_h, admin_at)

    grid = layout.grid
    sources.update(layout.sources)
    uids = tuple(get_str(headers[i], "SOPInstanceUID") or "" for i in
                 (layout.order if layout.kind == "stack" else range(len(headers))))
    return SeriesMetadata(
        path=path, n_files=len(files), **values,
        size=tuple(int(v) for v in layout.size) if all(layout.size) else None,
        spacing_mm=grid.spacing_mm if grid else None,
        origin_mm=grid.origin_mm if grid else None,
        direction=grid.direction if grid else None,
        sop_instance_uids=uids, sources=sources, warnings=tuple(warnings),
    )
