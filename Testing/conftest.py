"""Shared pytest fixtures: where the independent reference data live.

Tests read ``../shared/reference`` (beside the repository) in place, or the folder named by
``LUDR_REFERENCE_DIR``. In CI (``CI`` or ``LUDR_REQUIRE_REFERENCE`` set) a missing reference
is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _reference_root() -> Path:
    env = os.environ.get("LUDR_REFERENCE_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "reference"


def _require_reference() -> bool:
    return bool(os.environ.get("LUDR_REQUIRE_REFERENCE") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The shared reference folder (stats/, physics/, slicer/)."""
    root = _reference_root()
    if not root.is_dir():
        msg = (f"reference data not found at {root}; set LUDR_REFERENCE_DIR to the shared/reference folder")
        if _require_reference():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def stats_reference_dir(reference_dir: Path) -> Path:
    return reference_dir / "stats" / "public"


@pytest.fixture(scope="session")
def physics_reference_dir(reference_dir: Path) -> Path:
    return reference_dir / "physics"
