"""End-to-end: digital phantoms written as DICOM / NRRD files → ``run_patient`` → tumours.csv, against the
phantom's ground truth (local electron deposition of the true activity, computed by the generator, not by
the pipeline) and the closed-form recovery coefficient of a Gaussian-blurred sphere (physics reference §4)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.integrate import quad

from LuDoseResponseLib.cli import main
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import (
    make_patient,
    rc_mean_sphere,
    uptake_washout,
    uptake_washout_integral,
)
from LuDoseResponseLib.pipeline.phantoms import write_patient

HOURS = (4.0, 24.0, 96.0, 168.0)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """One patient (seed 3) written three ways: clinical PSF (DICOM counts), the same in Bq/mL NRRD, and
    without blur (DICOM); each run once through the pipeline."""
    root = tmp_path_factory.mktemp("phantoms")
    out = {}
    for key, fwhm, fmt in (("clinical", 11.0, "dicom"), ("nrrd", 11.0, "nrrd"), ("sharp", 0.01, "dicom")):
        p = make_patient("P01", seed=3, scan_hours=HOURS, psf_fwhm_mm=fwhm)
        manifest = write_patient(p, root / key, spect_format=fmt)
        before = _tree_digest(root / key)
        run_patient(manifest, root / f"out_{key}")
        out[key] = {"manifest": manifest, "out": root / f"out_{key}", "before": before, "dir": root / key,
                    "truth": json.loads((root / key / "truth.json").read_text()),
                    "tumours": pd.read_csv(root / f"out_{key}" / "tumours.csv")}
    return out


def _joined(run) -> pd.DataFrame:
    truth = pd.DataFrame(run["truth"]["tumours"])
    return run["tumours"].merge(truth, on="tumor", suffixes=("", "_true"))


def test_truth_kinetics_integral_is_exact():
    """The closed-form TIA equals numerical quadrature of the generating curve."""
    numeric = quad(lambda t: float(uptake_washout(t, 7.4e9, 2e-4, 150.0)), 0, np.inf, limit=400)[0]
    assert uptake_washout_integral(7.4e9, 2e-4, 150.0) == pytest.approx(numeric, rel=1e-8)


def test_rc_mean_matches_reference_values():
    """Physics reference §4 (Monte-Carlo checked): 37 mm sphere at FWHM 10 mm → 0.730; 10 mm → 0.215."""
    assert rc_mean_sphere(18.5, 10.0) == pytest.approx(0.730, abs=1e-3)
    assert rc_mean_sphere(5.0, 10.0) == pytest.approx(0.215, abs=1e-3)


def test_dose_matches_truth_without_blur(phantoms):
    """Without PSF blur the pipeline's cumulative dose is the LED truth: ≥ 10 mL within 10 % (issue 12); the
    phantom's tumours (2.6–115 mL over seeds) measured within 3 %; photons and electron escape explain the rest."""
    df = _joined(phantoms["sharp"])
    err = df["dose_all_cycles_gy"] / df["dose_all_cycles_gy_true"] - 1.0
    assert (err[df["baseline_volume_ml"] >= 10].abs() < 0.10).all(), err.tolist()
    assert (err.abs() < 0.05).all(), err.tolist()


def test_clinical_psf_bias_is_the_sphere_recovery(phantoms):
    """Without PVC the VOI-mean dose is biased low by spill-out: every tumour below its truth, and measured/true
    ≈ RC_mean(R, FWHM) of an isolated sphere (closed form). Over 64 tumours of 8 seeds the residual
    |ratio/RC − 1| was 1.3–12 % (largest for 4–30 mL tumours in the liver: spill-in from the hot background
    that the isolated-sphere RC ignores), hence 15 % here."""
    df = _joined(phantoms["clinical"])
    ratio = df["dose_all_cycles_gy"] / df["dose_all_cycles_gy_true"]
    assert (ratio < 1.0).all()
    assert (ratio / df["rc_mean"] - 1).abs().max() < 0.15, list(zip(ratio, df["rc_mean"], strict=True))


def test_dv_and_responder_exact(phantoms):
    df = _joined(phantoms["clinical"])
    assert np.allclose(df["dv"], df["dv_true"], rtol=0, atol=1e-12)
    assert (df["responder"] == df["responder_true"]).all()


def test_nrrd_bq_per_ml_equals_dicom_counts(phantoms):
    """The same noisy image as Bq/mL NRRD (units = "bq_per_ml") and as DICOM counts gives the same doses."""
    a, b = phantoms["clinical"]["tumours"], phantoms["nrrd"]["tumours"]
    assert np.allclose(a["dose_all_cycles_gy"], b["dose_all_cycles_gy"], rtol=1e-5)


def test_inputs_unmodified_and_rerun_safe(phantoms):
    run = phantoms["clinical"]
    assert _tree_digest(run["dir"]) == run["before"]
    first = (run["out"] / "tumours.csv").read_bytes()
    run_patient(run["manifest"], run["out"])
    assert (run["out"] / "tumours.csv").read_bytes() == first
    assert not [p for p in run["out"].iterdir() if p.name.startswith(".staging")]
    info = json.loads((run["out"] / "run.json").read_text())
    manifest_entry = next(i for i in info["inputs"] if i["path"] == str(run["manifest"].resolve()))
    assert manifest_entry["sha256"] == hashlib.sha256(run["manifest"].read_bytes()).hexdigest()
    assert {"settings", "version", "inputs", "warnings"} <= set(info)
    cycles = pd.read_csv(run["out"] / "tumour_cycles.csv")
    assert list(cycles.columns[:8]) == ["tumor", "cycle", "dose_gy", "dose_sd_gy", "tia_mbq_h", "mass_g", "model",
                                        "t_eff_h"]
    assert (run["out"] / "dose_cycle1.nrrd").is_file() and (run["out"] / "dose_cycle2.nrrd").is_file()


def test_output_inside_input_refused(phantoms):
    run = phantoms["clinical"]
    with pytest.raises(InputError, match="inside the input"):
        run_patient(run["manifest"], run["dir"] / "ct" / "out")


@pytest.mark.parametrize("pvc, tolerance", [("rc", 0.06), ("gtm", 0.04)])
def test_pvc_recovers_the_truth_at_clinical_resolution(phantoms, tmp_path, pvc, tolerance):
    """With partial-volume correction at the system FWHM (11 mm) the cumulative dose of every tumour is the
    LED truth within the stated tolerance (issue 12 asks ≥ 10 mL within 10 %). Measured over seeds 3–5
    (2.6–266 mL): rc −0.2 to +4.0 %, gtm −1.7 to +2.7 %; without PVC the same tumours are 17–57 % low."""
    folder = phantoms["clinical"]["dir"]
    text = phantoms["clinical"]["manifest"].read_text().replace('pvc = "none"', f'pvc = "{pvc}"')
    text = re.sub(r'^(\s*(?:path|tumours|ct|organs) = ")', lambda m: m.group(1) + f"{folder}/", text, flags=re.M)
    manifest = tmp_path / f"manifest_{pvc}.toml"
    manifest.write_text(text)
    run_patient(manifest, tmp_path / "o")
    run = dict(phantoms["clinical"], tumours=pd.read_csv(tmp_path / "o" / "tumours.csv"))
    df = _joined(run)
    err = df["dose_all_cycles_gy"] / df["dose_all_cycles_gy_true"] - 1.0
    assert (err[df["baseline_volume_ml"] >= 10].abs() < 0.10).all(), err.tolist()
    assert (err.abs() < tolerance).all(), err.tolist()
    # the dose map is scaled inside each tumour by the same factor, so its VOI means follow the table
    uncorrected = sitk.GetArrayFromImage(sitk.ReadImage(str(phantoms["clinical"]["out"] / "dose_cycle1.nrrd")))
    corrected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o" / "dose_cycle1.nrrd")))
    assert corrected.sum() > uncorrected.sum()


def test_cli_dosimetry(phantoms, tmp_path, capsys):
    assert main(["dosimetry", str(phantoms["clinical"]["manifest"]), "--out", str(tmp_path / "o")]) == 0
    df = pd.read_csv(tmp_path / "o" / "tumours.csv")
    assert len(df) == len(phantoms["clinical"]["truth"]["tumours"])
    assert math.isfinite(df["dose_gy"].sum())
