"""Biologically effective dose (BED) of a decaying source: the linear-quadratic model with repair.

For an absorbed-dose rate Ḋ(t) delivered from t = 0 to ∞ (Dale, Br J Radiol 1985;58:515; MIRD
Pamphlet No. 20, Wessels et al., J Nucl Med 2008;49:1884–1899, Eq. 5):

    BED = D + (G·D²)/(α/β),  G = (2/D²) ∫₀^∞ Ḋ(t) ∫₀^t Ḋ(w) e^(−μ(t−w)) dw dt,  μ = ln 2 / T_μ

where T_μ is the repair half-time. For a dose rate that is a sum of exponentials,
Ḋ(t) = Σ_i a_i e^(−b_i t) (mono-exponential, bi-exponential and uptake–washout curves are all of
this form), the double integral is closed:

    ∫₀^∞ Ḋ(t) ∫₀^t Ḋ(w) e^(−μ(t−w)) dw dt = Σ_i Σ_j a_i a_j / ((b_i + b_j)(b_i + μ)),

and for a mono-exponential Ḋ(t) = Ḋ₀ e^(−λt) it gives G = λ/(λ + μ).

Kidney defaults: α/β = 2.6 Gy and T_μ = 2.8 h, the values used for renal BED in PRRT by Barone
et al., J Nucl Med 2005;46:99S–106S, MIRD Pamphlet No. 20 (Wessels et al. 2008) and the Iluminet
trial (Sundlöv et al., Eur J Nucl Med Mol Imaging 2017;44:1480–1489). Cycles weeks apart repair
completely in between, so cumulative BED is the sum of the cycles' BEDs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.parsing import positive_number

KIDNEY_ALPHA_BETA_GY = 2.6
KIDNEY_REPAIR_HALF_TIME_H = 2.8
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Bed:
    """A BED in Gy with its standard deviation, the absorbed dose it came from, and the LQ factor G."""

    bed_gy: float
    sd_gy: float | None
    dose_gy: float
    g_factor: float
    alpha_beta_gy: float
    repair_half_time_h: float

    def to_dict(self) -> dict:
        return {"bed_gy": self.bed_gy, "sd_gy": self.sd_gy, "dose_gy": self.dose_gy, "g_factor": self.g_factor,
                "alpha_beta_gy": self.alpha_beta_gy, "repair_half_time_h": self.repair_half_time_h}


def _exponential_terms(amplitudes_gy_per_h, rates_per_h) -> tuple[np.ndarray, np.ndarray]:
    a = np.atleast_1d(np.asarray(amplitudes_gy_per_h, dtype=float))
    b = np.atleast_1d(np.asarray(rates_per_h, dtype=float))
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InputError(f"amplitudes_gy_per_h and rates_per_h must be equal-length lists, got {a.shape} and "
                         f"{b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(b > 0)):
        raise InputError(f"every amplitude must be finite and every rate a finite number > 0 per h, got "
                         f"amplitudes {a.tolist()} and rates {b.tolist()}")
    return a, b


def _dose_and_g(a: np.ndarray, b: np.ndarray, mu_per_h: float) -> tuple[float, float]:
    dose = float(np.sum(a / b))
    if not dose > 0:
        raise InputError(f"the dose-rate curve integrates to {dose:g} Gy; a BED needs a positive dose")
    double = float(np.sum(np.outer(a, a) / ((b[:, None] + b[None, :]) * (b[:, None] + mu_per_h))))
    return dose, 2.0 * double / dose**2


def bed_from_exponentials(amplitudes_gy_per_h: Sequence[float], rates_per_h: Sequence[float], *,
                          alpha_beta_gy: float = KIDNEY_ALPHA_BETA_GY,
                          repair_half_time_h: float = KIDNEY_REPAIR_HALF_TIME_H) -> Bed:
    """BED of Ḋ(t) = Σ a_i e^(−b_i t) (Gy/h, per h), without uncertainty (module docstring)."""
    alpha_beta = positive_number(alpha_beta_gy, "alpha_beta_gy")
    t_mu = positive_number(repair_half_time_h, "repair_half_time_h")
    a, b = _exponential_terms(amplitudes_gy_per_h, rates_per_h)
    dose, g = _dose_and_g(a, b, LN2 / t_mu)
    return Bed(dose + g * dose**2 / alpha_beta, None, dose, g, alpha_beta, t_mu)


def bed_mono_exponential(dose_gy: float, t_eff_h: float, *, dose_sd_gy: float = 0.0, t_eff_sd_h: float = 0.0,
                         alpha_beta_gy: float = KIDNEY_ALPHA_BETA_GY,
                         repair_half_time_h: float = KIDNEY_REPAIR_HALF_TIME_H) -> Bed:
    """BED of a dose D delivered with a mono-exponential dose rate of effective half-life T_eff.

    BED = D·(1 + D·λ/((λ + μ)·α/β)), λ = ln2/T_eff, μ = ln2/T_μ. The SD propagates independent SDs of
    D and T_eff to first order: ∂BED/∂D = 1 + 2DG/(α/β), ∂BED/∂T_eff = −(D²/(α/β))·μλ/((λ + μ)² T_eff).
    """
    dose = positive_number(dose_gy, "dose_gy")
    t_eff = positive_number(t_eff_h, "t_eff_h")
    alpha_beta = positive_number(alpha_beta_gy, "alpha_beta_gy")
    t_mu = positive_number(repair_half_time_h, "repair_half_time_h")
    sds = []
    for value, what in ((dose_sd_gy, "dose_sd_gy"), (t_eff_sd_h, "t_eff_sd_h")):
        try:
            sd = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be a number, got {value!r}") from None
        if not (math.isfinite(sd) and sd >= 0):
            raise InputError(f"{what} must be a finite number >= 0, got {value!r}")
        sds.append(sd)
    lam, mu = LN2 / t_eff, LN2 / t_mu
    g = lam / (lam + mu)
    d_bed_d_dose = 1.0 + 2.0 * dose * g / alpha_beta
    d_bed_d_teff = -(dose**2 / alpha_beta) * mu * lam / ((lam + mu) ** 2 * t_eff)
    sd = math.hypot(d_bed_d_dose * sds[0], d_bed_d_teff * sds[1])
    return Bed(dose + g * dose**2 / alpha_beta, sd, dose, g, alpha_beta, t_mu)


def _terms_of_fit(model: str, params: dict) -> tuple[list[float], list[float]]:
    if model == "mono":
        return [params["amplitude"]], [params["lambda_per_h"]]
    if model == "bi":
        return ([params["amplitude_fast"], params["amplitude_slow"]],
                [params["lambda_fast_per_h"], params["lambda_slow_per_h"]])
    if model == "uptake-washout":
        c = params["amplitude"]
        return [c, -c], [params["lambda_washout_per_h"], params["lambda_uptake_per_h"]]
    raise InputError(f"a BED needs the dose-rate curve's shape: model {model!r} has none (use a fitted mono, bi "
                     "or uptake-washout integral, or bed_mono_exponential with the effective half-life)")


def bed_from_time_integral(integral, *, alpha_beta_gy: float = KIDNEY_ALPHA_BETA_GY,
                           repair_half_time_h: float = KIDNEY_REPAIR_HALF_TIME_H, what: str = "kidney") -> Bed:
    """BED of a fitted dose-rate curve (a ``TimeIntegral`` of dose-rate samples in Gy/h, method "fit").

    The SD propagates the fit's parameter covariance through central differences of BED(θ).
    """
    if getattr(integral, "method", None) != "fit":
        raise InputError(f"{what}: a BED needs a fitted dose-rate curve, got method "
                         f"{getattr(integral, 'method', None)!r}")
    names = tuple(integral.param_names)
    theta = np.array([integral.params[n] for n in names], dtype=float)

    def bed_of(values: np.ndarray) -> float:
        a, b = _terms_of_fit(integral.model, dict(zip(names, values, strict=True)))
        return bed_from_exponentials(a, b, alpha_beta_gy=alpha_beta_gy, repair_half_time_h=repair_half_time_h).bed_gy

    central = bed_from_exponentials(*_terms_of_fit(integral.model, integral.params), alpha_beta_gy=alpha_beta_gy,
                                    repair_half_time_h=repair_half_time_h)
    covariance = integral.covariance_matrix
    sd = None
    if covariance is not None:
        grad = np.zeros(theta.size)
        for k in range(theta.size):
            step = 1e-6 * max(abs(theta[k]), 1e-12)
            up, down = theta.copy(), theta.copy()
            up[k] += step
            down[k] -= step
            grad[k] = (bed_of(up) - bed_of(down)) / (2 * step)
        sd = float(math.sqrt(max(float(grad @ covariance @ grad), 0.0)))
    return Bed(central.bed_gy, sd, central.dose_gy, central.g_factor, central.alpha_beta_gy,
               central.repair_half_time_h)


def cumulative_bed(cycle_beds: Sequence[Bed], *, correlation: float = 0.0) -> tuple[float, float | None]:
    """(Σ BED, SD) over cycles; ``correlation`` between the cycles' errors (1 for a shared calibration)."""
    if not cycle_beds:
        raise InputError("cumulative_bed needs at least one cycle")
    rho = float(correlation)
    if not (math.isfinite(rho) and -1.0 <= rho <= 1.0):
        raise InputError(f"correlation must lie in [-1, 1], got {correlation!r}")
    total = float(sum(b.bed_gy for b in cycle_beds))
    if any(b.sd_gy is None for b in cycle_beds):
        return total, None
    sd = np.array([b.sd_gy for b in cycle_beds], dtype=float)
    variance = float(np.sum(sd**2) + rho * (np.sum(sd) ** 2 - np.sum(sd**2)))
    return total, math.sqrt(max(variance, 0.0))
