"""Prediction of a tumour's or kidney's absorbed dose per GBq in future cycles, with its uncertainty.

Model (per structure; cycle number k = 1, 2, ...; y_k the dose per administered GBq):

    ln y_k = α + β·(k − 1) + e_k,   e_k ~ N(0, σ²),   σ² = ln(1 + CV²)

- ``constant``: β = 0; α is fitted to the patient's cycles.
- ``decreasing``: y falls by a fraction r per cycle on average, β ~ N(ln(1 − r), τ²) a priori. Roth et
  al. (J Nucl Med 2022;63:399–405, the paper's reference 7) report tumour absorbed doses falling on
  average by 6 % per cycle in G1 and 14 % per cycle in G2 NETs; these are the default r. τ (the spread
  of patients' own rates about it) is not published there and is an assumption (default 0.10 per cycle).
  α has a flat prior, so with one imaged cycle the slope is the prior's; with two or more the patient's
  own cycles pull it (conjugate normal regression, the posterior mean and covariance below).

CV is the inter-cycle variability of the true dose per GBq about the trend (biology and set-up), an
assumption stated in every plan. When the patient has more cycles than trend parameters, σ² is pooled
with the patient's residual scatter: σ² = (ν₀σ₀² + ν s²)/(ν₀ + ν), ν = residual degrees of freedom,
s² the residual variance less the mean measurement variance, ν₀ the prior's weight in cycles.

The measured doses carry their own relative SD u_k (``dose_sd_gy / dose_gy``), so the fit weights are
1/(σ² + u_k²). With X the design, W the weights and Λ = diag(0, 1/τ²) the prior precision:

    C = (XᵀWX + Λ)⁻¹,   θ = C (XᵀW z + Λ θ₀)

and the log dose per GBq of future cycles j, l is jointly normal with mean x_jᵀθ and covariance
x_jᵀC x_l + σ² δ_jl (fit uncertainty shared by all future cycles, inter-cycle noise per cycle).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.stats.tcp import Z95

MODELS = ("constant", "decreasing")
#: Roth et al., J Nucl Med 2022;63:399: mean decrease of the tumour absorbed dose per cycle
TUMOUR_DECREASE_PER_CYCLE = {"G1": 0.06, "G2": 0.14}
#: assumed SD of a patient's log-slope about the published mean (per cycle)
DEFAULT_LOG_SLOPE_SD = 0.10
#: assumed inter-cycle CVs of the true dose per GBq (see the plan's assumptions)
DEFAULT_TUMOUR_CV = 0.20
DEFAULT_KIDNEY_CV = 0.15
#: weight of the assumed CV against the patient's own residual scatter, in cycles
DEFAULT_PRIOR_DF = 4.0


@dataclass(frozen=True)
class TrendModel:
    """How a structure's dose per GBq evolves over cycles (module docstring)."""

    kind: str = "constant"
    decrease_per_cycle: float = 0.0
    log_slope_sd: float = DEFAULT_LOG_SLOPE_SD
    cv: float = DEFAULT_TUMOUR_CV
    prior_df: float = DEFAULT_PRIOR_DF

    def __post_init__(self):
        if self.kind not in MODELS:
            raise InputError(f"dose-per-GBq model must be one of {MODELS}, got {self.kind!r}")
        checks = [("decrease_per_cycle", self.decrease_per_cycle, -1.0, 1.0, "lie in (-1, 1)"),
                  ("log_slope_sd", self.log_slope_sd, 0.0, math.inf, "be > 0"),
                  ("cv", self.cv, 0.0, math.inf, "be > 0"),
                  ("prior_df", self.prior_df, 0.0, math.inf, "be > 0")]
        for name, value, lo, hi, rule in checks:
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value < hi:
                raise InputError(f"{name} must {rule}, got {value!r}")

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "cv": self.cv, "prior_df": self.prior_df}
        if self.kind == "decreasing":
            d.update(decrease_per_cycle=self.decrease_per_cycle, log_slope_sd=self.log_slope_sd)
        return d


@dataclass(frozen=True, eq=False)
class DosePerGbqFit:
    """A structure's fitted trend: θ = (α, β), its covariance, the inter-cycle σ², the observed cycles."""

    name: str
    model: TrendModel
    cycles: tuple[int, ...]
    dose_per_gbq: tuple[float, ...]
    theta: np.ndarray
    cov: np.ndarray
    sigma2: float
    sigma2_from_data: bool

    def log_moments(self, future_cycles: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Mean vector and covariance matrix of ln(dose per GBq) in ``future_cycles``."""
        x = np.column_stack([np.ones(len(future_cycles)), np.asarray(future_cycles, dtype=float) - 1.0])
        return x @ self.theta, x @ self.cov @ x.T + self.sigma2 * np.eye(len(future_cycles))

    def mean_dose_per_gbq(self, cycle: int) -> float:
        mu, s = self.log_moments([cycle])
        return float(np.exp(mu[0] + s[0, 0] / 2))

    def predicted(self, future_cycles: Sequence[int]) -> list[dict]:
        """Per future cycle: the mean dose per GBq and its 95 % prediction interval (log-normal, exact)."""
        mu, cov = self.log_moments(future_cycles)
        s = np.sqrt(np.diag(cov))
        return [{"cycle": int(c), "dose_per_gbq_gy": float(np.exp(m + v * v / 2)),
                 "ci_low_gy": float(np.exp(m - Z95 * v)), "ci_high_gy": float(np.exp(m + Z95 * v))}
                for c, m, v in zip(future_cycles, mu, s, strict=True)]

    def to_dict(self) -> dict:
        sd = np.sqrt(np.diag(self.cov))
        return {"model": self.model.to_dict(), "observed_cycles": list(self.cycles),
                "observed_dose_per_gbq_gy": list(self.dose_per_gbq),
                "log_intercept": float(self.theta[0]), "log_intercept_sd": float(sd[0]),
                "log_slope_per_cycle": float(self.theta[1]), "log_slope_sd": float(sd[1]),
                "decrease_per_cycle": float(1 - math.exp(self.theta[1])),
                "inter_cycle_cv": float(math.sqrt(math.expm1(self.sigma2))),
                "inter_cycle_cv_pooled_with_patient_data": self.sigma2_from_data}


def _solve(x: np.ndarray, z: np.ndarray, var: np.ndarray, prior_precision: np.ndarray, prior_mean: np.ndarray):
    xw = x.T / var
    cov = np.linalg.inv(xw @ x + prior_precision)
    return cov @ (xw @ z + prior_precision @ prior_mean), cov


def fit_dose_per_gbq(name: str, cycles: Sequence[int], dose_gy: Sequence[float], dose_sd_gy: Sequence[float],
                     activity_gbq: Sequence[float], model: TrendModel) -> DosePerGbqFit:
    """Fit ``model`` to one structure's measured cycles (module docstring)."""
    c = np.asarray(cycles, dtype=float)
    d = np.asarray(dose_gy, dtype=float)
    u = np.asarray(dose_sd_gy, dtype=float) / np.where(d > 0, d, 1.0)
    a = np.asarray(activity_gbq, dtype=float)
    if c.size == 0:
        raise InputError(f"{name}: no measured cycle to predict from")
    if np.any(~np.isfinite(d) | (d <= 0)) or np.any(~np.isfinite(a) | (a <= 0)):
        raise InputError(f"{name}: every measured cycle needs a dose > 0 Gy and an activity > 0 to predict the dose "
                         f"per GBq (doses {d.tolist()} Gy, activities {a.tolist()} GBq)")
    y = d / a
    z = np.log(y)
    sigma2_prior = math.log1p(model.cv**2)
    if model.kind == "constant":
        x = np.ones((c.size, 1))
        precision, mean0, n_trend = np.zeros((1, 1)), np.zeros(1), 1
    else:
        x = np.column_stack([np.ones(c.size), c - 1.0])
        precision = np.diag([0.0, 1.0 / model.log_slope_sd**2])
        mean0, n_trend = np.array([0.0, math.log1p(-model.decrease_per_cycle)]), 2
    sigma2 = sigma2_prior
    theta, cov = _solve(x, z, sigma2 + u**2, precision, mean0)
    df = c.size - n_trend
    if df > 0:
        residual = z - x @ theta
        s2 = max(float(residual @ residual) / df - float(np.mean(u**2)), 0.0)
        sigma2 = (model.prior_df * sigma2_prior + df * s2) / (model.prior_df + df)
        theta, cov = _solve(x, z, sigma2 + u**2, precision, mean0)
    if model.kind == "constant":
        theta, cov = np.array([theta[0], 0.0]), np.array([[cov[0, 0], 0.0], [0.0, 0.0]])
    for arr in (theta, cov):
        arr.setflags(write=False)
    return DosePerGbqFit(name, model, tuple(int(k) for k in c), tuple(float(v) for v in y), theta, cov,
                         float(sigma2), df > 0)
