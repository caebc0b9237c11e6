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
    """``make test`` and CI require the reference; ``LUDR_REQUIRE_REFERENCE=0`` lets a developer
    without it run the rest (the reference tests then skip, and say so)."""
    flag = os.environ.get("LUDR_REQUIRE_REFERENCE", "").strip().lower()
    if flag in ("0", "false", "no"):
        return False
    return bool(flag or os.environ.get("CI"))


def pytest_sessionstart(session):
    """A required but missing reference stops the run at once with one message saying where it goes."""
    root = _reference_root()
    if _require_reference() and not root.is_dir():
        pytest.exit(f"reference data not found at {root}: put the project's shared/reference folder beside the "
                    "repository (../shared/reference) or set LUDR_REFERENCE_DIR to it; "
                    "LUDR_REQUIRE_REFERENCE=0 runs the other tests without it", returncode=4)


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
