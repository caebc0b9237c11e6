"""SimpleITK <-> numpy helpers, grid checks and resampling.

Images at the library's edges are SimpleITK images in LPS physical space; arrays inside are
indexed [z, y, x] as ``sitk.GetArrayViewFromImage`` returns them.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import GeometryError, InputError


def image_like(array_zyx: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A SimpleITK image holding ``array_zyx`` with ``reference``'s origin, spacing and direction."""
    expected = tuple(reversed(reference.GetSize()))
    if tuple(array_zyx.shape) != expected:
        raise GeometryError(f"array shape {array_zyx.shape} does not match the reference grid {expected} [z, y, x]")
    img = sitk.GetImageFromArray(array_zyx)
    img.CopyInformation(reference)
    return img


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in mL (= cm³); spacing is in mm."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    """True when both images have the same size, and origin/spacing/direction within ``tol_mm``."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol_mm)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def require_same_grid(a: sitk.Image, b: sitk.Image, what_a: str, what_b: str) -> None:
    """Raise GeometryError naming both images if they are not on the same grid."""
    if not same_grid(a, b):
        raise GeometryError(
            f"{what_b} is not on the grid of {what_a}: size {b.GetSize()} vs {a.GetSize()}, "
            f"spacing {b.GetSpacing()} vs {a.GetSpacing()}, origin {b.GetOrigin()} vs {a.GetOrigin()}; "
            f"resample {what_b} onto {what_a} first"
        )


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (mm) of the voxel centres' outer faces."""
    size = np.array(image.GetSize())
    corners = []
    for ix in (-0.5, size[0] - 0.5):
        for iy in (-0.5, size[1] - 0.5):
            for iz in (-0.5, size[2] - 0.5):
                corners.append(image.TransformContinuousIndexToPhysicalPoint((float(ix), float(iy), float(iz))))
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def overlap_fraction(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of ``a``'s bounding box volume covered by ``b``'s bounding box (0 = disjoint)."""
    lo_a, hi_a = physical_bounds(a)
    lo_b, hi_b = physical_bounds(b)
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0.0, None)
    vol_a = float(np.prod(hi_a - lo_a))
    return float(np.prod(inter)) / vol_a if vol_a > 0 else 0.0


def resample_to(image: sitk.Image, reference: sitk.Image, *, interpolator=sitk.sitkLinear,
                default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid (identity transform, LPS physical space)."""
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, default_value,
                         image.GetPixelID())


def read_image_header(path, what: str = "image file") -> sitk.ImageFileReader:
    """A SimpleITK reader with the header of ``path`` read (no voxels); InputError naming the file if unreadable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read the {what} ({str(exc).strip().splitlines()[-1]})") from exc
    return reader
