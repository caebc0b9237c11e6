"""Time integration of dose-rate (or activity) samples: per cycle, single time point, over cycles.

Voxel-wise integration (dose maps from dose-rate maps) is in :mod:`voxelwise_integration`.

Time is hours since administration (t ≥ 0; a t = 0 sample is allowed). The integral of the
values over time is in value·h: dose rates in Gy/h give Gy, activities in MBq give MBq·h.
The samples include physical decay (they are not decay-corrected), so every fitted effective
decay constant must be at least the physical one, λ_eff = λ_phys + λ_biol ≥ λ_phys.

Models (fitted by weighted least squares, integrated analytically from 0 to ∞):

- ``mono``: f(t) = A·e^(−λt),                    ∫ = A/λ
- ``bi``: f(t) = A1·e^(−λ1 t) + A2·e^(−λ2 t),      ∫ = A1/λ1 + A2/λ2   (λ1 > λ2: fast, slow)
- ``uptake-washout``: f(t) = C·(e^(−λ1 t) − e^(−λ2 t)), ∫ = C·(1/λ1 − 1/λ2)  (λ2 > λ1: uptake)
- ``auto``: the lowest AICc among the models the data support (see :func:`time_integral`).

Single time point: Hänscheid et al., J Nucl Med 2018;59:75–81 (D ≈ Ḋ(t)·2t/ln2) and Madsen et al.,
Med Phys 2018;45:2318–2324 (mono-exponential with a population effective half-life).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import chi2, norm
from scipy.stats import t as student_t

from LuDoseResponseLib.errors import GeometryError, InputError, ModelFitError
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H

log = logging.getLogger(__name__)

LN2 = math.log(2.0)
MODELS = ("mono", "uptake-washout", "bi")  # in order of complexity (ties in AICc go to the simpler)
METHODS = ("fit", "trapezoid", "hanscheid", "madsen")
TAILS = ("fit", "physical")
HEADS = ("linear", "constant")
_MODEL_ALIASES = {"mono-exponential": "mono", "monoexponential": "mono", "exponential": "mono",
                  "bi-exponential": "bi", "biexponential": "bi", "uptake_washout": "uptake-washout",
                  "uptake-washout": "uptake-washout", "trapezoidal": "trapezoid"}
_METHOD_ALIASES = {"trapezoidal": "trapezoid", "trapz": "trapezoid", "hänscheid": "hanscheid"}
_RATE_BOUNDS_PER_H = (1e-7, 50.0)
_RATE_GRID_PER_H = np.geomspace(1e-4, 20.0, 48)
_REL_SIGMA_FLOOR = 1e-3         # relative weighting: σ_i ∝ max(y_i, 1e-3·max y)
_WRSS_PER_POINT_FLOOR = 1e-16   # relative residual 1e-8: exact fits tie, and the AICc penalty decides
_CAP_TOLERANCE = 1e-6           # a fitted λ this close below λ_phys is rounding: capped without a warning
_DEGENERATE_COND = 1e8   # of the scaled JᵀJ; well-sampled models stay below ~1e5
_MAX_INTEGRAL_NOISE_GAIN = 20.0   # above it an ill-conditioned fit's integral is not determined (see _fit)


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

def _json_float(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class TimeIntegral:
    """∫₀^∞ of a sampled curve, in value·h, with its standard deviation.

    ``params`` and ``covariance`` are in the order of ``param_names``; a parameter held fixed
    (a capped decay constant) has zero variance. ``aicc`` lists every candidate model with its
    AICc (None where the data do not support it). ``sd`` is None where it cannot be estimated
    (no residual degrees of freedom and no ``values_sd``); ``warnings`` then says so.
    """

    value: float
    sd: float | None
    model: str
    method: str
    tail: str
    params: dict[str, float]
    param_names: tuple[str, ...]
    covariance: tuple[tuple[float, ...], ...] | None
    aicc: dict[str, float | None]
    t_eff_h: float | None
    warnings: tuple[str, ...] = ()
    diagnostics: dict = field(default_factory=dict)

    @property
    def rel_sd(self) -> float | None:
        """sd / value (None when either is unavailable or the value is 0)."""
        if self.sd is None or self.value == 0:
            return None
        return self.sd / abs(self.value)

    @property
    def covariance_matrix(self) -> np.ndarray | None:
        return None if self.covariance is None else np.array(self.covariance, dtype=float)

    def to_dict(self) -> dict:
        return {
            "value": _json_float(self.value),
            "sd": _json_float(self.sd),
            "model": self.model,
            "method": self.method,
            "tail": self.tail,
            "params": {k: _json_float(v) for k, v in self.params.items()},
            "param_names": list(self.param_names),
            "covariance": None if self.covariance is None
            else [[_json_float(v) for v in row] for row in self.covariance],
            "aicc": {k: _json_float(v) for k, v in self.aicc.items()},
            "t_eff_h": _json_float(self.t_eff_h),
            "warnings": list(self.warnings),
            "diagnostics": {k: (_json_float(v) if isinstance(v, float) else v) for k, v in self.diagnostics.items()},
        }


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

def _as_1d(name: str, x, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} must be numbers, got {x!r}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InputError(f"{what}: {name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_samples(times_h, values, values_sd, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = _as_1d("times_h", times_h, what)
    y = _as_1d("values", values, what)
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
        sd = _as_1d("values_sd", values_sd, what)
        if sd.size == 1 and y.size > 1:
            sd = np.full(y.size, float(sd[0]))
        if sd.size != y.size:
            raise InputError(f"{what}: values_sd has {sd.size} entries for {y.size} values")
        if not np.all(np.isfinite(sd)) or np.any(sd < 0):
            raise InputError(f"{what}: values_sd must be finite and >= 0")
    return t, y, sd


def _finite(name: str, x, what: str, *, positive: bool) -> float:
    """``x`` as a finite float, > 0 (``positive``) or >= 0; an InputError naming ``name`` otherwise."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise InputError(f"{what}: {name} must be finite and {'> 0' if positive else '>= 0'}, got {x!r}")
    return v


def _check_tail_points(tail_points, what: str) -> int:
    if isinstance(tail_points, bool) or not isinstance(tail_points, numbers.Integral) or tail_points < 2:
        raise InputError(f"{what}: tail_points must be an integer >= 2, got {tail_points!r}")
    return int(tail_points)


def _check_choice(name: str, value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise InputError(f"{what}: unknown {name} {value!r}; use one of {', '.join(choices)}")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
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


_MODELS: dict[str, _Model] = {
    "mono": _Model("mono", ("amplitude", "lambda_per_h"), (0,), 1, _mono_f, _mono_jac,
                   lambda p, T: _partial(p[0], p[1], T), lambda p: p[0] / p[1]),
    "bi": _Model("bi", ("amplitude_fast", "lambda_fast_per_h", "amplitude_slow", "lambda_slow_per_h"), (0, 2), 3,
                 _bi_f, _bi_jac,
                 lambda p, T: _partial(p[0], p[1], T) + _partial(p[2], p[3], T),
                 lambda p: p[0] / p[1] + p[2] / p[3]),
    "uptake-washout": _Model("uptake-washout", ("amplitude", "lambda_washout_per_h", "lambda_uptake_per_h"), (0,), 1,
                             _uw_f, _uw_jac,
                             lambda p, T: _partial(p[0], p[1], T) - _partial(p[0], p[2], T),
                             lambda p: p[0] / p[1] - p[0] / p[2]),
}


def _grid_start(model: str, t, y, w, fixed_slow: float | None) -> np.ndarray | None:
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
            mono = _grid_start("mono", t, y, w, fixed_slow)
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


@dataclass(frozen=True)
class _Fit:
    model: str
    theta: np.ndarray
    cov: np.ndarray | None   # full p×p, zeros for fixed parameters
    wrss: float
    n_free: int
    degenerate: str          # "" when well determined, otherwise why not
    undetermined: bool       # degenerate because the samples do not fix the parameters (not a nested model)
    capped: bool
    fitted_slow_rate: float


def _fit(model: str, t, y, sigma, absolute_sigma: bool, fixed_slow: float | None) -> _Fit | None:
    m = _MODELS[model]
    w = 1.0 / sigma ** 2
    theta0 = _grid_start(model, t, y, w, fixed_slow)
    if theta0 is None:
        return None
    p = len(m.param_names)
    free = np.ones(p, bool)
    if fixed_slow is not None:
        free[m.slow_rate_index] = False
        theta0[m.slow_rate_index] = fixed_slow
    # A capped refit holds every decay constant at or above λ_phys, not only the slow one: each phase of
    # a curve that includes physical decay decays at least physically, and a free rate that ran below
    # the fixed one would become the slow phase again after the (fast, slow) reordering below.
    rate_lo = _RATE_BOUNDS_PER_H[0] if fixed_slow is None else fixed_slow
    lo = np.array([0.0 if i in m.amplitude_index else rate_lo for i in range(p)])
    hi = np.array([np.inf if i in m.amplitude_index else _RATE_BOUNDS_PER_H[1] for i in range(p)])
    x0 = np.clip(theta0[free], lo[free], hi[free])

    def full(x):
        th = theta0.copy()
        th[free] = x
        return th

    def res(x):
        return (m.f(t, full(x)) - y) / sigma

    def jac(x):
        return m.jac(t, full(x))[:, free] / sigma[:, None]

    sol = least_squares(res, x0, jac=jac, bounds=(lo[free], hi[free]), method="trf", x_scale="jac",
                        ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=100 * p)
    theta = full(sol.x)
    if model == "bi" and theta[1] < theta[3]:   # keep (fast, slow) order
        theta = theta[[2, 3, 0, 1]]
    if model == "uptake-washout" and theta[2] < theta[1]:
        theta = np.array([-theta[0], theta[2], theta[1]])
    r = (m.f(t, theta) - y) / sigma
    wrss = float(r @ r)
    jw = m.jac(t, theta)[:, free] / sigma[:, None]
    jtj = jw.T @ jw
    degenerate = ""
    amp = theta[list(m.amplitude_index)]
    if np.any(amp <= 1e-12 * max(float(np.max(y)), 1e-300)):
        degenerate = "an amplitude fitted to zero (a simpler model describes the data)"
    elif model == "bi" and abs(theta[1] - theta[3]) <= 1e-3 * theta[3]:
        degenerate = "the two decay constants coincide"
    elif model == "uptake-washout" and theta[2] >= 0.999 * _RATE_BOUNDS_PER_H[1]:
        degenerate = "the uptake rate ran to its bound (the uptake is not resolved by the samples)"
    scale = np.sqrt(np.diag(jtj))
    undetermined = False
    ill_conditioned = False
    if not degenerate and np.all(scale > 0):
        cond = np.linalg.cond(jtj / np.outer(scale, scale))   # scale-free: amplitudes and rates differ by decades
        if not np.isfinite(cond) or cond > _DEGENERATE_COND:
            # Ill-conditioned parameters need not mean an undetermined integral: C·(e^(−λ1 t) − e^(−λ2 t)) with
            # λ1 ≈ λ2 trades C against λ2 − λ1 along a curve of (almost) constant ∫. Undetermined is when the
            # integral itself moves along that direction (a phase seen by one sample).
            gain = _integral_noise_gain(m, t, y, theta, free)
            if not gain <= _MAX_INTEGRAL_NOISE_GAIN:
                degenerate = (f"the parameters are not determined by these samples (condition number {cond:.1e}; "
                              f"the integral's SD would be {gain:.3g}× the relative noise of each sample)")
                undetermined = True
            else:
                ill_conditioned = True
    elif not degenerate:
        degenerate = "a parameter does not influence the curve at the sample times"
        undetermined = True
    n_free = int(free.sum())
    dof = t.size - n_free
    if ill_conditioned:      # in scaled coordinates, where the pseudo-inverse keeps the determined directions
        cov_free = np.linalg.pinv(jtj / np.outer(scale, scale), rcond=1e-14, hermitian=True) / np.outer(scale, scale)
    else:
        cov_free = np.linalg.pinv(jtj) if degenerate else np.linalg.inv(jtj)
    if not absolute_sigma:
        cov_free = cov_free * (wrss / dof) if dof > 0 else None
    cov = None
    if cov_free is not None:
        cov = np.zeros((p, p))
        cov[np.ix_(free, free)] = cov_free
    return _Fit(model, theta, cov, wrss, n_free, degenerate, undetermined, fixed_slow is not None,
                float(theta[m.slow_rate_index]))


def _integral_noise_gain(m: _Model, t, y, theta, free) -> float:
    """Relative SD of ∫₀^∞ per unit relative noise on every sample (σ_i = y_i, floored), to first order.

    A property of the model and the sampling, not of the noise level: about 0.4–5 for fits whose integral
    the samples fix, 10²–10³ when a phase is seen by a single sample.
    """
    sigma = np.maximum(y, _REL_SIGMA_FLOOR * float(np.max(y)))
    jw = m.jac(t, theta)[:, free] / sigma[:, None]
    scale = np.sqrt(np.einsum("ij,ij->j", jw, jw))
    if not np.all(scale > 0):
        return math.inf
    a = (jw / scale).T @ (jw / scale)
    g = _complex_step_grad(m.integral_inf, theta)[free] / scale
    value = float(np.real(m.integral_inf(theta)))
    var = float(g @ np.linalg.pinv(a, rcond=1e-14, hermitian=True) @ g)
    return math.sqrt(max(var, 0.0)) / abs(value) if value != 0 else math.inf


def _fit_capped(model: str, t, y, sigma, absolute_sigma: bool, lam_phys: float, warn: list[str],
                what: str) -> _Fit | None:
    """Fit; if the slowest fitted λ is below λ_phys (T_eff > T½), refit with it fixed at λ_phys."""
    fit = _fit(model, t, y, sigma, absolute_sigma, None)
    if fit is None:
        return None
    lam = fit.fitted_slow_rate
    if lam >= lam_phys:
        return fit
    if lam < lam_phys * (1 - _CAP_TOLERANCE):
        t_fit = LN2 / lam
        warn.append(f"{what}: {model} fit gives an effective half-life of {t_fit:.4g} h, longer than the physical "
                    f"half-life {LN2 / lam_phys:.4g} h; capped to the physical half-life (no biological washout)")
    capped = _fit(model, t, y, sigma, absolute_sigma, lam_phys)
    return capped


def _aicc(wrss: float, n: int, k_params: int, absolute_sigma: bool) -> float | None:
    """Small-sample AIC (Burnham & Anderson 2002; Glatting et al., Med Phys 2007;34:4285).

    Known σ (``values_sd``): AICc = χ² + 2K + 2K(K+1)/(n−K−1), K = number of fitted parameters.
    σ estimated from the residuals: AICc = n·ln(WRSS/n) + 2K + 2K(K+1)/(n−K−1), K = parameters + 1.
    None when n − K − 1 ≤ 0 (the data do not support the model).
    """
    k = k_params if absolute_sigma else k_params + 1
    if n - k - 1 <= 0:
        return None
    base = wrss if absolute_sigma else n * math.log(max(wrss / n, _WRSS_PER_POINT_FLOOR))
    return base + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _misfit(fit: _Fit, n: int) -> bool:
    """χ² lack of fit at p < 1e-3 (known σ only)."""
    dof = n - fit.n_free
    return dof > 0 and float(chi2.sf(fit.wrss, dof)) < 1e-3


def _aic(wrss: float, n: int, k_params: int, absolute_sigma: bool) -> float:
    """AIC without the small-sample term (same K and likelihood as :func:`_aicc`)."""
    k = k_params if absolute_sigma else k_params + 1
    base = wrss if absolute_sigma else n * math.log(max(wrss / n, _WRSS_PER_POINT_FLOOR))
    return base + 2 * k


def _complex_step_grad(fun: Callable, theta: np.ndarray) -> np.ndarray:
    """Exact first derivatives of a complex-safe scalar function (complex-step method)."""
    g = np.zeros(theta.size)
    for k in range(theta.size):
        h = 1e-20 * max(abs(theta[k]), 1e-280)
        th = theta.astype(complex)
        th[k] += 1j * h
        g[k] = float(np.imag(fun(th))) / h
    return g


# --------------------------------------------------------------------------------------------
# time_integral
# --------------------------------------------------------------------------------------------

def time_integral(times_h, values, model: str = "auto", method: str = "fit", tail: str = "fit", *,
                  values_sd=None, head: str = "linear", tail_points: int = 3,
                  half_life_h: float = LU177_HALF_LIFE_H, population_t_eff_h: float | None = None,
                  population_t_eff_sd_h: float = 0.0, what: str = "time_integral") -> TimeIntegral:
    """∫₀^∞ of sampled values (value·h) with its SD.

    Arguments:
        times_h: sample times, hours since administration, strictly increasing, ≥ 0.
        values: samples (≥ 0) in any unit (Gy/h → Gy; MBq → MBq·h), physical decay included.
        model: ``auto`` | ``mono`` | ``bi`` | ``uptake-washout`` (``trapezoid`` = method trapezoid).
        method: ``fit`` (weighted least squares), ``trapezoid``, ``hanscheid`` or ``madsen`` (one sample).
        tail: after the last sample, ``fit`` continues the fitted curve (or, for trapezoid, the
            exponential fitted to the last points); ``physical`` continues with physical decay only
            from the last value — an upper bound that overestimates badly when the tumour washes out.
        values_sd: SD of each sample (count statistics). With it, σ is known: weights 1/σ² and the
            covariance (JᵀWJ)⁻¹. Without it, every sample is given the same relative uncertainty
            (σ_i ∝ y_i, floor 1e-3·max y) and the covariance is scaled by WRSS/(n − p); with no
            degrees of freedom left, ``sd`` is None.
        head: trapezoid only, before the first sample: ``linear`` (value 0 at administration, a
            triangle t₀·y₀/2; the default) or ``constant`` (y₀ from administration, t₀·y₀).
        tail_points: trapezoid with tail ``fit``: the number of last samples (taken at or after
            the maximum) to which the tail exponential is fitted on ln y.
        half_life_h: physical half-life; a fitted effective half-life above it is capped to it.
        population_t_eff_h, population_t_eff_sd_h: for method ``madsen``.
        what: a label (tumour, cycle) used in messages.

    Before the first sample a fitted model defines the curve itself (mono and bi extrapolate back
    to their amplitude at t = 0, uptake–washout starts from 0); ``head`` applies to the trapezoid.

    ``auto`` fits every model and keeps the lowest AICc among those whose AICc is defined
    (n − K − 1 > 0) and whose integral is determined; ties go to the simpler model. With too
    few samples for any AICc (four samples without ``values_sd``), it compares the models that
    keep a residual degree of freedom by AIC instead, and says so in ``warnings``. It does the same,
    switching only to a model that fits without the cap or misfit, when the AICc choice is no real
    comparison or fails: with ``values_sd``, when the AICc choice misfits (χ² p < 1e-3); without
    it, when AICc could judge a single model and that model needed the physical-half-life cap
    (e.g. five samples of an uptake: only the mono-exponential has an AICc, and it cannot rise).
    A model with n = K samples (bi-exponential through four samples) is never chosen by ``auto``:
    nothing can compare it; ask for it explicitly (then it passes through the samples exactly).
    An explicit model whose integral the samples do not determine (a phase seen by one sample)
    raises ModelFitError rather than returning an arbitrary integral; ill-conditioned parameters
    with a determined integral (uptake and washout rates nearly equal) are accepted.

    ``diagnostics["k95"]``: value ± k95·sd is a 95 % interval (1.96 with ``values_sd``; Student t
    with n − p degrees of freedom when σ is estimated from the residuals).
    """
    model = _MODEL_ALIASES.get(str(model).strip().lower(), model)
    method = _METHOD_ALIASES.get(str(method).strip().lower(), method)
    if model == "trapezoid":
        model, method = "auto", "trapezoid"
    _check_choice("method", method, METHODS, what)
    _check_choice("model", model, ("auto", *MODELS), what)
    _check_choice("tail", tail, TAILS, what)
    _check_choice("head", head, HEADS, what)
    half_life_h = _finite("half_life_h", half_life_h, what, positive=True)
    t, y, sd = _check_samples(times_h, values, values_sd, what)
    lam_phys = LN2 / half_life_h
    if method == "hanscheid":
        _require_single(t, what, method)
        return hanscheid_2018(float(t[0]), float(y[0]), value_sd=None if sd is None else float(sd[0]),
                              what=what)
    if method == "madsen":
        _require_single(t, what, method)
        if population_t_eff_h is None:
            raise InputError(f"{what}: method 'madsen' needs population_t_eff_h (a population effective half-life)")
        return madsen_2018(float(t[0]), float(y[0]), population_t_eff_h, t_eff_sd_h=population_t_eff_sd_h,
                           value_sd=None if sd is None else float(sd[0]), half_life_h=half_life_h, what=what)
    if not np.any(y > 0):
        return TimeIntegral(0.0, 0.0, "zero", method, tail, {}, (), None, {}, None,
                            (f"{what}: every sample is 0; the integral is 0",), {"n_points": int(t.size)})
    if method == "trapezoid":
        tail_points = _check_tail_points(tail_points, what)
        return _trapezoid(t, y, sd, head, tail, tail_points, lam_phys, what)
    return _fit_integral(t, y, sd, model, tail, lam_phys, what)


def _require_single(t, what, method):
    if t.size != 1:
        raise InputError(f"{what}: method {method!r} takes exactly one sample, got {t.size}")


def _fit_integral(t, y, sd, model, tail, lam_phys, what) -> TimeIntegral:
    n = t.size
    absolute = sd is not None
    if absolute:
        if np.any(sd <= 0):
            raise InputError(f"{what}: values_sd must be > 0 for a least-squares fit (a zero SD is an "
                             "infinite weight)")
        sigma = sd
    else:
        sigma = np.maximum(y, _REL_SIGMA_FLOOR * float(np.max(y)))
    warnings: list[str] = []
    candidates = MODELS if model == "auto" else (model,)
    for name in candidates:
        p = len(_MODELS[name].param_names)
        if model != "auto" and n < p:
            raise InputError(f"{what}: the {name} model has {p} parameters but only {n} samples were given; "
                             "use a simpler model, method='trapezoid', or a single-time-point method")
    if n < 2:
        raise InputError(f"{what}: one sample cannot be fitted; use method='hanscheid' or 'madsen'")
    fits: dict[str, _Fit] = {}
    fit_warnings: dict[str, list[str]] = {}
    aicc: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for name in candidates:
        p_model = len(_MODELS[name].param_names)
        if n < p_model or (model == "auto" and n == p_model and name != "mono"):
            aicc[name] = None
            notes[name] = "no residual degree of freedom (samples <= parameters)"
            continue
        fit_warnings[name] = []
        fit = _fit_capped(name, t, y, sigma, absolute, lam_phys, fit_warnings[name], what)
        if fit is None:
            aicc[name] = None
            notes[name] = "no admissible starting point (the data do not have this shape)"
            continue
        fits[name] = fit
        # the model's own parameter count (a decay constant capped to λ_phys still counts: the cap is a
        # physical constraint applied after selection, not a simpler model family)
        aicc[name] = None if fit.degenerate else _aicc(fit.wrss, n, len(_MODELS[name].param_names), absolute)
        if fit.degenerate:
            notes[name] = fit.degenerate
        elif aicc[name] is None:
            notes[name] = f"too few samples for AICc ({n})"
    if model == "auto":
        best, selected_by = _select_auto(fits, aicc, notes, fit_warnings, n, absolute, warnings, what)
    else:
        best = model
        selected_by = "explicit"
        if best not in fits:
            raise ModelFitError(f"{what}: the {best} model cannot be fitted to these samples ({notes.get(best)}); "
                                "use another model or method='trapezoid'")
    warnings.extend(fit_warnings.get(best, []))
    fit = fits[best]
    m = _MODELS[best]
    dof = n - fit.n_free
    if absolute and _misfit(fit, n):
        warnings.append(f"{what}: the {best} model does not describe the samples within values_sd "
                        f"(χ² = {fit.wrss:.3g} on {dof} degrees of freedom, p = {float(chi2.sf(fit.wrss, dof)):.1e}); "
                        "consider another model or method='trapezoid'")
    if fit.undetermined:
        raise ModelFitError(f"{what}: the {best} model is not determined by these samples ({fit.degenerate}); a "
                            "phase that only one sample sees has no defined integral. Use a model with fewer "
                            "parameters, method='trapezoid', or more samples")
    if fit.degenerate:
        warnings.append(f"{what}: {best} fit is degenerate: {fit.degenerate}; its SD is not reliable")
    if best == "uptake-washout" and fit.theta[2] * float(t[0]) > 5.0:
        warnings.append(f"{what}: the uptake (half-time {LN2 / fit.theta[2]:.3g} h) is complete before the first "
                        f"sample at {float(t[0]):g} h; the integral before it rests on the model, not on data")
    t_last = float(t[-1])
    if tail == "fit":
        def value_fn(th):
            return m.integral_inf(th)
    else:
        def value_fn(th):
            return m.integral_to(th, t_last) + m.f(np.array([t_last]), th)[0] / lam_phys
    value = float(np.real(value_fn(fit.theta)))
    sd_value = None
    if fit.cov is not None:
        g = _complex_step_grad(value_fn, fit.theta)
        sd_value = float(math.sqrt(max(g @ fit.cov @ g, 0.0)))
    else:
        warnings.append(f"{what}: SD not estimable ({n} samples, {fit.n_free} free parameters, no values_sd); "
                        "pass values_sd from count statistics")
    slow = float(fit.theta[m.slow_rate_index])
    diagnostics = {
        "n_points": int(n), "dof": int(dof), "wrss": float(fit.wrss), "weighting": "absolute" if absolute
        else "relative", "selected_by": selected_by, "capped": bool(fit.capped),
        "head": "model", "t_last_h": t_last,
        # 95 % interval = value ± k95·sd: normal with known σ; Student t (n − p dof) when σ is estimated
        "k95": float(norm.ppf(0.975)) if absolute else (float(student_t.ppf(0.975, dof)) if dof > 0 else None),
        "tail_value": float(np.real(value_fn(fit.theta) - m.integral_to(fit.theta, t_last))),
        "not_selected": dict(notes),
    }
    for w in warnings:
        log.warning(w)
    return TimeIntegral(
        value=value, sd=sd_value, model=best, method="fit", tail=tail,
        params={k: float(v) for k, v in zip(m.param_names, fit.theta, strict=True)}, param_names=m.param_names,
        covariance=None if fit.cov is None else tuple(tuple(float(v) for v in row) for row in fit.cov),
        aicc=aicc, t_eff_h=LN2 / slow, warnings=tuple(warnings), diagnostics=diagnostics)


def _select_auto(fits: dict[str, _Fit], aicc: dict[str, float | None], notes: dict[str, str],
                 fit_warnings: dict[str, list[str]], n: int, absolute: bool, warnings: list[str],
                 what: str) -> tuple[str, str]:
    """The model of ``auto`` and how it was chosen (rules in :func:`time_integral`); appends warnings."""
    # determined models with a residual degree of freedom: those an information criterion can compare at all
    wider = [m for m in MODELS if m in fits and not fits[m].degenerate and n > len(_MODELS[m].param_names)]
    aic = {m: _aic(fits[m].wrss, n, len(_MODELS[m].param_names), absolute) for m in wider}
    supported = [m for m in MODELS if aicc.get(m) is not None]
    if supported:
        best = min(supported, key=lambda m: (aicc[m], MODELS.index(m)))
        alt = min(wider, key=lambda m: (aic[m], MODELS.index(m)))
        if absolute and _misfit(fits[best], n):
            # the models AICc can judge do not describe the data within values_sd (e.g. a mono-exponential
            # through an uptake): compare every determined model with a residual dof by AIC instead
            if alt != best and not _misfit(fits[alt], n):
                warnings.append(f"{what}: the {best} model does not fit within values_sd; chose {alt} by AIC "
                                f"among {', '.join(wider)} ({n} samples are too few for its AICc)")
                return alt, "AIC (AICc choice misfits)"
        elif len(supported) == 1 and fit_warnings.get(best):
            # AICc judged one model only (no comparison) and that model needed the physical-half-life cap: it
            # cannot follow the samples (e.g. a mono-exponential through an uptake phase); without values_sd
            # there is no χ² test, so the cap is the sign of misfit. Compare by AIC with the other models.
            if alt != best and not fit_warnings.get(alt):
                warnings.append(f"{what}: AICc could judge only the {best} model, which needed the physical-"
                                f"half-life cap; chose {alt} by AIC among {', '.join(wider)} ({n} samples are "
                                "too few for its AICc). Choose the model explicitly if you can")
                return alt, "AIC (AICc choice capped)"
        return best, "AICc"
    if wider:
        best = min(wider, key=lambda m: (aic[m], MODELS.index(m)))
        warnings.append(f"{what}: {n} samples are too few for AICc; chose {best} by AIC among the models "
                        f"with a residual degree of freedom ({', '.join(wider)}). Choose the model explicitly "
                        "if you can")
        return best, "AIC (too few samples for AICc)"
    if "mono" in fits and not fits["mono"].degenerate:
        warnings.append(f"{what}: {n} samples determine only a mono-exponential through them; no model "
                        "comparison was possible")
        return "mono", "only model determined"
    raise ModelFitError(f"{what}: no model could be fitted to these {n} samples "
                        f"({'; '.join(f'{k}: {v}' for k, v in notes.items())}); use method='trapezoid'")


# --------------------------------------------------------------------------------------------
# Trapezoid with explicit head and tail
# --------------------------------------------------------------------------------------------

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


def _trapezoid(t, y, sd, head, tail, tail_points, lam_phys, what) -> TimeIntegral:
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
    if capped and tc.lam_fitted[0] < lam_phys * (1 - _CAP_TOLERANCE):
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
# --------------------------------------------------------------------------------------------

def _check_single(time_h, value, value_sd, what) -> tuple[float, float, float | None]:
    t, y, sd = _check_samples([time_h], [value], None if value_sd is None else [value_sd], what)
    if t[0] <= 0:
        raise InputError(f"{what}: a single-time-point estimate needs a sample after administration (t > 0 h)")
    return float(t[0]), float(y[0]), None if sd is None else float(sd[0])


def hanscheid_2018(time_h: float, value: float, *, value_sd: float | None = None,
                   what: str = "hanscheid_2018") -> TimeIntegral:
    """Single-time-point integral of Hänscheid et al., J Nucl Med 2018;59:75–81: ∫ ≈ y(t)·2t/ln2.

    For a mono-exponential the ratio to the truth is (2x/ln2)·e^(−x), x = λt: exact when T_eff = t
    or T_eff = t/2, at most 6.2 % high between (x = 1), and low outside. It assumes a mono-exponential decline from
    t = 0 and ignores uptake; Hänscheid et al. recommend a sample at about 4 d for Lu-177 DOTATATE.
    The SD includes only ``value_sd``, not the approximation error. ``t_eff_h`` is None: the method
    does not estimate an effective half-life.
    """
    t, y, sd = _check_single(time_h, value, value_sd, what)
    factor = 2.0 * t / LN2
    warnings = (f"{what}: the Hänscheid approximation error (up to +6.2 % when the effective half-life lies "
                "between t/2 and t, an underestimate outside) is not included in the SD",)
    return TimeIntegral(value=y * factor, sd=None if sd is None else sd * factor, model="hanscheid-2018",
                        method="hanscheid", tail="fit", params={"factor_h": factor}, param_names=("factor_h",),
                        covariance=None, aicc={}, t_eff_h=None, warnings=warnings,
                        diagnostics={"n_points": 1, "time_h": t})


def madsen_2018(time_h: float, value: float, t_eff_h: float, *, t_eff_sd_h: float = 0.0,
                value_sd: float | None = None, half_life_h: float = LU177_HALF_LIFE_H,
                what: str = "madsen_2018") -> TimeIntegral:
    """Single-time-point integral of Madsen et al., Med Phys 2018;45:2318–2324.

    A mono-exponential through the sample with a population effective half-life T:
    ∫ = y(t)·e^(λt)/λ, λ = ln2/T. The SD propagates ``value_sd`` and ``t_eff_sd_h`` to first order;
    the derivative with respect to T vanishes at t = T/ln2, Madsen's optimal sampling time.
    """
    t, y, sd = _check_single(time_h, value, value_sd, what)
    t_eff_h = _finite("the population effective half-life (h)", t_eff_h, what, positive=True)
    t_eff_sd_h = _finite("t_eff_sd_h", t_eff_sd_h, what, positive=False)
    half_life_h = _finite("half_life_h", half_life_h, what, positive=True)
    warnings = []
    if t_eff_h > half_life_h * (1 + _CAP_TOLERANCE):
        warnings.append(f"{what}: population effective half-life {t_eff_h:g} h exceeds the physical half-life "
                        f"{half_life_h:g} h; capped to it")
    t_eff = min(t_eff_h, half_life_h)
    lam = LN2 / t_eff
    factor = math.exp(lam * t) / lam
    value_out = y * factor
    # d/dT [e^(ln2 t/T) T/ln2] = e^(λt)(1/ln2 − t/T)
    d_dT = y * math.exp(lam * t) * (1.0 / LN2 - t / t_eff)
    var = (d_dT * t_eff_sd_h) ** 2 + ((sd or 0.0) * factor) ** 2
    sd_out = math.sqrt(var) if (sd is not None or t_eff_sd_h > 0) else None
    return TimeIntegral(value=value_out, sd=sd_out, model="madsen-2018", method="madsen", tail="fit",
                        params={"lambda_per_h": lam, "factor_h": factor}, param_names=("lambda_per_h", "factor_h"),
                        covariance=None, aicc={}, t_eff_h=t_eff, warnings=tuple(warnings),
                        diagnostics={"n_points": 1, "time_h": t, "optimal_time_h": t_eff / LN2})


# --------------------------------------------------------------------------------------------
# Per tumour (VOI mean)
# --------------------------------------------------------------------------------------------

def _as_array_on_grid(image, reference, what: str, name: str) -> np.ndarray:
    import SimpleITK as sitk

    from LuDoseResponseLib.imaging import require_same_grid

    if isinstance(image, sitk.Image):
        if isinstance(reference, sitk.Image):
            require_same_grid(reference, image, "the first map", f"{what}: {name}")
        return sitk.GetArrayViewFromImage(image)
    try:
        return np.asarray(image, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} is not an image or a numeric array") from exc


def voi_mean_values(maps: Sequence, mask, *, what: str = "tumour") -> np.ndarray:
    """Mean of each map (e.g. dose rate in Gy/h at each time point) over the VOI ``mask``.

    Maps and mask are SimpleITK images on one grid, or numpy arrays of one shape.
    """
    if len(maps) == 0:
        raise InputError(f"{what}: no maps given")
    ref = maps[0]
    m = np.asarray(_as_array_on_grid(mask, ref, what, "mask")) > 0
    if not m.any():
        raise GeometryError(f"{what}: the VOI mask is empty; check the segmentation and its grid")
    out = np.empty(len(maps))
    for i, img in enumerate(maps):
        arr = _as_array_on_grid(img, ref, what, f"map {i}")
        if arr.shape != m.shape:
            raise GeometryError(f"{what}: map {i} has shape {arr.shape} but the mask has {m.shape}; "
                                "resample the mask onto the map grid")
        vals = arr[m]
        if not np.all(np.isfinite(vals)):
            raise InputError(f"{what}: map {i} has NaN or infinite values inside the VOI")
        out[i] = float(vals.mean())
    return out


def tumour_cycle_dose(times_h, dose_rate_maps: Sequence, mask, *, what: str = "tumour", **kwargs) -> TimeIntegral:
    """Absorbed dose (Gy) of one tumour in one cycle: ∫ of the VOI-mean dose rate (Gy/h) over time.

    ``kwargs`` go to :func:`time_integral` (model, method, tail, values_sd, ...).
    """
    rates = voi_mean_values(dose_rate_maps, mask, what=what)
    negative = rates < 0
    if np.any(negative):
        raise InputError(f"{what}: the mean dose rate in the VOI is negative at time index "
                         f"{int(np.flatnonzero(negative)[0])}; check the dose-rate maps")
    return time_integral(times_h, rates, what=what, **kwargs)


# --------------------------------------------------------------------------------------------
# Sums over cycles
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleSum:
    """Cumulative dose over a set of cycles: D_tot = Σ D_cycle (exact), with its SD."""

    dose_gy: float
    sd_gy: float | None
    activity_mbq: float
    cycles: tuple[int, ...]

    @property
    def activity_gbq(self) -> float:
        return self.activity_mbq / 1000.0

    def to_dict(self) -> dict:
        return {"dose_gy": _json_float(self.dose_gy), "sd_gy": _json_float(self.sd_gy),
                "activity_mbq": _json_float(self.activity_mbq), "activity_gbq": _json_float(self.activity_gbq),
                "cycles": list(self.cycles)}


def _as_datetime(x, what: str) -> datetime:
    if isinstance(x, datetime):
        return x
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day)
    raise InputError(f"{what}: expected a date or datetime, got {x!r}")


def sum_cycles(cycles: Sequence[int], doses_gy, activities_mbq, *, sds_gy=None, administered_at=None,
               before=None, calibration_sd_gy=None, calibration_correlation: float = 0.0,
               what: str = "cycle sum") -> CycleSum:
    """Σ over cycles of dose and administered activity, all cycles or those administered before ``before``.

    ``before`` (date or datetime, e.g. the date of the best response, t_vmin) keeps the cycles whose
    ``administered_at`` is strictly earlier; a date counts from its midnight, so a CT on the day of an
    administration counts as taken before it. The SD combines the cycles' SDs as independent (the
    paper) unless ``calibration_correlation`` > 0 (see :func:`uncertainty.combine_cycle_sds`).
    """
    from LuDoseResponseLib.dosimetry.uncertainty import combine_cycle_sds

    try:
        n = len(cycles)
    except TypeError:
        raise InputError(f"{what}: cycles must be a sequence of cycle numbers, got {cycles!r}") from None
    d = _as_1d("doses_gy", doses_gy, what)
    a = _as_1d("activities_mbq", activities_mbq, what)
    if d.size != n or a.size != n:
        raise InputError(f"{what}: {n} cycles but {d.size} doses and {a.size} activities")
    if not (np.all(np.isfinite(d)) and np.all(d >= 0)):
        raise InputError(f"{what}: cycle doses must be finite and >= 0, got {d.tolist()}")
    if not (np.all(np.isfinite(a)) and np.all(a >= 0)):
        raise InputError(f"{what}: administered activities must be finite and >= 0, got {a.tolist()}")
    keep = np.ones(n, bool)
    if before is not None:
        if administered_at is None or len(administered_at) != n:
            raise InputError(f"{what}: summing until a date needs one administration time per cycle")
        limit = _as_datetime(before, what)
        keep = np.array([_as_datetime(x, what) < limit for x in administered_at])
    sd = None
    if sds_gy is not None:
        s = [None if v is None else _finite("each cycle SD (Gy)", v, what, positive=False) for v in sds_gy]
        if len(s) != n:
            raise InputError(f"{what}: {n} cycles but {len(s)} SDs")
        if calibration_sd_gy is not None and len(calibration_sd_gy) != n:
            raise InputError(f"{what}: {n} cycles but {len(calibration_sd_gy)} calibration SDs")
        if all(s[i] is not None for i in range(n) if keep[i]):
            cal = None if calibration_sd_gy is None else [calibration_sd_gy[i] for i in range(n) if keep[i]]
            sd = combine_cycle_sds([s[i] for i in range(n) if keep[i]], calibration_sd_gy=cal,
                                   calibration_correlation=calibration_correlation, what=what)
    return CycleSum(dose_gy=float(d[keep].sum()), sd_gy=sd, activity_mbq=float(a[keep].sum()),
                    cycles=tuple(int(c) for c, k in zip(cycles, keep, strict=True) if k))
