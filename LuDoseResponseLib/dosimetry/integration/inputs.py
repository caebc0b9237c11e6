"""Checks of the arguments of every integration function, the option names, and the shared constants."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from LuDoseResponseLib.errors import InputError

LN2 = math.log(2.0)
METHODS = ("fit", "trapezoid", "hanscheid", "madsen")
TAILS = ("fit", "physical")
HEADS = ("linear", "constant")
MODEL_ALIASES = {"mono-exponential": "mono", "monoexponential": "mono", "exponential": "mono",
                 "bi-exponential": "bi", "biexponential": "bi", "uptake_washout": "uptake-washout",
                 "uptake-washout": "uptake-washout", "trapezoidal": "trapezoid"}
METHOD_ALIASES = {"trapezoidal": "trapezoid", "trapz": "trapezoid", "hänscheid": "hanscheid"}
CAP_TOLERANCE = 1e-6           # a fitted λ this close below λ_phys is rounding: capped without a warning


def as_1d(name: str, x, what: str) -> np.ndarray:
    """``x`` as a 1-D float array (a scalar becomes length 1); an InputError naming ``name`` otherwise."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} must be numbers, got {x!r}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InputError(f"{what}: {name} must be one-dimensional, got shape {arr.shape}")
    return arr


def check_samples(times_h, values, values_sd, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Times (≥ 0, strictly increasing), values (finite, ≥ 0) and SDs (finite, ≥ 0; a scalar is broadcast)."""
    t = as_1d("times_h", times_h, what)
    y = as_1d("values", values, what)
    if t.size != y.size:
        raise InputError(f"{what}: {t.size} times but {y.size} values; give one value per time point")
    if t.size == 0:
        raise InputError(f"{what}: no samples given")
    if not np.all(np.isfinite(t)):
        raise InputError(f"{what}: times_h contains NaN or infinity at index {int(np.flatnonzero(~np.isfinite(t))[0])}")
    if not np.all(np.isfinite(y)):
        raise InputError(f"{what}: values contain NaN or infinity at index {int(np.flatnonzero(~np.isfinite(y))[0])}")
    if np.any(t < 0):
        i = int(np.flatnonzero(t < 0)[0])
        raise InputError(f"{what}: time {t[i]:g} h (index {i}) is before administration; "
                         "times are hours since administration and must be >= 0")
    if np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise InputError(f"{what}: times must be strictly increasing; index {i + 1} ({t[i + 1]:g} h) "
                         f"follows {t[i]:g} h. Sort the samples and merge duplicates")
    if np.any(y < 0):
        i = int(np.flatnonzero(y < 0)[0])
        raise InputError(f"{what}: value {y[i]:g} at {t[i]:g} h is negative; dose rates and activities "
                         "must be >= 0")
    sd = None
    if values_sd is not None:
        sd = as_1d("values_sd", values_sd, what)
        if sd.size == 1 and y.size > 1:
            sd = np.full(y.size, float(sd[0]))
        if sd.size != y.size:
            raise InputError(f"{what}: values_sd has {sd.size} entries for {y.size} values")
        if not np.all(np.isfinite(sd)) or np.any(sd < 0):
            raise InputError(f"{what}: values_sd must be finite and >= 0")
    return t, y, sd


def finite(name: str, x, what: str, *, positive: bool) -> float:
    """``x`` as a finite float, > 0 (``positive``) or >= 0; an InputError naming ``name`` otherwise."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise InputError(f"{what}: {name} must be finite and {'> 0' if positive else '>= 0'}, got {x!r}")
    return v


def check_tail_points(tail_points, what: str) -> int:
    """An integer ≥ 2 (numpy integers accepted, bools not)."""
    if isinstance(tail_points, bool) or not isinstance(tail_points, numbers.Integral) or tail_points < 2:
        raise InputError(f"{what}: tail_points must be an integer >= 2, got {tail_points!r}")
    return int(tail_points)


def check_choice(name: str, value: str, choices: Sequence[str], what: str) -> None:
    """An InputError listing ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise InputError(f"{what}: unknown {name} {value!r}; use one of {', '.join(choices)}")
