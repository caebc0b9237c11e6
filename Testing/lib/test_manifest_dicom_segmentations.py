"""RTSTRUCT and DICOM SEG wherever the manifest takes tumours (issue 13): a digital phantom patient run once
with Slicer-style .seg.nrrd tumours and once with the same tumours as an RTSTRUCT (cycle; follow-up in
the CT folder it was drawn on; follow-up with an explicit ``reference``) and a DICOM SEG (follow-up).
The truth is the phantom's: its follow-up volumes (voxel counts of the spheres the generator drew), and
the .seg.nrrd run's doses, which the RTSTRUCT/SEG route must reproduce exactly because its contours and
frames hold the same voxels. Validation errors come before any pixel is read and name the key and file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ct_slices, write_series

from LuDoseResponseLib.errors import ManifestError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.rtstruct_write import write_rtstruct
from LuDoseResponseLib.io.seg_write import write_seg
from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient
from LuDoseResponseLib.pipeline.study import load_manifest
from LuDoseResponseLib.response.volumetry import read_segmentation


def _masks(seg_nrrd: Path) -> dict[str, sitk.Image]:
    seg = read_segmentation(seg_nrrd)
    out = {}
    for name in seg.names:
        m = sitk.GetImageFromArray(seg.mask(name).astype(np.uint8))
        m.CopyInformation(seg.image if seg.n_layers == 1 else sitk.VectorIndexSelectionCast(seg.image, 0))
        out[name] = m
    return out


def _ct_on(grid: sitk.Image, folder: Path, ids: StudyIds | None = None) -> dicom.Volume:
    h = grid.GetSpacing()
    write_series(ct_slices(np.zeros(grid.GetSize()[::-1]), ids or StudyIds(), pixel_spacing_rc=(h[1], h[0]),
                           slice_spacing=h[2], origin=grid.GetOrigin()), folder)
    return dicom.read_volume(folder)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The phantom written with .seg.nrrd tumours, and a copy whose tumours are RTSTRUCT / SEG files."""
    root = tmp_path_factory.mktemp("dicomseg")
    manifest = write_patient(make_patient("P01", seed=3, scan_hours=(24.0, 96.0), n_cycles=1), root / "nrrd")
    shutil.copytree(root / "nrrd", root / "dicom")
    d = root / "dicom"
    ct = dicom.read_volume(d / "ct")
    masks = _masks(d / "c1" / "tumours.seg.nrrd")
    assert all(m.GetSize() == ct.image.GetSize() for m in masks.values())
    write_rtstruct({n: sitk.Cast(m, sitk.sitkUInt8) for n, m in masks.items()}, d / "c1" / "rs.dcm",
                   source=ct.metadata)
    fu0 = _masks(d / "fu" / "ct_0.seg.nrrd")
    write_seg(fu0, d / "fu" / "seg0.dcm", source=ct.metadata)
    fu1 = _masks(d / "fu" / "ct_1.seg.nrrd")
    ct1 = _ct_on(next(iter(fu1.values())), d / "fu" / "ct1")
    write_rtstruct(fu1, d / "fu" / "ct1" / "rs1.dcm", source=ct1.metadata)
    text = manifest.read_text()
    assert text.count('tumours = "c1/tumours.seg.nrrd"') == 1
    text = (text.replace('tumours = "c1/tumours.seg.nrrd"', 'tumours = "c1/rs.dcm"')
                .replace('tumours = "fu/ct_0.seg.nrrd"', 'tumours = "fu/seg0.dcm"')
                .replace('tumours = "fu/ct_1.seg.nrrd"', 'tumours = "fu/ct1/rs1.dcm"'))
    (d / "manifest.toml").write_text(text)
    return {"nrrd": manifest, "dicom": d / "manifest.toml", "root": root, "ct1": ct1,
            "truth": json.loads((root / "nrrd" / "truth.json").read_text())}


def test_validation_finds_each_reference(patient):
    study = load_manifest(patient["dicom"])
    cycle = study.cycles[0]
    ct = dicom.read_metadata(cycle.ct)
    assert cycle.tumours_reference.series_uid == ct.series_uid and cycle.tumours_reference.path == cycle.ct
    assert study.followups[0].tumours_reference is None                      # a SEG carries its own grid
    assert study.followups[1].tumours_reference.series_uid == patient["ct1"].metadata.series_uid
    notes = " ".join(study.overrides)
    assert "cycles[0].ct: series" in notes and "the RTSTRUCT's folder: series" in notes


def test_rtstruct_and_seg_give_the_seg_nrrd_results(patient, tmp_path):
    a = pd.read_csv(run_patient(patient["nrrd"], tmp_path / "a")["tumours.csv"]).set_index("tumor")
    b = pd.read_csv(run_patient(patient["dicom"], tmp_path / "b")["tumours.csv"]).set_index("tumor")
    assert list(a.index) == list(b.index) and len(a) == 4
    for column in ("dose_gy", "vmax_cm3", "vmin_cm3", "dv", "baseline_volume_cm3"):
        assert np.allclose(b[column], a[column], rtol=1e-12, atol=0), column
    truth = {t["tumor"]: t["volumes_cm3"] for t in patient["truth"]["tumours"]}
    for tumour, volumes in truth.items():   # baseline (SEG) and the maximum over the follow-ups (SEG, RTSTRUCT)
        assert b.loc[tumour, "baseline_volume_cm3"] == pytest.approx(volumes[0], rel=1e-12)
        assert b.loc[tumour, "vmax_cm3"] == pytest.approx(max(volumes), rel=1e-12)
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    hashed = {Path(i["path"]).name for i in run["inputs"]}
    assert {"rs.dcm", "seg0.dcm", "rs1.dcm", "ct1"} <= hashed           # the references are inputs too


def _variant(patient, tmp_path, replace: dict[str, str]) -> Path:
    text = patient["dicom"].read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = patient["root"] / "dicom" / f"m_{tmp_path.name}.toml"
    path.write_text(text)
    return path


def test_explicit_reference_is_the_only_place_searched(patient, tmp_path):
    # the follow-up RTSTRUCT moved away from its CT: found through reference = its CT folder
    moved = patient["root"] / "dicom" / "rtstruct" / "rs1_moved.dcm"
    moved.parent.mkdir(exist_ok=True)
    shutil.copy(patient["root"] / "dicom" / "fu" / "ct1" / "rs1.dcm", moved)
    fine = _variant(patient, tmp_path, {'tumours = "fu/ct1/rs1.dcm"': 'tumours = "rtstruct/rs1_moved.dcm"\n'
                                                                     'reference = "fu/ct1"'})
    assert load_manifest(fine).followups[1].tumours_reference.path.name == "ct1"
    # without the reference, its folder holds no CT: an error that names the key and says what to set
    lost = _variant(patient, tmp_path, {'tumours = "fu/ct1/rs1.dcm"': 'tumours = "rtstruct/rs1_moved.dcm"'})
    with pytest.raises(ManifestError, match=r"followups\[1\]\.tumours: .*rs1_moved\.dcm: the image series the "
                                            r"contours were drawn on was not found.*followups\[1\]\.reference"):
        load_manifest(lost)
    # an explicit reference that is another CT: refused, not replaced by the cycle's CT or the folder
    wrong = _variant(patient, tmp_path, {'tumours = "c1/rs.dcm"': 'tumours = "c1/rs.dcm"\nreference = "fu/ct1"'})
    with pytest.raises(ManifestError, match=r"cycles\[0\]\.tumours: .*rs\.dcm: the image series .* not found.*"
                                            r"searched: cycles\[0\]\.reference"):
        load_manifest(wrong)
    # a reference for a segmentation that has its own grid
    needless = _variant(patient, tmp_path, {'tumours = "fu/seg0.dcm"': 'tumours = "fu/seg0.dcm"\n'
                                                                      'reference = "ct"'})
    with pytest.raises(ManifestError, match=r"followups\[0\]\.reference: is for an RTSTRUCT"):
        load_manifest(needless)


def test_contours_oblique_to_the_reference_refused_before_pixels(patient, tmp_path):
    """The same frame of reference, but a CT tilted by 20° about the x axis: the axial contours cut its
    slices, which no rasterisation rule can place (a slab per contour plane needs planes parallel to slices)."""
    meta, c, s = patient["ct1"].metadata, np.cos(np.radians(20)), np.sin(np.radians(20))
    folder = patient["root"] / "dicom" / "fu" / f"tilted_{tmp_path.name}"
    write_series(ct_slices(np.zeros((20, 64, 64)), StudyIds(study_uid=meta.study_uid,
                                                             frame_of_reference_uid=meta.frame_of_reference_uid),
                           iop=(1, 0, 0, 0, c, s), origin=meta.origin_mm), folder)
    moved = patient["root"] / "dicom" / "fu" / f"rs_{tmp_path.name}.dcm"
    shutil.copy(patient["root"] / "dicom" / "fu" / "ct1" / "rs1.dcm", moved)
    bad = _variant(patient, tmp_path, {'tumours = "fu/ct1/rs1.dcm"': f'tumours = "fu/{moved.name}"\n'
                                                                     f'reference = "fu/{folder.name}"'})
    with pytest.raises(ManifestError, match=r"followups\[1\]\.tumours: .*not in a slice plane"):
        load_manifest(bad)
