"""Single-time-point integrals: Hänscheid et al., J Nucl Med 2018;59:75–81 (D ≈ Ḋ(t)·2t/ln2) and Madsen et al.,
Med Phys 2018;45:2318–2324 (a mono-exponential with a population effective half-life)."""

from __future__ import annotations

import math

from LuDoseResponseLib.dosimetry.integration.inputs import CAP_TOLERANCE, LN2, check_samples, finite
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H


def _check_single(time_h, value, value_sd, what) -> tuple[float, float, float | None]:
    t, y, sd = check_samples([time_h], [value], None if value_sd is None else [value_sd], what)
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
    t_eff_h = finite("the population effective half-life (h)", t_eff_h, what, positive=True)
    t_eff_sd_h = finite("t_eff_sd_h", t_eff_sd_h, what, positive=False)
    half_life_h = finite("half_life_h", half_life_h, what, positive=True)
    warnings = []
    if t_eff_h > half_life_h * (1 + CAP_TOLERANCE):
        warnings.append(f"{what}: population effective half-life {t_eff_h:g} h exceeds the physical half-life "
                        f"{half_life_h:g} h; capped to it")
    t_eff = min(t_eff_h, half_life_h)
    lam = LN2 / t_eff
    factor = math.exp(lam * t) / lam
    value_out = y * factor
    # d/dT [e^(ln2 t/T) T/ln2] = e^(λt)(1/ln2 − t/T)
    d_dT = y * math.exp(lam * t) * (1.0 / LN2 - t / t_eff)
    # hypot, not √(a² + b²): no overflow or underflow for samples in any unit
    sd_out = math.hypot(d_dT * t_eff_sd_h, (sd or 0.0) * factor) if (sd is not None or t_eff_sd_h > 0) else None
    return TimeIntegral(value=value_out, sd=sd_out, model="madsen-2018", method="madsen", tail="fit",
                        params={"lambda_per_h": lam, "factor_h": factor}, param_names=("lambda_per_h", "factor_h"),
                        covariance=None, aicc={}, t_eff_h=t_eff, warnings=tuple(warnings),
                        diagnostics={"n_points": 1, "time_h": t, "optimal_time_h": t_eff / LN2})
