"""Photon point kernel of Lu-177 in water: μ_en, exponential attenuation and build-up.

For a point isotropic source of photons of energy E in an infinite water medium, the energy
absorbed per unit radius is (Berger MJ, "Energy deposition in water by photons from point
isotropic sources", J Nucl Med 1968;9 Suppl 1:15; MIRD Pamphlet 2)

    ε(r) = c · E · y · μ_en · B(μr) · exp(−μr)          [MeV/cm per decay],

and the dose-point kernel is D(r) = ε(r) / (4π r² ρ). μ and μ_en are NIST's (Hubbell & Seltzer);
B is ANSI/ANS-6.4.3's geometric-progression build-up factor for water (Harima et al., Nucl Sci
Eng 1986;94:24), with μ the ANS attenuation coefficient without coherent scattering that defines
its mean free path. Those build-up factors are for exposure (air response); the constant c
(0.96–1.00 for the Lu-177 lines) makes each line deposit exactly its energy in the infinite
medium, which corrects the air/water response difference to first order.

Photons below 15 keV (L X-rays; the GP tables start at 15 keV) are absorbed where they first
interact: ε(r) = E·y·μ·exp(−μr). Lines below 1 keV are absorbed at the source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.integrate import quad

from LuDoseResponseLib.physics.nuclides import lu177

GP_MIN_MEV = 0.015
LOCAL_BELOW_MEV = 0.001
_GP_MAX_MFP = 40.0           # ANS-6.4.3 fits hold to 40 mean free paths


@lru_cache(maxsize=1)
def _coefficients() -> dict:
    text = resources.files("LuDoseResponseLib.data").joinpath("water_photon_coefficients.json").read_text()
    raw = json.loads(text)
    nist = np.asarray(raw["nist_xcom"]["rows"], dtype=float)
    ans_mu = np.asarray(raw["ans_6_4_3"]["mu_rows"], dtype=float)
    gp = np.asarray(raw["ans_6_4_3"]["gp_rows"], dtype=float)
    return {"nist": nist, "ans_mu": ans_mu, "gp": gp}


def _loglog(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    return float(np.exp(np.interp(math.log(x), np.log(xs), np.log(ys))))


def mu_en_water(energy_mev: float) -> float:
    """NIST mass energy-absorption coefficient of water, cm²/g (log-log interpolation)."""
    t = _coefficients()["nist"]
    return _loglog(energy_mev, t[:, 0], t[:, 2])


def mu_water(energy_mev: float) -> float:
    """NIST mass attenuation coefficient of water with coherent scattering, cm²/g."""
    t = _coefficients()["nist"]
    return _loglog(energy_mev, t[:, 0], t[:, 1])


def mu_water_ans(energy_mev: float) -> float:
    """ANS-6.4.3 mass attenuation coefficient of water without coherent scattering, cm²/g."""
    t = _coefficients()["ans_mu"]
    return _loglog(energy_mev, t[:, 0], t[:, 1])


def gp_coefficients(energy_mev: float) -> tuple[float, float, float, float, float]:
    """(b, c, a, X, d) for water, interpolated linearly in ln E between the tabulated energies."""
    gp = _coefficients()["gp"]
    le = math.log(energy_mev)
    lx = np.log(gp[:, 0])
    return tuple(float(np.interp(le, lx, gp[:, k])) for k in range(1, 6))


def gp_buildup(mfp, coefficients: tuple[float, float, float, float, float]) -> np.ndarray:
    """Geometric-progression build-up factor B(x) at x mean free paths (ANSI/ANS-6.4.3 eq. 1)."""
    b, c, a, xk, d = coefficients
    x = np.asarray(mfp, dtype=float)
    t2 = math.tanh(-2.0)
    k = c * x**a + d * (np.tanh(x / xk - 2.0) - t2) / (1.0 - t2)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = (b - 1.0) * (k**x - 1.0) / (k - 1.0)
    return 1.0 + np.where(np.abs(k - 1.0) < 1e-9, (b - 1.0) * x, geo)


@dataclass(frozen=True)
class PhotonLine:
    """One photon line with its point-kernel parameters (per unit density, 1 g/cm³)."""

    energy_mev: float
    yield_per_decay: float
    mu_per_cm: float            # attenuation coefficient that sets the exponential
    mu_en_per_cm: float
    gp: tuple[float, float, float, float, float] | None   # None: absorbed at first interaction
    norm: float                 # c: makes ∫ ε dr = E·y

    def energy_per_cm(self, r_cm) -> np.ndarray:
        """ε(r) in MeV/cm per decay."""
        r = np.asarray(r_cm, dtype=float)
        ey = self.energy_mev * self.yield_per_decay
        if self.gp is None:
            return ey * self.mu_per_cm * np.exp(-self.mu_per_cm * r)
        x = np.minimum(self.mu_per_cm * r, 200.0)
        return self.norm * ey * self.mu_en_per_cm * gp_buildup(x, self.gp) * np.exp(-x)

    def to_dict(self) -> dict:
        return {"energy_mev": self.energy_mev, "yield_per_decay": self.yield_per_decay, "mu_per_cm": self.mu_per_cm,
                "mu_en_per_cm": self.mu_en_per_cm, "gp": list(self.gp) if self.gp else None, "norm": self.norm}

    def infinite_medium_fraction_unnormalised(self) -> float:
        """(μ_en/μ)·∫₀^40 B(x)e^(−x)dx: the energy fraction the raw GP kernel deposits (ideal: 1)."""
        if self.gp is None:
            return 1.0
        val, _ = quad(lambda x: float(gp_buildup(x, self.gp)) * math.exp(-x), 0.0, _GP_MAX_MFP, limit=400)
        return self.mu_en_per_cm / self.mu_per_cm * val


def _make_line(energy_mev: float, yield_per_decay: float) -> PhotonLine:
    if energy_mev < GP_MIN_MEV:
        return PhotonLine(energy_mev, yield_per_decay, mu_water(energy_mev), mu_en_water(energy_mev), None, 1.0)
    line = PhotonLine(energy_mev, yield_per_decay, mu_water_ans(energy_mev), mu_en_water(energy_mev),
                      gp_coefficients(energy_mev), 1.0)
    return PhotonLine(line.energy_mev, line.yield_per_decay, line.mu_per_cm, line.mu_en_per_cm, line.gp,
                      1.0 / line.infinite_medium_fraction_unnormalised())


@lru_cache(maxsize=1)
def lu177_photon_lines() -> tuple[tuple[PhotonLine, ...], float]:
    """Lu-177 γ and X-ray lines as point-kernel lines, and the energy of lines < 1 keV (MeV/decay)."""
    nuc = lu177()
    lines, local = [], 0.0
    for e, y in tuple(nuc.gamma) + tuple(nuc.xray):
        if e < LOCAL_BELOW_MEV:
            local += e * y
        else:
            lines.append(_make_line(e, y))
    return tuple(lines), local


def photon_energy_per_cm(r_cm, density_g_per_cm3: float = 1.0) -> np.ndarray:
    """Total Lu-177 photon ε(r) (MeV/cm per decay) in water of the given density (lengths scale 1/ρ)."""
    lines, _ = lu177_photon_lines()
    r = np.asarray(r_cm, dtype=float) * density_g_per_cm3
    return density_g_per_cm3 * sum(line.energy_per_cm(r) for line in lines)


def photon_shell_energies(edges_cm: np.ndarray, density_g_per_cm3: float = 1.0, sub: int = 8) -> np.ndarray:
    """Energy per decay (MeV) absorbed in each shell [edges[i], edges[i+1]); the < 1 keV lines go to shell 0."""
    edges = np.asarray(edges_cm, dtype=float)
    x, w = np.polynomial.legendre.leggauss(sub)
    lo, hi = edges[:-1, None], edges[1:, None]
    r = 0.5 * (hi + lo) + 0.5 * (hi - lo) * x[None, :]
    out = (photon_energy_per_cm(r, density_g_per_cm3) * w[None, :]).sum(axis=1) * 0.5 * (hi - lo)[:, 0]
    out[0] += lu177_photon_lines()[1]
    return out
