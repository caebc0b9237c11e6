"""Model selection for ``auto``: AICc and AIC (Burnham & Anderson 2002; Glatting et al., Med Phys 2007;34:4285)."""

from __future__ import annotations

import math

from LuDoseResponseLib.dosimetry.integration.curve_fit import Fit
from LuDoseResponseLib.dosimetry.integration.models import CURVES, MODELS
from LuDoseResponseLib.errors import ModelFitError

_WRSS_PER_POINT_FLOOR = 1e-16   # relative residual 1e-8: exact fits tie, and the AICc penalty decides


def aicc_of(wrss: float, n: int, k_params: int, absolute_sigma: bool) -> float | None:
    """Small-sample AIC (Burnham & Anderson 2002; Glatting et al., Med Phys 2007;34:4285).

    Known σ (``values_sd``): AICc = χ² + 2K + 2K(K+1)/(n−K−1), K = number of fitted parameters.
    σ estimated from the residuals: AICc = n·ln(WRSS/n) + 2K + 2K(K+1)/(n−K−1), K = parameters + 1.
    None when n − K − 1 ≤ 0 (the data do not support the model).
    """
    k = k_params if absolute_sigma else k_params + 1
    if n - k - 1 <= 0:
        return None
    base = wrss if absolute_sigma else n * math.log(max(wrss / n, _WRSS_PER_POINT_FLOOR))
    return base + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def aic_of(wrss: float, n: int, k_params: int, absolute_sigma: bool) -> float:
    """AIC without the small-sample term (same K and likelihood as :func:`aicc_of`)."""
    k = k_params if absolute_sigma else k_params + 1
    base = wrss if absolute_sigma else n * math.log(max(wrss / n, _WRSS_PER_POINT_FLOOR))
    return base + 2 * k


def select_auto(fits: dict[str, Fit], aicc: dict[str, float | None], misfit: dict[str, bool], refused: set[str],
                notes: dict[str, str], fit_warnings: dict[str, list[str]], n: int, absolute: bool,
                warnings: list[str], what: str) -> tuple[str, str]:
    """The model of ``auto`` and how it was chosen (rules in :func:`.integrate.time_integral`); appends warnings.

    ``misfit[m]``: model m does not describe the samples (:func:`.goodness_of_fit.misfits`); ``refused``: the
    models that cannot follow them at all (also misfits). A refused model takes part in the comparison (its AICc
    is what the rules compare) but is never returned: the best model by AIC among the others replaces it, and
    when none is left this raises ModelFitError.
    """
    wider = [m for m in MODELS if m in fits and not fits[m].degenerate and n > len(CURVES[m].param_names)]
    aic = {m: aic_of(fits[m].wrss, n, len(CURVES[m].param_names), absolute) for m in wider}
    best, how = _select(fits, aicc, misfit, wider, aic, notes, fit_warnings, n, absolute, warnings, what)
    if best not in refused:
        return best, how
    following = [m for m in wider if m not in refused]
    if not following:
        raise ModelFitError(f"{what}: no model follows these {n} samples "
                            f"({'; '.join(f'{k}: {v}' for k, v in notes.items())}); use method='trapezoid'")
    alt = min(following, key=lambda m: (aic[m], MODELS.index(m)))
    warnings.append(f"{what}: the {best} curve cannot follow the samples; chose {alt} by AIC among "
                    f"{', '.join(following)}")
    return alt, "AIC (the choice cannot follow the samples)"


def _select(fits, aicc, misfit, wider, aic, notes, fit_warnings, n, absolute, warnings, what) -> tuple[str, str]:
    # wider: determined models with a residual degree of freedom, those an information criterion can compare
    supported = [m for m in MODELS if aicc.get(m) is not None]
    if supported:
        best = min(supported, key=lambda m: (aicc[m], MODELS.index(m)))
        alt = min(wider, key=lambda m: (aic[m], MODELS.index(m)))
        if absolute and misfit[best]:
            # the models AICc can judge do not describe the data within values_sd (e.g. a mono-exponential
            # through an uptake): compare every determined model with a residual dof by AIC instead
            if alt != best and not misfit[alt]:
                warnings.append(f"{what}: the {best} model does not fit within values_sd; chose {alt} by AIC "
                                f"among {', '.join(wider)} ({n} samples are too few for its AICc)")
                return alt, "AIC (AICc choice misfits)"
        elif len(supported) == 1 and fit_warnings.get(best) and alt != best and not fit_warnings.get(alt):
            # AICc judged one model only (no comparison) and that model needed the physical-half-life cap: it
            # cannot follow the samples (e.g. a mono-exponential through an uptake phase); without values_sd
            # there is no χ² test, so the cap is the sign of misfit. Compare by AIC with the other models.
            warnings.append(f"{what}: AICc could judge only the {best} model, which needed the physical-"
                            f"half-life cap; chose {alt} by AIC among {', '.join(wider)} ({n} samples are "
                            "too few for its AICc). Choose the model explicitly if you can")
            return alt, "AIC (AICc choice capped)"
        if misfit[best]:
            # the AICc choice does not follow the samples (goodness_of_fit): the best model by AIC among those
            # that do
            following = [m for m in wider if not misfit[m]]
            if following:
                alt = min(following, key=lambda m: (aic[m], MODELS.index(m)))
                warnings.append(f"{what}: the {best} model does not follow the samples; chose {alt} by AIC among "
                                f"{', '.join(wider)} ({n} samples are too few for its AICc)")
                return alt, "AIC (AICc choice misfits)"
        return best, "AICc"
    if wider:
        pool = [m for m in wider if not misfit[m]] or wider    # prefer the models that follow the samples
        best = min(pool, key=lambda m: (aic[m], MODELS.index(m)))
        warnings.append(f"{what}: {n} samples are too few for AICc; chose {best} by AIC among the models "
                        f"with a residual degree of freedom ({', '.join(pool)}). Choose the model explicitly "
                        "if you can")
        return best, "AIC (too few samples for AICc)"
    if "mono" in fits and not fits["mono"].degenerate:
        warnings.append(f"{what}: {n} samples determine only a mono-exponential through them; no model "
                        "comparison was possible")
        return "mono", "only model determined"
    raise ModelFitError(f"{what}: no model could be fitted to these {n} samples "
                        f"({'; '.join(f'{k}: {v}' for k, v in notes.items())}); use method='trapezoid'")
