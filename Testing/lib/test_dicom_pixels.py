"""DICOM pixel data checked against the header before decoding, for every decoder path (issue 9).

Each case is a file whose header and pixel data disagree by one frame, one row or one column, or
whose header numbers are absurd. The truth is the unmutated file: a read must either give its
voxels exactly or raise the project's DicomError naming the file, never a padded or cropped
volume (which GDCM returned before, with values that differ between runs) and never a bare
MemoryError/ValueError. Memory is measured independently (tracemalloc, or an address-space limit
in a subprocess).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import (
    ct_slices,
    gdcm_jpeg_lossless,
    rle_compressed,
    save,
    set_raw,
    set_with_vr,
    siemens_xspect_like,
    write_series,
)
from pydicom.encaps import encapsulate, generate_frames

from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io import dicom
from LuDoseResponseLib.io.dicom.pixel_format import MAX_READ_GIB_ENV, pixel_format, read_bytes_estimate

NF, NR, NC = 7, 9, 11
FRAME_BYTES = NR * NC * 2
REPO = Path(__file__).resolve().parents[2]


def _nm() -> pydicom.Dataset:
    """Siemens-like NM whose stored values encode their own index (so any shift or padding shows)."""
    return siemens_xspect_like(np.arange(1, NF * NR * NC + 1, dtype=float).reshape(NF, NR, NC) * 10.0)


def _truth(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(float) * float(ds.RescaleSlope)


def test_the_unmutated_file_reads_exactly(tmp_path):
    ds = _nm()
    values = sitk.GetArrayFromImage(dicom.read_volume(save(ds, tmp_path / "ok.dcm")).image)
    np.testing.assert_array_equal(values, _truth(ds))


@pytest.mark.parametrize("case", ["one frame short", "NumberOfFrames + 1", "Rows + 1", "Columns - 1",
                                  "half a frame long"])
def test_native_pixel_data_that_do_not_fit_the_header_are_refused(tmp_path, case):
    ds = _nm()
    if case == "one frame short":
        ds.PixelData = ds.PixelData[:-FRAME_BYTES]
    elif case == "NumberOfFrames + 1":
        ds.NumberOfFrames = ds.NumberOfSlices = NF + 1
        ds.SliceVector = list(range(1, NF + 2))
    elif case == "Rows + 1":
        ds.Rows = NR + 1
    elif case == "Columns - 1":
        ds.Columns = NC - 1
    else:
        ds.PixelData = ds.PixelData + ds.PixelData[:FRAME_BYTES // 2]
    path = save(ds, tmp_path / "bad.dcm")
    with pytest.raises(DicomError, match=r"bad\.dcm: PixelData \(7FE0,0010\) holds \d+ bytes .* Rows \(0028,0010\) × "
                                         r"Columns \(0028,0011\) × NumberOfFrames"):
        dicom.read_volume(path)


def test_a_short_slice_in_a_ct_series_is_named(tmp_path):
    slices = ct_slices(np.zeros((4, 6, 8)))
    slices[2].PixelData = slices[2].PixelData[:-16]  # one row short
    files = write_series(slices, tmp_path / "ct")
    with pytest.raises(DicomError, match=rf"{files[2].name}: PixelData \(7FE0,0010\) holds 80 bytes"):
        dicom.read_volume(tmp_path / "ct")


def _jpeg_ct(tmp_path: Path, compressor: str) -> tuple[Path, np.ndarray]:
    hu = np.random.default_rng(4).integers(-1000, 1500, size=(1, 16, 18)).astype(float)
    (plain,) = write_series(ct_slices(hu), tmp_path / "plain")
    return gdcm_jpeg_lossless(plain, tmp_path / "jpeg.dcm", compressor), hu


@pytest.mark.parametrize("compressor", ["JPEG", "JPEG2000"])
@pytest.mark.parametrize("change", [("Rows", 17), ("Columns", 17), ("NumberOfFrames", 2)])
def test_gdcm_path_checks_the_jpeg_frames_against_the_header(tmp_path, change, compressor):
    """JPEG Lossless and JPEG 2000 lossless go to GDCM here (pydicom has no decoder for them), which
    ignored Rows/Columns (a bare numpy ValueError followed) and NumberOfFrames; the JPEG start-of-frame
    marker (ITU T.81 B.2.2) or the JPEG 2000 SIZ marker (ISO 15444-1 A.5.1) and the fragments are now
    checked first."""
    path, hu = _jpeg_ct(tmp_path, compressor)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == {"JPEG": "1.2.840.10008.1.2.4.70",
                                                                 "JPEG2000": "1.2.840.10008.1.2.4.90"}[compressor]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(dicom.read_volume(path).image), hu)
    ds = pydicom.dcmread(path)
    setattr(ds, *change)
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(DicomError, match=r"bad\.dcm: .*(is 16 × 18 pixels .* header says|holds 1 frame)"):
        dicom.read_volume(tmp_path / "bad.dcm")


def test_rle_with_a_wrong_size_or_a_missing_frame_is_refused(tmp_path):
    """pydicom decodes RLE; with Columns − 1 it only warned ("non-conformant padding") and returned
    shifted voxels. A decoder's warning is now an error, and the fragments are counted."""
    ds = rle_compressed(_nm())
    truth = _truth(_nm())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(dicom.read_volume(save(ds, tmp_path / "ok.dcm")).image),
                                  truth)
    narrow = pydicom.dcmread(tmp_path / "ok.dcm")
    narrow.Columns = NC - 1
    with pytest.raises(DicomError, match=r"narrow\.dcm: the pixel data disagree with the header"):
        dicom.read_volume(save(narrow, tmp_path / "narrow.dcm"))
    short = pydicom.dcmread(tmp_path / "ok.dcm")
    frames = list(generate_frames(short.PixelData, number_of_frames=NF))
    short.PixelData = encapsulate(frames[:-1])
    with pytest.raises(DicomError, match=r"short\.dcm: the encapsulated PixelData .* holds 6 frame\(s\) but "
                                         r"NumberOfFrames \(0028,0008\) is 7"):
        dicom.read_volume(save(short, tmp_path / "short.dcm"))


def test_negative_frames_and_columns_of_the_wrong_vr_are_reported_not_used(tmp_path):
    neg = _nm()
    set_raw(neg, "NumberOfFrames", "-4")
    wrong_vr = _nm()
    set_with_vr(wrong_vr, "Columns", "DS", "-1e37")
    for ds, name, message in ((neg, "neg.dcm", r"NumberOfFrames \(0028,0008\) = -4 is outside 1–2147483647"),
                              (wrong_vr, "vr.dcm", r"Columns \(0028,0011\) is written with VR DS .*must be US")):
        path = save(ds, tmp_path / name)
        (meta,) = dicom.inspect(path)
        assert meta.size is None and meta.spacing_mm is None
        assert any(name in w and re.search(message, w) for w in meta.warnings), meta.warnings
        with pytest.raises(DicomError, match=message):
            dicom.read_volume(path)


def _run_limited(code: str, address_space_gib: float = 3.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose address space is capped: an allocation of many GiB fails there
    (MemoryError) instead of exhausting the machine."""
    limit = int(address_space_gib * 2**30)
    pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-c", pre + code], capture_output=True, encoding="utf-8", cwd=REPO,
                          env=env, timeout=120)


@pytest.mark.parametrize(("what", "mutation"), [
    ("inspect", "ds.NumberOfFrames = 2147483647"),
    ("read_volume", "ds.NumberOfFrames = 2147483647"),
    ("read_volume", "ds.Rows = ds.Columns = 65535"),
])
def test_huge_header_numbers_are_a_dicom_error_without_allocating(tmp_path, what, mutation):
    """NumberOfFrames = 2³¹−1 made inspect build tuple(range(NumberOfFrames)) (16 GiB); Rows = Columns = 65535
    raised a bare MemoryError. Both must be a DicomError inside a 3 GiB address space."""
    code = f"""
import sys; sys.path.insert(0, {str(REPO / 'Testing' / 'data')!r})
import numpy as np
from dicom_factory import siemens_xspect_like, ct_slices, write_series, save
from pathlib import Path
from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io import dicom
folder = Path({str(tmp_path)!r})
def mutate(ds):
    {mutation}
    if "NumberOfSlices" in ds:  # US: cannot hold 2**31 - 1; absent is allowed
        del ds.NumberOfSlices
    return ds
targets = [save(mutate(siemens_xspect_like(np.ones(({NF}, {NR}, {NC})))), folder / "nm.dcm")]
write_series([mutate(s) for s in ct_slices(np.zeros((3, 4, 4)))], folder / "ct")
targets.append(folder / "ct")
for target in targets:
    try:
        dicom.{what}(target)
        print("accepted", target)
    except DicomError as exc:
        print("DicomError:", exc)
"""
    done = _run_limited(code)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    if what == "inspect":  # headers only: reported, not refused
        assert all(line.startswith("accepted") for line in lines), lines
    else:
        assert all(line.startswith("DicomError:") and "need at least" in line for line in lines), lines


def test_inspect_of_a_huge_frame_count_reports_it_in_bounded_memory(tmp_path):
    ds = _nm()
    ds.NumberOfFrames = 2**31 - 1
    del ds.NumberOfSlices
    path = save(ds, tmp_path / "huge.dcm")
    tracemalloc.start()
    try:
        (meta,) = dicom.inspect(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # the header of a 2 kB file; 2³¹ frames would be > 16 GiB
    assert meta.size is None
    assert any("huge.dcm: Rows (0028,0010) × Columns (0028,0011) × NumberOfFrames (0028,0008) = 9 × 11 × "
               "2147483647 need at least 425201762106 bytes" in w for w in meta.warnings), meta.warnings


def test_read_memory_limit_by_argument_and_environment(tmp_path, monkeypatch):
    path = save(_nm(), tmp_path / "nm.dcm")
    with pytest.raises(DicomError, match=rf"nm\.dcm: reading 11 × 9 × 7 voxels needs about .* GiB, above the limit "
                                         rf"of 9\.99e-07 GiB; .*max_read_gib or the environment variable "
                                         rf"{MAX_READ_GIB_ENV}"):
        dicom.read_volume(path, max_read_gib=1e-6)
    monkeypatch.setenv(MAX_READ_GIB_ENV, "1e-6")
    with pytest.raises(DicomError, match="above the limit"):
        dicom.read_volume(path)
    assert dicom.read_volume(path, max_read_gib=1.0).image.GetSize() == (NC, NR, NF)  # the argument wins
    monkeypatch.setenv(MAX_READ_GIB_ENV, "lots")
    with pytest.raises(DicomError, match=f"{MAX_READ_GIB_ENV} = 'lots' is not a positive number of GiB"):
        dicom.read_volume(path)


@pytest.mark.parametrize("kind", ["nm", "ct"])
def test_memory_estimate_bounds_the_measured_peak(tmp_path, kind):
    """The estimate that the limit is compared with must not be below what a read really allocates
    (tracemalloc sees numpy's buffers and pydicom's bytes; SimpleITK's copy is counted in the estimate
    but invisible to tracemalloc, so the estimate is an upper bound here)."""
    if kind == "nm":
        ds = siemens_xspect_like(np.random.default_rng(0).uniform(0, 1e5, size=(48, 64, 64)))
        target = save(ds, tmp_path / "nm.dcm")
        headers, n_files, itemsize = [ds], 1, 8
    else:
        headers = ct_slices(np.random.default_rng(0).integers(-1000, 1000, size=(40, 96, 96)).astype(float))
        write_series(headers, tmp_path / "ct")
        target, n_files, itemsize = tmp_path / "ct", 40, 4
    estimate = read_bytes_estimate(pixel_format(headers[0], "x"), n_files, itemsize)
    tracemalloc.start()
    try:
        volume = dicom.read_volume(target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    voxels = int(np.prod(volume.image.GetSize()))
    assert voxels * itemsize <= peak <= estimate  # at least the output array, at most the estimate


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("BitsAllocated", 12, r"BitsAllocated \(0028,0100\) = 12 is not supported"),
    ("BitsStored", 17, r"BitsStored \(0028,0101\) = 17 is outside 1–16"),
    ("PixelRepresentation", 2, r"PixelRepresentation \(0028,0103\) = 2 is outside 0–1"),
    ("SamplesPerPixel", 3, r"SamplesPerPixel \(0028,0002\) is 3, not 1"),
    ("PixelSpacing", ["1e-6", "1e-6"], r"PixelSpacing \(0028,0030\) missing, not a number or outside 0.001–10000 mm"),
    ("SpacingBetweenSlices", "1e300", r"SpacingBetweenSlices \(0018,0088\) = 1e\+300 mm is outside"),
])
def test_other_image_pixel_numbers_are_checked(tmp_path, keyword, value, message):
    ds = _nm()
    setattr(ds, keyword, value)
    with pytest.raises(DicomError, match=message):
        dicom.read_volume(save(ds, tmp_path / "nm.dcm"))


def test_missing_bits_allocated_is_an_error_not_a_default(tmp_path):
    ds = _nm()
    ds["PixelData"].VR = "OW"  # pydicom chooses OB/OW from BitsAllocated when it writes; fix it first
    del ds.BitsAllocated
    with pytest.raises(DicomError, match=r"BitsAllocated \(0028,0100\) is missing"):
        dicom.read_volume(save(ds, tmp_path / "nm.dcm"))


def test_lossy_compression_is_a_result_warning(tmp_path):
    ds = _nm()
    assert not any("lossy" in w for w in dicom.read_metadata(save(ds, tmp_path / "plain.dcm")).warnings)
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "8.5"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    volume = dicom.read_volume(save(ds, tmp_path / "lossy.dcm"))
    assert any("lossy.dcm: the pixel values were lossy compressed (LossyImageCompression (0028,2110) = 01 in 1 of "
               "1 file(s) (ratio 8.5, method ISO_10918_1))" in w for w in volume.metadata.warnings)
    assert any("lossy" in w for w in volume.to_dict()["warnings"])  # travels with the result
    ds.LossyImageCompression = "00"
    assert not any("lossy" in w for w in dicom.read_metadata(save(ds, tmp_path / "zero.dcm")).warnings)



def test_a_corrupt_element_length_never_reserves_more_than_the_file(tmp_path):
    """A plain file's read(n) reserved n bytes (2 GiB for a length 0x7FFFFFF0) before finding the end of a
    4 kB file; the reader maps the file instead. The pixel data are all there, so the values are right."""
    ds = _nm()
    path = save(ds, tmp_path / "nm.dcm")
    raw = bytearray(path.read_bytes())
    at = raw.rfind(b"\xe0\x7f\x10\x00OW\x00\x00")  # PixelData, explicit VR: tag, VR, 2 reserved, 4-byte length
    raw[at + 8:at + 12] = (0x7FFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        dicom.inspect(path)
        values = sitk.GetArrayFromImage(dicom.read_volume(path).image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    np.testing.assert_array_equal(values, _truth(ds))


def test_a_damaged_slice_is_never_dropped_from_its_series_unnoticed(tmp_path):
    hu = np.arange(4 * 6 * 8, dtype=float).reshape(4, 6, 8)
    files = write_series(ct_slices(hu), tmp_path / "ct")
    end = files[-1]  # the last slice: without it the series would still look complete
    raw = end.read_bytes()
    end.write_bytes(raw[:raw.rfind(b"\x28\x00\x10\x00US")])  # cut just before Rows (0028,0010)
    with pytest.raises(DicomError, match=rf"{end.name}: Rows \(0028,0010\) is missing"):
        dicom.read_volume(tmp_path / "ct")
    end.write_bytes(raw[:200])  # cut inside the file meta: no data set left to read
    meta = dicom.read_metadata(tmp_path / "ct")
    assert meta.size == (8, 6, 3)
    assert any(f"{end.name}: unreadable" in w and "the series is incomplete" in w for w in meta.warnings)


def test_non_image_dicom_files_are_skipped_with_a_note_each(tmp_path, caplog):
    hu = np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5)
    slices = ct_slices(hu)
    write_series(slices, tmp_path / "ct")
    rtstruct = pydicom.Dataset()
    rtstruct.file_meta = pydicom.dataset.FileMetaDataset()
    rtstruct.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    rtstruct.SOPClassUID = rtstruct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    rtstruct.SOPInstanceUID = rtstruct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    rtstruct.Modality = "RTSTRUCT"
    rtstruct.SeriesInstanceUID = pydicom.uid.generate_uid()
    save(rtstruct, tmp_path / "ct" / "RS.dcm")
    with caplog.at_level("INFO", logger="LuDoseResponseLib.io.dicom.read"):
        volume = dicom.read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), hu)
    notes = [r.getMessage() for r in caplog.records if "RS.dcm" in r.getMessage()]
    assert notes == [f"{tmp_path / 'ct' / 'RS.dcm'}: skipped, not an image (RT Structure Set Storage, no "
                     "Rows (0028,0010)/Columns (0028,0011))"]
