"""Lu-177 decay and emission data (ICRP Publication 107) and decay correction.

Data: ``data/lu177_icrp107.json`` (source and licence in ``data/SOURCES.md``).
Time is in hours unless a name says otherwise; energies are in MeV per decay.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from LuDoseResponseLib.errors import PhysicsError

MEV_TO_J = 1.602176634e-13
HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class Nuclide:
    """Decay data of one radionuclide (ICRP-107)."""

    name: str
    half_life_h: float
    beta_mean_lines: tuple[tuple[float, float], ...]
    beta_spectrum: np.ndarray  # (n, 2): E_MeV, dN/dE per MeV per decay
    conversion_electrons: tuple[tuple[float, float], ...]
    auger_electrons: tuple[tuple[float, float], ...]
    gamma: tuple[tuple[float, float], ...]
    xray: tuple[tuple[float, float], ...]

    @property
    def decay_constant_per_h(self) -> float:
        """λ = ln 2 / T½ in 1/h."""
        return math.log(2.0) / self.half_life_h

    @property
    def mean_life_h(self) -> float:
        """τ = 1/λ in h: the time-integrated activity per unit A0 with physical decay only."""
        return self.half_life_h / math.log(2.0)

    @property
    def beta_energy_mev(self) -> float:
        """Mean β⁻ energy per decay, Σ E·y over the branches (MeV)."""
        return float(sum(e * y for e, y in self.beta_mean_lines))

    @property
    def conversion_electron_energy_mev(self) -> float:
        return float(sum(e * y for e, y in self.conversion_electrons))

    @property
    def auger_energy_mev(self) -> float:
        return float(sum(e * y for e, y in self.auger_electrons))

    @property
    def electron_energy_mev(self) -> float:
        """All non-penetrating energy per decay: β⁻ + conversion + Auger electrons (MeV)."""
        return self.beta_energy_mev + self.conversion_electron_energy_mev + self.auger_energy_mev

    @property
    def photon_energy_mev(self) -> float:
        """γ + X-ray energy per decay (MeV)."""
        return float(sum(e * y for e, y in self.gamma) + sum(e * y for e, y in self.xray))

    @property
    def beta_spectrum_yield(self) -> float:
        """β⁻ particles per decay: ∫ dN/dE dE of the tabulated spectrum (trapezoid)."""
        s = self.beta_spectrum
        return float(np.trapezoid(s[:, 1], s[:, 0]))

    @property
    def beta_spectrum_mean_mev(self) -> float:
        """Mean β⁻ energy of the tabulated spectrum, ∫E dN / ∫dN (MeV); ICRP-107 gives 0.13335."""
        s = self.beta_spectrum
        return float(np.trapezoid(s[:, 0] * s[:, 1], s[:, 0]) / np.trapezoid(s[:, 1], s[:, 0]))


def _pairs(rows) -> tuple[tuple[float, float], ...]:
    return tuple((float(e), float(y)) for e, y in rows)


@lru_cache(maxsize=1)
def lu177() -> Nuclide:
    """Lu-177 from ICRP-107 (T½ = 6.647 d = 159.528 h)."""
    raw = json.loads(resources.files("LuDoseResponseLib.data").joinpath("lu177_icrp107.json").read_text())
    return Nuclide(
        name=raw["nuclide"],
        half_life_h=float(raw["half_life_d"]) * HOURS_PER_DAY,
        beta_mean_lines=_pairs(raw["beta_minus_mean"]),
        beta_spectrum=np.asarray(raw["beta_spectrum"], dtype=float),
        conversion_electrons=_pairs(raw["conversion_electrons"]),
        auger_electrons=_pairs(raw["auger_electrons"]),
        gamma=_pairs(raw["gamma"]),
        xray=_pairs(raw["xray"]),
    )


LU177_HALF_LIFE_H = lu177().half_life_h        # 6.647 d = 159.528 h, from the packaged data (one source)
LU177_DECAY_CONSTANT_PER_H = math.log(2.0) / LU177_HALF_LIFE_H


def decay_factor(elapsed_h, half_life_h: float = LU177_HALF_LIFE_H):
    """Fraction of activity left after ``elapsed_h`` hours: exp(−λ·Δt), λ = ln2/T½.

    Negative ``elapsed_h`` gives a factor above 1 (decay back in time).
    """
    try:
        hl = float(half_life_h)
    except (TypeError, ValueError):
        hl = math.nan
    if not (hl > 0 and math.isfinite(hl)):
        raise PhysicsError(f"half-life must be positive and finite, got {half_life_h!r} h")
    try:
        elapsed = np.asarray(elapsed_h, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PhysicsError(f"elapsed time for decay correction must be numbers (hours), got {elapsed_h!r}") from exc
    if not np.all(np.isfinite(elapsed)):
        raise PhysicsError("elapsed time for decay correction contains NaN or infinity")
    out = np.exp(-math.log(2.0) / hl * elapsed)
    return float(out) if out.ndim == 0 else out


def decay_correct(value, from_time_h, to_time_h, half_life_h: float = LU177_HALF_LIFE_H):
    """Activity-like ``value`` measured at ``from_time_h`` expressed at ``to_time_h``.

    A(t_to) = A(t_from)·exp(−λ·(t_to − t_from)).
    """
    try:
        v = np.asarray(value, dtype=float)
        dt = np.asarray(to_time_h, dtype=float) - np.asarray(from_time_h, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PhysicsError(f"decay correction needs numbers: value {value!r}, from {from_time_h!r} h, "
                           f"to {to_time_h!r} h") from exc
    return v * decay_factor(dt, half_life_h)
