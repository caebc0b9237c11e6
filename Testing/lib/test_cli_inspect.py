"""``ludoseresponse inspect``: JSON per series, broken vendor variants, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from dicom_factory import (
    StudyIds,
    ct_slices,
    ge_counts_like,
    hermes_pt_like,
    philips_like,
    save,
    siemens_xspect_like,
    write_series,
)

from LuDoseResponseLib.cli import main

REQUIRED_KEYS = ("modality", "patient_id", "series_uid", "acquired_at", "duration_s", "administered_at",
                 "activity_mbq", "hours_since_administration", "units", "size", "spacing_mm", "origin_mm",
                 "frame_of_reference_uid", "sources", "warnings")


def _inspect_json(capsys, path) -> list[dict]:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_for_a_mixed_folder(tmp_path, capsys, nm_values):
    ids = StudyIds()
    save(siemens_xspect_like(nm_values, ids), tmp_path / "nm.dcm")
    write_series(ct_slices(np.zeros((3, 4, 4)), ids), tmp_path / "ct")
    records = _inspect_json(capsys, tmp_path)
    assert len(records) == 2
    for rec in records:
        assert set(REQUIRED_KEYS) <= set(rec)
        assert rec["patient_id"] == ids.patient_id and rec["frame_of_reference_uid"] == ids.frame_of_reference_uid
    ct, nm = records  # SeriesNumber order: CT 2, NM 3
    assert ct["modality"] == "CT" and ct["units"] == "hu" and ct["size"] == [4, 4, 3]
    assert nm == {**nm, "units": "bq_per_ml", "acquired_at": "2019-03-05T10:02:15", "duration_s": 720.0,
                  "administered_at": "2019-03-04T09:30:00", "size": [6, 5, 4]}
    assert nm["activity_mbq"] == pytest.approx(7400.0)
    assert nm["hours_since_administration"] == pytest.approx(24.5375)
    assert nm["sources"]["administered_at"].endswith("RadiopharmaceuticalStartDateTime (0018,1078)")


def test_series_uid_option_and_text_output(tmp_path, capsys, nm_values):
    ds = ge_counts_like(nm_values.astype(np.uint16))
    save(ds, tmp_path / "ge.dcm")
    save(philips_like(nm_values.astype(np.uint16)), tmp_path / "ph.dcm")
    records = _inspect_json(capsys, tmp_path)
    assert len(records) == 2
    assert main(["inspect", str(tmp_path), "--series-uid", ds.SeriesInstanceUID]) == 0
    text = capsys.readouterr().out
    assert "Series 1 of 1" in text and "SPECT Lu177 OSEM" in text
    assert "RadiopharmaceuticalStartTime (0018,1072)" in text  # the time-only warning is shown


def _no_acquisition_time(ds):
    for kw in ("AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime", "ContentDate", "ContentTime"):
        if kw in ds:
            delattr(ds, kw)


def _time_only_injection(ds):
    item = ds.RadiopharmaceuticalInformationSequence[0]
    del item.RadiopharmaceuticalStartDateTime
    item.RadiopharmaceuticalStartTime = "093000"


def _dose_in_mbq(ds):
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "7400"


def _missing_spacing(ds):
    del ds.SpacingBetweenSlices
    del ds.SliceThickness


def _empty_type2_tags(ds):
    ds.AcquisitionDate, ds.AcquisitionTime, ds.FrameOfReferenceUID, ds.PatientID = "", "", "", ""


def _no_geometry_sequence(ds):
    del ds.DetectorInformationSequence


# (mutation, field that must be null, fragment of the warning that explains it)
VARIANTS = {
    "no_acquisition_time": (_no_acquisition_time, "acquired_at", "no acquisition date and time"),
    "time_only_injection": (_time_only_injection, "administered_at", "without a date"),
    "dose_in_mbq": (_dose_in_mbq, None, "read as MBq"),
    "missing_spacing": (_missing_spacing, "spacing_mm", "SpacingBetweenSlices (0018,0088) and SliceThickness"),
    "empty_type2_tags": (_empty_type2_tags, "frame_of_reference_uid", "FrameOfReferenceUID (0020,0052) is missing"),
    "no_geometry": (_no_geometry_sequence, "origin_mm", "ImagePositionPatient (0020,0032)"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variants_are_warnings_not_guesses(tmp_path, capsys, variant, nm_values):
    mutate, null_field, fragment = VARIANTS[variant]
    ds = siemens_xspect_like(nm_values)
    mutate(ds)
    (rec,) = _inspect_json(capsys, save(ds, tmp_path / f"{variant}.dcm"))
    if null_field is not None:
        assert rec[null_field] is None
        assert null_field not in rec["sources"]
    assert any(fragment in w for w in rec["warnings"]), rec["warnings"]
    assert all(f"{variant}.dcm" in w for w in rec["warnings"])  # every warning names the file
    if variant == "dose_in_mbq":
        assert rec["activity_mbq"] == 7400.0


def test_pt_style_series_in_json(tmp_path, capsys, nm_values):
    write_series(hermes_pt_like(nm_values), tmp_path / "pt")
    (rec,) = _inspect_json(capsys, tmp_path / "pt")
    assert rec["modality"] == "PT" and rec["units"] == "bq_per_ml" and rec["decay_correction"] == "START"
    assert rec["n_files"] == 4 and rec["spacing_mm"] == pytest.approx([3.9, 3.9, 3.9])


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "absent: no such file or folder" in err and "Traceback" not in err
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)  # a DICOM preamble, then garbage
    assert main(["inspect", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.dcm is not a DICOM image file" in err and "Traceback" not in err


def test_subprocess_prints_no_traceback(tmp_path, nm_values):
    junk = tmp_path / "broken"
    junk.mkdir()
    (junk / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    bad = subprocess.run([sys.executable, "-m", "LuDoseResponseLib", "inspect", str(junk), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "broken" in bad.stderr and bad.stdout == ""
    save(ge_counts_like(nm_values.astype(np.uint16)), tmp_path / "ok" / "ge.dcm")
    good = subprocess.run([sys.executable, "-m", "LuDoseResponseLib", "inspect", str(tmp_path / "ok"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    (rec,) = json.loads(good.stdout)
    assert rec["units"] == "counts" and rec["administered_at"] is None and rec["duration_s"] == 1200.0


def test_a_sequence_with_the_wrong_content_gives_warnings(tmp_path, capsys, nm_values):
    ds = siemens_xspect_like(nm_values)
    ds.RadiopharmaceuticalInformationSequence = ds.RotationInformationSequence  # wrong items
    (rec,) = _inspect_json(capsys, save(ds, tmp_path / "odd.dcm"))
    assert rec["administered_at"] is None and rec["activity_mbq"] is None
    assert any("odd.dcm" in w and "RadiopharmaceuticalStartDateTime" in w for w in rec["warnings"])


def test_an_uninterpretable_header_names_the_file(tmp_path, capsys, monkeypatch, nm_values):
    """Last line of defence: anything the rules did not foresee still names the file, exit 2."""
    path = save(siemens_xspect_like(nm_values), tmp_path / "weird.dcm")

    def broken(*_args):
        raise TypeError("unforeseen")

    monkeypatch.setattr("LuDoseResponseLib.io.dicom.volume.build_metadata", broken)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "weird.dcm: the header cannot be interpreted (TypeError: unforeseen)" in err


def _attribute_paths(ds, prefix=()):
    """Every attribute of a data set, nested ones as (sequence keyword, item index, ..., tag)."""
    for elem in ds:
        if elem.tag == 0x7FE00010:  # keep PixelData
            continue
        yield prefix + (elem.tag,)
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value):
                yield from _attribute_paths(item, prefix + (elem.tag, n))


@pytest.mark.parametrize("layout", ["siemens", "ge", "philips"])
def test_deleting_any_attribute_never_crashes(tmp_path, layout, nm_values):
    """Held-out files will lack things we did not foresee: whatever one attribute is missing, inspect
    and read_volume either succeed or raise the library's error naming the file."""
    from copy import deepcopy

    from LuDoseResponseLib.errors import LuDoseResponseError
    from LuDoseResponseLib.io import dicom

    make = {"siemens": siemens_xspect_like, "ge": ge_counts_like, "philips": philips_like}[layout]
    base = make(nm_values.astype(np.uint16))
    cases = 0
    for path in _attribute_paths(base):
        ds = deepcopy(base)
        parent = ds
        for step in path[:-1]:
            parent = parent[step] if isinstance(step, int) else parent[step].value
        del parent[path[-1]]
        try:
            file = save(ds, tmp_path / f"case{cases}.dcm")
        except AttributeError:  # pydicom cannot even write it (e.g. no BitsAllocated for the pixel VR)
            continue
        cases += 1
        for action in (lambda f=file: json.dumps([m.to_dict() for m in dicom.inspect(f)], allow_nan=False),
                       lambda f=file: dicom.read_volume(f)):
            try:
                action()
            except LuDoseResponseError as exc:
                assert file.name in str(exc), (path, str(exc))
    assert cases > 50


def test_inspect_reports_absurd_header_numbers_as_warnings(tmp_path, capsys, nm_values):
    """NumberOfFrames = 2³¹−1 (tuple(range(...)) allocated 16 GiB before) and a Columns written as a DS
    '-1e37' (size −1e37 before): exit 0, size unknown, the reason in the warnings."""
    from dicom_factory import set_with_vr

    huge = siemens_xspect_like(nm_values)
    huge.NumberOfFrames = 2**31 - 1
    del huge.NumberOfSlices
    save(huge, tmp_path / "a" / "huge.dcm")
    wrong = siemens_xspect_like(nm_values)
    set_with_vr(wrong, "Columns", "DS", "-1e37")
    save(wrong, tmp_path / "b" / "vr.dcm")
    (rec,) = _inspect_json(capsys, tmp_path / "a")
    assert rec["size"] is None
    assert any("NumberOfFrames (0028,0008) = 5 × 6 × 2147483647 need at least" in w for w in rec["warnings"])
    (rec,) = _inspect_json(capsys, tmp_path / "b")
    assert rec["size"] is None
    assert any("Columns (0028,0011) is written with VR DS (value '-1e37'); it must be US" in w for w in rec["warnings"])
