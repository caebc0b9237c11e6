"""Nonlinear mixed model for the absorbed dose–volume response curve.

Model (Warfvinge et al., J Nucl Med 2024;65:1070, "Statistical analysis"; nlme in R):

    dv_ij = (A_g + b_i) (1 - exp(-D_ij / s_g)) + e_ij,   b_i ~ N(0, sd_b^2),  e_ij ~ N(0, sigma^2)

with a random amplitude per patient i and fixed amplitude A_g and scale dose s_g (Gy) per grade g.
One grade ("G2_only") has beta = (A, s); two grades use treatment contrasts with the first grade as
reference, beta = (A.(Intercept), A.grade<G2>, s.(Intercept), s.grade<G2>) as
``nlme(fixed = list(A ~ grade, s ~ grade), random = A ~ 1 | patient)``.

Estimator ("lindstrom-bates", ML): the fixed point that nlme's alternating PNLS/LME algorithm
iterates to. Because b enters linearly, with g = 1 - exp(-D/s) and V_i = sigma^2 I + sd_b^2 g_i g_i':
- beta = argmin sum_i r_i' V_i^-1 r_i, r_i = y_i - A g_i (penalised NLS with b profiled out);
- (sd_b, sigma) maximise the exact Gaussian marginal log-likelihood at fixed beta;
- varFix = (X' V^-1 X)^-1, X = d f / d beta at (beta, BLUPs); logLik = exact marginal log-likelihood.
Both steps are iterated to a relative change below 1e-10. Start values are per-grade ``nls`` fits
(Gauss–Newton from A = 0.8, s = 50; if that fails a bounded fit with A in [0, 2], s in [1, 1000]).
nlme with default control stops earlier (pnlsTol 1e-3): about 1e-4 relative in A, 1e-3 in s.

Optional estimator "exact-ml": the maximum of the exact marginal likelihood (includes log|V(s)|).

Warnings flag a singular fit (sd_b on the boundary 0), non-convergence, and curves whose A and s are
not separately identified (A > 1, |corr(A, s)| > 0.95, SE > estimate, s beyond the dose range).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from ..errors import InputError, ModelFitError

logger = logging.getLogger(__name__)

Z95 = 1.96  # the paper: 95 % CI = fit +- 1.96 SE
DEFAULT_DOSE_GRID_GY = tuple(float(x) for x in np.arange(0.0, 401.0, 5.0))
NLS_START = (0.8, 50.0)  # A, s (Gy): analyze.R / the paper's "preliminary fits using a nonmixed model"
NLS_BOUNDS = ((0.0, 1.0), (2.0, 1000.0))  # fallback bounds (A, s)
TOL = 1e-10
LB = "lindstrom-bates"
EXACT_ML = "exact-ml"
MAX_OUTER = 500
SINGULAR_RATIO = 1e-4  # sd_b / sigma below this: random amplitude variance on the boundary
CONFOUNDED_CORR = 0.95  # |corr(A, s)| above this: A and s not separately identified (flat ridge)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradeCurveParameters:
    """Amplitude and scale dose of one grade, with delta-method SEs from varFix."""

    amplitude: float
    amplitude_se: float
    scale_gy: float
    scale_gy_se: float
    cov_amplitude_scale: float

    def to_dict(self) -> dict[str, float]:
        return {"amplitude": self.amplitude, "amplitude_se": self.amplitude_se,
                "scale_gy": self.scale_gy, "scale_gy_se": self.scale_gy_se}


@dataclass(frozen=True)
class PopulationCurve:
    """Population curve A (1 - exp(-D/s)) on a dose grid with a delta-method 95 % CI."""

    dose_gy: tuple[float, ...]
    dv: tuple[float, ...]
    se: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"dose_gy": list(self.dose_gy), "dv": list(self.dv), "ci_low": list(self.ci_low),
                "ci_high": list(self.ci_high)}


@dataclass(frozen=True)
class AsymptoticNlmmResult:
    """Fit of dv = (A + b_i)(1 - exp(-D/s)) + e (ML, Lindstrom–Bates fixed point)."""

    grades: tuple[str, ...]
    coefficient_names: tuple[str, ...]
    fixef: tuple[float, ...]
    vcov: tuple[tuple[float, ...], ...]
    per_grade: dict[str, GradeCurveParameters]
    random_amplitude_sd: float
    residual_sd: float
    loglik: float
    shapiro_wilk_w: float
    shapiro_wilk_p: float
    curves: dict[str, PopulationCurve]
    converged: bool
    iterations: int
    singular: bool
    n_obs: int
    n_patients: int
    random_effects: dict[str, float]
    residuals_level1: tuple[float, ...]
    start: dict[str, Any]
    method: str = "ML"
    estimator: str = "lindstrom-bates"
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``dose_response.X`` block (plus converged, iterations, singular)."""
        return {
            "method": self.method,
            "estimator": self.estimator,
            "per_grade": {g: p.to_dict() for g, p in self.per_grade.items()},
            "random_amplitude_sd": self.random_amplitude_sd,
            "residual_sd": self.residual_sd,
            "loglik": self.loglik,
            "shapiro_wilk": {"w": self.shapiro_wilk_w, "p_value": self.shapiro_wilk_p},
            "curves": {g: c.to_dict() for g, c in self.curves.items()},
            "warnings": list(self.warnings),
            "converged": self.converged,
            "iterations": self.iterations,
            "singular": self.singular,
        }


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    dose_gy: np.ndarray
    y: np.ndarray
    pid: np.ndarray  # patient index 0..n_patients-1 per row
    patients: tuple[str, ...]
    grade_idx: np.ndarray  # index into grades per row
    ca: np.ndarray  # (N, p): A_row = ca @ beta
    cs: np.ndarray  # (N, p): s_row = cs @ beta
    coef_a: np.ndarray  # (n_grades, p)
    coef_s: np.ndarray


def _design(dose_gy: Any, dv: Any, patient: Any, grade: Any,
            grades: tuple[str, ...]) -> tuple[_Design, tuple[str, ...]]:
    try:
        dose = np.asarray(dose_gy, dtype=float).ravel()
        y = np.asarray(dv, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"fit_asymptotic_nlmm: 'dose_gy' and 'dv' must be numbers ({exc})") from exc
    pat = np.asarray(patient, dtype=object).ravel().astype(str)
    grd = np.asarray(grade, dtype=object).ravel().astype(str)
    n = dose.size
    for name, arr in (("dv", y), ("patient", pat), ("grade", grd)):
        if arr.size != n:
            raise InputError(f"fit_asymptotic_nlmm: 'dose_gy' has {n} rows but '{name}' has {arr.size}")
    if len(grades) not in (1, 2) or len(set(grades)) != len(grades):
        raise InputError(f"fit_asymptotic_nlmm: 'grades' must name one grade or two different grades, got {grades!r}")
    for name, arr in (("dose_gy", dose), ("dv", y)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(f"fit_asymptotic_nlmm: '{name}' row {int(bad[0])} is {arr[bad[0]]!r}; "
                             "supply a finite value")
    bad = np.flatnonzero(dose < 0)
    if bad.size:
        raise InputError(f"fit_asymptotic_nlmm: 'dose_gy' row {int(bad[0])} is negative ({dose[bad[0]]!r})")
    keep = np.isin(grd, grades)
    dose, y, pat, grd = dose[keep], y[keep], pat[keep], grd[keep]
    for g in grades:
        n_g = int(np.sum(grd == g))
        if n_g < 3:
            raise ModelFitError(f"the dose-response model needs at least 3 tumours of grade {g}; got {n_g}")
        if np.unique(dose[grd == g]).size < 2:
            raise ModelFitError(f"all grade-{g} tumours have the same dose: the amplitude A and the scale dose s "
                                f"of grade {g} cannot both be estimated")
    patients, pid = np.unique(pat, return_inverse=True)
    if patients.size < 2:
        raise ModelFitError(f"the dose-response model needs at least 2 patients; grades {grades} have {patients.size}")
    gidx = np.array([grades.index(g) for g in grd], dtype=int)
    if len(grades) == 1:
        names = ("A", "s")
        coef_a, coef_s = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    else:
        names = ("A.(Intercept)", f"A.grade{grades[1]}", "s.(Intercept)", f"s.grade{grades[1]}")
        coef_a = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
        coef_s = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    des = _Design(dose_gy=dose, y=y, pid=pid, patients=tuple(str(p) for p in patients), grade_idx=gidx,
                  ca=coef_a[gidx], cs=coef_s[gidx], coef_a=coef_a, coef_s=coef_s)
    return des, names


# ------------------------------------------------------------------------------------------------
# nls start values (R's nls: Gauss–Newton with step halving; fallback bounded least squares)
# ------------------------------------------------------------------------------------------------
def _nls_gauss_newton(dose: np.ndarray, y: np.ndarray, a0: float, s0: float) -> np.ndarray | None:
    """R ``nls`` default algorithm: relative-offset criterion 1e-5, 50 iterations, minFactor 1/1024."""
    theta = np.array([a0, s0])
    fac = 1.0

    def resid(t: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return y - t[0] * (1.0 - np.exp(-dose / t[1]))

    r = resid(theta)
    dev = float(r @ r)
    for _ in range(51):
        e = np.exp(-dose / theta[1])
        jac = np.column_stack((1.0 - e, -theta[0] * e * dose / theta[1] ** 2))  # d f / d theta
        q, rr = np.linalg.qr(jac, mode="reduced")  # n x 2 (a complete Q would be n x n)
        if np.min(np.abs(np.diag(rr))) <= 1e-7 * np.max(np.abs(np.diag(rr))):
            return None  # singular gradient
        qty = q.T @ r
        r_perp = r - q @ qty  # the part of r orthogonal to the gradient (R's qr.qty rows 3..n)
        rest = float(r_perp @ r_perp)
        if rest == 0.0 or math.sqrt(float(qty @ qty) / rest) < 1e-5:
            return theta
        incr = np.linalg.solve(rr, qty)
        while True:
            cand = theta + fac * incr
            if cand[1] > 0.0:
                rc = resid(cand)
                dc = float(rc @ rc)
                if np.isfinite(dc) and dc <= dev:
                    break
            fac /= 2.0
            if fac < 1.0 / 1024.0:
                return None  # step factor reduced below minFactor
        theta, r, dev = cand, rc, dc
        fac = min(2.0 * fac, 1.0)
    return None  # number of iterations exceeded maximum


def _nls_start(dose: np.ndarray, y: np.ndarray, grade: str) -> tuple[np.ndarray, str]:
    theta = _nls_gauss_newton(dose, y, *NLS_START)
    if theta is not None:
        return theta, "Gauss-Newton from A=0.8, s=50"
    fit = optimize.least_squares(lambda t: y - t[0] * (1.0 - np.exp(-dose / t[1])), np.array(NLS_START),
                                 bounds=NLS_BOUNDS, method="trf", x_scale=np.array([1.0, 50.0]))
    if not fit.success:
        raise ModelFitError(f"grade {grade}: the fixed-effects start fit of dv = A(1 - exp(-D/s)) failed "
                            f"({fit.message}); check that dv rises with dose in this grade")
    return fit.x, "bounded fit A in [0,2], s in [1,1000] (Gauss-Newton failed)"


# ------------------------------------------------------------------------------------------------
# model pieces
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Parts:
    a: np.ndarray
    s: np.ndarray
    e: np.ndarray
    g: np.ndarray
    r: np.ndarray
    sgg: np.ndarray
    sgr: np.ndarray
    srr: np.ndarray


def _parts(des: _Design, beta: np.ndarray) -> _Parts:
    a, s = des.ca @ beta, des.cs @ beta
    e = np.exp(-des.dose_gy / s)
    g = 1.0 - e
    r = des.y - a * g
    n_pat = len(des.patients)
    return _Parts(a, s, e, g, r, np.bincount(des.pid, g * g, n_pat), np.bincount(des.pid, g * r, n_pat),
                  np.bincount(des.pid, r * r, n_pat))


def _profile_loglik(p: _Parts, lam: float, n_obs: int) -> tuple[float, float]:
    """Exact marginal log-likelihood maximised over sigma^2 at lambda = sd_b^2/sigma^2: (loglik, sigma^2)."""
    den = 1.0 + lam * p.sgg
    sig2 = float(np.sum(p.srr - lam * p.sgr**2 / den)) / n_obs
    if not sig2 > 0.0:
        return -math.inf, 0.0
    return -0.5 * (n_obs * math.log(2.0 * math.pi * sig2) + float(np.sum(np.log(den))) + n_obs), sig2


def _dprofile(p: _Parts, lam: float, n_obs: int) -> float:
    den = 1.0 + lam * p.sgg
    sig2 = float(np.sum(p.srr - lam * p.sgr**2 / den)) / n_obs
    if not sig2 > 0.0:
        raise ModelFitError("the patient random amplitudes reproduce dv exactly (zero residual variance); "
                            "the mixed model cannot be estimated on these data")
    return 0.5 * (float(np.sum(p.sgr**2 / den**2)) / sig2 - float(np.sum(p.sgg / den)))


def _variance_step(p: _Parts, n_obs: int) -> float:
    """lambda >= 0 maximising the exact marginal log-likelihood at fixed beta (global search + root polish)."""
    grid = np.concatenate(([0.0], np.logspace(-12, 8, 81)))
    vals = np.array([_profile_loglik(p, lam, n_obs)[0] for lam in grid])
    k = int(np.argmax(vals))
    if k == 0:
        return 0.0 if _dprofile(p, 0.0, n_obs) <= 0.0 else _polish(p, 0.0, grid[1], n_obs)
    lo, hi = grid[k - 1], grid[min(k + 1, grid.size - 1)]
    return _polish(p, lo, hi, n_obs)


def _polish(p: _Parts, lo: float, hi: float, n_obs: int) -> float:
    f_lo, f_hi = _dprofile(p, lo, n_obs), _dprofile(p, hi, n_obs)
    if f_lo > 0.0 > f_hi:
        return optimize.brentq(lambda x: _dprofile(p, x, n_obs), lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)
    res = optimize.minimize_scalar(lambda x: -_profile_loglik(p, x, n_obs)[0], bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-14 * max(hi, 1e-300)})
    return float(res.x)


def _xhat_and_resid(des: _Design, p: _Parts, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X = d f/d beta at (beta, BLUP), level-1 residuals, BLUPs and c_i = lam / (1 + lam Sgg_i)."""
    c = lam / (1.0 + lam * p.sgg)
    blup = c * p.sgr
    b_row = blup[des.pid]
    dg_ds = -p.e * des.dose_gy / p.s**2
    x = des.ca * p.g[:, None] + des.cs * ((p.a + b_row) * dg_ds)[:, None]
    resid1 = p.r - b_row * p.g
    return x, resid1, blup, c


def _xtwx(des: _Design, x: np.ndarray, g: np.ndarray, c: np.ndarray) -> np.ndarray:
    """X' (I - c_i g_i g_i') X summed over patients (= sigma^2 X' V^-1 X)."""
    gx = np.zeros((c.size, x.shape[1]))
    np.add.at(gx, des.pid, g[:, None] * x)
    return x.T @ x - gx.T @ (c[:, None] * gx)


def _penalised_objective(p: _Parts, lam: float) -> float:
    return float(np.sum(p.srr - lam * p.sgr**2 / (1.0 + lam * p.sgg)))


def _pnls(des: _Design, beta: np.ndarray, lam: float, scale: np.ndarray) -> tuple[np.ndarray, bool]:
    """beta minimising sum_i r_i' (I - c_i g g') r_i at fixed lambda: Gauss–Newton (= nlme's LME step)."""
    p = _parts(des, beta)
    q = _penalised_objective(p, lam)
    prev = math.inf
    for _ in range(200):
        x, resid1, _, c = _xhat_and_resid(des, p, lam)
        try:
            step = np.linalg.solve(_xtwx(des, x, p.g, c), x.T @ resid1)
        except np.linalg.LinAlgError:
            return beta, False
        size = float(np.max(np.abs(step) / scale))
        if size < 1e-6:  # near the optimum the change of the objective is below rounding:
            beta = beta + step  # take the full Gauss-Newton step (local convergence)
            p = _parts(des, beta)
            q = _penalised_objective(p, lam)
            if size < 1e-13 or (size < 1e-10 and size > 0.5 * prev):  # converged, or at the rounding floor
                return beta, True
            prev = size
            continue
        fac = 1.0
        while True:
            cand = beta + fac * step
            if np.all(des.cs @ cand > 0.0):
                pc = _parts(des, cand)
                qc = _penalised_objective(pc, lam)
                if np.isfinite(qc) and qc <= q:
                    break
            fac /= 2.0
            if fac < 1e-10:
                return beta, False
        beta, p, q = cand, pc, qc
    return beta, False


def _exact_loglik(des: _Design, beta: np.ndarray, log_sd_b: float, log_sigma: float) -> float:
    """Exact Gaussian marginal log-likelihood of y_i ~ N(A g_i, sd_b^2 g_i g_i' + sigma^2 I)."""
    p = _parts(des, beta)
    if np.any(p.s <= 0):
        return -math.inf
    sb2, sg2 = math.exp(2.0 * log_sd_b), math.exp(2.0 * log_sigma)
    n_i = np.bincount(des.pid, minlength=len(des.patients))
    quad = (p.srr - sb2 * p.sgr**2 / (sg2 + sb2 * p.sgg)) / sg2
    return -0.5 * float(np.sum(n_i * math.log(2.0 * math.pi * sg2) + np.log1p(sb2 * p.sgg / sg2) + quad))


def _exact_profile(des: _Design, beta: np.ndarray) -> tuple[float, float]:
    """max over (sd_b, sigma) of the exact log-likelihood at beta: (loglik, lambda)."""
    if np.any(des.cs @ beta <= 0):
        return -math.inf, 0.0
    p = _parts(des, beta)
    lam = _variance_step(p, des.y.size)
    return _profile_loglik(p, lam, des.y.size)[0], lam


def _exact_ml(des: _Design, beta: np.ndarray, lam: float, scale: np.ndarray) -> tuple[np.ndarray, float, bool, int]:
    """Maximise the exact marginal likelihood over beta (variance parameters profiled out).

    Score (envelope theorem): X'e / sigma^2 - sum_k c_i g_k dg_k/dbeta; ascent steps use the
    Gauss–Newton metric X'(I - c g g')X / sigma^2 with step halving.
    """
    ll, lam = _exact_profile(des, beta)
    for it in range(1, 501):
        p = _parts(des, beta)
        _, sig2 = _profile_loglik(p, lam, des.y.size)
        x, resid1, _, c = _xhat_and_resid(des, p, lam)
        dg = -p.e * des.dose_gy / p.s**2
        score = x.T @ resid1 - sig2 * (des.cs.T @ (c[des.pid] * p.g * dg))
        step = np.linalg.solve(_xtwx(des, x, p.g, c), score)
        size = float(np.max(np.abs(step) / scale))
        if size < 1e-11:
            return beta, lam, True, it
        fac = 1.0
        while True:
            cand = beta + fac * step
            ll_c, lam_c = _exact_profile(des, cand)
            if ll_c >= ll or (size * fac < 1e-6 and ll_c >= ll - 1e-12 * abs(ll)):
                break
            fac /= 2.0
            if fac < 1e-10:
                return beta, lam, size < 1e-7, it
        beta, ll, lam = cand, ll_c, lam_c
    return beta, lam, False, 500


def _exact_ml_vcov(des: _Design, beta: np.ndarray, sd_b: float, sigma: float) -> np.ndarray:
    """beta block of the inverse observed information in (beta, log sd_b, log sigma) (Richardson
    differences); with sd_b = 0 the information of beta at fixed variance parameters."""
    k = beta.size
    if sd_b > 0.0:
        theta = np.concatenate((beta, [math.log(sd_b), math.log(sigma)]))

        def f(t: np.ndarray) -> float:
            return _exact_loglik(des, t[:k], t[k], t[k + 1])
    else:
        theta = beta.copy()

        def f(t: np.ndarray) -> float:
            return _exact_loglik(des, t, -math.inf, math.log(sigma))
    h = 1e-3 * (np.abs(theta) + 0.1)
    info = -_richardson_hessian(f, theta, h)
    cov = np.linalg.inv(info)
    if np.any(~np.isfinite(np.diag(cov)[:k])) or np.any(np.diag(cov)[:k] <= 0):
        cov = np.linalg.inv(info[:k, :k])
    return cov[:k, :k]


def _richardson_hessian(f: Any, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Hessian by central differences at steps h and h/2, Richardson-extrapolated (error O(h^4))."""
    def central(hh: np.ndarray) -> np.ndarray:
        n = x.size
        out = np.empty((n, n))
        f0 = f(x)
        for i in range(n):
            ei = np.zeros(n)
            ei[i] = hh[i]
            out[i, i] = (f(x + ei) - 2.0 * f0 + f(x - ei)) / hh[i] ** 2
            for j in range(i):
                ej = np.zeros(n)
                ej[j] = hh[j]
                out[i, j] = out[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                    4.0 * hh[i] * hh[j])
        return out
    return (4.0 * central(h / 2.0) - central(h)) / 3.0


# ------------------------------------------------------------------------------------------------
# public
# ------------------------------------------------------------------------------------------------
def asymptotic_curve(amplitude: float, scale_gy: float, cov_amplitude_scale: Any, dose_grid_gy: Any) -> PopulationCurve:
    """Population curve A (1 - exp(-D/s)) with delta-method SE and 95 % CI (fit -+ 1.96 SE).

    SE^2 = J C J' with J = (1 - e^(-D/s), -A e^(-D/s) D / s^2) and C the 2x2 covariance of (A, s).
    """
    grid = np.asarray(dose_grid_gy, dtype=float).ravel()
    cov2 = np.asarray(cov_amplitude_scale, dtype=float)
    if cov2.shape != (2, 2):
        raise InputError(f"asymptotic_curve: 'cov_amplitude_scale' must be 2x2, got shape {cov2.shape}")
    if not scale_gy > 0:
        raise InputError(f"asymptotic_curve: 'scale_gy' must be > 0 Gy, got {scale_gy!r}")
    e = np.exp(-grid / scale_gy)
    fit = amplitude * (1.0 - e)
    jac = np.column_stack((1.0 - e, -amplitude * e * grid / scale_gy**2))
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, cov2, jac), 0.0))
    return PopulationCurve(tuple(map(float, grid)), tuple(map(float, fit)), tuple(map(float, se)),
                           tuple(map(float, fit - Z95 * se)), tuple(map(float, fit + Z95 * se)))


def fit_asymptotic_nlmm(dose_gy: Any, dv: Any, patient: Any, grade: Any, *, grades: tuple[str, ...] = ("G2",),
                        dose_grid_gy: Any = None, estimator: str = LB) -> AsymptoticNlmmResult:
    """Fit dv = (A_g + b_i)(1 - exp(-D/s_g)) + e by ML at the Lindstrom–Bates fixed point (nlme).

    ``grades=("G2",)`` fits the G2 rows only; ``grades=("G1", "G2")`` fits both grades with
    treatment contrasts (G1 reference). Rows of other grades are ignored. Returns per-grade A and s
    (delta-method SEs), the variance components, the exact marginal log-likelihood, Shapiro–Wilk on
    the level-1 residuals y - (A + b_i) g and population curves with 95 % CIs on ``dose_grid_gy``
    (default 0..400 Gy step 5). Raises ModelFitError when the model cannot be estimated.

    ``estimator="exact-ml"`` maximises the exact Gaussian marginal likelihood instead (it includes
    log|V(s)|, which the LB step ignores), started from the LB fit; varFix is then the beta block of the
    inverse observed information in (beta, log sd_b, log sigma) (beta block alone when sd_b = 0).
    """
    if estimator not in (LB, EXACT_ML):
        raise InputError(f"fit_asymptotic_nlmm: 'estimator' must be {LB!r} or {EXACT_ML!r}, got {estimator!r}")
    grades = tuple(str(g) for g in grades)
    des, names = _design(dose_gy, dv, patient, grade, grades)
    grid = np.asarray(DEFAULT_DOSE_GRID_GY if dose_grid_gy is None else dose_grid_gy, dtype=float).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise InputError("fit_asymptotic_nlmm: 'dose_grid_gy' must be finite doses >= 0 Gy")
    n_obs = des.y.size
    warnings: list[str] = []

    starts, start_info = [], {}
    for k, g in enumerate(grades):
        rows = des.grade_idx == k
        theta, how = _nls_start(des.dose_gy[rows], des.y[rows], g)
        starts.append(theta)
        start_info[g] = {"amplitude": float(theta[0]), "scale_gy": float(theta[1]), "algorithm": how}
        if not how.startswith("Gauss"):
            warnings.append(f"grade {g}: the Gauss-Newton start fit failed; a bounded fit was used instead")
    if len(grades) == 1:
        beta = starts[0].copy()
    else:
        beta = np.array([starts[0][0], starts[1][0] - starts[0][0], starts[0][1], starts[1][1] - starts[0][1]])
    scale = np.abs(beta) + 0.1

    p = _parts(des, beta)
    if _penalised_objective(p, 0.0) <= 1e-14 * float(des.y @ des.y):
        raise ModelFitError("the curve A(1 - exp(-D/s)) fits dv exactly (zero residual variance); "
                            "the mixed model cannot be estimated on these data")
    lam = _variance_step(p, n_obs)
    converged, iterations, pnls_failures = False, 0, 0
    for it in range(1, MAX_OUTER + 1):
        iterations = it
        new_beta, ok = _pnls(des, beta, lam, scale)
        pnls_failures += not ok
        p = _parts(des, new_beta)
        new_lam = _variance_step(p, n_obs)
        _, sig2_old = _profile_loglik(p, lam, n_obs)
        _, sig2_new = _profile_loglik(p, new_lam, n_obs)
        delta = max(float(np.max(np.abs(new_beta - beta) / scale)),
                    abs(math.sqrt(new_lam) - math.sqrt(lam)), abs(0.5 * math.log(sig2_new / sig2_old)))
        beta, lam = new_beta, new_lam
        if delta < TOL:
            converged = ok
            break
    if pnls_failures:
        warnings.append(f"the penalised least-squares step for beta did not converge in {pnls_failures} of "
                        f"{iterations} iterations (s heading to 0 or infinity?)")
    if not converged:
        warnings.append(f"the Lindstrom-Bates iteration did not converge in {MAX_OUTER} iterations; "
                        "the estimates are not a fixed point")

    if estimator == EXACT_ML:
        beta, lam, exact_ok, exact_it = _exact_ml(des, beta, lam, scale)
        iterations += exact_it
        converged = converged and exact_ok
        if not exact_ok:
            warnings.append("the exact marginal ML ascent did not converge")
    p = _parts(des, beta)
    loglik, sig2 = _profile_loglik(p, lam, n_obs)
    sd_b = math.sqrt(lam * sig2)
    x, resid1, blup, c = _xhat_and_resid(des, p, lam)
    try:
        if estimator == EXACT_ML:
            vcov = _exact_ml_vcov(des, beta, sd_b, math.sqrt(sig2))
        else:
            vcov = sig2 * np.linalg.inv(_xtwx(des, x, p.g, c))
    except np.linalg.LinAlgError as exc:
        raise ModelFitError("the dose-response model's information matrix is singular: A and s cannot be "
                            "estimated (all doses on the plateau or on the initial slope?)") from exc
    if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) <= 0):
        raise ModelFitError("the dose-response model's covariance matrix is not positive definite: A and s "
                            "cannot be estimated (all doses on the plateau or on the initial slope?)")
    singular = sd_b < SINGULAR_RATIO * math.sqrt(sig2)
    if singular:
        warnings.append("singular fit: the random-amplitude SD is on the boundary (0); "
                        "the model reduces to a fixed-effects fit")

    per_grade: dict[str, GradeCurveParameters] = {}
    curves: dict[str, PopulationCurve] = {}
    for k, g in enumerate(grades):
        ca, cs = des.coef_a[k], des.coef_s[k]
        a, s = float(ca @ beta), float(cs @ beta)
        va, vs, cas = float(ca @ vcov @ ca), float(cs @ vcov @ cs), float(ca @ vcov @ cs)
        per_grade[g] = GradeCurveParameters(a, math.sqrt(va), s, math.sqrt(vs), cas)
        warnings.extend(_identifiability_warnings(g, a, s, va, vs, cas, des.dose_gy[des.grade_idx == k]))
        curves[g] = asymptotic_curve(a, s, np.array([[va, cas], [cas, vs]]), grid)

    sw_w, sw_p = _shapiro_wilk(np.asarray(resid1), warnings)
    for w in warnings:
        logger.warning("fit_asymptotic_nlmm %s: %s", "+".join(grades), w)
    return AsymptoticNlmmResult(
        grades=grades, coefficient_names=names, fixef=tuple(map(float, beta)),
        vcov=tuple(tuple(map(float, row)) for row in vcov), per_grade=per_grade,
        random_amplitude_sd=float(sd_b), residual_sd=math.sqrt(sig2), loglik=float(loglik),
        shapiro_wilk_w=sw_w, shapiro_wilk_p=sw_p, curves=curves,
        converged=converged, iterations=iterations, singular=bool(singular), n_obs=n_obs,
        n_patients=len(des.patients), random_effects={pt: float(b) for pt, b in zip(des.patients, blup, strict=True)},
        residuals_level1=tuple(map(float, resid1)), start=start_info, estimator=estimator, warnings=tuple(warnings))


SHAPIRO_WILK_MAX_N = 5000  # R shapiro.test: "sample size must be between 3 and 5000"


def _shapiro_wilk(resid: np.ndarray, warnings: list[str]) -> tuple[float, float]:
    """Shapiro-Wilk W and p of the level-1 residuals, as R ``shapiro.test`` (NaN outside 3..5000)."""
    if not 3 <= resid.size <= SHAPIRO_WILK_MAX_N:
        warnings.append(f"Shapiro-Wilk test of the residuals not computed: {resid.size} residuals, the test is "
                        f"defined for 3 to {SHAPIRO_WILK_MAX_N} (R shapiro.test); inspect a Q-Q plot instead")
        return math.nan, math.nan
    sw = stats.shapiro(resid)
    return float(sw.statistic), float(sw.pvalue)


def _identifiability_warnings(grade: str, a: float, s: float, var_a: float, var_s: float, cov_as: float,
                              dose_gy: np.ndarray) -> list[str]:
    """Flag a curve whose plateau A and scale s are not separately identified by the doses."""
    out = []
    corr = cov_as / math.sqrt(var_a * var_s) if var_a > 0 and var_s > 0 else float("nan")
    if a > 1.0:
        out.append(f"grade {grade}: fitted amplitude A = {a:.3g} exceeds the largest possible volume reduction "
                   "(1): the plateau is not reached within the doses and A, s drift along a flat ridge")
    if not math.isfinite(corr) or abs(corr) > CONFOUNDED_CORR:
        out.append(f"grade {grade}: A and s are nearly confounded (corr {corr:.3f}): flat ridge of the likelihood; "
                   "only the initial slope A/s is well determined")
    if math.sqrt(var_s) > s or math.sqrt(var_a) > abs(a):
        out.append(f"grade {grade}: SE larger than the estimate (A {a:.3g} +- {math.sqrt(var_a):.3g}, "
                   f"s {s:.3g} +- {math.sqrt(var_s):.3g} Gy): A and s are not identified")
    if s > float(np.max(dose_gy)):
        out.append(f"grade {grade}: scale dose s = {s:.3g} Gy exceeds the largest dose ({np.max(dose_gy):.3g} Gy): "
                   "the plateau is an extrapolation")
    if s < float(np.min(dose_gy)) / 3.0:
        out.append(f"grade {grade}: scale dose s = {s:.3g} Gy is below a third of the smallest dose "
                   f"({np.min(dose_gy):.3g} Gy): all doses lie on the plateau and s is not determined")
    return out
