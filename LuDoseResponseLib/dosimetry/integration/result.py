"""The result of a time integral: :class:`TimeIntegral`, and its change of units (:meth:`TimeIntegral.rescaled`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

# diagnostics in the unit of the integral (value·h); every other diagnostic is unit-free or in hours
VALUE_DIAGNOSTICS = ("head_value", "body_value", "tail_value")


def json_float(x) -> float | None:
    """``x`` as a float for JSON: None for None, NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def is_amplitude(param_name: str) -> bool:
    """Parameters named ``amplitude*`` are in the unit of the samples; the others are rates (/h) or times (h)."""
    return param_name.startswith("amplitude")


@dataclass(frozen=True)
class TimeIntegral:
    """∫₀^∞ of a sampled curve, in value·h, with its standard deviation.

    ``params`` and ``covariance`` are in the order of ``param_names``; a parameter held fixed
    (a capped decay constant) has zero variance. ``aicc`` lists every candidate model with its
    AICc (None where the data do not support it). ``sd`` is None where it cannot be estimated
    (no residual degrees of freedom and no ``values_sd``); ``warnings`` then says so.
    """

    value: float
    sd: float | None
    model: str
    method: str
    tail: str
    params: dict[str, float]
    param_names: tuple[str, ...]
    covariance: tuple[tuple[float, ...], ...] | None
    aicc: dict[str, float | None]
    t_eff_h: float | None
    warnings: tuple[str, ...] = ()
    diagnostics: dict = field(default_factory=dict)

    @property
    def rel_sd(self) -> float | None:
        """sd / value (None when either is unavailable or the value is 0)."""
        if self.sd is None or self.value == 0:
            return None
        return self.sd / abs(self.value)

    @property
    def covariance_matrix(self) -> np.ndarray | None:
        return None if self.covariance is None else np.array(self.covariance, dtype=float)

    def to_dict(self) -> dict:
        return {
            "value": json_float(self.value),
            "sd": json_float(self.sd),
            "model": self.model,
            "method": self.method,
            "tail": self.tail,
            "params": {k: json_float(v) for k, v in self.params.items()},
            "param_names": list(self.param_names),
            "covariance": None if self.covariance is None
            else [[json_float(v) for v in row] for row in self.covariance],
            "aicc": {k: json_float(v) for k, v in self.aicc.items()},
            "t_eff_h": json_float(self.t_eff_h),
            "warnings": list(self.warnings),
            "diagnostics": {k: (json_float(v) if isinstance(v, float) else v) for k, v in self.diagnostics.items()},
        }

    def rescaled(self, scale: float) -> TimeIntegral:
        """The same result for samples multiplied by ``scale`` (> 0): value, SD, amplitudes and their covariance
        scale with it; rates, half-lives, AICc and the weighted residuals do not (they are unit-free)."""
        s = np.array([scale if is_amplitude(n) else 1.0 for n in self.param_names])
        with np.errstate(over="ignore"):   # an amplitude variance beyond the float range (samples ~1e300) is inf
            cov = None if self.covariance is None else tuple(
                tuple(float(v) for v in row) for row in np.array(self.covariance, dtype=float) * np.outer(s, s))
        diagnostics = {k: (v * scale if k in VALUE_DIAGNOSTICS else v) for k, v in self.diagnostics.items()}
        return dataclasses.replace(
            self, value=self.value * scale, sd=None if self.sd is None else self.sd * scale,
            params={k: v * scale if is_amplitude(k) else v for k, v in self.params.items()},
            covariance=cov, diagnostics=diagnostics)
