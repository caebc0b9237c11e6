"""Semi-automatic threshold segmentation of a tumour in a SPECT image, around a seed or inside a
CT-defined search region, with a comparison against the CT volume.

In the spirit of Gustafsson J, Sundlöv A, Sjögreen Gleisner K. EJNMMI Res 2017;7:18, who compared a
fixed 42 % threshold with methods that place the boundary from the image itself (Otsu; a Fourier
surface at maximal gradient), we implement:

- ``method='psf'`` (default): an adaptive threshold from a PSF model of a uniform object. A uniform
  sphere of radius R (concentration C, background B) blurred by the system's Gaussian PSF has the
  profile I(r) = B + (C − B)·P_in(r) (:func:`pvc.sphere_profile`), so its true surface lies at the
  level B + (C − B)·P_in(R). Starting at 50 % of the peak, the region is thresholded; its volume V
  and mean m give C − B = (m − B)/RC(V) (:func:`pvc.recovery_coefficient`) and so the next level;
  this repeats until the region stops changing (self-consistency). Taking C from the region's mean
  rather than from the peak voxel keeps the level free of the peak's noise bias. As a fraction of
  the peak above background, the level f = P_in(R)/P_in(0) is below 0.5 for large objects (surface
  curvature; f → 0.5 as V → ∞), lowest (≈ 0.38 at FWHM 10 mm) near 4–10 mL, and rises steeply for
  objects smaller than the FWHM (0.50 at 1 mL, 0.81 at 0.1 mL), as phantom studies of optimal
  thresholds find. The background B is, unless given, the median in a shell 2–3 FWHM outside the
  current region. An anisotropic PSF uses its geometric-mean FWHM.
- ``method='fixed'``: a fixed fraction of the peak (default 42 %, the FT of Gustafsson et al.)
  above the background (default 0: a plain fraction of the maximum).

The region is the connected component (face connectivity) holding the seed, or the peak voxel of
the search region. Not implemented: the Otsu and Fourier-surface methods of Gustafsson et al. The
model assumes a roughly spherical, uniform object; the volumes it recovers are validated on blurred
spheres (Testing/lib/test_segmentation.py states the accuracy).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import distance_transform_edt, label

from LuDoseResponseLib.dosimetry.psf import fwhm_xyz_mm
from LuDoseResponseLib.dosimetry.pvc import recovery_coefficient, sphere_profile, sphere_radius_mm
from LuDoseResponseLib.dosimetry.voi_masks import voi_masks
from LuDoseResponseLib.errors import GeometryError, InputError, PhysicsError
from LuDoseResponseLib.imaging import image_like, resample_to, voxel_volume_ml

log = logging.getLogger(__name__)

METHODS = ("psf", "fixed")
FIXED_FRACTION = 0.42
_START_FRACTION = 0.5
_SHELL_FWHM = (2.0, 3.0)


@dataclass(frozen=True)
class SpectSegmentation:
    """A segmented tumour: its mask on the SPECT grid, the threshold used and the CT comparison."""

    mask: sitk.Image
    method: str
    volume_ml: float
    mean_bq_per_ml: float
    peak_bq_per_ml: float
    background_bq_per_ml: float
    threshold_bq_per_ml: float
    threshold_fraction: float
    iterations: int
    converged: bool
    ct_volume_ml: float | None = None
    dice_with_ct: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def volume_ratio_to_ct(self) -> float | None:
        return None if self.ct_volume_ml is None else self.volume_ml / self.ct_volume_ml


def search_region_from_ct(ct_mask: sitk.Image, spect_image: sitk.Image, margin_mm: float = 10.0) -> sitk.Image:
    """The CT tumour mask on the SPECT grid (nearest neighbour), grown by ``margin_mm``: a search region."""
    if not (math.isfinite(margin_mm) and margin_mm >= 0):
        raise InputError(f"search region: margin_mm must be finite and >= 0, got {margin_mm!r}")
    if not np.any(sitk.GetArrayViewFromImage(ct_mask)):
        raise InputError("search region: the CT mask is empty")
    on_grid = sitk.GetArrayFromImage(resample_to(ct_mask, spect_image, interpolator=sitk.sitkNearestNeighbor)) != 0
    if not on_grid.any():
        raise GeometryError("search region: the CT mask lies outside the SPECT image (no voxel after resampling); "
                            "check the frames of reference")
    grown = distance_transform_edt(~on_grid, sampling=tuple(reversed(spect_image.GetSpacing()))) <= margin_mm
    return image_like(grown.astype(np.uint8), spect_image)


def segment_tumour(image_bq_per_ml: sitk.Image, *, psf_fwhm_mm: float | Sequence[float] | None = None,
                   seed_lps_mm: Sequence[float] | None = None, search_region: sitk.Image | None = None,
                   search_radius_mm: float = 60.0, method: str = "psf", fixed_fraction: float = FIXED_FRACTION,
                   background_bq_per_ml: float | str | None = None, ct_mask: sitk.Image | None = None,
                   volume_tolerance: float = 0.3, max_iterations: int = 30) -> SpectSegmentation:
    """Threshold segmentation of one tumour (see the module docstring).

    ``seed_lps_mm``: a point on the tumour (LPS, mm); ``search_region``: a binary mask on the image
    grid (e.g. :func:`search_region_from_ct`); at least one is needed. Without a region, the search is
    within ``search_radius_mm`` of the seed. ``background_bq_per_ml``: a number, ``'auto'`` (shell
    median), or None (``'auto'`` for ``psf``, 0 for ``fixed``). ``ct_mask``: the CT tumour mask on any
    grid, for the volume comparison (a ratio outside 1 ± ``volume_tolerance`` is warned).
    """
    if method not in METHODS:
        raise InputError(f"segmentation: method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "psf" and psf_fwhm_mm is None:
        raise InputError("segmentation: method 'psf' needs psf_fwhm_mm (the system resolution)")
    if method == "fixed" and not 0 < fixed_fraction < 1:
        raise InputError(f"segmentation: fixed_fraction must be in (0, 1), got {fixed_fraction!r}")
    fwhm = None if psf_fwhm_mm is None else float(np.cbrt(np.prod(fwhm_xyz_mm(psf_fwhm_mm, "segmentation"))))
    arr = sitk.GetArrayFromImage(image_bq_per_ml).astype(float)
    if not np.all(np.isfinite(arr)):
        raise PhysicsError("segmentation: the image contains NaN or infinite voxels")
    spacing_zyx = tuple(reversed(image_bq_per_ml.GetSpacing()))
    domain, seed = _domain(image_bq_per_ml, seed_lps_mm, search_region, search_radius_mm)
    peak = float(arr[domain].max())
    anchor = seed if seed is not None else np.unravel_index(int(np.argmax(np.where(domain, arr, -np.inf))), arr.shape)
    auto_bg = background_bq_per_ml == "auto" or (background_bq_per_ml is None and method == "psf")
    if auto_bg and fwhm is None:
        raise InputError("segmentation: an automatic background needs psf_fwhm_mm (the shell is 2–3 FWHM wide)")
    bg = 0.0 if auto_bg or background_bq_per_ml is None else _number(background_bq_per_ml, "background_bq_per_ml")
    if not peak > bg:
        raise InputError(f"segmentation: the peak ({peak:.4g} Bq/mL) is not above the background ({bg:.4g} Bq/mL); "
                         "there is no uptake to segment here")
    vox_ml = voxel_volume_ml(image_bq_per_ml)
    thr = bg + (fixed_fraction if method == "fixed" else _START_FRACTION) * (peak - bg)
    history: list[np.ndarray] = []
    converged, notes = False, []
    for it in range(1, max_iterations + 1):  # noqa: B007 (it is reported)
        seg, used = _component(arr >= thr, domain, anchor, thr, arr), thr
        if any(np.array_equal(seg, h) for h in history[-1:]):
            converged = True
            break
        if any(np.array_equal(seg, h) for h in history[:-1]):
            notes.append(f"segmentation: the threshold oscillates between regions (after {it} iterations); "
                         "the last one is kept")
            break
        history.append(seg)
        if auto_bg:
            bg = _shell_background(arr, seg, spacing_zyx, fwhm)
        thr = (_model_level(float(np.count_nonzero(seg) * vox_ml), float(arr[seg].mean()), bg, fwhm)
               if method == "psf" else bg + fixed_fraction * (peak - bg))
    else:
        notes.append(f"segmentation: not converged after {max_iterations} iterations")
    thr = used
    volume = float(np.count_nonzero(seg) * vox_ml)
    mean = float(arr[seg].mean())
    ct_volume, dice = _ct_comparison(ct_mask, image_bq_per_ml, seg)
    if ct_volume is not None and abs(volume / ct_volume - 1) > volume_tolerance:
        notes.append(f"segmentation: the SPECT volume {volume:.3g} mL differs from the CT volume {ct_volume:.3g} mL "
                     f"by {100 * (volume / ct_volume - 1):+.0f} % (tolerance ±{100 * volume_tolerance:.0f} %)")
    for w in notes:
        log.warning("%s", w)
    return SpectSegmentation(mask=image_like(seg.astype(np.uint8), image_bq_per_ml), method=method, volume_ml=volume,
                             mean_bq_per_ml=mean, peak_bq_per_ml=peak, background_bq_per_ml=bg,
                             threshold_bq_per_ml=float(thr), threshold_fraction=float((thr - bg) / (peak - bg)),
                             iterations=it, converged=converged, ct_volume_ml=ct_volume, dice_with_ct=dice,
                             warnings=notes)


def _model_level(volume_ml: float, mean: float, bg: float, fwhm: float) -> float:
    """B + (C − B)·P_in(R) with C − B = (mean − B)/RC(V): the surface level of the uniform sphere of this
    volume whose blurred mean over the sphere is the region's mean (the peak's noise plays no part)."""
    radius = float(sphere_radius_mm(volume_ml))
    return bg + (mean - bg) * float(sphere_profile(radius, radius, fwhm)) / float(recovery_coefficient(volume_ml, fwhm))


def _number(x, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"segmentation: {name} must be a number or 'auto', got {x!r}") from exc
    if not math.isfinite(v):
        raise InputError(f"segmentation: {name} must be finite, got {x!r}")
    return v


def _domain(image, seed_lps_mm, search_region, search_radius_mm):
    shape = tuple(reversed(image.GetSize()))
    seed = None
    if seed_lps_mm is not None:
        idx = image.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in seed_lps_mm))
        ijk = [int(round(c)) for c in idx]
        if not all(0 <= ijk[k] < image.GetSize()[k] for k in range(3)):
            raise GeometryError(f"segmentation: the seed {tuple(seed_lps_mm)} (LPS mm) lies outside the image")
        seed = (ijk[2], ijk[1], ijk[0])
    if search_region is not None:
        domain = voi_masks(image, {"search region": search_region})["search region"]
        if seed is not None and not domain[seed]:
            raise InputError("segmentation: the seed lies outside the search region")
        return domain, seed
    if seed is None:
        raise InputError("segmentation: give a seed point (seed_lps_mm) or a search region")
    if not (math.isfinite(search_radius_mm) and search_radius_mm > 0):
        raise InputError(f"segmentation: search_radius_mm must be finite and > 0, got {search_radius_mm!r}")
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    sp = tuple(reversed(image.GetSpacing()))
    d2 = sum(((g - s) * h) ** 2 for g, s, h in zip(grids, seed, sp, strict=True))
    return d2 <= search_radius_mm ** 2, seed


def _component(above: np.ndarray, domain: np.ndarray, anchor, thr: float, arr: np.ndarray) -> np.ndarray:
    anchor = tuple(int(a) for a in anchor)
    if not above[anchor]:
        raise InputError(f"segmentation: the seed's value ({arr[anchor]:.4g} Bq/mL) is below the threshold "
                         f"({thr:.4g} Bq/mL); place the seed on the tumour's uptake")
    lab, _ = label(above & domain)
    return lab == lab[anchor]


def _shell_background(arr, seg, spacing_zyx, fwhm) -> float:
    d = distance_transform_edt(~seg, sampling=spacing_zyx)
    shell = (d > _SHELL_FWHM[0] * fwhm) & (d <= _SHELL_FWHM[1] * fwhm)
    if not shell.any():
        raise InputError("segmentation: no voxel 2–3 FWHM outside the region to estimate the background; "
                         "give background_bq_per_ml")
    return float(np.median(arr[shell]))


def _ct_comparison(ct_mask, image, seg):
    if ct_mask is None:
        return None, None
    ct = sitk.GetArrayViewFromImage(ct_mask) != 0
    if not ct.any():
        raise InputError("segmentation: the CT mask is empty")
    ct_volume = float(np.count_nonzero(ct) * voxel_volume_ml(ct_mask))
    on_grid = sitk.GetArrayFromImage(resample_to(ct_mask, image, interpolator=sitk.sitkNearestNeighbor)) != 0
    if not on_grid.any():
        raise GeometryError("segmentation: the CT mask lies outside the SPECT image")
    dice = 2.0 * np.count_nonzero(on_grid & seg) / (np.count_nonzero(on_grid) + np.count_nonzero(seg))
    return ct_volume, float(dice)


