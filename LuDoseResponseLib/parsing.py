"""Numbers typed by a user (command-line options, the Slicer panel's text fields), parsed one way.

Only plain ASCII decimal numbers are accepted (``76``, ``-0.5``, ``1e3``): Python's ``float``
would also take ``nan``, ``inf``, ``1_000`` and non-ASCII digits (full-width, Arabic-Indic), which
a typo or a pasted value can produce unnoticed.
"""

from __future__ import annotations

import math
import re

from LuDoseResponseLib.errors import InputError

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
#: list separators: comma, or semicolon (decimal-comma locales)
_SEPARATORS = re.compile(r"[,;]")


def parse_number(text: str, what: str) -> float:
    """``text`` as a finite float; InputError naming ``what`` and showing the raw text otherwise."""
    part = str(text).strip()
    if not _NUMBER.fullmatch(part):
        raise InputError(f"{what}: {part!r} is not a number; use plain digits such as 76 or 0.5")
    value = float(part)
    if not math.isfinite(value):
        raise InputError(f"{what}: {part!r} is too large to be a number")
    return value


def parse_number_list(text: str, what: str) -> tuple[float, ...]:
    """``"76, 135"`` (or ``"76; 135"``) -> ``(76.0, 135.0)``; InputError naming ``what`` otherwise."""
    parts = [p.strip() for p in _SEPARATORS.split(str(text)) if p.strip()]
    if not parts:
        raise InputError(f"{what}: give at least one number, comma-separated (e.g. 76,135)")
    return tuple(parse_number(p, what) for p in parts)


def positive_number(value, what: str) -> float:
    """A function argument that must be a finite number > 0 (not a bool, not text); InputError naming ``what``."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a finite number > 0, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise InputError(f"{what} must be a finite number > 0, got {value!r}")
    return x
