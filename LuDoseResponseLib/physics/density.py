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
an error. A density image (g/cm³ or kg/m³) must already be on the SPECT grid.

The unit is never guessed. The caller states it (``unit="hu"``, ``"g_per_cm3"`` or
``"kg_per_m3"``; from a DICOM series use the reader's units, which are "hu" for a CT with its
modality rescale applied), and every unit is checked against what it implies:

- HU: not a density map (all values within 0–3.5, some above 0.2: g/cm³; a real CT has air at −1000), not
  stored values without the rescale (no air below −200 HU and ≥ 10 % of voxels at 824–1224: water
  before RescaleIntercept −1024; kg/m³ look the same). A CT with little tissue (< 1 % of voxels above
  −500 HU) or without a soft-tissue peak (< 5 % of voxels within ±150 HU) gives a warning.
- density: no negative values, at most 1 % of voxels above 3.0 g/cm³ (denser than cortical bone:
  HU or kg/m³), at least one voxel above 0.05 g/cm³ (an all-air or all-zero image is a CT in HU of
  water, or empty). A most common tissue density (voxels above 0.2 g/cm³) outside 0.8–1.3 gives a
  warning.

A stated unit that fails a check is a :class:`PhysicsError` that says which unit the values look
like. ``unit="auto"`` is accepted only when exactly one reading (HU or g/cm³) passes every check
and warning test; the decision and its evidence are logged. Otherwise it is an :class:`InputError`
asking for the unit.
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
DENSITY_UNITS = ("hu", "g_per_cm3", "kg_per_m3", "auto")
MAX_TISSUE_DENSITY_G_PER_CM3 = 3.0      # above cortical bone (1.92) with margin; metal may fill ≤ 1 % of voxels
_MAX_DENSE_SHARE = 0.01
_MIN_MATTER_G_PER_CM3 = 0.05
_WATER_PEAK_HU = 150.0
_UNRESCALED_WATER_HU = (824.0, 1224.0)   # water at +1024 before RescaleIntercept = −1024
_SAMPLE_VOXELS = 2_000_000


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


def _sample(values: np.ndarray) -> np.ndarray:
    """A regular sub-sample of at most ~2 million voxels (float64, flat) for the unit checks."""
    step = max(1, int(math.ceil((values.size / _SAMPLE_VOXELS) ** (1.0 / 3.0)))) if values.ndim == 3 else 1
    sub = values[::step, ::step, ::step] if values.ndim == 3 else values
    return np.asarray(sub, dtype=np.float64).ravel()


def _mode(values: np.ndarray, bin_width: float) -> float:
    """The most common value, in bins of ``bin_width`` centred on its multiples."""
    index = np.rint(values / bin_width).astype(np.int64)
    lo = int(index.min())
    return (lo + int(np.argmax(np.bincount(index - lo)))) * bin_width


def hu_problems(values: np.ndarray) -> tuple[list[str], list[str]]:
    """(errors, doubts) of reading ``values`` as CT numbers (HU); see the module docstring."""
    v = _sample(values)
    errors, doubts = [], []
    lo, hi = float(v.min()), float(v.max())
    if lo >= 0.0 and 0.2 < hi <= 3.5:
        errors.append(f"all its values lie in {lo:.3g}..{hi:.3g}: that is a density map in g/cm3, not CT numbers "
                      "(air is -1000 HU, water 0)")
    unrescaled = float(np.mean((v >= _UNRESCALED_WATER_HU[0]) & (v <= _UNRESCALED_WATER_HU[1])))
    if lo >= -200.0 and unrescaled >= 0.10:
        errors.append(f"no voxel lies below -200 HU (no air, no lung) and {100 * unrescaled:.0f} % lie near +1024: "
                      "these are stored values without the modality rescale (water at +1024 instead of 0; apply "
                      "RescaleSlope/RescaleIntercept, e.g. read the series with io.dicom) or a density in kg/m3")
    if errors:
        return errors, doubts
    body = float(np.mean(v > -500.0))
    water = float(np.mean(np.abs(v) <= _WATER_PEAK_HU))
    if body < 0.01:
        doubts.append(f"only {100 * body:.2g} % of its voxels lie above -500 HU: the CT holds almost no tissue")
    if water < 0.05:
        doubts.append(f"only {100 * water:.2g} % of its voxels lie within ±{_WATER_PEAK_HU:.0f} HU: no soft-tissue "
                      "peak near 0 HU")
    return errors, doubts


def density_problems(values_g_per_cm3: np.ndarray) -> tuple[list[str], list[str]]:
    """(errors, doubts) of reading values as mass density in g/cm³; see the module docstring."""
    v = _sample(values_g_per_cm3)
    errors, doubts = [], []
    lo, hi = float(v.min()), float(v.max())
    if lo < 0.0:
        errors.append(f"it has negative densities (min {lo:.4g} g/cm3): CT numbers in HU are negative in air and lung")
    dense = float(np.mean(v > MAX_TISSUE_DENSITY_G_PER_CM3))
    if dense > _MAX_DENSE_SHARE:
        errors.append(f"{100 * dense:.3g} % of its voxels lie above {MAX_TISSUE_DENSITY_G_PER_CM3:g} g/cm3 (max "
                      f"{hi:.4g}), denser than any tissue: CT numbers in HU, or a density in kg/m3")
    if hi < _MIN_MATTER_G_PER_CM3:
        errors.append(f"no voxel lies above {_MIN_MATTER_G_PER_CM3:g} g/cm3 (max {hi:.4g}): an empty image, or a CT "
                      "in HU of water (0 HU)")
    if errors:
        return errors, doubts
    tissue = v[v > 0.2]
    mode = _mode(tissue, 0.02) if tissue.size else math.nan
    if not (0.8 <= mode <= 1.3):
        doubts.append(f"its most common tissue density is {mode:.3g} g/cm3, not near 1 (soft tissue)")
    return errors, doubts


_HOW = ("state the unit: density_unit='hu' for a CT in Hounsfield units (the DICOM reader's units 'hu'), "
        "'g_per_cm3' or 'kg_per_m3' for a mass-density image")


def resolve_density_unit(image: sitk.Image, unit: str | None, what: str = "density image") -> str:
    """The checked unit of ``image``: "hu", "g_per_cm3" or "kg_per_m3" (see the module docstring).

    A stated unit whose implications the values contradict is a PhysicsError; "auto" resolves
    only when exactly one reading passes every check (logged with the evidence), else InputError.
    Doubts about a stated unit are warned (DataQualityWarning).
    """
    if unit is None:
        raise InputError(f"{what}: the unit of the density image is not stated; {_HOW}")
    if unit not in DENSITY_UNITS:
        raise InputError(f"{what}: density_unit must be one of {DENSITY_UNITS}, got {unit!r}")
    view = sitk.GetArrayViewFromImage(image)
    if unit == "auto":
        hu_err, hu_doubt = hu_problems(view)
        rho_err, rho_doubt = density_problems(view)
        hu_ok, rho_ok = not (hu_err or hu_doubt), not (rho_err or rho_doubt)
        if hu_ok != rho_ok:
            chosen = "hu" if hu_ok else "g_per_cm3"
            reason = "; ".join(rho_err + rho_doubt if hu_ok else hu_err + hu_doubt)
            log.info("%s: density_unit='auto' resolved to %r: that reading passes every check, the other fails (%s)",
                     what, chosen, reason)
            return chosen
        detail = ("both readings are plausible" if hu_ok else
                  "as HU: " + "; ".join(hu_err + hu_doubt) + "; as g/cm3: " + "; ".join(rho_err + rho_doubt))
        raise InputError(f"{what}: density_unit='auto' cannot tell the unit from the values ({detail}); {_HOW}")
    if unit == "hu":
        errors, doubts = hu_problems(view)
    else:
        scale = 1e-3 if unit == "kg_per_m3" else 1.0
        errors, doubts = density_problems(np.asarray(_sample(view)) * scale)
    if errors:
        raise PhysicsError(f"{what} is stated to be in {unit!r}, but " + "; ".join(errors)
                           + f". Correct the image or density_unit ({_HOW})")
    for doubt in doubts:
        warnings.warn(f"{what} ({unit}): {doubt}; check the image and density_unit", DataQualityWarning, stacklevel=3)
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


def density_on_grid(image: sitk.Image, reference: sitk.Image, *, unit: str | None,
                    calibration: HuDensityCalibration | None = None, what: str = "density image") -> np.ndarray:
    """Mass density (g/cm³, float32, [z, y, x]) on ``reference``'s grid from a CT or a density image.

    ``unit``: "hu" (CT numbers, resampled onto the grid as needed), "g_per_cm3" or "kg_per_m3"
    (must be on the grid), or "auto" (only where unambiguous); checked by :func:`resolve_density_unit`.
    """
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
    unit = resolve_density_unit(image, unit, what)
    if unit in ("g_per_cm3", "kg_per_m3"):
        if not same_grid(image, reference):
            raise GeometryError(f"{what} ({unit}) is not on the activity image's grid: size {image.GetSize()} vs "
                                f"{reference.GetSize()}, spacing {image.GetSpacing()} vs {reference.GetSpacing()}, "
                                f"origin {image.GetOrigin()} vs {reference.GetOrigin()}; resample it onto the "
                                "SPECT grid, or pass the CT in HU, which is resampled automatically")
        rho = np.array(view, dtype=np.float32)
        if unit == "kg_per_m3":
            rho *= np.float32(1e-3)
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
