"""Synthetic DICOM for the tests, built with pydicom: vendor-like SPECT layouts, PT-style SPECT, CT.

Nothing binary is committed; tests write these files under ``tmp_path``. The layouts follow the
conventions documented for each vendor family (DICOM PS3.3 NM/PET modules, the reference notes
in shared/reference/slicer/slicer-notes.md §8, dcm2niix #885, OHIF #4352). They are "-like":
modelled on those conventions, not copies of real files.

- :func:`siemens_xspect_like` NM multi-frame RECON TOMO, Units BQML, values stored as int16 with
  a RescaleSlope, geometry in DetectorInformationSequence, AcquisitionDate + AcquisitionTime,
  RadiopharmaceuticalStartDateTime, RadionuclideTotalDose in Bq, RotationInformationSequence.
- :func:`ge_counts_like` NM multi-frame in counts without Units, negative SpacingBetweenSlices
  (stack in front of the first slice), a time-only RadiopharmaceuticalStartTime, two rotations.
- :func:`philips_like` NM multi-frame with Units CNTS and a RescaleSlope, plus a
  RealWorldValueMappingSequence to Bq/ml applied to stored values; geometry at the top level
  (no DetectorInformationSequence), an oblique orientation, AcquisitionDateTime, and
  ActualFrameDuration / NumberOfFramesInRotation at the top level.
- :func:`hermes_pt_like` PT-style SPECT: one file per slice, Units BQML, a different
  RescaleSlope per slice, a matching Bq/ml real-world value mapping, DecayCorrection START.
- :func:`ct_slices` a CT series in HU (RescaleIntercept −1024).

The tests mutate the returned datasets (delete or change tags) to build the broken variants:
:func:`set_raw` (an undecodable value), :func:`set_with_vr` (a value written with the wrong VR),
:func:`rle_compressed` (RLE Lossless, encoded by pydicom) and :func:`gdcm_jpeg_lossless` (JPEG
Lossless, encoded by GDCM, which pydicom cannot decode here) give the encapsulated variants.
"""

from __future__ import annotations

import locale
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    generate_uid,
)

LU177_HALF_LIFE_S = 6.647 * 86400.0
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass
class StudyIds:
    """Identifiers shared by the series of one synthetic study."""

    patient_id: str = "LUDR-P001"
    patient_name: str = "Test^Patient"
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    study_date: str = "20190305"


def ideal_ds(value: float) -> float:
    """``value`` rounded to what a DS (decimal string, ≤ 16 characters) can hold and read back."""
    return float(f"{value:.10g}")


def quantize(values: np.ndarray, *, max_stored: int = 32000) -> tuple[np.ndarray, float]:
    """(stored int16 values, DS-exact slope) with stored × slope ≈ values."""
    peak = float(np.max(np.abs(values))) or 1.0
    slope = ideal_ds(peak / max_stored)
    return np.rint(values / slope).astype(np.int16), slope


def _base(modality: str, sop_class: str, ids: StudyIds, *, series_uid: str, series_number: int,
          description: str, manufacturer: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.PatientID = ids.patient_id
    ds.PatientName = ids.patient_name
    ds.PatientBirthDate = "19550101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = ids.study_uid
    ds.StudyDate = ids.study_date
    ds.StudyTime = "093000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.FrameOfReferenceUID = ids.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    """Stored values (frames, rows, cols) or (rows, cols) as 16-bit pixel data."""
    stored = np.asarray(stored)
    signed = stored.dtype.kind == "i"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()


def _radiopharmaceutical(*, start_datetime: str | None, start_time: str | None, total_dose: float | None,
                         half_life_s: float | None = LU177_HALF_LIFE_S) -> DicomSequence:
    item = Dataset()
    item.Radiopharmaceutical = "Lu-177-DOTATATE"
    if start_datetime is not None:
        item.RadiopharmaceuticalStartDateTime = start_datetime
    if start_time is not None:
        item.RadiopharmaceuticalStartTime = start_time
    if total_dose is not None:
        item.RadionuclideTotalDose = f"{total_dose:.10g}"
    if half_life_s is not None:
        item.RadionuclideHalfLife = f"{half_life_s:.10g}"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-145A4", "SRT", "^177^Lutetium"
    item.RadionuclideCodeSequence = DicomSequence([code])
    return DicomSequence([item])


def _rwvm_item(slope: float, intercept: float, code_value: str, first: int, last: int) -> Dataset:
    item = Dataset()
    item.LUTExplanation = "Activity concentration"
    item.LUTLabel = "BQML"
    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = code_value, "UCUM", code_value
    item.MeasurementUnitsCodeSequence = DicomSequence([units])
    item.RealWorldValueFirstValueMapped = first
    item.RealWorldValueLastValueMapped = last
    item.RealWorldValueIntercept = float(intercept)
    item.RealWorldValueSlope = float(slope)
    return item


def _rotation(ms_per_view: int, views: int) -> Dataset:
    item = Dataset()
    item.ActualFrameDuration = int(ms_per_view)
    item.NumberOfFramesInRotation = int(views)
    item.RotationDirection = "CW"
    return item


def _nm_volume(stored_fyx: np.ndarray, ids: StudyIds, *, manufacturer: str, description: str,
               pixel_spacing_rc: Sequence[float], slice_spacing: float | None, ipp: Sequence[float],
               iop: Sequence[float], geometry_in_detector: bool, series_uid: str | None,
               series_number: int) -> Dataset:
    ds = _base("NM", NuclearMedicineImageStorage, ids, series_uid=series_uid or generate_uid(),
               series_number=series_number, description=description, manufacturer=manufacturer)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    n = int(stored_fyx.shape[0])
    ds.NumberOfFrames = n
    ds.NumberOfSlices = n
    ds.FrameIncrementPointer = 0x00540080  # SliceVector
    ds.SliceVector = list(range(1, n + 1))
    ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing_rc]
    if slice_spacing is not None:
        ds.SpacingBetweenSlices = f"{slice_spacing:.10g}"
        ds.SliceThickness = f"{abs(slice_spacing):.10g}"
    plane = ds
    if geometry_in_detector:
        plane = Dataset()
        ds.DetectorInformationSequence = DicomSequence([plane])
    plane.ImagePositionPatient = [f"{v:.10g}" for v in ipp]
    plane.ImageOrientationPatient = [f"{v:.10g}" for v in iop]
    _set_pixels(ds, stored_fyx)
    return ds


def siemens_xspect_like(conc_bq_per_ml_fyx: np.ndarray, ids: StudyIds | None = None, *,
                        pixel_spacing_rc=(4.6, 4.8), slice_spacing: float = 5.0,
                        ipp=(-150.0, -160.0, -90.0), series_uid: str | None = None,
                        total_dose_bq: float = 7.4e9) -> Dataset:
    """NM RECON TOMO in Bq/mL (Units BQML, int16 × RescaleSlope); the values are stored × slope."""
    ids = ids or StudyIds()
    stored, slope = quantize(np.asarray(conc_bq_per_ml_fyx, dtype=float))
    ds = _nm_volume(stored, ids, manufacturer="SIEMENS NM", description="xSPECT QUANT",
                    pixel_spacing_rc=pixel_spacing_rc, slice_spacing=slice_spacing, ipp=ipp, iop=AXIAL,
                    geometry_in_detector=True, series_uid=series_uid, series_number=3)
    ds.Units = "BQML"
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = "0"
    ds.AcquisitionDate, ds.AcquisitionTime = "20190305", "100215.000000"
    ds.SeriesDate, ds.SeriesTime = "20190305", "103500"
    ds.ContentDate, ds.ContentTime = "20190305", "103510"
    ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(
        start_datetime="20190304093000.000000", start_time="093000.000000", total_dose=total_dose_bq)
    ds.RotationInformationSequence = DicomSequence([_rotation(15000, 48)])  # 48 views × 15 s = 720 s
    ds.NumberOfDetectors = 2
    return ds


def ge_counts_like(counts_fyx: np.ndarray, ids: StudyIds | None = None, *, pixel_spacing_rc=(4.42, 4.42),
                   slice_spacing: float = -4.42, ipp=(-141.0, -141.0, 120.0),
                   series_uid: str | None = None) -> Dataset:
    """NM RECON TOMO in counts (uint16, no Units), negative SpacingBetweenSlices, time-only injection."""
    ids = ids or StudyIds()
    ds = _nm_volume(np.asarray(counts_fyx).astype(np.uint16), ids, manufacturer="GE MEDICAL SYSTEMS",
                    description="SPECT Lu177 OSEM", pixel_spacing_rc=pixel_spacing_rc,
                    slice_spacing=slice_spacing, ipp=ipp, iop=AXIAL, geometry_in_detector=True,
                    series_uid=series_uid, series_number=5)
    ds.AcquisitionDate, ds.AcquisitionTime = "20190305", "095000"
    ds.SeriesDate, ds.SeriesTime = "20190305", "101500"
    ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(
        start_datetime=None, start_time="093000", total_dose=7.4e9)
    # two rotations of 30 views × 20 s each: 1200 s of acquisition
    ds.RotationInformationSequence = DicomSequence([_rotation(20000, 30), _rotation(20000, 30)])
    ds.NumberOfDetectors = 2
    return ds


def philips_like(stored_fyx: np.ndarray, ids: StudyIds | None = None, *, rescale_slope: float = 2.0,
                 rwvm_slope: float = 0.37, angle_deg: float = 12.0, pixel_spacing_rc=(4.66, 4.66),
                 slice_spacing: float = 4.66, ipp=(-120.0, -140.0, -60.0),
                 series_uid: str | None = None) -> Dataset:
    """NM RECON TOMO: Units CNTS (stored × RescaleSlope) and a Bq/ml real-world value mapping."""
    ids = ids or StudyIds()
    a = np.deg2rad(angle_deg)
    iop = (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0)
    stored = np.asarray(stored_fyx).astype(np.uint16)
    ds = _nm_volume(stored, ids, manufacturer="Philips Medical Systems", description="Astonish Q",
                    pixel_spacing_rc=pixel_spacing_rc, slice_spacing=slice_spacing, ipp=ipp, iop=iop,
                    geometry_in_detector=False, series_uid=series_uid, series_number=7)
    ds.Units = "CNTS"
    ds.RescaleSlope = f"{rescale_slope:.10g}"
    ds.RescaleIntercept = "0"
    ds.RealWorldValueMappingSequence = DicomSequence(
        [_rwvm_item(rwvm_slope, 0.0, "Bq/ml", 0, int(stored.max()))])
    ds.AcquisitionDateTime = "20190306110500.000000"
    ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(
        start_datetime="20190304093000", start_time=None, total_dose=7.35e9)
    ds.ActualFrameDuration = 25000        # ms per view, at the top level
    ds.NumberOfFramesInRotation = 32      # 32 views × 25 s = 800 s
    return ds


def hermes_pt_like(conc_bq_per_ml_zyx: np.ndarray, ids: StudyIds | None = None, *,
                   pixel_spacing_rc=(3.9, 3.9), slice_spacing: float = 3.9,
                   origin=(-125.0, -125.0, -300.0), series_uid: str | None = None) -> list[Dataset]:
    """PT-style SPECT: one file per slice with its own RescaleSlope, BQML, DecayCorrection START."""
    ids = ids or StudyIds()
    series_uid = series_uid or generate_uid()
    out = []
    for k, plane in enumerate(np.asarray(conc_bq_per_ml_zyx, dtype=float)):
        stored, slope = quantize(plane)
        ds = _base("PT", PositronEmissionTomographyImageStorage, ids, series_uid=series_uid, series_number=9,
                   description="SUV SPECT Lu177", manufacturer="HERMES")
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.InstanceNumber = k + 1
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["ATTN", "SCAT", "DECY"]
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = "0"
        ds.RealWorldValueMappingSequence = DicomSequence(
            [_rwvm_item(slope, 0.0, "Bq/ml", int(stored.min()), int(stored.max()))])
        ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing_rc]
        ds.SliceThickness = f"{slice_spacing:.10g}"
        ds.ImageOrientationPatient = list(AXIAL)
        ds.ImagePositionPatient = [f"{origin[0]:.10g}", f"{origin[1]:.10g}", f"{origin[2] + k * slice_spacing:.10g}"]
        ds.SeriesDate, ds.SeriesTime = "20190308", "101000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20190308", "101000"
        ds.ActualFrameDuration = 1_800_000   # the whole acquisition, PET-style (ms)
        ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(
            start_datetime="20190304093000", start_time="093000", total_dose=7.4e9)
        _set_pixels(ds, stored)
        out.append(ds)
    return out


def ct_slices(hu_zyx: np.ndarray, ids: StudyIds | None = None, *, pixel_spacing_rc=(0.8, 0.9),
              slice_spacing: float = 2.5, origin=(-200.0, -180.0, -100.0), iop=AXIAL,
              series_uid: str | None = None) -> list[Dataset]:
    """A CT series: uint16 stored = HU + 1024, one file per slice; slice k at origin + k·Δ·normal."""
    ids = ids or StudyIds()
    series_uid = series_uid or generate_uid()
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    normal = np.cross(row, col)
    out = []
    for k, plane in enumerate(np.asarray(hu_zyx)):
        ds = _base("CT", CTImageStorage, ids, series_uid=series_uid, series_number=2,
                   description="CT AC 5mm", manufacturer="SIEMENS")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing_rc]
        ds.SliceThickness = f"{slice_spacing:.10g}"
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in iop]
        pos = np.asarray(origin) + k * slice_spacing * normal
        ds.ImagePositionPatient = [f"{v:.10g}" for v in pos]
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.AcquisitionDate, ds.AcquisitionTime = "20190305", f"{95500 + k // 10:06d}"
        ds.KVP = "120"
        _set_pixels(ds, (np.asarray(plane) + 1024).astype(np.uint16))
        out.append(ds)
    return out


def set_raw(ds: Dataset, keyword: str, text: str) -> None:
    """Store ``text`` as the undecoded value of ``keyword`` (as a broken file would hold it, e.g. 'abc' in a DS)."""
    tag = Tag(keyword)
    vr = ds[tag].VR if tag in ds else dictionary_VR(tag)
    raw = text.encode("ascii")
    raw += b" " * (len(raw) % 2)
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)


def set_with_vr(ds: Dataset, keyword: str, vr: str, value) -> None:
    """Write ``keyword`` with the VR ``vr`` instead of its dictionary VR (e.g. Columns as a DS '-1e37')."""
    ds[Tag(keyword)] = DataElement(Tag(keyword), vr, value)


def rle_compressed(ds: Dataset) -> Dataset:
    """``ds`` with its pixel data RLE Lossless encoded (PS3.5 G) by pydicom, one fragment per frame."""
    ds.compress(RLELossless)
    return ds


def gdcm_jpeg_lossless(src: Path, dst: Path, compressor: str = "JPEG") -> Path:
    """Recompress the single-frame file ``src`` losslessly with GDCM (SimpleITK), keeping its header:
    ``compressor`` "JPEG" gives JPEG Lossless (1.2.840.10008.1.2.4.70), "JPEG2000" JPEG 2000 lossless (….90)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(src))
    reader.LoadPrivateTagsOn()
    image = sitk.Cast(reader.Execute(), sitk.sitkInt16)  # JPEG Lossless holds ≤ 16 bits
    for key in reader.GetMetaDataKeys():
        image.SetMetaData(key, reader.GetMetaData(key))
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    writer.SetUseCompression(True)
    writer.SetCompressor(compressor)
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer.SetFileName(str(dst))
    saved = locale.setlocale(locale.LC_ALL)
    try:
        writer.Execute(image)
    finally:  # GDCM's writer leaves LC_CTYPE at "C": later open() calls would decode text as ASCII
        locale.setlocale(locale.LC_ALL, saved)
    return dst


def save(ds: Dataset, path: Path) -> Path:
    """Write one data set as a DICOM Part 10 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(datasets: Sequence[Dataset], folder: Path, *, seed: int = 0, prefix: str = "IM") -> list[Path]:
    """Write a series with shuffled, position-unrelated file names; returns paths in dataset order."""
    numbers = list(range(len(datasets)))
    random.Random(seed).shuffle(numbers)
    return [save(ds, folder / f"{prefix}{num:04d}") for ds, num in zip(datasets, numbers, strict=True)]
