"""Stage 1, physics: Lu-177 decay data and the dose-voxel kernels computed from it.

Inputs: the packaged ICRP-107 and NIST data (``data/``), a voxel size, a density.
Outputs: emission data and decay factors (:mod:`.nuclides`), the electron and photon
dose-point kernels (:mod:`.electron_transport`, :mod:`.photon_kernel`), dose-voxel kernels in
mGy/(MBq·s) (:mod:`.kernels`, the entry; computed in :mod:`.kernel_compute`, cached by
:mod:`.kernel_cache`, published ones read by :mod:`.kernel_files`), the FFT convolution engine
(:mod:`.convolution`) and mass density on a SPECT grid (:mod:`.density`). Imports nothing from a
later stage.
"""

from LuDoseResponseLib.physics.convolution import KernelConvolver, cached_convolver
from LuDoseResponseLib.physics.density import HuDensityCalibration, density_on_grid
from LuDoseResponseLib.physics.kernels import VoxelKernel, lu177_kernel, lu177_voxel_kernel
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H, Nuclide, decay_correct, decay_factor, lu177

__all__ = [
    "LU177_HALF_LIFE_H", "HuDensityCalibration", "KernelConvolver", "Nuclide", "VoxelKernel", "cached_convolver",
    "decay_correct", "decay_factor", "density_on_grid", "lu177", "lu177_kernel", "lu177_voxel_kernel",
]
