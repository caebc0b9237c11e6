"""The README's library examples run as written, so they cannot go stale (issue 8).

Each block runs in a fresh namespace, in a folder holding the files it names: a synthetic
``cohort.csv`` and a counts SPECT ``spect_24h/`` written as DICOM by the test factory.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ge_counts_like, write_series

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from readme_blocks import library_blocks  # noqa: E402

from LuDoseResponseLib.response.synthetic_cohort import generate_cohort  # noqa: E402

BLOCKS = library_blocks()


@pytest.fixture
def example_folder(tmp_path, monkeypatch):
    generate_cohort(seed=13).to_csv(tmp_path / "cohort.csv", index=False)
    counts = np.zeros((8, 10, 12), dtype=np.uint16)
    counts[3:6, 4:7, 5:8] = 500
    write_series([ge_counts_like(counts, pixel_spacing_rc=(4.8, 4.8), slice_spacing=-4.8)], tmp_path / "spect_24h")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_library_examples():
    assert len(BLOCKS) >= 2, "README.md lost its Python examples"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(block, example_folder):
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)   # noqa: S102 - the README's own example
    if "tcp_g2" in namespace:   # the cohort example: the dose at TCP 0.9 of G2 and its SE exist
        assert math.isfinite(namespace["tcp_g2"]["dose_gy"]) and namespace["tcp_g2"]["se"] > 0
        assert (example_folder / "out" / "analysis.json").is_file()
    if "rate" in namespace:     # the dosimetry example: the dose-rate map is on the SPECT grid
        assert namespace["rate"].GetSize() == namespace["vol"].image.GetSize()
