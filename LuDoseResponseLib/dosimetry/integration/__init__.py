"""Time integration of dose-rate (or activity) samples: per cycle, single time point, over cycles.

Time is hours since administration (t ≥ 0; a t = 0 sample is allowed). The integral of the values
over time is in value·h: dose rates in Gy/h give Gy, activities in MBq give MBq·h. The samples
include physical decay (they are not decay-corrected), so every fitted effective decay constant must
be at least the physical one, λ_eff = λ_phys + λ_biol ≥ λ_phys.

One module per job; :func:`time_integral` (:mod:`.integrate`) is the entry point that dispatches:

- :mod:`.models`: the curves (mono, bi, uptake–washout) and their analytic integrals;
  :mod:`.curve_fit`: weighted least squares of one model with the physical-half-life cap;
  :mod:`.goodness_of_fit`: whether a fitted curve follows its samples; :mod:`.model_selection`: AICc
  for ``auto``; :mod:`.fit_integral`: the fit path, from samples to integral and SD.
- :mod:`.trapezoid`: the trapezoid rule with explicit head and tail (also per voxel).
- :mod:`.single_time_point`: Hänscheid et al. 2018 and Madsen et al. 2018.
- :mod:`.voi`: VOI-mean sampling of dose-rate maps and one tumour's cycle dose.
- :mod:`.cycles`: sums over cycles. :mod:`.result`: the :class:`TimeIntegral` result; :mod:`.inputs`:
  argument checks and option names.

Voxel-wise integration (dose maps from dose-rate maps) is in :mod:`..voxelwise_integration`.
"""

from LuDoseResponseLib.dosimetry.integration.cycles import CycleSum, sum_cycles
from LuDoseResponseLib.dosimetry.integration.inputs import HEADS, METHODS, TAILS
from LuDoseResponseLib.dosimetry.integration.integrate import time_integral
from LuDoseResponseLib.dosimetry.integration.models import MODELS
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral
from LuDoseResponseLib.dosimetry.integration.single_time_point import hanscheid_2018, madsen_2018
from LuDoseResponseLib.dosimetry.integration.trapezoid import TrapezoidColumns, trapezoid_columns
from LuDoseResponseLib.dosimetry.integration.voi import tumour_cycle_dose, voi_mean_values

__all__ = [
    "HEADS", "METHODS", "MODELS", "TAILS", "CycleSum", "TimeIntegral", "TrapezoidColumns", "hanscheid_2018",
    "madsen_2018", "sum_cycles", "time_integral", "trapezoid_columns", "tumour_cycle_dose", "voi_mean_values",
]
