"""Absorbed-dose-rate maps (Gy/h) from quantitative SPECT activity images (Bq/mL).

Methods:

- ``"kernel"`` (default): dose-voxel-kernel convolution, Ḋ = Σ_m Ã_m K(n − m). The activity per
  voxel in MBq (Bq/mL × voxel volume × 1e-6) times K in mGy/(MBq·s) gives mGy/s; × 3.6 gives Gy/h.
  Our Lu-177 kernel for the image's voxel size is used unless ``kernel`` is given (see
  :mod:`kernels`); photons are included by default.
- ``"led"``: local energy deposition of the electrons, Ḋ = C · E_e / ρ with E_e = 0.147923 MeV
  (ICRP-107 β⁻ + conversion + Auger electrons) — exact in the interior of uniform regions larger
  than the electron range. Photons are optional (``include_photons=True``): the photon part of our
  kernel is then convolved and added.

Density: pass a CT (HU; resampled onto the SPECT grid with a configurable bilinear HU→density
calibration, see :mod:`density`) or a density image (g/cm³ or kg/m³, on the SPECT grid), and its
unit: ``density_unit`` ("hu", "g_per_cm3", "kg_per_m3"; "auto" only where the values are
unambiguous) or ``density_metadata`` (the DICOM reader's :class:`SeriesMetadata` of the CT, whose
units are "hu" once the modality rescale is applied). The unit is checked against the values and
never guessed (see :mod:`density`); the density is computed before the convolution, so a wrong
unit fails at once. The dose rate is scaled by ρ_water/ρ_local (water-kernel energy, local mass). Densities below
``min_density_g_per_cm3`` (default 0.1 g/cm³: air, and lung below about −900 HU) are raised to it,
so air does not blow up; there the dose rate is not a meaningful absorbed dose.

Negative activity (reconstruction noise): ``negative_activity="clip"`` (default) sets negative
voxels to 0, ``"keep"`` convolves them as they are (unbiased for means over regions, since the
convolution is linear), ``"error"`` refuses them. Each case logs and warns with the count. An
image whose negative total exceeds 10 % of its positive total is refused in any case: that is not
reconstruction noise. NaN or infinite activity is always an error, and so is a dose rate that is
not finite in the output dtype (e.g. 1e38 Bq/mL overflows float32): the result is checked.

The FFT convolution is zero-padded (nothing wraps around), runs in float32 unless
``dtype=np.float64``, keeps the kernel spectrum and its work buffer for the next time point on the
same grid, and works in blocks: peak memory is about 3× the input array (float32), of which
~1.7× stays allocated between calls until :func:`~LuDoseResponseLib.physics.convolution.clear_convolver_cache`;
a density image adds 1× (the density on the grid, float32).

``backend="cupy"`` runs the convolution's FFTs on a CUDA GPU where CuPy is installed (optional, see
:mod:`~LuDoseResponseLib.physics.convolution_gpu`): the same padded convolution, equal to the CPU result
within float32 rounding. ``"cpu"`` (default) is what the tests check; without CuPy or a GPU, "cupy" is an
InputError saying so.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import DataQualityWarning, GeometryError, InputError, PhysicsError
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.physics.convolution import cached_convolver
from LuDoseResponseLib.physics.convolution_gpu import check_backend
from LuDoseResponseLib.physics.density import HuDensityCalibration, density_on_grid
from LuDoseResponseLib.physics.kernels import VoxelKernel, lu177_kernel
from LuDoseResponseLib.physics.nuclides import MEV_TO_J, lu177

log = logging.getLogger(__name__)

METHODS = ("kernel", "led")
NEGATIVE_POLICIES = ("clip", "keep", "error")
WATER_DENSITY_G_PER_CM3 = 1.0
DEFAULT_MIN_DENSITY_G_PER_CM3 = 0.1
MAX_NEGATIVE_SHARE = 0.10
MGY_PER_S_TO_GY_PER_H = 3.6
_KERNEL_SPACING_RTOL_ERROR = 0.01
_KERNEL_SPACING_RTOL_WARN = 1e-3


def led_gy_per_h_per_bq_per_ml(density_g_per_cm3: float = WATER_DENSITY_G_PER_CM3) -> float:
    """Local-deposition dose rate (Gy/h) per Bq/mL: E_e [J] / (ρ [g/mL] · 1e-3 kg/g) · 3600 s/h."""
    return lu177().electron_energy_mev * MEV_TO_J / (density_g_per_cm3 * 1e-3) * 3600.0


def _check_image(image: sitk.Image) -> None:
    if not isinstance(image, sitk.Image):
        raise InputError(f"activity_bq_per_ml must be a SimpleITK image, got {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"activity image must be a scalar 3-D image (Bq/mL), got dimension "
                         f"{image.GetDimension()} with {image.GetNumberOfComponentsPerPixel()} components")
    spacing = image.GetSpacing()
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(f"activity image spacing must be positive and finite, got {spacing} mm")
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.allclose(d @ d.T, np.eye(3), atol=1e-4):
        raise GeometryError("activity image direction matrix is not orthonormal; kernels assume orthogonal "
                            "voxel axes: resample the image onto an orthogonal grid first")


def _activity_stats(view: np.ndarray, block: int = 16) -> tuple[int, int, float, float]:
    """(non-finite count, negative count, negative sum, positive sum), one block of slices at a time."""
    n_bad = n_neg = 0
    s_neg = s_pos = 0.0
    for z0 in range(0, view.shape[0], block):
        b = np.asarray(view[z0:z0 + block], dtype=np.float64)
        finite = np.isfinite(b)
        n_bad += int(b.size - np.count_nonzero(finite))
        neg = b < 0
        n_neg += int(np.count_nonzero(neg))
        s_neg += float(b[neg].sum())
        s_pos += float(b[b > 0].sum())
    return n_bad, n_neg, s_neg, s_pos


def _negative_transform(view: np.ndarray, policy: str) -> Callable[[np.ndarray], np.ndarray] | None:
    if policy not in NEGATIVE_POLICIES:
        raise InputError(f"negative_activity must be one of {NEGATIVE_POLICIES}, got {policy!r}")
    lo, hi = float(np.min(view)), float(np.max(view))       # NaN propagates through min and max
    if math.isfinite(lo) and math.isfinite(hi) and lo >= 0:
        return None
    n_bad, n_neg, s_neg, s_pos = _activity_stats(view)
    if n_bad:
        raise PhysicsError(f"activity image has {n_bad} NaN or infinite voxels; fill them (e.g. with 0) "
                           "before computing dose rates")
    if n_neg == 0:
        return None
    share = -s_neg / s_pos if s_pos > 0 else math.inf
    what = (f"activity image has {n_neg} negative voxels ({100 * n_neg / view.size:.2f} %), summing to "
            f"{100 * share:.2f} % of the positive activity")
    if share > MAX_NEGATIVE_SHARE:
        raise PhysicsError(f"{what}: more than {100 * MAX_NEGATIVE_SHARE:.0f} % is not reconstruction noise; "
                           "check that the image is an activity concentration in Bq/mL")
    if policy == "error":
        raise PhysicsError(f"{what}; pass negative_activity='clip' or 'keep' to accept reconstruction noise")
    msg = f"{what}; " + ("they are set to 0 (negative_activity='clip')" if policy == "clip"
                         else "they are kept (negative_activity='keep'): the dose rate can be negative there")
    warnings.warn(msg, DataQualityWarning, stacklevel=3)
    if policy == "clip":
        return lambda b: np.maximum(b, 0)          # a new array: the input image is never changed
    return None


def _kernel_for(image: sitk.Image, kernel: VoxelKernel | None, photon_radius_mm: float | None) -> VoxelKernel:
    spacing = image.GetSpacing()
    if kernel is None:
        return lu177_kernel(spacing, photon_radius_mm=photon_radius_mm)
    if not isinstance(kernel, VoxelKernel):
        raise InputError(f"kernel must be a VoxelKernel (see kernel_files.load_lanconelli_kernel / load_raw_kernel), "
                         f"got {type(kernel).__name__}")
    rel = max(abs(a - b) / b for a, b in zip(kernel.voxel_size_mm, spacing, strict=True))
    if rel > _KERNEL_SPACING_RTOL_ERROR:
        raise GeometryError(f"kernel from {kernel.source} has voxel size {kernel.voxel_size_mm} mm but the activity "
                            f"image spacing is {spacing} mm; use lu177_kernel(spacing) or resample the image")
    if rel > _KERNEL_SPACING_RTOL_WARN:
        msg = (f"kernel voxel size {kernel.voxel_size_mm} mm differs from the image spacing {spacing} mm by "
               f"{100 * rel:.2f} %")
        warnings.warn(msg, DataQualityWarning, stacklevel=3)
    return kernel


def density_unit_from_metadata(metadata: SeriesMetadata) -> str:
    """The density unit of a series from what the DICOM reader found: "hu" for a CT whose pixel values
    are Hounsfield units (Modality CT with a usable RescaleSlope/RescaleIntercept), else InputError."""
    if not isinstance(metadata, SeriesMetadata):
        raise InputError(f"density_metadata must be the SeriesMetadata of the CT series, got {type(metadata).__name__}")
    if metadata.units == "hu":
        return "hu"
    modality = metadata.modality or "unknown"
    raise InputError(f"density series {metadata.path} (modality {modality}, units {metadata.units!r}) is not a CT in "
                     "Hounsfield units (modality CT with a usable rescale); pass density_unit for a density image")


def _density_unit(density_unit: str | None, density_metadata: SeriesMetadata | None) -> str | None:
    if density_metadata is None:
        return density_unit
    from_meta = density_unit_from_metadata(density_metadata)
    if density_unit not in (None, from_meta):
        raise InputError(f"density_unit={density_unit!r} contradicts the density series {density_metadata.path}, "
                         f"whose DICOM header says {from_meta!r}")
    return from_meta


def _check_finite_output(out: np.ndarray, activity: np.ndarray) -> None:
    """A dose-rate map must be finite: overflow in the output dtype is an error, never NaN voxels."""
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        peak_bq_per_ml = max(abs(float(np.min(activity))), abs(float(np.max(activity))))
        raise PhysicsError(f"the dose-rate map has {bad} non-finite voxels: the activity (up to {peak_bq_per_ml:.3g} "
                           f"Bq/mL) gives dose rates beyond the range of {out.dtype} (max "
                           f"{float(np.finfo(out.dtype).max):.3g}); check that the image is an activity concentration "
                           "in Bq/mL (a physical one is below ~1e9 Bq/mL), or pass dtype=np.float64")


def dose_rate_map(activity_bq_per_ml: sitk.Image, method: str = "kernel", density: sitk.Image | None = None, *,
                  density_unit: str | None = None, density_metadata: SeriesMetadata | None = None,
                  hu_calibration: HuDensityCalibration | None = None,
                  include_photons: bool | None = None, kernel: VoxelKernel | None = None,
                  photon_radius_mm: float | None = None, dtype=np.float32, negative_activity: str = "clip",
                  min_density_g_per_cm3: float = DEFAULT_MIN_DENSITY_G_PER_CM3, workers: int | None = None,
                  progress: Callable[[float], None] | None = None, backend: str = "cpu") -> sitk.Image:
    """Absorbed-dose-rate map in Gy/h on the activity image's grid (same origin, spacing, direction).

    ``activity_bq_per_ml``: quantitative SPECT, Bq/mL. ``method``: "kernel" or "led".
    ``density``: optional CT (HU) or density image (g/cm³, kg/m³); its unit is required, from
    ``density_unit`` ("hu", "g_per_cm3", "kg_per_m3", or "auto" where unambiguous) or from
    ``density_metadata`` (the CT's SeriesMetadata). ``include_photons``: default True for "kernel", False for "led".
    ``kernel``: an external :class:`VoxelKernel` with the image's voxel size (default: ours).
    ``backend``: "cpu" (default) or "cupy" (the FFTs on a CUDA GPU; needs CuPy).
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    check_backend(backend)
    _check_image(activity_bq_per_ml)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"dtype must be float32 or float64, got {dtype}")
    if not (math.isfinite(min_density_g_per_cm3) and min_density_g_per_cm3 > 0):
        raise InputError(f"min_density_g_per_cm3 must be positive, got {min_density_g_per_cm3!r}")
    if method == "led" and kernel is not None:
        raise InputError("kernel applies to method='kernel'; method='led' deposits the electron energy locally "
                         "(and, with include_photons=True, convolves the photon part of our kernel)")
    photons = (method == "kernel") if include_photons is None else bool(include_photons)
    view = sitk.GetArrayViewFromImage(activity_bq_per_ml)
    clip = _negative_transform(view, negative_activity)
    rho = None
    if density is not None:        # first: a wrong density unit fails before the convolution
        rho = density_on_grid(density, activity_bq_per_ml, unit=_density_unit(density_unit, density_metadata),
                              calibration=hu_calibration, what="density image")
    spacing = activity_bq_per_ml.GetSpacing()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    kernel_scale = voxel_ml * 1e-6 * MGY_PER_S_TO_GY_PER_H      # Bq/mL → MBq per voxel; mGy/s → Gy/h

    if method == "kernel":
        k = _kernel_for(activity_bq_per_ml, kernel, photon_radius_mm)
        if photons:
            values = k.values
        elif k.photon_values is not None:
            values = k.values - k.photon_values
        else:
            raise InputError(f"include_photons=False needs a kernel with a separate photon part; the kernel from "
                             f"{k.source} has none")
        conv = cached_convolver(values, view.shape, dtype=dtype, workers=workers, backend=backend)
        out = conv(view, scale=kernel_scale, transform=clip, progress=progress)
    else:
        out = np.empty(view.shape, dtype=dtype)
        factor = led_gy_per_h_per_bq_per_ml(WATER_DENSITY_G_PER_CM3)
        for z0 in range(0, view.shape[0], 16):
            b = np.asarray(view[z0:z0 + 16], dtype=dtype)
            if clip is not None:
                b = clip(b)
            out[z0:z0 + 16] = b * factor
        if photons:
            ph = lu177_kernel(spacing, photon_radius_mm=photon_radius_mm).photon_values
            conv = cached_convolver(ph, view.shape, dtype=dtype, workers=workers, backend=backend)
            out += conv(view, scale=kernel_scale, transform=clip, progress=progress)

    _check_finite_output(out, view)
    if rho is not None:
        low = rho < min_density_g_per_cm3
        if np.any(low):
            log.info("%d voxels below %.3g g/cm3 (air or lung) are raised to it for the density scaling",
                     int(np.count_nonzero(low)), min_density_g_per_cm3)
        np.maximum(rho, min_density_g_per_cm3, out=rho)
        out *= (WATER_DENSITY_G_PER_CM3 / rho).astype(dtype, copy=False)
        del rho
    img = sitk.GetImageFromArray(out)
    del out
    img.CopyInformation(activity_bq_per_ml)
    return img
