"""Dosimetry needs only what 3D Slicer ships (numpy, scipy, SimpleITK, pydicom): issue 14.

The patient pipeline runs in a fresh interpreter in which pandas and matplotlib cannot be imported
(``sys.modules[name] = None``, which makes every import of them fail). Its CSV outputs must be
byte-identical to those of the same run with both installed (they were also byte-identical to what
pandas' ``to_csv`` wrote before the tables became plain rows, checked by hand when they did), and the
missing patient page must be said in run.json, not silently left out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient

CSV_OUTPUTS = ("tumours.csv", "tumour_cycles.csv", "organ_cycles.csv", "time_points.csv")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    p = make_patient("P31", seed=4, n_tumours=2, shape_zyx=(24, 32, 32), n_cycles=2, scan_hours=(24.0, 96.0, 168.0),
                     volume_range_ml=(8.0, 40.0))
    return write_patient(p, tmp_path_factory.mktemp("nopandas"), spect_format="dicom")


def test_dosimetry_runs_without_pandas_and_matplotlib(manifest, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pandas"] = None
        sys.modules["matplotlib"] = None
        from LuDoseResponseLib.pipeline.patient import run_patient
        run_patient({str(manifest)!r}, {str(tmp_path / "bare")!r})
        assert "pandas" not in sys.modules or sys.modules["pandas"] is None
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_patient(manifest, tmp_path / "full")
    for name in CSV_OUTPUTS:
        assert (tmp_path / "bare" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert not (tmp_path / "bare" / "report.html").exists() and (tmp_path / "full" / "report.html").is_file()
    warnings = json.loads((tmp_path / "bare" / "run.json").read_text())["warnings"]
    assert any("report.html is not written" in w and "pandas" in w for w in warnings)
