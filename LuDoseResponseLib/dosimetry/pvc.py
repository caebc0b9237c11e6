"""Partial-volume correction: recovery coefficients (closed form and numerical) and the GTM method.

**Closed form.** A uniform sphere of radius R in a cold background, blurred by an isotropic Gaussian
of width σ (FWHM = 2√(2 ln 2)·σ). Its mean recovery coefficient over the sphere, RC = (1/V)∫_V∫_V
g(x−y) dx dy, follows from the overlap volume of two balls at distance s,
V∩(s) = π/12·(4R+s)(2R−s)², as (a = R/σ, M_n(b) = ∫₀^b uⁿ e^(−u²/2) du):

    RC(a) = [16a³ M₂(2a) − 12a² M₃(2a) + M₅(2a)] / (8√(2π) a³)

It equals (3/R³)∫₀^R P_in(r) r² dr with the blurred profile P_in of the physics reference §4, tends
to 1 − 3/(√(2π) a) for large spheres and to √2 a³/(3√π) for small ones. M_n come from the
regularised incomplete gamma function, which keeps the small-sphere limit accurate.

**Numerical RC** for any VOI shape on a voxel grid: the mean over the VOI of the blurred VOI
indicator (:mod:`.psf` convention), computed on a grid padded so that the field of view plays no part.
It is the RC of the voxelised object, which at 4–5 mm voxels differs from the closed form of the
sphere it approximates by the voxelisation (e.g. a 4 mL sphere on 4.8 mm voxels keeps 83 % of its
volume; RC 0.503 against 0.516).

**GTM** (Rousset OG, Ma Y, Evans AC. J Nucl Med 1998;39:904–911). With compartments i (tumours and
a background) of true concentration T_i and VOIs j, the observed VOI means are t_j = Σ_i ω_ij T_i,
ω_ij = mean over VOI j of RSF_i, the region spread function (the blurred indicator of compartment i).
Solving the linear system gives T. As Rousset et al. do, the background (here, by default, every
voxel outside the masks) is one more compartment with its own concentration. VOI voxels within 5 σ
of the image edge are left out of the VOI means, where the activity beyond the field of view
(unknown, taken as zero) would matter.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.special import erf, gamma, gammainc

from LuDoseResponseLib.dosimetry.psf import (
    FWHM_PER_SIGMA,
    blur,
    isotropic_fwhm_mm,
    margin_voxels_zyx,
)
from LuDoseResponseLib.dosimetry.voi_masks import voi_masks
from LuDoseResponseLib.errors import DataQualityWarning, InputError, ModelFitWarning, PhysicsError
from LuDoseResponseLib.imaging import require_same_grid

log = logging.getLogger(__name__)

#: a GTM with a larger 2-norm condition number amplifies image noise by up to that factor: warned
GTM_WARN_CONDITION = 100.0
#: above this the GTM is singular to working precision: an error
GTM_SINGULAR_CONDITION = 1e10
BACKGROUND = "background"


# --------------------------------------------------------------------------------------------
# Closed form (uniform sphere, isotropic Gaussian)
# --------------------------------------------------------------------------------------------

def _positive_values(value, name: str, unit: str, what: str) -> np.ndarray:
    """``value`` as a float array of finite numbers > 0, or a PhysicsError naming ``name`` and ``unit``."""
    try:
        v = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PhysicsError(f"{what}: {name} must be numbers ({unit}), got {value!r}") from exc
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise PhysicsError(f"{what}: {name} must be finite and > 0 {unit}, got {np.ravel(v)[:6].tolist()}")
    return v


def sphere_radius_mm(volume_ml) -> np.ndarray:
    """Radius (mm) of a sphere of ``volume_ml`` (1 mL = 1000 mm³)."""
    return np.cbrt(3.0 * 1000.0 * np.asarray(volume_ml, dtype=float) / (4.0 * math.pi))


def _moment(n: int, b: np.ndarray) -> np.ndarray:
    """M_n(b) = ∫₀^b uⁿ e^(−u²/2) du = 2^((n−1)/2) Γ((n+1)/2) P((n+1)/2, b²/2)."""
    k = (n + 1) / 2.0
    return 2.0 ** ((n - 1) / 2.0) * gamma(k) * gammainc(k, b * b / 2.0)


def _rc_of_a(a: np.ndarray) -> np.ndarray:
    b = 2.0 * a
    j = 16.0 * a**3 * _moment(2, b) - 12.0 * a**2 * _moment(3, b) + _moment(5, b)
    return j / (8.0 * math.sqrt(2.0 * math.pi) * a**3)


def _drc_da(a: np.ndarray) -> np.ndarray:
    """dRC/da; the boundary term of dJ/da vanishes (the integrand is 0 at u = 2a)."""
    b = 2.0 * a
    dj = 48.0 * a**2 * _moment(2, b) - 24.0 * a * _moment(3, b)
    return (dj - 3.0 * _rc_of_a(a) * 8.0 * math.sqrt(2.0 * math.pi) * a**2) / (8.0 * math.sqrt(2.0 * math.pi) * a**3)


def _as_output(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def recovery_coefficient(volume_ml, fwhm_mm) -> float | np.ndarray:
    """Exact mean recovery coefficient of a uniform sphere of ``volume_ml`` under an isotropic Gaussian
    PSF of ``fwhm_mm`` (cold background; see the module docstring).

    Vectorised: volumes and FWHMs broadcast like numpy arrays (an array of FWHMs is several isotropic
    PSFs, not an (x, y, z) triple: the closed form is isotropic only).
    """
    v = _positive_values(volume_ml, "volume_ml", "mL", "recovery coefficient")
    a = sphere_radius_mm(v) / (_positive_values(fwhm_mm, "the PSF FWHM", "mm", "recovery coefficient") / FWHM_PER_SIGMA)
    return _as_output(np.clip(_rc_of_a(a), 0.0, 1.0))


def recovery_coefficient_derivatives(volume_ml, fwhm_mm) -> tuple:
    """(dRC/dV per mL, dRC/dFWHM per mm) of :func:`recovery_coefficient`, exact, vectorised alike.

    dRC/dV feeds :func:`uncertainty.volume_sensitivity` (``drc_dv_per_ml``); dRC/dFWHM carries an
    uncertain system resolution into the RC's SD.
    """
    v = _positive_values(volume_ml, "volume_ml", "mL", "recovery coefficient derivative")
    fwhm = _positive_values(fwhm_mm, "the PSF FWHM", "mm", "recovery coefficient derivative")
    a = sphere_radius_mm(v) / (fwhm / FWHM_PER_SIGMA)
    d = _drc_da(a)
    return _as_output(d * a / (3.0 * v)), _as_output(-d * a / fwhm)


def sphere_profile(r_mm, radius_mm: float, fwhm_mm: float) -> np.ndarray:
    """P_in(r): a unit-concentration sphere of ``radius_mm`` blurred by an isotropic Gaussian, at
    distance ``r_mm`` from its centre (physics reference §4; the r → 0 limit is taken exactly)."""
    sigma = isotropic_fwhm_mm(fwhm_mm, "sphere profile") / FWHM_PER_SIGMA
    if not (math.isfinite(radius_mm) and radius_mm > 0):
        raise PhysicsError(f"sphere profile: radius_mm must be finite and > 0, got {radius_mm!r}")
    r = np.abs(np.asarray(r_mm, dtype=float))
    s2 = sigma * math.sqrt(2.0)
    lo, hi = (radius_mm - r) / s2, (radius_mm + r) / s2
    small = r < 1e-6 * sigma
    rs = np.where(small, 1.0, r)
    tail = sigma / (rs * math.sqrt(2.0 * math.pi)) * (np.exp(-lo**2) - np.exp(-hi**2))
    a = radius_mm / sigma
    centre = math.erf(a / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * a * math.exp(-a * a / 2.0)
    return np.where(small, centre, 0.5 * (erf(lo) + erf(hi)) - tail)


# --------------------------------------------------------------------------------------------
# Numerical RC of an arbitrary VOI on a voxel grid
# --------------------------------------------------------------------------------------------

def numerical_recovery_coefficient(voi, fwhm_mm: float | Sequence[float], *,
                                   spacing_mm: Sequence[float] | None = None) -> float:
    """Mean over the VOI of the blurred VOI (unit concentration inside, cold outside).

    ``voi``: a binary SimpleITK image, or a boolean [z, y, x] array with ``spacing_mm`` (x, y, z).
    The PSF may be anisotropic (:mod:`.psf`). The array is zero-padded by the kernel width first, so
    a VOI at the edge of the field of view is treated as if the field were unbounded.
    """
    if isinstance(voi, sitk.Image):
        arr = sitk.GetArrayFromImage(voi) != 0
        spacing = voi.GetSpacing()
    else:
        if spacing_mm is None:
            raise InputError("numerical recovery coefficient: give spacing_mm (x, y, z) with a VOI array")
        arr, spacing = np.asarray(voi) != 0, tuple(spacing_mm)
        if arr.ndim != 3:
            raise InputError(f"numerical recovery coefficient: the VOI must be 3-D [z, y, x], got shape {arr.shape}")
    if not arr.any():
        raise InputError("numerical recovery coefficient: the VOI is empty")
    pad = margin_voxels_zyx(fwhm_mm, spacing)
    sl = tuple(slice(int(z.min()), int(z.max()) + 1) for z in np.nonzero(arr))  # crop to the VOI's box first
    a = np.pad(arr[sl], [(p, p) for p in pad]).astype(float)
    return float(blur(a, spacing, fwhm_mm)[a > 0].mean())


# --------------------------------------------------------------------------------------------
# Geometric transfer matrix (Rousset et al. 1998)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GtmResult:
    """Corrected mean concentrations per compartment, the transfer matrix and its conditioning.

    ``matrix[j, i]`` = ω_ij: the mean over VOI j of compartment i's region spread function.
    """

    names: tuple[str, ...]
    corrected: dict[str, float]
    observed: dict[str, float]
    matrix: np.ndarray
    condition_number: float
    warnings: list[str] = field(default_factory=list)

    def effective_recovery(self, name: str) -> float:
        """observed / corrected mean for ``name`` (the RC the GTM implies, spill-in included)."""
        c = self.corrected[name]
        return self.observed[name] / c if c != 0 else math.nan


class GeometricTransferMatrix:
    """The GTM for a fixed set of masks and PSF; :meth:`correct` applies it to any image on that grid
    (for instance every time point of a study). Ill-conditioning is kept in :attr:`warnings` and, with
    ``emit_warnings``, also warned."""

    def __init__(self, reference: sitk.Image, masks, fwhm_mm: float | Sequence[float], *,
                 labels: Mapping[str, int] | None = None, background: str | None = "complement",
                 warn_condition: float = GTM_WARN_CONDITION, emit_warnings: bool = True):
        self.reference = reference
        self.fwhm_mm = fwhm_mm
        regions = voi_masks(reference, masks, labels)
        if background not in ("complement", None):
            raise InputError(f"gtm: background must be 'complement' or None, got {background!r}; to give your own "
                             "background region, pass it as one more mask")
        if background == "complement":
            rest = ~np.logical_or.reduce(list(regions.values()))
            if rest.any():
                name = BACKGROUND if BACKGROUND not in regions else "background_rest"
                regions[name] = rest
            else:
                log.info("gtm: the masks cover the whole image; no background compartment added")
        self.names = tuple(regions)
        spacing = reference.GetSpacing()
        margin = margin_voxels_zyx(fwhm_mm, spacing)
        self.vois = {n: _interior(m, margin) for n, m in regions.items()}
        rsf = {n: blur(m.astype(float), spacing, fwhm_mm) for n, m in regions.items()}
        self.matrix = np.array([[rsf[i][self.vois[j]].mean() for i in self.names] for j in self.names])
        self.condition_number = float(np.linalg.cond(self.matrix))
        if not math.isfinite(self.condition_number) or self.condition_number > GTM_SINGULAR_CONDITION:
            raise InputError(f"gtm: the transfer matrix is singular (condition number {self.condition_number:.3g}); "
                             f"{_inseparable(self.matrix, self.names)} cannot be told apart at FWHM {fwhm_mm} mm: "
                             "merge them, drop one, or check the FWHM")
        self.warnings: list[str] = [
            f"gtm: VOI {n!r} lies entirely within 5 σ of the image edge; its mean depends on the activity "
            "outside the field of view (taken as zero)" for n, m in regions.items() if self.vois[n] is m]
        log.info("gtm: %d compartments (%s), condition number %.3g", len(self.names), ", ".join(self.names),
                 self.condition_number)
        if self.condition_number > warn_condition:
            self.warnings.append(
                f"gtm: the transfer matrix is ill-conditioned (condition number {self.condition_number:.3g} > "
                f"{warn_condition:g}); noise in the VOI means may be amplified up to that factor, "
                f"mostly in {_inseparable(self.matrix, self.names)}")
        if emit_warnings:  # a caller with a result ``warnings`` field carries them there instead
            for msg in self.warnings:
                warnings.warn(msg, ModelFitWarning if "ill-conditioned" in msg else DataQualityWarning, stacklevel=3)

    def correct(self, image: sitk.Image) -> GtmResult:
        """The compartments' true mean concentrations in ``image`` (its units): the solution T of t = Ω·T."""
        require_same_grid(self.reference, image, "the GTM masks' image", "image")
        arr = sitk.GetArrayViewFromImage(image)
        if not np.all(np.isfinite(arr)):
            raise PhysicsError("gtm: the image contains NaN or infinite voxels; fix the reconstruction or mask them")
        t = np.array([float(np.asarray(arr)[self.vois[n]].mean()) for n in self.names])
        true = np.linalg.solve(self.matrix, t)
        return GtmResult(names=self.names, corrected=dict(zip(self.names, map(float, true), strict=True)),
                         observed=dict(zip(self.names, map(float, t), strict=True)), matrix=self.matrix.copy(),
                         condition_number=self.condition_number, warnings=list(self.warnings))


def _interior(mask: np.ndarray, margin: tuple[int, int, int]) -> np.ndarray:
    """The mask without voxels within ``margin`` of the array's faces; the mask itself if none is left."""
    inner = np.zeros_like(mask)
    core = tuple(slice(m, n - m) for m, n in zip(margin, mask.shape, strict=True))
    inner[core] = mask[core]
    return inner if inner.any() else mask


def _inseparable(matrix: np.ndarray, names: Sequence[str]) -> str:
    """The compartments that dominate the matrix's smallest singular vector."""
    _, _, vt = np.linalg.svd(matrix)
    v = np.abs(vt[-1])
    picked = [names[i] for i in np.argsort(v)[::-1] if v[i] >= 0.25 * v.max()]
    return ", ".join(map(repr, picked))


class GtmConcentrations(dict):
    """The dict name → corrected mean concentration that :func:`gtm` returns, which also carries the
    transfer matrix's ``condition_number``, the ``matrix`` itself (rows and columns in ``names``) and
    the ``warnings`` raised."""

    def __init__(self, result: GtmResult):
        super().__init__(result.corrected)
        self.condition_number = result.condition_number
        self.matrix = result.matrix
        self.names = result.names
        self.warnings = list(result.warnings)


def gtm(image: sitk.Image, masks, fwhm_mm: float | Sequence[float], *, labels: Mapping[str, int] | None = None,
        background: str | None = "complement") -> GtmConcentrations:
    """GTM-corrected mean concentration per mask (Rousset et al. 1998), in the image's units.

    ``masks``: name → binary SimpleITK image on the image grid, or a label image with ``labels``
    (name → value). ``background='complement'``: the voxels outside every mask form one more
    compartment, reported as ``'background'``; ``None``: activity outside the masks is taken as zero.
    ``fwhm_mm``: a number or an (x, y, z) triple. The condition number is logged and returned as the
    result's ``condition_number``; an ill-conditioned matrix warns (:class:`ModelFitWarning`), a
    singular one is an :class:`InputError`.
    """
    solver = GeometricTransferMatrix(image, masks, fwhm_mm, labels=labels, background=background)
    return GtmConcentrations(solver.correct(image))
