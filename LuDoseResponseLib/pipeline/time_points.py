"""``time_points.csv``: each tumour's samples per cycle and the curves fitted to them.

One row per tumour, cycle and SPECT time point: ``tumor`` (the cohort-wide id), ``cycle``,
``time_h`` (hours since administration), ``activity_mbq`` (VOI activity, after partial-volume
correction where chosen), ``measured_activity_mbq`` (the VOI activity before that correction) and
``dose_rate_gy_per_h`` (VOI mean dose rate, after the correction), then for each of
the two curves (``activity_*`` and ``dose_rate_*``) the model fitted by the time integration
(``mono``, ``bi``, ``uptake-washout``; ``trapezoid`` or another method has no parameters) with its
parameters and their covariance as JSON objects, ``{name: value}`` and ``{"names": [...],
"values": [[...]]}`` (amplitudes in the unit of the samples, rates per hour). They are the same on
every row of a tumour and cycle, so that each row is self-describing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from LuDoseResponseLib.dosimetry.integration import TimeIntegral
from LuDoseResponseLib.response.tumour_rows import tumour_id

COLUMNS = ("tumor", "cycle", "time_h", "activity_mbq", "measured_activity_mbq", "dose_rate_gy_per_h",
           "activity_model", "activity_params", "activity_covariance", "dose_rate_model", "dose_rate_params",
           "dose_rate_covariance")


def _fit_cells(prefix: str, fit: TimeIntegral) -> dict:
    cov = fit.covariance
    return {f"{prefix}_model": fit.model if fit.method == "fit" else fit.method,
            f"{prefix}_params": json.dumps({k: float(v) for k, v in fit.params.items()}),
            f"{prefix}_covariance": json.dumps(None if cov is None else {
                "names": list(fit.param_names), "values": [[float(v) for v in row] for row in cov]})}


def time_point_rows(patient: str, tumour: str, cycle: int, times_h: Sequence[float], activity_mbq: Sequence[float],
                    measured_activity_mbq: Sequence[float], dose_rate_gy_per_h: Sequence[float],
                    activity_fit: TimeIntegral, dose_rate_fit: TimeIntegral) -> list[dict]:
    """The rows of one tumour and cycle (see the module docstring)."""
    cells = {**_fit_cells("activity", activity_fit), **_fit_cells("dose_rate", dose_rate_fit)}
    return [{"tumor": tumour_id(patient, tumour), "cycle": int(cycle), "time_h": float(t), "activity_mbq": float(a),
             "measured_activity_mbq": float(m), "dose_rate_gy_per_h": float(r), **cells}
            for t, a, m, r in zip(np.asarray(times_h, float), np.asarray(activity_mbq, float),
                                  np.asarray(measured_activity_mbq, float), np.asarray(dose_rate_gy_per_h, float),
                                  strict=True)]


def time_points_table(rows: Sequence[dict]) -> list[dict]:
    """The rows sorted by tumour, cycle and time (COLUMNS are their keys)."""
    return sorted(rows, key=lambda r: (r["tumor"], r["cycle"], r["time_h"]))
