"""The fit path of :func:`.integrate.time_integral`: fit the candidate models, check that they follow the samples,
select one, and integrate it analytically with its SD (first order, from the fit covariance)."""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.stats import chi2, norm
from scipy.stats import t as student_t

from LuDoseResponseLib.dosimetry.integration.curve_fit import Fit, fit_capped, relative_sigma
from LuDoseResponseLib.dosimetry.integration.goodness_of_fit import (
    CHI2_P_LIMIT,
    SampleAgreement,
    misfits,
    sample_agreement,
)
from LuDoseResponseLib.dosimetry.integration.inputs import LN2
from LuDoseResponseLib.dosimetry.integration.model_selection import aicc_of, select_auto
from LuDoseResponseLib.dosimetry.integration.models import CURVES, MODELS, complex_step_grad
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral
from LuDoseResponseLib.errors import InputError, ModelFitError

log = logging.getLogger(__name__)


def fit_integral(t: np.ndarray, y: np.ndarray, sd: np.ndarray | None, model: str, tail: str, lam_phys: float,
                 what: str) -> TimeIntegral:
    """∫₀^∞ (tail ``fit``) or to the last sample plus a physical tail, of the fitted ``model`` (or ``auto``)."""
    n = t.size
    absolute = sd is not None
    if absolute:
        if np.any(sd <= 0):
            raise InputError(f"{what}: values_sd must be > 0 for a least-squares fit (a zero SD is an "
                             "infinite weight)")
        sigma = sd
    else:
        sigma = relative_sigma(y)
    warnings: list[str] = []
    candidates = MODELS if model == "auto" else (model,)
    for name in candidates:
        p = len(CURVES[name].param_names)
        if model != "auto" and n < p:
            raise InputError(f"{what}: the {name} model has {p} parameters but only {n} samples were given; "
                             "use a simpler model, method='trapezoid', or a single-time-point method")
    if n < 2:
        raise InputError(f"{what}: one sample cannot be fitted; use method='hanscheid' or 'madsen'")
    fits: dict[str, Fit] = {}
    agreement: dict[str, SampleAgreement] = {}
    fit_warnings: dict[str, list[str]] = {}
    aicc: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for name in candidates:
        p_model = len(CURVES[name].param_names)
        if n < p_model or (model == "auto" and n == p_model and name != "mono"):
            aicc[name] = None
            notes[name] = "no residual degree of freedom (samples <= parameters)"
            continue
        fit_warnings[name] = []
        fit = fit_capped(name, t, y, sigma, absolute, lam_phys, fit_warnings[name], what)
        if fit is None:
            aicc[name] = None
            notes[name] = "no admissible starting point (the data do not have this shape)"
            continue
        agreement[name] = sample_agreement(fit, t, y, absolute)
        fits[name] = fit
        # the model's own parameter count (a decay constant capped to λ_phys still counts: the cap is a
        # physical constraint applied after selection, not a simpler model family)
        aicc[name] = None if fit.degenerate else aicc_of(fit.wrss, n, len(CURVES[name].param_names), absolute)
        if not agreement[name].follows_samples:
            notes[name] = agreement[name].refusal(name)
        elif fit.degenerate:
            notes[name] = fit.degenerate
        elif aicc[name] is None:
            notes[name] = f"too few samples for AICc ({n})"
    misfit = {name: misfits(fits[name], agreement[name], n, absolute) for name in fits}
    refused = {name for name in fits if not agreement[name].follows_samples}
    if model == "auto":
        best, selected_by = select_auto(fits, aicc, misfit, refused, notes, fit_warnings, n, absolute, warnings,
                                        what)
    else:
        best = model
        selected_by = "explicit"
        if best not in fits or best in refused:
            raise ModelFitError(f"{what}: the {best} model cannot be fitted to these samples ({notes.get(best)}); "
                                "use another model or method='trapezoid'")
    warnings.extend(fit_warnings.get(best, []))
    fit = fits[best]
    m = CURVES[best]
    dof = n - fit.n_free
    if fit.undetermined:
        raise ModelFitError(f"{what}: the {best} model is not determined by these samples ({fit.degenerate}); a "
                            "phase that only one sample sees has no defined integral. Use a model with fewer "
                            "parameters, method='trapezoid', or more samples")
    warnings.extend(_fit_quality_warnings(fit, agreement[best], t, absolute, what))
    t_last = float(t[-1])
    if tail == "fit":
        def value_fn(th):
            return m.integral_inf(th)
    else:
        def value_fn(th):
            return m.integral_to(th, t_last) + m.f(np.array([t_last]), th)[0] / lam_phys
    value = float(np.real(value_fn(fit.theta)))
    sd_value = None
    if fit.cov is not None:
        g = complex_step_grad(value_fn, fit.theta)
        sd_value = float(math.sqrt(max(g @ fit.cov @ g, 0.0)))
    else:
        warnings.append(f"{what}: SD not estimable ({n} samples, {fit.n_free} free parameters, no values_sd); "
                        "pass values_sd from count statistics")
    slow = float(fit.theta[m.slow_rate_index])
    diagnostics = {
        "n_points": int(n), "dof": int(dof), "wrss": float(fit.wrss), "weighting": "absolute" if absolute
        else "relative", "selected_by": selected_by, "capped": bool(fit.capped),
        "head": "model", "t_last_h": t_last,
        # 95 % interval = value ± k95·sd: normal with known σ; Student t (n − p dof) when σ is estimated
        "k95": float(norm.ppf(0.975)) if absolute else (float(student_t.ppf(0.975, dof)) if dof > 0 else None),
        "tail_value": float(np.real(value_fn(fit.theta) - m.integral_to(fit.theta, t_last))),
        **agreement[best].to_diagnostics(),
        "not_selected": dict(notes),
    }
    for w in warnings:
        log.warning(w)
    return TimeIntegral(
        value=value, sd=sd_value, model=best, method="fit", tail=tail,
        params={k: float(v) for k, v in zip(m.param_names, fit.theta, strict=True)}, param_names=m.param_names,
        covariance=None if fit.cov is None else tuple(tuple(float(v) for v in row) for row in fit.cov),
        aicc=aicc, t_eff_h=LN2 / slow, warnings=tuple(warnings), diagnostics=diagnostics)


def _fit_quality_warnings(fit: Fit, agreement: SampleAgreement, t: np.ndarray, absolute: bool,
                          what: str) -> list[str]:
    """Warnings that qualify the chosen fit: misfit (χ², relative lack of fit, span), degeneracy, unseen uptake."""
    out = []
    dof = t.size - fit.n_free
    if absolute and dof > 0 and float(chi2.sf(fit.wrss, dof)) < CHI2_P_LIMIT:
        out.append(f"{what}: the {fit.model} model does not describe the samples within values_sd "
                   f"(χ² = {fit.wrss:.3g} on {dof} degrees of freedom, p = {float(chi2.sf(fit.wrss, dof)):.1e}); "
                   "consider another model or method='trapezoid'")
    if agreement.lacks_fit:
        out.append(agreement.lack_of_fit_warning(fit.model, what))
    if agreement.strays:
        out.append(agreement.stray_warning(fit.model, what))
    if fit.degenerate:
        out.append(f"{what}: {fit.model} fit is degenerate: {fit.degenerate}; its SD is not reliable")
    if fit.model == "uptake-washout" and fit.theta[2] * float(t[0]) > 5.0:
        out.append(f"{what}: the uptake (half-time {LN2 / fit.theta[2]:.3g} h) is complete before the first "
                   f"sample at {float(t[0]):g} h; the integral before it rests on the model, not on data")
    return out
