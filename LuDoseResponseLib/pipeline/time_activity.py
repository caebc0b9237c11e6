"""Per-tumour time–activity samples of a finished run, read back from its ``time_points.csv``.

The patient pipeline (:func:`patient.run_patient`) writes every tumour's VOI activity at every SPECT time
point of its multi-SPECT cycles to ``time_points.csv`` (:mod:`.time_points`): measured, and after the
partial-volume correction it integrates. This module reads them for plotting (the Slicer module's
time–activity tables and charts), so nothing is quantified twice.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from LuDoseResponseLib.errors import InputError

_COLUMNS = ("tumor", "cycle", "time_h", "activity_mbq", "measured_activity_mbq")


@dataclass(frozen=True)
class ActivitySample:
    """One tumour's activity at one SPECT time point (``tumor`` as in tumours.csv: patient.name)."""

    tumor: str
    cycle: int
    hours_since_administration: float
    activity_mbq: float          # measured VOI activity
    activity_pvc_mbq: float      # after partial-volume correction (equal to activity_mbq without PVC)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_activity_samples(time_points_csv: str | os.PathLike) -> list[ActivitySample]:
    """The samples of a run's ``time_points.csv`` (:mod:`.time_points`), in its row order."""
    path = Path(time_points_csv)
    if not path.is_file():
        raise InputError(f"{path} not found: the time-activity samples are written by the patient pipeline; run "
                         "the dosimetry into this folder first")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise InputError(f"{path}: column(s) {', '.join(missing)} missing; it was not written by this version "
                             "of the patient pipeline, so run the dosimetry again")
        try:
            return [ActivitySample(r["tumor"], int(r["cycle"]), float(r["time_h"]), float(r["measured_activity_mbq"]),
                                   float(r["activity_mbq"])) for r in reader]
        except ValueError as exc:
            raise InputError(f"{path}: line {reader.line_num}: {exc}; run the dosimetry again") from None
