"""``make test`` fails, with one clear message, when the reference folder is missing (issue 17).

A green run with every R, kernel and S-value test skipped would hide that nothing was compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pytest(env_extra: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LUDR_REQUIRE_REFERENCE")}
    env.update(env_extra, LUDR_REFERENCE_DIR=str(tmp_path / "no-such-reference"))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "Testing/static/test_layers.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_missing_reference_fails_the_run(tmp_path):
    run = _pytest({"LUDR_REQUIRE_REFERENCE": "1"}, tmp_path)
    assert run.returncode != 0
    assert "reference data not found" in run.stdout + run.stderr
    assert "LUDR_REFERENCE_DIR" in run.stdout + run.stderr


def test_ci_alone_requires_the_reference(tmp_path):
    assert _pytest({"CI": "true"}, tmp_path).returncode != 0


def test_opt_out_runs_the_rest(tmp_path):
    assert _pytest({"LUDR_REQUIRE_REFERENCE": "0"}, tmp_path).returncode == 0


def test_makefile_requires_the_reference():
    makefile = (REPO / "Makefile").read_text()
    assert "LUDR_REQUIRE_REFERENCE ?= 1" in makefile
    assert "LUDR_REQUIRE_REFERENCE=$(LUDR_REQUIRE_REFERENCE)" in makefile
