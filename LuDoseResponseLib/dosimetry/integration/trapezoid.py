"""Trapezoid rule with an explicit head (before the first sample) and tail (after the last), vectorised over curves."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.dosimetry.integration.inputs import CAP_TOLERANCE, LN2
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrapezoidColumns:
    """Trapezoid integrals of N curves sampled at the same times (arrays of length N, value·h).

    ``lam_tail``: the decay constant after the last sample (fitted, or λ_phys where physical, capped or
    not fitted); ``fitted``: the tail fit had two positive samples; ``lam_fitted``: its raw value (λ_phys
    where not fitted), below λ_phys where the tail was capped.
    """

    head: np.ndarray
    body: np.ndarray
    tail: np.ndarray
    lam_tail: np.ndarray
    fitted: np.ndarray
    lam_fitted: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.head + self.body + self.tail


def trapezoid_columns(t: np.ndarray, y: np.ndarray, log_weights, head: str, tail: str, tail_points: int,
                      lam_phys: float) -> TrapezoidColumns:
    """Trapezoid rule with explicit head and tail for every column of ``y`` (n_t × N), vectorised.

    Head (before the first sample): ``linear`` from 0 at administration (t₀·y₀/2) or ``constant`` (t₀·y₀);
    none for a t = 0 sample. Tail: ``physical``, y_last/λ_phys; or ``fit``, y_last/λ with λ from a weighted
    least-squares line through ln y of the last ``tail_points`` samples taken at or after the maximum
    (positive ones only, at least two, else λ_phys), capped at λ_phys. ``log_weights``: weights of ln y_i,
    (y_i/σ_i)², broadcastable to ``y``; None for equal weights.
    """
    n = t.size
    n_cols = y.shape[1]
    head_v = np.zeros(n_cols) if t[0] == 0 else (0.5 if head == "linear" else 1.0) * t[0] * y[0]
    body = np.sum(np.diff(t)[:, None] * (y[1:] + y[:-1]) * 0.5, axis=0)
    lam_fit = np.full(n_cols, lam_phys)
    ok = np.zeros(n_cols, bool)
    if tail == "fit":
        start = np.maximum(np.argmax(y, axis=0), n - tail_points)
        use = (np.arange(n)[:, None] >= start[None, :]) & (y > 0)
        w = use * (1.0 if log_weights is None else np.broadcast_to(log_weights, y.shape))
        ln = np.log(np.where(y > 0, y, 1.0))
        ok = use.sum(0) >= 2
        sw = np.where(ok, w.sum(0), 1.0)
        tm = (w * t[:, None]).sum(0) / sw
        lm = (w * ln).sum(0) / sw
        den = np.where(ok, (w * (t[:, None] - tm) ** 2).sum(0), 1.0)
        lam_fit = np.where(ok, -(w * (t[:, None] - tm) * (ln - lm)).sum(0) / den, lam_phys)
    lam = np.maximum(lam_fit, lam_phys)
    return TrapezoidColumns(head_v, body, y[-1] / lam, lam, ok, lam_fit)


def trapezoid_integral(t, y, sd, head, tail, tail_points, lam_phys, what) -> TimeIntegral:
    # Column 0 is the data; with values_sd, columns 1..2n are y ± h·e_i for the central-difference gradient
    # (one-sided where y_i − h would not be positive), all in one vectorised call.
    cols = [y[:, None]]
    if sd is not None:
        h = 1e-6 * np.maximum(y, 1e-9 * float(np.max(y)))
        down_ok = y - h > 0
        eye = np.eye(t.size)
        cols += [y[:, None] + eye * h, y[:, None] - eye * np.where(down_ok, h, 0.0)]
    ys = np.concatenate(cols, axis=1)
    log_w = None if sd is None else (ys / np.maximum(sd, 1e-300)[:, None]) ** 2
    tc = trapezoid_columns(t, ys, log_w, head, tail, tail_points, lam_phys)
    value = float(tc.total[0])
    warnings: list[str] = []
    capped = tail == "fit" and bool(tc.fitted[0]) and tc.lam_fitted[0] < lam_phys
    if capped and tc.lam_fitted[0] < lam_phys * (1 - CAP_TOLERANCE):
        t_fit = "∞" if tc.lam_fitted[0] <= 0 else f"{LN2 / tc.lam_fitted[0]:.4g}"
        warnings.append(f"{what}: the tail exponential fitted to the last samples has an effective half-life of "
                        f"{t_fit} h, longer than the physical half-life {LN2 / lam_phys:.4g} h; capped to the "
                        "physical half-life")
    elif tail == "fit" and not tc.fitted[0]:
        warnings.append(f"{what}: tail: fewer than two positive samples at or after the maximum; physical decay "
                        "used")
    sd_value = None
    if sd is not None:
        n = t.size
        step = h * np.where(down_ok, 2.0, 1.0)
        grad = (tc.total[1:n + 1] - tc.total[n + 1:]) / step
        sd_value = float(math.sqrt(np.sum((grad * sd) ** 2)))
    else:
        warnings.append(f"{what}: trapezoid SD needs values_sd (the SD of each sample); sd is None")
    for w in warnings:
        log.warning(w)
    lam_tail = float(tc.lam_tail[0])
    diagnostics = {"n_points": int(t.size), "head": head, "head_value": float(tc.head[0]),
                   "body_value": float(tc.body[0]), "tail_value": float(tc.tail[0]), "t_last_h": float(t[-1]),
                   "tail_points": int(tail_points), "capped": capped}
    return TimeIntegral(value=value, sd=sd_value, model="trapezoid", method="trapezoid", tail=tail,
                        params={"lambda_tail_per_h": lam_tail}, param_names=("lambda_tail_per_h",),
                        covariance=None, aicc={}, t_eff_h=LN2 / lam_tail, warnings=tuple(warnings),
                        diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------
# Single time point
