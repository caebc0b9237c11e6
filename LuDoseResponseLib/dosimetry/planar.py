"""Planar conjugate-view quantification of tumours with a CT μ-map and 3-D VOIs (MIRD Pamphlet 16).

Steps, per planar time point:

1. **Scatter**: triple-energy-window correction per pixel (:func:`tew_primary_counts`).
2. **Geometry**: the planar frame (:class:`PlanarGeometry`) maps pixel [r, c] of the anterior image
   (as displayed: rows head to foot, columns from the patient's right to left) to LPS
   x = x0 + c·Δc, z = z0 − r·Δr; the projection direction is y (anterior–posterior). The posterior
   image is flipped left–right to this frame. Volumes (μ-map, VOIs) are resampled onto a box with
   the planar pixel size and summed along y (:func:`project_line_integral`). The frame is registered
   to the CT by the body outline (:func:`register_by_body_outline`, a translation).
3. **Conjugate view** per pixel (Siegel JA et al., MIRD Pamphlet No. 16, J Nucl Med 1999;40:37S–61S):
   A = √(I_A·I_P / T) · f / (C·τ), with T = exp(−∫μ dy) the transmission through the patient
   along the pixel's line, f = (μ_j t_j/2)/sinh(μ_j t_j/2) the source self-attenuation of a tumour of
   thickness t_j (from the VOI chord, with μ_j t_j = ∫_VOI μ dy), C the planar sensitivity in cps/MBq
   (TEW-corrected counts of a source in air) and τ the acquisition time. Decay during the acquisition is
   not corrected: it is below 0.2 % for a 30-min scan of Lu-177 (T½ 6.65 d).
   The geometric mean is taken per pixel and summed over the ROI (the √ of Poisson counts is biased by
   about −1/(8n) for n counts per pixel: negligible above ~20 counts).
4. **Background**: the Buijs method (Buijs WC et al., J Nucl Med 1998;39:2167–2172): each view is
   corrected as I' = I − I_B·(1 − t_j/L), I_B the per-pixel counts of a background ring around the
   tumour projection, L the patient thickness along the line.
5. **ROI**: the tumour ROI is the projection of its 3-D VOI, optionally widened by ``roi_margin_px``
   to collect the counts the camera's blur spreads outside it (about half the planar FWHM at the
   tumour's depth); the margin pixels have t_j = 0, so their full background is subtracted. Projections of
   different tumours that share pixels are reported (their counts there are shared).

Accuracy on the analytic phantom of the tests (water cylinder R = 10 cm, spheres of 18–25 mm radius,
Poisson noise, TEW scatter, background T/B ≈ 18–300): exact to 0.5 % without background; within 6 %
with the Buijs correction (its approximation error is largest at low tumour-to-background ratio).

μ at 208 keV from HU: μ = ρ(HU)·(μ/ρ)_water(208.4 keV), ρ(HU) from the bilinear
:class:`~LuDoseResponseLib.physics.density.HuDensityCalibration` (air–water line, bone line
6.0e-4 g/cm³ per HU) and (μ/ρ)_water = 0.1350 cm²/g (NIST XCOM, coherent included, narrow beam: the
counts are scatter-corrected). Compton scattering dominates at 208 keV, so μ/ρ varies little with
the tissue; for cortical bone it is about 4 % below water (NIST XCOM), which this conversion ignores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.io.planar import LU177_PHOTOPEAK_KEV, WINDOW_OVERLAP_KEV, EnergyWindow, PlanarView
from LuDoseResponseLib.physics.density import HuDensityCalibration
from LuDoseResponseLib.physics.photon_kernel import mu_water

log = logging.getLogger(__name__)

MU_WATER_208KEV_PER_MM = 0.1 * mu_water(LU177_PHOTOPEAK_KEV / 1000.0)   # 1/mm for ρ = 1 g/cm³
_BODY_HU = -500.0            # CT voxels above this are the patient (body outline)
_BODY_MU_FRACTION = 0.05    # μ-map voxels above 5 % of water's μ are the patient (patient thickness L)
_OUTLINE_FRACTION = 0.5      # planar body outline: smoothed GM above half the median body count (a step edge)


# --------------------------------------------------------------------------------------------
# Scatter
# --------------------------------------------------------------------------------------------

def tew_primary_counts(peak, lower, upper, peak_window: EnergyWindow, lower_window: EnergyWindow,
                       upper_window: EnergyWindow) -> np.ndarray:
    """Triple-energy-window scatter correction per pixel (Ogawa K et al., IEEE TMI 1991;10:408–412).

    The scatter count density (counts/keV) at the photopeak centre is interpolated linearly between
    the densities C_lo/w_lo and C_up/w_up at the centres of the scatter windows, and times the
    photopeak width w_pk it is subtracted. With scatter windows placed symmetrically about the
    photopeak centre this is Ogawa's trapezoid S = (C_lo/w_lo + C_up/w_up)·w_pk/2; for any placement it
    is exact when the scatter spectrum is linear in energy. Negative pixels (noise) are kept: clip
    after summing, not before, or the estimate is biased.
    """
    arrays = [np.asarray(a, dtype=float) for a in (peak, lower, upper)]
    if arrays[1].shape != arrays[0].shape or arrays[2].shape != arrays[0].shape:
        raise InputError(f"TEW: the window images differ in shape: peak {arrays[0].shape}, lower {arrays[1].shape}, "
                         f"upper {arrays[2].shape}")
    if not (lower_window.upper_kev <= peak_window.lower_kev + WINDOW_OVERLAP_KEV and upper_window.lower_kev
            >= peak_window.upper_kev - WINDOW_OVERLAP_KEV):
        raise InputError(f"TEW: the scatter windows must lie below and above the photopeak window "
                         f"{peak_window.lower_kev:g}-{peak_window.upper_kev:g} keV")
    d_lo = arrays[1] / lower_window.width_kev
    d_up = arrays[2] / upper_window.width_kev
    frac = (peak_window.centre_kev - lower_window.centre_kev) / (upper_window.centre_kev - lower_window.centre_kev)
    scatter = (d_lo + (d_up - d_lo) * frac) * peak_window.width_kev
    return arrays[0] - scatter


def primary_counts(view: PlanarView) -> np.ndarray:
    """TEW-corrected photopeak counts of a view; the photopeak as is (logged) when a scatter window is missing."""
    if view.lower is None or view.upper is None:
        log.warning("%s: no lower and upper scatter window; the photopeak counts are used without scatter "
                    "correction (the calibration factor must then be of uncorrected counts)", view.source)
        return np.asarray(view.peak, dtype=float)
    return tew_primary_counts(view.peak, view.lower, view.upper, view.peak_window, view.lower_window,
                              view.upper_window)


# --------------------------------------------------------------------------------------------
# μ-map and projection geometry
# --------------------------------------------------------------------------------------------

def mu_map_208kev(ct_hu: sitk.Image, calibration: HuDensityCalibration | None = None) -> sitk.Image:
    """Linear attenuation coefficient at 208 keV (1/mm) from a CT in HU (see the module docstring)."""
    if not isinstance(ct_hu, sitk.Image) or ct_hu.GetDimension() != 3:
        raise InputError("mu_map_208kev: the CT must be a 3-D SimpleITK image in HU")
    hu = sitk.GetArrayViewFromImage(ct_hu)
    if not np.all(np.isfinite(hu)):
        raise InputError("mu_map_208kev: the CT has NaN or infinite voxels; fill them with air (-1000 HU)")
    rho = (calibration or HuDensityCalibration()).to_density(hu)
    out = sitk.GetImageFromArray((rho * MU_WATER_208KEV_PER_MM).astype(np.float32))
    out.CopyInformation(ct_hu)
    return out


@dataclass(frozen=True)
class PlanarGeometry:
    """The planar frame: pixel [r, c] centre at LPS x = x0 + c·col_mm, z = z0 − r·row_mm (projection along y)."""

    shape: tuple[int, int]
    pixel_mm: tuple[float, float]      # (row, column)
    origin_mm: tuple[float, float]     # (x0, z0) of pixel [0, 0]

    def field_bounds_mm(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((x_min, x_max), (z_min, z_max)) of the field of view, pixel edges included."""
        (rows, cols), (dr, dc), (x0, z0) = self.shape, self.pixel_mm, self.origin_mm
        return (x0 - dc / 2, x0 + (cols - 0.5) * dc), (z0 - (rows - 0.5) * dr, z0 + dr / 2)

    def shifted(self, dx_mm: float, dz_mm: float) -> PlanarGeometry:
        return replace(self, origin_mm=(self.origin_mm[0] + dx_mm, self.origin_mm[1] + dz_mm))


def centred_geometry(view: PlanarView, volume: sitk.Image) -> PlanarGeometry:
    """A frame with the planar image centred on the volume's centre (a start for the registration)."""
    lo, hi = _bounds(volume)
    rows, cols = view.shape
    dr, dc = view.pixel_mm
    centre = 0.5 * (lo + hi)
    return PlanarGeometry((rows, cols), (dr, dc), (centre[0] - (cols - 1) * dc / 2, centre[2] + (rows - 1) * dr / 2))


def _bounds(volume: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    origin, spacing, size = (np.array(v, dtype=float) for v in (volume.GetOrigin(), volume.GetSpacing(),
                                                                 volume.GetSize()))
    return origin - spacing / 2, origin + (size - 0.5) * spacing


def _require_axial(volume: sitk.Image, what: str) -> None:
    if not np.allclose(volume.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        raise GeometryError(f"{what}: planar projection needs an axis-aligned (identity direction) volume; resample "
                            "the CT and the VOIs to an axial grid first")


def project_line_integral(volume: sitk.Image, geometry: PlanarGeometry, *, nearest: bool = False,
                          what: str = "volume") -> np.ndarray:
    """∫ value dy (value·mm) along the AP lines of the planar pixels, [row, column] in the planar frame."""
    _require_axial(volume, what)
    rows, cols = geometry.shape
    dr, dc = geometry.pixel_mm
    x0, z0 = geometry.origin_mm
    dy = volume.GetSpacing()[1]
    ref = sitk.Image(cols, volume.GetSize()[1], rows, sitk.sitkFloat32)
    ref.SetSpacing((dc, dy, dr))
    ref.SetOrigin((x0, volume.GetOrigin()[1], z0 - (rows - 1) * dr))
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    res = sitk.Resample(sitk.Cast(volume, sitk.sitkFloat32), ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(res).sum(axis=1)[::-1] * dy


def register_by_body_outline(geometric_mean_counts: np.ndarray, ct_hu: sitk.Image, geometry: PlanarGeometry, *,
                             max_shift_fraction: float = 0.25) -> PlanarGeometry:
    """The frame translated so that the planar body outline best matches the CT's projected outline.

    The planar outline is the smoothed geometric-mean image above half its median over the body (the pixels
    above :func:`_body_floor`, which separates the body from the empty field even when tumours and kidneys are
    a hundred times brighter than soft tissue); the CT outline is the projection of the voxels above −500 HU.
    The head–foot shift (whole pixels, refined by an equiangular fit through the neighbours) minimises the
    number of mismatched pixels within the CT's field (the rows the CT covers), so a whole-body planar longer
    than the CT is matched on the section the CT shows (its width profile or the body's ends must make that
    section recognisable). The left–right shift aligns the column centroids of the two outlines over those
    rows. Shifts up to ``max_shift_fraction`` of the planar matrix are searched.
    """
    body = sitk.Cast(ct_hu > _BODY_HU, sitk.sitkFloat32)
    # linear resampling of the binary body: a column counts as body where at least half a voxel of it is
    # (nearest-neighbour would move the outline by up to half a CT voxel)
    ct_mask = (project_line_integral(body, geometry, what="CT") >= 0.5 * ct_hu.GetSpacing()[1]).astype(float)
    coverage = (project_line_integral(sitk.Cast(body * 0 + 1, sitk.sitkFloat32), geometry, nearest=True,
                                      what="CT") > 0).astype(float)
    smooth = ndimage.gaussian_filter(np.asarray(geometric_mean_counts, dtype=float), 1.0)
    positive = smooth[smooth > _body_floor(smooth)] if smooth.max() > 0 else np.array([])
    if not ct_mask.any() or positive.size == 0:
        raise GeometryError("register_by_body_outline: no body outline in the CT projection or the planar image; "
                            "check that they show the same body section, or give the planar geometry explicitly")
    planar_mask = (smooth > _OUTLINE_FRACTION * np.median(positive)).astype(float)
    # mismatch(s) = |P ∩ W(s)| + |CT| − 2|P ∩ CT(s)| for the planar mask P seen through the shifted CT
    # field W and outline CT; correlations by FFT, shift s = index − (shape − 1)
    inter = signal.fftconvolve(planar_mask, ct_mask[::-1, ::-1], mode="full")
    window = signal.fftconvolve(planar_mask, coverage[::-1, ::-1], mode="full")
    mismatch = window + ct_mask.sum() - 2.0 * inter
    rows, cols = geometry.shape
    max_r, max_c = max(1, int(max_shift_fraction * rows)), max(1, int(max_shift_fraction * cols))
    sub = mismatch[rows - 1 - max_r: rows + max_r, cols - 1 - max_c: cols + max_c]
    i, j = np.unravel_index(int(np.argmin(sub)), sub.shape)
    shift_r = i - max_r + _v_vertex(sub[max(i - 1, 0): i + 2, j], i)
    # across the body the outlines' widths differ (the emission fades towards the thin edges), which leaves
    # the mismatch flat in x: x comes from the column centroids over the matched rows instead
    ct_rows = np.flatnonzero(coverage.any(axis=1))
    planar_rows = ct_rows + (i - max_r)
    keep = (planar_rows >= 0) & (planar_rows < rows)
    planar_part = planar_mask[planar_rows[keep]]
    if not planar_part.any():
        raise GeometryError("register_by_body_outline: the planar image shows no body where the CT is; give the "
                            "planar geometry explicitly")
    shift_c = ndimage.center_of_mass(planar_part)[1] - ndimage.center_of_mass(ct_mask[ct_rows[keep]])[1]
    dr, dc = geometry.pixel_mm
    dx, dz = -shift_c * dc, shift_r * dr
    log.info("planar frame registered to the CT body outline: shift x %.1f mm, z %.1f mm", dx, dz)
    return geometry.shifted(dx, dz)


def _body_floor(smooth: np.ndarray) -> float:
    """The count level between the empty field and the body: Otsu's threshold (Otsu N, IEEE Trans Syst Man
    Cybern 1979;9:62–66) on log(1 + counts), which puts the faint soft tissue with the bright uptake, not with
    the empty field around the patient."""
    values = np.log1p(np.clip(smooth, 0.0, None)).ravel()
    hist, edges = np.histogram(values, bins=256)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)[:-1].astype(float)
    w1 = float(hist.sum()) - w0
    m0 = np.cumsum(hist * centres)[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] + hist[-1] * centres[-1] - m0) / w1) ** 2
    k = int(np.nanargmax(np.where((w0 > 0) & (w1 > 0), between, np.nan))) if np.any((w0 > 0) & (w1 > 0)) else 0
    return float(np.expm1(edges[k + 1]))


def _v_vertex(values: np.ndarray, index: int) -> float:
    """Sub-pixel offset of the minimum from three neighbours by an equiangular (V) fit: the mismatch count
    grows linearly with the distance from the best shift (0 at an edge or a flat bottom)."""
    if values.size != 3 or index == 0:
        return 0.0
    a, b, c = (float(v) for v in values)
    rise = max(a, c) - b
    return float(np.clip((a - c) / (2.0 * rise), -0.5, 0.5)) if rise > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Conjugate view
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConjugatePair:
    """One planar time point: anterior and posterior views, hours after administration, sensitivity."""

    anterior: PlanarView
    posterior: PlanarView
    time_h: float
    calibration_cps_per_mbq: float
    key: str = "planar"


def check_pair(pair: ConjugatePair) -> None:
    """Both views present, with the same matrix, pixel size and duration; positive calibration and time."""
    ant, post = pair.anterior, pair.posterior
    if ant is None or post is None:
        raise InputError(f"{pair.key}: the {'posterior' if post is None else 'anterior'} view is missing; "
                         "conjugate-view quantification needs both")
    if ant.shape != post.shape:
        raise GeometryError(f"{pair.key}: anterior {ant.shape} and posterior {post.shape} matrices differ; "
                            "both views must be acquired with the same matrix")
    if not np.allclose(ant.pixel_mm, post.pixel_mm, rtol=1e-4):
        raise GeometryError(f"{pair.key}: anterior pixel {ant.pixel_mm} mm and posterior pixel {post.pixel_mm} mm "
                            "differ; both views must have the same pixel size")
    if not (math.isfinite(pair.calibration_cps_per_mbq) and pair.calibration_cps_per_mbq > 0):
        raise InputError(f"{pair.key}: calibration_cps_per_mbq must be positive, got {pair.calibration_cps_per_mbq}")
    if not (math.isfinite(pair.time_h) and pair.time_h >= 0):
        raise InputError(f"{pair.key}: time_h must be ≥ 0 h after administration, got {pair.time_h}")
    if not math.isclose(ant.duration_s, post.duration_s, rel_tol=1e-3):
        raise InputError(f"{pair.key}: anterior ({ant.duration_s:g} s) and posterior ({post.duration_s:g} s) "
                         "durations differ")


def geometric_mean(anterior: np.ndarray, posterior: np.ndarray) -> np.ndarray:
    """√(I_A · flip(I_P)) per pixel: the posterior is flipped left–right into the anterior frame; negative
    counts (after scatter or background subtraction) count as 0."""
    a = np.asarray(anterior, dtype=float)
    p = np.asarray(posterior, dtype=float)[:, ::-1]
    if a.shape != p.shape:
        raise GeometryError(f"geometric mean: anterior {a.shape} and posterior {p.shape} differ")
    return np.sqrt(np.clip(a, 0, None) * np.clip(p, 0, None))


@dataclass(frozen=True)
class TumourProjection:
    """A tumour VOI in the planar frame: its ROI, chord t_j (mm) and ∫_VOI μ dy per pixel."""

    name: str
    roi: np.ndarray
    chord_mm: np.ndarray
    mu_t: np.ndarray


def project_tumours(masks: Mapping[str, sitk.Image], mu_map: sitk.Image,
                    geometry: PlanarGeometry) -> dict[str, TumourProjection]:
    """Each VOI projected onto the planar frame; a VOI that leaves the field of view is an error."""
    (x_lo, x_hi), (z_lo, z_hi) = geometry.field_bounds_mm()
    out = {}
    for name, mask in masks.items():
        _require_axial(mask, f"tumour {name!r}")
        arr = sitk.GetArrayViewFromImage(mask) > 0
        if not arr.any():
            raise InputError(f"tumour {name!r}: the VOI is empty")
        idx = np.argwhere(arr)
        pts = np.array([mask.TransformIndexToPhysicalPoint([int(i[2]), int(i[1]), int(i[0])])
                        for i in (idx.min(axis=0), idx.max(axis=0))])
        if pts[:, 0].min() < x_lo or pts[:, 0].max() > x_hi or pts[:, 2].min() < z_lo or pts[:, 2].max() > z_hi:
            raise GeometryError(f"tumour {name!r}: the VOI (x {pts[:, 0].min():.0f}..{pts[:, 0].max():.0f} mm, "
                                f"z {pts[:, 2].min():.0f}..{pts[:, 2].max():.0f} mm) is outside the planar field "
                                f"(x {x_lo:.0f}..{x_hi:.0f}, z {z_lo:.0f}..{z_hi:.0f} mm); check the registration "
                                "or use a planar image that covers it")
        binary = sitk.Cast(mask > 0, sitk.sitkFloat32)
        chord = project_line_integral(binary, geometry, nearest=True, what=f"tumour {name!r}")
        on_mu = sitk.Resample(binary, mu_map, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
        mu_t = project_line_integral(on_mu * mu_map, geometry, nearest=True, what=f"tumour {name!r}")
        out[name] = TumourProjection(name, chord > 0, chord, mu_t)
    return out


def projection_overlaps(projections: Mapping[str, TumourProjection]) -> list[tuple[str, str, int, float]]:
    """Pairs of tumours whose projections share pixels: (a, b, pixels, fraction of the smaller ROI)."""
    names = list(projections)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = int(np.count_nonzero(projections[a].roi & projections[b].roi))
            if shared:
                smaller = min(int(projections[a].roi.sum()), int(projections[b].roi.sum()))
                out.append((a, b, shared, shared / smaller))
    return out


def _background_ring(roi: np.ndarray, exclude: np.ndarray, body: np.ndarray, gap_px: int,
                     width_px: int) -> np.ndarray:
    inner = ndimage.binary_dilation(roi, iterations=gap_px) if gap_px > 0 else roi
    outer = ndimage.binary_dilation(inner, iterations=width_px)
    return outer & ~inner & ~exclude & body


def self_attenuation_factor(mu_t: np.ndarray) -> np.ndarray:
    """f = (μt/2)/sinh(μt/2) per pixel (1 where μt = 0)."""
    x = 0.5 * np.asarray(mu_t, dtype=float)
    out = np.ones_like(x)
    nz = x > 1e-12
    out[nz] = x[nz] / np.sinh(x[nz])
    return out


@dataclass(frozen=True)
class PlanarTumourActivity:
    """A tumour's conjugate-view activity at one planar time point."""

    name: str
    time_h: float
    activity_mbq: float
    roi_pixels: int
    background_counts_per_pixel: tuple[float, float]   # anterior, posterior (TEW-corrected)
    mean_transmission: float
    warnings: tuple[str, ...] = ()


def conjugate_view_activities(pair: ConjugatePair, mu_map: sitk.Image, projections: Mapping[str, TumourProjection],
                              geometry: PlanarGeometry, *, background: str = "buijs", background_gap_px: int = 1,
                              background_width_px: int = 3, roi_margin_px: int = 0) -> dict[str, PlanarTumourActivity]:
    """Per-tumour activity (MBq) at ``pair.time_h``: TEW, Buijs background, attenuation and self-attenuation
    corrected geometric mean (module docstring). ``background`` is ``"buijs"`` or ``"none"``."""
    check_pair(pair)
    if background not in ("buijs", "none"):
        raise InputError(f"{pair.key}: background must be 'buijs' or 'none', got {background!r}")
    if pair.anterior.shape != geometry.shape:
        raise GeometryError(f"{pair.key}: the planar matrix {pair.anterior.shape} differs from the planar frame "
                            f"{geometry.shape}; every time point of a cycle must use the same matrix")
    if not np.allclose(pair.anterior.pixel_mm, geometry.pixel_mm, rtol=1e-4):
        raise GeometryError(f"{pair.key}: pixel size {pair.anterior.pixel_mm} mm differs from the planar frame "
                            f"{geometry.pixel_mm} mm; every time point of a cycle must use the same pixel size")
    ant = primary_counts(pair.anterior)
    post = primary_counts(pair.posterior)[:, ::-1]        # into the anterior frame
    mu_line = project_line_integral(mu_map, geometry, what="μ-map")
    body_mm = project_line_integral(sitk.Cast(mu_map > _BODY_MU_FRACTION * MU_WATER_208KEV_PER_MM, sitk.sitkFloat32),
                                    geometry, nearest=True, what="μ-map")
    body = body_mm > 0
    if isinstance(roi_margin_px, bool) or not isinstance(roi_margin_px, int) or roi_margin_px < 0:
        raise InputError(f"{pair.key}: roi_margin_px must be an integer ≥ 0, got {roi_margin_px!r}")
    rois = {name: ndimage.binary_dilation(p.roi, iterations=roi_margin_px) if roi_margin_px else p.roi
            for name, p in projections.items()}
    all_rois = np.zeros(geometry.shape, dtype=bool)
    for roi in rois.values():
        all_rois |= roi
    exclude = ndimage.binary_dilation(all_rois, iterations=background_gap_px) if background_gap_px else all_rois
    scale = 1.0 / (pair.calibration_cps_per_mbq * pair.anterior.duration_s)
    out = {}
    for name, proj in projections.items():
        roi = rois[name]
        warns: list[str] = []
        bg = (0.0, 0.0)
        a_roi, p_roi = ant[roi], post[roi]
        if background == "buijs":
            ring = _background_ring(roi, exclude, body, background_gap_px, background_width_px)
            if not ring.any():
                raise InputError(f"{pair.key}: tumour {name!r} has no background pixels around its projection "
                                 "(other tumours or the body edge surround it); use background='none'")
            bg = (float(ant[ring].mean()), float(post[ring].mean()))
            keep = 1.0 - np.clip(proj.chord_mm[roi] / np.maximum(body_mm[roi], 1e-9), 0.0, 1.0)
            a_roi = a_roi - bg[0] * keep
            p_roi = p_roi - bg[1] * keep
        negative = int(np.count_nonzero((a_roi < 0) | (p_roi < 0)))
        if negative > 0.1 * roi.sum():
            warns.append(f"{pair.key}: tumour {name!r}: {negative} of {int(roi.sum())} ROI pixels are negative after "
                         "scatter and background subtraction (set to 0); the activity is biased high")
            log.warning(warns[-1])
        gm = np.sqrt(np.clip(a_roi, 0, None) * np.clip(p_roi, 0, None))
        transmission = np.exp(-mu_line[roi])
        counts = gm / np.sqrt(transmission) * self_attenuation_factor(proj.mu_t[roi])
        out[name] = PlanarTumourActivity(name=name, time_h=pair.time_h, activity_mbq=float(counts.sum() * scale),
                                         roi_pixels=int(roi.sum()), background_counts_per_pixel=bg,
                                         mean_transmission=float(transmission.mean()), warnings=tuple(warns))
    return out


def planar_tumour_activities(pairs: Sequence[ConjugatePair], ct_hu: sitk.Image, masks: Mapping[str, sitk.Image], *,
                             geometry: PlanarGeometry | None = None, register: bool = True,
                             hu_calibration: HuDensityCalibration | None = None,
                             **kwargs) -> tuple[dict[str, list[PlanarTumourActivity]], PlanarGeometry, list[str]]:
    """Conjugate-view activities of every tumour at every planar time point.

    The frame is ``geometry`` if given, else the first pair's image centred on the CT and (``register``)
    registered by the body outline of its geometric mean. Returns ({tumour: [activity per time point]},
    the frame, warnings), the warnings naming overlapping tumour projections.
    """
    if not pairs:
        raise InputError("planar_tumour_activities: no planar time points")
    for pair in pairs:
        check_pair(pair)
    if not masks:
        raise InputError("planar_tumour_activities: no tumour VOIs")
    mu_map = mu_map_208kev(ct_hu, hu_calibration)
    first = pairs[0]
    if geometry is None:
        geometry = centred_geometry(first.anterior, ct_hu)
        if register:
            gm = geometric_mean(primary_counts(first.anterior), primary_counts(first.posterior))
            geometry = register_by_body_outline(gm, ct_hu, geometry)
    projections = project_tumours(masks, mu_map, geometry)
    warnings = []
    for a, b, shared, frac in projection_overlaps(projections):
        warnings.append(f"tumours {a!r} and {b!r} overlap in the planar projection ({shared} pixels, {frac:.0%} of "
                        "the smaller ROI); their planar counts include each other's activity there")
    for w in warnings:
        log.warning(w)
    results: dict[str, list[PlanarTumourActivity]] = {name: [] for name in masks}
    for pair in sorted(pairs, key=lambda p: p.time_h):
        for name, act in conjugate_view_activities(pair, mu_map, projections, geometry, **kwargs).items():
            results[name].append(act)
            warnings.extend(act.warnings)
    return results, geometry, warnings
