"""Binomial GLMM with one scalar random intercept per group, as ``lme4::glmer(family = binomial)``.

Model: logit P(y_ij = 1 | b_i) = x_ij' beta + b_i, b_i = theta * u_i, u_i ~ N(0, 1) (lme4 1.1-31).

Objective (the deviance lme4 minimises, -2 log-likelihood including all constant terms):

* conditional modes u_i minimise  f_i(u) = sum_j d_ij(u) + u^2 with the Bernoulli deviance
  d = -2 log p(y | eta), found by per-group scalar Newton (lme4's PIRLS with beta fixed, ``uOnly``);
* L_i^2 = 1 + theta^2 sum_j w_ij with the working weights w = mu (1 - mu) at the modes;
* Laplace (nAGQ = 1):  sum_i f_i(u_i) + log L_i^2   (``glmerLaplace``: ldL2 + sqrL + aic);
* adaptive Gauss-Hermite (nAGQ > 1): sum_i f_i(u_i) + log L_i^2 - 2 log m_i, where
  m_i = sum_k w_k exp(z_k^2 / 2 - (f_i(u_i + z_k / L_i) - f_i(u_i)) / 2) with the probabilists'
  Hermite rule (z_k, w_k / sqrt(2 pi)) centred at the mode and scaled by the conditional SD 1/L_i
  (``glmerAGQ``).

The deviance is minimised over (theta, beta). It is even in theta (u -> -u), so theta is optimised
unconstrained and reported as |theta|; theta = 0 gives the ordinary logistic regression.

Fixed-effect covariance as lme4's default ``vcov()``: H = finite-difference Hessian of the deviance
in (theta, beta) by lme4's ``deriv12`` (central differences, delta = 1e-4, no bounds, as ``optwrap``
calls it), V = beta block of H^-1 + its transpose (= 2 H^-1). ``vcov_rx`` is the conditional
covariance (RX'RX)^-1 at the estimate (``use.hessian = FALSE``).

Difference from lme4's default control: lme4 stops PIRLS at a relative change of 1e-7 in the
penalised deviance and takes log|L|^2 from the weights of the previous iterate, restarting each
evaluation from the linear predictor left by its stage-1 (nAGQ = 0) optimiser. Its Laplace objective
is therefore off the Laplace approximation at the modes by O(sqrt(tolPwrss)) (up to ~3e-4 in -2logLik
on the public data, when theta is large) and depends on where stage 1 stopped. Here the modes are
exact; glmer with ``glmerControl(tolPwrss = 1e-14)`` agrees to ~1e-8 (Testing/data/stats/
glmm_tight_pirls.R). The AGQ objective is insensitive to this and matches lme4's default to ~1e-9.

Conditions are reported, never hidden: (quasi-)complete separation of y by X (linear programme) makes
the ML estimates infinite and raises ModelFitError (glmer fails there too); max |X beta| > 15 sets
``separation`` (near-separation: finite but unreliable estimates); theta < 1e-4 sets ``singular``;
lme4's scaled-gradient check and our own Newton decrement set ``converged``; a Hessian that is not
positive definite sets ``hessian_pd = False`` and the covariance falls back to RX, as lme4 does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.optimize import linprog, minimize
from scipy.special import expit

from LuDoseResponseLib.errors import InputError, ModelFitError

log = logging.getLogger(__name__)

DERIV12_DELTA = 1e-4        # lme4 deriv12 default step
SINGULAR_TOL = 1e-4         # lme4 isSingular(tol)
CONV_GRAD_TOL = 0.002       # lme4 check.conv.grad tol
BOUNDARY_TOL = 1e-3         # theta below this is compared with the theta = 0 fit
SEPARATION_ETA = 15.0       # max |X beta| above this flags (quasi-)separation, as the R reference does
LARGE_THETA = 10.0          # a random-intercept SD above this (logit scale) gets a warning
MAX_AGQ = 25                # lme4 allows at most 25 quadrature nodes
_NEWTON_MAXIT = 100
_FD_STEP = 1e-6             # step for the optimiser's gradient, in scaled parameters


@dataclass(frozen=True, eq=False)
class GlmmResult:
    """A fitted binomial GLMM (scalar random intercept); arrays are read-only."""

    names: tuple[str, ...]
    fixef: np.ndarray
    vcov: np.ndarray                 # lme4 default (deriv12 Hessian), or vcov_rx where that is not PD
    vcov_rx: np.ndarray              # conditional on theta, (RX'RX)^-1
    vcov_source: str                 # "hessian" or "rx"
    theta: float                     # SD of the random intercept (logit scale)
    loglik: float
    minus2loglik: float
    n_agq: int
    n_obs: int
    n_groups: int
    singular: bool
    converged: bool
    separation: bool                 # max |X beta| > 15: estimates driven by (quasi-)separated data
    hessian_pd: bool
    max_abs_eta: float
    ranef: dict[str, float]          # group -> conditional mode b = theta * u
    hessian: np.ndarray              # deriv12 Hessian of the deviance in (theta, beta)
    gradient: np.ndarray             # deriv12 gradient of the deviance in (theta, beta)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def se(self) -> np.ndarray:
        """Standard errors of the fixed effects (from ``vcov``)."""
        return np.sqrt(np.diag(self.vcov))

    def to_dict(self) -> dict:
        """JSON-ready dictionary (plain floats and lists, None for non-finite values)."""
        names = list(self.names)
        return {
            "names": names,
            "fixef": {n: _num(v) for n, v in zip(names, self.fixef, strict=True)},
            "se": {n: _num(v) for n, v in zip(names, self.se, strict=True)},
            "vcov": {"names": names, "values": _mat(self.vcov)},
            "vcov_source": self.vcov_source,
            "vcov_rx": {"names": names, "values": _mat(self.vcov_rx)},
            "theta": _num(self.theta),
            "loglik": _num(self.loglik),
            "minus2loglik": _num(self.minus2loglik),
            "n_agq": self.n_agq,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "singular": self.singular,
            "converged": self.converged,
            "separation": self.separation,
            "hessian_pd": self.hessian_pd,
            "max_abs_eta": _num(self.max_abs_eta),
            "ranef": {k: _num(v) for k, v in self.ranef.items()},
            "hessian": {"names": ["theta", *names], "values": _mat(self.hessian)},
            "gradient": [_num(v) for v in self.gradient],
            "warnings": list(self.warnings),
        }


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _mat(a: np.ndarray) -> list[list[float | None]]:
    return [[_num(v) for v in row] for row in np.asarray(a)]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


class _Deviance:
    """The lme4 deviance for one data set (observations sorted by group)."""

    def __init__(self, y: np.ndarray, x: np.ndarray, gidx: np.ndarray, n_groups: int, n_agq: int):
        order = np.argsort(gidx, kind="stable")
        self.y = y[order]
        self.x = x[order]
        self.g = gidx[order]
        self.starts = np.flatnonzero(np.r_[True, np.diff(self.g) != 0])
        self.n_per_group = np.diff(np.r_[self.starts, self.g.size]).astype(float)
        self.n_agq = n_agq
        if n_agq > 1:
            z, w = hermegauss(n_agq)
            self.z = z
            self.logw = np.log(w / math.sqrt(2.0 * math.pi)) + 0.5 * z * z
        self.u = np.zeros(n_groups)      # warm start of the modes

    def gsum(self, v: np.ndarray) -> np.ndarray:
        """Sum over the observations of each group (last axis)."""
        return np.add.reduceat(v, self.starts, axis=-1)

    def residual_deviance(self, eta: np.ndarray) -> np.ndarray:
        """Bernoulli deviance residuals -2 log p(y | eta), stable for large |eta|."""
        return 2.0 * (np.logaddexp(0.0, eta) - self.y * eta)

    def modes(self, theta: float, eta0: np.ndarray) -> np.ndarray:
        """Conditional modes u_i: root of f_i'(u) = 2 (theta sum_j (mu_j - y_j) + u).

        f_i is strictly convex and its root lies in [-|theta| n_i, |theta| n_i]. Newton steps are
        safeguarded as in ``rtsafe``: a bisection of the bracket replaces a Newton step that leaves it
        or that is more than half the step before last (Newton can cycle on the sigmoid-shaped f_i').
        Iterates to machine precision, unlike lme4's PIRLS stop at a relative deviance change of 1e-7.
        """
        half_width = abs(theta) * self.n_per_group
        lo, hi = -half_width, half_width.copy()
        u = np.clip(self.u, lo, hi)
        dx = dx_old = 2.0 * half_width + 1.0
        for _ in range(_NEWTON_MAXIT):
            mu = expit(eta0 + theta * u[self.g])
            fp = theta * self.gsum(mu - self.y) + u
            fpp = theta * theta * self.gsum(mu * (1.0 - mu)) + 1.0
            lo = np.where(fp < 0.0, u, lo)
            hi = np.where(fp > 0.0, u, hi)
            newton = u - fp / fpp
            bisect = (newton < lo) | (newton > hi) | (np.abs(2.0 * fp) > np.abs(dx_old * fpp))
            u_new = np.where(bisect, 0.5 * (lo + hi), newton)
            dx_old, dx = dx, u_new - u
            u = u_new
            if not np.all(np.isfinite(u)):
                raise ModelFitError("PIRLS produced non-finite random-effect modes")
            if np.max(np.abs(dx)) <= 1e-11 * (1.0 + np.max(np.abs(u))):
                self.u = u
                return u
        raise ModelFitError(f"PIRLS (conditional modes of the random effects) did not converge in "
                            f"{_NEWTON_MAXIT} iterations")

    def __call__(self, theta: float, beta: np.ndarray) -> float:
        """-2 log-likelihood (Laplace or AGQ) at (theta, beta)."""
        eta0 = self.x @ beta
        u = self.modes(theta, eta0)
        eta = eta0 + theta * u[self.g]
        mu = expit(eta)
        f0 = self.gsum(self.residual_deviance(eta)) + u * u
        l2 = 1.0 + theta * theta * self.gsum(mu * (1.0 - mu))
        dev = float(np.sum(f0) + np.sum(np.log(l2)))
        if self.n_agq > 1:
            sd = 1.0 / np.sqrt(l2)
            uk = u[None, :] + self.z[:, None] * sd[None, :]          # (K, G)
            etak = eta0[None, :] + theta * uk[:, self.g]             # (K, n)
            fk = self.gsum(self.residual_deviance(etak)) + uk * uk                # (K, G)
            a = self.logw[:, None] - 0.5 * (fk - f0[None, :])
            amax = a.max(axis=0)
            logmult = amax + np.log(np.sum(np.exp(a - amax[None, :]), axis=0))
            dev -= 2.0 * float(np.sum(logmult))
        return dev

    def rx_vcov(self, theta: float, beta: np.ndarray) -> np.ndarray:
        """(RX'RX)^-1: the fixed-effect covariance conditional on theta, at the modes."""
        eta0 = self.x @ beta
        u = self.modes(theta, eta0)
        mu = expit(eta0 + theta * u[self.g])
        w = mu * (1.0 - mu)
        l2 = 1.0 + theta * theta * self.gsum(w)
        v = self.gsum((w[:, None] * self.x).T).T                      # (G, p)
        info = self.x.T @ (w[:, None] * self.x) - theta * theta * (v.T / l2) @ v
        return np.linalg.inv(info)


def deriv12(fun: Callable[[np.ndarray], float], x: np.ndarray, delta: float = DERIV12_DELTA,
            fx: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian by central differences, the stencil of lme4 1.1-31 ``deriv12`` (no bounds).

    H[j, j] = (f(x + d e_j) - 2 f(x) + f(x - d e_j)) / d^2,
    H[i, j] = (f(++) - f(+-) - f(-+) + f(--)) / (2 d)^2, g[j] = (f(x + d e_j) - f(x - d e_j)) / (2 d).
    """
    x = np.asarray(x, dtype=float)
    nx = x.size
    fx = fun(x) if fx is None else fx
    hess = np.full((nx, nx), np.nan)
    grad = np.zeros(nx)
    xadd = x + delta
    xsub = x - delta

    def at(i: int, vi: np.ndarray, j: int | None = None, vj: np.ndarray | None = None) -> np.ndarray:
        z = x.copy()
        z[i] = vi[i]
        if j is not None and vj is not None:
            z[j] = vj[j]
        return z

    for j in range(nx):
        fadd = fun(at(j, xadd))
        fsub = fun(at(j, xsub))
        hess[j, j] = fadd / delta**2 - 2.0 * fx / (delta * delta) + fsub / delta**2
        grad[j] = (fadd - fsub) / (delta + delta)
        for i in range(j):
            hess[i, j] = hess[j, i] = (fun(at(i, xadd, j, xadd)) / (delta + delta) ** 2
                                       - fun(at(i, xadd, j, xsub)) / (delta + delta) ** 2
                                       - fun(at(i, xsub, j, xadd)) / (delta + delta) ** 2
                                       + fun(at(i, xsub, j, xsub)) / (delta + delta) ** 2)
    return grad, hess


def is_separated(x: np.ndarray, y: np.ndarray) -> bool:
    """(Quasi-)complete separation of a binary outcome by the columns of ``x`` (Konis 2007 LP).

    Separation exists iff some beta != 0 has (2 y_j - 1) x_j' beta >= 0 for every j; then the
    likelihood increases without bound along beta and the ML estimate is infinite. For a full-rank
    ``x`` the linear programme max sum_j (2 y_j - 1) x_j' beta, subject to those constraints and
    |beta_k| <= 1, has a positive optimum exactly in that case.
    """
    x = np.asarray(x, dtype=float)
    scale = np.max(np.abs(x), axis=0)
    scale[scale == 0] = 1.0
    a = (2.0 * np.asarray(y, dtype=float) - 1.0)[:, None] * (x / scale)
    res = linprog(-a.sum(axis=0), A_ub=-a, b_ub=np.zeros(a.shape[0]), bounds=[(-1.0, 1.0)] * a.shape[1],
                  method="highs")
    if res.status != 0:
        raise ModelFitError(f"separation check (linear programme) failed: {res.message}")
    return bool(-res.fun > 1e-7)


def _glm_fit(dev: _Deviance, beta: np.ndarray) -> np.ndarray:
    """Ordinary logistic regression (theta = 0) by Newton-Raphson with step halving."""
    x, y = dev.x, dev.y

    def objective(b: np.ndarray) -> float:
        return float(np.sum(dev.residual_deviance(x @ b)))

    f = objective(beta)
    for _ in range(100):
        mu = expit(x @ beta)
        grad = x.T @ (mu - y)
        info = x.T @ ((mu * (1.0 - mu))[:, None] * x)
        step = np.linalg.solve(info, -grad)
        for _ in range(40):
            f_new = objective(beta + step)
            if f_new <= f + 1e-12 * abs(f):
                break
            step = 0.5 * step
        else:
            raise ModelFitError("logistic regression (theta = 0) failed: step halving did not reduce "
                                "the deviance")
        beta = beta + step
        f = f_new
        if np.max(np.abs(step)) < 1e-12 * (1.0 + np.max(np.abs(beta))):
            return beta
    raise ModelFitError("logistic regression (theta = 0) did not converge in 100 iterations")


def _newton_polish(fun: Callable[[np.ndarray], float], z: np.ndarray, fz: float
                   ) -> tuple[np.ndarray, float, float]:
    """Newton steps with finite-difference derivatives; returns (z, f, Newton decrement g'H^-1 g)."""
    decrement = math.inf
    for _ in range(20):
        _, h = deriv12(fun, z, delta=1e-4, fx=fz)
        g = _fd_grad(fun, z)
        try:
            np.linalg.cholesky(h)
            step = np.linalg.solve(h, -g)
        except np.linalg.LinAlgError:
            return z, fz, math.inf
        decrement = float(-g @ step)
        if decrement < 1e-14:
            return z, fz, decrement
        t = 1.0
        for _ in range(30):
            f_new = fun(z + t * step)
            if f_new <= fz:
                break
            t *= 0.5
        else:
            return z, fz, decrement
        z, fz = z + t * step, f_new
    return z, fz, decrement


def _fd_grad(fun: Callable[[np.ndarray], float], z: np.ndarray, step: float = _FD_STEP) -> np.ndarray:
    """Central-difference gradient (the deviance is smooth to ~1e-13 because the modes are exact)."""
    g = np.empty(z.size)
    for k in range(z.size):
        e = np.zeros(z.size)
        e[k] = step
        g[k] = (fun(z + e) - fun(z - e)) / (2.0 * step)
    return g


def _validate(y: Sequence, x: Sequence, groups: Sequence, names: Sequence[str], n_agq: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], tuple[str, ...]]:
    try:
        xa = np.asarray(x, dtype=float)
        ya = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"y and X must be numeric: {exc}") from exc
    if xa.ndim != 2:
        raise InputError(f"X must be a 2-D design matrix, got shape {xa.shape}")
    n, p = xa.shape
    if ya.shape != (n,):
        raise InputError(f"y has shape {ya.shape}, expected ({n},) to match the rows of X")
    bad = np.flatnonzero(~np.isin(ya, (0.0, 1.0)))
    if bad.size:
        raise InputError(f"y must be 0/1; row {int(bad[0])} holds {ya[bad[0]]!r}")
    bad = np.argwhere(~np.isfinite(xa))
    if bad.size:
        raise InputError(f"X has a non-finite value at row {int(bad[0][0])}, column {int(bad[0][1])}")
    names = [str(v) for v in names]
    if len(names) != p or len(set(names)) != p:
        raise InputError(f"names must be {p} distinct column names, got {names}")
    if not isinstance(n_agq, int | np.integer) or not 1 <= int(n_agq) <= MAX_AGQ:
        raise InputError(f"n_agq must be an integer in 1..{MAX_AGQ} (1 = Laplace), got {n_agq!r}")
    ga = np.asarray(groups)
    if ga.shape != (n,):
        raise InputError(f"groups has shape {ga.shape}, expected ({n},)")
    labels = tuple(str(v).strip() for v in ga)
    if any(lab in ("", "nan", "NaN", "None", "<NA>") for lab in labels):
        raise InputError("groups has an empty or missing label; every observation needs a group")
    levels, gidx = np.unique(np.asarray(labels), return_inverse=True)
    return ya, xa, gidx.astype(int), names, tuple(str(v) for v in levels)


def glmm_deviance(y: Sequence, X: Sequence, groups: Sequence, *, theta: float, beta: Sequence[float],
                  n_agq: int = 1) -> float:
    """lme4's objective (-2 log-likelihood, Laplace or AGQ) at (theta, beta), with exact conditional modes."""
    xa = np.asarray(X, dtype=float)
    names = [f"x{k}" for k in range(xa.shape[1])] if xa.ndim == 2 else []
    ya, xa, gidx, _, levels = _validate(y, xa, groups, names, n_agq)
    b = np.asarray(beta, dtype=float)
    if b.shape != (xa.shape[1],) or not np.all(np.isfinite(b)) or not math.isfinite(theta):
        raise InputError(f"theta must be finite and beta must hold {xa.shape[1]} finite values")
    return _Deviance(ya, xa, gidx, len(levels), int(n_agq))(float(theta), b)


def fit_binomial_glmm(y: Sequence, X: Sequence, groups: Sequence, *, names: Sequence[str],
                      n_agq: int = 1) -> GlmmResult:
    """Fit ``glmer(y ~ X - 1 + (1 | groups), family = binomial, nAGQ = n_agq)`` to the true optimum.

    ``y`` 0/1 (n), ``X`` the fixed-effect design (n x p, full column rank, with its own intercept
    column), ``groups`` the grouping labels (n). ``n_agq`` 1 = Laplace, > 1 = adaptive Gauss-Hermite.
    Raises ModelFitError when nothing can be estimated: a constant outcome, a rank-deficient design,
    fewer than 2 groups or no fewer groups than observations, (quasi-)complete separation of y by X
    (the ML estimates are infinite), or a failure of the conditional-mode iterations.
    """
    ya, xa, gidx, names, levels = _validate(y, X, groups, names, n_agq)
    n, p = xa.shape
    n_groups = len(levels)
    if ya.min() == ya.max():
        raise ModelFitError(f"the outcome is constant (all {int(ya[0])}); a logistic model cannot be fitted")
    if np.linalg.matrix_rank(xa) < p:
        raise ModelFitError(f"the fixed-effect design {names} is rank deficient; drop a collinear column")
    if n_groups < 2:
        raise ModelFitError("the random intercept needs at least 2 groups")
    if n_groups >= n:
        raise ModelFitError(f"{n_groups} groups for {n} observations: the random intercept is not "
                            "identifiable (lme4 requires fewer groups than observations)")
    if is_separated(xa, ya):
        raise ModelFitError(f"the outcome is (quasi-)completely separated by the fixed effects {names}: the "
                            "maximum-likelihood estimates are infinite (lme4 fails with a PIRLS error). "
                            "Use fewer covariates or more data")
    n_agq = int(n_agq)
    theta, beta, warns, converged = _optimise(ya, xa, gidx, n_groups, n_agq)

    # lme4's derivatives, in its own parametrisation (theta, beta), at the estimate
    raw = _Deviance(ya, xa, gidx, n_groups, n_agq)
    par = np.r_[theta, beta]
    m2ll = raw(theta, beta)
    grad, hess = deriv12(lambda v: raw(float(v[0]), v[1:]), par, fx=m2ll)
    u_hat = raw.modes(theta, raw.x @ beta)
    vcov_rx = raw.rx_vcov(theta, beta)
    vcov, hessian_pd = _hessian_vcov(hess, p)
    vcov_source = "hessian"
    if not hessian_pd:
        warns.append("the finite-difference Hessian of the deviance is not positive definite; the "
                     "fixed-effect covariance falls back to the conditional (RX) matrix")
        vcov, vcov_source = vcov_rx, "rx"

    singular = theta < SINGULAR_TOL
    if singular:
        warns.append(f"boundary (singular) fit: the random-intercept SD is {theta:.3g} (< {SINGULAR_TOL:g})")
    else:
        conv_msg = _lme4_gradient_check(grad, hess)
        if conv_msg:
            warns.append(conv_msg)
            converged = False
    if theta > LARGE_THETA:
        warns.append(f"random-intercept SD {theta:.3g} > {LARGE_THETA:g} on the logit scale: the outcomes "
                     "are (nearly) separated by patient and the likelihood is flat in theta")
    max_abs_eta = float(np.max(np.abs(xa @ beta)))
    separation = max_abs_eta > SEPARATION_ETA
    if separation:
        warns.append(f"max |linear predictor| = {max_abs_eta:.3g} > {SEPARATION_ETA:g}: (quasi-)complete "
                     "separation; the estimates and SEs are not reliable")
    for w in warns:
        log.warning("GLMM: %s", w)
    return GlmmResult(
        names=tuple(names), fixef=_frozen(beta), vcov=_frozen(vcov), vcov_rx=_frozen(vcov_rx),
        vcov_source=vcov_source, theta=theta, loglik=-0.5 * m2ll, minus2loglik=m2ll, n_agq=n_agq,
        n_obs=n, n_groups=n_groups, singular=singular, converged=converged, separation=separation,
        hessian_pd=hessian_pd, max_abs_eta=max_abs_eta,
        ranef={lev: float(theta * uu) for lev, uu in zip(levels, u_hat, strict=True)},
        hessian=_frozen(hess), gradient=_frozen(grad), warnings=tuple(warns))


def _optimise(y: np.ndarray, x: np.ndarray, gidx: np.ndarray, n_groups: int, n_agq: int
              ) -> tuple[float, np.ndarray, list[str], bool]:
    """Minimise the deviance over (theta, beta); returns theta >= 0, beta, warnings, converged.

    Scaled parameters (beta * RMS of each column); L-BFGS-B with central-difference gradients from
    theta = 1 (lme4's start; 3 as well when the first run ends near 0), then Newton polishing. The
    theta = 0 logistic regression is the boundary candidate (the deviance is even in theta, so theta = 0
    is always stationary); it is taken when the interior run ends within 1e-3 of it with no lower
    deviance (lme4's check.boundary, with a wider tolerance) or when it is lower.
    """
    warns: list[str] = []
    scale = np.sqrt(np.mean(x * x, axis=0))
    scale[scale == 0] = 1.0
    dev = _Deviance(y, x / scale, gidx, n_groups, n_agq)

    def fz(z: np.ndarray) -> float:
        return dev(float(z[0]), z[1:])

    def fun_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        return fz(z), _fd_grad(fz, z)

    beta_glm = _glm_fit(dev, np.zeros(x.shape[1]))
    boundary = (np.r_[0.0, beta_glm], fz(np.r_[0.0, beta_glm]), 0.0)
    runs = []
    for theta_start in (1.0, 3.0):
        dev.u = np.zeros(n_groups)
        opt = minimize(fun_grad, np.r_[theta_start, beta_glm], jac=True, method="L-BFGS-B",
                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9})
        runs.append(_newton_polish(fz, opt.x, float(opt.fun)))
        if abs(runs[-1][0][0]) >= BOUNDARY_TOL:
            break
    z, fval, decrement = min(runs, key=lambda r: r[1])
    if abs(z[0]) < BOUNDARY_TOL and boundary[1] <= fval + 1e-9:
        z, fval, decrement = boundary
    elif boundary[1] < fval - 1e-9:
        warns.append(f"the interior optimum (theta = {abs(z[0]):.4g}) has a higher deviance than theta = 0; "
                     "reporting the boundary fit")
        z, fval, decrement = boundary
    if not math.isfinite(fval):
        raise ModelFitError("the deviance is not finite at the optimum")
    converged = decrement < 1e-6
    if not converged:
        warns.append(f"the optimiser did not reach a stationary point (Newton decrement {decrement:.3g})")
    return abs(float(z[0])), z[1:] / scale, warns, converged


def _hessian_vcov(hess: np.ndarray, p: int) -> tuple[np.ndarray, bool]:
    """lme4 ``calc.vcov.hess``: beta block of solve(H), plus its transpose; PD check."""
    nan = np.full((p, p), np.nan)
    if not np.all(np.isfinite(hess)):
        return nan, False
    try:
        hinv = np.linalg.solve(hess, np.eye(hess.shape[0]))
    except np.linalg.LinAlgError:
        return nan, False
    h = hinv[1:, 1:]
    v = h + h.T
    if not np.all(np.isfinite(v)) or np.min(np.linalg.eigvalsh(v)) <= 0:
        return v, False
    return v, True


def _lme4_gradient_check(grad: np.ndarray, hess: np.ndarray) -> str | None:
    """lme4 ``checkConv``: max(min(|chol(H)^-1 g|, |g|)) against tol 0.002."""
    try:
        r = np.linalg.cholesky(hess).T               # H = R'R, R upper triangular (R's chol)
        scgrad = np.linalg.solve(r, grad)
    except np.linalg.LinAlgError:
        return ("unable to evaluate the scaled gradient (Hessian not positive definite): "
                "convergence unverified")
    mingrad = np.minimum(np.abs(scgrad), np.abs(grad))
    if np.max(mingrad) > CONV_GRAD_TOL:
        return (f"model failed to converge with max|grad| = {np.max(mingrad):.6g} (tol = {CONV_GRAD_TOL}, "
                f"component {int(np.argmax(mingrad)) + 1})")
    return None
