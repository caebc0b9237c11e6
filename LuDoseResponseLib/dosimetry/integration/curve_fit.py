"""Weighted least-squares fit of one curve model, with the physical-half-life cap and a determinacy check.

The samples reach these functions normalised (largest sample in [1, 2), see :func:`.integrate.time_integral`), so the
solver's tolerances and the grid search are relative to the data, whatever their unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from LuDoseResponseLib.dosimetry.integration.inputs import CAP_TOLERANCE, LN2
from LuDoseResponseLib.dosimetry.integration.models import (
    CURVES,
    RATE_BOUNDS_PER_H,
    CurveModel,
    complex_step_grad,
    grid_start,
)

REL_SIGMA_FLOOR = 1e-3         # relative weighting: σ_i ∝ max(y_i, 1e-3·max y)
_DEGENERATE_COND = 1e8   # of the scaled JᵀJ; well-sampled models stay below ~1e5
_MAX_INTEGRAL_NOISE_GAIN = 20.0   # above it an ill-conditioned fit's integral is not determined (see fit_model)


def relative_sigma(y: np.ndarray) -> np.ndarray:
    """σ_i ∝ y_i, floored at 1e-3·max y: the same relative uncertainty for every sample (no values_sd)."""
    return np.maximum(y, REL_SIGMA_FLOOR * float(np.max(y)))


@dataclass(frozen=True)
class Fit:
    """One model fitted to the samples: parameters θ, covariance, weighted RSS and why it may be degenerate."""

    model: str
    theta: np.ndarray
    cov: np.ndarray | None   # full p×p, zeros for fixed parameters
    wrss: float
    n_free: int
    degenerate: str          # "" when well determined, otherwise why not
    undetermined: bool       # degenerate because the samples do not fix the parameters (not a nested model)
    capped: bool
    fitted_slow_rate: float


def fit_model(model: str, t, y, sigma, absolute_sigma: bool, fixed_slow: float | None) -> Fit | None:
    """Weighted LS fit of ``model`` (σ known: ``absolute_sigma``; else covariance × WRSS/(n − p)).

    ``fixed_slow`` holds the slow rate (and bounds every rate below) at that value. None when the grid
    search finds no admissible start (the data do not have the model's shape).
    """
    m = CURVES[model]
    w = 1.0 / sigma ** 2
    theta0 = grid_start(model, t, y, w, fixed_slow)
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
    rate_lo = RATE_BOUNDS_PER_H[0] if fixed_slow is None else fixed_slow
    lo = np.array([0.0 if i in m.amplitude_index else rate_lo for i in range(p)])
    hi = np.array([np.inf if i in m.amplitude_index else RATE_BOUNDS_PER_H[1] for i in range(p)])
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
                        ftol=None, xtol=1e-14, gtol=1e-14, max_nfev=100 * p)
    theta = full(_gauss_newton_polish(res, jac, sol.x, lo[free], hi[free]))
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
    elif model == "uptake-washout" and theta[2] >= 0.999 * RATE_BOUNDS_PER_H[1]:
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
    return Fit(model, theta, cov, wrss, n_free, degenerate, undetermined, fixed_slow is not None,
                float(theta[m.slow_rate_index]))


def _gauss_newton_polish(res, jac, x, lo, hi, steps: int = 6) -> np.ndarray:
    """Gauss–Newton steps from the solver's end point while they shrink the gradient Jᵀr without raising the cost.

    ``trf`` can stop on a small step (xtol) with the gradient still far from 0 (seen: optimality 2e-4), which leaves
    the parameters accurate to ~1e-9 only and makes them differ between units; a few undamped steps reach the
    stationary point to rounding. A step that would leave the bounds ends the polish.
    """
    r, j = res(x), jac(x)
    g = float(np.linalg.norm(j.T @ r))
    for _ in range(steps):
        if g == 0.0:
            break
        xn = x + np.linalg.lstsq(j, -r, rcond=None)[0]
        if not (np.all(np.isfinite(xn)) and np.all(xn >= lo) and np.all(xn <= hi)):
            break
        rn, jn = res(xn), jac(xn)
        gn = float(np.linalg.norm(jn.T @ rn))
        if not (gn < g and rn @ rn <= (r @ r) * (1 + 1e-12)):
            break
        x, r, j, g = xn, rn, jn, gn
    return x


def _integral_noise_gain(m: CurveModel, t, y, theta, free) -> float:
    """Relative SD of ∫₀^∞ per unit relative noise on every sample (σ_i = y_i, floored), to first order.

    A property of the model and the sampling, not of the noise level: about 0.4–5 for fits whose integral
    the samples fix, 10²–10³ when a phase is seen by a single sample.
    """
    sigma = relative_sigma(y)
    jw = m.jac(t, theta)[:, free] / sigma[:, None]
    scale = np.sqrt(np.einsum("ij,ij->j", jw, jw))
    if not np.all(scale > 0):
        return math.inf
    a = (jw / scale).T @ (jw / scale)
    g = complex_step_grad(m.integral_inf, theta)[free] / scale
    value = float(np.real(m.integral_inf(theta)))
    var = float(g @ np.linalg.pinv(a, rcond=1e-14, hermitian=True) @ g)
    return math.sqrt(max(var, 0.0)) / abs(value) if value != 0 else math.inf


def fit_capped(model: str, t, y, sigma, absolute_sigma: bool, lam_phys: float, warn: list[str],
               what: str) -> Fit | None:
    """Fit; if the slowest fitted λ is below λ_phys (T_eff > T½), refit with it fixed at λ_phys."""
    fit = fit_model(model, t, y, sigma, absolute_sigma, None)
    if fit is None:
        return None
    lam = fit.fitted_slow_rate
    if lam >= lam_phys:
        return fit
    if lam < lam_phys * (1 - CAP_TOLERANCE):
        t_fit = LN2 / lam
        warn.append(f"{what}: {model} fit gives an effective half-life of {t_fit:.4g} h, longer than the physical "
                    f"half-life {LN2 / lam_phys:.4g} h; capped to the physical half-life (no biological washout)")
    capped = fit_model(model, t, y, sigma, absolute_sigma, lam_phys)
    return capped
