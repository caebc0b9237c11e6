"""The system point-spread function (PSF) as a Gaussian on the image grid, isotropic or anisotropic.

Convention (the same as ``scipy.ndimage.gaussian_filter`` and ITK's Gaussian filters): a voxel value
is a sample of the activity concentration at the voxel centre, and blurring is the discrete
convolution with the Gaussian sampled at voxel-centre offsets, normalised to unit sum (so total
counts are conserved) and truncated at 5 σ. Activity outside the field of view is zero.
An anisotropic FWHM (x, y, z) is along the image axes i, j, k (for an axial SPECT grid:
transaxial, transaxial, axial).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from LuDoseResponseLib.errors import PhysicsError

#: σ = FWHM / (2√(2 ln 2))
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TRUNCATE_SIGMA = 5.0


def fwhm_xyz_mm(fwhm_mm: float | Sequence[float], what: str = "PSF") -> tuple[float, float, float]:
    """``fwhm_mm`` (a number, or an (x, y, z) triple) as three finite, positive FWHMs in mm."""
    if isinstance(fwhm_mm, (str, bytes)):
        raise PhysicsError(f"{what}: fwhm_mm must be a number or an (x, y, z) triple in mm, got {fwhm_mm!r}")
    values = np.atleast_1d(np.asarray(fwhm_mm, dtype=object))
    if values.ndim != 1 or values.size not in (1, 3):
        raise PhysicsError(f"{what}: fwhm_mm must be a number or an (x, y, z) triple in mm, got {fwhm_mm!r}")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise PhysicsError(f"{what}: fwhm_mm must be numbers in mm, got {fwhm_mm!r}") from exc
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise PhysicsError(f"{what}: the PSF FWHM must be finite and > 0 mm, got {fwhm_mm!r}; give the system "
                           "resolution measured on reconstructed images (typically 8–15 mm for Lu-177)")
    return out * 3 if len(out) == 1 else out  # type: ignore[return-value]


def isotropic_fwhm_mm(fwhm_mm: float | Sequence[float], what: str = "PSF") -> float:
    """A single FWHM (mm); an (x, y, z) triple is accepted only when its three values are equal."""
    fx, fy, fz = fwhm_xyz_mm(fwhm_mm, what)
    if not (math.isclose(fx, fy, rel_tol=1e-9) and math.isclose(fx, fz, rel_tol=1e-9)):
        raise PhysicsError(f"{what}: needs an isotropic PSF, got fwhm_mm={fwhm_mm!r}; for an anisotropic PSF "
                           "use the numerical recovery coefficient (numerical_recovery_coefficient) or the GTM")
    return fx


def sigma_voxels_zyx(fwhm_mm: float | Sequence[float], spacing_xyz_mm: Sequence[float],
                     what: str = "PSF") -> tuple[float, float, float]:
    """Gaussian σ in voxels along the array axes [z, y, x]."""
    spacing = [float(s) for s in spacing_xyz_mm]
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise PhysicsError(f"{what}: voxel spacing must be three finite values > 0 mm, got {spacing_xyz_mm!r}")
    f = fwhm_xyz_mm(fwhm_mm, what)
    sx, sy, sz = (f[i] / FWHM_PER_SIGMA / spacing[i] for i in range(3))
    return sz, sy, sx


def margin_voxels_zyx(fwhm_mm, spacing_xyz_mm, n_sigma: float = _TRUNCATE_SIGMA) -> tuple[int, int, int]:
    """The kernel half-width in voxels [z, y, x]: beyond it the PSF is zero."""
    return tuple(int(math.ceil(n_sigma * s)) for s in sigma_voxels_zyx(fwhm_mm, spacing_xyz_mm))  # type: ignore


def blur(array_zyx: np.ndarray, spacing_xyz_mm: Sequence[float], fwhm_mm: float | Sequence[float]) -> np.ndarray:
    """The array convolved with the Gaussian PSF (zero outside the array; unit-sum kernel)."""
    a = np.asarray(array_zyx, dtype=float)
    sigma = sigma_voxels_zyx(fwhm_mm, spacing_xyz_mm)
    # a kernel wider than the array adds nothing inside it; capping keeps a huge FWHM cheap
    radius = [min(int(_TRUNCATE_SIGMA * s + 0.5), n) for s, n in zip(sigma, a.shape, strict=True)]
    return gaussian_filter(a, sigma=sigma, mode="constant", cval=0.0, radius=radius)
