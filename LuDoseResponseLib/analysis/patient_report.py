"""One patient's dosimetry page (``report.html`` in the dosimetry output folder), self-contained.

Read from the folder ``ludoseresponse dosimetry`` writes: ``run.json`` (patient, settings, the study
with its CT and segmentation paths, warnings), ``tumours.csv``, ``tumour_cycles.csv``,
``time_points.csv`` and ``dose_cycle<N>.nrrd``. The page opens with the patient's result in words,
then the tumour table (doses until best response and over all cycles, volumes, Δv, responder), the
per-cycle doses with the fitted model, per cycle the time–activity and dose-rate curves with their
fits and 95 % bands, and per cycle dose-map slices over the CT (:mod:`.patient_figures`). Warnings
stand in the Notes column of the row they concern; the run's other warnings and the settings follow.
A missing CT or segmentation leaves the dose map without that layer and says so, never stops the page.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from LuDoseResponseLib.analysis.patient_figures import DPI, curves_figure, slices_figure
from LuDoseResponseLib.analysis.report_format import (
    MISSING,
    esc,
    gy,
    num,
    page,
    pct,
    png_html,
    table,
    warnings_list,
    yes_no,
)
from LuDoseResponseLib.defaults import RESPONDER_THRESHOLD
from LuDoseResponseLib.errors import InputError, LuDoseResponseError
from LuDoseResponseLib.files import write_text_atomic

log = logging.getLogger(__name__)

PATIENT_REPORT = "report.html"
_DOSE_MAP = re.compile(r"dose_cycle(\d+)\.nrrd$")
_SETTING_LABELS = {"dose_method": "Dose-rate method", "density_correction": "Density correction from CT",
                   "pvc": "Partial-volume correction", "psf_fwhm_mm": "PSF FWHM (mm)",
                   "integration": "Time-integration model", "tail": "Tail after the last time point"}


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as a CSV table ({exc}); re-run the dosimetry") from None


def _cell_warnings(cell) -> list[str]:
    return [w for w in str(cell).split(" | ") if w and w != "nan"] if isinstance(cell, str) else []


def _notes(*cells) -> str:
    items = [w for c in cells for w in _cell_warnings(c)]
    return "<br>".join(f"<span class='warn-inline'>⚠ {esc(w)}</span>" for w in items)


def _answer(run: dict, tumours: pd.DataFrame) -> str:
    patient = run.get("patient") or {}
    cycles = (run.get("study") or {}).get("cycles") or []
    admin = ", ".join(f"{num(c.get('activity_mbq', 0) / 1000)} GBq on {str(c.get('administered_at', ''))[:10]}"
                      for c in cycles)
    n = len(tumours)
    resp = int(tumours["responder"].sum()) if n else 0
    small = int(tumours.get("below_min_baseline_volume", pd.Series(dtype=int)).fillna(0).astype(int).sum())
    doses = tumours["dose_gy"] if n else pd.Series(dtype=float)
    text = (f"Patient {patient.get('id', '?')} ({patient.get('grade') or 'grade not given'}): {len(cycles)} "
            f"cycle(s) ({admin}). {n} tumour(s); cumulative absorbed dose until best response "
            f"{gy(doses.min(), 3)} to {gy(doses.max(), 3)} Gy; {resp} of {n} responders (volume reduction Δv of at "
            f"least {pct(RESPONDER_THRESHOLD)}).")
    if small:
        text += (f" {small} tumour(s) below the minimum baseline volume are left out of the cohort statistics.")
    return f"<div class='answer' id='answer'><p>{esc(text)}</p></div>"


def _tumour_table(tumours: pd.DataFrame) -> str:
    rows = []
    for r in tumours.itertuples(index=False):
        d = r._asdict()
        sd = d.get("dose_gy_sd")
        rows.append([esc(d["tumor"]), num(d.get("baseline_volume_cm3")), num(d.get("vmin_cm3")), pct(d.get("dv")),
                     yes_no(bool(d.get("responder"))),
                     f"{gy(d.get('dose_gy'))}" + (f" ± {gy(sd, 2)}" if sd == sd and sd is not None else ""),
                     gy(d.get("dose_all_cycles_gy")), num(d.get("activity_gbq")),
                     esc(d.get("n_cycles_until_best_response", MISSING)),
                     _notes(d.get("warnings")) + ("<br>below the minimum baseline volume"
                                                  if d.get("below_min_baseline_volume") == 1 else "")])
    return table(["Tumour", "Baseline volume (cm³)", "Smallest volume (cm³)", "Volume reduction Δv", "Responder",
                  "Dose until best response (Gy ± SD)", "Dose over all cycles (Gy)", "Activity until best response "
                  "(GBq)", "Cycles until best response", "Notes"], rows)


def _cycle_table(cycles: pd.DataFrame) -> str:
    rows = []
    for r in cycles.itertuples(index=False):
        d = r._asdict()
        sd = d.get("dose_sd_gy")
        rows.append([esc(d["tumor"]), esc(d["cycle"]),
                     gy(d.get("dose_gy")) + (f" ± {gy(sd, 2)}" if sd == sd and sd is not None else ""),
                     num(d.get("tia_mbq_h")), num(d.get("mass_g")), esc(d.get("model", MISSING)),
                     num(d.get("t_eff_h")), _notes(d.get("warnings"))])
    return table(["Tumour", "Cycle", "Dose (Gy ± SD)", "Time-integrated activity (MBq·h)", "Mass (g)", "Fitted model",
                  "Effective half-life (h)", "Notes"], rows)


def _dose_maps(folder: Path) -> dict[int, Path]:
    maps = {int(m.group(1)): p for p in folder.iterdir() if (m := _DOSE_MAP.search(p.name))}
    return dict(sorted(maps.items()))


def _ct_on_grid(cycle: dict, reference: sitk.Image, cache: dict) -> tuple[np.ndarray | None, str]:
    path = cycle.get("ct")
    if not path:
        return None, "no CT in the study"
    key = (path, cycle.get("ct_series_uid"))
    try:
        if key not in cache:
            from LuDoseResponseLib.io import dicom

            cache[key] = dicom.read_volume(path, cycle.get("ct_series_uid")).image
        ct = sitk.Resample(cache[key], reference, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    except (LuDoseResponseError, OSError, RuntimeError) as exc:
        return None, f"CT {path} not shown: {exc}"
    return sitk.GetArrayFromImage(ct), ""


def _masks_on_grid(cycle: dict, reference: sitk.Image) -> tuple[dict[str, np.ndarray], str]:
    path = cycle.get("tumours")
    if not path:
        return {}, ""
    try:
        from LuDoseResponseLib.response.volumetry import read_segmentation

        seg = read_segmentation(path)
        out = {}
        for name in seg.names:
            m = sitk.GetImageFromArray(seg.mask(name).astype(np.uint8))
            m.CopyInformation(seg.image if seg.n_layers == 1 else
                              sitk.VectorIndexSelectionCast(seg.image, 0))
            m = sitk.Resample(m, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
            out[name] = sitk.GetArrayFromImage(m) > 0
    except (LuDoseResponseError, OSError, RuntimeError) as exc:
        return {}, f"tumour outlines not shown: {exc}"
    return out, ""


def _cycle_sections(folder: Path, run: dict, points: pd.DataFrame | None) -> str:
    cycles = {int(c["number"]): c for c in (run.get("study") or {}).get("cycles") or []}
    maps = _dose_maps(folder)
    numbers = sorted(set(cycles) | set(maps))
    ct_cache: dict = {}
    parts = []
    for n in numbers:
        parts.append(f"<h3>Cycle {n}</h3>")
        if points is not None and (points["cycle"] == n).any():
            parts.append(png_html(curves_figure(points, n),
                                  f"Cycle {n}: tumour activity (left) and mean dose rate (right) at each SPECT time "
                                  "point (markers), the fitted curve (line) and its 95 % band (shaded).", DPI,
                                  f"curves-cycle{n}"))
        else:
            parts.append("<p class='note'>No time points recorded for this cycle (time_points.csv missing).</p>")
        if n in maps:
            dose = sitk.ReadImage(str(maps[n]), sitk.sitkFloat32)
            ct, ct_note = _ct_on_grid(cycles.get(n, {}), dose, ct_cache)
            masks, mask_note = _masks_on_grid(cycles.get(n, {}), dose)
            sx, sy, sz = dose.GetSpacing()
            png = slices_figure(sitk.GetArrayFromImage(dose), (sz, sy, sx), ct, masks,
                                f"Cycle {n}: absorbed dose over CT, through the hottest tumour voxel")
            parts.append(png_html(png, f"Cycle {n}: dose map (colour, Gy) over the CT (grey) with the tumour "
                                       "outlines; axial slice with the patient's right on the left.", DPI,
                                  f"dose-cycle{n}"))
            parts.append(warnings_list([x for x in (ct_note, mask_note) if x], "Not shown"))
        else:
            parts.append("<p class='note'>No dose map for this cycle (fewer than 2 time points).</p>")
    return "<section id='cycles'><h2>Per cycle: curves and dose maps</h2>" + "".join(parts) + "</section>"


def _settings(run: dict) -> str:
    rows = [[esc(_SETTING_LABELS.get(k, k.replace("_", " "))), esc(yes_no(v) if isinstance(v, bool) else v)]
            for k, v in (run.get("settings") or {}).items()]
    rows.append(["Software", esc(f"{run.get('software', '')} {run.get('version', '')}")])
    inputs = "".join(f"<li><code>{esc(i.get('path'))}</code> (SHA-256 {esc(str(i.get('sha256', ''))[:12])}…)</li>"
                     for i in run.get("inputs") or [])
    return ("<section id='settings'><h2>Settings and inputs</h2>" + table(["Setting", "Value"], rows)
            + f"<ul class='note'>{inputs}</ul></section>")


def patient_report_html(folder: str | Path) -> str:
    """The page of the dosimetry output in ``folder`` as HTML text."""
    folder = Path(folder)
    run_path = folder / "run.json"
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_path} cannot be read ({exc}); re-run the dosimetry") from None
    tumours = _read_csv(folder / "tumours.csv")
    cycles = _read_csv(folder / "tumour_cycles.csv")
    points = _read_csv(folder / "time_points.csv")
    if tumours is None or cycles is None:
        raise InputError(f"{folder} lacks tumours.csv or tumour_cycles.csv; re-run the dosimetry")
    shown = {w for cell in list(tumours.get("warnings", [])) + list(cycles.get("warnings", []))
             for w in _cell_warnings(cell)}
    other = [w for w in run.get("warnings") or [] if w not in shown]
    patient = (run.get("patient") or {}).get("id", "")
    body = "".join([
        f"<h1>LuDoseResponse: dosimetry of patient {esc(patient)}</h1>", _answer(run, tumours),
        "<section id='tumours'><h2>Tumours</h2>", _tumour_table(tumours), "</section>",
        "<section id='tumour_cycles'><h2>Dose per cycle</h2>", _cycle_table(cycles), "</section>",
        _cycle_sections(folder, run, points),
        "<section id='warnings'><h2>Other warnings of the run</h2>",
        warnings_list(other, "Read with care") or "<p>None.</p>", "</section>", _settings(run),
    ])
    return page(f"LuDoseResponse patient {patient}", body)


def write_patient_report(folder: str | Path) -> Path:
    """Write ``report.html`` for the dosimetry output in ``folder`` (atomically); returns its path."""
    folder = Path(folder)
    return write_text_atomic(folder / PATIENT_REPORT, patient_report_html(folder))
