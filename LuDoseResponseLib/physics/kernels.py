"""Lu-177 dose-voxel kernels (DVK): the entry point.

:func:`lu177_voxel_kernel` (an array) and :func:`lu177_kernel` (a :class:`VoxelKernel`) give our
kernel in water for any voxel size, in mGy/(MBq·s), indexed [z, y, x] with the source voxel at
the centre. The computation is in :mod:`.kernel_compute` (method and references there), the disk
cache in :mod:`.kernel_cache`, and the loaders of published kernels (Lanconelli et al. 2012 text
tables, raw arrays) in :mod:`.kernel_files`. :func:`check_kernel_energy` checks any Lu-177 kernel
against the physical energy bounds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.errors import DataQualityWarning, InputError, PhysicsError
from LuDoseResponseLib.physics.kernel_cache import lu177_kernel_parts
from LuDoseResponseLib.physics.kernel_compute import (
    KERNEL_MODEL_VERSION,
    MEV_PER_G_TO_MGY_PER_MBQ_S,
    UNIT,
    voxel_size_xyz_mm,
)
from LuDoseResponseLib.physics.nuclides import lu177


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
