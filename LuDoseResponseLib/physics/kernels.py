"""Lu-177 dose-voxel kernels (DVK) in water, computed from physics for any voxel size.

A kernel value K(o) is the mean absorbed dose in the voxel at offset o (in voxels) per decay
uniformly distributed in the source voxel, in mGy/(MBq·s). Arrays are indexed [z, y, x] with
the source voxel at the centre; voxel sizes are given as (x, y, z) in mm, so anisotropic
voxels work.

Method (physics in :mod:`electron_transport` and :mod:`photon_kernel`):

1. Radial energy-deposition profile ε(r) of a point source: electrons (β⁻ spectrum, conversion
   and Auger electrons of ICRP-107) from a condensed-history Monte Carlo; photons (γ, X-rays)
   from a build-up point kernel.
2. Voxel-pair integration. The difference d = x − y of two points uniform in the source and the
   target voxel has the density W(d − o·h) = Π_a (h_a − |d_a − o_a h_a|)₊ / h_a², so
       E(o) = ∫ ε(r) ⟨V·W(r·u − o·h)⟩_u dr,   K(o) = E(o) / (ρ V),
   where V·W is the trilinear interpolation weight of the point r·u to lattice node o. Near the
   source this is evaluated by "splatting" points on spheres of radius r (Fibonacci directions,
   a random rotation per shell, the count growing as r²) with trilinear weights; ε is finite at
   r = 0 so there is no singularity. The long photon tail uses a smooth partition of unity and a
   tensor Gauss–Jacobi rule for the tent weight W. Σ_o V·W(d − o·h) = 1 exactly, so the kernel
   holds all the energy deposited inside its box: the electron part sums to E_e = 0.147923 MeV.
3. The 8 mirror images (and axis swaps for equal voxel sides) are averaged: the exact symmetry.

Density scaling: a water-like medium of density ρ has ε_ρ(r) = ρ ε_1(ρ r) (O'Connor's theorem),
so K_ρ(h) = ρ² K_1(ρ h).

Kernels are cached on disk keyed by voxel size and options (see :func:`kernel_cache_dir`).
External kernels (Lanconelli et al. 2012 text tables, raw 3-D arrays) load as :class:`VoxelKernel`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.special import roots_jacobi

from LuDoseResponseLib.errors import DataQualityWarning, InputError, PhysicsError
from LuDoseResponseLib.files import atomic_path
from LuDoseResponseLib.physics.electron_transport import DPK_MODEL_VERSION, RadialEnergyProfile, lu177_electron_dpk
from LuDoseResponseLib.physics.nuclides import MEV_TO_J, lu177
from LuDoseResponseLib.physics.photon_kernel import photon_energy_per_cm, photon_shell_energies

log = logging.getLogger(__name__)

KERNEL_MODEL_VERSION = "lu177-dvk-2"
DEFAULT_PHOTON_RADIUS_MM = 100.0
_MAX_DEFAULT_PHOTON_HALF_WIDTH = 64
UNIT = "mGy/(MBq·s)"
# MeV per g per decay → mGy/(MBq·s): J/MeV · 1000 g/kg · 1e6 decays/(MBq·s) · 1000 mGy/Gy
MEV_PER_G_TO_MGY_PER_MBQ_S = MEV_TO_J * 1e3 * 1e6 * 1e3
_DPK_HISTORIES = 200_000
_DPK_SEED = 177
_SPLAT_POINTS_PER_AREA = 8.0      # points per h_min² of sphere area
_SPLAT_MIN_POINTS = 256
_SPLAT_MAX_POINTS = 2**16        # per shell; reached only below ~0.15 mm voxels
_PHOTON_NEAR_FACTOR = (3.0, 6.0)  # photon taper from r1 = 3 h_max to r2 = 6 h_max
_PHOTON_SHELLS_PER_VOXEL = 32.0
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_DATA_FILES = ("lu177_icrp107.json", "water_photon_coefficients.json")

_UNIT_FACTORS = {   # to mGy/(MBq·s)
    "mGy/(MBq·s)": 1.0, "mGy/(MBq*s)": 1.0, "mGy/MBq/s": 1.0,
    "Gy/(Bq·s)": 1e9, "Gy/(Bq*s)": 1e9, "Gy/Bq/s": 1e9,
    "mGy/(MBq·h)": 1.0 / 3600.0, "mGy/(MBq*h)": 1.0 / 3600.0, "mGy/MBq/h": 1.0 / 3600.0,
    "Gy/(GBq·h)": 1.0 / 3600.0, "Gy/(GBq*h)": 1.0 / 3600.0,
}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def voxel_size_xyz_mm(voxel_size_mm, what: str = "voxel_size_mm") -> tuple[float, float, float]:
    """A positive finite (x, y, z) voxel size in mm from a number or a 3-sequence."""
    try:
        if np.ndim(voxel_size_mm) == 0:
            vals = (float(voxel_size_mm),) * 3
        else:
            vals = tuple(float(v) for v in voxel_size_mm)
    except (TypeError, ValueError) as exc:
        raise PhysicsError(f"{what} must be a number or an (x, y, z) tuple in mm, got {voxel_size_mm!r}") from exc
    if len(vals) != 3:
        raise PhysicsError(f"{what} must have 3 components (x, y, z) in mm, got {len(vals)}: {voxel_size_mm!r}")
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise PhysicsError(f"{what} must be positive and finite in every axis, got {vals} mm")
    return vals


def _check_density(density_g_per_cm3: float) -> float:
    try:
        rho = float(density_g_per_cm3)
    except (TypeError, ValueError):
        rho = math.nan
    if not (math.isfinite(rho) and rho > 0):
        raise PhysicsError(f"density_g_per_cm3 must be positive and finite, got {density_g_per_cm3!r}")
    return rho


def _check_photon_radius(photon_radius_mm: float) -> float:
    try:
        radius = float(photon_radius_mm)
    except (TypeError, ValueError):
        radius = math.nan
    if not (math.isfinite(radius) and radius >= 0):
        raise PhysicsError(f"photon_radius_mm must be ≥ 0 and finite, got {photon_radius_mm!r}")
    return radius


# --------------------------------------------------------------------------------------------
# Voxel-pair integration
# --------------------------------------------------------------------------------------------

def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    rho = np.sqrt(1.0 - z * z)
    phi = _GOLDEN_ANGLE * np.arange(n)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1),
    ], axis=1)


def splat_radial_profile(edges_cm: np.ndarray, energy_mev: np.ndarray, voxel_cm: tuple[float, float, float],
                         half_width: tuple[int, int, int], *, seed: int = 1,
                         points_per_area: float = _SPLAT_POINTS_PER_AREA,
                         min_points: int = _SPLAT_MIN_POINTS) -> tuple[np.ndarray, float]:
    """Energy per decay (MeV) deposited in each voxel of a (2n+1)³ box by a shell profile.

    Each shell's energy is spread over points r·u on a sphere (u: rotated Fibonacci lattice) and
    each point gives trilinear weights to the 8 surrounding lattice nodes: the exact voxel-pair
    average ⟨V·W⟩ up to the angular quadrature. Returns (array [z, y, x], energy that fell outside).
    """
    nx, ny, nz = half_width
    hx, hy, hz = voxel_cm
    h = np.array([hx, hy, hz])
    shape = (2 * nz + 1, 2 * ny + 1, 2 * nx + 1)
    out = np.zeros(int(np.prod(shape)))
    rng = np.random.default_rng(seed)
    r_mid = 0.5 * (edges_cm[1:] + edges_cm[:-1])
    active = np.flatnonzero(energy_mev > 0)
    counts = np.maximum(min_points, np.ceil(points_per_area * 4 * np.pi * (r_mid / h.min()) ** 2))
    counts = np.minimum(2 ** np.ceil(np.log2(counts)), _SPLAT_MAX_POINTS).astype(int)   # few distinct counts
    outside = 0.0
    for m in np.unique(counts[active]):
        bins = active[counts[active] == m]
        base = _fibonacci_sphere(int(m))
        per_batch = max(1, 2_000_000 // int(m))
        for start in range(0, bins.size, per_batch):
            b = bins[start:start + per_batch]
            rot = _random_rotations(b.size, rng)
            pts = np.einsum("bij,mj->bmi", rot, base) * r_mid[b][:, None, None]      # (B, M, 3) cm, (x,y,z)
            q = pts / h
            i0 = np.floor(q).astype(np.int64)
            f = q - i0
            e_pt = np.repeat(energy_mev[b] / m, m)
            i0 = i0.reshape(-1, 3)
            f = f.reshape(-1, 3)
            for cx in (0, 1):
                wx = f[:, 0] if cx else 1.0 - f[:, 0]
                ix = i0[:, 0] + cx + nx
                for cy in (0, 1):
                    wy = f[:, 1] if cy else 1.0 - f[:, 1]
                    iy = i0[:, 1] + cy + ny
                    for cz in (0, 1):
                        wz = f[:, 2] if cz else 1.0 - f[:, 2]
                        iz = i0[:, 2] + cz + nz
                        wt = e_pt * wx * wy * wz
                        inside = (ix >= 0) & (ix < shape[2]) & (iy >= 0) & (iy < shape[1]) & (iz >= 0) & (iz < shape[0])
                        flat = (iz * shape[1] + iy) * shape[2] + ix
                        out += np.bincount(flat[inside], weights=wt[inside], minlength=out.size)
                        outside += float(wt[~inside].sum())
    return out.reshape(shape), outside


def _tent_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t ∈ (−1, 1) and weights for ∫ f(t)(1 − |t|) dt (Gauss–Jacobi α=1, β=0 on each half)."""
    x, w = roots_jacobi(n, 1.0, 0.0)
    t = (x + 1.0) / 2.0
    wt = w / 4.0
    return np.concatenate([-t[::-1], t]), np.concatenate([wt[::-1], wt])


def _far_field(point_density: Callable[[np.ndarray], np.ndarray], voxel_cm, half_width) -> np.ndarray:
    """V·∫ g(|d|) W(d − o·h) d³d for every offset in the box (octant computed, then mirrored).

    ``point_density`` g(r) = ε(r)/(4πr²) must be smooth over each voxel pair (no singularity).
    The Gauss order falls with distance: 4 nodes per tent half up to 6 voxels, 2 up to 20, then 1.
    """
    nx, ny, nz = half_width
    hx, hy, hz = voxel_cm
    vol = hx * hy * hz
    oz, oy, ox = np.meshgrid(np.arange(nz + 1), np.arange(ny + 1), np.arange(nx + 1), indexing="ij")
    oz, oy, ox = oz.ravel(), oy.ravel(), ox.ravel()
    cheb = np.maximum(np.maximum(ox, oy), oz)
    octant = np.zeros(ox.size)
    for order, sel in ((4, cheb <= 6), (2, (cheb > 6) & (cheb <= 20)), (1, cheb > 20)):
        idx = np.flatnonzero(sel)
        if idx.size == 0:
            continue
        t, w = _tent_rule(order)
        tx, ty, tz = np.meshgrid(t, t, t, indexing="ij")
        w3 = (w[:, None, None] * w[None, :, None] * w[None, None, :]).ravel()
        tx, ty, tz = tx.ravel(), ty.ravel(), tz.ravel()
        per = max(1, 4_000_000 // w3.size)
        for start in range(0, idx.size, per):
            j = idx[start:start + per]
            dx = (ox[j, None] + tx[None, :]) * hx
            dy = (oy[j, None] + ty[None, :]) * hy
            dz = (oz[j, None] + tz[None, :]) * hz
            r = np.sqrt(dx * dx + dy * dy + dz * dz)
            octant[j] = vol * (point_density(r) * w3[None, :]).sum(axis=1)
    octant = octant.reshape(nz + 1, ny + 1, nx + 1)
    full = np.zeros((2 * nz + 1, 2 * ny + 1, 2 * nx + 1))
    for sz in (1, -1):
        for sy in (1, -1):
            for sx in (1, -1):
                zs = slice(nz, 2 * nz + 1) if sz > 0 else slice(nz, None, -1)
                ys = slice(ny, 2 * ny + 1) if sy > 0 else slice(ny, None, -1)
                xs = slice(nx, 2 * nx + 1) if sx > 0 else slice(nx, None, -1)
                full[zs, ys, xs] = octant
    return full


def symmetrize(kernel_zyx: np.ndarray, voxel_size_xyz: tuple[float, float, float]) -> np.ndarray:
    """Average over the mirror images and over the permutations of axes with equal voxel sides."""
    k = kernel_zyx
    k = 0.5 * (k + k[::-1, :, :])
    k = 0.5 * (k + k[:, ::-1, :])
    k = 0.5 * (k + k[:, :, ::-1])
    sides_zyx = tuple(reversed(voxel_size_xyz))

    def same(a, b):
        return abs(a - b) <= 1e-9 * max(a, b)

    perms = [p for p in itertools.permutations(range(3))
             if all(same(sides_zyx[p[i]], sides_zyx[i]) and k.shape[p[i]] == k.shape[i] for i in range(3))]
    return sum(k.transpose(p) for p in perms) / len(perms)


# --------------------------------------------------------------------------------------------
# Kernel assembly
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class KernelParts:
    """Electron and photon parts of a Lu-177 kernel, mGy/(MBq·s), arrays [z, y, x] of equal shape."""

    electron: np.ndarray
    photon: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    density_g_per_cm3: float
    photon_radius_mm: float
    meta: dict = field(default_factory=dict)

    @property
    def total(self) -> np.ndarray:
        return self.electron + self.photon

    @property
    def voxel_mass_g(self) -> float:
        return self.density_g_per_cm3 * float(np.prod(self.voxel_size_mm)) / 1000.0

    def to_dict(self) -> dict:
        c = tuple(n // 2 for n in self.electron.shape)
        return {"shape_zyx": list(self.electron.shape), "voxel_size_mm_xyz": [float(v) for v in self.voxel_size_mm],
                "density_g_per_cm3": float(self.density_g_per_cm3), "photon_radius_mm": float(self.photon_radius_mm),
                "unit": UNIT, "self_electron": float(self.electron[c]), "self_photon": float(self.photon[c]),
                "meta": {k: (float(v) if isinstance(v, float) else v) for k, v in self.meta.items()}}


def _half_widths(voxel_mm, reach_mm: float) -> tuple[int, int, int]:
    return tuple(int(math.floor(reach_mm / h)) + 1 for h in voxel_mm)


def compute_lu177_kernel_parts(voxel_size_mm, *, density_g_per_cm3: float = 1.0,
                               photon_radius_mm: float = DEFAULT_PHOTON_RADIUS_MM,
                               n_histories: int = _DPK_HISTORIES, seed: int = _DPK_SEED,
                               points_per_area: float = _SPLAT_POINTS_PER_AREA, include_conversion: bool = True,
                               dpk: RadialEnergyProfile | None = None,
                               progress: Callable[[float], None] | None = None) -> KernelParts:
    """Compute (no cache) the electron and photon kernels for one voxel size. See the module doc.

    ``include_conversion=False`` drops the conversion electrons (only to compare with kernels that
    lack them, such as Lanconelli et al. 2012's).
    """
    vox_mm = voxel_size_xyz_mm(voxel_size_mm)
    rho = _check_density(density_g_per_cm3)
    photon_radius_mm = _check_photon_radius(photon_radius_mm)
    h_cm = tuple(v / 10.0 for v in vox_mm)
    if dpk is None:
        dpk = lu177_electron_dpk(n_histories=n_histories, seed=seed, include_conversion=include_conversion)
    if progress:
        progress(0.4)
    # Density scaling: radii shrink by 1/ρ, the energy per shell is unchanged.
    e_edges = dpk.edges_cm / rho
    e_energy = dpk.energy_mev
    last = int(np.flatnonzero(e_energy > 0).max()) + 1
    e_edges, e_energy = e_edges[:last + 1], e_energy[:last]
    r1 = _PHOTON_NEAR_FACTOR[0] * max(h_cm)
    r2 = _PHOTON_NEAR_FACTOR[1] * max(h_cm)
    half_e = _half_widths(vox_mm, e_edges[-1] * 10.0)
    half_ph = tuple(max(a, b) for a, b in zip(_half_widths(vox_mm, r2 * 10.0),
                                                tuple(int(math.ceil(photon_radius_mm / v)) for v in vox_mm),
                                                strict=True))
    half = tuple(max(a, b) for a, b in zip(half_e, half_ph, strict=True))
    electron_e, out_e = splat_radial_profile(e_edges, e_energy, h_cm, half, seed=seed + 1,
                                             points_per_area=points_per_area)
    if out_e > 1e-12 * dpk.total_mev:
        raise PhysicsError(f"internal: electron energy {out_e} MeV fell outside the kernel box")
    if progress:
        progress(0.7)

    def taper(r):
        x = np.clip((r - r1) / (r2 - r1), 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * x))     # 1 below r1, 0 above r2, smooth between

    # Shells of h_min/32 up to h_min, then growing with r (width r/32): the midpoint error ∝ (Δr/r)².
    h_min = min(h_cm)
    n_log = int(math.ceil(_PHOTON_SHELLS_PER_VOXEL * math.log(r2 / h_min))) + 1
    p_edges = np.concatenate([np.linspace(0.0, h_min, int(_PHOTON_SHELLS_PER_VOXEL) + 1),
                              np.geomspace(h_min, r2, n_log)[1:]])
    p_energy = photon_shell_energies(p_edges, rho) * taper(0.5 * (p_edges[1:] + p_edges[:-1]))
    photon_e, _ = splat_radial_profile(p_edges, p_energy, h_cm, half, seed=seed + 2,
                                       points_per_area=points_per_area)
    r_tab = np.linspace(0.0, math.sqrt(sum((n + 1) ** 2 * hh**2 for n, hh in zip(half, h_cm, strict=True))) * 1.01,
                        20001)
    with np.errstate(divide="ignore", invalid="ignore"):
        g_tab = np.where(r_tab > 0, photon_energy_per_cm(r_tab, rho) * (1.0 - taper(r_tab))
                         / (4 * np.pi * r_tab**2), 0.0)
    photon_e += _far_field(lambda r: np.interp(r, r_tab, g_tab), h_cm, half)
    if progress:
        progress(0.95)
    mass_g = rho * float(np.prod(h_cm))
    electron = symmetrize(electron_e, vox_mm) / mass_g * MEV_PER_G_TO_MGY_PER_MBQ_S
    photon = symmetrize(photon_e, vox_mm) / mass_g * MEV_PER_G_TO_MGY_PER_MBQ_S
    meta = {"model": KERNEL_MODEL_VERSION, "voxel_size_mm_xyz": list(vox_mm), "density_g_per_cm3": rho,
            "photon_radius_mm": float(photon_radius_mm), "unit": UNIT, "n_histories": int(n_histories),
            "seed": int(seed), "points_per_area": float(points_per_area), "conversion_electrons": include_conversion,
            "dpk_raw_total_mev": dpk.raw_total_mev, "electron_energy_mev": float(electron_e.sum()),
            "photon_energy_in_box_mev": float(photon_e.sum())}
    if progress:
        progress(1.0)
    return KernelParts(electron=electron, photon=photon, voxel_size_mm=vox_mm, density_g_per_cm3=rho,
                       photon_radius_mm=float(photon_radius_mm), meta=meta)


def _default_photon_radius_mm(voxel_mm: tuple[float, float, float]) -> float:
    """100 mm, but at most 64 voxels along the finest axis (keeps fine-voxel kernels small)."""
    return min(DEFAULT_PHOTON_RADIUS_MM, _MAX_DEFAULT_PHOTON_HALF_WIDTH * min(voxel_mm))


# --------------------------------------------------------------------------------------------
# On-disk cache
# --------------------------------------------------------------------------------------------

def kernel_cache_dir() -> Path:
    """Where computed kernels are cached: ``$LUDR_CACHE_DIR``, else the platform's user cache.

    Linux: ``$XDG_CACHE_HOME/ludoseresponse`` (default ``~/.cache/ludoseresponse``); macOS:
    ``~/Library/Caches/ludoseresponse``; Windows: ``%LOCALAPPDATA%\\ludoseresponse\\Cache``.
    """
    env = os.environ.get("LUDR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        home = Path.home()
    except (RuntimeError, KeyError):     # no HOME and no password entry (some containers)
        fallback = Path(tempfile.gettempdir()) / "ludoseresponse-cache"
        log.warning("no home folder: caching kernels in %s (set LUDR_CACHE_DIR to choose)", fallback)
        return fallback
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "ludoseresponse"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "ludoseresponse" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "ludoseresponse"


@lru_cache(maxsize=1)
def _data_digest() -> str:
    """SHA-256 of the packaged physics data (nuclide and photon coefficients): part of every cache key, so a
    replaced data file (SOURCES.md allows it) never reuses kernels computed from the old one."""
    h = hashlib.sha256()
    for name in _DATA_FILES:
        h.update(resources.files("LuDoseResponseLib.data").joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def _dpk_key() -> dict:
    return {"dpk_model": DPK_MODEL_VERSION, "n_histories": _DPK_HISTORIES, "seed": _DPK_SEED,
            "data": _data_digest()}


def _request_key(vox_mm, rho, photon_radius_mm) -> dict:
    return {"model": KERNEL_MODEL_VERSION, "voxel_size_mm_xyz": [round(v, 6) for v in vox_mm],
            "density_g_per_cm3": round(rho, 6), "photon_radius_mm": round(float(photon_radius_mm), 6),
            **_dpk_key(), "points_per_area": _SPLAT_POINTS_PER_AREA, "min_points": _SPLAT_MIN_POINTS,
            "max_points": _SPLAT_MAX_POINTS, "photon_near_factor": list(_PHOTON_NEAR_FACTOR),
            "photon_shells_per_voxel": _PHOTON_SHELLS_PER_VOXEL}


def _cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    hx, hy, hz = key["voxel_size_mm_xyz"]
    return kernel_cache_dir() / f"lu177_dvk_{hx:g}x{hy:g}x{hz:g}mm_{digest}.npz"


def _arrays_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        h.update(repr(a.shape).encode())
    return h.hexdigest()


def _load_cached(path: Path, key: dict) -> KernelParts | None:
    """The cached parts if the file is complete and matches ``key``; None (and delete it) if not."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            electron = np.array(z["electron"], dtype=float)
            photon = np.array(z["photon"], dtype=float)
            meta = json.loads(str(z["meta"]))
        ok = (meta.get("key") == key and electron.shape == photon.shape and electron.ndim == 3
              and all(s % 2 == 1 for s in electron.shape)
              and np.all(np.isfinite(electron)) and np.all(np.isfinite(photon))
              and meta.get("sha256") == _arrays_digest(electron, photon))
    except Exception as exc:        # a truncated or foreign file: regenerate
        log.warning("kernel cache file %s is unreadable (%s); regenerating it", path, exc)
        ok = False
    if not ok:
        log.warning("kernel cache file %s does not match its request or is corrupt; regenerating it", path)
        try:
            path.unlink()
        except OSError:
            pass
        return None
    vox = tuple(float(v) for v in key["voxel_size_mm_xyz"])
    return KernelParts(electron=electron, photon=photon, voxel_size_mm=vox,
                       density_g_per_cm3=float(key["density_g_per_cm3"]),
                       photon_radius_mm=float(key["photon_radius_mm"]), meta=meta.get("info", {}))


def _store(path: Path, key: dict, parts: KernelParts) -> None:
    meta = {"key": key, "sha256": _arrays_digest(parts.electron, parts.photon), "info": parts.meta}
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, electron=parts.electron, photon=parts.photon, meta=np.array(json.dumps(meta)))
    except OSError as exc:
        log.warning("could not write the kernel cache %s (%s); continuing without caching", path, exc)


def cached_electron_dpk(*, use_cache: bool = True) -> RadialEnergyProfile:
    """The Lu-177 electron dose-point kernel, from the disk cache or the Monte Carlo (then cached)."""
    key = _dpk_key()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = kernel_cache_dir() / f"lu177_electron_dpk_{digest}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                edges, energy = np.array(z["edges_cm"]), np.array(z["energy_mev"])
                meta = json.loads(str(z["meta"]))
            if meta.get("key") == key and meta.get("sha256") == _arrays_digest(edges, energy):
                return RadialEnergyProfile(edges_cm=edges, energy_mev=energy, raw_total_mev=meta["raw_total_mev"],
                                           beyond_mev=meta["beyond_mev"], mode="full",
                                           n_histories=_DPK_HISTORIES, seed=_DPK_SEED)
        except Exception as exc:    # unreadable: recompute below
            log.warning("electron DPK cache %s is unreadable (%s); recomputing it", path, exc)
        log.warning("electron DPK cache %s does not match or is corrupt; recomputing it", path)
    dpk = lu177_electron_dpk(n_histories=_DPK_HISTORIES, seed=_DPK_SEED)
    if use_cache:
        meta = {"key": key, "sha256": _arrays_digest(dpk.edges_cm, dpk.energy_mev),
                "raw_total_mev": dpk.raw_total_mev, "beyond_mev": dpk.beyond_mev}
        try:
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, edges_cm=dpk.edges_cm, energy_mev=dpk.energy_mev, meta=np.array(json.dumps(meta)))
        except OSError as exc:
            log.warning("could not write the DPK cache %s (%s)", path, exc)
    return dpk


def lu177_kernel_parts(voxel_size_mm, *, density_g_per_cm3: float = 1.0, photon_radius_mm: float | None = None,
                       use_cache: bool = True,
                       progress: Callable[[float], None] | None = None) -> KernelParts:
    """Electron and photon Lu-177 kernels for a voxel size, from the disk cache or computed (then cached)."""
    vox = voxel_size_xyz_mm(voxel_size_mm)
    rho = _check_density(density_g_per_cm3)
    radius = _default_photon_radius_mm(vox) if photon_radius_mm is None else _check_photon_radius(photon_radius_mm)
    key = _request_key(vox, rho, radius)
    path = _cache_path(key)
    if use_cache:
        memo_key = (str(path), json.dumps(key, sort_keys=True), _file_signature(path))
        if memo_key in _MEMORY:
            return _MEMORY[memo_key]
        cached = _load_cached(path, key)
        if cached is not None:
            log.debug("Lu-177 kernel for %s mm loaded from %s", vox, path)
            _remember((str(path), json.dumps(key, sort_keys=True), _file_signature(path)), cached)
            return cached
    parts = compute_lu177_kernel_parts(vox, density_g_per_cm3=rho, photon_radius_mm=radius, progress=progress,
                                       dpk=cached_electron_dpk(use_cache=use_cache))
    if use_cache:
        _store(path, key, parts)
        _remember((str(path), json.dumps(key, sort_keys=True), _file_signature(path)), parts)
    return parts


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


_MEMORY: dict[tuple, KernelParts] = {}
_MEMORY_SIZE = 4


def _remember(memo_key: tuple, parts: KernelParts) -> None:
    """Keep the last few kernels in memory (read-only arrays), keyed with the cache file's mtime and size."""
    parts.electron.flags.writeable = False
    parts.photon.flags.writeable = False
    _MEMORY[memo_key] = parts
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.pop(next(iter(_MEMORY)))


def lu177_voxel_kernel(voxel_size_mm, *, photons: bool = True, electrons: bool = True,
                       photon_radius_mm: float | None = None, density_g_per_cm3: float = 1.0,
                       use_cache: bool = True) -> np.ndarray:
    """Lu-177 dose-voxel kernel in water, indexed [z, y, x], in mGy/(MBq·s), source voxel at the centre.

    ``voxel_size_mm``: a number (cubic voxels) or an (x, y, z) tuple in mm. The electron part
    reaches ~2 mm; the photon part is kept within ``photon_radius_mm`` of the source voxel along
    each axis (default 100 mm but at most 64 voxels; never less than 6 voxels, the near field).
    The box holds ~45 % of the photon energy at 100 mm: photons deposit most of their energy
    farther away (mean free path 7 cm at 208 keV). ``density_g_per_cm3`` scales a water-like medium.
    """
    if not (photons or electrons):
        raise PhysicsError("lu177_voxel_kernel needs photons, electrons or both")
    parts = lu177_kernel_parts(voxel_size_mm, density_g_per_cm3=density_g_per_cm3,
                               photon_radius_mm=photon_radius_mm, use_cache=use_cache)
    if photons and electrons:
        return parts.total
    return (parts.electron if electrons else parts.photon).copy()


# --------------------------------------------------------------------------------------------
# Kernels as objects: ours and external ones
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class VoxelKernel:
    """A dose-voxel kernel with its voxel size: values [z, y, x] in mGy/(MBq·s), source at the centre.

    ``photon_values`` is the photon-only part where it is known (our kernels), else None.
    ``density_g_per_cm3`` is the medium density used for voxel masses in energy checks.
    """

    values: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    source: str
    density_g_per_cm3: float = 1.0
    photon_values: np.ndarray | None = None

    def __post_init__(self):
        v = np.asarray(self.values)
        if v.ndim != 3 or any(s % 2 == 0 for s in v.shape):
            raise InputError(f"kernel from {self.source}: needs a 3-D array with odd sizes (source at the centre), "
                             f"got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise InputError(f"kernel from {self.source} contains NaN or infinite values")
        voxel_size_xyz_mm(self.voxel_size_mm, what=f"voxel size of the kernel from {self.source}")

    @property
    def centre(self) -> tuple[int, int, int]:
        return tuple(s // 2 for s in self.values.shape)

    @property
    def voxel_mass_g(self) -> float:
        return self.density_g_per_cm3 * float(np.prod(self.voxel_size_mm)) / 1000.0

    def energy_mev(self) -> float:
        """Σ K · m_vox in MeV per decay: the energy the kernel deposits inside its box."""
        return float(self.values.sum()) * self.voxel_mass_g / MEV_PER_G_TO_MGY_PER_MBQ_S

    def self_value(self) -> float:
        return float(self.values[self.centre])

    def face_neighbour(self) -> float:
        """Mean of the 6 face neighbours of the source voxel."""
        cz, cy, cx = self.centre
        v = self.values
        vals = [v[cz, cy, cx + 1], v[cz, cy, cx - 1], v[cz, cy + 1, cx], v[cz, cy - 1, cx],
                v[cz + 1, cy, cx], v[cz - 1, cy, cx]]
        return float(np.mean(vals))

    def to_dict(self) -> dict:
        return {"source": self.source, "shape_zyx": list(self.values.shape),
                "voxel_size_mm_xyz": [float(x) for x in self.voxel_size_mm], "unit": UNIT,
                "self_mgy_per_mbq_s": self.self_value(), "face_neighbour_mgy_per_mbq_s": self.face_neighbour(),
                "energy_mev": self.energy_mev(), "density_g_per_cm3": float(self.density_g_per_cm3)}


def lu177_kernel(voxel_size_mm, *, photon_radius_mm: float | None = None, density_g_per_cm3: float = 1.0,
                 use_cache: bool = True) -> VoxelKernel:
    """Our Lu-177 kernel as a :class:`VoxelKernel` (total, with its photon part attached)."""
    parts = lu177_kernel_parts(voxel_size_mm, density_g_per_cm3=density_g_per_cm3,
                               photon_radius_mm=photon_radius_mm, use_cache=use_cache)
    return VoxelKernel(values=parts.total, voxel_size_mm=parts.voxel_size_mm,
                       source=f"LuDoseResponse {KERNEL_MODEL_VERSION} (ICRP-107, water)",
                       density_g_per_cm3=parts.density_g_per_cm3, photon_values=parts.photon)


@dataclass(frozen=True)
class KernelEnergyCheck:
    """Σ K·m against the physical bounds [0.90 E_e, E_e + E_ph] (physics/README §2, test 3)."""

    energy_mev: float
    electron_energy_mev: float
    photon_energy_mev: float
    within_bounds: bool
    low: bool            # below 0.97 E_e: electron energy probably missing (e.g. conversion electrons)

    def to_dict(self) -> dict:
        return {"energy_mev": self.energy_mev, "electron_energy_mev": self.electron_energy_mev,
                "photon_energy_mev": self.photon_energy_mev, "within_bounds": self.within_bounds,
                "low": self.low}


def check_kernel_energy(kernel: VoxelKernel, *, strict: bool = True) -> KernelEnergyCheck:
    """Check that a Lu-177 kernel holds a plausible energy; warn below 0.97 E_e, raise outside the bounds."""
    nuc = lu177()
    e_e, e_ph = nuc.electron_energy_mev, nuc.photon_energy_mev
    energy = kernel.energy_mev()
    within = 0.90 * e_e <= energy <= e_e + e_ph
    low = energy < 0.97 * e_e
    result = KernelEnergyCheck(energy, e_e, e_ph, within, low)
    if not within and strict:
        raise PhysicsError(f"kernel from {kernel.source} holds Σ K·m = {energy:.4g} MeV per decay, outside "
                           f"[{0.90 * e_e:.4g}, {e_e + e_ph:.4g}] MeV for Lu-177: check its unit "
                           f"({UNIT} expected), voxel size {kernel.voxel_size_mm} mm and density")
    if low:
        warnings.warn(f"kernel from {kernel.source} holds {energy:.4g} MeV per decay, "
                      f"{100 * (1 - energy / e_e):.1f} % less than ICRP-107's electron energy {e_e:.6g} MeV: "
                      "some emissions (e.g. conversion electrons) are probably missing",
                      DataQualityWarning, stacklevel=2)
    return result


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise InputError(f"cannot read kernel file {path}: {exc}") from exc


def load_lanconelli_kernel(path: str | os.PathLike, *, voxel_size_mm=None,
                           density_g_per_cm3: float = 1.0) -> VoxelKernel:
    """Read a Lanconelli et al. (Phys Med Biol 2012;57:517) voxel S-value table.

    Format: a title line (e.g. ``Lu177 - 4.8mm - Soft tissue``), a header ``i j k S [mGy/(MBq·s)]``,
    then one row per octant offset i, j, k ≥ 0. The octant is mirrored into a (2n+1)³ kernel; i, j, k
    are taken as x, y, z. The voxel size comes from the title unless ``voxel_size_mm`` is given.
    """
    p = Path(path)
    lines = [ln.strip() for ln in _read_text(p).splitlines() if ln.strip()]
    if len(lines) < 3:
        raise InputError(f"{p}: too short for a Lanconelli kernel table (title, header, rows)")
    if voxel_size_mm is None:
        m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*mm", lines[0])
        if not m:
            raise InputError(f"{p}: no voxel size like '4.8mm' in the title line {lines[0]!r}; "
                             "pass voxel_size_mm")
        voxel_size_mm = float(m.group(1))
    vox = voxel_size_xyz_mm(voxel_size_mm, what=f"voxel size of {p}")
    header = lines[1]
    if "mGy" not in header or "MBq" not in header:
        raise InputError(f"{p}: header {header!r} does not state S in mGy/(MBq·s)")
    rows = []
    for n, ln in enumerate(lines[2:], start=3):
        parts = ln.replace(",", ".").split()
        try:
            i, j, k = (int(x) for x in parts[:3])
            s = float(parts[3])
        except (ValueError, IndexError) as exc:
            raise InputError(f"{p}, line {n}: expected 'i j k S', got {ln!r}") from exc
        if min(i, j, k) < 0 or not math.isfinite(s):
            raise InputError(f"{p}, line {n}: negative index or non-finite S in {ln!r}")
        rows.append((i, j, k, s))
    n_max = max(max(r[:3]) for r in rows)
    octant = np.full((n_max + 1,) * 3, np.nan)
    for i, j, k, s in rows:
        octant[k, j, i] = s
    if np.isnan(octant).any():
        raise InputError(f"{p}: the table does not list every offset of the octant 0..{n_max}")
    idx = np.abs(np.arange(-n_max, n_max + 1))
    values = octant[np.ix_(idx, idx, idx)]
    return VoxelKernel(values=values, voxel_size_mm=vox, source=str(p), density_g_per_cm3=density_g_per_cm3)


def load_raw_kernel(path: str | os.PathLike, *, shape_zyx: tuple[int, int, int] | None, voxel_size_mm,
                    unit: str = UNIT, dtype: str = "<f4", density_g_per_cm3: float = 1.0) -> VoxelKernel:
    """Read a raw 3-D kernel (e.g. PyTheranostics' 51³ float32) or a ``.npy`` file.

    ``shape_zyx`` must be given for raw files; the source voxel must be the centre (odd sizes).
    ``unit``: one of mGy/(MBq·s), Gy/(Bq·s), mGy/(MBq·h), Gy/(GBq·h).
    """
    p = Path(path)
    if unit not in _UNIT_FACTORS:
        raise InputError(f"kernel unit {unit!r} for {p} is not one of {sorted(set(_UNIT_FACTORS))}")
    vox = voxel_size_xyz_mm(voxel_size_mm, what=f"voxel size of {p}")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            if shape_zyx is None:
                raise InputError(f"{p}: a raw kernel needs shape_zyx")
            arr = np.fromfile(p, dtype=np.dtype(dtype))
            expected = int(np.prod(shape_zyx))
            if arr.size != expected:
                raise InputError(f"{p} holds {arr.size} values of {dtype}, but shape {tuple(shape_zyx)} needs "
                                 f"{expected}: check the shape and dtype")
            arr = arr.reshape(tuple(shape_zyx))
    except OSError as exc:
        raise InputError(f"cannot read kernel file {p}: {exc}") from exc
    if shape_zyx is not None and tuple(arr.shape) != tuple(shape_zyx):
        raise InputError(f"{p} has shape {arr.shape}, expected {tuple(shape_zyx)}")
    values = np.asarray(arr, dtype=float) * _UNIT_FACTORS[unit]
    return VoxelKernel(values=values, voxel_size_mm=vox, source=str(p), density_g_per_cm3=density_g_per_cm3)
