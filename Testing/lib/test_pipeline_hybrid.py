"""The patient pipeline's per-cycle method choice (issue 11) on digital phantoms written as files.

One digital patient (3 tumours of 10–150 mL, clinical SPECT PSF 11 mm, GTM partial-volume correction) is
written four ways: SPECT at 1, 24, 96, 168 h in both cycles (the multi-time-point reference, "mtp");
whole-body planar NM at those hours plus one SPECT at 24 h in cycle 1 and one SPECT at 24 h with
``kinetics = "from-cycle-1"`` in cycle 2 ("hybrid"); SPECTs at four hours in cycle 1 and from-cycle-1 in
cycle 2 ("fc1"); and the same with T_bio changed between cycles ("changed"). Every SPECT and planar image is
simulated from the true activity (PSF, attenuation, scatter, Poisson noise); the truth (truth.json) is the
generator's local-deposition dose of the true activity, never the pipeline's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from LuDoseResponseLib.errors import GeometryError, InputError, ManifestError
from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient

HOURS = (1.0, 24.0, 96.0, 168.0)
T_BIO_CHANGE = (0.6, 1.6, 0.75)       # cycle-2 T_bio / cycle-1 T_bio of T1, T2, T3 in the "changed" patient


def _gtm(manifest: Path) -> Path:
    manifest.write_text(manifest.read_text().replace('pvc = "none"', 'pvc = "gtm"'))
    return manifest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid_phantoms")
    p = make_patient("H01", seed=4, scan_hours=HOURS, volume_range_ml=(10.0, 150.0), n_tumours=3)
    changed = dataclasses.replace(p, tumours=tuple(dataclasses.replace(t, cycle_t_bio_factor=(1.0, f))
                                                   for t, f in zip(p.tumours, T_BIO_CHANGE, strict=True)))
    out = {}
    for key, patient, options in (("mtp", p, {}), ("hybrid", p, {"imaging": "hybrid", "later_cycles": "from-cycle-1"}),
                                  ("fc1", p, {"later_cycles": "from-cycle-1"}),
                                  ("changed", changed, {"later_cycles": "from-cycle-1"})):
        manifest = _gtm(write_patient(patient, root / key, **options))
        run_patient(manifest, root / f"out_{key}")
        truth = json.loads((root / key / "truth.json").read_text())
        out[key] = {"dir": root / key, "manifest": manifest,
                    "cycles": pd.read_csv(root / f"out_{key}" / "tumour_cycles.csv").set_index(["tumor", "cycle"]),
                    "run": json.loads((root / f"out_{key}" / "run.json").read_text()),
                    "truth": {(t["tumor"], k + 1): d for t in truth["tumours"]
                              for k, d in enumerate(t["cycle_dose_gy"])},
                    "volume_ml": {t["tumor"]: t["baseline_volume_ml"] for t in truth["tumours"]}}
    return out


def _dose(run, cycle: int) -> pd.Series:
    return run["cycles"].xs(cycle, level="cycle")["dose_gy"]


def test_methods_are_chosen_per_cycle_and_recorded(runs):
    for key, methods in (("mtp", ["multi-spect", "multi-spect"]), ("hybrid", ["hybrid", "from-cycle-1"]),
                         ("fc1", ["multi-spect", "from-cycle-1"])):
        cycles = runs[key]["cycles"]
        assert [set(cycles.xs(c, level="cycle")["dosimetry_method"]) for c in (1, 2)] == [{m} for m in methods]
        assert runs[key]["run"]["cycle_methods"] == {"1": methods[0], "2": methods[1]}
    planar_inputs = [i["path"] for i in runs["hybrid"]["run"]["inputs"] if "wb_" in i["path"]]
    assert len(planar_inputs) == 4                     # the planar files are hashed inputs too
    assert not [w for w in runs["hybrid"]["run"]["warnings"]
                if "outside the planar" in w or "overlap" in w or "off the median" in w]


def test_hybrid_cycle_dose_agrees_with_multi_time_point_spect_and_truth(runs):
    """Issue 11: hybrid (planar kinetics + one PVC-corrected SPECT at 24 h) vs four SPECTs of the same patient
    within 5 % per tumour (≥ 10 mL); both within 10 % of the truth (issue 12's tolerance). Measured on seeds
    3–5 (9 tumours of 12–141 mL): hybrid/MTP −2.5 … +2.2 %, hybrid/truth −1.8 … +7.8 %."""
    hybrid, mtp = _dose(runs["hybrid"], 1), _dose(runs["mtp"], 1)
    assert min(runs["mtp"]["volume_ml"].values()) >= 10.0
    assert ((hybrid / mtp - 1).abs() < 0.05).all(), (hybrid / mtp - 1).to_dict()
    truth = pd.Series({t: d for (t, c), d in runs["mtp"]["truth"].items() if c == 1})
    assert ((hybrid / truth - 1).abs() < 0.10).all(), (hybrid / truth - 1).to_dict()
    assert ((mtp / truth - 1).abs() < 0.10).all(), (mtp / truth - 1).to_dict()


def test_from_cycle_1_equals_the_full_dose_when_kinetics_do_not_change(runs):
    """The phantom's tumours keep T_bio between cycles (only the uptake changes): cycle 2 from one SPECT at 24 h
    with cycle 1's fitted curve equals cycle 2's four-SPECT dose within 3 % (measured |Δ| ≤ 0.5 %, seeds 3–5);
    after a hybrid cycle 1 within 5 % (measured −2.7 … +2.7 %: the planar kinetics' own error adds)."""
    full = _dose(runs["mtp"], 2)
    assert ((_dose(runs["fc1"], 2) / full - 1).abs() < 0.03).all(), (_dose(runs["fc1"], 2) / full - 1).to_dict()
    after_hybrid = _dose(runs["hybrid"], 2)
    assert ((after_hybrid / full - 1).abs() < 0.05).all(), (after_hybrid / full - 1).to_dict()
    sd = runs["fc1"]["cycles"].xs(2, level="cycle")["dose_sd_gy"]
    assert (sd > 0.05 * _dose(runs["fc1"], 2)).all()          # the grown uncertainty is reported


def test_from_cycle_1_uncertainty_covers_changed_kinetics(runs):
    """T_bio × 0.6, 1.6, 0.75 in cycle 2: the errors against the truth (−15 … +30 % on seeds 3–5) stay within
    1.96 dose_sd_gy (default 20 % between-cycle T_eff change; measured |z| ≤ 1.5)."""
    run = runs["changed"]
    cycle2 = run["cycles"].xs(2, level="cycle")
    truth = pd.Series({t: d for (t, c), d in run["truth"].items() if c == 2})
    error = cycle2["dose_gy"] - truth
    assert (error.abs() / truth).max() > 0.10                 # the change matters
    assert (error.abs() <= 1.96 * cycle2["dose_sd_gy"]).all(), (error / cycle2["dose_sd_gy"]).to_dict()


# ---------------------------------------------------------------------------------------------- bad input

def _copy(runs, tmp_path) -> Path:
    folder = tmp_path / "hybrid"
    shutil.copytree(runs["hybrid"]["dir"], folder)
    return folder


def _rewrite(path: Path, keep_detector: int | None = None, crop_columns: int = 0) -> None:
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    detectors, windows = np.asarray(ds.DetectorVector), np.asarray(ds.EnergyWindowVector)
    if keep_detector is not None:
        keep = detectors == keep_detector
        frames, detectors, windows = frames[keep], detectors[keep], windows[keep]
        ds.DetectorInformationSequence = pydicom.sequence.Sequence([ds.DetectorInformationSequence[keep_detector - 1]])
        ds.NumberOfDetectors = 1
    if crop_columns:
        frames = frames[:, :, crop_columns:-crop_columns]
    ds.DetectorVector, ds.EnergyWindowVector = [int(v) for v in detectors], [int(v) for v in windows]
    ds.NumberOfFrames, ds.Columns = len(frames), frames.shape[2]
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint16).tobytes()
    ds.save_as(path)


def test_missing_posterior_view_names_the_file(runs, tmp_path):
    folder = _copy(runs, tmp_path)
    _rewrite(folder / "c1" / "wb_96h.dcm", keep_detector=1)
    with pytest.raises(ManifestError, match=r"planar\[2\]\.posterior: .*wb_96h\.dcm holds no posterior view"):
        run_patient(folder / "manifest.toml", tmp_path / "out")


def test_mismatched_planar_matrix_names_the_file(runs, tmp_path):
    folder = _copy(runs, tmp_path)
    _rewrite(folder / "c1" / "wb_168h.dcm", crop_columns=2)
    with pytest.raises(ManifestError, match=r"wb_168h\.dcm has a \(\d+, 72\) matrix.*same matrix"):
        run_patient(folder / "manifest.toml", tmp_path / "out")


def test_spect_outside_the_planar_times_is_a_warning_in_run_json(runs, tmp_path):
    folder = _copy(runs, tmp_path)
    manifest = folder / "manifest.toml"
    early = r'  \[\[cycles\.planar\]\]\n  anterior = "c1/wb_(1|24)h\.dcm"\n(?:  .*\n)*\n'   # the 1 h and 24 h planars
    manifest.write_text(re.sub(early, "", manifest.read_text()))
    run_patient(manifest, tmp_path / "out")
    warnings = json.loads((tmp_path / "out" / "run.json").read_text())["warnings"]
    assert any("24.0 h is outside the planar times 96.0–168.0 h" in w and "extrapolated" in w for w in warnings)
    cycles = pd.read_csv(tmp_path / "out" / "tumour_cycles.csv")
    assert set(cycles.loc[cycles["cycle"] == 1, "dosimetry_method"]) == {"hybrid"}


def test_tumour_outside_the_planar_field_names_the_tumour_and_files(runs, tmp_path):
    """Planars cropped symmetrically (the registration keeps the left–right centre) until the tumour farthest
    from the midline reaches the field's edge."""
    folder = _copy(runs, tmp_path)
    phantom = make_patient("H01", seed=4, scan_hours=HOURS, volume_range_ml=(10.0, 150.0), n_tumours=3)
    far = max(phantom.tumours, key=lambda t: abs(t.centre_mm[0]))
    columns = pydicom.dcmread(folder / "c1" / "wb_1h.dcm", stop_before_pixels=True).Columns
    crop = int(np.ceil(columns / 2 - abs(far.centre_mm[0]) / phantom.grid.spacing_mm))
    for hours in HOURS:
        _rewrite(folder / "c1" / f"wb_{hours:g}h.dcm", crop_columns=crop)
    with pytest.raises(GeometryError, match=rf"cycle 1 planar images \(.*wb_1h\.dcm.*tumour '{far.name}'.*outside the "
                                            "planar field"):
        run_patient(folder / "manifest.toml", tmp_path / "out")


def test_one_spect_without_planars_or_kinetics_is_refused(runs, tmp_path):
    folder = _copy(runs, tmp_path)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('kinetics = "from-cycle-1"\n', ""))
    with pytest.raises(InputError, match="cycle 2 has one SPECT and neither"):
        run_patient(manifest, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- the planar phantom

def test_attenuated_projection_of_a_uniform_water_column_is_analytic():
    """A uniform source in water of thickness L seen from either side: C·h²·(1 − e^(−μL))/μ (exact integral)."""
    from LuDoseResponseLib.pipeline.phantom_planar import MU_WATER_208KEV_PER_MM, attenuated_projections_mbq

    h, n, conc = 4.0, 50, 2.0e5                         # mm, voxels along y, Bq/mL
    c = np.full((3, n, 2), conc)
    mu = np.full_like(c, MU_WATER_208KEV_PER_MM)
    mu[:, :10] = 0.0                                    # air in front changes nothing
    c[:, :10] = 0.0
    ant, post = attenuated_projections_mbq(c, mu, h)
    depth = (n - 10) * h
    expected = conc * 1e-3 * h * h * (1 - np.exp(-MU_WATER_208KEV_PER_MM * depth)) / MU_WATER_208KEV_PER_MM * 1e-6
    assert np.allclose(ant, expected, rtol=1e-12) and np.allclose(post, expected, rtol=1e-12)
    assert 0.1350 == pytest.approx(MU_WATER_208KEV_PER_MM * 10, abs=5e-4)    # NIST XCOM water, cm²/g


def test_planar_frame_is_registered_on_the_body_outline_of_the_phantom(runs):
    """Tumours and kidneys are ~100× brighter than soft tissue on the phantom's planars; the body outline
    (Otsu floor on log counts) still registers the frame to the true one within a pixel."""
    from LuDoseResponseLib.dosimetry.hybrid import read_planar_pairs
    from LuDoseResponseLib.dosimetry.planar import (
        centred_geometry,
        geometric_mean,
        primary_counts,
        register_by_body_outline,
    )
    from LuDoseResponseLib.io import dicom
    from LuDoseResponseLib.pipeline.study import load_manifest

    study = load_manifest(runs["hybrid"]["manifest"])
    pair = read_planar_pairs(study.cycles[0].planar)[0]
    ct = dicom.read_volume(study.cycles[0].ct).image
    true_frame = centred_geometry(pair.anterior, ct)            # the phantom's planars are centred on the CT
    start = true_frame.shifted(14.0, -19.0)
    found = register_by_body_outline(geometric_mean(primary_counts(pair.anterior), primary_counts(pair.posterior)),
                                     ct, start)
    assert np.allclose(found.origin_mm, true_frame.origin_mm, atol=pair.anterior.pixel_mm[0])


def test_stp_madsen_with_a_population_half_life(runs, tmp_path):
    """Cycle 2 by Madsen's single-time-point method with a population T_eff (the mean of the tumours' true
    T_eff, SD 25 %): each error against the truth is within 1.96 dose_sd_gy, and the SD is the Madsen spread."""
    from LuDoseResponseLib.pipeline.phantom_anatomy import LAMBDA_PHYS_PER_H, LN2

    phantom = make_patient("H01", seed=4, scan_hours=HOURS, volume_range_ml=(10.0, 150.0), n_tumours=3)
    t_eff = [LN2 / (LAMBDA_PHYS_PER_H + LN2 / t.t_bio_h) for t in phantom.tumours]
    population = float(np.mean(t_eff))
    folder = tmp_path / "madsen"
    shutil.copytree(runs["fc1"]["dir"], folder)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace(
        'kinetics = "from-cycle-1"', f'kinetics = "stp-madsen"\npopulation_t_eff_h = {population:.3f}\n'
                                     f"population_t_eff_sd_h = {0.25 * population:.3f}"))
    run_patient(manifest, tmp_path / "out")
    cycles = pd.read_csv(tmp_path / "out" / "tumour_cycles.csv").set_index(["tumor", "cycle"]).xs(2, level="cycle")
    assert set(cycles["dosimetry_method"]) == {"stp-madsen"} and set(cycles["model"]) == {"madsen-2018"}
    truth = pd.Series({t: d for (t, c), d in runs["fc1"]["truth"].items() if c == 2})
    error = cycles["dose_gy"] - truth
    assert (error.abs() <= 1.96 * cycles["dose_sd_gy"]).all(), (error / cycles["dose_sd_gy"]).to_dict()
