"""Our DICOM outputs pass dicom3tools' ``dciodvfy`` with zero errors (issue 13).

``dciodvfy`` (Debian package dicom3tools) is installed by ``make test`` where it can be (root); with
``LUDR_REQUIRE_DCIODVFY`` set (``make test``, CI) a missing validator fails these tests. It aborts on
32-bit pixel data (an assertion in dicom3tools), so the 32-bit RT Dose is validated through a copy
whose pixels are re-quantised to 16 bits, every other attribute unchanged; the 16-bit output is
validated as written.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import StudyIds, ge_counts_like, save

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.write import rtplan_path, write_rtdose

DCIODVFY = shutil.which("dciodvfy")


def _validate(path) -> tuple[list[str], list[str]]:
    if DCIODVFY is None:
        if os.environ.get("LUDR_REQUIRE_DCIODVFY"):
            pytest.fail("dciodvfy is not installed: apt-get install dicom3tools (make test does it as root)")
        pytest.skip("dciodvfy (dicom3tools) not installed")
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [s for s in lines if s.startswith("Error")], [s for s in lines if s.startswith("Warning")]


@pytest.fixture
def spect(tmp_path):
    counts = np.zeros((6, 8, 10), dtype=np.uint16)
    counts[2:4, 3:6, 4:7] = 300
    return dicom.read_volume(save(ge_counts_like(counts, StudyIds()), tmp_path / "nm.dcm"))


def _dose(spect) -> sitk.Image:
    arr = np.random.default_rng(2).gamma(2.0, 3.0, size=sitk.GetArrayViewFromImage(spect.image).shape)
    dose = sitk.GetImageFromArray(arr)
    dose.CopyInformation(spect.image)
    return dose


def test_rtdose_16_bit_and_its_plan_are_conformant(tmp_path, spect):
    dose = _dose(spect)
    out = write_rtdose(dose, tmp_path / "out" / "dose.dcm", source=spect.metadata, bits_allocated=16)
    errors, warnings = _validate(out)
    assert errors == [] and warnings == []
    errors, warnings = _validate(rtplan_path(out))
    assert errors == [] and warnings == []
    ds = pydicom.dcmread(out)
    plan = pydicom.dcmread(rtplan_path(out))
    assert ds.BitsAllocated == 16 and ds.RescaleType == "US"
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert plan.StudyInstanceUID == ds.StudyInstanceUID and plan.FrameOfReferenceUID == ds.FrameOfReferenceUID
    assert "MBq" in plan.RTPlanDescription     # the administration, from RadionuclideTotalDose
    # Gy within half a 16-bit quantisation step, read by GDCM (SimpleITK) through RescaleSlope
    step = float(ds.DoseGridScaling)
    assert step <= float(sitk.GetArrayViewFromImage(dose).max()) / 65535 * (1 + 1e-6)
    gdcm = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.max(np.abs(gdcm - sitk.GetArrayFromImage(dose))) <= 0.5 * step * (1 + 1e-6)


def test_rtdose_32_bit_is_conformant_but_for_the_pixel_depth(tmp_path, spect):
    out = write_rtdose(_dose(spect), tmp_path / "dose.dcm", source=spect.metadata)
    ds = pydicom.dcmread(out)
    assert ds.BitsAllocated == 32
    values = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    step = float(values.max()) / 65535
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = np.rint(values / step).astype("<u2").tobytes()
    ds.DoseGridScaling = ds.RescaleSlope = f"{step:.10g}"
    copy = tmp_path / "dose16.dcm"
    ds.save_as(copy)
    errors, _ = _validate(copy)
    assert errors == []


def test_only_plan_dose_summation_can_be_written(tmp_path, spect):
    with pytest.raises(InputError, match="radiopharmaceutical"):
        write_rtdose(_dose(spect), tmp_path / "d.dcm", source=spect.metadata, dose_summation_type="RECORD")
    with pytest.raises(InputError, match="bits_allocated"):
        write_rtdose(_dose(spect), tmp_path / "d.dcm", source=spect.metadata, bits_allocated=8)
    assert not any(tmp_path.glob("d*.dcm"))


def test_seg_is_conformant(tmp_path, spect):
    from LuDoseResponseLib.io.seg_write import write_seg

    array = (sitk.GetArrayFromImage(spect.image) > 0).astype(np.uint8)
    tumour = sitk.GetImageFromArray(array)
    tumour.CopyInformation(spect.image)
    kidney = sitk.GetImageFromArray(np.roll(array, 2, axis=2))
    kidney.CopyInformation(spect.image)
    out = write_seg({"T1": tumour, "Kidney_R": kidney}, tmp_path / "seg.dcm", source=spect.metadata)
    errors, warnings = _validate(out)
    assert errors == [] and warnings == []


def test_rtstruct_is_conformant(tmp_path):
    from dicom_factory import ct_slices, write_series

    from LuDoseResponseLib.io.rtstruct_write import write_rtstruct

    write_series(ct_slices(np.zeros((5, 12, 14)), StudyIds()), tmp_path / "ct")
    ct = dicom.read_volume(tmp_path / "ct")
    array = np.zeros((5, 12, 14), np.uint8)
    array[1:4, 3:9, 2:7] = 1
    array[2, 5:7, 3:5] = 0                                   # a hole: a second contour on that slice
    tumour = sitk.GetImageFromArray(array)
    tumour.CopyInformation(ct.image)
    kidney = sitk.GetImageFromArray(np.roll(array, 6, axis=2))
    kidney.CopyInformation(ct.image)
    out = write_rtstruct({"T1": tumour, "Kidney_R": kidney}, tmp_path / "rs.dcm", source=ct.metadata)
    errors, warnings = _validate(out)
    assert errors == [] and warnings == []
