"""The parts every DICOM object the project writes shares (RTDOSE, RT Plan, SEG, RTSTRUCT).

A new SOP instance (SOP Common, General Series and General Equipment modules: PS3.3 C.12.1, C.7.3.1,
C.7.5.1) in a new series, and the Patient and General Study modules copied from the image the object
belongs to (C.7.1.1, C.7.2.1), so that viewers file it with that study.
"""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import DicomError
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata


def require_study_references(source: SeriesMetadata, what: str) -> None:
    """The source must carry the study and frame-of-reference UIDs a derived object refers to."""
    for field_name, tag in (("study_uid", "StudyInstanceUID (0020,000D)"),
                            ("frame_of_reference_uid", "FrameOfReferenceUID (0020,0052)")):
        if getattr(source, field_name) is None:
            raise DicomError(f"{source.path}: {tag} is missing, so {what} cannot be placed in its study")


def copy_patient_and_study(ds: Dataset, source: SeriesMetadata) -> None:
    """Patient and General Study modules from the source, so that the object joins its study."""
    ds.PatientName = source.patient_name or ""
    ds.PatientID = source.patient_id or ""
    ds.PatientBirthDate = source.patient_birth_date or ""
    ds.PatientSex = source.patient_sex or ""
    ds.StudyInstanceUID = source.study_uid
    ds.StudyDate = source.study_date or ""
    ds.StudyTime = source.study_time or ""
    ds.StudyID = source.study_id or ""
    ds.AccessionNumber = source.accession_number or ""
    ds.ReferringPhysicianName = ""
    if source.study_description:
        ds.StudyDescription = source.study_description


def new_instance(sop_class_uid: str, modality: str, now: datetime) -> Dataset:
    """A new instance of ``sop_class_uid`` in a new series of ``modality``, made by this software at ``now``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.OperatorsName = ""
    ds.Manufacturer, ds.ManufacturerModelName = "LuDoseResponse", "LuDoseResponseLib"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "0", __version__
    ds.InstanceNumber = 1
    return ds
