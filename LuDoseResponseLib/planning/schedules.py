"""Predicted cumulative tumour dose, kidney BED and TCP of a schedule, and the schedules that maximise TCP.

A schedule gives future cycles j (numbers after the last one imaged) activities A_j (GBq). With the
dose per GBq y_j jointly log-normal (:mod:`.prediction`: ln y ~ N(μ, Σ)), exactly:

- tumour: D = D_received + Σ_j A_j y_j, E[D] = D_rec + Σ A_j e^(μ_j + Σ_jj/2),
  Var[D] = Var[D_rec] + Σ_jl A_j A_l E[y_j]E[y_l](e^(Σ_jl) − 1);
- kidney: BED = BED_received + Σ_j (A_j y_j + G A_j² y_j² / (α/β)), each cycle's BED being the
  mono-exponential LQ BED (:func:`LuDoseResponseLib.dosimetry.bed.bed_mono_exponential`, G from the
  kidney's mean measured T_eff), whose mean and variance follow from E[y_j^a y_l^b] =
  E[y_j^a]E[y_l^b] e^(ab Σ_jl), with E[y^a] = e^(aμ + a²Σ/2).

The 95 % intervals are those of the log-normal with the same mean and variance (Fenton–Wilkinson).
The TCP of each tumour is the population curve at E[D] with the CI of :meth:`TcpCurve.at`; the plan's
objective is the mean TCP over the patient's tumours (the expected fraction controlled), with a
delta-method CI that adds the coefficient covariance and the tumours' dose variances (tumours independent).

Schedules: ``fixed`` — n more cycles of one activity; ``free`` — n more cycles with activities in
[lo, hi] GBq chosen to maximise the objective subject to every kidney's mean cumulative BED (or, by
choice, its upper 95 % bound) ≤ the limit (SLSQP; since the objective rises with every A_j, the optimum
is then moved onto the limit cycle by cycle, so a binding limit is used to within 0.001 Gy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.special import expit

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.planning.prediction import DosePerGbqFit
from LuDoseResponseLib.planning.tcp_curve import TcpCurve
from LuDoseResponseLib.stats.tcp import Z95

#: free activities are optimised to this BED (Gy) below the limit
BED_TOLERANCE_GY = 1e-3
#: what the kidney limit holds: the predicted mean cumulative BED, or its upper 95 % bound
LIMIT_STATISTICS = ("mean", "upper95")


@dataclass(frozen=True, eq=False)
class TumourTerm:
    name: str
    received_gy: float
    received_var: float
    fit: DosePerGbqFit


@dataclass(frozen=True, eq=False)
class KidneyTerm:
    name: str
    received_bed_gy: float
    received_var: float
    fit: DosePerGbqFit
    g_factor: float
    alpha_beta_gy: float


def lognormal_interval(mean: float, var: float) -> tuple[float, float]:
    """95 % interval of the log-normal with this mean and variance."""
    if var <= 0 or mean <= 0:
        return mean, mean
    s2 = math.log1p(var / mean**2)
    m = math.log(mean) - s2 / 2
    return math.exp(m - Z95 * math.sqrt(s2)), math.exp(m + Z95 * math.sqrt(s2))


def _power_moments(fit: DosePerGbqFit, cycles: Sequence[int]):
    """E[y^1], E[y^2] per future cycle and Σ."""
    mu, sigma = fit.log_moments(cycles)
    d = np.diag(sigma)
    return np.exp(mu + d / 2), np.exp(2 * mu + 2 * d), sigma


def tumour_dose(term: TumourTerm, cycles: Sequence[int], activities: np.ndarray) -> tuple[float, float]:
    """(mean, variance) of the cumulative dose after the schedule."""
    if len(cycles) == 0:
        return term.received_gy, term.received_var
    e1, _, sigma = _power_moments(term.fit, cycles)
    ay = activities * e1
    return term.received_gy + float(ay.sum()), term.received_var + float(ay @ np.expm1(sigma) @ ay)


def kidney_power_terms(term: KidneyTerm, cycles: Sequence[int]):
    """What the kidney BED moments need of the fit for these cycles: E[y], E[y²] and the covariance blocks
    K_pq(j, l) = E[y_j^p] E[y_l^q] (e^(pq Σ_jl) − 1), which do not depend on the activities."""
    e1, e2, sigma = _power_moments(term.fit, cycles)
    e = (e1, e2)
    return e, {(p, q): np.outer(e[p], e[q]) * np.expm1((p + 1) * (q + 1) * sigma) for p in range(2) for q in range(2)}


def _kidney_moments(term: KidneyTerm, terms, a: np.ndarray):
    """Mean and variance of the cumulative BED, and their gradients with respect to the activities."""
    (e1, e2), blocks = terms
    k = term.g_factor / term.alpha_beta_gy
    c, dc = (a, k * a**2), (np.ones_like(a), 2 * k * a)
    mean = term.received_bed_gy + float(c[0] @ e1 + c[1] @ e2)
    dmean = dc[0] * e1 + dc[1] * e2
    var, dvar = term.received_var, np.zeros_like(a)
    for (p, q), kpq in blocks.items():
        kc = kpq @ c[q]
        var += float(c[p] @ kc)
        dvar += dc[p] * kc + (c[p] @ kpq) * dc[q]
    return mean, var, dmean, dvar


def kidney_bed(term: KidneyTerm, cycles: Sequence[int], activities: np.ndarray) -> tuple[float, float]:
    """(mean, variance) of the cumulative BED after the schedule."""
    if len(cycles) == 0:
        return term.received_bed_gy, term.received_var
    a = np.asarray(activities, dtype=float)
    mean, var, _, _ = _kidney_moments(term, kidney_power_terms(term, cycles), a)
    return mean, var


def kidney_bed_upper(term: KidneyTerm, cycles: Sequence[int], activities: np.ndarray,
                     terms=None) -> tuple[float, np.ndarray]:
    """The upper 95 % bound of the cumulative BED (:func:`lognormal_interval`) and its gradient
    (``terms``: :func:`kidney_power_terms` of these cycles, when already computed)."""
    a = np.asarray(activities, dtype=float)
    mean, var, dmean, dvar = _kidney_moments(term, terms or kidney_power_terms(term, cycles), a)
    if var <= 0:
        return mean, dmean
    r = var / mean**2
    s2 = math.log1p(r)
    ds2 = (dvar / mean**2 - 2 * var * dmean / mean**3) / (1 + r)
    s = math.sqrt(s2)
    upper = math.exp(math.log(mean) - s2 / 2 + Z95 * s)
    return upper, upper * (dmean / mean - ds2 / 2 + Z95 * ds2 / (2 * s))


@dataclass(frozen=True)
class Schedule:
    kind: str                         # "fixed" or "free"
    cycles: tuple[int, ...]
    activities_gbq: tuple[float, ...]

    @property
    def n_cycles(self) -> int:
        return len(self.cycles)

    @property
    def label(self) -> str:
        if not self.cycles:
            return "no further cycle"
        if self.kind == "fixed":
            return f"{self.n_cycles} x {self.activities_gbq[0]:g} GBq"
        return f"{self.n_cycles} cycles, free activity"


@dataclass(frozen=True)
class Evaluation:
    """A schedule's predictions: per tumour (dose, TCP), per kidney (BED), the objective."""

    schedule: Schedule
    tumours: dict[str, dict]
    kidneys: dict[str, dict]
    objective_tcp: float
    objective_ci: tuple[float, float]
    max_kidney_bed_gy: float
    limited_bed_gy: float             # the statistic held to the limit: max over kidneys of the mean or upper bound
    feasible: bool
    limit_binds: bool = False


class Problem:
    """One patient's planning problem: tumour and kidney terms, TCP curve, BED limit.

    ``limit_on``: ``"mean"`` holds each kidney's predicted mean cumulative BED to the limit; ``"upper95"``
    its upper 95 % bound (so that the true BED exceeds the limit in about 2.5 % of patients, if the
    model holds).
    """

    def __init__(self, tumours: Sequence[TumourTerm], kidneys: Sequence[KidneyTerm], curve: TcpCurve,
                 limit_gy: float, last_cycle: int, limit_on: str = "mean"):
        if limit_on not in LIMIT_STATISTICS:
            raise InputError(f"kidney_limit_on must be one of {LIMIT_STATISTICS}, got {limit_on!r}")
        self.tumours, self.kidneys, self.curve = list(tumours), list(kidneys), curve
        self.limit_gy, self.last_cycle, self.limit_on = float(limit_gy), int(last_cycle), limit_on

    def future(self, n: int) -> tuple[int, ...]:
        return tuple(range(self.last_cycle + 1, self.last_cycle + 1 + n))

    # --- the objective and the constraint, with gradients (for SLSQP) ---
    def _objective(self, a: np.ndarray, e1s: list[np.ndarray]) -> tuple[float, np.ndarray]:
        value, grad = 0.0, np.zeros_like(a)
        for t, e1 in zip(self.tumours, e1s, strict=True):
            p = float(expit(self.curve.intercept + self.curve.slope_per_gy * (t.received_gy + a @ e1)))
            value += p
            grad += p * (1 - p) * self.curve.slope_per_gy * e1
        n = len(self.tumours)
        return value / n, grad / n

    def _kidney_means(self, a: np.ndarray, moments) -> np.ndarray:
        return np.array([k.received_bed_gy + a @ e1 + k.g_factor * (a**2) @ e2 / k.alpha_beta_gy
                         for k, (e1, e2) in zip(self.kidneys, moments, strict=True)])

    def _kidney_jacobian(self, a: np.ndarray, moments) -> np.ndarray:
        return np.array([e1 + 2 * k.g_factor * a * e2 / k.alpha_beta_gy
                         for k, (e1, e2) in zip(self.kidneys, moments, strict=True)])

    def evaluate(self, schedule: Schedule) -> Evaluation:
        a = np.asarray(schedule.activities_gbq, dtype=float)
        tumours, eta_terms = {}, []
        for t in self.tumours:
            mean, var = tumour_dose(t, schedule.cycles, a)
            lo, hi = lognormal_interval(mean, var)
            tcp = self.curve.at(mean, math.sqrt(var))
            tumours[t.name] = {"dose_gy": mean, "dose_sd_gy": math.sqrt(var), "dose_ci_low_gy": lo,
                               "dose_ci_high_gy": hi, **tcp.to_dict()}
            eta_terms.append((mean, var, tcp.tcp))
        kidneys = {}
        for k in self.kidneys:
            mean, var = kidney_bed(k, schedule.cycles, a)
            lo, hi = lognormal_interval(mean, var)
            kidneys[k.name] = {"bed_gy": mean, "bed_sd_gy": math.sqrt(var), "bed_ci_low_gy": lo, "bed_ci_high_gy": hi}
        objective, ci = self._objective_ci(eta_terms)
        worst = max(v["bed_gy"] for v in kidneys.values())
        key = "bed_gy" if self.limit_on == "mean" else "bed_ci_high_gy"
        limited = max(v[key] for v in kidneys.values())
        # stopping now is always possible: the limit constrains further cycles only
        feasible = limited <= self.limit_gy or not schedule.cycles
        return Evaluation(schedule, tumours, kidneys, objective, ci, worst, limited, feasible)

    def _objective_ci(self, terms) -> tuple[float, tuple[float, float]]:
        """Mean TCP and its delta-method 95 % CI on the logit scale."""
        n, b = len(terms), self.curve.slope_per_gy
        value = sum(p for _, _, p in terms) / n
        grad_ab = np.zeros(2)
        var = 0.0
        for mean, dose_var, p in terms:
            w = p * (1 - p) / n
            grad_ab += w * np.array([1.0, mean])
            var += (w * b) ** 2 * dose_var
        var += float(grad_ab @ self.curve.vcov @ grad_ab)
        if not 0 < value < 1:
            return value, (value, value)
        eta, se = math.log(value / (1 - value)), math.sqrt(var) / (value * (1 - value))
        return value, (float(expit(eta - Z95 * se)), float(expit(eta + Z95 * se)))

    def _limited(self, a: np.ndarray, moments, terms) -> np.ndarray:
        """Per kidney, the BED statistic held to the limit (mean or upper 95 % bound)."""
        if self.limit_on == "mean":
            return self._kidney_means(a, moments)
        return np.array([kidney_bed_upper(k, (), a, t)[0] for k, t in zip(self.kidneys, terms, strict=True)])

    def _limited_jacobian(self, a: np.ndarray, moments, terms) -> np.ndarray:
        if self.limit_on == "mean":
            return self._kidney_jacobian(a, moments)
        return np.array([kidney_bed_upper(k, (), a, t)[1] for k, t in zip(self.kidneys, terms, strict=True)])

    def _onto_limit(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray, slack, moments, e1s,
                    target: float) -> np.ndarray:
        """Move ``a`` to between ``target`` and 2·``target`` Gy below the limit, one cycle at a time: lower the
        cycles that buy the least TCP per Gy of BED first, raise those that buy the most first."""
        a = a.copy()
        worst = int(np.argmax(self._kidney_means(a, moments)))
        ratio = self._objective(a, e1s)[1] / self._kidney_jacobian(a, moments)[worst]
        over = slack(a) < target
        for j in (np.argsort(ratio) if over else np.argsort(-ratio)):
            if target <= slack(a) <= 2 * target:
                break
            end = lo[j] if over else hi[j]

            def at(v: float, j: int = j, base: np.ndarray = a) -> np.ndarray:
                x = base.copy()
                x[j] = v
                return x

            if (slack(at(end)) - target) * (slack(a) - target) > 0:   # this cycle alone cannot reach the target
                a = at(end)
                continue
            a = at(brentq(lambda v: slack(at(v)) - target, a[j], end, xtol=1e-14) if a[j] != end else end)
        return a

    def fixed(self, n: int, activity_gbq: float) -> Evaluation:
        return self.evaluate(Schedule("fixed", self.future(n), (float(activity_gbq),) * n))

    def free(self, n: int, low_gbq: float, high_gbq: float) -> Evaluation:
        """The best n-cycle schedule with activities in [low, high] under the kidney limit (module docstring)."""
        cycles = self.future(n)
        moments = [_power_moments(k.fit, cycles)[:2] for k in self.kidneys]
        terms = [kidney_power_terms(k, cycles) for k in self.kidneys] if self.limit_on == "upper95" else None
        e1s = [_power_moments(t.fit, cycles)[0] for t in self.tumours]
        lo, hi = np.full(n, float(low_gbq)), np.full(n, float(high_gbq))

        def slack(a: np.ndarray) -> float:
            return self.limit_gy - float(self._limited(a, moments, terms).max())

        def done(a: np.ndarray, binds: bool) -> Evaluation:
            return replace(self.evaluate(Schedule("free", cycles, tuple(float(v) for v in a))), limit_binds=binds)

        if slack(lo) < 0:
            return done(lo, False)
        if slack(hi) >= 0:
            return done(hi, False)
        target = BED_TOLERANCE_GY / 2   # every returned schedule ends between 0 and this far below the limit
        uniform = lo if slack(lo) <= 1.5 * target else lo + (hi - lo) * brentq(
            lambda s: slack(lo + s * (hi - lo)) - 1.5 * target, 0.0, 1.0, xtol=1e-14)
        constraint = {"type": "ineq", "fun": lambda a: self.limit_gy - self._limited(a, moments, terms),
                      "jac": lambda a: -self._limited_jacobian(a, moments, terms)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = minimize(lambda a: tuple(-v for v in self._objective(a, e1s)), uniform, jac=True,
                              method="SLSQP", bounds=list(zip(lo, hi, strict=True)), constraints=[constraint],
                              options={"ftol": 1e-12, "maxiter": 200})
        best = uniform
        if np.all(np.isfinite(result.x)):
            candidate = self._onto_limit(np.clip(result.x, lo, hi), lo, hi, slack, moments, e1s, target)
            if self._objective(candidate, e1s)[0] >= self._objective(uniform, e1s)[0]:
                best = candidate
        best = self._onto_limit(best, lo, hi, slack, moments, e1s, target)
        return done(best, True)
