"""DICOM metadata of loaded nodes through an injected database: instance UIDs, the subject-hierarchy series
fallback, nested sequences, and the refusal of voxels Slicer's reader did not map as the header says.

References: the phantom's specification (``make_patient``: administration, activity, scan times) and
values written into the headers here with pydicom.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import pydicom
import pytest
from phantom_scene import FakeDicomDatabase, loadDicomLikeSlicer, volumesLogicFor
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from LuDoseResponseLib.errors import DicomError, InputError
from LuDoseResponseMRML.dicom import dicomMetadataForNode, voxelValueProblem
from LuDoseResponseMRML.dosimetry import spectInputFromNode


class SeriesDatabase(FakeDicomDatabase):
    """A database that also answers by series (for nodes that carry only the series UID)."""

    def __init__(self, series: dict[str, list[str]]):
        super().__init__()
        self.series = series

    def filesForSeries(self, uid: str) -> list[str]:
        return self.series.get(uid, [])


def test_ct_series_and_nm_sequences(phantoms, scene):
    p, manifest, _ = phantoms["P07"]
    logic, keep = volumesLogicFor(scene)
    database = FakeDicomDatabase()
    ct_files = sorted((manifest.parent / "ct").glob("*.dcm"))
    ct = loadDicomLikeSlicer(logic, database, ct_files, "CT")
    meta = dicomMetadataForNode(ct, database)
    assert meta.modality == "CT" and meta.n_files == len(ct_files) and meta.size == (32, 32, 24)
    assert voxelValueProblem(ct, database) is None
    spect = loadDicomLikeSlicer(logic, database, [manifest.parent / "c2" / "spect_96h.dcm"], "NM")
    meta = dicomMetadataForNode(spect, database)
    assert meta.administered_at == p.cycle_dates[1]                       # RadiopharmaceuticalInformationSequence
    assert meta.activity_mbq == pytest.approx(p.activities_mbq[1], rel=1e-9)
    assert meta.acquired_at == p.cycle_dates[1] + timedelta(hours=96)
    assert meta.duration_s == pytest.approx(p.duration_s, rel=1e-3)     # RotationInformationSequence
    assert "RadiopharmaceuticalInformationSequence" in meta.sources["activity_mbq"]
    del keep


def test_series_uid_on_the_subject_hierarchy(phantoms, scene):
    """Plugins that keep only the Series Instance UID on the subject-hierarchy item are found by series."""
    import slicer

    p, manifest, _ = phantoms["P07"]
    logic, keep = volumesLogicFor(scene)
    path = manifest.parent / "c1" / "spect_24h.dcm"
    node = loadDicomLikeSlicer(logic, FakeDicomDatabase(), [path], "NM")
    node.RemoveAttribute("DICOM.instanceUIDs")
    series = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = shNode.GetItemByDataNode(node) or shNode.CreateItem(shNode.GetSceneItemID(), node)
    shNode.SetItemUID(item, "DICOM", series)
    spect = spectInputFromNode(node, SeriesDatabase({series: [str(path)]}))
    assert spect.acquiredAt == p.cycle_dates[0] + timedelta(hours=24) and spect.units == "counts"
    with pytest.raises(InputError, match="not loaded from DICOM"):
        dicomMetadataForNode(node, SeriesDatabase({}))
    del keep


def test_real_world_value_mapping_that_slicer_does_not_apply(phantoms, scene, tmp_path):
    """An NM whose Bq/mL are only in RealWorldValueMappingSequence (slope 0.25): Slicer's reader gives the
    stored values, so taking its voxels as Bq/mL would be 4x wrong; the bridge refuses, naming the node."""
    _, manifest, _ = phantoms["P07"]
    path = tmp_path / "rwvm.dcm"
    shutil.copy(manifest.parent / "c1" / "spect_24h.dcm", path)
    ds = pydicom.dcmread(path)
    del ds.Units
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item = Dataset()
    item.MeasurementUnitsCodeSequence = DicomSequence([unit])
    item.RealWorldValueSlope, item.RealWorldValueIntercept = 0.25, 0.0
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = 0, 65535
    ds.RealWorldValueMappingSequence = DicomSequence([item])
    ds.save_as(path)
    logic, keep = volumesLogicFor(scene)
    database = FakeDicomDatabase()
    node = loadDicomLikeSlicer(logic, database, [path], "Hermes-like NM")
    problem = voxelValueProblem(node, database)
    assert problem is not None and "Hermes-like NM" in problem and "slope 0.25" in problem
    with pytest.raises(InputError, match="not those values"):
        spectInputFromNode(node, database)
    del keep


def test_database_problems_are_named(phantoms, scene, tmp_path):
    _, manifest, _ = phantoms["P07"]
    logic, keep = volumesLogicFor(scene)
    path = tmp_path / "moved.dcm"
    shutil.copy(manifest.parent / "c1" / "spect_24h.dcm", path)
    database = FakeDicomDatabase()
    node = loadDicomLikeSlicer(logic, database, [path], "NM")
    with pytest.raises(InputError, match="no DICOM database"):
        dicomMetadataForNode(node, None)
    path.unlink()
    with pytest.raises(DicomError, match="do not exist; re-import"):
        dicomMetadataForNode(node, database)
    with pytest.raises(DicomError, match="no file for instance"):
        dicomMetadataForNode(node, FakeDicomDatabase())
    del keep
