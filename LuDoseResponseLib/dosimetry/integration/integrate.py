"""``time_integral``: the one entry point. Checks the arguments, normalises the scale of the samples,
and hands them to the fit (:mod:`.fit_integral`), the trapezoid (:mod:`.trapezoid`) or a single-time-point
method (:mod:`.single_time_point`)."""

from __future__ import annotations

import math

import numpy as np

from LuDoseResponseLib.dosimetry.integration.fit_integral import fit_integral
from LuDoseResponseLib.dosimetry.integration.inputs import (
    HEADS,
    LN2,
    METHOD_ALIASES,
    METHODS,
    MODEL_ALIASES,
    TAILS,
    check_choice,
    check_samples,
    check_tail_points,
    finite,
)
from LuDoseResponseLib.dosimetry.integration.models import MODELS
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral
from LuDoseResponseLib.dosimetry.integration.single_time_point import hanscheid_2018, madsen_2018
from LuDoseResponseLib.dosimetry.integration.trapezoid import trapezoid_integral
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H


def power_of_two_scale(peak: float) -> float:
    """The power of two nearest ``peak`` (> 0): dividing by it is exact in floating point (no rounding),
    so a normalised fit sees the same numbers, to the last bit, whatever the unit of the samples."""
    return math.ldexp(1.0, math.frexp(peak)[1] - 1)


def time_integral(times_h, values, model: str = "auto", method: str = "fit", tail: str = "fit", *,
                  values_sd=None, head: str = "linear", tail_points: int = 3,
                  half_life_h: float = LU177_HALF_LIFE_H, population_t_eff_h: float | None = None,
                  population_t_eff_sd_h: float = 0.0, what: str = "time_integral") -> TimeIntegral:
    """∫₀^∞ of sampled values (value·h) with its SD.

    Arguments:
        times_h: sample times, hours since administration, strictly increasing, ≥ 0.
        values: samples (≥ 0) in any unit (Gy/h → Gy; MBq → MBq·h), physical decay included.
        model: ``auto`` | ``mono`` | ``bi`` | ``uptake-washout`` (``trapezoid`` = method trapezoid).
        method: ``fit`` (weighted least squares), ``trapezoid``, ``hanscheid`` or ``madsen`` (one sample).
        tail: after the last sample, ``fit`` continues the fitted curve (or, for trapezoid, the
            exponential fitted to the last points); ``physical`` continues with physical decay only
            from the last value — an upper bound that overestimates badly when the tumour washes out.
        values_sd: SD of each sample (count statistics). With it, σ is known: weights 1/σ² and the
            covariance (JᵀWJ)⁻¹. Without it, every sample is given the same relative uncertainty
            (σ_i ∝ y_i, floor 1e-3·max y) and the covariance is scaled by WRSS/(n − p); with no
            degrees of freedom left, ``sd`` is None.
        head: trapezoid only, before the first sample: ``linear`` (value 0 at administration, a
            triangle t₀·y₀/2; the default) or ``constant`` (y₀ from administration, t₀·y₀).
        tail_points: trapezoid with tail ``fit``: the number of last samples (taken at or after
            the maximum) to which the tail exponential is fitted on ln y.
        half_life_h: physical half-life; a fitted effective half-life above it is capped to it.
        population_t_eff_h, population_t_eff_sd_h: for method ``madsen``.
        what: a label (tumour, cycle) used in messages.

    Before the first sample a fitted model defines the curve itself (mono and bi extrapolate back
    to their amplitude at t = 0, uptake–washout starts from 0); ``head`` applies to the trapezoid.

    ``auto`` fits every model and keeps the lowest AICc among those whose AICc is defined
    (n − K − 1 > 0) and whose integral is determined; ties go to the simpler model. With too
    few samples for any AICc (four samples without ``values_sd``), it compares the models that
    keep a residual degree of freedom by AIC instead, and says so in ``warnings``. It does the same,
    switching only to a model that fits without the cap or misfit, when the AICc choice is no real
    comparison or fails: with ``values_sd``, when the AICc choice misfits (χ² p < 1e-3); without
    it, when AICc could judge a single model and that model needed the physical-half-life cap
    (e.g. five samples of an uptake: only the mono-exponential has an AICc, and it cannot rise).
    A model with n = K samples (bi-exponential through four samples) is never chosen by ``auto``:
    nothing can compare it; ask for it explicitly (then it passes through the samples exactly).
    An explicit model whose integral the samples do not determine (a phase seen by one sample)
    raises ModelFitError rather than returning an arbitrary integral; ill-conditioned parameters
    with a determined integral (uptake and washout rates nearly equal) are accepted.

    Every fitted model must follow its samples (:mod:`.goodness_of_fit`, with or without ``values_sd``):
    a curve whose integral over the sampled span is more than 10× off that of the samples is refused
    (ModelFitError for an explicit model; ``auto`` drops it and raises only when no model is left); one
    more than 2× off, or whose samples scatter about it by more than 50 % RMS (no ``values_sd``), or that
    fails the χ² test (``values_sd``) gets a warning, and ``auto`` prefers a model that does not.

    The result does not depend on the unit of the samples: they are divided by a power of two near the
    largest sample before fitting (exact in floating point) and the result is scaled back
    (:meth:`TimeIntegral.rescaled`), so the solver's tolerances are relative to the data.

    ``diagnostics["k95"]``: value ± k95·sd is a 95 % interval (1.96 with ``values_sd``; Student t
    with n − p degrees of freedom when σ is estimated from the residuals).
    """
    model = MODEL_ALIASES.get(str(model).strip().lower(), model)
    method = METHOD_ALIASES.get(str(method).strip().lower(), method)
    if model == "trapezoid":
        model, method = "auto", "trapezoid"
    check_choice("method", method, METHODS, what)
    check_choice("model", model, ("auto", *MODELS), what)
    check_choice("tail", tail, TAILS, what)
    check_choice("head", head, HEADS, what)
    half_life_h = finite("half_life_h", half_life_h, what, positive=True)
    t, y, sd = check_samples(times_h, values, values_sd, what)
    lam_phys = LN2 / half_life_h
    if method in ("hanscheid", "madsen"):
        if t.size != 1:
            raise InputError(f"{what}: method {method!r} takes exactly one sample, got {t.size}")
        if method == "madsen" and population_t_eff_h is None:
            raise InputError(f"{what}: method 'madsen' needs population_t_eff_h (a population effective half-life)")
    if method == "trapezoid":
        tail_points = check_tail_points(tail_points, what)
    if not np.any(y > 0):
        if method in ("hanscheid", "madsen"):
            return _single_time_point(t, y, sd, method, population_t_eff_h, population_t_eff_sd_h, half_life_h,
                                      what)
        return TimeIntegral(0.0, 0.0, "zero", method, tail, {}, (), None, {}, None,
                            (f"{what}: every sample is 0; the integral is 0",), {"n_points": int(t.size)})
    scale = power_of_two_scale(float(np.max(y)))
    y, sd = y / scale, None if sd is None else sd / scale
    if method in ("hanscheid", "madsen"):
        result = _single_time_point(t, y, sd, method, population_t_eff_h, population_t_eff_sd_h, half_life_h, what)
    elif method == "trapezoid":
        result = trapezoid_integral(t, y, sd, head, tail, tail_points, lam_phys, what)
    else:
        result = fit_integral(t, y, sd, model, tail, lam_phys, what)
    return result.rescaled(scale)


def _single_time_point(t, y, sd, method, population_t_eff_h, population_t_eff_sd_h, half_life_h,
                       what) -> TimeIntegral:
    sd0 = None if sd is None else float(sd[0])
    if method == "hanscheid":
        return hanscheid_2018(float(t[0]), float(y[0]), value_sd=sd0, what=what)
    return madsen_2018(float(t[0]), float(y[0]), population_t_eff_h, t_eff_sd_h=population_t_eff_sd_h,
                       value_sd=sd0, half_life_h=half_life_h, what=what)
