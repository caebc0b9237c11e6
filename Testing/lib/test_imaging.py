"""Grid helpers against hand-computed geometry (boxes, voxel volumes, shifts by whole voxels)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LuDoseResponseLib.errors import GeometryError
from LuDoseResponseLib.imaging import (
    image_like,
    overlap_fraction,
    physical_bounds,
    require_same_grid,
    resample_to,
    same_grid,
    voxel_volume_ml,
)


def _image(size=(4, 5, 6), spacing=(2.0, 3.0, 4.0), origin=(10.0, -20.0, 30.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(np.arange(np.prod(size), dtype=float).reshape(size[::-1]))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def test_voxel_volume_and_image_like():
    ref = _image()
    assert voxel_volume_ml(ref) == pytest.approx(2 * 3 * 4 / 1000.0, rel=1e-15)  # mm³ → mL
    copy = image_like(np.ones((6, 5, 4)), ref)
    assert same_grid(copy, ref) and sitk.GetArrayViewFromImage(copy).sum() == 120
    with pytest.raises(GeometryError, match=r"\(4, 5, 6\) does not match the reference grid \(6, 5, 4\)"):
        image_like(np.ones((4, 5, 6)), ref)


def test_physical_bounds_of_a_rotated_grid():
    """k runs along −y, j along +z, i along +x: the outer faces are half a voxel beyond the centres."""
    img = _image(direction=(1, 0, 0, 0, 0, -1, 0, 1, 0))
    lo, hi = physical_bounds(img)
    np.testing.assert_allclose(lo, [10 - 1, -20 - 5.5 * 4, 30 - 1.5], atol=1e-12)
    np.testing.assert_allclose(hi, [10 + 3.5 * 2, -20 + 2, 30 + 4.5 * 3], atol=1e-12)


def test_overlap_fraction_of_shifted_boxes():
    a = _image(origin=(0.0, 0.0, 0.0))
    b = _image(origin=(4.0, 0.0, 0.0))  # x extent of a: 8 mm; shifted by 4 mm → half of it
    assert overlap_fraction(a, b) == pytest.approx(0.5, rel=1e-12)
    assert overlap_fraction(a, _image(origin=(100.0, 0.0, 0.0))) == 0.0


def test_grid_checks_and_resampling_by_whole_voxels():
    a = _image()
    b = _image(origin=(12.0, -20.0, 30.0))  # one voxel (2 mm) further along x
    assert not same_grid(a, b)
    with pytest.raises(GeometryError, match="the dose is not on the grid of the SPECT"):
        require_same_grid(a, b, "the SPECT", "the dose")
    moved = sitk.GetArrayFromImage(resample_to(b, a, interpolator=sitk.sitkNearestNeighbor, default_value=-1.0))
    original = sitk.GetArrayFromImage(b)
    np.testing.assert_array_equal(moved[..., 1:], original[..., :-1])  # a's voxel i is b's voxel i − 1
    assert np.all(moved[..., 0] == -1.0)
