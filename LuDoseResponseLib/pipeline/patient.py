"""The patient pipeline: a validated manifest → per-tumour doses and response (contracts/study-manifest.md).

manifest (:func:`study.load_manifest`, validated before any pixel is read) → per cycle and time point:
quantification (counts → Bq/mL) → dose rate (kernel or LED, density from the CT; the kernel and its FFT
are cached across time points) → per tumour: time integral of the VOI-mean dose rate, TIA, mass → cycle
sums and volumetry (:func:`response.tumour_rows.tumour_rows`) → ``tumour_cycles.csv``, ``tumours.csv``,
``dose_cycle<N>.nrrd``, ``run.json``, the samples and fits ``time_points.csv`` (:mod:`.time_points`) and
the patient's page ``report.html`` (:mod:`analysis.patient_report`). The method is chosen per cycle
(:mod:`.cycle_methods`): several SPECTs as above; planars and one SPECT the hybrid way; one SPECT with the
manifest's ``kinetics`` by reduced imaging; it is the ``dosimetry_method`` column of ``tumour_cycles.csv``.
``time_points.csv`` holds the samples of multi-SPECT cycles only.

PVC (``settings.pvc``, at ``settings.psf_fwhm_mm``): ``rc`` or ``gtm`` correct each tumour's VOI mean
activity at every time point (:func:`dosimetry.pvc_correction.correct_partial_volume`); the VOI's mean
dose rate is scaled by the same factor, as the paper applies PVC to VOI activities, and the cycle's dose
map is scaled inside each tumour by the ratio of its corrected to its uncorrected dose
(:func:`dosimetry.pvc_correction.scale_dose_map`); voxels outside tumours are not changed.

Kidneys (organ VOIs of a cycle, :mod:`.organs`): dose, effective half-life and BED per cycle from the same
dose-rate maps → ``organ_cycles.csv`` and the cumulative BED in ``run.json`` ``organs``.

Outputs are published as one set (:mod:`LuDoseResponseLib.output_set`: staged beside ``out_dir`` and
swapped in with one rename), so ``out_dir`` holds the previous run or the new one, never a mix; inputs
are never written, and ``out_dir`` is checked before any pixel is read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib import __version__
from LuDoseResponseLib.dosimetry.doserate import dose_rate_map
from LuDoseResponseLib.dosimetry.integration import time_integral, voi_mean_values
from LuDoseResponseLib.dosimetry.pvc_correction import correct_partial_volume, scale_dose_map
from LuDoseResponseLib.dosimetry.quantification import quantify_spect
from LuDoseResponseLib.dosimetry.voxelwise_integration import voxelwise_time_integral
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import csv_text, record_columns
from LuDoseResponseLib.imaging import image_like, voxel_volume_ml
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.write import write_nrrd
from LuDoseResponseLib.output_set import check_output_folder, output_set
from LuDoseResponseLib.physics.density import density_on_grid
from LuDoseResponseLib.pipeline.cycle_methods import (
    HYBRID,
    MULTI_SPECT,
    SpectVois,
    choose_methods,
    hybrid_doses,
    reduced_doses,
    tag_method,
)
from LuDoseResponseLib.pipeline.organ_names import is_organ
from LuDoseResponseLib.pipeline.organs import ORGAN_CYCLE_COLUMNS, cycle_organ_doses, organ_files, organ_outputs
from LuDoseResponseLib.pipeline.study import Cycle, Study, load_manifest
from LuDoseResponseLib.pipeline.time_points import COLUMNS as TIME_POINT_COLUMNS
from LuDoseResponseLib.pipeline.time_points import time_point_rows, time_points_table
from LuDoseResponseLib.response.tumour_rows import (
    CYCLE_COLUMNS,
    TUMOUR_COLUMNS,
    CycleAdministration,
    TumourCycleDose,
    tumour_cycle_records,
    tumour_records,
)
from LuDoseResponseLib.response.volumetry import read_segmentation, segment_names, volumes_over_time

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


def _pvc_factors(study: Study, activity: sitk.Image, masks: dict[str, np.ndarray], key: str,
                 warn: list[str]) -> dict[str, float]:
    """Per-tumour partial-volume factors (corrected / measured VOI mean) of one time point.

    As in the paper, PVC corrects VOI activities; the VOI's dose rate is scaled by the same factor.
    """
    if study.settings.pvc == "none":
        return {name: 1.0 for name in masks}
    images = {name: image_like(m.astype(np.uint8), activity) for name, m in masks.items()}
    result = correct_partial_volume(activity, images, pvc=study.settings.pvc,
                                    psf_fwhm_mm=study.settings.psf_fwhm_mm)
    warn += [f"{key}: {w}" for w in result.warnings]
    return result.scale_factors()


def _masks_on_grid(cycle: Cycle, reference: sitk.Image) -> dict[str, np.ndarray]:
    """Each tumour's mask on the SPECT grid (nearest-neighbour resampling when the grids differ)."""
    seg = read_segmentation(cycle.tumours, reference=cycle.tumours_reference)
    out = {}
    for name in (n for n in seg.names if not is_organ(n)):   # organ segments are not tumours
        arr = seg.mask_on(name, reference)
        if not arr.any():
            raise InputError(f"{cycle.tumours}: tumour {name!r} has no voxel on the SPECT grid of cycle "
                             f"{cycle.number}; check the segmentation and its registration")
        out[name] = arr
    return out


def _integration_kwargs(study: Study) -> dict:
    s = study.settings
    if s.integration == "trapezoid":
        return {"method": "trapezoid", "tail": s.tail}
    return {"method": "fit", "model": s.integration, "tail": s.tail}


def _cycle(study: Study, cycle: Cycle, progress: Progress | None, warn: list[str], organ_doses: list,
           method: str, fitted: dict, points: list[dict], rate_maps: dict | None):
    s = study.settings
    ct = dicom.read_volume(cycle.ct, cycle.ct_series_uid).image if cycle.ct is not None else None
    density = None
    rates, activities, times = [], [], []
    for i, tp in enumerate(cycle.spect):
        raw = tp.load_image()
        q = quantify_spect(raw, units=tp.units, calibration_cps_per_mbq=cycle.calibration_cps_per_mbq,
                           duration_s=tp.duration_s, name=tp.key)
        warn += list(q.warnings)
        if ct is not None and s.density_correction and density is None:
            density = image_like(density_on_grid(ct, q.image, unit="hu"), q.image)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rates.append(dose_rate_map(q.image, s.dose_method, density if s.density_correction else None,
                                       density_unit="g_per_cm3"))
        warn += [f"{tp.key}: {w.message}" for w in caught]
        if rate_maps is not None:
            rate_maps[(cycle.number, tp.hours_since_administration)] = rates[-1]
        activities.append(q.image)
        times.append(tp.hours_since_administration)
        if progress:
            progress(f"cycle {cycle.number}", (i + 1) / len(cycle.spect))
    masks = _masks_on_grid(cycle, rates[0])
    organ_doses += cycle_organ_doses(study, cycle, rates, activities, times, density, masks, warn)
    factors = [_pvc_factors(study, a, masks, tp.key, warn) for a, tp in zip(activities, cycle.spect, strict=True)]
    rho = sitk.GetArrayViewFromImage(density) if density is not None else None
    vox_ml = voxel_volume_ml(rates[0])
    if method != MULTI_SPECT:  # one SPECT: the kinetics come from the planars or the manifest (cycle_methods)
        spect = SpectVois.measure(times[0], activities[0], rates[0], masks, factors[0], vox_ml, rho, cycle.number)
        if method == HYBRID:
            return hybrid_doses(cycle, spect, ct, masks, rates[0], _integration_kwargs(study), warn, fitted), None
        return reduced_doses(cycle, method, spect, warn, fitted), None
    doses, map_factors = [], {}
    for name, m in masks.items():
        what = f"tumour {name!r}, cycle {cycle.number}"
        pvc = np.array([f[name] for f in factors])
        rate_means = voi_mean_values(rates, m, what=what)
        if np.any(rate_means < 0):
            raise InputError(f"{what}: the mean dose rate in the VOI is negative; check the dose-rate maps")
        d = time_integral(times, rate_means * pvc, what=what, **_integration_kwargs(study))
        measured_mbq = voi_mean_values(activities, m, what=what) * m.sum() * vox_ml * 1e-6
        activity_mbq = measured_mbq * pvc
        tia = time_integral(times, activity_mbq, what=what, **_integration_kwargs(study))
        mass_g = float(m.sum() * vox_ml * (float(rho[m].mean()) if rho is not None else 1.0))
        warn += list(d.warnings)
        fitted[(cycle.number, name)] = d
        doses.append(TumourCycleDose.from_integral(name, cycle.number, d, tia=tia, mass_g=mass_g))
        points += time_point_rows(study.patient.id, name, cycle.number, times, activity_mbq, measured_mbq,
                                  rate_means * pvc, tia, d)
        if np.any(pvc != 1.0):
            plain = time_integral(times, rate_means, what=what, **_integration_kwargs(study))
            map_factors[name] = d.value / plain.value if plain.value > 0 else 1.0
    dose_map = None
    if len(times) >= 2:
        # FFT round-off leaves dose rates of order -1e-7 of the peak far from activity; the voxel-wise
        # integral refuses negative samples, so the map is integrated from the rates clipped at 0
        arrays = [np.maximum(sitk.GetArrayViewFromImage(r), 0) for r in rates]
        body = np.any([a > 0 for a in arrays], axis=0)
        vw = voxelwise_time_integral(times, [image_like(a, rates[0]) for a in arrays], model="mono", tail=s.tail,
                                     mask=body, what=f"cycle {cycle.number} dose map")
        dose_map = vw.integral_image()
        if map_factors:
            dose_map = scale_dose_map(dose_map, {n: image_like(m.astype(np.uint8), dose_map) for n, m in masks.items()},
                                      {n: map_factors.get(n, 1.0) for n in masks})
    return doses, dose_map


def _followed(study: Study) -> list[str] | None:
    """The baseline's segments less its organ VOIs; None (every segment) when it names no organ."""
    names = segment_names(study.followups[0].tumours) or ()
    return [n for n in names if not is_organ(n)] if any(map(is_organ, names)) else None


def patient_page_available() -> bool:
    """The patient page is drawn with pandas and matplotlib; the doses need neither (Slicer ships neither)."""
    return all(importlib.util.find_spec(name) is not None for name in ("pandas", "matplotlib"))


def sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _inputs(study: Study) -> list[Path]:
    paths = [study.manifest]
    for c in study.cycles:
        paths += [c.tumours] + ([c.ct] if c.ct else []) + [t.path for t in c.spect]
        paths += [f for pair in c.planar for f in (pair.anterior, pair.posterior)]
    paths += [f.tumours for f in study.followups] + organ_files(study)
    paths += [s.tumours_reference.path for s in (*study.cycles, *study.followups) if s.tumours_reference]
    paths += [c.organs_reference.path for c in study.cycles if c.organs_reference]
    return list(dict.fromkeys(paths))


def dose_rate_map_name(cycle: int, hours: float) -> str:
    """The file of one SPECT time point's dose-rate map (Gy/h) among the outputs."""
    return f"dose_rate_cycle{cycle}_{hours:.1f}h.nrrd"


def run_patient(manifest: str | Path, out_dir: str | Path, *, rtdose: bool = False, dose_rate_maps: bool = False,
                progress: Progress | None = None) -> dict[str, Path]:
    """Run the whole chain for one manifest and publish its outputs in ``out_dir``; returns the paths.

    ``rtdose``: also each cycle's dose map as DICOM RTDOSE; ``dose_rate_maps``: also the dose-rate map
    (Gy/h) of every SPECT time point (:func:`dose_rate_map_name`)."""
    study = load_manifest(manifest)
    if not study.followups:
        raise InputError(f"{study.manifest}: no [[followups]]; tumours.csv needs the baseline and follow-up CT "
                         "segmentations")
    out = Path(out_dir)
    inputs = _inputs(study)
    for p in inputs:
        if p.is_dir() and (out.resolve() == p.resolve() or p.resolve() in out.resolve().parents):
            raise InputError(f"output folder {out} is inside the input {p}; choose another output folder")
    check_output_folder(out, inputs)
    methods, method_warnings = choose_methods(study)
    warn: list[str] = list(study.warnings) + method_warnings
    doses, maps, organ_doses, fitted, points = [], {}, [], {}, []
    rate_maps = {} if dose_rate_maps else None
    for cycle in study.cycles:
        d, m = _cycle(study, cycle, progress, warn, organ_doses, methods[cycle.number], fitted,
                      points, rate_maps)
        doses += tag_method(d, methods[cycle.number])
        maps[cycle.number] = m
    volumes = volumes_over_time([(f.date, read_segmentation(f.tumours, reference=f.tumours_reference))
                                 for f in study.followups], tumours=_followed(study))
    admins = [CycleAdministration(c.number, c.administered_at, c.activity_mbq) for c in study.cycles]
    cycle_rows = tumour_cycle_records(study.patient.id, doses)
    tumour_table = tumour_records(study.patient.id, study.patient.grade, admins, doses, volumes)
    warn += [w for row in tumour_table for w in str(row["warnings"]).split(" | ") if w]
    organ_table, organ_run = organ_outputs(study, organ_doses, warn)
    page = patient_page_available()
    if not page:
        warn.append("the patient page report.html is not written: it needs pandas and matplotlib, which are not "
                    "installed (every other output is)")
    with output_set(out, command="dosimetry", inputs=inputs) as run_set:
        staging = run_set.stage
        (staging / "tumour_cycles.csv").write_text(csv_text(cycle_rows, record_columns(cycle_rows, CYCLE_COLUMNS)),
                                                   encoding="utf-8")
        (staging / "tumours.csv").write_text(csv_text(tumour_table, TUMOUR_COLUMNS), encoding="utf-8")
        if organ_table is not None:
            (staging / "organ_cycles.csv").write_text(csv_text(organ_table, ORGAN_CYCLE_COLUMNS), encoding="utf-8")
        (staging / "time_points.csv").write_text(csv_text(time_points_table(points), TIME_POINT_COLUMNS),
                                                 encoding="utf-8")
        for (n, hours), img in (rate_maps or {}).items():
            write_nrrd(img, staging / dose_rate_map_name(n, hours), inputs=inputs)
        for n, img in maps.items():
            if img is not None:
                write_nrrd(img, staging / f"dose_cycle{n}.nrrd", inputs=inputs)
                if rtdose:
                    from LuDoseResponseLib.io.write import write_rtdose

                    cyc = next(c for c in study.cycles if c.number == n)
                    write_rtdose(img, staging / f"dose_cycle{n}.dcm", source=cyc.spect[0].metadata)
        run = {"software": "LuDoseResponse", "version": __version__, "patient": study.patient.to_dict(),
               "settings": study.settings.to_dict(), "study": study.to_dict(),
               "cycle_methods": {str(n): m for n, m in methods.items()},
               "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
               "overrides": list(study.overrides), "organs": organ_run, "warnings": list(dict.fromkeys(warn))}
        (staging / "run.json").write_text(json.dumps(run, indent=2, default=str), encoding="utf-8")
        if page:
            from LuDoseResponseLib.analysis.patient_report import write_patient_report

            write_patient_report(staging)
    published = dict(run_set.files)
    log.info("patient %s: %d tumours, %d cycles -> %s", study.patient.id, len(tumour_table), len(study.cycles), out)
    return published
