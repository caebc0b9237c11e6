"""VOI sampling: the mean of each map over a tumour mask, and one tumour's cycle dose from its dose-rate maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from LuDoseResponseLib.dosimetry.integration.integrate import time_integral
from LuDoseResponseLib.dosimetry.integration.result import TimeIntegral
from LuDoseResponseLib.errors import GeometryError, InputError


def as_array_on_grid(image, reference, what: str, name: str) -> np.ndarray:
    import SimpleITK as sitk

    from LuDoseResponseLib.imaging import require_same_grid

    if isinstance(image, sitk.Image):
        if isinstance(reference, sitk.Image):
            require_same_grid(reference, image, "the first map", f"{what}: {name}")
        return sitk.GetArrayViewFromImage(image)
    try:
        return np.asarray(image, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {name} is not an image or a numeric array") from exc


def voi_mean_values(maps: Sequence, mask, *, what: str = "tumour") -> np.ndarray:
    """Mean of each map (e.g. dose rate in Gy/h at each time point) over the VOI ``mask``.

    Maps and mask are SimpleITK images on one grid, or numpy arrays of one shape.
    """
    if len(maps) == 0:
        raise InputError(f"{what}: no maps given")
    ref = maps[0]
    m = np.asarray(as_array_on_grid(mask, ref, what, "mask")) > 0
    if not m.any():
        raise GeometryError(f"{what}: the VOI mask is empty; check the segmentation and its grid")
    out = np.empty(len(maps))
    for i, img in enumerate(maps):
        arr = as_array_on_grid(img, ref, what, f"map {i}")
        if arr.shape != m.shape:
            raise GeometryError(f"{what}: map {i} has shape {arr.shape} but the mask has {m.shape}; "
                                "resample the mask onto the map grid")
        vals = arr[m]
        if not np.all(np.isfinite(vals)):
            raise InputError(f"{what}: map {i} has NaN or infinite values inside the VOI")
        out[i] = float(vals.mean())
    return out


def tumour_cycle_dose(times_h, dose_rate_maps: Sequence, mask, *, what: str = "tumour", **kwargs) -> TimeIntegral:
    """Absorbed dose (Gy) of one tumour in one cycle: ∫ of the VOI-mean dose rate (Gy/h) over time.

    ``kwargs`` go to :func:`time_integral` (model, method, tail, values_sd, ...).
    """
    rates = voi_mean_values(dose_rate_maps, mask, what=what)
    negative = rates < 0
    if np.any(negative):
        raise InputError(f"{what}: the mean dose rate in the VOI is negative at time index "
                         f"{int(np.flatnonzero(negative)[0])}; check the dose-rate maps")
    return time_integral(times_h, rates, what=what, **kwargs)


# --------------------------------------------------------------------------------------------
# Sums over cycles
