"""Writing results: NRRD volumes and DICOM RT Dose (RTDOSE), always atomically.

RTDOSE (PS3.3 A.18, RT Dose module C.8.8.3) is written as a multi-frame grid in Gy:
DoseUnits GY, DoseType PHYSICAL, unsigned 32-bit (or 16-bit) pixels with DoseGridScaling, frames
placed by GridFrameOffsetVector (relative offsets from ImagePositionPatient along row × column).
It carries the source SPECT's patient, StudyInstanceUID and FrameOfReferenceUID and lists the
source images in SourceImageSequence, so Slicer (SlicerRT), MIM and other tools load it in the
study's space.

Conformance (checked with dicom3tools' ``dciodvfy``, zero errors): every Dose Summation Type
requires a referenced RT Plan (PLAN, BEAM, FRACTION, ...) or treatment record (RECORD), and a
radiopharmaceutical therapy has neither. The dose is therefore written with DoseSummationType PLAN
beside a companion RT Plan (``<name>_rtplan.dcm``, RT General Plan module with RTPlanGeometry
TREATMENT_DEVICE, no beams) that describes the administration, and ReferencedRTPlanSequence points
to it. Keep the two files together when exporting.

RescaleSlope repeats DoseGridScaling (RescaleType US, "unspecified", a defined term) so that readers
that ignore the RT Dose module (GDCM, hence SimpleITK and Slicer's scalar-volume loader) also give Gy.

Quantisation: stored = round(dose / s) with s = max(dose) / (2^bits − 1) written as a DS; the
read-back error is at most s / 2 Gy per voxel (bits 32: 1.2e-10 of the maximum; 16: 7.6e-6).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RTDoseStorage

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import DicomError, GeometryError, InputError
from LuDoseResponseLib.files import atomic_path, refuse_to_overwrite_input
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.io.dicom_instance import copy_patient_and_study, new_instance

#: Dose Summation Types that can be written: the others need beams, fractions or treatment records
DOSE_SUMMATION_TYPES = ("PLAN",)
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
_NEGATIVE_TOL = 1e-6  # negative dose down to this fraction of the maximum (numerical noise) is clipped


def write_nrrd(image: sitk.Image, path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``image`` as a compressed NRRD, atomically (temporary name, then rename).

    ``inputs``: files the result was computed from; writing over one of them is an error.
    """
    target = Path(path)
    if not target.name.lower().endswith((".nrrd", ".nhdr")):
        raise InputError(f"{target}: an NRRD file name must end with .nrrd")
    refuse_to_overwrite_input(target, list(inputs))
    with atomic_path(target) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return target


def _right_handed(dose_zyx: np.ndarray, image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(array, origin, direction) with direction[:, 2] = row × col, reversing k if needed."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    normal = np.cross(direction[:, 0], direction[:, 1])
    alignment = float(normal @ direction[:, 2])
    if abs(abs(alignment) - 1.0) > 1e-6:
        raise GeometryError("the dose grid's slice axis is not perpendicular to its rows and columns; RTDOSE "
                            "needs an orthogonal grid (resample the dose first)")
    if alignment < 0:
        origin = origin + (dose_zyx.shape[0] - 1) * image.GetSpacing()[2] * direction[:, 2]
        dose_zyx = dose_zyx[::-1]
        direction = np.column_stack([direction[:, 0], direction[:, 1], normal])
    return np.ascontiguousarray(dose_zyx), origin, direction


def _dose_grid_scaling(peak_gy: float, stored_max: int) -> float:
    """The smallest DS-representable scaling s with peak / s ≤ ``stored_max``."""
    if peak_gy <= 0:
        return 1.0
    s = float(f"{peak_gy / stored_max * (1 + 1e-9):.10g}")
    while peak_gy / s > stored_max:  # rounding to 10 digits went down; step up
        s = float(f"{s * (1 + 1e-9):.10g}")
    return s


def rtplan_path(rtdose_path: str | os.PathLike) -> Path:
    """Where :func:`write_rtdose` writes the companion RT Plan of ``rtdose_path``."""
    target = Path(rtdose_path)
    return target.with_name(f"{target.stem}_rtplan{target.suffix or '.dcm'}")


def _companion_plan(source: SeriesMetadata, now: datetime, label: str, description: str) -> Dataset:
    """A minimal RT Plan (A.20: RT General Plan, TREATMENT_DEVICE geometry, no beams) for the administration."""
    plan = new_instance(RT_PLAN_STORAGE, "RTPLAN", now)
    copy_patient_and_study(plan, source)
    plan.SeriesNumber = 901
    plan.SeriesDescription = "Lu-177 administration (LuDoseResponse)"
    plan.FrameOfReferenceUID = source.frame_of_reference_uid
    plan.PositionReferenceIndicator = ""
    plan.RTPlanLabel = label[:16]
    plan.RTPlanName = label[:64]
    plan.RTPlanDescription = description[:1024]
    plan.RTPlanDate, plan.RTPlanTime = plan.InstanceCreationDate, plan.InstanceCreationTime
    plan.RTPlanGeometry = "TREATMENT_DEVICE"
    return plan


def _administration_text(source: SeriesMetadata) -> str:
    parts = ["Radiopharmaceutical therapy with Lu-177; no external beams"]
    if source.activity_mbq is not None:
        parts.append(f"administered activity {source.activity_mbq:.6g} MBq")
    if source.administered_at is not None:
        parts.append(f"at {source.administered_at.isoformat(timespec='minutes')}")
    return ", ".join(parts)


def write_rtdose(dose_gy: sitk.Image, path: str | os.PathLike, *, source: SeriesMetadata,
                 series_description: str = "Lu-177 absorbed dose (LuDoseResponse)",
                 dose_summation_type: str = "PLAN", series_number: int = 900, bits_allocated: int = 32,
                 plan_label: str = "Lu-177 RPT") -> Path:
    """Write an absorbed-dose map (Gy) as DICOM RT Dose referencing ``source``'s study and frame.

    ``source`` is the SPECT (or CT) the dose grid belongs to, as read by ``dicom.read_metadata``.
    The companion RT Plan is written to :func:`rtplan_path` (module docstring). Neither file is
    written over the source, nor into the source's DICOM folder (where it would join the series
    read from there). ``bits_allocated`` 32 (default) or 16. Returns the RT Dose path.
    """
    target = Path(path)
    plan_target = rtplan_path(target)
    source_path = Path(source.path)
    refuse_to_overwrite_input(target, [source_path])
    refuse_to_overwrite_input(plan_target, [source_path])
    if source_path.is_dir() and source_path.resolve() in target.resolve().parents:
        raise InputError(f"output {target} is inside the input DICOM folder {source_path}, where it would be read "
                         "as one more series of that folder; choose another output folder")
    if dose_summation_type not in DOSE_SUMMATION_TYPES:
        raise InputError(f"dose_summation_type {dose_summation_type!r}: only {DOSE_SUMMATION_TYPES} can be written "
                         "(the other types need beams, fractions or treatment records, which a radiopharmaceutical "
                         "therapy does not have)")
    if bits_allocated not in (16, 32):
        raise InputError(f"bits_allocated must be 16 or 32, got {bits_allocated!r}")
    for field_name, tag in (("study_uid", "StudyInstanceUID (0020,000D)"),
                            ("frame_of_reference_uid", "FrameOfReferenceUID (0020,0052)")):
        if getattr(source, field_name) is None:
            raise DicomError(f"{source.path}: {tag} is missing, so an RTDOSE cannot be placed in its study; "
                             "write the dose as NRRD instead")
    if dose_gy.GetDimension() != 3 or dose_gy.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{target}: the dose map must be a 3-D scalar image")
    dose = sitk.GetArrayFromImage(dose_gy).astype(np.float64)
    if not np.all(np.isfinite(dose)):
        raise InputError(f"{target}: the dose map contains NaN or infinite values; it is not written")
    peak = float(dose.max()) if dose.size else 0.0
    if dose.size and float(dose.min()) < -_NEGATIVE_TOL * max(peak, 0.0):
        raise InputError(f"{target}: the dose map has negative values down to {float(dose.min()):g} Gy; "
                         "RTDOSE holds non-negative physical dose only")
    dose = np.clip(dose, 0.0, None)
    dose, origin, direction = _right_handed(dose, dose_gy)
    scaling = _dose_grid_scaling(peak, 2**bits_allocated - 1)
    stored = np.rint(dose / scaling).astype("<u4" if bits_allocated == 32 else "<u2")
    sx, sy, sz = (float(v) for v in dose_gy.GetSpacing())
    nz, ny, nx = dose.shape

    now = datetime.now()
    plan = _companion_plan(source, now, plan_label, _administration_text(source))
    ds = new_instance(RTDoseStorage, "RTDOSE", now)
    copy_patient_and_study(ds, source)
    # RT Series, Frame of Reference
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.FrameOfReferenceUID = source.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Image
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ImageType = ["DERIVED", "SECONDARY", "DOSE"]
    ds.DerivationDescription = f"Absorbed dose computed by LuDoseResponse {__version__} from {source.modality}"
    if source.sop_class_uid and source.sop_instance_uids:
        refs = []
        for uid in source.sop_instance_uids:
            item = Dataset()
            item.ReferencedSOPClassUID = source.sop_class_uid
            item.ReferencedSOPInstanceUID = uid
            refs.append(item)
        ds.SourceImageSequence = DicomSequence(refs)
    # Image Plane
    ds.ImagePositionPatient = [f"{v:.10g}" for v in origin]
    ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1])]
    ds.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]  # row spacing (along j), column spacing (along i)
    ds.SliceThickness = f"{sz:.10g}"
    # Image Pixel and Multi-frame
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_allocated, bits_allocated - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = 0x3004000C  # GridFrameOffsetVector
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = dose_summation_type
    ds.DoseComment = "Lu-177 absorbed dose"
    ds.DoseGridScaling = f"{scaling:.10g}"
    plan_reference = Dataset()
    plan_reference.ReferencedSOPClassUID = plan.SOPClassUID
    plan_reference.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    ds.ReferencedRTPlanSequence = DicomSequence([plan_reference])
    # the same factor as a modality rescale: generic readers (GDCM, so SimpleITK and Slicer's scalar
    # volume loader) then show Gy too; RT readers use DoseGridScaling
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = ds.DoseGridScaling, "0", "US"
    ds.GridFrameOffsetVector = [f"{k * sz:.10g}" for k in range(nz)]
    ds.PixelData = stored.tobytes()

    with atomic_path(plan_target) as tmp:
        plan.save_as(tmp, enforce_file_format=True)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target
