"""The fitted curve models: formulas, Jacobians, integrals, and a grid search for the starting point.

- ``mono``: f(t) = A·e^(−λt),                    ∫ = A/λ
- ``bi``: f(t) = A1·e^(−λ1 t) + A2·e^(−λ2 t),      ∫ = A1/λ1 + A2/λ2   (λ1 > λ2: fast, slow)
- ``uptake-washout``: f(t) = C·(e^(−λ1 t) − e^(−λ2 t)), ∫ = C·(1/λ1 − 1/λ2)  (λ2 > λ1: uptake)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MODELS = ("mono", "uptake-washout", "bi")  # in order of complexity (ties in AICc go to the simpler)
RATE_BOUNDS_PER_H = (1e-7, 50.0)
_RATE_GRID_PER_H = np.geomspace(1e-4, 20.0, 48)


@dataclass(frozen=True)
class CurveModel:
    """One model: parameter names, which are amplitudes, which rate is the slow one, f, ∂f/∂θ and integrals."""

    name: str
    param_names: tuple[str, ...]
    amplitude_index: tuple[int, ...]
    slow_rate_index: int
    f: Callable
    jac: Callable
    integral_to: Callable    # ∫_0^T f dt; complex-safe
    integral_inf: Callable   # ∫_0^∞ f dt; complex-safe


def _mono_f(t, p):
    return p[0] * np.exp(-p[1] * t)


def _mono_jac(t, p):
    e = np.exp(-p[1] * t)
    return np.column_stack([e, -p[0] * t * e])


def _partial(a, lam, t_end):
    """∫_0^T a·e^(−λt) dt = a(1 − e^(−λT))/λ."""
    return a * (-np.expm1(-lam * t_end)) / lam if np.isrealobj(lam) else a * (1 - np.exp(-lam * t_end)) / lam


def _bi_f(t, p):
    return p[0] * np.exp(-p[1] * t) + p[2] * np.exp(-p[3] * t)


def _bi_jac(t, p):
    e1, e2 = np.exp(-p[1] * t), np.exp(-p[3] * t)
    return np.column_stack([e1, -p[0] * t * e1, e2, -p[2] * t * e2])


def _uw_f(t, p):
    return p[0] * (np.exp(-p[1] * t) - np.exp(-p[2] * t))


def _uw_jac(t, p):
    e1, e2 = np.exp(-p[1] * t), np.exp(-p[2] * t)
    return np.column_stack([e1 - e2, -p[0] * t * e1, p[0] * t * e2])


CURVES: dict[str, CurveModel] = {
    "mono": CurveModel("mono", ("amplitude", "lambda_per_h"), (0,), 1, _mono_f, _mono_jac,
                       lambda p, T: _partial(p[0], p[1], T), lambda p: p[0] / p[1]),
    "bi": CurveModel("bi", ("amplitude_fast", "lambda_fast_per_h", "amplitude_slow", "lambda_slow_per_h"), (0, 2), 3,
                     _bi_f, _bi_jac,
                     lambda p, T: _partial(p[0], p[1], T) + _partial(p[2], p[3], T),
                     lambda p: p[0] / p[1] + p[2] / p[3]),
    "uptake-washout": CurveModel("uptake-washout", ("amplitude", "lambda_washout_per_h", "lambda_uptake_per_h"),
                                 (0,), 1, _uw_f, _uw_jac,
                                 lambda p, T: _partial(p[0], p[1], T) - _partial(p[0], p[2], T),
                                 lambda p: p[0] / p[1] - p[0] / p[2]),
}




def grid_start(model: str, t, y, w, fixed_slow: float | None) -> np.ndarray | None:
    """Variable-projection grid search: rates on a log grid, amplitudes by linear WLS (vectorised)."""
    g = _RATE_GRID_PER_H
    if model == "mono":
        lam = np.array([fixed_slow]) if fixed_slow is not None else g
        e = np.exp(-np.outer(lam, t))
        a = (e * w * y).sum(1) / np.maximum((e * e * w).sum(1), 1e-300)
        rss = (w * (a[:, None] * e - y) ** 2).sum(1)
        k = int(np.argmin(rss))
        return np.array([max(a[k], 0.0), lam[k]])
    if model == "bi":
        slow = np.array([fixed_slow]) if fixed_slow is not None else g
        lf, ls = np.meshgrid(g, slow, indexing="ij")
        keep = lf > 1.5 * ls
        lf, ls = lf[keep], ls[keep]
        e1, e2 = np.exp(-np.outer(lf, t)), np.exp(-np.outer(ls, t))
        s11, s12, s22 = (w * e1 * e1).sum(1), (w * e1 * e2).sum(1), (w * e2 * e2).sum(1)
        b1, b2 = (w * e1 * y).sum(1), (w * e2 * y).sum(1)
        det = s11 * s22 - s12 * s12
        ok = det > 1e-12 * np.maximum(s11 * s22, 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            a1 = np.where(ok, (b1 * s22 - b2 * s12) / det, -1.0)
            a2 = np.where(ok, (s11 * b2 - s12 * b1) / det, -1.0)
        ok &= (a1 > 0) & (a2 > 0)
        if not np.any(ok):   # no two positive components on the grid: start from the mono solution, split
            mono = grid_start("mono", t, y, w, fixed_slow)
            return np.array([0.5 * mono[0], 3.0 * mono[1], 0.5 * mono[0], mono[1]])
        rss = np.where(ok, (w * (a1[:, None] * e1 + a2[:, None] * e2 - y) ** 2).sum(1), np.inf)
        k = int(np.argmin(rss))
        return np.array([a1[k], lf[k], a2[k], ls[k]])
    # uptake-washout
    wash = np.array([fixed_slow]) if fixed_slow is not None else g
    l1, l2 = np.meshgrid(wash, g, indexing="ij")
    keep = l2 > 1.5 * l1
    l1, l2 = l1[keep], l2[keep]
    gg = np.exp(-np.outer(l1, t)) - np.exp(-np.outer(l2, t))
    c = (gg * w * y).sum(1) / np.maximum((gg * gg * w).sum(1), 1e-300)
    ok = c > 0
    if not np.any(ok):
        return None
    rss = np.where(ok, (w * (c[:, None] * gg - y) ** 2).sum(1), np.inf)
    k = int(np.argmin(rss))
    return np.array([c[k], l1[k], l2[k]])


def complex_step_grad(fun: Callable, theta: np.ndarray) -> np.ndarray:
    """Exact first derivatives of a complex-safe scalar function (complex-step method)."""
    g = np.zeros(theta.size)
    for k in range(theta.size):
        h = 1e-20 * max(abs(theta[k]), 1e-280)
        th = theta.astype(complex)
        th[k] += 1j * h
        g[k] = float(np.imag(fun(th))) / h
    return g
