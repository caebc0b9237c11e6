"""Linear mixed model with a patient random intercept, as lme4::lmer + pbkrtest + lmerTest + emmeans.

Model: y = X beta + Z b + e, b ~ N(0, var_patient I), e ~ N(0, var_residual I), Z = patient indicators.

Estimation (Bates et al. 2015, J Stat Softw 67(1), sec. 3): lme4's parametrisation
theta = sd_patient/sigma, with beta and sigma profiled out, so the (REML or ML) deviance is a function of
theta alone. For a random intercept, per patient i with n_i rows,
(I + theta^2 J)^-1 = P_within + w_i J/n_i with w_i = 1/(1 + n_i theta^2), so every quantity is a
within-patient cross-product plus a weighted sum over patient means:

    REML:  d(theta) = sum log(1 + n_i theta^2) + log|X'WX| + (n - p)(1 + log(2 pi r^2/(n - p)))
    ML:    d(theta) = sum log(1 + n_i theta^2) + n (1 + log(2 pi r^2/n)),
    r^2 = min_beta (y - X beta)'W(y - X beta)

The minimum over theta >= 0 is bracketed on a log grid and polished by a root search on the analytic
d'(theta). A fit is singular (lme4 isSingular) when theta < 1e-4.

Inference:
- unadjusted vcov(beta) = sigma^2 (X'WX)^-1 = (X'V^-1X)^-1;
- Kenward-Roger (Kenward & Roger 1997, Biometrics 53:983), ported from pbkrtest 0.5.2 ``vcovAdj`` (adjusted
  covariance Phi_A) and ``Lb_ddf`` (df), with the variance parameters (var_patient, var_residual);
- Satterthwaite as lmerTest 3.1 (Kuznetsova et al. 2017, J Stat Softw 82(13)): the Hessian of the REML
  deviance in (theta, sigma) and the Jacobian of vcov(beta), both analytic here (lmerTest differentiates
  numerically);
- emmeans-style group means: KR SE from Phi_A and KR df, Satterthwaite SE from the unadjusted vcov.

When y does not vary within patients beyond what the fixed effects explain (a patient-level variable such as
the administered activity), the residual variance has no positive REML estimate: the criterion decreases
without bound as theta -> infinity. R then reports "failed to converge" and pbkrtest fails. Here the fit is
flagged ``residual_variance_collapsed``; the fixed effects are the limit of the GLS estimate (exact fit within
patients, patients weighted equally) and no standard errors, KR or Satterthwaite inference are given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from LuDoseResponseLib.errors import InputError, ModelFitError

log = logging.getLogger(__name__)

SINGULAR_THETA_TOL = 1e-4  # lme4 isSingular(): a variance parameter with lower bound 0 below this is singular
_THETA_GRID = np.concatenate([[0.0], np.logspace(-6.0, 6.0, 121)])
_COLLAPSE_REL_SD = 1e-9  # within-patient residual SD below this fraction of max|y|: no residual variance
_LMERTEST_EIG_TOL = 1e-8  # lmerTest as_lmerModLT(tol): Hessian eigenvalues below this are dropped
_PBKRTEST_CONDI = 1e-10  # pbkrtest vcovAdj: generalised inverse of the information when min|eigen| <= this


# ----------------------------------------------------------------------------------------------------------
# data layout and the profiled deviance
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Within-patient centred data and patient means: everything the closed-form algebra needs."""

    sizes: np.ndarray  # (q,) rows per patient
    xbar: np.ndarray  # (q, p) patient means of X
    ybar: np.ndarray  # (q,) patient means of y
    xc: np.ndarray  # (n, p) X minus its patient mean
    yc: np.ndarray  # (n,) y minus its patient mean
    xtx_patient: np.ndarray  # (q, p, p) X_i'X_i

    @property
    def n(self) -> int:
        return int(self.xc.shape[0])

    @property
    def p(self) -> int:
        return int(self.xc.shape[1])

    @property
    def q(self) -> int:
        return int(self.sizes.size)


def _layout(y: np.ndarray, x: np.ndarray, codes: np.ndarray, q: int) -> _Layout:
    sizes = np.bincount(codes, minlength=q).astype(float)
    xbar = np.stack([np.bincount(codes, weights=x[:, j], minlength=q) for j in range(x.shape[1])], axis=1)
    xbar /= sizes[:, None]
    ybar = np.bincount(codes, weights=y, minlength=q) / sizes
    xtx = np.zeros((q, x.shape[1], x.shape[1]))
    np.add.at(xtx, codes, x[:, :, None] * x[:, None, :])
    return _Layout(sizes, xbar, ybar, x - xbar[codes], y - ybar[codes], xtx)


@dataclass(frozen=True)
class _Profile:
    """The model at one theta, with beta (and sigma, in the deviance) profiled out."""

    theta: float
    beta: np.ndarray
    m: np.ndarray  # X'WX (sigma units)
    m_inv: np.ndarray
    ebar: np.ndarray  # patient means of y - X beta
    r2: float  # penalised residual sum of squares
    logdet_l2: float  # sum log(1 + n_i theta^2)
    logdet_m: float


def _profile(lay: _Layout, theta: float) -> _Profile:
    nw = lay.sizes / (1.0 + lay.sizes * theta**2)  # n_i w_i
    m = lay.xc.T @ lay.xc + (lay.xbar.T * nw) @ lay.xbar
    xwy = lay.xc.T @ lay.yc + (lay.xbar.T * nw) @ lay.ybar
    m_inv = np.linalg.inv(m)
    beta = np.linalg.solve(m, xwy)
    ec = lay.yc - lay.xc @ beta
    ebar = lay.ybar - lay.xbar @ beta
    r2 = float(ec @ ec + nw @ ebar**2)
    sign, logdet_m = np.linalg.slogdet(m)
    if sign <= 0:
        raise ModelFitError("X'V^-1X is not positive definite: the fixed-effects design is rank deficient")
    return _Profile(
        theta, beta, m, m_inv, ebar, r2, float(np.sum(np.log1p(lay.sizes * theta**2))), float(logdet_m)
    )


def _dof(lay: _Layout, reml: bool) -> int:
    return lay.n - lay.p if reml else lay.n


def _deviance(lay: _Layout, pr: _Profile, reml: bool) -> float:
    """lme4's profiled deviance (REML criterion when ``reml``)."""
    dof = _dof(lay, reml)
    dev = pr.logdet_l2 + dof * (1.0 + math.log(2.0 * math.pi * pr.r2 / dof))
    return dev + pr.logdet_m if reml else dev


def _weight_derivatives(lay: _Layout, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """d(n_i w_i)/dtheta and d2(n_i w_i)/dtheta2, w_i = 1/(1 + n_i theta^2)."""
    n = lay.sizes
    a = 1.0 + n * theta**2
    return n * (-2.0 * n * theta / a**2), n * (-2.0 * n * (1.0 - 3.0 * n * theta**2) / a**3)


def _deviance_slope(lay: _Layout, theta: float, reml: bool) -> float:
    """d/dtheta of the profiled deviance (envelope theorem for r^2)."""
    pr = _profile(lay, theta)
    ndw, _ = _weight_derivatives(lay, theta)
    slope = float(np.sum(2.0 * lay.sizes * theta / (1.0 + lay.sizes * theta**2)))
    slope += _dof(lay, reml) * float(ndw @ pr.ebar**2) / pr.r2
    if reml:
        slope += float(np.trace(pr.m_inv @ ((lay.xbar.T * ndw) @ lay.xbar)))
    return slope


def _minimise_theta(lay: _Layout, reml: bool) -> float | None:
    """Global minimum of the profiled deviance over theta >= 0; None when it lies beyond the grid."""
    devs = np.array([_deviance(lay, _profile(lay, t), reml) for t in _THETA_GRID])
    k = int(np.argmin(devs))
    if k == len(_THETA_GRID) - 1:
        return None
    if k == 0:
        return 0.0
    lo, hi = _THETA_GRID[k - 1], _THETA_GRID[k + 1]
    g_lo, g_hi = _deviance_slope(lay, lo, reml), _deviance_slope(lay, hi, reml)
    if lo > 0.0 and g_lo < 0.0 < g_hi:
        theta = optimize.brentq(lambda t: _deviance_slope(lay, t, reml), lo, hi, xtol=1e-15 * hi)
    else:
        res = optimize.minimize_scalar(
            lambda t: _deviance(lay, _profile(lay, t), reml),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12 * hi},
        )
        theta = float(res.x)
    dev0 = devs[0]
    return 0.0 if dev0 <= _deviance(lay, _profile(lay, theta), reml) else float(theta)


def _within_residual_sd(lay: _Layout) -> tuple[float, int]:
    """Residual SD of y regressed on X within patients (patients as fixed effects) and its df."""
    coef, _, rank, _ = np.linalg.lstsq(lay.xc, lay.yc, rcond=None)
    dof = lay.n - lay.q - int(rank)
    if dof <= 0:
        return 0.0, dof
    res = lay.yc - lay.xc @ coef
    return math.sqrt(float(res @ res) / dof), dof


def _collapsed_beta(lay: _Layout) -> np.ndarray:
    """Limit of the GLS estimate as var_residual -> 0: exact within-patient fit, patients weighted equally."""
    beta_w, _, _, _ = np.linalg.lstsq(lay.xc, lay.yc, rcond=None)
    # thin SVD: vt is p x p when n >= p (a full SVD would build an n x n U, quadratic in tumours)
    _, sv, vt = np.linalg.svd(lay.xc, full_matrices=lay.n < lay.p)
    rank = int(np.sum(sv > sv.max(initial=0.0) * max(lay.xc.shape) * np.finfo(float).eps)) if sv.size else 0
    null = vt[rank:].T
    if null.shape[1] == 0:
        return beta_w
    gamma, _, _, _ = np.linalg.lstsq(lay.xbar @ null, lay.ybar - lay.xbar @ beta_w, rcond=None)
    return beta_w + null @ gamma


# ----------------------------------------------------------------------------------------------------------
# general fit
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomInterceptFit:
    """A fitted ``y ~ X + (1|patient)`` model (lme4 parametrisation). Arrays are read-only numpy arrays.

    ``theta`` is inf, ``sigma`` 0 and ``vcov``/``loglik`` None when the residual variance collapsed.
    """

    beta: np.ndarray
    vcov: np.ndarray | None  # (X'V^-1X)^-1 at the estimates
    theta: float
    sigma: float
    var_patient: float | None
    var_residual: float
    loglik: float | None  # REML or ML log-likelihood (lme4 logLik)
    reml: bool
    singular: bool
    residual_variance_collapsed: bool
    n_obs: int
    n_patients: int
    warnings: tuple[str, ...]
    _layout: _Layout = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": _floats(self.beta),
            "vcov": _matrix(self.vcov),
            "theta": _num(self.theta),
            "sigma": _num(self.sigma),
            "var_patient": _num(self.var_patient),
            "var_residual": _num(self.var_residual),
            "loglik": _num(self.loglik),
            "reml": self.reml,
            "singular": self.singular,
            "residual_variance_collapsed": self.residual_variance_collapsed,
            "n_obs": self.n_obs,
            "n_patients": self.n_patients,
            "warnings": list(self.warnings),
        }


def fit_random_intercept_lmm(
    y: np.ndarray, x: np.ndarray, patient: Sequence[Any] | np.ndarray, *, reml: bool = True
) -> RandomInterceptFit:
    """Fit ``y ~ X + (1|patient)`` by REML (default) or ML, as ``lme4::lmer``.

    ``y`` (n,) finite, ``x`` the full-rank (n, p) fixed-effects design, ``patient`` n labels (none missing).
    """
    y = np.asarray(y, dtype=float).ravel()
    x = np.asarray(x, dtype=float)
    codes, labels = pd.factorize(np.asarray(patient, dtype=object).ravel(), sort=True)
    if x.ndim != 2 or not (x.shape[0] == y.size == codes.size):
        raise InputError(
            f"y ({y.size}), the design X {x.shape} and patient ({codes.size}) do not match in length"
        )
    if np.any(codes < 0) or not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
        raise InputError("y, X and patient must be complete and finite; remove the incomplete rows")
    q = len(labels)
    if q < 2:
        raise ModelFitError(
            f"{q} patient(s): the patient variance needs at least 2 patients (lme4: 'grouping factors "
            "must have > 1 sampled level'); analyse more patients or use a model without patient effects"
        )
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ModelFitError(f"the fixed-effects design (n={x.shape[0]}, p={x.shape[1]}) is rank deficient")
    if q >= y.size:
        raise ModelFitError(
            f"{q} patients for {y.size} observations: the number of patients must be smaller "
            "than the number of observations (as lme4 requires)"
        )
    lay = _layout(y, x, codes, q)
    warnings: list[str] = []
    resid_sd, within_dof = _within_residual_sd(lay)
    y_scale = float(np.max(np.abs(y))) or 1.0
    theta = None if resid_sd <= _COLLAPSE_REL_SD * y_scale else _minimise_theta(lay, reml)
    if theta is None:
        if within_dof <= 0:
            why = "there are no within-patient degrees of freedom"
        elif resid_sd <= _COLLAPSE_REL_SD * y_scale:
            why = "y does not vary within patients beyond the fixed effects (a patient-level variable)"
        else:
            why = f"the criterion still decreases at theta = sd_patient/sd_residual = {_THETA_GRID[-1]:g}"
        warnings.append(
            f"residual variance collapses to 0: {why}; the REML/ML criterion has no finite optimum "
            "(R: 'failed to converge'); fixed effects are the limit estimates and no standard "
            "errors or tests are available"
        )
        return RandomInterceptFit(
            beta=_readonly(_collapsed_beta(lay)),
            vcov=None,
            theta=math.inf,
            sigma=0.0,
            var_patient=None,
            var_residual=0.0,
            loglik=None,
            reml=reml,
            singular=False,
            residual_variance_collapsed=True,
            n_obs=lay.n,
            n_patients=lay.q,
            warnings=tuple(warnings),
            _layout=lay,
        )
    pr = _profile(lay, theta)
    sigma2 = pr.r2 / _dof(lay, reml)
    singular = theta < SINGULAR_THETA_TOL
    if singular:
        warnings.append(
            "boundary (singular) fit: the patient variance is estimated as 0 "
            f"(theta = sd_patient/sd_residual = {theta:.3g} < {SINGULAR_THETA_TOL:g})"
        )
    return RandomInterceptFit(
        beta=_readonly(pr.beta),
        vcov=_readonly(sigma2 * pr.m_inv),
        theta=float(theta),
        sigma=math.sqrt(sigma2),
        var_patient=theta**2 * sigma2,
        var_residual=sigma2,
        loglik=-0.5 * _deviance(lay, pr, reml),
        reml=reml,
        singular=bool(singular),
        residual_variance_collapsed=False,
        n_obs=lay.n,
        n_patients=lay.q,
        warnings=tuple(warnings),
        _layout=lay,
    )


def _require_estimable(fit: RandomInterceptFit, what: str) -> None:
    if fit.residual_variance_collapsed or fit.vcov is None:
        raise ModelFitError(f"{what} is not computable: the residual variance collapsed to 0")


# ----------------------------------------------------------------------------------------------------------
# Kenward-Roger (pbkrtest 0.5.2)
# ----------------------------------------------------------------------------------------------------------
def _cs_product(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], n: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Product of block-diagonal matrices with blocks alpha_i I + beta_i J (J = ones, n_i x n_i)."""
    return a[0] * b[0], a[0] * b[1] + a[1] * b[0] + n * a[1] * b[1]


def _cs_quadratic(c: tuple[np.ndarray, np.ndarray], lay: _Layout) -> np.ndarray:
    """X' C X for C = blockdiag(alpha_i I + beta_i J)."""
    s = lay.xbar * lay.sizes[:, None]  # X_i' 1
    return np.einsum("i,ijk->jk", c[0], lay.xtx_patient) + (s.T * c[1]) @ s


def _cs_trace(c: tuple[np.ndarray, np.ndarray], n: np.ndarray) -> float:
    return float(np.sum(n * (c[0] + c[1])))


@dataclass(frozen=True)
class KenwardRoger:
    """pbkrtest ``vcovAdj``: the adjusted covariance Phi_A, with the ``P`` and ``W`` that ``Lb_ddf`` needs."""

    vcov_adjusted: np.ndarray
    vcov_unadjusted: np.ndarray
    p_matrices: tuple[np.ndarray, ...]
    w_matrix: np.ndarray

    def ddf(self, contrast: Sequence[float]) -> float:
        """pbkrtest ``Lb_ddf`` for one linear function L'beta (q = 1)."""
        lvec = np.asarray(contrast, dtype=float).reshape(1, -1)
        v0 = self.vcov_unadjusted
        theta_m = lvec.T @ np.linalg.solve(lvec @ v0 @ lvec.T, lvec)
        tv0 = theta_m @ v0
        a1 = a2 = 0.0
        k = len(self.p_matrices)
        for i in range(k):
            ui = tv0 @ self.p_matrices[i] @ v0
            for j in range(i, k):
                e = 1.0 if i == j else 2.0
                uj = tv0 @ self.p_matrices[j] @ v0
                a1 += e * self.w_matrix[i, j] * float(np.trace(ui)) * float(np.trace(uj))
                a2 += e * self.w_matrix[i, j] * float(np.sum(ui * uj.T))
        if a2 == 0.0:
            return math.nan
        qd = 1.0
        b = (a1 + 6.0 * a2) / (2.0 * qd)
        g = ((qd + 1.0) * a1 - (qd + 4.0) * a2) / ((qd + 2.0) * a2)
        denom = 3.0 * qd + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denom, (qd - g) / denom, (qd + 2.0 - g) / denom
        v0s = 1.0 + c1 * b
        v1s = 1.0 - c2 * b
        v2s = 1.0 - c3 * b
        v0s = 0.0 if abs(v0s) < 1e-10 else v0s
        num = 1.0 - a2 / qd
        ratio = 1.0 if (abs(num) < 1e-14 and abs(v1s) < 1e-14) else num / v1s
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.float64(ratio) ** 2 * v0s / np.float64(v2s) / qd
            return float(4.0 + (qd + 2.0) / (qd * rho - 1.0))


def kenward_roger(fit: RandomInterceptFit) -> KenwardRoger:
    """pbkrtest ``vcovAdj`` for a random-intercept REML fit (variance parameters var_patient, var_resid.)."""
    _require_estimable(fit, "the Kenward-Roger adjustment")
    if not fit.reml:
        raise ModelFitError(
            "the Kenward-Roger adjustment is defined for REML fits (pbkrtest refits with REML)"
        )
    lay = fit._layout
    n = lay.sizes
    gb, gr = float(fit.var_patient), float(fit.var_residual)
    one, zero = np.ones_like(n), np.zeros_like(n)
    sinv = (one / gr, -gb / (gr * (gr + n * gb)))
    gmats = ((zero, one), (one, zero))  # d Sigma / d var_patient = ZZ', d Sigma / d var_residual = I
    phi = np.asarray(fit.vcov)
    sgs = [_cs_product(_cs_product(sinv, gm, n), sinv, n) for gm in gmats]  # Sigma^-1 G_r Sigma^-1
    p_mats = [-_cs_quadratic(c, lay) for c in sgs]
    k = len(gmats)
    q_mats: dict[tuple[int, int], np.ndarray] = {}
    info = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            q_mats[i, j] = _cs_quadratic(_cs_product(_cs_product(sgs[i], gmats[j], n), sinv, n), lay)
            ktrace = _cs_trace(
                _cs_product(_cs_product(gmats[i], sinv, n), _cs_product(gmats[j], sinv, n), n), n
            )
            info[i, j] = info[j, i] = (
                ktrace
                - 2.0 * float(np.sum(phi * q_mats[i, j]))
                + float(np.sum((phi @ p_mats[i]) * (p_mats[j] @ phi)))
            )
    if not np.all(np.isfinite(info)):
        raise ModelFitError("the Kenward-Roger information matrix of the variance parameters is not finite")
    if np.min(np.abs(np.linalg.eigvalsh(info))) > _PBKRTEST_CONDI:
        rcond = 1.0 / np.linalg.cond(info, 1)
        if rcond < np.finfo(float).eps:
            raise ModelFitError(
                "the Kenward-Roger information matrix of the variance parameters is "
                f"computationally singular (reciprocal condition number {rcond:.3g})"
            )
        w = 2.0 * np.linalg.inv(info)
    else:
        w = 2.0 * np.linalg.pinv(info)
    w = np.triu(w) + np.triu(w, 1).T
    uu = np.zeros_like(phi)
    for i in range(k - 1):
        for j in range(i + 1, k):
            uu += w[i, j] * (q_mats[i, j] - p_mats[i] @ phi @ p_mats[j])
    uu = uu + uu.T
    for i in range(k):
        uu += w[i, i] * (q_mats[i, i] - p_mats[i] @ phi @ p_mats[i])
    phi_a = phi + 2.0 * phi @ uu @ phi
    if not np.all(np.isfinite(phi_a)):
        raise ModelFitError("the Kenward-Roger adjusted covariance is not finite")
    return KenwardRoger(_readonly(phi_a), _readonly(phi), tuple(_readonly(pm) for pm in p_mats), _readonly(w))


# ----------------------------------------------------------------------------------------------------------
# Satterthwaite (lmerTest 3.1)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Satterthwaite:
    """lmerTest's ingredients: vcov(theta, sigma) = 2 H^-1 and the Jacobian of vcov(beta) there."""

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: tuple[np.ndarray, np.ndarray]
    hessian: np.ndarray

    def ddf(self, contrast: Sequence[float]) -> float:
        """lmerTest ``contest1D``: 2 (L'VL)^2 / (g' A g), g = d(L'VL)/d(theta, sigma)."""
        lvec = np.asarray(contrast, dtype=float)
        var = float(lvec @ self.vcov_beta @ lvec)
        grad = np.array([float(lvec @ jac @ lvec) for jac in self.jacobian])
        denom = float(grad @ self.vcov_varpar @ grad)
        return math.inf if denom == 0.0 else 2.0 * var**2 / denom


def satterthwaite(fit: RandomInterceptFit) -> tuple[Satterthwaite, tuple[str, ...]]:
    """Analytic version of lmerTest ``as_lmerModLT``; returns the ingredients and lmerTest-style warnings."""
    _require_estimable(fit, "the Satterthwaite approximation")
    lay = fit._layout
    theta, s = fit.theta, fit.sigma
    pr = _profile(lay, theta)
    n = lay.sizes
    ndw, nd2w = _weight_derivatives(lay, theta)
    m1 = (lay.xbar.T * ndw) @ lay.xbar
    m2 = (lay.xbar.T * nd2w) @ lay.xbar
    u = lay.xbar.T @ (ndw * pr.ebar)
    r2_1 = float(ndw @ pr.ebar**2)
    r2_2 = float(nd2w @ pr.ebar**2) - 2.0 * float(u @ pr.m_inv @ u)
    dof = _dof(lay, fit.reml)
    h_tt = float(np.sum(2.0 * n * (1.0 - n * theta**2) / (1.0 + n * theta**2) ** 2)) + r2_2 / s**2
    if fit.reml:
        mi1 = pr.m_inv @ m1
        h_tt += float(np.trace(pr.m_inv @ m2)) - float(np.trace(mi1 @ mi1))
    h_ts = -2.0 * r2_1 / s**3
    h_ss = 6.0 * pr.r2 / s**4 - 2.0 * dof / s**2
    hess = np.array([[h_tt, h_ts], [h_ts, h_ss]])
    evals, evecs = np.linalg.eigh(hess)
    warnings = []
    if np.any(evals < -_LMERTEST_EIG_TOL):
        warnings.append(
            f"Satterthwaite: the REML Hessian in (theta, sigma) has a negative eigenvalue "
            f"({evals.min():.1e}); the model may not have converged"
        )
    if np.any(np.abs(evals) <= _LMERTEST_EIG_TOL):
        warnings.append("Satterthwaite: the REML Hessian in (theta, sigma) has an eigenvalue close to zero")
    pos = evals > _LMERTEST_EIG_TOL
    vcov_varpar = 2.0 * (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    jac = (-(s**2) * pr.m_inv @ m1 @ pr.m_inv, 2.0 * s * pr.m_inv)
    return Satterthwaite(
        _readonly(s**2 * pr.m_inv), _readonly(vcov_varpar), tuple(_readonly(j) for j in jac), _readonly(hess)
    ), tuple(warnings)


# ----------------------------------------------------------------------------------------------------------
# two-group comparison (emmeans)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwoGroupLmmResult:
    """``lmer(y ~ group + (1|patient), REML = TRUE)`` with emmeans means and the pairwise difference.

    ``fixef`` = ((Intercept), group[other]); ``difference`` = other - reference. The KR fields
    (``se_*``, ``df_*``, ``difference_se``, ``difference_df``, ``p_value``, ``vcov_kr``) are None when
    ``kr_error`` is set.
    """

    reference_level: Any
    other_level: Any
    n_obs: int
    n_patients: int
    n_reference: int
    n_other: int
    fixef: tuple[float, float]
    vcov: tuple[tuple[float, float], tuple[float, float]] | None
    vcov_kr: tuple[tuple[float, float], tuple[float, float]] | None
    mean_reference: float
    mean_other: float
    se_reference: float | None
    se_other: float | None
    df_reference: float | None
    df_other: float | None
    difference: float
    difference_se: float | None
    difference_df: float | None
    p_value: float | None
    se_reference_unadjusted: float | None
    se_other_unadjusted: float | None
    df_reference_satterthwaite: float | None
    df_other_satterthwaite: float | None
    difference_se_satterthwaite: float | None
    difference_df_satterthwaite: float | None
    p_value_satterthwaite: float | None
    sd_patient: float | None
    sd_residual: float
    var_patient: float | None
    var_residual: float
    theta: float | None
    loglik_reml: float | None
    singular: bool
    residual_variance_collapsed: bool
    warnings: tuple[str, ...]
    kr_error: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("vcov", "vcov_kr"):
                out[name] = None if value is None else [[_num(v) for v in row] for row in value]
            elif name in ("fixef", "warnings"):
                out[name] = [_num(v) if name == "fixef" else v for v in value]
            elif isinstance(value, float):
                out[name] = _num(value)
            else:
                out[name] = value
        return out

    def to_response_groups_block(self) -> dict[str, Any]:
        """analysis.json ``response_groups.G.v`` (reference level 0 = non-responders)."""
        _check_level(
            self.reference_level, 0, "response_groups (the reference level must be the non-responders, 0)"
        )
        return {
            "mean_nonresponder": _num(self.mean_reference),
            "mean_responder": _num(self.mean_other),
            "se_nonresponder": _num(self.se_reference),
            "se_responder": _num(self.se_other),
            "df_nonresponder": _num(self.df_reference),
            "df_responder": _num(self.df_other),
            "difference": _num(self.difference),
            "difference_se": _num(self.difference_se),
            "difference_df": _num(self.difference_df),
            "p_value": _num(self.p_value),
            "p_value_satterthwaite": _num(self.p_value_satterthwaite),
            "difference_df_satterthwaite": _num(self.difference_df_satterthwaite),
            "sd_patient": _num(self.sd_patient),
            "sd_residual": _num(self.sd_residual),
            "loglik_reml": _num(self.loglik_reml),
            "singular": self.singular,
            "warnings": list(self.warnings),
        }

    def to_baseline_volume_block(self) -> dict[str, Any]:
        """analysis.json ``baseline_volume.G`` (reference level False = small; difference = small - large)."""
        _check_level(
            self.reference_level, False, "baseline_volume (the reference level must be False, small)"
        )
        return {
            "mean_small": _num(self.mean_reference),
            "mean_large": _num(self.mean_other),
            "difference": _num(-self.difference),
            "difference_se": _num(self.difference_se),
            "p_value": _num(self.p_value),
            "singular": self.singular,
            "warnings": list(self.warnings),
        }


def fit_two_group_lmm(
    y: Sequence[float] | np.ndarray,
    group: Sequence[Any] | np.ndarray,
    patient: Sequence[Any] | np.ndarray,
    *,
    levels: tuple[Any, Any] = (0, 1),
    y_name: str = "y",
    group_name: str = "group",
    patient_name: str = "patient",
) -> TwoGroupLmmResult:
    """``lmer(y ~ group + (1|patient), REML = TRUE)`` + emmeans (KR and Satterthwaite): the paper's Table 2.

    ``levels`` = (reference, other); every ``group`` value must equal one of them. The names appear in
    messages.
    """
    y_arr, is_other, codes = _validate(y, group, patient, levels, y_name, group_name, patient_name)
    x = np.column_stack([np.ones_like(y_arr), is_other.astype(float)])
    try:
        fit = fit_random_intercept_lmm(y_arr, x, codes, reml=True)
    except ModelFitError as exc:
        raise ModelFitError(f"{y_name} ~ {group_name} + (1|{patient_name}): {exc}") from exc
    warnings = list(fit.warnings)
    b0, b1 = (float(v) for v in fit.beta)
    l_ref, l_other, l_diff = (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)
    kr = satt = None
    kr_error = None
    try:
        kr = kenward_roger(fit)
    except ModelFitError as exc:
        kr_error = str(exc)
        warnings.append(f"Kenward-Roger inference not available: {exc}")
    if not fit.residual_variance_collapsed:
        satt, satt_warnings = satterthwaite(fit)
        warnings.extend(satt_warnings)

    def kr_stats(lvec: tuple[float, float]) -> tuple[float | None, float | None]:
        if kr is None:
            return None, None
        return _num(_se(kr.vcov_adjusted, lvec)), _num(kr.ddf(lvec))

    def satt_stats(lvec: tuple[float, float]) -> tuple[float | None, float | None]:
        if satt is None:
            return None, None
        return _num(_se(satt.vcov_beta, lvec)), _num(satt.ddf(lvec))

    (se_ref, df_ref), (se_oth, df_oth), (se_diff, df_diff) = (kr_stats(lv) for lv in (l_ref, l_other, l_diff))
    (use_ref, sdf_ref), (use_oth, sdf_oth), (sse_diff, sdf_diff) = (
        satt_stats(lv) for lv in (l_ref, l_other, l_diff)
    )
    if kr is not None and df_diff is None:
        warnings.append("Kenward-Roger: the degrees of freedom of the difference are not finite; no p-value")
    if satt is not None and sdf_diff is None:
        warnings.append("Satterthwaite: the degrees of freedom of the difference are not finite; no p-value")
    for message in warnings:
        log.info("%s ~ %s: %s", y_name, group_name, message)
    collapsed = fit.residual_variance_collapsed
    return TwoGroupLmmResult(
        reference_level=_plain(levels[0]),
        other_level=_plain(levels[1]),
        n_obs=fit.n_obs,
        n_patients=fit.n_patients,
        n_reference=int(np.sum(~is_other)),
        n_other=int(np.sum(is_other)),
        fixef=(b0, b1),
        vcov=_pair_matrix(fit.vcov),
        vcov_kr=_pair_matrix(None if kr is None else kr.vcov_adjusted),
        mean_reference=b0,
        mean_other=b0 + b1,
        se_reference=se_ref,
        se_other=se_oth,
        df_reference=df_ref,
        df_other=df_oth,
        difference=b1,
        difference_se=se_diff,
        difference_df=df_diff,
        p_value=_t_test_p(b1, se_diff, df_diff),
        se_reference_unadjusted=use_ref,
        se_other_unadjusted=use_oth,
        df_reference_satterthwaite=sdf_ref,
        df_other_satterthwaite=sdf_oth,
        difference_se_satterthwaite=sse_diff,
        difference_df_satterthwaite=sdf_diff,
        p_value_satterthwaite=_t_test_p(b1, sse_diff, sdf_diff),
        sd_patient=None if collapsed else fit.theta * fit.sigma,
        sd_residual=fit.sigma,
        var_patient=fit.var_patient,
        var_residual=fit.var_residual,
        theta=None if collapsed else fit.theta,
        loglik_reml=fit.loglik,
        singular=fit.singular,
        residual_variance_collapsed=collapsed,
        warnings=tuple(warnings),
        kr_error=kr_error,
    )


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _validate(
    y: Any, group: Any, patient: Any, levels: tuple[Any, Any], y_name: str, group_name: str, patient_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(levels) != 2 or levels[0] == levels[1]:
        raise InputError(
            f"levels must be two different values (reference, other) of {group_name}, got {levels!r}"
        )
    try:
        y_arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{y_name} must be numeric: {exc}") from exc
    group_arr = np.asarray(group).ravel()
    patient_arr = np.asarray(patient, dtype=object).ravel()
    if not (y_arr.size == group_arr.size == patient_arr.size):
        raise InputError(
            f"{y_name}, {group_name} and {patient_name} must have the same length, got "
            f"{y_arr.size}, {group_arr.size} and {patient_arr.size}"
        )
    bad = np.flatnonzero(~np.isfinite(y_arr))
    if bad.size:
        raise InputError(
            f"{y_name} has {bad.size} missing or non-finite value(s) (first at row {bad[0]}); "
            "remove those rows or fill them in"
        )
    is_ref = group_arr == levels[0]
    is_other = group_arr == levels[1]
    stray = np.flatnonzero(~(is_ref | is_other))
    if stray.size:
        raise InputError(
            f"{group_name} has {stray.size} value(s) that are neither level {levels[0]!r} nor "
            f"{levels[1]!r} (first: {group_arr[stray[0]]!r} at row {stray[0]})"
        )
    for level, mask in zip(levels, (is_ref, is_other), strict=True):
        if int(mask.sum()) < 2:
            raise InputError(
                f"{group_name} level {level!r} has {int(mask.sum())} observation(s); at least 2 per "
                f"level are needed to compare {y_name} between the levels"
            )
    codes, _ = pd.factorize(patient_arr, sort=True)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise InputError(f"{patient_name} is missing in {missing.size} row(s) (first at row {missing[0]})")
    return y_arr, np.asarray(is_other, dtype=bool), codes


def _check_level(level: Any, expected: Any, what: str) -> None:
    if not (level == expected and type(level) in (bool, int, float)):
        raise InputError(f"{what}; got reference level {level!r}")


def _se(vcov: np.ndarray, lvec: tuple[float, float]) -> float:
    lv = np.asarray(lvec)
    variance = float(lv @ vcov @ lv)
    if not variance >= 0.0:
        raise ModelFitError(f"the variance of the linear function {tuple(lvec)} of the fixed effects is "
                            f"{variance:.3g} (negative or not finite): no standard error")
    return math.sqrt(variance)


def _t_test_p(estimate: float, se: float | None, df: float | None) -> float | None:
    if se is None or df is None or not (se > 0.0 and df > 0.0):
        return None
    return float(2.0 * stats.t.sf(abs(estimate / se), df))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _floats(a: np.ndarray | None) -> list[float | None] | None:
    return None if a is None else [_num(v) for v in a]


def _matrix(a: np.ndarray | None) -> list[list[float | None]] | None:
    return None if a is None else [[_num(v) for v in row] for row in a]


def _pair_matrix(a: np.ndarray | None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if a is None:
        return None
    return ((float(a[0, 0]), float(a[0, 1])), (float(a[1, 0]), float(a[1, 1])))
