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

from pathlib import Path

import slicer

from LuDoseResponseLib.errors import DicomError, InputError
from LuDoseResponseLib.io.dicom.geometry import series_layout
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata, build_metadata
from LuDoseResponseLib.io.dicom.read import dcmread_bounded

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


def dicomMetadataForNode(volumeNode, dicomDatabase) -> SeriesMetadata:
    """Acquisition time and duration, administration time and activity, units, identifiers and grid
    of the series a node was loaded from (``LuDoseResponseLib.io.dicom.SeriesMetadata``, with the
    tag each value came from in ``sources`` and the reader's remarks in ``warnings``)."""
    files = dicomFilesOfNode(volumeNode, dicomDatabase)
    try:
        headers = [dcmread_bounded(f, headers_only=True) for f in files]
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files: name the node
        raise DicomError(f"volume '{volumeNode.GetName()}': cannot read the DICOM headers of {files[0].parent} "
                         f"({type(exc).__name__}: {exc})") from exc
    layout = series_layout(headers, files)
    return build_metadata(headers, files, layout)
