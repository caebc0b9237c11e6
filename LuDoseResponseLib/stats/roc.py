"""ROC analysis of a dose (or any score) against response, as pROC 1.18 computes it.

Reproduces ``roc(response, predictor, levels = c(0, 1), direction = "auto")`` followed by
``auc``, ``ci.auc(method = "delong")``, ``ci.auc(method = "bootstrap", boot.stratified = TRUE)``,
``coords(x = "all")``, ``coords(x = "best", best.method = "youden")`` and ``coords(x = doses)``.
Controls are non-responders (0), cases are responders (1) — Warfvinge et al., J Nucl Med
2024;65:1070, "Statistical analysis" (Youden index, AUC with 95 % CI).

pROC conventions kept here:
- direction "auto": "<" when median(controls) <= median(cases), otherwise ">".
  With "<" a tumour is called positive when predictor >= threshold; with ">" when predictor <= threshold.
- thresholds: -Inf, the midpoints between consecutive distinct predictor values, +Inf
  (ascending for "<"; pROC lists them descending for ">").
- AUC = P(case > control) + 1/2 P(tie) for "<" (the Mann–Whitney U / (n_cases n_controls)).
- DeLong (1988) variance from the structural components (placements); CI = theta +- z·SE clipped to [0, 1].
- Youden: every threshold where sensitivity + specificity equals its maximum (ties kept).
- The bootstrap resamples cases and controls separately; the CI is the type-7 percentile interval.
  It is vectorised through multinomial resampling counts and cumulative control weights, so it is
  seed-dependent (numpy PCG64, not R's Mersenne-Twister) but needs no per-replicate sort.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from LuDoseResponseLib import defaults

from ..errors import InputError, ModelFitError

logger = logging.getLogger(__name__)

CONF_LEVEL = 0.95
_BOOT_CHUNK = 1000  # bootstrap replicates drawn per chunk for groups up to _BOOT_CHUNK_ELEMENTS / _BOOT_CHUNK tumours
_BOOT_CHUNK_ELEMENTS = 1 << 22  # at most this many (replicate x tumour) cells per chunk array: 32 MiB of float64


def _json_threshold(value: float) -> float | str:
    """Thresholds may be +-Inf (pROC's end points); JSON has no Inf, so write them as R does ("Inf"/"-Inf")."""
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return float(value)


@dataclass(frozen=True)
class RocPoint:
    """One threshold with its sensitivity and specificity."""

    threshold: float
    sensitivity: float
    specificity: float

    def to_dict(self) -> dict[str, Any]:
        return {"threshold_gy": _json_threshold(self.threshold), "sensitivity": self.sensitivity,
                "specificity": self.specificity}


@dataclass(frozen=True)
class RocResult:
    """ROC of one grade: AUC with DeLong and bootstrap CIs, Youden thresholds, sens/spec at given doses."""

    n_cases: int
    n_controls: int
    direction: str
    auc: float
    auc_ci_delong: tuple[float, float]
    auc_ci_bootstrap: tuple[float, float] | None  # None when n_boot = 0 (no bootstrap asked for)
    bootstrap_median: float | None
    bootstrap_n: int
    seed: int
    youden: tuple[RocPoint, ...]
    at_dose: dict[str, RocPoint]
    coords: tuple[RocPoint, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``roc.G`` block (plus direction, bootstrap_median and all coords)."""
        return {
            "n_cases": self.n_cases,
            "n_controls": self.n_controls,
            "auc": self.auc,
            "auc_ci_delong": [self.auc_ci_delong[0], self.auc_ci_delong[1]],
            "auc_ci_bootstrap": None if self.auc_ci_bootstrap is None else list(self.auc_ci_bootstrap),
            "bootstrap_n": self.bootstrap_n,
            "seed": self.seed,
            "youden": [p.to_dict() for p in self.youden],
            "at_dose": {k: {"sensitivity": p.sensitivity, "specificity": p.specificity}
                        for k, p in self.at_dose.items()},
            "warnings": list(self.warnings),
            "direction": self.direction,
            "bootstrap_median": self.bootstrap_median,
            "coords": {
                "threshold_gy": [_json_threshold(p.threshold) for p in self.coords],
                "sensitivity": [p.sensitivity for p in self.coords],
                "specificity": [p.specificity for p in self.coords],
            },
        }


# ------------------------------------------------------------------------------------------------
# input
# ------------------------------------------------------------------------------------------------
def _validate(responder: Any, predictor: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        resp = np.asarray(responder, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"roc_analysis: 'responder' must be 0/1 numbers ({exc})") from exc
    try:
        pred = np.asarray(predictor, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"roc_analysis: 'predictor' must be numbers ({exc})") from exc
    if resp.shape != pred.shape:
        raise InputError(f"roc_analysis: 'responder' has {resp.size} values but 'predictor' has {pred.size}; "
                         "pass one value of each per tumour")
    bad = np.flatnonzero(~np.isin(resp, (0.0, 1.0)))
    if bad.size:
        raise InputError(f"roc_analysis: 'responder' must be 0 or 1; row {int(bad[0])} holds {resp[bad[0]]!r}")
    bad = np.flatnonzero(~np.isfinite(pred))
    if bad.size:
        raise InputError(f"roc_analysis: 'predictor' row {int(bad[0])} is {pred[bad[0]]!r}; "
                         "remove the tumour or supply a finite value")
    return resp, pred


def _auto_direction(controls: np.ndarray, cases: np.ndarray) -> str:
    """pROC: "<" if median(controls) <= median(cases), else ">"."""
    return "<" if np.median(controls) <= np.median(cases) else ">"


# ------------------------------------------------------------------------------------------------
# thresholds and coordinates
# ------------------------------------------------------------------------------------------------
def _thresholds(values: np.ndarray, direction: str) -> np.ndarray:
    """pROC ``roc.utils.thresholds``: -Inf, midpoints of consecutive distinct values, +Inf (ascending).

    A midpoint that rounds onto a data value (adjacent doubles) is moved to the side that keeps
    the ">="/"<=" rule consistent, as pROC does.
    """
    u = np.unique(values)
    lo = np.concatenate(([-np.inf], u))
    hi = np.concatenate((u, [np.inf]))
    with np.errstate(invalid="ignore", over="ignore"):
        t1 = (lo + hi) / 2.0
        t2 = lo / 2.0 + hi / 2.0
    thr = np.where(np.abs(t1) > 1e100, t2, t1)
    thr[0], thr[-1] = -np.inf, np.inf
    for k in np.flatnonzero(np.isin(thr, u)):
        if direction == "<" and thr[k] == u[k - 1]:
            thr[k] = u[k]
        elif direction == ">" and thr[k] == u[k]:
            thr[k] = u[k - 1]
    return thr


def _sens_spec(thresholds: np.ndarray, controls: np.ndarray, cases: np.ndarray,
               direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity at each threshold (pROC ``roc.utils.perfs``), as tp/n and tn/n."""
    cs, ct = np.sort(cases), np.sort(controls)
    if direction == "<":  # positive when x >= t
        tp = cs.size - np.searchsorted(cs, thresholds, side="left")
        tn = np.searchsorted(ct, thresholds, side="left")
    else:  # positive when x <= t
        tp = np.searchsorted(cs, thresholds, side="right")
        tn = ct.size - np.searchsorted(ct, thresholds, side="right")
    return tp / cs.size, tn / ct.size


# ------------------------------------------------------------------------------------------------
# AUC, DeLong, bootstrap
# ------------------------------------------------------------------------------------------------
def _placements(controls: np.ndarray, cases: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components: V10 per case, V01 per control (ties count 1/2)."""
    if direction == ">":
        controls, cases = -controls, -cases
    ct, cs = np.sort(controls), np.sort(cases)
    below = np.searchsorted(ct, cases, side="left")
    ties = np.searchsorted(ct, cases, side="right") - below
    v10 = (below + 0.5 * ties) / ct.size
    above = cs.size - np.searchsorted(cs, controls, side="right")
    ties_c = np.searchsorted(cs, controls, side="right") - np.searchsorted(cs, controls, side="left")
    v01 = (above + 0.5 * ties_c) / cs.size
    return v10, v01


def _delong_ci(v10: np.ndarray, v01: np.ndarray, conf_level: float) -> tuple[float, float]:
    """pROC ``ci.auc.delong``: normal CI around theta with S = S10/m + S01/n, clipped to [0, 1]."""
    theta = float(np.mean(v10))
    m, n = v10.size, v01.size
    s10 = float(np.sum((v10 - theta) ** 2)) / (m - 1)
    s01 = float(np.sum((v01 - theta) ** 2)) / (n - 1)
    sd = math.sqrt(s10 / m + s01 / n)
    if sd == 0.0:
        return theta, theta
    z = norm.ppf(1.0 - (1.0 - conf_level) / 2.0)
    lo, hi = theta - z * sd, theta + z * sd
    return min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)


def _bootstrap_chunk(n_tumours: int) -> int:
    """Replicates per chunk: _BOOT_CHUNK, fewer for large groups so that memory stays bounded
    (a few arrays of _BOOT_CHUNK_ELEMENTS cells). A function of the group size only, so results
    depend on the data and the seed, not on the machine."""
    return max(1, min(_BOOT_CHUNK, _BOOT_CHUNK_ELEMENTS // max(n_tumours + 1, 1)))


def _bootstrap_aucs(controls: np.ndarray, cases: np.ndarray, direction: str, n_boot: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Stratified bootstrap AUCs (cases and controls resampled separately, direction kept fixed).

    A replicate with control counts v and case counts w has
    AUC = sum_i w_i [C(< x_i) + C(= x_i)/2] / (m n), where C is the v-weighted control count;
    C comes from cumulative sums of v over the sorted controls.
    """
    if direction == ">":
        controls, cases = -controls, -cases
    order = np.argsort(controls, kind="stable")
    ct = controls[order]
    n, m = ct.size, cases.size
    lo = np.searchsorted(ct, cases, side="left")
    hi = np.searchsorted(ct, cases, side="right")
    p_ctrl, p_case = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    out = np.empty(n_boot)
    chunk = _bootstrap_chunk(n + m)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        v = rng.multinomial(n, p_ctrl, size=b).astype(float)  # counts per sorted control
        w = rng.multinomial(m, p_case, size=b).astype(float)
        cum = np.zeros((b, n + 1))
        np.cumsum(v, axis=1, out=cum[:, 1:])
        below = cum[:, lo] + 0.5 * (cum[:, hi] - cum[:, lo])
        out[start:start + b] = np.sum(w * below, axis=1) / (m * n)
    return out


# ------------------------------------------------------------------------------------------------
# public
# ------------------------------------------------------------------------------------------------
def roc_analysis(responder: Any, predictor: Any, *, doses: tuple[float, ...] | list[float] = defaults.REPORT_DOSES_GY,
                 n_boot: int = defaults.BOOTSTRAP_REPLICATES, seed: int = defaults.BOOTSTRAP_SEED) -> RocResult:
    """ROC of ``predictor`` (e.g. absorbed dose in Gy) for ``responder`` (1 = case, 0 = control).

    Returns AUC (exact, ties 1/2), 95 % DeLong CI, stratified percentile bootstrap CI (``n_boot``
    replicates, numpy Generator seeded with ``seed``; ``n_boot = 0`` skips it), all pROC thresholds,
    every Youden-optimal threshold and sensitivity/specificity at ``doses``. Raises ModelFitError with fewer than
    2 cases or 2 controls.
    """
    resp, pred = _validate(responder, predictor)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise InputError(f"roc_analysis: 'n_boot' must be an integer >= 0 (0 skips the bootstrap), got {n_boot!r}")
    dose_arr = np.asarray(doses, dtype=float).ravel()
    if not np.all(np.isfinite(dose_arr)):
        raise InputError(f"roc_analysis: 'doses' must be finite numbers, got {list(doses)!r}")
    cases, controls = pred[resp == 1.0], pred[resp == 0.0]
    if cases.size < 2 or controls.size < 2:
        raise ModelFitError(
            f"ROC needs at least 2 responders and 2 non-responders; got {cases.size} responder(s) and "
            f"{controls.size} non-responder(s). Report the ROC as not estimable for this group.")
    warnings: list[str] = []
    direction = _auto_direction(controls, cases)
    if direction == ">":
        warnings.append("direction '>': non-responders have the higher median predictor, so the AUC is "
                        "P(responder < non-responder) and a tumour is called positive when predictor <= "
                        "threshold (pROC convention)")

    v10, v01 = _placements(controls, cases, direction)
    auc = float(np.mean(v10))
    ci_delong = _delong_ci(v10, v01, CONF_LEVEL)

    thr = _thresholds(pred, direction)
    se, sp = _sens_spec(thr, controls, cases, direction)
    if direction == ">":  # pROC sorts the curve by increasing specificity: thresholds descending
        thr, se, sp = thr[::-1], se[::-1], sp[::-1]
    coords = tuple(RocPoint(float(t), float(a), float(b)) for t, a, b in zip(thr, se, sp, strict=True))
    crit = se + 1.0 * sp  # pROC best.weights c(1, 0.5): r = (1 - 0.5)/(1 * 0.5) = 1
    youden = tuple(c for c, keep in zip(coords, crit == np.max(crit), strict=True) if keep)

    se_d, sp_d = _sens_spec(dose_arr, controls, cases, direction)
    at_dose = {f"{x:g}": RocPoint(float(x), float(a), float(b)) for x, a, b in zip(dose_arr, se_d, sp_d, strict=True)}

    if auc == 1.0 or auc == 0.0:
        warnings.append(f"AUC = {auc:g}: the predictor perfectly separates responders from non-responders; "
                        "the DeLong and bootstrap CIs are degenerate and can be misleading (pROC warns "
                        "'ci.auc() of a ROC curve with AUC == 1 is always 1-1')")
    ci_boot, boot_median = None, None
    if n_boot > 0:
        boots = _bootstrap_aucs(controls, cases, direction, n_boot, np.random.default_rng(seed))
        q_lo, boot_median, q_hi = np.quantile(boots, [(1 - CONF_LEVEL) / 2, 0.5, 1 - (1 - CONF_LEVEL) / 2])
        ci_boot, boot_median = (float(q_lo), float(q_hi)), float(boot_median)
    for w in warnings:
        logger.warning("roc_analysis: %s", w)
    return RocResult(
        n_cases=int(cases.size), n_controls=int(controls.size), direction=direction, auc=auc,
        auc_ci_delong=(float(ci_delong[0]), float(ci_delong[1])),
        auc_ci_bootstrap=ci_boot, bootstrap_median=boot_median,
        bootstrap_n=int(n_boot), seed=int(seed), youden=youden, at_dose=at_dose, coords=coords,
        warnings=tuple(warnings))
