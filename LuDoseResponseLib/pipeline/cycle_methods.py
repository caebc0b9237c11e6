"""How a cycle's tumour doses are obtained, chosen per cycle from what was imaged (issue 11).

- ``multi-spect``: several SPECTs; each tumour's VOI dose rates are integrated over time
  (:func:`LuDoseResponseLib.pipeline.patient.run_patient`).
- ``hybrid``: several ``[[cycles.planar]]`` conjugate views and one SPECT (Roth D et al., Med Phys
  2018;45:5004): the planar time–activity curve of each tumour gives the kinetics, scaled so that it equals
  the (PVC-corrected) SPECT VOI activity at the SPECT time; the dose-rate samples are the SPECT VOI dose rate
  scaled by the same planar kinetics, integrated like a multi-SPECT cycle
  (:func:`LuDoseResponseLib.dosimetry.hybrid.hybrid_cycle`; Buijs background correction).
- ``stp-hanscheid`` | ``stp-madsen`` | ``from-cycle-1``: one SPECT and the manifest's ``kinetics``
  (:func:`LuDoseResponseLib.dosimetry.reduced_imaging.reduced_imaging_dose`); ``from-cycle-1`` scales the same
  tumour's fitted dose-rate curve of cycle 1 (its shape, uptake included) to this cycle's SPECT, and its
  ``dose_sd_gy`` is that of the cycle-1 T_eff (fit SD) and of an assumed between-cycle change of the kinetics
  (20 % of T_eff) propagated through the single-time-point integral. The TIA is scaled the same way.

A cycle with one SPECT and neither planars nor ``kinetics`` has no measured kinetics and is refused; a
cycle with planars and several SPECTs is integrated from its SPECTs (the planars are not used, with a
warning). Single-SPECT cycles have no voxel dose map: their kinetics are known per tumour only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.dosimetry.hybrid import SpectReference, hybrid_cycle, read_planar_pairs
from LuDoseResponseLib.dosimetry.integration import TimeIntegral, time_integral, voi_mean_values
from LuDoseResponseLib.dosimetry.reduced_imaging import (
    earlier_curve_factor_h,
    earlier_cycle_t_eff,
    reduced_imaging_dose,
)
from LuDoseResponseLib.errors import InputError, LuDoseResponseError
from LuDoseResponseLib.imaging import image_like
from LuDoseResponseLib.pipeline.study import Cycle, Study
from LuDoseResponseLib.response.tumour_rows import TumourCycleDose

MULTI_SPECT = "multi-spect"
HYBRID = "hybrid"


def cycle_method(cycle: Cycle, manifest: str = "manifest") -> str:
    """The dosimetry method of one cycle (module docstring)."""
    if len(cycle.spect) >= 2:
        return MULTI_SPECT
    if cycle.planar:
        if cycle.ct is None:
            raise InputError(f"{manifest}: cycle {cycle.number} has planar images and one SPECT (the hybrid method), "
                             "but no ct: the planar attenuation correction needs the cycle's CT")
        return HYBRID
    if cycle.kinetics:
        return cycle.kinetics
    raise InputError(f"{manifest}: cycle {cycle.number} has one SPECT and neither [[cycles.planar]] images nor "
                     "kinetics, so the tumours' time–activity curves are unknown; add SPECTs or planars, or set "
                     "kinetics to stp-hanscheid, stp-madsen or from-cycle-1")


def choose_methods(study: Study) -> tuple[dict[int, str], list[str]]:
    """({cycle number: method}, warnings) for every cycle, before any pixel is read."""
    methods, warnings = {}, []
    for cycle in study.cycles:
        methods[cycle.number] = cycle_method(cycle, str(study.manifest))
        if methods[cycle.number] == MULTI_SPECT and cycle.planar:
            warnings.append(f"cycle {cycle.number}: has {len(cycle.spect)} SPECTs, so its doses are integrated from "
                            f"them; its {len(cycle.planar)} planar image(s) are not used")
        elif methods[cycle.number] != MULTI_SPECT:
            warnings.append(f"cycle {cycle.number}: one SPECT ({methods[cycle.number]}); no voxel dose map is written, "
                            "the kinetics are known per tumour only")
    return methods, warnings


@dataclass(frozen=True)
class SpectVois:
    """The tumours at the cycle's one SPECT: VOI activity (MBq) and mean dose rate (Gy/h), both
    partial-volume corrected, and mass (g)."""

    time_h: float
    activity_mbq: dict[str, float]
    dose_rate_gy_per_h: dict[str, float]
    mass_g: dict[str, float]

    @classmethod
    def measure(cls, time_h: float, activity: sitk.Image, rate: sitk.Image, masks: Mapping[str, np.ndarray],
                pvc: Mapping[str, float], vox_ml: float, density: np.ndarray | None, cycle: int) -> SpectVois:
        act, dose_rate, mass = {}, {}, {}
        for name, m in masks.items():
            what = f"tumour {name!r}, cycle {cycle}"
            rate_mean = float(voi_mean_values([rate], m, what=what)[0])
            if rate_mean < 0:
                raise InputError(f"{what}: the mean dose rate in the VOI is negative; check the dose-rate map")
            dose_rate[name] = rate_mean * pvc[name]
            act[name] = float(voi_mean_values([activity], m, what=what)[0]) * pvc[name] * m.sum() * vox_ml * 1e-6
            mass[name] = float(m.sum() * vox_ml * (float(density[m].mean()) if density is not None else 1.0))
        return cls(float(time_h), act, dose_rate, mass)


def _with(dose: TumourCycleDose, **diagnostics) -> TumourCycleDose:
    return dataclasses.replace(dose, diagnostics={**dose.diagnostics, **diagnostics})


def tag_method(doses: Sequence[TumourCycleDose], method: str) -> list[TumourCycleDose]:
    """The doses with their cycle's method in the ``dosimetry_method`` diagnostics column of tumour_cycles.csv."""
    return [_with(d, dosimetry_method=method) for d in doses]


def hybrid_doses(cycle: Cycle, spect: SpectVois, ct_hu: sitk.Image, masks: Mapping[str, np.ndarray],
                 reference: sitk.Image, integration: Mapping, warn: list[str],
                 fitted: dict[tuple[int, str], TimeIntegral]) -> list[TumourCycleDose]:
    """Per-tumour doses of a hybrid cycle; the fitted dose integrals go into ``fitted`` (for from-cycle-1)."""
    where = f"cycle {cycle.number} planar images ({', '.join(str(p.anterior) for p in cycle.planar)})"
    try:
        result = hybrid_cycle(read_planar_pairs(cycle.planar),
                              SpectReference(spect.time_h, spect.activity_mbq, spect.dose_rate_gy_per_h), ct_hu,
                              {n: image_like(m.astype(np.uint8), reference) for n, m in masks.items()})
    except LuDoseResponseError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    warn += [f"cycle {cycle.number}: {w}" for w in dict.fromkeys(result.warnings)]
    doses = []
    for name, tumour in result.tumours.items():
        what = f"tumour {name!r}, cycle {cycle.number} (hybrid)"
        d = time_integral(tumour.times_h, tumour.dose_rate_gy_per_h, what=what, **integration)
        warn += list(d.warnings)
        d = dataclasses.replace(d, warnings=(*d.warnings, *tumour.warnings))   # the row carries the planar ones too
        tia = time_integral(tumour.times_h, tumour.activity_mbq, what=what, **integration)
        fitted[(cycle.number, name)] = d
        doses.append(_with(TumourCycleDose.from_integral(name, cycle.number, d, tia=tia, mass_g=spect.mass_g[name]),
                           spect_time_h=spect.time_h, hybrid_scale_factor=tumour.scale_factor))
    return doses


def reduced_doses(cycle: Cycle, method: str, spect: SpectVois, warn: list[str],
                  fitted: Mapping[tuple[int, str], TimeIntegral]) -> list[TumourCycleDose]:
    """Per-tumour doses of a single-SPECT cycle with the manifest's ``kinetics``; the TIA is the same
    integral of the VOI activity."""
    doses = []
    for name, rate in spect.dose_rate_gy_per_h.items():
        what = f"tumour {name!r}, cycle {cycle.number} ({method})"
        kwargs = {"population_t_eff_h": cycle.population_t_eff_h,
                  "population_t_eff_sd_h": cycle.population_t_eff_sd_h or 0.0, "what": what}
        if method == "from-cycle-1":
            if (1, name) not in fitted:
                raise InputError(f"{what}: cycle 1 has no dose-rate curve for this tumour; from-cycle-1 needs the "
                                 "tumour in cycle 1's segmentation")
            earlier = fitted[(1, name)]
            t_eff, t_eff_sd = earlier_cycle_t_eff(earlier, what=f"tumour {name!r}, cycle 1")
            kwargs.update(earlier_t_eff_h=t_eff, earlier_t_eff_sd_h=t_eff_sd,
                          earlier_factor_h=earlier_curve_factor_h(earlier, spect.time_h))
        d = reduced_imaging_dose(method, spect.time_h, rate, **kwargs)
        tia = reduced_imaging_dose(method, spect.time_h, spect.activity_mbq[name], **kwargs)
        warn += list(d.warnings)
        doses.append(_with(TumourCycleDose.from_integral(name, cycle.number, d, tia=tia, mass_g=spect.mass_g[name]),
                           spect_time_h=spect.time_h))
    return doses
