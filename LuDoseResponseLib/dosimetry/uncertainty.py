"""Uncertainty of tumour absorbed doses per cycle and over cycles (EANM practical guidance).

Gear JI, Cox MG, Gustafsson J, et al. EANM practical guidance on uncertainty analysis for
molecular radiotherapy absorbed dose calculations. Eur J Nucl Med Mol Imaging 2018;45:2456–2474.

First-order (law of propagation of uncertainty, GUM) for the measurement model of one cycle

    D = ∫ Ḋ dt,  Ḋ(t_i) ∝ C(t_i) / (Q · RC(V) · m(V))

- Q, the calibration factor, and RC, the recovery coefficient, scale every time point of a cycle
  alike, so they enter as relative terms on D, not through the curve fit;
- V, the VOI volume, enters through the mass (m = ρV) and through RC(V), with sensitivity
  s_V = ∂ln D/∂ln V = −1 − (V/RC)·dRC/dV (Gear et al., the correlation of mass and RC);
- the count statistics of each time point (Poisson, 1/√N) are independent between time points,
  so they go into ``values_sd`` of :func:`integration.time_integral`, whose fit covariance carries
  them into the fit term.

Over cycles the paper (Warfvinge et al. 2024, Methods) assumes independence: σ² = Σ σ_i². A
calibration term shared by the cycles (same camera and calibration) can be declared correlated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from LuDoseResponseLib.errors import InputError

COMPONENTS = ("calibration", "recovery", "volume", "fit")


def _number(name: str, x, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} must be a number, got {x!r}") from exc
    if not math.isfinite(v):
        raise InputError(f"{what}: {name} must be finite, got {x!r}")
    return v


def _nonneg(name: str, x: float, what: str) -> float:
    v = _number(name, x, what)
    if v < 0:
        raise InputError(f"{what}: {name} must be finite and >= 0, got {x!r}")
    return v


def _sequence(name: str, x, what: str) -> list:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise InputError(f"{what}: {name} must be a sequence of numbers, got {x!r}")
    return list(x)


@dataclass(frozen=True)
class DoseUncertainty:
    """A cycle dose with its combined standard uncertainty and the budget of relative components.

    ``components`` holds each source's relative SD contribution to D (for the volume term, already
    multiplied by |s_V|); ``rel_sd`` = √Σ components². ``calibration_sd_gy`` = D·u(Q)/Q, the part
    that may be shared by cycles.
    """

    dose_gy: float
    sd_gy: float
    components: dict[str, float] = field(default_factory=dict)
    volume_sensitivity: float = -1.0

    @property
    def rel_sd(self) -> float:
        return self.sd_gy / self.dose_gy if self.dose_gy > 0 else 0.0

    @property
    def calibration_sd_gy(self) -> float:
        return self.dose_gy * self.components.get("calibration", 0.0)

    def to_dict(self) -> dict:
        return {"dose_gy": float(self.dose_gy), "sd_gy": float(self.sd_gy), "rel_sd": float(self.rel_sd),
                "components_rel": {k: float(v) for k, v in self.components.items()},
                "volume_sensitivity": float(self.volume_sensitivity),
                "calibration_sd_gy": float(self.calibration_sd_gy)}


def count_statistics_rel_sd(counts) -> np.ndarray:
    """Relative SD of a count sum from Poisson statistics: 1/√N per time point."""
    try:
        n = np.asarray(counts, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"count statistics: counts must be numbers, got {counts!r}") from exc
    if n.size == 0 or not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise InputError(f"count statistics: counts must be finite and > 0, got {np.ravel(n).tolist()[:5]}")
    return 1.0 / np.sqrt(n)


def volume_sensitivity(volume_ml: float, recovery_coefficient: float | None = None,
                       drc_dv_per_ml: float = 0.0, *, mass_from_volume: bool = True) -> float:
    """s_V = ∂ln D/∂ln V for D ∝ 1/(RC(V)·m(V)).

    ``mass_from_volume``: the mean dose is Ã·E/m with m = ρV (−1); set it False when the dose is an
    activity concentration times a dose factor, which does not depend on V except through RC.
    ``recovery_coefficient`` and ``drc_dv_per_ml`` (dRC/dV): when the partial-volume correction uses
    RC(V) from the same volume, adds −V·RC'/RC (Gear et al. 2018, correlated mass and RC).
    """
    v = _nonneg("volume_ml", volume_ml, "volume sensitivity")
    s = -1.0 if mass_from_volume else 0.0
    if recovery_coefficient is not None:
        rc = _number("recovery coefficient", recovery_coefficient, "volume sensitivity")
        if not 0 < rc <= 1.5:
            raise InputError("volume sensitivity: recovery coefficient must be in (0, 1.5], "
                             f"got {recovery_coefficient!r}")
        s -= v * _number("drc_dv_per_ml", drc_dv_per_ml, "volume sensitivity") / rc
    return s


def cycle_dose_uncertainty(dose_gy: float, *, fit_sd_gy: float, calibration_rel_sd: float = 0.0,
                           recovery_rel_sd: float = 0.0, volume_rel_sd: float = 0.0,
                           volume_sensitivity: float = -1.0, what: str = "cycle dose") -> DoseUncertainty:
    """Combined standard uncertainty of one cycle's dose (Gear et al. 2018, first order, independent inputs).

    u(D)/D = √[ (u_Q/Q)² + (u_RC/RC)² + (s_V·u_V/V)² + (u_fit/D)² ]

    ``fit_sd_gy`` is :attr:`TimeIntegral.sd` of the dose-rate integral (it carries the count
    statistics when ``values_sd`` was given to the fit); ``recovery_rel_sd`` is the RC model's own
    uncertainty, apart from its dependence on the volume, which ``volume_sensitivity`` carries.
    """
    d = _nonneg("dose_gy", dose_gy, what)
    if fit_sd_gy is None:
        raise InputError(f"{what}: the fit SD is unknown; give the time integral values_sd (count statistics) "
                         "or enough samples for residual degrees of freedom")
    comps = {
        "calibration": _nonneg("calibration_rel_sd", calibration_rel_sd, what),
        "recovery": _nonneg("recovery_rel_sd", recovery_rel_sd, what),
        "volume": abs(_number("volume_sensitivity", volume_sensitivity, what))
        * _nonneg("volume_rel_sd", volume_rel_sd, what),
        "fit": (_nonneg("fit_sd_gy", fit_sd_gy, what) / d) if d > 0 else 0.0,
    }
    rel = math.sqrt(sum(v * v for v in comps.values()))
    return DoseUncertainty(dose_gy=d, sd_gy=d * rel, components=comps, volume_sensitivity=float(volume_sensitivity))


def combine_cycle_sds(sds_gy: Sequence[float], *, calibration_sd_gy: Sequence[float] | None = None,
                      calibration_correlation: float = 0.0, what: str = "cycle sum") -> float:
    """SD of Σ D_i over cycles.

    Independent cycles (the paper): σ = √Σ σ_i². With ``calibration_sd_gy`` (c_i = D_i·u_Q,i, part of
    σ_i) and a correlation ρ of the calibration errors between cycles (1: one calibration for all):
    σ² = Σ σ_i² + ρ·Σ_{i≠j} c_i c_j.
    """
    s = np.array([_nonneg("cycle SD", v, what) for v in _sequence("sds_gy", sds_gy, what)], dtype=float)
    rho = _nonneg("calibration_correlation", calibration_correlation, what)
    if rho > 1:
        raise InputError(f"{what}: calibration_correlation must be in [0, 1], got {calibration_correlation!r}")
    var = float(np.sum(s ** 2))
    if calibration_sd_gy is not None and rho > 0:
        c = np.array([_nonneg("calibration SD", v, what)
                      for v in _sequence("calibration_sd_gy", calibration_sd_gy, what)], dtype=float)
        if c.size != s.size:
            raise InputError(f"{what}: {s.size} cycle SDs but {c.size} calibration SDs")
        if np.any(c > s * (1 + 1e-12)):
            raise InputError(f"{what}: a calibration SD exceeds its cycle's total SD; the calibration term is "
                             "a part of the cycle SD")
        var += rho * float(c.sum() ** 2 - np.sum(c ** 2))
    return math.sqrt(var)
