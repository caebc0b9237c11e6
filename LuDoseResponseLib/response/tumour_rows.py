"""Assembly of one patient's per-tumour results into cohort-table rows.

Inputs: the administrations (cycle number, time, activity), each tumour's dose per cycle, and
each tumour's volumes over the follow-up CTs. Outputs (rows as dicts; the ``*_table``/``tumour_rows``
wrappers give pandas DataFrames):

- :func:`tumour_cycles_table` → ``tumour_cycles.csv`` (contracts/study-manifest.md): one row per
  tumour and cycle, columns ``CYCLE_COLUMNS`` plus diagnostics;
- :func:`tumour_rows` → ``tumours.csv``, the cohort-table columns (contracts/cohort-and-analysis.md),
  ``TUMOUR_COLUMNS``.

The cumulative dose and activity are summed over the cycles administered before the best response
(the v_min CT) and over all cycles (Warfvinge et al. 2024, Methods); their SDs combine the cycles
as independent unless a calibration correlation is given. Validation of a whole cohort table is
``cohort.py``'s job, not this module's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from LuDoseResponseLib import defaults
from LuDoseResponseLib.dosimetry.integration import TimeIntegral, sum_cycles
from LuDoseResponseLib.dosimetry.uncertainty import DoseUncertainty
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import record_columns
from LuDoseResponseLib.response.volumetry import (
    BASELINE_VOLUME_CUTOFF_CM3,
    MIN_BASELINE_VOLUME_CM3,
    RESPONDER_THRESHOLD,
    VolumeSeries,
    response_metrics,
)

log = logging.getLogger(__name__)

CYCLE_COLUMNS = ("tumor", "cycle", "dose_gy", "dose_sd_gy", "tia_mbq_h", "mass_g", "model", "t_eff_h")
TUMOUR_COLUMNS = (
    "patient", "tumor", "grade", "dose_gy", "activity_gbq", "baseline_volume_cm3", "dv", "responder",
    "dose_gy_sd", "dose_all_cycles_gy", "dose_all_cycles_gy_sd", "activity_all_cycles_gbq", "n_cycles",
    "n_cycles_until_best_response", "best_response_before_last_cycle", "t_vmin_days", "vmax_cm3", "vmin_cm3",
    "dv_all_cycles", "baseline_date", "vmax_date", "vmin_date", "below_min_baseline_volume", "baseline_volume_group",
    "warnings",
)
GRADES = defaults.GRADES
#: tumour absorbed dose per cycle outside which a row carries a warning (Gy; physics README §5:
#: 2–77 Gy in 182 lesions, Roth et al. J Nucl Med 2022;63:399)
PLAUSIBLE_CYCLE_DOSE_GY = (0.1, 100.0)


def _finite(x) -> float | None:
    """float(x) when it is a finite number, else None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class CycleAdministration:
    """One treatment cycle of a patient."""

    number: int
    administered_at: datetime
    activity_mbq: float

    def __post_init__(self):
        if isinstance(self.administered_at, date) and not isinstance(self.administered_at, datetime):
            d = self.administered_at
            object.__setattr__(self, "administered_at", datetime(d.year, d.month, d.day))
        if not isinstance(self.administered_at, datetime):
            raise InputError(f"cycle {self.number}: administered_at must be a datetime, got {self.administered_at!r}")
        a = _finite(self.activity_mbq)
        if a is None or a <= 0:
            raise InputError(f"cycle {self.number}: activity_mbq must be a positive number, got {self.activity_mbq!r}")
        object.__setattr__(self, "activity_mbq", a)


@dataclass(frozen=True)
class TumourCycleDose:
    """One tumour's absorbed dose in one cycle (``tumor`` is the segment name, as in the follow-ups)."""

    tumor: str
    cycle: int
    dose_gy: float
    dose_sd_gy: float | None
    tia_mbq_h: float | None = None
    mass_g: float | None = None
    model: str = ""
    t_eff_h: float | None = None
    calibration_sd_gy: float = 0.0
    diagnostics: dict = field(default_factory=dict)

    def __post_init__(self):
        what = f"tumour {self.tumor!r}, cycle {self.cycle}"
        d = _finite(self.dose_gy)
        if d is None or d < 0:
            raise InputError(f"{what}: dose_gy must be finite and >= 0, got {self.dose_gy!r}")
        object.__setattr__(self, "dose_gy", d)
        if self.dose_sd_gy is not None:
            s = _finite(self.dose_sd_gy)
            if s is None or s < 0:
                raise InputError(f"{what}: dose_sd_gy must be finite and >= 0, got {self.dose_sd_gy!r}")
            object.__setattr__(self, "dose_sd_gy", s)
        c = _finite(self.calibration_sd_gy)
        if c is None or c < 0:
            raise InputError(f"{what}: calibration_sd_gy must be finite and >= 0, got {self.calibration_sd_gy!r}")
        object.__setattr__(self, "calibration_sd_gy", c)

    @classmethod
    def from_integral(cls, tumor: str, cycle: int, dose: TimeIntegral, *,
                      uncertainty: DoseUncertainty | None = None, tia: TimeIntegral | None = None,
                      mass_g: float | None = None) -> TumourCycleDose:
        """From the dose-rate integral (Gy), with the EANM budget when given (else the fit SD)."""
        return cls(tumor=tumor, cycle=int(cycle), dose_gy=float(dose.value),
                   dose_sd_gy=uncertainty.sd_gy if uncertainty is not None else dose.sd,
                   tia_mbq_h=None if tia is None else float(tia.value), mass_g=mass_g, model=dose.model,
                   t_eff_h=dose.t_eff_h,
                   calibration_sd_gy=0.0 if uncertainty is None else uncertainty.calibration_sd_gy,
                   diagnostics={"fit_sd_gy": dose.sd, "tail": dose.tail, "method": dose.method,
                                "n_points": dose.diagnostics.get("n_points"),
                                "warnings": " | ".join(dose.warnings)})


def tumour_id(patient: str, name: str) -> str:
    """The cohort-wide tumour id: ``<patient>.<name>`` (kept as is if it already starts so)."""
    return name if name.startswith(f"{patient}.") else f"{patient}.{name}"


def tumour_cycles_table(patient: str, doses: Sequence[TumourCycleDose]):
    """:func:`tumour_cycle_records` as a pandas DataFrame."""
    import pandas as pd

    rows = tumour_cycle_records(patient, doses)
    return pd.DataFrame(rows, columns=record_columns(rows, CYCLE_COLUMNS))


def tumour_cycle_records(patient: str, doses: Sequence[TumourCycleDose]) -> list[dict]:
    """``tumour_cycles.csv`` rows: CYCLE_COLUMNS, then diagnostics columns; tumour ids as in tumours.csv."""
    rows = []
    for d in sorted(doses, key=lambda x: (x.tumor, x.cycle)):
        row = {"tumor": tumour_id(patient, d.tumor), "cycle": int(d.cycle), "dose_gy": d.dose_gy,
               "dose_sd_gy": d.dose_sd_gy, "tia_mbq_h": d.tia_mbq_h, "mass_g": d.mass_g, "model": d.model,
               "t_eff_h": d.t_eff_h, "calibration_sd_gy": d.calibration_sd_gy}
        row.update({k: v for k, v in d.diagnostics.items() if k not in row})
        rows.append(row)
    return rows


def tumour_rows(patient: str, grade: str | None, administrations: Sequence[CycleAdministration],
                doses: Sequence[TumourCycleDose], volumes: Mapping[str, VolumeSeries], **options):
    """:func:`tumour_records` as a pandas DataFrame with TUMOUR_COLUMNS."""
    import pandas as pd

    return pd.DataFrame(tumour_records(patient, grade, administrations, doses, volumes, **options),
                        columns=list(TUMOUR_COLUMNS))


def tumour_records(patient: str, grade: str | None, administrations: Sequence[CycleAdministration],
                   doses: Sequence[TumourCycleDose], volumes: Mapping[str, VolumeSeries], *,
                   responder_threshold: float = RESPONDER_THRESHOLD, calibration_correlation: float = 0.0,
                   min_baseline_volume_cm3: float = MIN_BASELINE_VOLUME_CM3,
                   baseline_volume_cutoff_cm3: float = BASELINE_VOLUME_CUTOFF_CM3) -> list[dict]:
    """One cohort-table row per tumour (TUMOUR_COLUMNS).

    ``dose_gy`` / ``activity_gbq``: Σ over the cycles administered before the v_min CT (the best
    response); where no cycle precedes it (no shrinkage after baseline) all cycles are used, with a
    warning. ``dose_all_cycles_gy`` / ``activity_all_cycles_gbq``: Σ over all cycles. Every tumour
    needs a dose for every cycle and a volume series; unmatched names are an error.
    """
    what = f"patient {patient!r}"
    if not isinstance(patient, str) or not patient.strip():
        raise InputError(f"patient id must be a non-empty string, got {patient!r}")
    if grade is not None and grade not in GRADES:
        raise InputError(f"{what}: unknown grade {grade!r}; use G1, G2 or leave it out")
    if not administrations:
        raise InputError(f"{what}: no cycles given")
    admin = sorted(administrations, key=lambda a: a.administered_at)
    numbers = [a.number for a in admin]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"{what}: duplicate cycle numbers {numbers}")
    by_tumour: dict[str, dict[int, TumourCycleDose]] = {}
    for d in doses:
        if d.cycle not in numbers:
            raise InputError(f"{what}: tumour {d.tumor!r} has a dose for cycle {d.cycle}, which was not "
                             f"administered (cycles {numbers})")
        slot = by_tumour.setdefault(d.tumor, {})
        if d.cycle in slot:
            raise InputError(f"{what}: tumour {d.tumor!r} has two doses for cycle {d.cycle}")
        slot[d.cycle] = d
    problems = []
    for name, per_cycle in by_tumour.items():
        missing = [n for n in numbers if n not in per_cycle]
        if missing:
            problems.append(f"tumour {name!r} has no dose for cycle(s) {missing}")
        if name not in volumes:
            problems.append(f"tumour {name!r} has doses but no follow-up volumes")
    for name in volumes:
        if name not in by_tumour:
            problems.append(f"tumour {name!r} has follow-up volumes but no doses")
    if problems:
        raise InputError(f"{what}: " + "; ".join(problems) + ". Tumours are joined by name; every tumour needs "
                         "a dose in every cycle (the paper excluded tumours with unsatisfactory dosimetry in any "
                         "cycle) and a volume at every follow-up")
    times = [a.administered_at for a in admin]
    activities = [a.activity_mbq for a in admin]
    rows = []
    for name, per_cycle in by_tumour.items():
        series = volumes[name]
        resp = response_metrics(series, cycle_dates=times, responder_threshold=responder_threshold,
                                min_baseline_volume_cm3=min_baseline_volume_cm3,
                                baseline_volume_cutoff_cm3=baseline_volume_cutoff_cm3)
        if resp.baseline_volume_cm3 <= 0:
            raise InputError(f"{what}: tumour {name!r} has volume 0 on the baseline CT "
                             f"({resp.baseline_date.date().isoformat()}); a tumour must be delineated at baseline "
                             "(the cohort table needs baseline_volume_cm3 > 0)")
        warnings = list(resp.warnings)
        cyc = [per_cycle[n] for n in numbers]
        lo, hi = PLAUSIBLE_CYCLE_DOSE_GY
        warnings += [f"tumour {name!r}, cycle {c.cycle}: {c.dose_gy:g} Gy is outside the plausible {lo:g}–{hi:g} Gy "
                     "per cycle; check the units and the VOI" for c in cyc if not lo <= c.dose_gy <= hi]
        kw = {"sds_gy": [c.dose_sd_gy for c in cyc], "administered_at": times,
              "calibration_sd_gy": [c.calibration_sd_gy for c in cyc],
              "calibration_correlation": calibration_correlation, "what": f"tumour {name!r}"}
        total = sum_cycles(numbers, [c.dose_gy for c in cyc], activities, **kw)
        until = sum_cycles(numbers, [c.dose_gy for c in cyc], activities, before=resp.vmin_date, **kw)
        if not until.cycles:
            warnings.append(f"tumour {name!r}: no cycle was administered before the best response "
                            f"({resp.vmin_date.date().isoformat()}); the dose until best response is over all "
                            "cycles")
            until = total
        if total.sd_gy is None:
            warnings.append(f"tumour {name!r}: a cycle dose has no SD, so the cumulative SD is missing")
        for w in warnings:
            log.warning(w)
        rows.append({
            "patient": patient, "tumor": tumour_id(patient, name), "grade": grade,
            "dose_gy": until.dose_gy, "activity_gbq": until.activity_gbq,
            "baseline_volume_cm3": resp.baseline_volume_cm3, "dv": resp.dv, "responder": int(resp.responder),
            "dose_gy_sd": until.sd_gy, "dose_all_cycles_gy": total.dose_gy, "dose_all_cycles_gy_sd": total.sd_gy,
            "activity_all_cycles_gbq": total.activity_gbq, "n_cycles": len(numbers),
            "n_cycles_until_best_response": len(until.cycles),
            "best_response_before_last_cycle": int(bool(resp.best_response_before_last_cycle)),
            "t_vmin_days": resp.t_vmin_days, "vmax_cm3": resp.vmax_cm3, "vmin_cm3": resp.vmin_cm3,
            # the paper's complementary scoring: best response after all treatment (None without a CT
            # after the last administration)
            "dv_all_cycles": resp.dv_after_treatment,
            "baseline_date": resp.baseline_date.date().isoformat(), "vmax_date": resp.vmax_date.date().isoformat(),
            "vmin_date": resp.vmin_date.date().isoformat(),
            "below_min_baseline_volume": int(resp.below_min_baseline_volume),
            "baseline_volume_group": resp.baseline_volume_group, "warnings": " | ".join(warnings),
        })
    return rows
