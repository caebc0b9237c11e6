"""Recovery-coefficient models by volume: the Gaussian sphere model, or a curve fitted to phantom spheres.

**Default (no phantom data):** RC(V) of a uniform sphere of volume V under the system's Gaussian
PSF (:func:`pvc.recovery_coefficient`); an uncertain FWHM (SD u_F) gives u_RC = |∂RC/∂F|·u_F.

**Phantom curve** (NEMA/IEC spheres: volumes V_k and measured RC_k, optionally their SDs): the
monotone model

    RC(V) = A · RC_sphere(V; F)

with two parameters, the plateau A (the recovery of a large object: calibration and reconstruction
bias) and the effective FWHM F. For A > 0 it increases with V, from 0 to A, for every F, so a fit
can never produce a non-monotone curve. It is fitted by (weighted) least squares; the parameter
covariance C is (JᵀWJ)⁻¹ with the given SDs, or scaled by the residual variance without them; the
RC's SD at any V is √(gᵀCg), g = ∂RC/∂(A, F) (delta method). ``fit_amplitude=False`` fixes A = 1.
Not modelled: the overshoot (RC > 1) of reconstructions with resolution recovery (Gibbs ringing);
such data show as lack of fit, which is warned. Volumes below the smallest sphere are extrapolation
(warned); above the largest, the curve tends to its plateau A.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import chi2

from LuDoseResponseLib.dosimetry.psf import isotropic_fwhm_mm
from LuDoseResponseLib.dosimetry.pvc import recovery_coefficient, recovery_coefficient_derivatives
from LuDoseResponseLib.errors import InputError, ModelFitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryValue:
    """An RC for one volume with its SD (the model's own), dRC/dV and any warnings."""

    recovery_coefficient: float
    sd: float
    drc_dv_per_ml: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GaussianRecoveryModel:
    """RC(V) of a uniform sphere under an isotropic Gaussian PSF of ``fwhm_mm`` (SD ``fwhm_sd_mm``)."""

    fwhm_mm: float
    fwhm_sd_mm: float = 0.0

    def __post_init__(self):
        isotropic_fwhm_mm(self.fwhm_mm, "Gaussian recovery model")
        if not (math.isfinite(self.fwhm_sd_mm) and self.fwhm_sd_mm >= 0):
            raise InputError(f"Gaussian recovery model: fwhm_sd_mm must be finite and >= 0, got {self.fwhm_sd_mm!r}")

    def evaluate(self, volume_ml: float) -> RecoveryValue:
        rc = recovery_coefficient(volume_ml, self.fwhm_mm)
        drc_dv, drc_df = recovery_coefficient_derivatives(volume_ml, self.fwhm_mm)
        return RecoveryValue(float(rc), float(abs(drc_df) * self.fwhm_sd_mm), float(drc_dv))


@dataclass(frozen=True)
class PhantomRecoveryCurve:
    """RC(V) = A·RC_sphere(V; F) fitted to phantom spheres (see the module docstring)."""

    amplitude: float
    fwhm_mm: float
    covariance: np.ndarray
    volumes_ml: tuple[float, ...]
    measured_rc: tuple[float, ...]
    residual_sd: float
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, volumes_ml: Sequence[float], recovery_coefficients: Sequence[float],
            rc_sd: Sequence[float] | None = None, *, fit_amplitude: bool = True) -> PhantomRecoveryCurve:
        what = "phantom recovery curve"
        v = _positive_vector(volumes_ml, "volumes_ml", what)
        rc = _positive_vector(recovery_coefficients, "recovery_coefficients", what)
        if v.size != rc.size:
            raise InputError(f"{what}: {v.size} volumes but {rc.size} recovery coefficients")
        n_par = 2 if fit_amplitude else 1
        sd = None if rc_sd is None else _positive_vector(rc_sd, "rc_sd", what)
        if sd is not None and sd.size != v.size:
            raise InputError(f"{what}: {v.size} volumes but {sd.size} rc_sd values")
        if np.unique(v).size < n_par or (sd is None and v.size <= n_par):
            raise InputError(f"{what}: {v.size} sphere(s) cannot determine {n_par} parameter(s) with an uncertainty; "
                             f"give at least {n_par + 1} spheres of different volume, or their rc_sd")
        w = 1.0 / (sd if sd is not None else np.ones_like(v))

        def model(p):
            a, f = (p[0], p[1]) if fit_amplitude else (1.0, p[0])
            return a * recovery_coefficient(v, f)

        def jac(p):
            a, f = (p[0], p[1]) if fit_amplitude else (1.0, p[0])
            d_f = a * recovery_coefficient_derivatives(v, f)[1]
            cols = [recovery_coefficient(v, f), d_f] if fit_amplitude else [d_f]
            return np.column_stack(cols) * w[:, None]

        f0 = _initial_fwhm(v, rc / (rc.max() if fit_amplitude else 1.0))
        p0 = [max(float(rc.max()), 1e-3), f0] if fit_amplitude else [f0]
        lo = [1e-6, 1e-3] if fit_amplitude else [1e-3]
        sol = least_squares(lambda p: (model(p) - rc) * w, p0, jac=jac, bounds=(lo, np.inf), x_scale="jac")
        if not sol.success:
            raise ModelFitError(f"{what}: the fit did not converge ({sol.message})")
        jw = jac(sol.x)
        try:
            cov = np.linalg.inv(jw.T @ jw)
        except np.linalg.LinAlgError as exc:
            raise ModelFitError(f"{what}: the parameters are not determined by these spheres") from exc
        dof = v.size - n_par
        chi2_val = float(np.sum(sol.fun ** 2))
        notes = []
        if sd is None:
            cov = cov * chi2_val / dof
        elif dof > 0 and chi2.sf(chi2_val, dof) < 0.01:
            notes.append(f"{what}: lack of fit (χ² = {chi2_val:.3g} on {dof} df, p < 0.01): the measured RCs do not "
                         "follow A·RC_sphere(V; F) within their SDs (resolution recovery overshoot?)")
            log.warning(notes[-1])
        a, f = (float(sol.x[0]), float(sol.x[1])) if fit_amplitude else (1.0, float(sol.x[0]))
        if not fit_amplitude:
            cov = np.array([[0.0, 0.0], [0.0, float(cov[0, 0])]])
        resid = model(sol.x) - rc
        log.info("%s: A = %.4f, FWHM = %.3f mm from %d spheres", what, a, f, v.size)
        return cls(amplitude=a, fwhm_mm=f, covariance=cov, volumes_ml=tuple(map(float, v)),
                   measured_rc=tuple(map(float, rc)), residual_sd=float(np.sqrt(np.mean(resid ** 2))), warnings=notes)

    def evaluate(self, volume_ml: float) -> RecoveryValue:
        rc_s = float(recovery_coefficient(volume_ml, self.fwhm_mm))
        drc_dv, drc_df = (float(x) for x in recovery_coefficient_derivatives(volume_ml, self.fwhm_mm))
        g = np.array([rc_s, self.amplitude * drc_df])
        sd = float(math.sqrt(max(g @ self.covariance @ g, 0.0)))
        notes = list(self.warnings)
        if volume_ml < min(self.volumes_ml):
            notes.append(f"RC extrapolated to {volume_ml:.3g} mL, below the smallest phantom sphere "
                         f"({min(self.volumes_ml):.3g} mL)")
        return RecoveryValue(self.amplitude * rc_s, sd, self.amplitude * drc_dv, notes)


def _positive_vector(x, name: str, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} must be numbers, got {x!r}") from exc
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InputError(f"{what}: {name} must be finite and > 0, got {a[:8].tolist()}")
    return a


def _initial_fwhm(v: np.ndarray, rc_rel: np.ndarray) -> float:
    """The FWHM whose sphere RCs best match the (plateau-normalised) data, on a coarse grid."""
    grid = np.geomspace(0.5, 100.0, 80)
    cost = [np.sum((recovery_coefficient(v, f) - rc_rel) ** 2) for f in grid]
    return float(grid[int(np.argmin(cost))])
