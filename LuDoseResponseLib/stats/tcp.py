"""Tumour control probability (TCP) from the paper's logistic GLMM (Warfvinge et al. 2024, Supplement 4).

Model (R: ``glmer(responder ~ dose_gy + dose_gy:grade + (1 | patient), family = binomial)``, treatment
contrasts with G1 as reference):

    logit TCP = beta0 + beta1 D + beta2 D [grade = G2] + b_patient

so both grades share the intercept beta0; the G1 slope is beta1 and the G2 slope beta1 + beta2 (the
paper's "intercept beta0 = -1.44 +- 0.78" and "beta1 + beta2 = 0.027 +- 0.01 Gy^-1" for G2). When the
data hold one grade only, the interaction column would be collinear with ``dose_gy`` (R drops it), so
the model fitted is ``responder ~ dose_gy + (1 | patient)`` and a warning says so.

Population level (random effect 0) per grade, x(D) = intercept and slope coefficient vectors:
eta = x'beta, se_eta = sqrt(x'Vx) with V the GLMM fixed-effect covariance (lme4 default), TCP =
plogis(eta) with the 95 % CI plogis(eta -+ 1.96 se_eta) on the logit scale (the paper's asymmetric
"90 % (64 %-98 %)"), odds exp(eta) with CI exp(eta -+ 1.96 se_eta), and the dose at a TCP target p,
D_p = (logit p - a) / b, with the delta-method SE from grad = -(c_a + D_p c_b) / b, and its 95 % CI
by inverting the pointwise band (Fieller's theorem, :func:`dose_interval_at_tcp`): the doses D at which
p lies inside plogis(eta(D) -+ 1.96 se_eta(D)), i.e. where the drawn CI band crosses the TCP target.

``separation`` is set when the GLMM flags near-separation (max |X beta| > 15) or when, within a grade,
dose separates responders from non-responders (linear programme; e.g. G2 of separation_s401, where
the common intercept keeps the estimates finite but the G2 curve is set by the G1 data). A design that
separates the outcome outright has infinite estimates: ModelFitError, as glmer fails there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit

from LuDoseResponseLib import defaults
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.stats.glmm import GlmmResult, fit_binomial_glmm, is_separated

log = logging.getLogger(__name__)

Z95 = 1.96                                    # the paper: "95 % CI ... 1.96 times the SD"
GRADES = defaults.GRADES
METHODS = {"laplace": 1, "agq": defaults.AGQ_NODES}
DEFAULT_DOSE_GRID_GY = np.arange(81) * 5.0    # 0, 5, ..., 400 Gy
DEFAULT_DOSE_GRID_GY.setflags(write=False)
_INTERCEPT, _DOSE, _DOSE_G2 = "(Intercept)", "dose_gy", "dose_gy:gradeG2"
_MISSING = ("", "nan", "NaN", "None", "<NA>")


@dataclass(frozen=True)
class DoseAtTcp:
    """Dose (Gy) at which the population TCP reaches a target, with its delta-method SE and the 95 % CI
    from the inverted pointwise band (NaN bounds where that interval is unbounded)."""

    tcp: float
    dose_gy: float
    se: float
    ci_low: float = math.nan
    ci_high: float = math.nan

    def to_dict(self) -> dict:
        return {"dose_gy": _num(self.dose_gy), "se": _num(self.se), "ci_low": _num(self.ci_low),
                "ci_high": _num(self.ci_high)}


@dataclass(frozen=True)
class TcpAtDose:
    """Population TCP at one dose, with logit-scale 95 % CI and the odds exp(eta) with its CI."""

    dose_gy: float
    eta: float
    se_eta: float

    @property
    def tcp(self) -> float:
        return float(expit(self.eta))

    @property
    def ci_low(self) -> float:
        return float(expit(self.eta - Z95 * self.se_eta))

    @property
    def ci_high(self) -> float:
        return float(expit(self.eta + Z95 * self.se_eta))

    @property
    def odds(self) -> float:
        return _exp(self.eta)

    @property
    def odds_ci_low(self) -> float:
        return _exp(self.eta - Z95 * self.se_eta)

    @property
    def odds_ci_high(self) -> float:
        return _exp(self.eta + Z95 * self.se_eta)

    def to_dict(self) -> dict:
        return {"tcp": _num(self.tcp), "ci_low": _num(self.ci_low), "ci_high": _num(self.ci_high),
                "odds": _num(self.odds), "odds_ci_low": _num(self.odds_ci_low),
                "odds_ci_high": _num(self.odds_ci_high)}


@dataclass(frozen=True, eq=False)
class TcpCurve:
    """Population TCP curve on a dose grid (arrays are read-only)."""

    dose_gy: np.ndarray
    eta: np.ndarray
    se_eta: np.ndarray

    @property
    def tcp(self) -> np.ndarray:
        return expit(self.eta)

    @property
    def ci_low(self) -> np.ndarray:
        return expit(self.eta - Z95 * self.se_eta)

    @property
    def ci_high(self) -> np.ndarray:
        return expit(self.eta + Z95 * self.se_eta)

    def to_dict(self) -> dict:
        return {"dose_gy": _list(self.dose_gy), "tcp": _list(self.tcp), "se_eta": _list(self.se_eta),
                "ci_low": _list(self.ci_low), "ci_high": _list(self.ci_high)}


@dataclass(frozen=True)
class TcpGrade:
    """Population-level TCP parameters of one grade: logit TCP = intercept + slope_per_gy * D."""

    intercept: float
    intercept_se: float
    slope_per_gy: float
    slope_se: float
    cov_intercept_slope: float
    dose_at_tcp: dict[str, DoseAtTcp]
    at_dose: dict[str, TcpAtDose]

    def to_dict(self) -> dict:
        return {"intercept": _num(self.intercept), "intercept_se": _num(self.intercept_se),
                "slope_per_gy": _num(self.slope_per_gy), "slope_se": _num(self.slope_se),
                "dose_at_tcp": {k: v.to_dict() for k, v in self.dose_at_tcp.items()},
                "at_dose": {k: v.to_dict() for k, v in self.at_dose.items()}}


@dataclass(frozen=True, eq=False)
class TcpResult:
    """The paper's TCP analysis; ``to_dict()`` is the ``tcp`` block of analysis.json."""

    formula: str
    method: str
    glmm: GlmmResult
    per_grade: dict[str, TcpGrade]
    curves: dict[str, TcpCurve]
    separation: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_agq(self) -> int:
        return self.glmm.n_agq

    def to_dict(self) -> dict:
        g = self.glmm
        names = list(g.names)
        return {
            "formula": self.formula,
            "method": self.method,
            "n_agq": g.n_agq,
            "coefficients": {n: {"estimate": _num(b), "se": _num(s)}
                             for n, b, s in zip(names, g.fixef, g.se, strict=True)},
            "vcov": {"names": names, "values": [[_num(v) for v in row] for row in g.vcov]},
            "random_intercept_sd": _num(g.theta),
            "loglik": _num(g.loglik),
            "singular": g.singular,
            "converged": g.converged,
            "separation": self.separation,
            "warnings": list(self.warnings),
            "per_grade": {k: v.to_dict() for k, v in self.per_grade.items()},
            "curves": {k: v.to_dict() for k, v in self.curves.items()},
        }


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _list(a: np.ndarray) -> list[float | None]:
    return [_num(v) for v in np.asarray(a, dtype=float)]


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


def _key(x: float) -> str:
    return f"{x:g}"


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


def _finite_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numbers: {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise InputError(f"{name} holds a non-finite value at position {int(bad[0])}")
    return a


def _validate(dose_gy: Sequence[float], grade: Sequence[str], responder: Sequence[int], patient: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    dose = _finite_vector(dose_gy, "dose_gy")
    n = dose.size
    if n == 0:
        raise InputError("dose_gy is empty: the TCP analysis needs tumours")
    arrays = {"grade": np.asarray(grade, dtype=object).reshape(-1),
              "responder": np.asarray(responder, dtype=object).reshape(-1),
              "patient": np.asarray(patient, dtype=object).reshape(-1)}
    for name, a in arrays.items():
        if a.size != n:
            raise InputError(f"{name} has {a.size} values but dose_gy has {n}; give one value per tumour")
    bad = np.flatnonzero(dose < 0)
    if bad.size:
        raise InputError(f"dose_gy row {int(bad[0])} is negative ({dose[bad[0]]}); doses must be >= 0 Gy")
    grades = np.array([str(v) for v in arrays["grade"]])
    bad = np.flatnonzero(~np.isin(grades, GRADES))
    if bad.size:
        raise InputError(f"grade row {int(bad[0])} is {grades[bad[0]]!r}; expected one of {GRADES}")
    resp = np.empty(n)
    for i, v in enumerate(arrays["responder"]):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            fv = math.nan
        if fv not in (0.0, 1.0):
            raise InputError(f"responder row {i} is {v!r}; expected 0 or 1")
        resp[i] = fv
    patients = np.array([str(v).strip() for v in arrays["patient"]])
    bad = np.flatnonzero(np.isin(patients, _MISSING))
    if bad.size:
        raise InputError(f"patient row {int(bad[0])} is empty; every tumour needs a patient identifier")
    return dose, grades, resp, patients


def _keys(values: Sequence[float] | np.ndarray, name: str, *, open_unit: bool = False) -> dict[str, float]:
    a = _finite_vector(values, name)
    if open_unit and np.any((a <= 0) | (a >= 1)):
        raise InputError(f"{name} must lie strictly between 0 and 1, got {a.tolist()}")
    out = {_key(float(v)): float(v) for v in a}
    if len(out) != a.size:
        raise InputError(f"{name} has duplicate values {a.tolist()}")
    return out


def tcp_analysis(dose_gy: Sequence[float], grade: Sequence[str], responder: Sequence[int],
                 patient: Sequence[str], *, method: str = defaults.GLMM_METHOD,
                 doses_gy: Sequence[float] = defaults.REPORT_DOSES_GY,
                 tcp_targets: Sequence[float] = defaults.TCP_TARGETS,
                 dose_grid_gy: Sequence[float] | None = None) -> TcpResult:
    """Fit the paper's TCP GLMM and derive the per-grade population TCP (paper, Fig. 3 and Results).

    ``dose_gy`` cumulative tumour absorbed dose (Gy), ``grade`` 'G1'/'G2', ``responder`` 0/1 and
    ``patient`` one identifier per tumour. ``method`` 'laplace' (nAGQ = 1) or 'agq' (25 nodes).
    ``doses_gy``: doses for ``at_dose``; ``tcp_targets``: TCP levels for ``dose_at_tcp``; the curve
    grid defaults to 0..400 Gy in 5-Gy steps.
    Raises InputError for bad input and ModelFitError when the GLMM cannot be estimated (for
    example a constant outcome or (quasi-)complete separation by the fixed effects); the caller then
    writes ``{"error": ...}`` for the block.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    dose, grades, resp, patients = _validate(dose_gy, grade, responder, patient)
    dose_keys = _keys(doses_gy, "doses_gy")
    target_keys = _keys(tcp_targets, "tcp_targets", open_unit=True)
    grid = DEFAULT_DOSE_GRID_GY if dose_grid_gy is None else _finite_vector(dose_grid_gy, "dose_grid_gy")
    if grid.size == 0:
        raise InputError("dose_grid_gy is empty")

    present = tuple(g for g in GRADES if np.any(grades == g))
    warns: list[str] = []
    if len(present) == 2:
        x = np.column_stack([np.ones(dose.size), dose, dose * (grades == "G2")])
        names = [_INTERCEPT, _DOSE, _DOSE_G2]
        formula = "responder ~ dose_gy + dose_gy:grade + (1 | patient)"
        coef_vectors = {"G1": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
                        "G2": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 1.0]))}
    else:
        x = np.column_stack([np.ones(dose.size), dose])
        names = [_INTERCEPT, _DOSE]
        formula = "responder ~ dose_gy + (1 | patient)"
        coef_vectors = {present[0]: (np.array([1.0, 0.0]), np.array([0.0, 1.0]))}
        warns.append(f"only grade {present[0]} is present: fitted {formula} (no dose_gy:grade term)")

    fit = fit_binomial_glmm(resp, x, patients, names=names, n_agq=METHODS[method])
    separation = fit.separation
    for g in present:
        sel = grades == g
        if is_separated(np.column_stack([np.ones(int(sel.sum())), dose[sel]]), resp[sel]):
            separation = True
            warns.append(f"{g}: responders and non-responders are (quasi-)completely separated by dose; "
                         f"the {g} TCP curve is not determined by its own data and is not reliable")

    per_grade: dict[str, TcpGrade] = {}
    curves: dict[str, TcpCurve] = {}
    for g, (ca, cb) in coef_vectors.items():
        per_grade[g] = _grade(ca, cb, fit.fixef, fit.vcov, dose_keys, target_keys)
        xg = ca[None, :] + grid[:, None] * cb[None, :]
        curves[g] = TcpCurve(dose_gy=_frozen(grid), eta=_frozen(xg @ fit.fixef),
                             se_eta=_frozen(np.sqrt(np.einsum("ij,jk,ik->i", xg, fit.vcov, xg))))
        warns.extend(_grade_warnings(g, per_grade[g], float(dose[grades == g].max())))
    for w in warns:
        log.warning("TCP: %s", w)
    return TcpResult(formula=formula, method=method, glmm=fit, per_grade=per_grade, curves=curves,
                     separation=separation, warnings=(*fit.warnings, *warns))


def dose_interval_at_tcp(intercept: float, slope_per_gy: float, var_intercept: float, cov_intercept_slope: float,
                         var_slope: float, tcp: float, z: float = Z95) -> tuple[float, float]:
    """95 % CI of the dose at which the population TCP equals ``tcp`` (Fieller's theorem).

    The set of doses D with |a + bD − logit p| ≤ z·se(D), se(D)² = Vaa + 2D·Vab + D²·Vbb: the doses at
    which p lies inside the pointwise band plogis(eta ∓ z·se_eta) of the TCP curve. Where b² > z²·Vbb
    (the slope differs from 0 at this level) it is the interval between the roots of
    (b² − z²Vbb)D² + 2(cb − z²Vab)D + c² − z²Vaa = 0 with c = a − logit p; otherwise it is unbounded and
    (nan, nan) is returned.
    """
    c = intercept - float(logit(tcp))
    qa = slope_per_gy ** 2 - z * z * var_slope
    qb = 2.0 * (c * slope_per_gy - z * z * cov_intercept_slope)
    qc = c * c - z * z * var_intercept
    disc = qb * qb - 4.0 * qa * qc
    if not (qa > 0 and disc >= 0):
        return math.nan, math.nan
    root = math.sqrt(disc)
    # the numerically stable pair of roots
    q = -0.5 * (qb + math.copysign(root, qb))
    roots = sorted((q / qa, qc / q)) if q != 0 else [-root / (2 * qa), root / (2 * qa)]
    return float(roots[0]), float(roots[1])


def _grade(ca: np.ndarray, cb: np.ndarray, beta: np.ndarray, vcov: np.ndarray, dose_keys: dict[str, float],
           target_keys: dict[str, float]) -> TcpGrade:
    """Intercept a = ca'beta, slope b = cb'beta, D_p with delta-method SE, TCP and odds at doses."""
    a, b = float(ca @ beta), float(cb @ beta)
    at_tcp = {}
    for key, p in target_keys.items():
        if b != 0:
            dose_p = (float(logit(p)) - a) / b
            grad = -(ca + dose_p * cb) / b
            low, high = dose_interval_at_tcp(a, b, float(ca @ vcov @ ca), float(ca @ vcov @ cb),
                                             float(cb @ vcov @ cb), p)
            at_tcp[key] = DoseAtTcp(tcp=p, dose_gy=dose_p, se=math.sqrt(float(grad @ vcov @ grad)), ci_low=low,
                                    ci_high=high)
        else:
            at_tcp[key] = DoseAtTcp(tcp=p, dose_gy=math.nan, se=math.nan)
    at_dose = {}
    for key, d in dose_keys.items():
        xd = ca + d * cb
        at_dose[key] = TcpAtDose(dose_gy=d, eta=float(xd @ beta), se_eta=math.sqrt(float(xd @ vcov @ xd)))
    return TcpGrade(intercept=a, intercept_se=math.sqrt(float(ca @ vcov @ ca)), slope_per_gy=b,
                    slope_se=math.sqrt(float(cb @ vcov @ cb)), cov_intercept_slope=float(ca @ vcov @ cb),
                    dose_at_tcp=at_tcp, at_dose=at_dose)


def _grade_warnings(g: str, pg: TcpGrade, dose_max_gy: float) -> list[str]:
    warns = []
    if pg.slope_per_gy <= 0:
        warns.append(f"{g}: the fitted dose slope is not positive ({pg.slope_per_gy:.3g} per Gy); "
                     "the TCP does not rise with dose")
    for key, d in pg.dose_at_tcp.items():
        if not 0.0 <= d.dose_gy <= dose_max_gy:
            warns.append(f"{g}: the dose at TCP {key} ({d.dose_gy:.4g} Gy) lies outside the observed doses "
                         f"(0-{dose_max_gy:.4g} Gy): extrapolation")
        if math.isfinite(d.dose_gy) and not math.isfinite(d.ci_low):
            warns.append(f"{g}: the 95 % CI of the dose at TCP {key} is unbounded: the dose slope does not differ "
                         "from 0 at the 5 % level")
    return warns
