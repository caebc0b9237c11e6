"""Sums over cycles: the cumulative dose and administered activity, all cycles or those before a date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from LuDoseResponseLib.dosimetry.integration.inputs import as_1d, finite
from LuDoseResponseLib.dosimetry.integration.result import json_float
from LuDoseResponseLib.dosimetry.uncertainty import combine_cycle_sds
from LuDoseResponseLib.errors import InputError


@dataclass(frozen=True)
class CycleSum:
    """Cumulative dose over a set of cycles: D_tot = Σ D_cycle (exact), with its SD."""

    dose_gy: float
    sd_gy: float | None
    activity_mbq: float
    cycles: tuple[int, ...]

    @property
    def activity_gbq(self) -> float:
        return self.activity_mbq / 1000.0

    def to_dict(self) -> dict:
        return {"dose_gy": json_float(self.dose_gy), "sd_gy": json_float(self.sd_gy),
                "activity_mbq": json_float(self.activity_mbq), "activity_gbq": json_float(self.activity_gbq),
                "cycles": list(self.cycles)}


def _as_datetime(x, what: str) -> datetime:
    if isinstance(x, datetime):
        return x
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day)
    raise InputError(f"{what}: expected a date or datetime, got {x!r}")


def sum_cycles(cycles: Sequence[int], doses_gy, activities_mbq, *, sds_gy=None, administered_at=None,
               before=None, calibration_sd_gy=None, calibration_correlation: float = 0.0,
               what: str = "cycle sum") -> CycleSum:
    """Σ over cycles of dose and administered activity, all cycles or those administered before ``before``.

    ``before`` (date or datetime, e.g. the date of the best response, t_vmin) keeps the cycles whose
    ``administered_at`` is strictly earlier; a date counts from its midnight, so a CT on the day of an
    administration counts as taken before it. The SD combines the cycles' SDs as independent (the
    paper) unless ``calibration_correlation`` > 0 (see :func:`uncertainty.combine_cycle_sds`).
    """
    try:
        n = len(cycles)
    except TypeError:
        raise InputError(f"{what}: cycles must be a sequence of cycle numbers, got {cycles!r}") from None
    d = as_1d("doses_gy", doses_gy, what)
    a = as_1d("activities_mbq", activities_mbq, what)
    if d.size != n or a.size != n:
        raise InputError(f"{what}: {n} cycles but {d.size} doses and {a.size} activities")
    if not (np.all(np.isfinite(d)) and np.all(d >= 0)):
        raise InputError(f"{what}: cycle doses must be finite and >= 0, got {d.tolist()}")
    if not (np.all(np.isfinite(a)) and np.all(a >= 0)):
        raise InputError(f"{what}: administered activities must be finite and >= 0, got {a.tolist()}")
    keep = np.ones(n, bool)
    if before is not None:
        if administered_at is None or len(administered_at) != n:
            raise InputError(f"{what}: summing until a date needs one administration time per cycle")
        limit = _as_datetime(before, what)
        keep = np.array([_as_datetime(x, what) < limit for x in administered_at])
    sd = None
    if sds_gy is not None:
        s = [None if v is None else finite("each cycle SD (Gy)", v, what, positive=False) for v in sds_gy]
        if len(s) != n:
            raise InputError(f"{what}: {n} cycles but {len(s)} SDs")
        if calibration_sd_gy is not None and len(calibration_sd_gy) != n:
            raise InputError(f"{what}: {n} cycles but {len(calibration_sd_gy)} calibration SDs")
        if all(s[i] is not None for i in range(n) if keep[i]):
            cal = None if calibration_sd_gy is None else [calibration_sd_gy[i] for i in range(n) if keep[i]]
            sd = combine_cycle_sds([s[i] for i in range(n) if keep[i]], calibration_sd_gy=cal,
                                   calibration_correlation=calibration_correlation, what=what)
    return CycleSum(dose_gy=float(d[keep].sum()), sd_gy=sd, activity_mbq=float(a[keep].sum()),
                    cycles=tuple(int(c) for c, k in zip(cycles, keep, strict=True) if k))
