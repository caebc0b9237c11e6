"""Lu-177 dose-voxel kernels (DVK) in water computed from physics for one voxel size (no cache).

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

Voxel sizes must lie in [MIN_VOXEL_MM, MAX_VOXEL_MM] and a kernel box may hold at most
MAX_KERNEL_VOXELS voxels: both are checked before anything is allocated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import roots_jacobi

from LuDoseResponseLib.errors import PhysicsError
from LuDoseResponseLib.physics.electron_transport import RadialEnergyProfile, lu177_electron_dpk
from LuDoseResponseLib.physics.nuclides import MEV_TO_J
from LuDoseResponseLib.physics.photon_kernel import photon_energy_per_cm, photon_shell_energies

KERNEL_MODEL_VERSION = "lu177-dvk-2"
DEFAULT_PHOTON_RADIUS_MM = 100.0
_MAX_DEFAULT_PHOTON_HALF_WIDTH = 64
UNIT = "mGy/(MBq·s)"
# MeV per g per decay → mGy/(MBq·s): J/MeV · 1000 g/kg · 1e6 decays/(MBq·s) · 1000 mGy/Gy
MEV_PER_G_TO_MGY_PER_MBQ_S = MEV_TO_J * 1e3 * 1e6 * 1e3
#: plausible voxel sizes (mm): below, the electron part alone needs > 10⁸ voxels; above, a voxel is a patient
MIN_VOXEL_MM = 0.05
MAX_VOXEL_MM = 100.0
#: largest kernel box (voxels), 256³: 134 MB per float64 array
MAX_KERNEL_VOXELS = 256**3
DPK_HISTORIES = 200_000
DPK_SEED = 177
_ELECTRON_REACH_MM = 3.0          # the DPK's r_max: every Lu-177 electron stops within it (CSDA range 1.75 mm)
_SPLAT_POINTS_PER_AREA = 8.0      # points per h_min² of sphere area
_SPLAT_MIN_POINTS = 256
_SPLAT_MAX_POINTS = 2**16        # per shell; reached only below ~0.15 mm voxels
_PHOTON_NEAR_FACTOR = (3.0, 6.0)  # photon taper from r1 = 3 h_max to r2 = 6 h_max
_PHOTON_SHELLS_PER_VOXEL = 32.0
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


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
    if not all(MIN_VOXEL_MM <= v <= MAX_VOXEL_MM for v in vals):
        raise PhysicsError(f"{what} = {vals} mm is outside the supported {MIN_VOXEL_MM:g}–{MAX_VOXEL_MM:g} mm per axis "
                           "(SPECT voxels are 2–10 mm): check the image spacing and its unit (mm)")
    return vals


def check_kernel_size(half_width: tuple[int, int, int], what: str = "Lu-177 kernel") -> None:
    """Refuse a kernel box of more than MAX_KERNEL_VOXELS voxels before anything is allocated."""
    n_voxels = math.prod(2 * n + 1 for n in half_width)
    if n_voxels > MAX_KERNEL_VOXELS:
        shape = tuple(2 * n + 1 for n in reversed(half_width))
        raise PhysicsError(f"{what}: a box of {shape} voxels ({n_voxels * 8 / 2**30:.1f} GiB per array) exceeds the "
                           f"limit of {MAX_KERNEL_VOXELS} voxels; use a smaller photon_radius_mm or larger voxels")


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


def planned_half_width(voxel_mm: tuple[float, float, float], photon_radius_mm: float) -> tuple[int, int, int]:
    """An upper bound of the kernel half-widths (x, y, z) for a request, known before any computation."""
    reach_mm = max(_ELECTRON_REACH_MM, _PHOTON_NEAR_FACTOR[1] * max(voxel_mm))
    return tuple(max(a, int(math.ceil(photon_radius_mm / h)))
                 for a, h in zip(_half_widths(voxel_mm, reach_mm), voxel_mm, strict=True))


def compute_lu177_kernel_parts(voxel_size_mm, *, density_g_per_cm3: float = 1.0,
                               photon_radius_mm: float = DEFAULT_PHOTON_RADIUS_MM,
                               n_histories: int = DPK_HISTORIES, seed: int = DPK_SEED,
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
    check_kernel_size(planned_half_width(vox_mm, photon_radius_mm))
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
    check_kernel_size(half)
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


def default_photon_radius_mm(voxel_mm: tuple[float, float, float]) -> float:
    """100 mm, but at most 64 voxels along the finest axis (keeps fine-voxel kernels small)."""
    return min(DEFAULT_PHOTON_RADIUS_MM, _MAX_DEFAULT_PHOTON_HALF_WIDTH * min(voxel_mm))

