"""A patient's measured cycles, read from a dosimetry output folder (``ludoseresponse dosimetry``).

Reads ``run.json`` (patient id and grade, the administered activity of each cycle),
``tumour_cycles.csv`` (per tumour and cycle: ``dose_gy``, ``dose_sd_gy``, ``mass_g``) and
``organ_cycles.csv`` (per kidney VOI and cycle: ``administered_activity_mbq``, ``dose_gy``,
``dose_sd_gy``, ``t_eff_h``, ``bed_gy``, ``bed_sd_gy``). Every structure needs a dose in every
administered cycle; problems name the file, row and column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from LuDoseResponseLib.defaults import GRADES
from LuDoseResponseLib.dosimetry.bed import KIDNEY_ALPHA_BETA_GY, KIDNEY_REPAIR_HALF_TIME_H, bed_mono_exponential
from LuDoseResponseLib.errors import InputError

KIDNEY_ORGANS = ("Kidney_L", "Kidney_R", "Kidneys")
TUMOUR_FILE, ORGAN_FILE, RUN_FILE = "tumour_cycles.csv", "organ_cycles.csv", "run.json"


@dataclass(frozen=True)
class MeasuredCycles:
    """One structure's measured cycles (sorted by cycle); BED columns for kidneys only."""

    name: str
    cycles: tuple[int, ...]
    activity_gbq: tuple[float, ...]
    dose_gy: tuple[float, ...]
    dose_sd_gy: tuple[float, ...]
    mass_g: float | None = None
    t_eff_h: tuple[float, ...] = ()
    bed_gy: tuple[float, ...] = ()
    bed_sd_gy: tuple[float, ...] = ()


@dataclass(frozen=True)
class PatientDosimetry:
    """What the planner needs of one patient: grade, administered cycles, tumours and kidneys."""

    patient_id: str
    grade: str | None
    activity_gbq: dict[int, float]
    tumours: tuple[MeasuredCycles, ...]
    kidneys: tuple[MeasuredCycles, ...]
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _number(value, where: str, *, positive: bool = False, optional: bool = False) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        if optional:
            return None
        raise InputError(f"{where}: {value!r} is not a number")
    if x < 0 or (positive and x == 0):
        raise InputError(f"{where}: {x:g} must be {'> 0' if positive else '>= 0'}")
    return x


def _read_csv(path: Path, required: tuple[str, ...]):
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path} cannot be read as a CSV table: {exc}") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path} lacks the column(s) {', '.join(missing)}")
    return table


def read_run(folder: Path) -> tuple[str, str | None, dict[int, float]]:
    """(patient id, grade, {cycle: activity GBq}) from ``run.json``."""
    path = folder / RUN_FILE
    if not path.is_file():
        raise InputError(f"{folder} is not a dosimetry output folder: it has no {RUN_FILE}")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        patient = run["patient"]
        cycles = run["study"]["cycles"]
        activities = {int(c["number"]): c["activity_mbq"] for c in cycles}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} lacks the patient or the cycles' activities ({exc!r}); re-run the "
                         "dosimetry") from None
    gbq = {n: _number(a, f"{path}: cycle {n} activity_mbq", positive=True) / 1000.0 for n, a in activities.items()}
    if not gbq:
        raise InputError(f"{path} lists no cycles")
    grade = patient.get("grade")
    if grade is not None and grade not in GRADES:
        raise InputError(f"{path}: unknown grade {grade!r}; expected one of {GRADES}")
    return str(patient.get("id")), grade, dict(sorted(gbq.items()))


def _structures(path: Path, table, name_column: str, activities: dict[int, float]) -> dict[str, list[dict]]:
    rows: dict[str, dict[int, dict]] = {}
    for i, row in table.iterrows():
        where = f"{path}, row {i + 2}"
        name = str(row[name_column]).strip()
        try:
            cycle = int(str(row["cycle"]).strip())
        except ValueError:
            raise InputError(f"{where}, column 'cycle': {row['cycle']!r} is not a cycle number") from None
        if cycle not in activities:
            raise InputError(f"{where}: cycle {cycle} of {name!r} was not administered (run.json lists "
                             f"{sorted(activities)})")
        if cycle in rows.setdefault(name, {}):
            raise InputError(f"{where}: {name!r} has two rows for cycle {cycle}")
        rows[name][cycle] = dict(row, _where=where)
    for name, per_cycle in rows.items():
        missing = [n for n in activities if n not in per_cycle]
        if missing:
            raise InputError(f"{path}: {name!r} has no dose for cycle(s) {missing}; the planner needs every "
                             "administered cycle's dose to know what was received")
    return {name: [per_cycle[n] for n in sorted(per_cycle)] for name, per_cycle in rows.items()}


def _dose_sd(row: dict, column: str, warnings: list[str]) -> float:
    sd = _number(row.get(column, ""), f"{row['_where']}, column {column!r}", optional=True)
    if sd is None:
        warnings.append(f"{row['_where']}: no {column}; taken as 0 (the measured dose is treated as exact)")
        return 0.0
    return sd


def read_tumours(folder: Path, activities: dict[int, float], warnings: list[str]) -> tuple[MeasuredCycles, ...]:
    path = folder / TUMOUR_FILE
    if not path.is_file():
        raise InputError(f"{folder} has no {TUMOUR_FILE}: the planner needs the tumours' doses per cycle")
    table = _read_csv(path, ("tumor", "cycle", "dose_gy", "dose_sd_gy"))
    out = []
    for name, rows in _structures(path, table, "tumor", activities).items():
        mass = _number(rows[0].get("mass_g", ""), f"{rows[0]['_where']}, column 'mass_g'", optional=True)
        out.append(MeasuredCycles(
            name, tuple(int(r["cycle"]) for r in rows), tuple(activities[int(r["cycle"])] for r in rows),
            tuple(_number(r["dose_gy"], f"{r['_where']}, column 'dose_gy'") for r in rows),
            tuple(_dose_sd(r, "dose_sd_gy", warnings) for r in rows), mass_g=mass))
    if not out:
        raise InputError(f"{path} holds no tumour")
    return tuple(out)


def _kidney_bed(row: dict, dose: float, t_eff: float, warnings: list[str]) -> tuple[float, float]:
    where = row["_where"]
    bed = _number(row.get("bed_gy", ""), f"{where}, column 'bed_gy'", optional=True)
    sd = _number(row.get("bed_sd_gy", ""), f"{where}, column 'bed_sd_gy'", optional=True)
    if bed is None:
        bed = bed_mono_exponential(dose, t_eff, alpha_beta_gy=KIDNEY_ALPHA_BETA_GY,
                                   repair_half_time_h=KIDNEY_REPAIR_HALF_TIME_H).bed_gy
        warnings.append(f"{where}: no bed_gy; computed from dose_gy and t_eff_h ({bed:.3g} Gy, mono-exponential)")
    if sd is None:
        warnings.append(f"{where}: no bed_sd_gy; the received BED is treated as exact")
        sd = 0.0
    return bed, sd


def read_kidneys(folder: Path, activities: dict[int, float], warnings: list[str]) -> tuple[MeasuredCycles, ...]:
    path = folder / ORGAN_FILE
    if not path.is_file():
        raise InputError(f"{folder} has no {ORGAN_FILE}: a plan needs kidney dosimetry (the kidney BED limit). "
                         "Add kidney VOIs to the study manifest (organs, or segments Kidney_L / Kidney_R) and run "
                         "the dosimetry again")
    table = _read_csv(path, ("organ", "cycle", "administered_activity_mbq", "dose_gy", "dose_sd_gy", "t_eff_h"))
    table = table[table["organ"].str.strip().isin(KIDNEY_ORGANS)]
    if table.empty:
        raise InputError(f"{path} holds no kidney (organs {', '.join(KIDNEY_ORGANS)}); a plan needs kidney dosimetry")
    out = []
    for name, rows in _structures(path, table, "organ", activities).items():
        cycles, doses, t_effs, beds, sds = [], [], [], [], []
        for r in rows:
            n = int(r["cycle"])
            given = _number(r["administered_activity_mbq"], f"{r['_where']}, column 'administered_activity_mbq'",
                            positive=True) / 1000.0
            if not math.isclose(given, activities[n], rel_tol=1e-3):
                raise InputError(f"{r['_where']}: administered_activity_mbq {given * 1000:g} disagrees with run.json's "
                                 f"{activities[n] * 1000:g} MBq for cycle {n}; the files are from different runs")
            dose = _number(r["dose_gy"], f"{r['_where']}, column 'dose_gy'", positive=True)
            t_eff = _number(r["t_eff_h"], f"{r['_where']}, column 't_eff_h'", positive=True)
            bed, sd = _kidney_bed(r, dose, t_eff, warnings)
            cycles.append(n)
            doses.append(dose)
            t_effs.append(t_eff)
            beds.append(bed)
            sds.append(sd)
        out.append(MeasuredCycles(name, tuple(cycles), tuple(activities[n] for n in cycles), tuple(doses),
                                  tuple(_dose_sd(r, "dose_sd_gy", warnings) for r in rows), t_eff_h=tuple(t_effs),
                                  bed_gy=tuple(beds), bed_sd_gy=tuple(sds)))
    return tuple(out)


def read_dosimetry(folder: str | Path) -> PatientDosimetry:
    """The planner's view of a dosimetry output folder (module docstring)."""
    f = Path(folder)
    if not f.is_dir():
        raise InputError(f"dosimetry folder {folder} does not exist or is not a folder")
    warnings: list[str] = []
    patient, grade, activities = read_run(f)
    tumours = read_tumours(f, activities, warnings)
    kidneys = read_kidneys(f, activities, warnings)
    files = tuple(f / n for n in (RUN_FILE, TUMOUR_FILE, ORGAN_FILE))
    return PatientDosimetry(patient, grade, activities, tumours, kidneys, files, tuple(warnings))

