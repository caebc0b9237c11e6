"""Mass density on the SPECT grid, from a CT (HU) or a density image (g/cm³).

CT numbers convert with a piecewise-linear ("bilinear") calibration. The default has two lines:

- air–water, HU ≤ 0: ρ = ρ_air + (1 − ρ_air)(HU + 1000)/1000, which follows from the definition
  of the Hounsfield scale for air–water mixtures (ρ_air = 0.001205 g/cm³, ICRU Report 46);
- bone, HU > 0: a line from water (0 HU, 1.000) through ICRU-44 cortical bone (1.92 g/cm³) put at
  +1530 HU, i.e. a slope of 6.0e-4 g/cm³ per HU, typical of 120-kVp scanners (the two-segment form
  of Schneider U, Pedroni E, Lomax A, Phys Med Biol 1996;41:111). Above +1530 HU it extrapolates.

This default is generic: for quantitative work pass a :class:`HuDensityCalibration` measured on
your scanner with a density phantom.

A CT on another grid is first smoothed to the SPECT voxel size (a Gaussian whose variance is the
difference of the box variances, h²/12) and then resampled linearly onto the SPECT grid. SPECT
voxels outside the CT get water (1.0 g/cm³) with a warning; a CT that does not overlap the SPECT is
an error. A density image (g/cm³) must already be on the SPECT grid.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import DataQualityWarning, GeometryError, InputError, PhysicsError
from LuDoseResponseLib.imaging import overlap_fraction, same_grid

log = logging.getLogger(__name__)

WATER_DENSITY_G_PER_CM3 = 1.0
AIR_DENSITY_G_PER_CM3 = 0.001205
DENSITY_UNITS = ("auto", "hu", "g_per_cm3")
_MAX_PLAUSIBLE_DENSITY = 25.0      # g/cm³; a "density" image with larger values is taken as HU in auto mode


@dataclass(frozen=True)
class HuDensityCalibration:
    """Piecewise-linear CT number → mass density; linear extrapolation above the last point, clamp below."""

    hu: tuple[float, ...] = (-1000.0, 0.0, 1530.0)
    density_g_per_cm3: tuple[float, ...] = (AIR_DENSITY_G_PER_CM3, 1.0, 1.92)
    name: str = "generic bilinear (air-water line; bone line 6.0e-4 g/cm3 per HU)"

    def __post_init__(self):
        hu = np.asarray(self.hu, dtype=float)
        rho = np.asarray(self.density_g_per_cm3, dtype=float)
        if hu.ndim != 1 or hu.size < 2 or hu.size != rho.size:
            raise InputError("HU calibration needs at least two (HU, density) points of equal count")
        if not (np.all(np.isfinite(hu)) and np.all(np.isfinite(rho))):
            raise InputError("HU calibration points must be finite")
        if np.any(np.diff(hu) <= 0):
            raise InputError(f"HU calibration points must increase strictly, got {tuple(hu)}")
        if np.any(rho <= 0) or np.any(np.diff(rho) < 0):
            raise InputError(f"HU calibration densities must be positive and non-decreasing, got {tuple(rho)}")

    def to_density(self, hu) -> np.ndarray:
        """Density in g/cm³ for CT numbers ``hu`` (float32 array)."""
        x = np.asarray(hu, dtype=np.float32)
        xp = np.asarray(self.hu, dtype=np.float32)
        fp = np.asarray(self.density_g_per_cm3, dtype=np.float32)
        rho = np.interp(x, xp, fp).astype(np.float32)
        slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        above = x > xp[-1]
        if np.any(above):
            rho[above] = fp[-1] + slope * (x[above] - xp[-1])
        return rho

    def to_dict(self) -> dict:
        return {"name": self.name, "hu": [float(v) for v in self.hu],
                "density_g_per_cm3": [float(v) for v in self.density_g_per_cm3]}


def _guess_unit(values: np.ndarray, what: str) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    unit = "hu" if (lo < 0.0 or hi > _MAX_PLAUSIBLE_DENSITY) else "g_per_cm3"
    log.info("%s: values %.4g..%.4g read as %s (pass density_unit to override)", what, lo, hi,
             "CT numbers (HU)" if unit == "hu" else "mass density (g/cm3)")
    return unit


def _smooth_to(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Gaussian pre-filter so that linear resampling approximates averaging over the reference voxel."""
    h_in = np.array(image.GetSpacing())
    h_ref = np.array(reference.GetSpacing())
    if np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-4):
        var = np.clip(h_ref**2 - h_in**2, 0.0, None) / 12.0
    else:   # rotated grids: an isotropic filter at the mean reference voxel size
        var = np.full(3, max(float(np.mean(h_ref)) ** 2 - float(np.min(h_in)) ** 2, 0.0) / 12.0)
    if np.all(var <= 0):
        return image
    return sitk.DiscreteGaussian(image, variance=[float(v) for v in var], maximumKernelWidth=64,
                                 useImageSpacing=True)


def density_on_grid(image: sitk.Image, reference: sitk.Image, *, unit: str = "auto",
                    calibration: HuDensityCalibration | None = None, what: str = "density image") -> np.ndarray:
    """Mass density (g/cm³, float32, [z, y, x]) on ``reference``'s grid from a CT or a density image.

    ``unit``: "hu" (CT numbers, resampled onto the grid as needed), "g_per_cm3" (must be on the grid),
    or "auto" (HU if any value is negative or above 25).
    """
    if unit not in DENSITY_UNITS:
        raise InputError(f"density_unit must be one of {DENSITY_UNITS}, got {unit!r}")
    if not isinstance(image, sitk.Image):
        raise InputError(f"{what} must be a SimpleITK image (a CT in HU or a density map in g/cm3), "
                         f"got {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} must be a scalar 3-D image, got dimension {image.GetDimension()} with "
                         f"{image.GetNumberOfComponentsPerPixel()} components")
    view = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(view)):
        raise PhysicsError(f"{what} contains {int(np.count_nonzero(~np.isfinite(view)))} NaN or infinite voxels; "
                           "fill them (e.g. with air) before the dose calculation")
    if unit == "auto":
        unit = _guess_unit(view, what)
    if unit == "g_per_cm3":
        if not same_grid(image, reference):
            raise GeometryError(f"{what} (g/cm3) is not on the activity image's grid: size {image.GetSize()} vs "
                                f"{reference.GetSize()}, spacing {image.GetSpacing()} vs {reference.GetSpacing()}, "
                                f"origin {image.GetOrigin()} vs {reference.GetOrigin()}; resample it onto the "
                                "SPECT grid, or pass the CT in HU, which is resampled automatically")
        rho = np.array(view, dtype=np.float32)
        if np.any(rho < 0):
            raise PhysicsError(f"{what} has negative densities (min {float(rho.min()):.4g} g/cm3); if it is a CT in HU "
                               "pass density_unit='hu'")
        return rho
    cal = calibration or HuDensityCalibration()
    if same_grid(image, reference):
        return cal.to_density(view)
    frac = overlap_fraction(reference, image)
    if frac <= 0.0:
        lo, hi = image.GetOrigin(), reference.GetOrigin()
        raise GeometryError(f"the CT does not overlap the activity image (CT origin {lo}, size {image.GetSize()}; "
                            f"SPECT origin {hi}, size {reference.GetSize()}): check that both come from the same "
                            "SPECT/CT study and frame of reference")
    rho_img = sitk.GetImageFromArray(cal.to_density(view))
    rho_img.CopyInformation(image)
    rho_img = _smooth_to(rho_img, reference)
    resampled = sitk.Resample(rho_img, reference, sitk.Transform(), sitk.sitkLinear, math.nan, sitk.sitkFloat32)
    rho = sitk.GetArrayFromImage(resampled)
    outside = ~np.isfinite(rho)
    if np.any(outside):
        share = float(np.mean(outside))
        msg = (f"{100 * share:.1f} % of the activity image lies outside the CT; water density "
               f"({WATER_DENSITY_G_PER_CM3} g/cm3) is used there")
        warnings.warn(msg, DataQualityWarning, stacklevel=2)
        rho[outside] = WATER_DENSITY_G_PER_CM3
    return rho
