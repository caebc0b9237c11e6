"""Electron transport in liquid water and the Lu-177 electron dose-point kernel (DPK).

A small class-II condensed-history Monte Carlo in numpy, built only from analytic physics
(no tabulated transport data), deterministic for a given seed:

- Collision stopping power: Bethe formula for electrons with the Rohrlich–Carlson F⁻ term and
  Sternheimer's density-effect correction (Sternheimer, Berger & Seltzer, At Data Nucl Data Tables
  1984;30:261), mean excitation energy I = 75 eV (ICRU Report 37, 1984). This is the method of
  NIST ESTAR (Berger et al., NISTIR 4999), whose water values it reproduces to 0.2 %.
- Hard inelastic collisions (energy transfer W > W_c): Møller cross section, δ-rays transported
  explicitly (Berger MJ, "Monte Carlo calculation of the penetration and diffusion of fast charged
  particles", Methods Comput Phys 1963;1:135, class II). Soft collisions: restricted stopping power
  plus Gaussian (Bohr) energy-loss straggling. Together this reproduces Landau-like straggling.
- Elastic scattering: screened Rutherford (Wentzel) cross section with Molière's screening angle and
  the McKinley–Feshbach Mott factor give the transport mean free path λ1 (Molière, Z Naturforsch
  1947;2a:133; McKinley & Feshbach, Phys Rev 1948;74:1759). Each step's deflection is drawn from a
  modified Wentzel distribution whose mean 1−cosθ equals the Goudsmit–Saunderson value
  1 − exp(−s/λ1) (Fernández-Varea, Mayol, Baró, Salvat, Nucl Instrum Methods B 1993;73:447), and the
  step is split at a random hinge (Kawrakow & Bielajew, Nucl Instrum Methods B 1998;142:253).

Radiative losses are not followed: for Lu-177 electrons (≤ 0.5 MeV) the radiation yield in water
is below 0.2 %, and that energy is counted as deposited along the track, so the DPK holds all the
electron energy. Lengths are in cm (g/cm² for water at 1 g/cm³), energies in MeV.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from LuDoseResponseLib.errors import PhysicsError
from LuDoseResponseLib.physics.nuclides import Nuclide, lu177

log = logging.getLogger(__name__)

ME_C2_MEV = 0.51099895000          # electron rest energy (CODATA 2018)
R_E_CM = 2.8179403262e-13          # classical electron radius (CODATA 2018)
AVOGADRO = 6.02214076e23
ALPHA = 7.2973525693e-3            # fine-structure constant
HBAR_C_MEV_CM = 197.3269804e-13
BOHR_RADIUS_CM = 0.529177210903e-8

# Liquid water: Z/A and I (ICRU Report 37); density-effect parameters (Sternheimer et al. 1984).
WATER_Z_OVER_A = 0.555087
WATER_I_MEV = 75.0e-6
WATER_MOLAR_MASS_G = 18.01528
_STERNHEIMER_WATER = {"C": 3.5017, "X0": 0.2400, "X1": 2.8004, "a": 0.09116, "m": 3.4773}
WATER_ATOMS = ((1, 2.0), (8, 1.0))           # (Z, atoms per molecule)

# 2π r_e² m c² N_A (Z/A): 0.0852 MeV cm²/g, the prefactor of every collision formula below.
_K_COLL = 2.0 * math.pi * R_E_CM**2 * ME_C2_MEV * AVOGADRO * WATER_Z_OVER_A
ELECTRONS_PER_G = AVOGADRO * WATER_Z_OVER_A

DPK_MODEL_VERSION = 1
DEFAULT_CUTOFF_MEV = 0.010          # transport cut-off and δ-ray threshold W_c (CSDA range 2.5 µm)
_GRID_MIN_MEV = 1.0e-3
_GRID_MAX_MEV = 2.0
_GRID_POINTS = 600


# --------------------------------------------------------------------------------------------
# Stopping powers and ranges
# --------------------------------------------------------------------------------------------

def _beta2(energy_mev):
    gamma = 1.0 + np.asarray(energy_mev, dtype=float) / ME_C2_MEV
    return 1.0 - 1.0 / gamma**2


def density_effect(energy_mev) -> np.ndarray:
    """Sternheimer's density-effect correction δ for liquid water (parametrised form); 0 below ~0.5 MeV."""
    e = np.asarray(energy_mev, dtype=float)
    tau = e / ME_C2_MEV
    x = np.log10(np.sqrt(tau * (tau + 2.0)))   # log10(βγ) = log10(p / m c)
    p = _STERNHEIMER_WATER
    delta = np.where(x >= p["X1"], 4.6052 * x - p["C"],
                     4.6052 * x + p["a"] * np.clip(p["X1"] - x, 0.0, None) ** p["m"] - p["C"])
    return np.where(x < p["X0"], 0.0, delta)


def collision_stopping_power(energy_mev) -> np.ndarray:
    """Mass collision stopping power of liquid water for electrons, MeV cm²/g (Bethe, ICRU Report 37)."""
    e = np.asarray(energy_mev, dtype=float)
    if np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise PhysicsError("electron energy must be positive and finite")
    tau = e / ME_C2_MEV
    b2 = _beta2(e)
    i_rel = WATER_I_MEV / ME_C2_MEV
    f_minus = 1.0 - b2 + (tau**2 / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / (tau + 1.0) ** 2
    bracket = np.log(tau**2 * (tau + 2.0) / (2.0 * i_rel**2)) + f_minus - density_effect(e)
    return _K_COLL / b2 * bracket


def moller_cross_section_per_electron(energy_mev, cutoff_mev: float) -> np.ndarray:
    """Møller cross section (cm² per target electron) for energy transfers W in [W_c, E/2].

    dσ/dW = 2π r_e² mc²/β² [1/W² + 1/(E−W)² + (τ/(τ+1))²/E² − (2τ+1)/((τ+1)² W(E−W))],
    integrated in closed form. Zero where E < 2 W_c.
    """
    e = np.asarray(energy_mev, dtype=float)
    tau = e / ME_C2_MEV
    b2 = _beta2(e)
    wc = cutoff_mev
    with np.errstate(divide="ignore", invalid="ignore"):
        half = 0.5 * e
        integral = ((1.0 / wc - 1.0 / half) + (1.0 / half - 1.0 / (e - wc))
                    + (tau / (tau + 1.0)) ** 2 * (half - wc) / e**2
                    - (2.0 * tau + 1.0) / (tau + 1.0) ** 2 / e * np.log((e - wc) / wc))
        sigma = 2.0 * math.pi * R_E_CM**2 * ME_C2_MEV / b2 * integral
    return np.where(e > 2.0 * wc, sigma, 0.0)


def _moller_energy_loss(energy_mev, cutoff_mev: float) -> np.ndarray:
    """n_e ∫_{W_c}^{E/2} W dσ/dW dW (MeV cm²/g): the stopping power carried by hard collisions."""
    e = np.atleast_1d(np.asarray(energy_mev, dtype=float))
    x, wq = np.polynomial.legendre.leggauss(48)
    out = np.zeros_like(e)
    ok = e > 2.0 * cutoff_mev
    if np.any(ok):
        eo = e[ok][:, None]
        lo, hi = math.log(cutoff_mev), np.log(eo / 2.0)
        t = lo + (hi - lo) * (x[None, :] + 1.0) / 2.0
        w = np.exp(t)
        tau = eo / ME_C2_MEV
        b2 = _beta2(eo)
        dsig = (1.0 / w**2 + 1.0 / (eo - w) ** 2 + (tau / (tau + 1.0)) ** 2 / eo**2
                - (2.0 * tau + 1.0) / (tau + 1.0) ** 2 / (w * (eo - w)))
        integrand = w * w * dsig        # W dσ/dW · dW/dt with W = e^t
        out[ok] = (_K_COLL / b2[:, 0]) * np.sum(integrand * wq[None, :], axis=1) * (hi - lo)[:, 0] / 2.0
    return out


def csda_range(energy_mev, *, low_mev: float = _GRID_MIN_MEV) -> np.ndarray:
    """CSDA range of electrons in water, g/cm² (∫ dE/S_col from ``low_mev``; ESTAR-style)."""
    e = np.asarray(energy_mev, dtype=float)
    tab = _tables(DEFAULT_CUTOFF_MEV)
    return np.interp(np.log(e), tab.ln_e, tab.range_total) + _range_below(low_mev)


def _range_below(low_mev: float) -> float:
    # Range from 0 to the grid's lower end: S ∝ 1/E roughly there, so R(E_low) ≈ E_low/(2 S(E_low)).
    return float(low_mev / (2.0 * collision_stopping_power(low_mev)))


# --------------------------------------------------------------------------------------------
# Elastic scattering
# --------------------------------------------------------------------------------------------

def transport_cross_section_per_atom(energy_mev, z: int, *, atomic_electrons: bool = True) -> np.ndarray:
    """First transport cross section σ1 = ∫(1−cosθ) dσ_el of one atom of atomic number ``z`` (cm²).

    Wentzel screened-Rutherford with Molière screening, times the McKinley–Feshbach Mott factor
    R = 1 − β² s² + παZβ s(1−s), s = sin(θ/2). The nuclear term is ∝ Z²; ``atomic_electrons``
    replaces Z² by Z(Z+1), adding the deflections by the atomic electrons (Fano; ETRAN's convention).
    """
    e = np.atleast_1d(np.asarray(energy_mev, dtype=float))
    pc = np.sqrt(e * (e + 2.0 * ME_C2_MEV))
    b2 = _beta2(e)
    beta = np.sqrt(b2)
    # u = 1 − cosθ on a log grid from far below the screening angle to 2 (backscatter).
    u = np.concatenate([[0.0], np.geomspace(1e-14, 2.0, 4000)])
    a_tf = 0.88534 * BOHR_RADIUS_CM * z ** (-1.0 / 3.0)
    chi0_sq = (HBAR_C_MEV_CM / (pc * a_tf)) ** 2
    screening = 0.25 * chi0_sq * (1.13 + 3.76 * (ALPHA * z / beta) ** 2)
    s = np.sqrt(u / 2.0)[None, :]
    mott = 1.0 - b2[:, None] * s**2 + math.pi * ALPHA * z * beta[:, None] * s * (1.0 - s)
    integrand = u[None, :] * mott / (u[None, :] + 2.0 * screening[:, None]) ** 2
    integral = np.trapezoid(integrand, u, axis=1)
    z_factor = z * (z + 1.0) if atomic_electrons else float(z * z)
    return 2.0 * math.pi * z_factor * (R_E_CM * ME_C2_MEV / (pc * beta)) ** 2 * integral


def transport_cross_section_per_molecule(energy_mev, *, atomic_electrons: bool = True) -> np.ndarray:
    """First transport cross section σ1 of a water molecule (cm²): Σ over its atoms (independent atoms)."""
    return sum(n_atoms * transport_cross_section_per_atom(energy_mev, z, atomic_electrons=atomic_electrons)
               for z, n_atoms in WATER_ATOMS)


def transport_mean_free_path(energy_mev) -> np.ndarray:
    """Elastic transport mean free path λ1 of electrons in water, g/cm²."""
    return WATER_MOLAR_MASS_G / (AVOGADRO * transport_cross_section_per_molecule(energy_mev))


@lru_cache(maxsize=1)
def _wentzel_mean_table() -> tuple[np.ndarray, np.ndarray]:
    """⟨1−cosθ⟩ of the Wentzel distribution p(u) ∝ 1/(u+2A)² on [0, 2], against ln A."""
    ln_a = np.linspace(math.log(1e-12), math.log(1e7), 4000)
    a = np.exp(ln_a)
    mean = 2.0 * a * ((1.0 + a) * np.log1p(1.0 / a) - 1.0)
    return mean, ln_a


# --------------------------------------------------------------------------------------------
# Transport tables on a log-energy grid
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Tables:
    ln_e: np.ndarray
    range_restricted: np.ndarray     # ∫ dE / L_Δ, g/cm²
    range_total: np.ndarray          # ∫ dE / S_col, g/cm²
    hard_mfp: np.ndarray             # 1/(n_e σ_Møller), g/cm² (inf below 2 W_c)
    lambda1: np.ndarray              # elastic transport mean free path, g/cm²
    straggle_var: np.ndarray         # soft-collision energy-loss variance per g/cm², MeV²


@lru_cache(maxsize=4)
def _tables(cutoff_mev: float) -> _Tables:
    ln_e = np.linspace(math.log(_GRID_MIN_MEV), math.log(_GRID_MAX_MEV), _GRID_POINTS)
    e = np.exp(ln_e)
    s_col = collision_stopping_power(e)
    l_restricted = s_col - _moller_energy_loss(e, cutoff_mev)

    def cumulative_range(stopping):
        integrand = e / stopping                  # dE/S = E d(lnE)/S
        r = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(ln_e))])
        return r

    sigma = moller_cross_section_per_electron(e, cutoff_mev)
    with np.errstate(divide="ignore"):
        hard_mfp = np.where(sigma > 0, 1.0 / (ELECTRONS_PER_G * sigma), np.inf)
    b2 = _beta2(e)
    w_soft = np.minimum(cutoff_mev, e / 2.0)
    straggle = _K_COLL / b2 * w_soft * (1.0 - b2 / 2.0)
    return _Tables(ln_e=ln_e, range_restricted=cumulative_range(l_restricted),
                   range_total=cumulative_range(s_col), hard_mfp=hard_mfp,
                   lambda1=transport_mean_free_path(e), straggle_var=straggle)


# --------------------------------------------------------------------------------------------
# Radial energy-deposition profile (the dose-point kernel)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RadialEnergyProfile:
    """Energy deposited per decay in spherical shells around a point source in water.

    ``energy_mev[i]`` is deposited between ``edges_cm[i]`` and ``edges_cm[i+1]``. The dose-point
    kernel is D(r) = ε(r)/(4π r² ρ) with ε the energy per unit radius (MeV/cm).
    """

    edges_cm: np.ndarray
    energy_mev: np.ndarray
    raw_total_mev: float        # MC total before normalisation to the nuclide's electron energy
    beyond_mev: float           # energy deposited beyond the last edge (should be ~0)
    mode: str
    n_histories: int
    seed: int

    @property
    def total_mev(self) -> float:
        return float(self.energy_mev.sum())

    def fraction_within(self, radius_cm: float) -> float:
        """Fraction of the energy deposited within ``radius_cm`` (linear inside a shell)."""
        cum = np.concatenate([[0.0], np.cumsum(self.energy_mev)])
        return float(np.interp(radius_cm, self.edges_cm, cum) / cum[-1])

    def radius_containing(self, fraction: float) -> float:
        """Radius (cm) within which ``fraction`` of the energy is deposited, e.g. 0.9 → r90."""
        cum = np.concatenate([[0.0], np.cumsum(self.energy_mev)]) / self.energy_mev.sum()
        return float(np.interp(fraction, cum, self.edges_cm))

    def to_dict(self) -> dict:
        return {"edges_cm": [float(x) for x in self.edges_cm],
                "energy_mev": [float(x) for x in self.energy_mev],
                "raw_total_mev": float(self.raw_total_mev), "beyond_mev": float(self.beyond_mev),
                "mode": self.mode, "n_histories": int(self.n_histories), "seed": int(self.seed)}


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    cos_t = 2.0 * rng.random(n) - 1.0
    phi = 2.0 * math.pi * rng.random(n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def _rotate(d: np.ndarray, cos_t: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Turn unit vectors ``d`` (n, 3) by polar angle θ and azimuth φ about themselves."""
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    cp, sp = np.cos(phi), np.sin(phi)
    u, v, w = d[:, 0], d[:, 1], d[:, 2]
    rho = np.sqrt(np.clip(1.0 - w * w, 0.0, None))
    small = rho < 1e-8
    rho_safe = np.where(small, 1.0, rho)
    nu = u * cos_t + sin_t * (u * w * cp - v * sp) / rho_safe
    nv = v * cos_t + sin_t * (v * w * cp + u * sp) / rho_safe
    nw = w * cos_t - sin_t * cp * rho
    nu = np.where(small, sin_t * cp, nu)
    nv = np.where(small, sin_t * sp, nv)
    nw = np.where(small, np.sign(w) * cos_t, nw)
    out = np.stack([nu, nv, nw], axis=1)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _sample_moller(energy: np.ndarray, cutoff: float, rng: np.random.Generator) -> np.ndarray:
    """Energy transfer W ∈ [W_c, E/2] from the Møller cross section (1/W² envelope, rejection)."""
    tau = energy / ME_C2_MEV
    a = (tau / (tau + 1.0)) ** 2
    b = (2.0 * tau + 1.0) / (tau + 1.0) ** 2
    w_max = energy / 2.0
    out = np.empty_like(energy)
    todo = np.arange(energy.size)
    while todo.size:
        e, wm = energy[todo], w_max[todo]
        xi = rng.random(todo.size)
        w = 1.0 / (1.0 / cutoff - xi * (1.0 / cutoff - 1.0 / wm))
        g = 1.0 + (w / (e - w)) ** 2 + a[todo] * (w / e) ** 2 - b[todo] * w / (e - w)
        accept = rng.random(todo.size) * (2.0 + a[todo] / 4.0) < g
        out[todo[accept]] = w[accept]
        todo = todo[~accept]
    return out


@dataclass(frozen=True, eq=False)
class TransportTally:
    """Energy (Σ weight·MeV) per radial shell, beyond the last shell, and Σ z·weight·MeV (cm·MeV)."""

    shell_mev: np.ndarray
    beyond_mev: float
    z_moment_mev_cm: float

    def to_dict(self) -> dict:
        return {"shell_mev": [float(x) for x in self.shell_mev], "beyond_mev": float(self.beyond_mev),
                "z_moment_mev_cm": float(self.z_moment_mev_cm)}


TRANSPORT_MODES = ("full", "csda", "scatter")


def transport_electrons(energy_mev: np.ndarray, weight: np.ndarray, edges_cm: np.ndarray, *,
                        seed: int, mode: str = "full", step_fraction: float = 0.05,
                        cutoff_mev: float = DEFAULT_CUTOFF_MEV, pencil_beam: bool = False) -> TransportTally:
    """Transport electrons from the origin in water; tally the energy they deposit in radial shells.

    ``mode``: "full" (multiple scattering, straggling, δ-rays); "csda" (straight ahead, continuous
    slowing down with the unrestricted stopping power: the classical upper bound on penetration);
    "scatter" (multiple scattering with CSDA energy loss: the case Lewis' moments solve exactly).
    Electrons start isotropic, or along +z with ``pencil_beam``.
    """
    if mode not in TRANSPORT_MODES:
        raise PhysicsError(f"transport mode must be one of {TRANSPORT_MODES}, got {mode!r}")
    rng = np.random.default_rng(seed)
    tab = _tables(cutoff_mev)
    full = mode == "full"
    scatter = mode in ("full", "scatter")
    range_tab = tab.range_restricted if full else tab.range_total
    r_cut = float(np.interp(math.log(cutoff_mev), tab.ln_e, range_tab))
    mean_tab, ln_a_tab = _wentzel_mean_table()
    ln0, dln = tab.ln_e[0], tab.ln_e[1] - tab.ln_e[0]

    def lookup(ln_e, table):      # linear interpolation on the uniform ln E grid
        x = np.clip((ln_e - ln0) / dln, 0.0, table.size - 1.000001)
        i = x.astype(np.int64)
        f = x - i
        return table[i] * (1.0 - f) + table[i + 1] * f

    n_bins = edges_cm.size - 1
    tally = np.zeros(n_bins + 1)
    z_moment = [0.0]

    def deposit(pos, de):
        r = np.sqrt(np.einsum("ij,ij->i", pos, pos))
        idx = np.searchsorted(edges_cm, r, side="right") - 1
        idx = np.where((idx < 0) | (idx >= n_bins), n_bins, idx)
        tally[:] += np.bincount(idx, weights=de, minlength=n_bins + 1)
        z_moment[0] += float(np.dot(pos[:, 2], de))

    # Electrons below the cut-off are absorbed where they start.
    e0 = np.asarray(energy_mev, dtype=float)
    w0 = np.asarray(weight, dtype=float)
    local = e0 <= cutoff_mev
    tally[0] += float(np.sum(e0[local] * w0[local]))
    n_start = int((~local).sum())
    d = np.tile([0.0, 0.0, 1.0], (n_start, 1)) if pencil_beam else _isotropic(n_start, rng)
    pos, e, w = np.zeros((n_start, 3)), e0[~local], w0[~local]
    # δ-rays join the active set, so every step works on one array of all moving electrons.
    while e.size:
        ln_e = np.log(e)
        rng_now = lookup(ln_e, range_tab)
        s_end = rng_now - r_cut
        s = np.minimum(step_fraction * rng_now, s_end)
        if full:
            s_hard = -lookup(ln_e, tab.hard_mfp) * np.log1p(-rng.random(e.size))
            hard = s_hard < s
            s = np.where(hard, s_hard, s)
        else:
            hard = np.zeros(e.size, dtype=bool)
        ends = (~hard) & (s >= s_end)
        e1 = np.exp(np.interp(rng_now - s, range_tab, tab.ln_e))
        de = e - e1
        if full:
            sd = np.sqrt(lookup(ln_e, tab.straggle_var) * s)
            de = np.clip(de + sd * rng.standard_normal(e.size), 0.0, e)
            e1 = e - de
            ends |= e1 <= cutoff_mev
            hard &= (~ends) & (e1 > 2.0 * cutoff_mev)
        hinge = rng.random(e.size)
        pos_h = pos + (hinge * s)[:, None] * d
        if scatter:
            lam1 = lookup(np.log(np.maximum(0.5 * (e + e1), _GRID_MIN_MEV)), tab.lambda1)
            mean_u = np.clip(-np.expm1(-s / lam1), 1e-14, 1.0 - 1e-12)
            a = np.exp(np.interp(mean_u, mean_tab, ln_a_tab))
            xi = rng.random(e.size)
            cos_t = 1.0 - 2.0 * a * xi / (1.0 + a - xi)
            d = _rotate(d, cos_t, 2.0 * math.pi * rng.random(e.size))
        pos = pos_h + ((1.0 - hinge) * s)[:, None] * d
        # Continuous loss at the hinge; a particle that stops leaves its rest energy at the end point.
        deposit(np.concatenate([pos_h, pos[ends]]), np.concatenate([de * w, e1[ends] * w[ends]]))
        e = e1
        keep = ~ends
        if np.any(hard):
            ih = np.flatnonzero(hard)
            eh = e[ih]
            wt = _sample_moller(eh, cutoff_mev, rng)
            phi = 2.0 * math.pi * rng.random(ih.size)
            ep = eh - wt
            cos_p = np.sqrt(ep * (eh + 2 * ME_C2_MEV) / (eh * (ep + 2 * ME_C2_MEV)))
            cos_s = np.sqrt(wt * (eh + 2 * ME_C2_MEV) / (eh * (wt + 2 * ME_C2_MEV)))
            d_sec = _rotate(d[ih], np.minimum(cos_s, 1.0), phi + math.pi)
            d[ih] = _rotate(d[ih], np.minimum(cos_p, 1.0), phi)
            e[ih] = ep
            pos = np.concatenate([pos[keep], pos[ih]])
            d = np.concatenate([d[keep], d_sec])
            e = np.concatenate([e[keep], wt])
            w = np.concatenate([w[keep], w[ih]])
        else:
            pos, d, e, w = pos[keep], d[keep], e[keep], w[keep]
    return TransportTally(shell_mev=tally[:n_bins], beyond_mev=float(tally[n_bins]), z_moment_mev_cm=z_moment[0])


# --------------------------------------------------------------------------------------------
# Lu-177 electron sources
# --------------------------------------------------------------------------------------------

def _beta_sampler(nuclide: Nuclide) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Inverse CDF of the β⁻ spectrum (piecewise-linear dN/dE) on a fine grid.

    Returns (cdf, energies, number of β per decay, spectrum mean energy in MeV).
    """
    spec = nuclide.beta_spectrum
    e_grid = np.linspace(0.0, spec[-1, 0], 20001)
    pdf = np.interp(e_grid, spec[:, 0], spec[:, 1])
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(e_grid))])
    n_beta = float(cdf[-1])
    mean = float(np.trapezoid(pdf * e_grid, e_grid) / n_beta)
    return cdf / n_beta, e_grid, n_beta, mean


def lu177_electron_sources(n_histories: int, *, cutoff_mev: float = DEFAULT_CUTOFF_MEV,
                           include_conversion: bool = True, include_auger: bool = True,
                           nuclide: Nuclide | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Stratified electron energies and weights (per decay) for the Lu-177 emissions.

    Histories are shared between the β⁻ spectrum and the discrete lines in proportion to their
    energy. The β⁻ part is scaled to ICRP-107's mean β⁻ energy per decay (Σ branch means,
    0.133270 MeV; the 101-point spectrum integrates to 0.1334). Returns (energies, weights,
    energy absorbed at the source from electrons below ``cutoff_mev``).
    """
    nuc = nuclide or lu177()
    lines = []
    if include_conversion:
        lines += list(nuc.conversion_electrons)
    if include_auger:
        lines += list(nuc.auger_electrons)
    cdf, e_grid, n_beta, spec_mean = _beta_sampler(nuc)
    beta_scale = nuc.beta_energy_mev / (n_beta * spec_mean)
    line_energy = sum(e * y for e, y in lines if e > cutoff_mev)
    n_beta_hist = max(int(round(n_histories * nuc.beta_energy_mev / (nuc.beta_energy_mev + line_energy))), 1)
    # β⁻: stratified inverse-CDF sampling (deterministic midpoints of N equal-probability strata).
    u = (np.arange(n_beta_hist) + 0.5) / n_beta_hist
    e_beta = np.interp(u, cdf, e_grid)
    w_beta = np.full(n_beta_hist, n_beta * beta_scale / n_beta_hist)
    local_mev = float(np.sum(np.where(e_beta <= cutoff_mev, e_beta * w_beta, 0.0)))
    energies, weights = [e_beta[e_beta > cutoff_mev]], [w_beta[e_beta > cutoff_mev]]
    n_line_hist = n_histories - n_beta_hist
    for e, y in lines:
        if e <= cutoff_mev:
            local_mev += e * y
            continue
        n = max(int(round(n_line_hist * e * y / line_energy)), 16)
        energies.append(np.full(n, e))
        weights.append(np.full(n, y / n))
    return np.concatenate(energies), np.concatenate(weights), local_mev


def electron_energy_per_decay_mev(include_conversion: bool = True, include_auger: bool = True) -> float:
    """ICRP-107 electron energy per decay (MeV) for the chosen emission groups."""
    nuc = lu177()
    total = nuc.beta_energy_mev
    if include_conversion:
        total += nuc.conversion_electron_energy_mev
    if include_auger:
        total += nuc.auger_energy_mev
    return total


def lu177_electron_dpk(n_histories: int = 200_000, seed: int = 177, mode: str = "full",
                       include_conversion: bool = True, include_auger: bool = True,
                       bin_width_cm: float = 5.0e-4, r_max_cm: float = 0.3,
                       step_fraction: float = 0.05) -> RadialEnergyProfile:
    """Radial energy-deposition profile of all Lu-177 electrons (β⁻, conversion, Auger) in water.

    The profile is normalised to ICRP-107's electron energy per decay (0.147923 MeV with all
    groups); ``raw_total_mev`` keeps the Monte Carlo sum, which equals it up to sampling error.
    Deterministic for a given ``seed``. Cached in memory.
    """
    return _electron_dpk_cached(int(n_histories), int(seed), str(mode), bool(include_conversion),
                                bool(include_auger), float(bin_width_cm), float(r_max_cm), float(step_fraction))


@lru_cache(maxsize=8)
def _electron_dpk_cached(n_histories: int, seed: int, mode: str, include_conversion: bool, include_auger: bool,
                         bin_width_cm: float, r_max_cm: float, step_fraction: float) -> RadialEnergyProfile:
    if n_histories < 1000:
        raise PhysicsError(f"n_histories must be at least 1000, got {n_histories}")
    edges = np.arange(0.0, r_max_cm + 0.5 * bin_width_cm, bin_width_cm)
    energies, weights, local = lu177_electron_sources(n_histories, include_conversion=include_conversion,
                                                      include_auger=include_auger)
    # Transport in chunks to bound memory; each chunk has its own deterministic seed.
    tally = np.zeros(edges.size - 1)
    beyond = 0.0
    order = np.random.default_rng(seed).permutation(energies.size)
    chunks = np.array_split(order, max(1, energies.size // 50_000))
    for k, chunk in enumerate(chunks):
        t = transport_electrons(energies[chunk], weights[chunk], edges, seed=seed * 1000 + k, mode=mode,
                                step_fraction=step_fraction)
        tally += t.shell_mev
        beyond += t.beyond_mev
    tally[0] += local
    raw_total = float(tally.sum() + beyond)
    target = electron_energy_per_decay_mev(include_conversion, include_auger)
    return RadialEnergyProfile(edges_cm=edges, energy_mev=tally * (target / raw_total), raw_total_mev=raw_total,
                               beyond_mev=beyond, mode=mode, n_histories=int(n_histories), seed=int(seed))
