"""Whole-body anterior/posterior planar images of a digital patient (the hybrid method's kinetics).

The true activity concentration C (Bq/mL) on the phantom's voxel grid is projected along y (anterior
detector at −y, posterior at +y; LPS) through the attenuating body. Within a voxel of length h and
attenuation μ the line integral is exact: a voxel contributes

    C·h²·(1 − e^(−μh))/μ · e^(−M)    (μh → 0: C·h³·e^(−M)),

M the ∫μ dy between the voxel and the detector. μ at 208.4 keV is ρ(HU)·(μ/ρ)_water, ρ from the
bilinear HU→density calibration of :mod:`LuDoseResponseLib.physics.density` and (μ/ρ)_water from the
NIST XCOM table (:func:`LuDoseResponseLib.physics.photon_kernel.mu_water`). Pixels are the grid's
(x, z) columns, rows head to foot, with ``margin_px`` empty pixels around the body, so the planar field
is centred on the CT.

Counts per view = primary MBq × sensitivity (cps/MBq) × scan time, blurred by a depth-independent
Gaussian camera resolution (``fwhm_mm``); scatter is a broad Gaussian-blurred fraction of the primary
with a spectrum linear in energy, so triple-energy-window correction removes it exactly in expectation;
Poisson noise is drawn in each window. The windows are 208.4 keV ± 10 % and 181.3/235.5 ± 6.3 keV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from LuDoseResponseLib.io.planar import LU177_PHOTOPEAK_KEV, EnergyWindow
from LuDoseResponseLib.physics.density import HuDensityCalibration
from LuDoseResponseLib.physics.photon_kernel import mu_water

PEAK_WINDOW = EnergyWindow.centred(LU177_PHOTOPEAK_KEV, 0.10)
LOWER_WINDOW = EnergyWindow(175.0, 187.6)
UPPER_WINDOW = EnergyWindow(229.2, 241.8)
WINDOWS = {"peak": PEAK_WINDOW, "lower": LOWER_WINDOW, "upper": UPPER_WINDOW}
MU_WATER_208KEV_PER_MM = 0.1 * mu_water(LU177_PHOTOPEAK_KEV / 1000.0)


@dataclass(frozen=True)
class PlanarSettings:
    """How the phantom's planar images are acquired."""

    hours: tuple[float, ...] = (1.0, 24.0, 96.0, 168.0)
    sensitivity_cps_per_mbq: float = 9.3       # TEW-corrected counts per second of scan time per MBq in air
    scan_time_s: float = 600.0
    fwhm_mm: float = 10.0                      # camera resolution (depth-independent)
    scatter_fraction: float = 0.35             # scatter in the photopeak window / primary
    scatter_sigma_mm: float = 20.0
    scatter_slope_per_kev: float = -0.01       # linear scatter spectrum: s(E) ∝ 1 + b(E − 208.4 keV)
    margin_px: int = 6


def mu_map_per_mm(hu_zyx: np.ndarray) -> np.ndarray:
    """μ at 208.4 keV (1/mm) per voxel from HU (module docstring)."""
    return HuDensityCalibration().to_density(hu_zyx) * MU_WATER_208KEV_PER_MM


def attenuated_projections_mbq(conc_bq_per_ml: np.ndarray, mu_per_mm: np.ndarray,
                               spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(anterior, posterior) attenuated activity (MBq) per [z, x] column of a [z, y, x] grid, exact per voxel."""
    h = spacing_mm
    mu_h = mu_per_mm * h
    with np.errstate(invalid="ignore", divide="ignore"):
        path_mm = np.where(mu_h > 1e-9, -np.expm1(-mu_h) / np.where(mu_h > 1e-9, mu_per_mm, 1.0), h)
    source_mbq = conc_bq_per_ml * h * h * 1e-3 * path_mm * 1e-6      # Bq/mL · mm² · mm · 1e-3 mL/mm³
    before = np.cumsum(mu_h, axis=1) - mu_h                            # ∫μ from −y to the voxel's near edge
    after = mu_h.sum(axis=1, keepdims=True) - before - mu_h            # from the voxel's far edge to +y
    return (source_mbq * np.exp(-before)).sum(axis=1), (source_mbq * np.exp(-after)).sum(axis=1)


def _as_displayed(column_zx: np.ndarray, margin: int) -> np.ndarray:
    """[z, x] columns → planar rows head to foot (z decreasing), columns patient right to left (x increasing)."""
    return np.pad(column_zx[::-1, :], margin)


def planar_windows(conc_bq_per_ml: np.ndarray, hu_zyx: np.ndarray, spacing_mm: float, settings: PlanarSettings,
                   rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """{"anterior"|"posterior": {"peak"|"lower"|"upper": counts}} as displayed (the posterior flipped left–right)."""
    sigma_px = settings.fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / spacing_mm
    ant, post = attenuated_projections_mbq(conc_bq_per_ml, mu_map_per_mm(hu_zyx), spacing_mm)
    out = {}
    for view, mbq in (("anterior", ant), ("posterior", post)):
        primary = _as_displayed(mbq, settings.margin_px) * settings.sensitivity_cps_per_mbq * settings.scan_time_s
        primary = gaussian_filter(primary, sigma_px, mode="constant")
        scatter_peak = settings.scatter_fraction * gaussian_filter(primary, settings.scatter_sigma_mm / spacing_mm,
                                                                   mode="constant")
        density = scatter_peak / PEAK_WINDOW.width_kev                 # scatter counts/keV at 208.4 keV

        def in_window(w: EnergyWindow, density=density) -> np.ndarray:   # ∫ density·(1 + b(E − E0)) dE
            b, e0 = settings.scatter_slope_per_kev, LU177_PHOTOPEAK_KEV
            return density * (w.width_kev + b * 0.5 * ((w.upper_kev - e0) ** 2 - (w.lower_kev - e0) ** 2))

        expected = {"peak": primary + in_window(PEAK_WINDOW), "lower": in_window(LOWER_WINDOW),
                    "upper": in_window(UPPER_WINDOW)}
        counts = {k: rng.poisson(np.clip(v, 0.0, None)).astype(float) for k, v in expected.items()}
        out[view] = counts if view == "anterior" else {k: v[:, ::-1] for k, v in counts.items()}
    return out

