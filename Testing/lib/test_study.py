"""Manifest loading (contracts/study-manifest.md): values, DICOM fill-in, logged overrides, and
every validation error naming the key and the manifest, all before any pixel is read."""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ct_slices, ge_counts_like, hermes_pt_like, save, write_series

from LuDoseResponseLib.errors import ManifestError
from LuDoseResponseLib.io.dicom import read as dicom_read
from LuDoseResponseLib.pipeline.study import load_manifest

MANIFEST = """\
patient = "P001"
grade = "G2"

[settings]
pvc = "gtm"

[[cycles]]
number = 1
administered_at = 2019-03-04T09:30:00
calibration_cps_per_mbq = 5.7
ct = "c1/ct"
tumours = "c1/tumours.seg.nrrd"

  [[cycles.spect]]
  path = "c1/spect_24h.dcm"

  [[cycles.spect]]
  path = "c1/spect_96h"
  acquired_at = 2019-03-08T10:00:00

[[followups]]
date = 2019-02-20
tumours = "fu/baseline.seg.nrrd"

[[followups]]
date = 2019-06-20
tumours = "fu/fu1.seg.nrrd"
"""


def _label_file(path: Path, names=("T1", "T2")) -> None:
    """A Slicer-style .seg.nrrd (one layer) naming ``names`` with label values 1, 2, ..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    for i, name in enumerate(names):
        image.SetMetaData(f"Segment{i}_Name", name)
        image.SetMetaData(f"Segment{i}_LabelValue", str(i + 1))
        image.SetMetaData(f"Segment{i}_Layer", "0")
    sitk.WriteImage(image, str(path))


@pytest.fixture
def study_dir(tmp_path) -> Path:
    ids = StudyIds()
    save(ge_counts_like(np.full((8, 10, 10), 50, dtype=np.uint16), ids), tmp_path / "c1" / "spect_24h.dcm")
    write_series(hermes_pt_like(np.full((6, 10, 10), 1e4), ids, origin=(-130.0, -130.0, 70.0)),
                 tmp_path / "c1" / "spect_96h")
    write_series(ct_slices(np.zeros((20, 20, 20)), ids, pixel_spacing_rc=(4.0, 4.0), slice_spacing=4.0,
                           origin=(-150.0, -150.0, 40.0)), tmp_path / "c1" / "ct")
    for name in ("c1/tumours.seg.nrrd", "fu/baseline.seg.nrrd", "fu/fu1.seg.nrrd"):
        _label_file(tmp_path / name)
    (tmp_path / "study.toml").write_text(MANIFEST)
    return tmp_path


def _write(study_dir: Path, text: str) -> Path:
    path = study_dir / "study.toml"
    path.write_text(text)
    return path


def _problems(path: Path) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message  # every error names the manifest
    return message


def test_valid_manifest(study_dir, caplog):
    with caplog.at_level(logging.INFO, logger="LuDoseResponseLib.pipeline.study"):
        study = load_manifest(study_dir / "study.toml")
    assert study.patient.id == "P001" and study.patient.grade == "G2"
    assert study.settings.pvc == "gtm" and study.settings.dose_method == "kernel"
    assert study.settings.psf_fwhm_mm == 11.0
    (cycle,) = study.cycles
    assert cycle.administered_at == datetime(2019, 3, 4, 9, 30)
    assert cycle.activity_mbq == pytest.approx(7400.0)  # from DICOM: both SPECTs agree
    first, second = cycle.spect
    assert first.units == "counts" and first.duration_s == 1200.0
    assert first.hours_since_administration == pytest.approx(24 + 20 / 60)
    assert second.units == "bq_per_ml" and second.acquired_at == datetime(2019, 3, 8, 10, 0)
    assert second.hours_since_administration == pytest.approx(4 * 24 + 0.5)
    assert second.metadata.acquired_at == datetime(2019, 3, 8, 10, 0)
    assert "manifest" in second.metadata.sources["acquired_at"]
    assert [f.date for f in study.followups] == [date(2019, 2, 20), date(2019, 6, 20)]
    # the override and the DICOM fill-ins are logged and kept
    override = [o for o in study.overrides if "spect[1].acquired_at" in o]
    assert override and "overrides DICOM 2019-03-08T10:10:00" in override[0]
    assert any("activity_mbq not in the manifest; taken from DICOM" in o for o in study.overrides)
    assert "overrides DICOM 2019-03-08T10:10:00" in caplog.text
    assert study.to_dict()["cycles"][0]["spect"][1]["hours_since_administration"] == pytest.approx(96.5)


def test_no_pixels_are_read_until_asked(study_dir, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("pixel data read during validation")

    monkeypatch.setattr(dicom_read, "read_pixels", forbidden)
    monkeypatch.setattr("LuDoseResponseLib.io.dicom.volume.read_pixels", forbidden)
    study = load_manifest(study_dir / "study.toml")
    monkeypatch.undo()
    image = study.cycles[0].spect[0].load_image()
    assert image.GetSize() == (10, 10, 8)


def test_unknown_keys_are_named(study_dir):
    text = MANIFEST.replace('grade = "G2"', 'grade = "G2"\npatinet = "x"').replace(
        'path = "c1/spect_24h.dcm"', 'path = "c1/spect_24h.dcm"\n  durations = 3')
    message = _problems(_write(study_dir, text))
    assert "patinet: unknown key" in message
    assert "cycles[0].spect[0].durations: unknown key" in message


def test_missing_files_are_named(study_dir):
    text = MANIFEST.replace("c1/tumours.seg.nrrd", "c1/nothere.nrrd").replace("c1/spect_96h", "c1/gone")
    message = _problems(_write(study_dir, text))
    assert "cycles[0].tumours:" in message and "nothere.nrrd does not exist" in message
    assert "cycles[0].spect[1].path:" in message


def test_time_before_administration(study_dir):
    message = _problems(_write(study_dir, MANIFEST.replace("2019-03-04T09:30:00", "2019-03-06T09:30:00")))
    assert "cycles[0].spect[0].acquired_at: 2019-03-05T09:50:00 is before the administration" in message


def test_time_only_injection_needs_the_manifest(study_dir):
    text = (MANIFEST.replace("administered_at = 2019-03-04T09:30:00\n", "")
            .replace('  [[cycles.spect]]\n  path = "c1/spect_96h"\n  acquired_at = 2019-03-08T10:00:00\n', ""))
    message = _problems(_write(study_dir, text))
    assert "cycles[0].administered_at: not in the manifest" in message


def test_administration_from_dicom_when_the_manifest_leaves_it_out(study_dir):
    study = load_manifest(_write(study_dir, MANIFEST.replace("administered_at = 2019-03-04T09:30:00\n", "")))
    assert study.cycles[0].administered_at == datetime(2019, 3, 4, 9, 30)  # the PT-style SPECT's header
    assert any("administered_at not in the manifest; taken from DICOM" in o for o in study.overrides)


def test_counts_without_calibration(study_dir):
    message = _problems(_write(study_dir, MANIFEST.replace("calibration_cps_per_mbq = 5.7\n", "")))
    assert "cycles[0].calibration_cps_per_mbq: is required: a SPECT of this cycle is in counts" in message


def test_implausible_calibration_is_a_warning(study_dir):
    study = load_manifest(_write(study_dir, MANIFEST.replace("= 5.7", "= 57.0")))
    assert any("outside the plausible" in w for w in study.warnings)


def test_spect_and_ct_in_different_frames_without_overlap(study_dir):
    other = StudyIds()
    write_series(ct_slices(np.zeros((3, 4, 4)), other, origin=(500.0, 500.0, 500.0)), study_dir / "c1" / "ct2")
    message = _problems(_write(study_dir, MANIFEST.replace('ct = "c1/ct"', 'ct = "c1/ct2"')))
    assert "different frames of reference and do not overlap" in message
    assert "cycles[0].spect[0]:" in message


def test_spect_and_ct_in_different_frames_that_overlap_is_a_warning(study_dir):
    other = StudyIds()
    write_series(ct_slices(np.zeros((20, 20, 20)), other, pixel_spacing_rc=(4.0, 4.0), slice_spacing=4.0,
                           origin=(-150.0, -150.0, 40.0)), study_dir / "c1" / "ct2")
    text = MANIFEST.replace('ct = "c1/ct"', 'ct = { path = "c1/ct2" }')
    study = load_manifest(_write(study_dir, text))
    assert any("different (or missing) frames of reference" in w for w in study.warnings)


def test_disagreeing_dicom_activities_need_the_manifest(study_dir):
    ds = ge_counts_like(np.ones((8, 10, 10), dtype=np.uint16))
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "5.5e9"
    save(ds, study_dir / "c1" / "spect_24h.dcm")
    message = _problems(study_dir / "study.toml")
    assert "cycles[0].activity_mbq: not in the manifest, and the DICOM files disagree" in message
    assert "spect_24h.dcm" in message and "spect_96h" in message
    study = load_manifest(_write(study_dir, MANIFEST.replace("number = 1\n", "number = 1\nactivity_mbq = 7400.0\n")))
    assert any("activity_mbq = 7400.0 overrides DICOM 5500.0" in o for o in study.overrides)


def test_ct_given_as_spect_and_followups_out_of_order(study_dir):
    text = (MANIFEST.replace('path = "c1/spect_24h.dcm"', 'path = "c1/ct"')
            .replace("date = 2019-06-20", "date = 2019-01-20"))
    message = _problems(_write(study_dir, text))
    assert "cycles[0].spect[0].path:" in message and "is a CT series, not a SPECT" in message
    assert "followups[1].date: 2019-01-20 is not after the previous follow-up" in message


def test_bad_values_and_types(study_dir):
    text = (MANIFEST.replace('grade = "G2"', 'grade = "G3"').replace('pvc = "gtm"', 'pvc = "yes"\npsf_fwhm_mm = -2')
            .replace("number = 1", "number = 0").replace("administered_at = 2019-03-04T09:30:00",
                                                         "administered_at = 2019-03-04"))
    message = _problems(_write(study_dir, text))
    for fragment in ("grade: must be one of G1, G2", "settings.pvc: must be one of", "settings.psf_fwhm_mm: must be",
                     "cycles[0].number: must be a positive integer", "cycles[0].administered_at: must be a local"):
        assert fragment in message


def test_nrrd_spect_needs_times_and_units_in_the_manifest(study_dir):
    image = sitk.Image(10, 10, 8, sitk.sitkFloat32)
    image.SetSpacing((4.42, 4.42, 4.42))
    image.SetOrigin((-141.0, -141.0, 89.06))
    sitk.WriteImage(image, str(study_dir / "c1" / "spect.nrrd"))
    text = MANIFEST.replace('path = "c1/spect_24h.dcm"', 'path = "c1/spect.nrrd"')
    message = _problems(_write(study_dir, text))
    assert "cycles[0].spect[0].acquired_at: not in the manifest and not in the DICOM" in message
    assert "cycles[0].spect[0].units: not in the manifest" in message
    fixed = text.replace('path = "c1/spect.nrrd"', 'path = "c1/spect.nrrd"\n  acquired_at = 2019-03-05T10:00:00\n'
                         '  units = "bq_per_ml"')
    study = load_manifest(_write(study_dir, fixed))
    assert study.cycles[0].spect[0].units == "bq_per_ml"


def test_invalid_toml_and_missing_manifest(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("patient = \n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "none.toml")


def test_a_spect_given_as_ct_is_refused(study_dir):
    message = _problems(_write(study_dir, MANIFEST.replace('ct = "c1/ct"', 'ct = "c1/spect_24h.dcm"')))
    assert "cycles[0].ct:" in message and "is a NM series, not a CT" in message


def test_dicom_header_warnings_are_passed_on_with_the_key(study_dir):
    """The GE-like SPECT gives only the time of the injection: the reader's warning reaches the study."""
    study = load_manifest(study_dir / "study.toml")
    assert any(w.startswith("cycles[0].spect[0].path: ") and "RadiopharmaceuticalStartTime (0018,1072)" in w
               for w in study.warnings)


def test_the_same_scan_twice_is_an_error(study_dir):
    text = MANIFEST.replace('path = "c1/spect_96h"\n  acquired_at = 2019-03-08T10:00:00',
                            'path = "c1/spect_24h.dcm"')
    message = _problems(_write(study_dir, text))
    assert "cycles[0].spect[1].path:" in message and "is the same series as cycles[0].spect[0]" in message
    text = MANIFEST.replace("acquired_at = 2019-03-08T10:00:00", "acquired_at = 2019-03-05T09:50:00")
    message = _problems(_write(study_dir, text))
    assert "cycles[0].spect[1].acquired_at: 2019-03-05T09:50:00 is also the time of cycles[0].spect[0]" in message


def test_tumour_names_must_match_across_segmentations(study_dir):
    """Tumours are joined by name; a renamed or extra segment is an error before any voxel is read."""
    _label_file(study_dir / "fu" / "fu1.seg.nrrd", ("T1", "T2b"))
    _label_file(study_dir / "c1" / "tumours.seg.nrrd", ("T1", "T2", "T3"))
    message = _problems(study_dir / "study.toml")
    assert "followups[1].tumours:" in message and "lacks 'T2'; has 'T2b', unknown in followups[0].tumours" in message
    assert "cycles[0].tumours:" in message and "has 'T3', unknown in followups[0].tumours" in message
    (study_dir / "c1" / "plain.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    message = _problems(_write(study_dir, MANIFEST.replace("c1/tumours.seg.nrrd", "c1/plain.nrrd")))
    assert "cycles[0].tumours:" in message and "cannot read the segmentation" in message
    # a label image has no names in its header (its label values name the tumours): not checked here
    _label_file(study_dir / "fu" / "fu1.seg.nrrd")
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(study_dir / "c1" / "labels.nrrd"))
    assert load_manifest(_write(study_dir, MANIFEST.replace("c1/tumours.seg.nrrd", "c1/labels.nrrd"))).cycles


# ---------------------------------------------------------------------------------------------- issue 11
CYCLE2 = """
[[cycles]]
number = 2
administered_at = 2019-04-29T09:30:00
activity_mbq = 7400.0
calibration_cps_per_mbq = 5.7
tumours = "c1/tumours.seg.nrrd"
{extra}
  [[cycles.spect]]
  path = "c1/spect_24h.dcm"
  acquired_at = 2019-04-30T10:00:00
"""


def _two_cycles(extra: str) -> str:
    head, tail = MANIFEST.split("[[followups]]", 1)
    return head + CYCLE2.format(extra=extra) + "\n[[followups]]" + tail


def test_reduced_imaging_kinetics(study_dir):
    study = load_manifest(_write(study_dir, _two_cycles('kinetics = "from-cycle-1"')))
    assert study.cycles[1].kinetics == "from-cycle-1" and study.cycles[0].kinetics is None
    assert study.to_dict()["cycles"][1]["kinetics"] == "from-cycle-1"
    study = load_manifest(_write(study_dir, _two_cycles('kinetics = "stp-madsen"\npopulation_t_eff_h = 70.0\n'
                                                        'population_t_eff_sd_h = 12.0')))
    assert (study.cycles[1].population_t_eff_h, study.cycles[1].population_t_eff_sd_h) == (70.0, 12.0)


def test_reduced_imaging_kinetics_errors(study_dir):
    message = _problems(_write(study_dir, _two_cycles('kinetics = "stp-guess"')))
    assert "cycles[1].kinetics: must be one of stp-hanscheid, stp-madsen, from-cycle-1" in message
    message = _problems(_write(study_dir, _two_cycles('kinetics = "stp-madsen"')))
    assert "cycles[1].population_t_eff_h: is required" in message
    message = _problems(_write(study_dir, _two_cycles('kinetics = "stp-hanscheid"\npopulation_t_eff_h = 70.0')))
    assert "cycles[1].population_t_eff_h: is used only with" in message
    # cycle 1 has two SPECTs: its curve is measured, and it cannot take its kinetics from itself
    text = _two_cycles("").replace('tumours = "c1/tumours.seg.nrrd"\n', 'tumours = "c1/tumours.seg.nrrd"\n'
                                   'kinetics = "from-cycle-1"\n', 1)
    message = _problems(_write(study_dir, text))
    assert "cycles[0].kinetics: applies to a cycle with one SPECT and no planars" in message
    assert "cycles[0].kinetics: \"from-cycle-1\" cannot be used by cycle 1 itself" in message
    # cycle 1 with a single SPECT has no measured half-life to lend
    one_spect = _two_cycles('kinetics = "from-cycle-1"').replace(
        '  [[cycles.spect]]\n  path = "c1/spect_96h"\n  acquired_at = 2019-03-08T10:00:00\n', "")
    message = _problems(_write(study_dir, one_spect))
    assert "cycles[1].kinetics: \"from-cycle-1\" needs cycle 1 (cycles[0]) to have several SPECTs" in message


def _planar_files(study_dir: Path) -> None:
    from planar_factory import planar_nm_dataset

    def views(names, shape=(4, 4)):
        return {v: {w: np.full(shape, 10.0) for w in ("peak", "lower", "upper")} for v in names}

    when = datetime(2019, 3, 4, 10, 30)
    save(planar_nm_dataset(views(("anterior", "posterior")), pixel_mm=4.0, duration_s=600.0, acquired_at=when),
         study_dir / "c1" / "wb.dcm")
    save(planar_nm_dataset(views(("anterior",)), pixel_mm=4.0, duration_s=600.0, acquired_at=when),
         study_dir / "c1" / "ant_only.dcm")
    save(planar_nm_dataset(views(("anterior", "posterior"), (6, 4)), pixel_mm=4.0, duration_s=600.0,
                           acquired_at=datetime(2019, 3, 5, 10, 30)), study_dir / "c1" / "wb_6x4.dcm")


PLANAR = """
  [[cycles.planar]]
  anterior = "c1/wb.dcm"
  posterior = "c1/wb.dcm"
  acquired_at = {when}
  calibration_cps_per_mbq = 9.3
"""


def test_planar_entries(study_dir):
    _planar_files(study_dir)
    one = MANIFEST.replace("[[followups]]", PLANAR.format(when="2019-03-04T10:30:00") + "\n[[followups]]", 1)
    assert "cycles[0].planar: the hybrid planar–SPECT method needs at least two" in _problems(_write(study_dir, one))
    # two planars at 1 h and 20 h do not cover the SPECTs at 24 h and 96 h: a warning on each
    two = MANIFEST.replace("[[followups]]", PLANAR.format(when="2019-03-04T10:30:00")
                           + PLANAR.format(when="2019-03-05T05:30:00") + "\n[[followups]]", 1)
    study = load_manifest(_write(study_dir, two))
    assert len(study.cycles[0].planar) == 2
    outside = [w for w in study.warnings if "outside the planar times" in w]
    assert len(outside) == 2 and "extrapolated" in outside[0]


def test_planar_entries_bad_files(study_dir):
    _planar_files(study_dir)
    entry = PLANAR.format(when="2019-03-04T10:30:00")
    second = PLANAR.format(when="2019-03-05T10:30:00").replace("wb.dcm", "wb_6x4.dcm")
    no_post = PLANAR.format(when="2019-03-04T10:30:00").replace("c1/wb.dcm", "c1/ant_only.dcm")
    not_planar = PLANAR.format(when="2019-03-06T10:30:00").replace("c1/wb.dcm", "c1/spect_24h.dcm")
    text = MANIFEST.replace("[[followups]]", entry + second + no_post + not_planar + "\n[[followups]]", 1)
    message = _problems(_write(study_dir, text))
    assert "cycles[0].planar[1].anterior:" in message and "every planar time point of a cycle" in message
    assert "cycles[0].planar[2].posterior:" in message and "ant_only.dcm holds no posterior view" in message
    assert "cycles[0].planar[3].anterior:" in message and "RECON TOMO/EMISSION is not a planar image" in message


def test_planar_time_from_dicom(study_dir):
    _planar_files(study_dir)
    two = MANIFEST.replace("[[followups]]", PLANAR.format(when="2019-03-04T10:30:00").replace(
        "  acquired_at = 2019-03-04T10:30:00\n", "") + PLANAR.format(when="2019-03-08T10:30:00")
        + "\n[[followups]]", 1)
    study = load_manifest(_write(study_dir, two))
    assert study.cycles[0].planar[0].hours_since_administration == pytest.approx(1.0)
    assert any("planar[0].acquired_at not in the manifest; taken from DICOM" in o for o in study.overrides)
