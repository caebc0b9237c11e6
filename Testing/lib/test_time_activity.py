"""``pipeline.time_activity``: the tumours' VOI activities the pipeline integrates (its time_points.csv).

References: the phantom's SPECT files read with SimpleITK and summed over its own tumour masks (Bq/mL x
voxel mL), and, with PVC "rc", the closed-form recovery coefficient of a Gaussian-blurred sphere of the
mask's volume (``phantom_anatomy.rc_mean_sphere``, physics reference §4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient, rc_mean_sphere
from LuDoseResponseLib.pipeline.phantoms import write_patient
from LuDoseResponseLib.pipeline.time_activity import read_activity_samples

HOURS = (24.0, 96.0, 168.0)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    p = make_patient("P21", seed=4, n_tumours=2, shape_zyx=(24, 32, 32), n_cycles=1, scan_hours=HOURS,
                     volume_range_ml=(8.0, 40.0))
    return p, write_patient(p, tmp_path_factory.mktemp("tac"), spect_format="nrrd")


def _masks(manifest):
    labels = sitk.ReadImage(str(manifest.parent / "c1" / "tumours.seg.nrrd"))
    array = sitk.GetArrayFromImage(labels)
    names = {labels.GetMetaData(f"Segment{i}_Name"): int(labels.GetMetaData(f"Segment{i}_LabelValue"))
             for i in range(2)}
    return {name: array == value for name, value in names.items()}, float(np.prod(labels.GetSpacing())) / 1000


def _samples(manifest, out):
    run_patient(manifest, out)
    return read_activity_samples(out / "time_points.csv")


def test_samples_are_voi_sums_of_the_images(phantom, tmp_path):
    p, manifest = phantom
    samples = _samples(manifest, tmp_path / "out")
    masks, voxel_ml = _masks(manifest)
    assert len(samples) == len(HOURS) * len(masks)
    for s in samples:
        name = s.tumor.split(".", 1)[1]
        path = manifest.parent / "c1" / f"spect_{s.hours_since_administration:g}h.nrrd"
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        expected = float(image[masks[name]].sum()) * voxel_ml * 1e-6
        assert s.activity_mbq == pytest.approx(expected, rel=1e-6)
        assert s.activity_pvc_mbq == s.activity_mbq          # the phantom's manifest says pvc = "none"
        assert s.tumor.startswith("P21.") and s.cycle == 1


def test_rc_correction_is_the_sphere_recovery_coefficient(phantom, tmp_path):
    p, manifest = phantom
    text = manifest.read_text().replace('pvc = "none"', 'pvc = "rc"')
    rc_manifest = manifest.parent / "manifest_rc.toml"
    rc_manifest.write_text(text)
    masks, voxel_ml = _masks(manifest)
    samples = _samples(rc_manifest, tmp_path / "out")
    assert all(s.activity_pvc_mbq > 1.1 * s.activity_mbq for s in samples)   # the correction is not trivial
    for s in samples:
        volume_ml = masks[s.tumor.split(".", 1)[1]].sum() * voxel_ml
        radius_mm = (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)
        assert s.activity_mbq / s.activity_pvc_mbq == pytest.approx(rc_mean_sphere(radius_mm, p.psf_fwhm_mm),
                                                                    rel=2e-3)


def test_a_folder_without_samples_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="time_points.csv not found"):
        read_activity_samples(tmp_path / "time_points.csv")
    (tmp_path / "time_points.csv").write_text("tumor,cycle,time_h,activity_mbq\nP.T1,1,24,3.0\n")
    with pytest.raises(InputError, match="measured_activity_mbq"):
        read_activity_samples(tmp_path / "time_points.csv")


def test_dose_rate_maps_are_the_integrated_samples(phantom, tmp_path):
    """``dosimetry --dose-rate-maps``: one Gy/h map per scan, whose tumour means are time_points.csv's
    dose rates (PVC off in this phantom's manifest), i.e. the samples the cycle dose integrates."""
    import pandas as pd

    from LuDoseResponseLib.cli import main

    _, manifest = phantom
    out = tmp_path / "out"
    assert main(["-q", "dosimetry", str(manifest), "--out", str(out), "--dose-rate-maps"]) == 0
    masks, _ = _masks(manifest)
    samples = pd.read_csv(out / "time_points.csv")
    for hours in HOURS:
        rate = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"dose_rate_cycle1_{hours:.1f}h.nrrd")))
        for name, mask in masks.items():
            row = samples[(samples["tumor"] == f"P21.{name}") & np.isclose(samples["time_h"], hours)]
            assert rate[mask].mean() == pytest.approx(row["dose_rate_gy_per_h"].iloc[0], rel=1e-9)
