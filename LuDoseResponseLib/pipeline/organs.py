"""Kidney (organ) dosimetry and BED in the patient pipeline: ``organ_cycles.csv`` and ``run.json`` ``organs``.

Per cycle and organ VOI (``Kidney_L``, ``Kidney_R`` or ``Kidneys``; :mod:`.organ_names`), from the same
quantified SPECTs and dose-rate maps as the tumours (:mod:`.patient`):

- dose: the VOI-mean dose rate at each time point, times the partial-volume factor, integrated by a
  fitted curve (``settings.integration``; ``trapezoid`` has no curve shape for the BED, so organs then
  use ``auto``, with a warning); its SD is the fit's (covariance of the fitted parameters);
- PVC (``settings.kidney_pvc``): ``rc`` (default) divides the VOI means by the recovery coefficient of
  the organ's own mask blurred by the Gaussian PSF of ``settings.psf_fwhm_mm``
  (:func:`dosimetry.pvc.numerical_recovery_coefficient`). A kidney is far from a sphere (a ~150 mL
  kidney is ~5 cm thick), so the equal-volume sphere's RC would overstate its recovery; the mask's own
  RC is exact for a uniform organ in a cold background. Spill-in from neighbours (liver, spleen,
  tumours) is not removed and is amplified by 1/RC, and so is the photon cross-dose from them in the
  kernel dose rate (the whole VOI dose rate is scaled, as for tumours); on the phantom (kidney RC ≈ 0.79)
  these add +2 to +11 % over the local-deposition truth, spill-in alone ≤ 3 %. ``none`` takes the VOI
  means as measured (13–19 % low on the phantom);
- effective half-life: ln 2 / the fitted slow rate, its SD by first-order propagation of that rate's
  variance (SD(T) = ln2·SD(λ)/λ²);
- BED: :func:`dosimetry.bed.bed_from_time_integral` of the fitted dose-rate curve (linear-quadratic
  model for a decaying source, MIRD Pamphlet 20), with ``settings.kidney_alpha_beta_gy`` and
  ``settings.kidney_repair_half_time_h`` (defaults 2.6 Gy and 2.8 h, cited in :mod:`dosimetry.bed`);
  its SD propagates the fit covariance;
- mass: voxels × voxel volume × mean density (from the CT; 1 g/mL without one).

With both sides, a ``Kidneys`` row per cycle is the mass-weighted mean of the two: dose, BED and
effective half-life are Σ wᵢxᵢ with wᵢ = mᵢ/Σm, their SDs √Σ(wᵢσᵢ)² (the two fits are independent);
the mass is the sum. The cumulative BED of an organ is the sum over its cycles (complete repair
between cycles weeks apart) with the SD of independent cycles (:func:`dosimetry.bed.cumulative_bed`).
Doses and BEDs carry the fit uncertainty only: calibration, VOI and RC uncertainties are not included.
The dose maps are not corrected for the organs' partial volume.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.dosimetry.bed import Bed, bed_from_time_integral, cumulative_bed
from LuDoseResponseLib.dosimetry.integration import TimeIntegral, time_integral, voi_mean_values
from LuDoseResponseLib.dosimetry.integration.models import CURVES
from LuDoseResponseLib.dosimetry.pvc_correction import correct_partial_volume
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.imaging import image_like, voxel_volume_ml
from LuDoseResponseLib.pipeline.organ_names import KIDNEY_SIDES, KIDNEYS_COMBINED, is_organ
from LuDoseResponseLib.pipeline.study import Cycle, Study
from LuDoseResponseLib.response.volumetry import read_segmentation

log = logging.getLogger(__name__)

ORGAN_CYCLE_COLUMNS = ("organ", "cycle", "administered_activity_mbq", "dose_gy", "dose_sd_gy", "dose_per_gbq_gy",
                       "t_eff_h", "t_eff_sd_h", "bed_gy", "bed_sd_gy", "mass_g", "model", "warnings")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class OrganCycleDose:
    """One organ's absorbed dose, effective half-life and BED in one cycle (module docstring)."""

    organ: str
    cycle: int
    administered_activity_mbq: float
    dose_gy: float
    dose_sd_gy: float | None
    t_eff_h: float
    t_eff_sd_h: float | None
    bed: Bed
    mass_g: float
    model: str
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dose_per_gbq_gy(self) -> float:
        return self.dose_gy / (self.administered_activity_mbq / 1000.0)

    def row(self) -> dict:
        return {"organ": self.organ, "cycle": self.cycle, "administered_activity_mbq": self.administered_activity_mbq,
                "dose_gy": self.dose_gy, "dose_sd_gy": self.dose_sd_gy, "dose_per_gbq_gy": self.dose_per_gbq_gy,
                "t_eff_h": self.t_eff_h, "t_eff_sd_h": self.t_eff_sd_h, "bed_gy": self.bed.bed_gy,
                "bed_sd_gy": self.bed.sd_gy, "mass_g": self.mass_g, "model": self.model,
                "warnings": " | ".join(self.warnings)}


def organ_masks_on_grid(cycle: Cycle, reference: sitk.Image) -> dict[str, np.ndarray]:
    """Each organ VOI of the cycle on the SPECT grid (nearest-neighbour resampling when the grids differ)."""
    if cycle.organs is None:
        return {}
    seg = read_segmentation(cycle.organs, reference=cycle.organs_reference)
    out = {}
    for name in seg.names:
        if not is_organ(name):
            continue
        arr = seg.mask_on(name, reference)
        if not arr.any():
            raise InputError(f"{cycle.organs}: organ {name!r} has no voxel on the SPECT grid of cycle {cycle.number}; "
                             "check the segmentation and its registration")
        out[name] = arr
    return out


def _t_eff_sd_h(d: TimeIntegral) -> float | None:
    """SD of ln2/λ_slow from the fit covariance (first order)."""
    cov = d.covariance_matrix
    if cov is None or d.t_eff_h is None:
        return None
    k = CURVES[d.model].slow_rate_index
    lam = LN2 / d.t_eff_h
    return float(LN2 * math.sqrt(max(cov[k, k], 0.0)) / lam**2)


def _recovery_factors(study: Study, activity: sitk.Image, masks: dict[str, np.ndarray], warn: list[str],
                      cycle: int) -> dict[str, float]:
    """1/RC per organ (``kidney_pvc = rc``: the mask's own RC at the system PSF), or 1."""
    if study.settings.kidney_pvc == "none":
        return dict.fromkeys(masks, 1.0)
    images = {n: image_like(m.astype(np.uint8), activity) for n, m in masks.items()}
    result = correct_partial_volume(activity, images, pvc="rc", rc_model="voi", psf_fwhm_mm=study.settings.psf_fwhm_mm)
    warn += [f"cycle {cycle}: {w}" for w in result.warnings]
    return {n: 1.0 / c.recovery_coefficient for n, c in result.tumours.items()}


def cycle_organ_doses(study: Study, cycle: Cycle, rates: list[sitk.Image], activities: list[sitk.Image],
                      times: list[float], density: sitk.Image | None, tumour_masks: dict[str, np.ndarray],
                      warn: list[str]) -> list[OrganCycleDose]:
    """The organ rows of one cycle (sides, and the mass-weighted ``Kidneys`` row when both are given)."""
    masks = organ_masks_on_grid(cycle, rates[0])
    if not masks:
        return []
    if len(times) < 2:
        warn.append(f"cycle {cycle.number}: one SPECT time point; the kidneys' effective half-life and BED need "
                    "several, so the cycle has no organ dose")
        return []
    s = study.settings
    model = s.integration
    if model == "trapezoid":
        model = "auto"
        warn.append(f"cycle {cycle.number}: organ doses use a fitted curve (integration auto), not the trapezoid "
                    "rule: the BED needs the dose-rate curve's shape")
    for organ, m in masks.items():
        for tumour, t in tumour_masks.items():
            shared = int(np.count_nonzero(m & t))
            if shared:
                warn.append(f"cycle {cycle.number}: organ {organ!r} and tumour {tumour!r} share {shared} voxel(s); "
                            "the organ dose includes the tumour's activity there")
    if all(n in masks for n in KIDNEY_SIDES):
        shared = int(np.count_nonzero(masks[KIDNEY_SIDES[0]] & masks[KIDNEY_SIDES[1]]))
        if shared:
            raise InputError(f"{cycle.organs}: {KIDNEY_SIDES[0]} and {KIDNEY_SIDES[1]} share {shared} voxel(s) on the "
                             f"SPECT grid of cycle {cycle.number}; each voxel belongs to one kidney")
    factors = _recovery_factors(study, activities[0], masks, warn, cycle.number)
    rho = sitk.GetArrayViewFromImage(density) if density is not None else None
    vox_ml = voxel_volume_ml(rates[0])
    rows = []
    for name, m in masks.items():
        what = f"organ {name!r}, cycle {cycle.number}"
        rate_means = voi_mean_values(rates, m, what=what)
        if np.any(rate_means <= 0):
            raise InputError(f"{what}: the mean dose rate in the VOI is not positive at every time point; check the "
                             "organ segmentation and the SPECTs")
        d = time_integral(times, rate_means * factors[name], method="fit", model=model, tail=s.tail, what=what)
        notes = list(d.warnings)
        bed = bed_from_time_integral(d, alpha_beta_gy=s.kidney_alpha_beta_gy,
                                     repair_half_time_h=s.kidney_repair_half_time_h, what=what)
        if not math.isclose(bed.dose_gy, d.value, rel_tol=1e-3):
            notes.append(f"{what}: the BED is of the fitted curve to infinity ({bed.dose_gy:.4g} Gy); the dose "
                         f"column uses the {d.tail} tail ({d.value:.4g} Gy)")
        if d.sd is None:
            notes.append(f"{what}: no dose SD (the fit has no residual degree of freedom)")
        mass_g = float(m.sum() * vox_ml * (float(rho[m].mean()) if rho is not None else 1.0))
        rows.append(OrganCycleDose(name, cycle.number, cycle.activity_mbq, float(d.value), d.sd, float(d.t_eff_h),
                                   _t_eff_sd_h(d), bed, mass_g, d.model, tuple(notes)))
    sides = [r for r in rows if r.organ in KIDNEY_SIDES]
    if len(sides) == 2:
        rows.append(mass_weighted_kidneys(sides))
    warn += [w for r in rows for w in r.warnings]
    return rows


def _weighted(values, sds, weights) -> tuple[float, float | None]:
    mean = float(sum(w * v for w, v in zip(weights, values, strict=True)))
    if any(sd is None for sd in sds):
        return mean, None
    return mean, float(math.sqrt(sum((w * sd) ** 2 for w, sd in zip(weights, sds, strict=True))))


def mass_weighted_kidneys(sides: list[OrganCycleDose]) -> OrganCycleDose:
    """The ``Kidneys`` row of one cycle: the mass-weighted mean of the two sides (module docstring)."""
    total = sum(r.mass_g for r in sides)
    w = [r.mass_g / total for r in sides]
    dose, dose_sd = _weighted([r.dose_gy for r in sides], [r.dose_sd_gy for r in sides], w)
    t_eff, t_eff_sd = _weighted([r.t_eff_h for r in sides], [r.t_eff_sd_h for r in sides], w)
    bed_gy, bed_sd = _weighted([r.bed.bed_gy for r in sides], [r.bed.sd_gy for r in sides], w)
    first = sides[0].bed
    g = (bed_gy - dose) * first.alpha_beta_gy / dose**2
    bed = Bed(bed_gy, bed_sd, dose, g, first.alpha_beta_gy, first.repair_half_time_h)
    return OrganCycleDose(KIDNEYS_COMBINED, sides[0].cycle, sides[0].administered_activity_mbq, dose, dose_sd, t_eff,
                          t_eff_sd, bed, float(total), "mass-weighted mean of " + " and ".join(r.organ for r in sides))


def organ_outputs(study: Study, rows: list[OrganCycleDose], warn: list[str]) -> tuple[list[dict] | None, dict]:
    """``organ_cycles.csv``'s rows (ORGAN_CYCLE_COLUMNS; None without any) and ``run.json``'s ``organs``.

    No kidney VOI in a cycle, or in any, is a warning (``warn`` and the log), not an error.
    """
    with_organs = [c.number for c in study.cycles if c.organs is not None]
    if not with_organs:
        message = ("no kidney VOI in any cycle: no organ_cycles.csv and no kidney BED (give [[cycles]] organs = "
                   "a segmentation with Kidney_L / Kidney_R or Kidneys)")
        log.warning("%s: %s", study.manifest, message)
        warn.append(message)
    for c in study.cycles:
        if c.organs is None and with_organs:
            message = f"cycle {c.number} has no kidney VOI: the cumulative kidney BED leaves it out"
            log.warning("%s: %s", study.manifest, message)
            warn.append(message)
    if not rows:
        return None, {}
    table = [r.row() for r in sorted(rows, key=lambda r: (r.organ, r.cycle))]
    summary = {}
    all_cycles = [c.number for c in study.cycles]
    for organ in sorted({r.organ for r in rows}):
        mine = sorted((r for r in rows if r.organ == organ), key=lambda r: r.cycle)
        total, sd = cumulative_bed([r.bed for r in mine], correlation=0.0)
        summary[organ] = {"cumulative_bed_gy": total, "cumulative_bed_sd_gy": sd,
                          "cumulative_dose_gy": float(sum(r.dose_gy for r in mine)),
                          "cycles": [r.cycle for r in mine], "complete": [r.cycle for r in mine] == all_cycles,
                          "alpha_beta_gy": mine[0].bed.alpha_beta_gy,
                          "repair_half_time_h": mine[0].bed.repair_half_time_h, "pvc": study.settings.kidney_pvc}
    return table, summary


def organ_files(study: Study) -> list[Path]:
    """The organ segmentations the run reads (for the inputs list and hashes)."""
    return [c.organs for c in study.cycles if c.organs is not None]
