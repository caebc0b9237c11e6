"""The population TCP curve a plan is scored with: logit TCP = a + b·D for one grade, with cov(a, b).

Two sources:

- :func:`paper_tcp_curve` — the paper's G2 curve (Warfvinge et al., J Nucl Med 2024, Results):
  a = β0 = −1.44 ± 0.78, b = β1 + β2 = 0.027 ± 0.01 Gy⁻¹. The paper does not print cov(a, b) nor an
  unrounded SE of b; both follow from its two published CIs, solved exactly for Var(b) and cov(a, b)
  with Var(a) = 0.78²: the odds at 76 Gy, 1.85 (95 % CI 0.71–4.85), and the TCP at 135 Gy, 90 %
  (95 % CI 64 %–98 %), each CI being η ± 1.96·SE(η) with SE(η)² = Var(a) + D²Var(b) + 2D·cov(a, b)
  (the paper's "1.96 times the SD"). This gives SE(b) = 0.0098 Gy⁻¹ (the paper's rounded 0.01) and
  corr(a, b) = −0.79. The paper gives no G1 curve (the G1 dose difference was not significant).
- :func:`tcp_curve_from_analysis` — the project's own ``analysis.json`` (contracts/cohort-and-analysis.md,
  ``tcp`` block): a and b are contrasts of the GLMM coefficients, as in :mod:`LuDoseResponseLib.stats.tcp`.

:meth:`TcpCurve.at` gives the TCP at a predicted dose with its 95 % CI on the logit scale, combining the
coefficient covariance and the dose's own variance: SE(η)² = xᵀVx + b²·Var(D) (delta method).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.stats.tcp import Z95

ANALYSIS_SCHEMA = "ludoseresponse.analysis/1"
PAPER_CITATION = "Warfvinge et al., J Nucl Med 2024 (Results and Fig. 3): G2 TCP curve"
_PAPER_G2 = {"intercept": -1.44, "intercept_se": 0.78, "slope_per_gy": 0.027,
             "odds_ci_at_76_gy": (0.71, 4.85), "tcp_ci_at_135_gy": (0.64, 0.98)}


@dataclass(frozen=True)
class TcpAt:
    """TCP at a dose, with its 95 % CI (logit scale)."""

    tcp: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict:
        return {"tcp": self.tcp, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True, eq=False)
class TcpCurve:
    """logit TCP = intercept + slope_per_gy·D for ``grade``; ``vcov`` is cov of (intercept, slope)."""

    grade: str
    intercept: float
    slope_per_gy: float
    vcov: np.ndarray
    source: str

    def eta_se(self, dose_gy: float, dose_sd_gy: float = 0.0) -> tuple[float, float]:
        x = np.array([1.0, float(dose_gy)])
        var = float(x @ self.vcov @ x) + (self.slope_per_gy * float(dose_sd_gy)) ** 2
        return self.intercept + self.slope_per_gy * float(dose_gy), math.sqrt(max(var, 0.0))

    def at(self, dose_gy: float, dose_sd_gy: float = 0.0) -> TcpAt:
        eta, se = self.eta_se(dose_gy, dose_sd_gy)
        return TcpAt(float(expit(eta)), float(expit(eta - Z95 * se)), float(expit(eta + Z95 * se)))

    def to_dict(self) -> dict:
        return {"grade": self.grade, "intercept": self.intercept, "slope_per_gy": self.slope_per_gy,
                "vcov_intercept_slope": self.vcov.tolist(), "source": self.source}


def _curve(grade: str, a: float, b: float, vcov: np.ndarray, source: str) -> TcpCurve:
    if not (math.isfinite(a) and math.isfinite(b) and np.all(np.isfinite(vcov))):
        raise InputError(f"{source}: the grade {grade} TCP curve has non-finite coefficients")
    if b <= 0:
        raise InputError(f"{source}: the grade {grade} TCP curve does not rise with dose (slope {b:.3g} per Gy); "
                         "a TCP-guided plan needs a positive dose slope")
    v = np.array(vcov, dtype=float)
    v.setflags(write=False)
    return TcpCurve(grade, float(a), float(b), v, source)


def paper_tcp_curve(grade: str) -> TcpCurve:
    """The paper's published G2 curve, with cov(a, b) solved from its two published CIs (module docstring)."""
    if grade != "G2":
        raise InputError(f"the paper publishes a TCP curve for grade G2 only, and this patient's grade is {grade!r}; "
                         "give a cohort model (an analysis.json with a TCP curve for that grade)")
    p = _PAPER_G2
    var_a = p["intercept_se"] ** 2
    se76 = (math.log(p["odds_ci_at_76_gy"][1]) - math.log(p["odds_ci_at_76_gy"][0])) / (2 * Z95)
    se135 = (float(logit(p["tcp_ci_at_135_gy"][1])) - float(logit(p["tcp_ci_at_135_gy"][0]))) / (2 * Z95)
    doses = np.array([76.0, 135.0])
    var_b, cov_ab = np.linalg.solve(np.column_stack([doses**2, 2 * doses]),
                                    np.array([se76**2, se135**2]) - var_a)
    vcov = np.array([[var_a, cov_ab], [cov_ab, var_b]])
    return _curve("G2", p["intercept"], p["slope_per_gy"], vcov, PAPER_CITATION)


def _analysis_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "analysis.json"
    if not p.is_file():
        raise InputError(f"cohort model {path}: no such file (give an analysis.json or the folder of an analysis run)")
    return p


def tcp_curve_from_analysis(path: str | Path, grade: str) -> TcpCurve:
    """The ``grade`` TCP curve of an ``analysis.json`` (or of the analysis folder holding one)."""
    p = _analysis_path(path)
    try:
        analysis = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cohort model {p} cannot be read as JSON: {exc}") from None
    if not isinstance(analysis, dict) or analysis.get("schema") != ANALYSIS_SCHEMA:
        found = analysis.get("schema") if isinstance(analysis, dict) else type(analysis).__name__
        raise InputError(f"cohort model {p} is not a LuDoseResponse analysis ({ANALYSIS_SCHEMA}); found {found!r}")
    tcp = analysis.get("tcp")
    if not isinstance(tcp, dict) or "error" in tcp:
        why = tcp.get("error") if isinstance(tcp, dict) else "no tcp block"
        raise InputError(f"cohort model {p} has no TCP model ({why}); plan with another cohort model")
    per_grade = tcp.get("per_grade") or {}
    if grade not in per_grade:
        raise InputError(f"cohort model {p} has no TCP curve for grade {grade} (it has {sorted(per_grade) or 'none'}); "
                         f"use a cohort analysis that includes {grade} tumours")
    try:
        names = list(tcp["vcov"]["names"])
        values = np.array(tcp["vcov"]["values"], dtype=float)
        beta = np.array([float(tcp["coefficients"][n]["estimate"]) for n in names])
        stated = (float(per_grade[grade]["intercept"]), float(per_grade[grade]["slope_per_gy"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cohort model {p}: the tcp block lacks or mangles its coefficients or vcov "
                         f"({exc!r})") from None
    if values.shape != (len(names), len(names)) or "(Intercept)" not in names or "dose_gy" not in names:
        raise InputError(f"cohort model {p}: the tcp vcov does not match its coefficients {names}")
    ca, cb = np.zeros(len(names)), np.zeros(len(names))
    ca[names.index("(Intercept)")] = 1.0
    cb[names.index("dose_gy")] = 1.0
    if grade == "G2" and "dose_gy:gradeG2" in names:
        cb[names.index("dose_gy:gradeG2")] = 1.0
    a, b = float(ca @ beta), float(cb @ beta)
    if not np.allclose([a, b], stated, rtol=1e-6, atol=1e-9):
        raise InputError(f"cohort model {p}: grade {grade} intercept/slope {stated} disagree with the coefficients "
                         f"({a:.6g}, {b:.6g}); the file was changed after the analysis wrote it")
    vcov = np.array([[ca @ values @ ca, ca @ values @ cb], [ca @ values @ cb, cb @ values @ cb]])
    return _curve(grade, a, b, vcov, f"cohort model {p} ({tcp.get('formula', 'TCP GLMM')})")
