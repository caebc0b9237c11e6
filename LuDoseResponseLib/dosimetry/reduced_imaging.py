"""Reduced imaging in later cycles: one SPECT and no planars, the kinetics from elsewhere.

The manifest's ``kinetics`` chooses (``KINETICS``):

- ``stp-hanscheid``: D ≈ Ḋ(t)·2t/ln2 (Hänscheid H et al., J Nucl Med 2018;59:75–81). The SD carries
  only the dose-rate SD; the approximation error (+6.2 % at most when T_eff lies between t/2 and t,
  an underestimate outside) is stated in the result's warnings, not included; a SPECT before 72 h
  (``HANSCHEID_EARLIEST_H``) adds a warning with the underestimate for a typical tumour (T_eff 100 h).
- ``stp-madsen``: a mono-exponential through the sample with a population effective half-life
  T ± σ_T (Madsen MT et al., Med Phys 2018;45:2318–2324).
- ``from-cycle-1``: the same, with the tumour's own effective half-life from an earlier cycle of the
  same patient (fitted on its full time–activity data). Given the earlier cycle's fitted curve f₁
  (``earlier_factor_h`` = ∫f₁ dt / f₁(t), :func:`earlier_curve_factor_h`), the dose is Ḋ(t)·∫f₁/f₁(t) instead:
  the whole curve keeps its shape (uptake phase included, which the mono-exponential misses, by about
  T_uptake/T_eff ≈ 2 %), and the SD is the same relative SD as below.

Uncertainty growth (``from-cycle-1``): D = Ḋ(t)·e^(λt)/λ with λ = ln2/T, so to first order
SD(D)/D = |1 − λt|·SD(T)/T. SD(T) combines the earlier cycle's fit SD with a between-cycle change
of the tumour's kinetics, ``inter_cycle_t_eff_cv`` (relative SD, default 0.20 — an assumption, not a
published value: set it from your own patients' repeated cycles). Because the first-order term
vanishes at t = T/ln2 (Madsen's optimal time), the SD returned is the larger deviation of D at
T ± SD(T) from D(T), which keeps the second-order term; it equals the first-order value far from the
optimum. A half-life at or above the physical one is capped to it.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from LuDoseResponseLib.dosimetry.integration import TimeIntegral, hanscheid_2018, madsen_2018
from LuDoseResponseLib.dosimetry.integration.models import CURVES
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.parsing import positive_number
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H

KINETICS = ("stp-hanscheid", "stp-madsen", "from-cycle-1")
#: a Hänscheid SPECT earlier than this (h) is warned about: D_H/D = (2x/ln2)e^(−x), x = ln2·t/T_eff, is 0.41
#: at 24 h for T_eff 100 h (Hänscheid et al. 2018 image at about 96 h)
HANSCHEID_EARLIEST_H = 72.0
DEFAULT_INTER_CYCLE_T_EFF_CV = 0.20
#: the slow (washout) rate of each fitted model of integration.time_integral: T_eff = ln2/λ
_SLOW_RATE_NAMES = ("lambda_per_h", "lambda_slow_per_h", "lambda_washout_per_h")


def earlier_cycle_t_eff(integral: TimeIntegral, what: str = "earlier cycle") -> tuple[float, float]:
    """(T_eff, SD) in hours from an earlier cycle's fitted time integral: T = ln2/λ of the slow (washout)
    phase, SD = T·SD(λ)/λ to first order (0 where the integral has no covariance, e.g. a trapezoid)."""
    if integral.t_eff_h is None or not math.isfinite(integral.t_eff_h) or integral.t_eff_h <= 0:
        raise InputError(f"{what}: the time integral has no effective half-life (method {integral.method!r}); "
                         "from-cycle-1 needs a cycle fitted on several time points")
    name = next((n for n in _SLOW_RATE_NAMES if n in integral.param_names), None)
    cov = integral.covariance_matrix
    if name is None or cov is None:
        return float(integral.t_eff_h), 0.0
    i = integral.param_names.index(name)
    lam = integral.params[name]
    return float(integral.t_eff_h), float(integral.t_eff_h * math.sqrt(max(cov[i, i], 0.0)) / lam)


def earlier_curve_factor_h(integral: TimeIntegral, time_h: float) -> float | None:
    """∫f₁ dt / f₁(time_h) (h) of an earlier cycle's fitted curve: the dose per unit dose rate at ``time_h`` if the
    curve keeps its shape; None for an integral without a fitted model (trapezoid, single time point)."""
    curve = CURVES.get(integral.model)
    if curve is None or integral.method != "fit" or any(n not in integral.params for n in curve.param_names):
        return None
    value_at = float(curve.f(np.array([float(time_h)]), np.array([integral.params[n] for n in curve.param_names]))[0])
    return float(integral.value / value_at) if value_at > 0 and math.isfinite(value_at) else None


def _madsen_with_spread(time_h: float, dose_rate: float, t_eff_h: float, t_eff_sd_h: float,
                        dose_rate_sd: float | None, what: str) -> TimeIntegral:
    """Madsen's integral with the SD from D(T ± σ_T) (second order kept) and the dose-rate SD."""
    t_eff_h = min(t_eff_h, LU177_HALF_LIFE_H)
    central = madsen_2018(time_h, dose_rate, t_eff_h, value_sd=dose_rate_sd, what=what)
    spread = 0.0
    for t_eff in (max(t_eff_h - t_eff_sd_h, 1e-3), min(t_eff_h + t_eff_sd_h, LU177_HALF_LIFE_H)):
        spread = max(spread, abs(madsen_2018(time_h, dose_rate, t_eff, what=what).value - central.value))
    rate_part = 0.0 if dose_rate_sd is None else dose_rate_sd * central.params["factor_h"]
    sd = math.hypot(spread, rate_part)
    return replace(central, sd=sd if (t_eff_sd_h > 0 or dose_rate_sd is not None) else None,
                   diagnostics={**central.diagnostics, "t_eff_sd_h": t_eff_sd_h, "t_eff_part_gy": spread})


def reduced_imaging_dose(kinetics: str, time_h: float, dose_rate_gy_per_h: float, *,
                         dose_rate_sd_gy_per_h: float | None = None, earlier_t_eff_h: float | None = None,
                         earlier_t_eff_sd_h: float = 0.0, earlier_factor_h: float | None = None,
                         inter_cycle_t_eff_cv: float = DEFAULT_INTER_CYCLE_T_EFF_CV,
                         population_t_eff_h: float | None = None, population_t_eff_sd_h: float = 0.0,
                         what: str = "tumour") -> TimeIntegral:
    """A cycle's dose (Gy) from one SPECT dose rate at ``time_h`` (h after administration); see the module."""
    if kinetics not in KINETICS:
        raise InputError(f"{what}: kinetics must be one of {', '.join(KINETICS)}, got {kinetics!r}")
    if kinetics == "stp-hanscheid":
        result = hanscheid_2018(time_h, dose_rate_gy_per_h, value_sd=dose_rate_sd_gy_per_h, what=what)
        if time_h < HANSCHEID_EARLIEST_H:
            x = math.log(2.0) * time_h / 100.0
            note = (f"{what}: Hänscheid's approximation is meant for imaging at about 4 days; at {time_h:g} h it "
                    f"underestimates a tumour with T_eff 100 h by {1 - 2 * x / math.log(2.0) * math.exp(-x):.0%} "
                    "(D_H/D = (2x/ln2)·e^(−x), x = ln2·t/T_eff); use stp-madsen or from-cycle-1")
            result = replace(result, warnings=(*result.warnings, note))
        return result
    if kinetics == "stp-madsen":
        t_eff = positive_number(population_t_eff_h, f"{what}: population_t_eff_h")
        return _madsen_with_spread(time_h, dose_rate_gy_per_h, t_eff, float(population_t_eff_sd_h),
                                   dose_rate_sd_gy_per_h, what)
    t_eff = positive_number(earlier_t_eff_h, f"{what}: earlier_t_eff_h (the effective half-life from an earlier cycle)")
    if not (math.isfinite(inter_cycle_t_eff_cv) and inter_cycle_t_eff_cv >= 0):
        raise InputError(f"{what}: inter_cycle_t_eff_cv must be ≥ 0, got {inter_cycle_t_eff_cv!r}")
    t_eff_sd = math.hypot(float(earlier_t_eff_sd_h or 0.0), inter_cycle_t_eff_cv * t_eff)
    result = _madsen_with_spread(time_h, dose_rate_gy_per_h, t_eff, t_eff_sd, dose_rate_sd_gy_per_h, what)
    shape = "assumes a mono-exponential decline"
    if earlier_factor_h is not None and result.value > 0:
        factor = positive_number(earlier_factor_h, f"{what}: earlier_factor_h")
        scale = dose_rate_gy_per_h * factor / result.value
        result = replace(result, value=result.value * scale, sd=None if result.sd is None else result.sd * scale,
                         diagnostics={**result.diagnostics, "earlier_factor_h": factor, "mono_value": result.value})
        shape = "assumes the earlier cycle's curve keeps its shape (scaled to this SPECT)"
    note = (f"{what}: kinetics from an earlier cycle (T_eff {t_eff:.1f} h ± {t_eff_sd:.1f} h, of which "
            f"{inter_cycle_t_eff_cv:.0%} is the assumed between-cycle change); {shape}")
    return replace(result, model="from-cycle-1", warnings=(*result.warnings, note))
