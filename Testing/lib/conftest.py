"""Shared set-up of the library tests. Other test modules may append fixtures below.

Testing/data holds generators of synthetic fixtures (e.g. ``dicom_factory``), not binaries;
it is put on the import path here so that tests can ``import dicom_factory``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
if str(_DATA_DIR) not in sys.path:
    sys.path.insert(0, str(_DATA_DIR))


@pytest.fixture
def nm_values() -> np.ndarray:
    """A small NM volume, 4 frames × 5 rows × 6 columns of 100 (Bq/mL or counts), for the header tests."""
    return np.full((4, 5, 6), 100.0)


def _voxel_points_lps(image: sitk.Image) -> np.ndarray:
    """(3, N) LPS points (mm) of every voxel in array order [z, y, x]: origin + D·diag(spacing)·(i, j, k),
    from the image's own origin, spacing and direction (ITK convention), not from any library code."""
    nx, ny, nz = image.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    d = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    return np.asarray(image.GetOrigin())[:, None] + d @ np.vstack([i.ravel(), j.ravel(), k.ravel()])


@pytest.fixture(scope="session")
def voxel_points():
    """The function image → (3, N) LPS voxel points in array order (see ``_voxel_points_lps``)."""
    return _voxel_points_lps
