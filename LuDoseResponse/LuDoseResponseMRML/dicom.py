"""DICOM metadata of a loaded volume node, through an injected DICOM database.

Slicer's DICOM plugins store the SOP Instance UIDs of a loaded series in the node attribute
``DICOM.instanceUIDs`` (space-separated); other loaders leave the Series Instance UID on the
subject-hierarchy item (``GetItemUID(item, "DICOM")``). The database object is passed in (in the
application ``slicer.dicomDatabase``; in tests any object with ``fileForInstance(uid)`` and, for the
series fallback, ``filesForSeries(uid)``), never taken from a global.

The database's ``fileValue``/``instanceValue`` return top-level tags only; the times and the
activity sit in nested sequences (RadiopharmaceuticalInformationSequence, RotationInformationSequence,
...). So the files' headers are read with pydicom by the library (``io.dicom``: ``dcmread_bounded``,
``series_layout``, ``build_metadata``), which also records where each value came from.
"""

from __future__ import annotations

import math
from pathlib import Path

import slicer

from LuDoseResponseLib.errors import DicomError, InputError
from LuDoseResponseLib.io.dicom.geometry import series_layout
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata, build_metadata, value_mapping
from LuDoseResponseLib.io.dicom.read import dcmread_bounded
from LuDoseResponseLib.io.dicom.tags import get_float

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def seriesUidOfNode(volumeNode) -> str | None:
    """The DICOM Series Instance UID on the node's subject-hierarchy item, if any."""
    scene = volumeNode.GetScene()
    if scene is None:
        return None
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is None:
        return None
    item = shNode.GetItemByDataNode(volumeNode)
    uid = shNode.GetItemUID(item, "DICOM") if item else ""
    return uid or None


def hasDicomSource(volumeNode) -> bool:
    """True when the node carries its DICOM instance UIDs or a DICOM series UID."""
    return bool(volumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE)) or seriesUidOfNode(volumeNode) is not None


def dicomFilesOfNode(volumeNode, dicomDatabase) -> list[Path]:
    """The DICOM files the node was loaded from (InputError when it was not loaded from DICOM)."""
    name = volumeNode.GetName()
    if dicomDatabase is None:
        raise InputError(f"volume '{name}': no DICOM database is available; give its times and activity by hand")
    uids = (volumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    files: list[str] = []
    if uids:
        files = [dicomDatabase.fileForInstance(uid) for uid in uids]
        missing = [uid for uid, f in zip(uids, files, strict=True) if not f]
        if missing:
            raise DicomError(f"volume '{name}': the DICOM database has no file for instance(s) {missing[:3]}; "
                             "re-import the series in the DICOM module")
    else:
        seriesUid = seriesUidOfNode(volumeNode)
        if seriesUid is not None and hasattr(dicomDatabase, "filesForSeries"):
            files = list(dicomDatabase.filesForSeries(seriesUid))
    if not files:
        raise InputError(f"volume '{name}' was not loaded from DICOM (no {INSTANCE_UIDS_ATTRIBUTE} attribute and "
                         "no DICOM series UID); give its acquisition time, duration and units by hand")
    paths = [Path(f) for f in dict.fromkeys(files)]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DicomError(f"volume '{name}': DICOM file(s) {absent[:3]} listed by the database do not exist; "
                         "re-import the series in the DICOM module")
    return paths


def _headers(volumeNode, files: list[Path]):
    try:
        return [dcmread_bounded(f, headers_only=True) for f in files]
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files: name the node
        raise DicomError(f"volume '{volumeNode.GetName()}': cannot read the DICOM headers of {files[0].parent} "
                         f"({type(exc).__name__}: {exc})") from exc


def voxelValueProblem(volumeNode, dicomDatabase) -> str | None:
    """Why the node's voxels are not the series' quantitative values, or None when they are.

    Slicer's DICOM reader applies RescaleSlope/RescaleIntercept; the library maps stored values by the
    DICOM unit rules (``io.dicom.metadata.value_mapping``), which prefer a real-world value mapping in
    Bq/mL. When the two mappings differ (e.g. a Hermes SPECT whose Bq/mL are only in
    RealWorldValueMappingSequence), the voxels in the scene are not what the header's units say.
    """
    files = dicomFilesOfNode(volumeNode, dicomDatabase)
    ds = _headers(volumeNode, files[:1])[0]
    mapping = value_mapping(ds, str(files[0]))
    slope = get_float(ds, "RescaleSlope")
    intercept = get_float(ds, "RescaleIntercept")
    slope, intercept = (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)
    if mapping.problem is not None:
        return mapping.problem
    if not (math.isclose(mapping.slope, slope, rel_tol=1e-6)
            and math.isclose(mapping.intercept, intercept, rel_tol=1e-6, abs_tol=1e-9)):
        return (f"volume '{volumeNode.GetName()}': its {mapping.units or 'values'} come from {mapping.source} "
                f"(slope {mapping.slope:g}, intercept {mapping.intercept:g}), but Slicer's DICOM reader applied "
                f"RescaleSlope/RescaleIntercept (slope {slope:g}, intercept {intercept:g}), so the voxels in the "
                "scene are not those values; convert the series to a Bq/mL NRRD and load that, giving its time "
                "and units by hand")
    return None


def dicomMetadataForNode(volumeNode, dicomDatabase) -> SeriesMetadata:
    """Acquisition time and duration, administration time and activity, units, identifiers and grid
    of the series a node was loaded from (``LuDoseResponseLib.io.dicom.SeriesMetadata``, with the
    tag each value came from in ``sources`` and the reader's remarks in ``warnings``)."""
    files = dicomFilesOfNode(volumeNode, dicomDatabase)
    headers = _headers(volumeNode, files)
    layout = series_layout(headers, files)
    return build_metadata(headers, files, layout)
