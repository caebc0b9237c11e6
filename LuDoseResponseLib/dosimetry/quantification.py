"""SPECT quantification: counts → activity concentration (Bq/mL), pass-through, decay correction.

Counts to concentration with a SPECT calibration factor (system volume sensitivity, MIRD
Pamphlet No. 23, Dewaraja et al., J Nucl Med 2012;53:1310):

    C [Bq/mL] = N / (t_acq [s] · S [cps/MBq]) · 10⁶ [Bq/MBq] / V_voxel [mL]

- N: reconstructed counts in the voxel;
- t_acq: the wall-clock acquisition duration (``dicom_meta``: time per view × views per rotation);
- S: the calibration factor, measured with the same reconstruction and the same definition of t_acq;
- V_voxel: the voxel volume, the product of the spacings in mm divided by 1000.

Images already in Bq/mL pass through unchanged. Decay correction from the time t the values
refer to (:func:`values_time`) to a reference time t_ref: C(t_ref) = C(t) · exp(−λ (t_ref − t)),
λ = ln 2 / T½ (``nuclides.decay_factor``); t_ref before t gives a factor above 1.

Published SPECT calibration factors for Lu-177 are 4.5–5.7 cps/MBq; a factor outside
3–15 cps/MBq gives a warning (shared/reference/physics/README.md §5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import InputError, PhysicsError
from LuDoseResponseLib.imaging import voxel_volume_ml
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.parsing import positive_number
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H, decay_factor

log = logging.getLogger(__name__)

#: plausible SPECT calibration factors for Lu-177 (cps/MBq); outside is a warning
CALIBRATION_RANGE_CPS_PER_MBQ = (3.0, 15.0)
BQ_PER_MBQ = 1e6


def calibration_warnings(calibration_cps_per_mbq: float, what: str = "calibration_cps_per_mbq") -> list[str]:
    """Warnings for a calibration factor outside the plausible 3–15 cps/MBq (physics README §5)."""
    lo, hi = CALIBRATION_RANGE_CPS_PER_MBQ
    if lo <= calibration_cps_per_mbq <= hi:
        return []
    return [f"{what} = {calibration_cps_per_mbq:g} cps/MBq is outside the plausible {lo:g}–{hi:g} cps/MBq "
            "for Lu-177 SPECT (published 4.5–5.7); check the unit and the energy windows"]


def counts_to_bq_per_ml(counts: float | np.ndarray, *, calibration_cps_per_mbq: float, duration_s: float,
                        voxel_volume_ml: float) -> float | np.ndarray:
    """Activity concentration (Bq/mL) from reconstructed counts per voxel (module docstring equation).

    ``counts`` may be a number or an array; the result has the same shape.
    """
    s = positive_number(calibration_cps_per_mbq, "calibration_cps_per_mbq")
    t = positive_number(duration_s, "duration_s")
    v = positive_number(voxel_volume_ml, "voxel_volume_ml")
    factor = BQ_PER_MBQ / (t * s * v)
    out = np.asarray(counts, dtype=float) * factor
    return float(out) if out.ndim == 0 else out


def values_time(metadata: SeriesMetadata) -> datetime | None:
    """The time the pixel values refer to: the administration for DecayCorrection ADMIN, else the
    acquisition start (DecayCorrection START or NONE, or not given)."""
    if metadata.decay_correction == "ADMIN":
        return metadata.administered_at
    return metadata.acquired_at


@dataclass(frozen=True, eq=False)  # holds an image: compare by identity
class QuantifiedSpect:
    """A SPECT in Bq/mL and how it was obtained (``to_dict`` leaves the image out)."""

    image: sitk.Image
    input_units: str
    scale_bq_per_ml_per_unit: float
    decay_factor: float
    value_time: datetime | None
    reference_time: datetime | None
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_units": self.input_units,
            "scale_bq_per_ml_per_unit": self.scale_bq_per_ml_per_unit,
            "decay_factor": self.decay_factor,
            "value_time": self.value_time.isoformat() if self.value_time else None,
            "reference_time": self.reference_time.isoformat() if self.reference_time else None,
            "warnings": list(self.warnings),
        }


def _check_finite_image(image: sitk.Image, name: str) -> None:
    if not isinstance(image, sitk.Image):
        raise InputError(f"{name}: the SPECT must be a SimpleITK image, got {type(image).__name__}")
    view = sitk.GetArrayViewFromImage(image)
    bad = int(view.size - np.count_nonzero(np.isfinite(view)))
    if bad:
        raise PhysicsError(f"{name}: the SPECT image has {bad} NaN or infinite voxels of {view.size}; fix the "
                           "reconstruction or its export (fill undefined voxels with 0)")


def quantify_spect(image: sitk.Image, *, units: str | None, calibration_cps_per_mbq: float | None = None,
                   duration_s: float | None = None, value_time: datetime | None = None,
                   reference_time: datetime | None = None, half_life_h: float = LU177_HALF_LIFE_H,
                   name: str = "SPECT") -> QuantifiedSpect:
    """A SPECT image in Bq/mL: counts are converted, Bq/mL passes through unchanged.

    With ``reference_time``, values (which refer to ``value_time``, see :func:`values_time`) are
    decay-corrected to it. ``name`` (a file or manifest key) is used in messages. NaN or infinite
    voxels are a PhysicsError naming the image: they would turn every dose that touches them into NaN.
    """
    warnings: list[str] = []
    _check_finite_image(image, name)
    if units == "counts":
        if calibration_cps_per_mbq is None:
            raise InputError(f"{name}: the SPECT is in counts; calibration_cps_per_mbq is needed to convert it "
                             "to Bq/mL")
        if duration_s is None:
            raise InputError(f"{name}: the SPECT is in counts; its acquisition duration (duration_s) is needed "
                             "to convert it to Bq/mL")
        positive_number(calibration_cps_per_mbq, f"{name}: calibration_cps_per_mbq")
        warnings += calibration_warnings(float(calibration_cps_per_mbq), f"{name}: calibration_cps_per_mbq")
        scale = counts_to_bq_per_ml(1.0, calibration_cps_per_mbq=calibration_cps_per_mbq,
                                    duration_s=positive_number(duration_s, f"{name}: duration_s"),
                                    voxel_volume_ml=voxel_volume_ml(image))
    elif units == "bq_per_ml":
        scale = 1.0
        if calibration_cps_per_mbq is not None:
            log.info("%s: already in Bq/mL; calibration_cps_per_mbq is not used", name)
    else:
        raise InputError(f"{name}: units are {units!r}; they must be 'counts' or 'bq_per_ml' (set units in "
                         "the manifest)")

    factor = 1.0
    if reference_time is not None:
        if value_time is None:
            raise InputError(f"{name}: decay correction to {reference_time.isoformat()} needs the time the "
                             "values refer to (the acquisition start; the administration for DecayCorrection "
                             "ADMIN), see values_time")
        elapsed_h = (reference_time - value_time).total_seconds() / 3600.0
        factor = float(decay_factor(elapsed_h, half_life_h))
    out = sitk.Cast(image, sitk.sitkFloat64)
    if scale * factor != 1.0:
        out = out * (scale * factor)
    for w in warnings:
        log.warning(w)
    return QuantifiedSpect(out, units, scale, factor, value_time, reference_time, tuple(warnings))
