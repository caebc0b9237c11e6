"""One patient's dosimetry outputs: ``time_points.csv`` and the page ``report.html`` (analysis.patient_report).

Independent checks: the samples' times are the manifest's scan times; the curve parameters stored
in time_points.csv, integrated analytically (∫₀^∞ of the model), give back the cycle dose and the
time-integrated activity that tumour_cycles.csv reports (rel 1e-9: the same fit, two routes);
the dose-rate samples integrated by the trapezoid rule (no tail) stay below the fitted dose (the
fit adds the head and the tail, and the rates are positive); the page names every tumour, embeds a
curve figure and a dose-slice figure per cycle, fetches nothing, and is written with the outputs
as one set. A headless Chromium render (skipped only when Chromium is absent and
LUDR_REQUIRE_CHROMIUM is unset) shows a non-blank page.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from LuDoseResponseLib.dosimetry.integration.models import CURVES
from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient
from LuDoseResponseLib.pipeline.time_points import COLUMNS

HOURS = (4.0, 24.0, 96.0, 168.0)


@pytest.fixture(scope="module")
def patient_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("patient_page")
    phantom = make_patient("P07", seed=11, n_tumours=2, n_cycles=2, shape_zyx=(32, 48, 48), scan_hours=HOURS,
                           volume_range_ml=(8.0, 60.0))
    manifest = write_patient(phantom, root / "in")
    files = run_patient(manifest, root / "out")
    return root / "out", files


def test_time_points_hold_the_samples_and_fits_that_give_the_reported_doses(patient_out):
    out, files = patient_out
    assert "time_points.csv" in files and "report.html" in files
    points = pd.read_csv(out / "time_points.csv")
    cycles = pd.read_csv(out / "tumour_cycles.csv")
    assert list(points.columns) == list(COLUMNS)
    assert len(points) == len(cycles) * len(HOURS)
    for row in cycles.itertuples(index=False):
        p = points[(points["tumor"] == row.tumor) & (points["cycle"] == row.cycle)]
        assert tuple(p["time_h"]) == HOURS
        assert (p["activity_mbq"] > 0).all() and (p["dose_rate_gy_per_h"] > 0).all()
        first = p.iloc[0]
        for prefix, reported in (("dose_rate", row.dose_gy), ("activity", row.tia_mbq_h)):
            curve = CURVES[first[f"{prefix}_model"]]
            params = json.loads(first[f"{prefix}_params"])
            theta = np.array([params[n] for n in curve.param_names])
            assert curve.integral_inf(theta) == pytest.approx(reported, rel=1e-9), (row.tumor, prefix)
            cov = json.loads(first[f"{prefix}_covariance"])
            assert cov is None or cov["names"] == list(curve.param_names)
        assert np.trapezoid(p["dose_rate_gy_per_h"], p["time_h"]) < row.dose_gy


def test_patient_page_names_every_tumour_and_shows_curves_and_slices(patient_out):
    out, _ = patient_out
    text = (out / "report.html").read_text(encoding="utf-8")
    tumours = pd.read_csv(out / "tumours.csv")
    for t in tumours["tumor"]:
        assert f"<td>{t}</td>" in text
    for n in (1, 2):
        assert f"id='curves-cycle{n}'" in text and f"id='dose-cycle{n}'" in text
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 4
    assert "Patient P07" in text and "Not shown" not in text     # CT and outlines found
    srcs = re.findall(r"src='([^']*)'", text)
    assert all(s.startswith("data:") for s in srcs)
    assert "<script" not in text and "<link" not in text and "http" not in re.sub(r"data:[^']+", "", text)


def _chromium():
    from importlib import util
    from pathlib import Path

    spec = util.spec_from_file_location("report_screenshots",
                                        Path(__file__).resolve().parents[2] / "scripts" / "report_screenshots.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_render_in_headless_chromium(patient_out, tmp_path):
    shots = _chromium()
    if shots.chromium_binary() is None:
        if os.environ.get("LUDR_REQUIRE_CHROMIUM"):
            pytest.fail("LUDR_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    from PIL import Image

    out, _ = patient_out
    page = tmp_path / "page"
    shutil.copytree(out, page)
    paths = shots.render(page / "report.html", tmp_path / "shots", width=1200, height=1000)
    with Image.open(paths[0]) as full:
        grey = np.asarray(full.convert("L"))
    assert grey.shape[0] > 2000            # tables and four figures, not an empty page
    dark = (grey < 128).mean()
    assert 0.005 < dark < 0.5              # text and figures drawn, not blank and not black
    assert len(paths) >= 3


def test_a_fit_without_covariance_is_drawn_without_a_band(tmp_path):
    """A fit with no covariance is written as JSON null, which pandas reads back as NaN: the page still draws."""
    from LuDoseResponseLib.analysis.patient_figures import curves_figure

    rows = [{"tumor": "P.T1", "cycle": 1, "time_h": t, "activity_mbq": 10 * np.exp(-0.01 * t),
             "measured_activity_mbq": 8 * np.exp(-0.01 * t), "dose_rate_gy_per_h": 0.1 * np.exp(-0.01 * t),
             "activity_model": "mono", "activity_params": json.dumps({"amplitude": 10.0, "lambda_per_h": 0.01}),
             "activity_covariance": json.dumps(None), "dose_rate_model": "trapezoid",
             "dose_rate_params": json.dumps({}), "dose_rate_covariance": json.dumps(None)} for t in HOURS]
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(tmp_path / "time_points.csv", index=False)
    points = pd.read_csv(tmp_path / "time_points.csv")
    assert points["activity_covariance"].isna().all()          # what pandas makes of JSON null
    assert curves_figure(points, 1)[:8] == b"\x89PNG\r\n\x1a\n"
