"""Partial-volume correction of tumour VOI activities for the patient pipeline, and the per-tumour
scaling of absorbed-dose maps.

``pvc`` (the manifest setting):

- ``none``: the VOI means as measured (RC = 1, SD 0);
- ``rc``: mean / RC(V) per tumour, with RC from a phantom curve when one is given
  (:class:`rc_curve.PhantomRecoveryCurve`), else the Gaussian sphere model at ``psf_fwhm_mm``
  (``rc_model='sphere'``, by the tumour's volume) or the numerical RC of the tumour's own mask
  (``rc_model='voi'``). RC is for a cold background: spill-in from a warm surrounding is not removed;
- ``gtm``: the geometric transfer matrix (Rousset et al. 1998) over all tumours and a background
  compartment; the RC reported is the effective observed/corrected ratio. The GTM assumes each
  compartment uniform: in a patient, the default background (every voxel outside the tumours, air and
  hot organs included) is not, so give a local background region (a shell around the tumours, or the
  organ they lie in) as one more mask; its value is then estimated, and the rest of the image stays a
  separate compartment.

The SDs are the correction's own uncertainty (RC model: phantom-fit covariance or the FWHM's SD).
They enter the EANM budget (:mod:`.uncertainty`, Gear et al. 2018) as ``recovery_rel_sd``; the
RC's dependence on the volume enters through :meth:`VoiCorrection.volume_sensitivity`
(dRC/dV, the correlated mass and RC). Count statistics and the volume's own SD are not included
here: they enter that budget separately.

**Voxel level** (as in the paper): PVC is applied to VOI activities, and the absorbed-dose map is
scaled inside each tumour by the same factor (corrected / measured mean), :func:`scale_dose_map`.
The mean dose over a VOI then equals the dose from the corrected activity; voxels outside the
tumours are not changed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.dosimetry.psf import fwhm_xyz_mm
from LuDoseResponseLib.dosimetry.pvc import GeometricTransferMatrix, numerical_recovery_coefficient
from LuDoseResponseLib.dosimetry.rc_curve import GaussianRecoveryModel, PhantomRecoveryCurve
from LuDoseResponseLib.dosimetry.uncertainty import volume_sensitivity
from LuDoseResponseLib.dosimetry.voi_masks import touches_edge, voi_masks
from LuDoseResponseLib.errors import InputError, PhysicsError
from LuDoseResponseLib.imaging import image_like, voxel_volume_ml

log = logging.getLogger(__name__)

PVC_METHODS = ("none", "rc", "gtm")
RC_MODELS = ("sphere", "voi")
_FWHM_STEP = 0.02   # relative step of the central difference in FWHM (GTM and numerical RC)


@dataclass(frozen=True)
class VoiCorrection:
    """One tumour's corrected mean concentration (Bq/mL) and activity (MBq) with the RC used."""

    name: str
    method: str
    volume_ml: float
    measured_mean_bq_per_ml: float
    mean_bq_per_ml: float
    mean_sd_bq_per_ml: float
    activity_mbq: float
    activity_sd_mbq: float
    recovery_coefficient: float
    recovery_sd: float
    drc_dv_per_ml: float
    warnings: list[str] = field(default_factory=list)

    @property
    def scale_factor(self) -> float:
        """corrected / measured mean: the factor for this tumour's voxels in the dose map."""
        m = self.measured_mean_bq_per_ml
        return self.mean_bq_per_ml / m if m != 0 else 1.0

    @property
    def recovery_rel_sd(self) -> float:
        """u(RC)/RC, the ``recovery_rel_sd`` of :func:`uncertainty.cycle_dose_uncertainty`."""
        return self.mean_sd_bq_per_ml / abs(self.mean_bq_per_ml) if self.mean_bq_per_ml != 0 else 0.0

    def volume_sensitivity(self, *, mass_from_volume: bool = True) -> float:
        """s_V = ∂ln D/∂ln V including the RC's dependence on V (:func:`uncertainty.volume_sensitivity`)."""
        if self.method != "rc":
            return volume_sensitivity(self.volume_ml, mass_from_volume=mass_from_volume)
        return volume_sensitivity(self.volume_ml, self.recovery_coefficient, self.drc_dv_per_ml,
                                  mass_from_volume=mass_from_volume)

    def to_dict(self) -> dict:
        return {"tumor": self.name, "pvc": self.method, "volume_ml": self.volume_ml,
                "measured_mean_bq_per_ml": self.measured_mean_bq_per_ml, "mean_bq_per_ml": self.mean_bq_per_ml,
                "mean_sd_bq_per_ml": self.mean_sd_bq_per_ml, "activity_mbq": self.activity_mbq,
                "activity_sd_mbq": self.activity_sd_mbq, "recovery_coefficient": self.recovery_coefficient,
                "recovery_sd": self.recovery_sd, "drc_dv_per_ml": self.drc_dv_per_ml,
                "scale_factor": self.scale_factor, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class PvcResult:
    """Per-tumour corrections, the settings used and, for the GTM, its condition number."""

    method: str
    psf_fwhm_mm: tuple[float, float, float]
    tumours: dict[str, VoiCorrection]
    condition_number: float | None = None
    warnings: list[str] = field(default_factory=list)

    def scale_factors(self) -> dict[str, float]:
        return {name: t.scale_factor for name, t in self.tumours.items()}


def correct_partial_volume(image_bq_per_ml: sitk.Image, masks, *, pvc: str = "rc",
                           psf_fwhm_mm: float | Sequence[float] = 11.0, psf_fwhm_sd_mm: float = 0.0,
                           phantom_curve: PhantomRecoveryCurve | None = None, rc_model: str = "sphere",
                           volumes_ml: Mapping[str, float] | None = None, labels: Mapping[str, int] | None = None,
                           gtm_background: str | None = "complement") -> PvcResult:
    """Corrected VOI mean concentrations and activities with their SDs (see the module docstring).

    ``volumes_ml``: the tumours' true (e.g. CT) volumes, for RC(V) and for activity = mean × V;
    by default the mask's volume on the image grid.
    """
    if pvc not in PVC_METHODS:
        raise InputError(f"pvc must be one of {', '.join(PVC_METHODS)}, got {pvc!r}")
    if rc_model not in RC_MODELS:
        raise InputError(f"rc_model must be one of {', '.join(RC_MODELS)}, got {rc_model!r}")
    fwhm = fwhm_xyz_mm(psf_fwhm_mm, "partial-volume correction")
    if not (math.isfinite(psf_fwhm_sd_mm) and psf_fwhm_sd_mm >= 0):
        raise InputError(f"psf_fwhm_sd_mm must be finite and >= 0, got {psf_fwhm_sd_mm!r}")
    arr = sitk.GetArrayFromImage(image_bq_per_ml).astype(float)
    if not np.all(np.isfinite(arr)):
        raise PhysicsError("partial-volume correction: the image contains NaN or infinite voxels")
    regions = voi_masks(image_bq_per_ml, masks, labels)
    vox_ml = voxel_volume_ml(image_bq_per_ml)
    volumes = {n: _volume(n, m, vox_ml, volumes_ml) for n, m in regions.items()}
    measured = {n: float(arr[m].mean()) for n, m in regions.items()}
    notes = {n: [] for n in regions}
    for n, m in regions.items():
        if touches_edge(m):
            notes[n].append(f"tumour {n!r} touches the image edge: part of it may lie outside the field of view")
    cond = None
    if pvc == "none":
        est = {n: (measured[n], 0.0, 1.0, 0.0, 0.0) for n in regions}
    elif pvc == "rc":
        est = {}
        for n, m in regions.items():
            rc, rc_sd, drc_dv, w = _recovery(n, m, image_bq_per_ml.GetSpacing(), volumes[n], fwhm, psf_fwhm_sd_mm,
                                             phantom_curve, rc_model)
            notes[n].extend(w)
            est[n] = (measured[n] / rc, measured[n] / rc * rc_sd / rc, rc, rc_sd, drc_dv)
    else:
        est, cond, gtm_notes = _gtm_estimates(image_bq_per_ml, regions, fwhm, psf_fwhm_sd_mm, gtm_background)
        for n in regions:
            notes[n].extend(gtm_notes)
    tumours = {}
    for n in regions:
        mean, mean_sd, rc, rc_sd, drc_dv = est[n]
        for w in notes[n]:
            log.warning("%s", w)
        tumours[n] = VoiCorrection(name=n, method=pvc, volume_ml=volumes[n], measured_mean_bq_per_ml=measured[n],
                                   mean_bq_per_ml=mean, mean_sd_bq_per_ml=mean_sd,
                                   activity_mbq=mean * volumes[n] * 1e-6, activity_sd_mbq=mean_sd * volumes[n] * 1e-6,
                                   recovery_coefficient=rc, recovery_sd=rc_sd, drc_dv_per_ml=drc_dv,
                                   warnings=notes[n])
    return PvcResult(method=pvc, psf_fwhm_mm=fwhm, tumours=tumours, condition_number=cond,
                     warnings=sorted({w for ws in notes.values() for w in ws}))


def _volume(name: str, mask: np.ndarray, vox_ml: float, volumes_ml: Mapping[str, float] | None) -> float:
    if volumes_ml is None or name not in volumes_ml:
        return float(np.count_nonzero(mask) * vox_ml)
    v = volumes_ml[name]
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise InputError(f"tumour {name!r}: volumes_ml must be finite and > 0 mL, got {v!r}")
    return float(v)


def _recovery(name, mask, spacing, volume_ml, fwhm, fwhm_sd, phantom_curve, rc_model):
    if phantom_curve is not None:
        r = phantom_curve.evaluate(volume_ml)
        return r.recovery_coefficient, r.sd, r.drc_dv_per_ml, r.warnings
    if rc_model == "sphere":
        if len(set(fwhm)) != 1:
            raise InputError(f"tumour {name!r}: the sphere RC model needs an isotropic PSF, got FWHM {fwhm} mm; "
                             "use rc_model='voi' for an anisotropic PSF")
        r = GaussianRecoveryModel(fwhm[0], fwhm_sd).evaluate(volume_ml)
        return r.recovery_coefficient, r.sd, r.drc_dv_per_ml, r.warnings
    rc = numerical_recovery_coefficient(mask, fwhm, spacing_mm=spacing)
    sd = 0.0
    if fwhm_sd > 0:
        up = numerical_recovery_coefficient(mask, tuple(f * (1 + _FWHM_STEP) for f in fwhm), spacing_mm=spacing)
        dn = numerical_recovery_coefficient(mask, tuple(f * (1 - _FWHM_STEP) for f in fwhm), spacing_mm=spacing)
        sd = abs(up - dn) / (2 * _FWHM_STEP * float(np.mean(fwhm))) * fwhm_sd
    # the shape's dRC/dV is approximated by the equal-volume sphere's (isotropic mean FWHM)
    drc_dv = GaussianRecoveryModel(float(np.cbrt(np.prod(fwhm)))).evaluate(volume_ml).drc_dv_per_ml
    return rc, sd, drc_dv, []


def _gtm_estimates(image, regions, fwhm, fwhm_sd, background):
    res = GeometricTransferMatrix(image, regions, fwhm, background=background, emit_warnings=False).correct(image)
    sd = dict.fromkeys(regions, 0.0)
    if fwhm_sd > 0:
        up = GeometricTransferMatrix(image, regions, tuple(f * (1 + _FWHM_STEP) for f in fwhm),
                                     background=background, emit_warnings=False).correct(image).corrected
        dn = GeometricTransferMatrix(image, regions, tuple(f * (1 - _FWHM_STEP) for f in fwhm),
                                     background=background, emit_warnings=False).correct(image).corrected
        step = 2 * _FWHM_STEP * float(np.mean(fwhm))
        sd = {n: abs(up[n] - dn[n]) / step * fwhm_sd for n in regions}
    est = {}
    for n in regions:
        mean = res.corrected[n]
        rc = res.effective_recovery(n)
        rc_sd = abs(rc) * sd[n] / abs(mean) if mean != 0 else 0.0
        est[n] = (mean, sd[n], rc, rc_sd, 0.0)
    return est, res.condition_number, res.warnings


def scale_dose_map(dose_map: sitk.Image, masks, scale_factors: Mapping[str, float], *,
                   labels: Mapping[str, int] | None = None) -> sitk.Image:
    """A copy of ``dose_map`` with each tumour's voxels multiplied by its PVC factor (module docstring)."""
    regions = voi_masks(dose_map, masks, labels)
    missing = [n for n in regions if n not in scale_factors]
    if missing:
        raise InputError(f"scale_dose_map: no scale factor for tumour(s) {', '.join(map(repr, missing))}")
    out = sitk.GetArrayFromImage(dose_map).astype(float)
    for n, m in regions.items():
        f = float(scale_factors[n])
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"scale_dose_map: the scale factor of tumour {n!r} must be finite and > 0, got {f!r}")
        out[m] *= f
    return image_like(out, dose_map)
