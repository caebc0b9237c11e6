"""Low-level DICOM header access: tag labels, empty-aware getters and DA/TM/DT parsing.

Values are read with pydicom from headers only. A missing attribute and an empty one are the
same thing here (``None``): vendors write empty Type 2 attributes where they have no value.
Datetimes are timezone-naive local clock times, as DICOM stores them (DESIGN.md).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue

#: what pydicom raises when a malformed element is parsed on access (a wrong VR or length, a cut value)
MALFORMED_ELEMENT_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError,
                            NotImplementedError, BytesLengthException)

_DA = re.compile(r"^(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+\-]\d{4})?$")


def label(keyword: str) -> str:
    """'AcquisitionDate (0008,0022)': a keyword with its tag, as messages and sources show it."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple | MultiValue) else [value]


def get(ds: Dataset, keyword: str) -> Any:
    """The value of ``keyword`` in ``ds`` (top level only), or None if absent or empty."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element reads as absent; callers warn
        return None
    if value is None:
        return None
    if isinstance(value, str | bytes) and not str(value).strip():
        return None
    try:
        if len(value) == 0:  # empty sequence or multi-value
            return None
    except TypeError:
        pass
    return value


def get_float(ds: Dataset, keyword: str) -> float | None:
    """A numeric attribute as a finite float, or None if absent, empty or not a finite number."""
    value = get(ds, keyword)
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def get_floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """A multi-valued numeric attribute with exactly ``n`` finite values, else None."""
    value = get(ds, keyword)
    if value is None:
        return None
    try:
        items = [float(v) for v in _as_list(value)]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(math.isfinite(v) for v in items):
        return None
    return tuple(items)


def get_str(ds: Dataset, keyword: str) -> str | None:
    """A text attribute stripped of padding, or None; multi-valued text joins with '\\'."""
    value = get(ds, keyword)
    if value is None:
        return None
    return "\\".join(str(v).strip() for v in _as_list(value)) or None


def first_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of a sequence attribute, or None."""
    seq = get(ds, keyword)
    if seq is None:
        return None
    try:
        return seq[0]
    except (TypeError, IndexError):
        return None


def parse_da(value: Any) -> date | None:
    """DICOM DA 'YYYYMMDD' (also the old 'YYYY.MM.DD' and ISO 'YYYY-MM-DD') → date, else None."""
    m = _DA.match(str(value).strip())
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_tm(value: Any) -> time | None:
    """DICOM TM 'HH[MM[SS[.FFFFFF]]]' (also the old 'HH:MM:SS') → time, else None."""
    m = _TM.match(str(value).strip())
    if not m:
        return None
    hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    micro = int((m[4] or "0").ljust(6, "0"))
    second = min(second, 59)  # a leap second '60' is allowed in DICOM; datetime is not
    try:
        return time(hour, minute, second, micro)
    except ValueError:
        return None


def parse_dt(value: Any) -> tuple[datetime | None, str | None]:
    """DICOM DT 'YYYYMMDDHH[MM[SS[.FFFFFF]]][&ZZXX]' → (naive local datetime, UTC offset or None).

    A DT without a time of day is not a usable start time and gives (None, None). The UTC
    offset, when written, is returned so that callers can report it; the clock time is kept.
    """
    text = str(value).strip()
    m = _DT.match(text)
    if not m or not m[2]:
        return None, None
    day = parse_da(m[1])
    clock = parse_tm(m[2])
    if day is None or clock is None:
        return None, None
    return datetime.combine(day, clock), m[3]


def parse_date_time(ds: Dataset, date_kw: str, time_kw: str) -> tuple[datetime | None, str | None]:
    """Combine a DA and a TM attribute of ``ds``.

    Returns (datetime, None) when both are present and valid; (None, problem) when one is
    absent or invalid while the other is present; (None, None) when both are absent.
    """
    d_raw, t_raw = get(ds, date_kw), get(ds, time_kw)
    if d_raw is None and t_raw is None:
        return None, None
    if d_raw is None:
        return None, f"{label(time_kw)} is given without {label(date_kw)}"
    if t_raw is None:
        return None, f"{label(date_kw)} is given without {label(time_kw)}"
    d, t = parse_da(d_raw), parse_tm(t_raw)
    if d is None:
        return None, f"{label(date_kw)} has an invalid value {str(d_raw)!r}"
    if t is None:
        return None, f"{label(time_kw)} has an invalid value {str(t_raw)!r}"
    return datetime.combine(d, t), None
