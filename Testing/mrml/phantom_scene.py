"""A tiny digital patient as the command line and as a Slicer scene sees it (shared by the MRML tests).

``writeAndRunPhantom`` writes a phantom (``pipeline.phantoms.write_patient``: 2 tumours, 2 cycles of 3
SPECTs in counts as NM DICOM, a CT series, .seg.nrrd tumours and follow-ups) and runs the command line
on it. ``sceneInputs`` loads the same files into a scene: SPECTs and CT by Slicer's own DICOM volume
reader (``vtkSlicerVolumesLogic.AddArchetypeScalarVolume``, GDCM, as the DICOM plugin does) with their
``DICOM.instanceUIDs``, a stand-in DICOM database, and the segments drawn into segmentation nodes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pydicom
import SimpleITK as sitk
import slicer
import vtk

from LuDoseResponseLib.cli import main
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient
from LuDoseResponseLib.response.volumetry import read_segmentation
from LuDoseResponseMRML.dicom import INSTANCE_UIDS_ATTRIBUTE
from LuDoseResponseMRML.dosimetry import FollowUpInput, cycleInputFromNodes
from LuDoseResponseMRML.segments import addSegmentFromMaskImage

HOURS = (24.0, 96.0, 168.0)


class FakeDicomDatabase:
    """What the bridge uses of ctkDICOMDatabase: SOP Instance UID -> file."""

    def __init__(self):
        self.files: dict[str, str] = {}

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


def writeAndRunPhantom(root: Path, patient: str, seed: int):
    p = make_patient(patient, seed=seed, n_tumours=2, shape_zyx=(24, 32, 32), n_cycles=2, scan_hours=HOURS,
                     volume_range_ml=(8.0, 40.0))
    manifest = write_patient(p, root / patient)
    assert main(["dosimetry", str(manifest), "--out", str(root / f"cli_{patient}")]) == 0
    return p, manifest, root / f"cli_{patient}"


def volumesLogicFor(scene):
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLScene(scene)
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Colors", colorLogic)
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLApplicationLogic(appLogic)
    logic.SetMRMLScene(scene)
    return logic, (colorLogic, appLogic)


def loadDicomLikeSlicer(volumesLogic, database: FakeDicomDatabase, files: list[Path], name: str):
    """Load a series as Slicer's DICOMScalarVolumePlugin does, with its DICOM.instanceUIDs attribute."""
    names = vtk.vtkStringArray()
    for f in files:
        names.InsertNextValue(str(f))
    node = volumesLogic.AddArchetypeScalarVolume(str(files[0]), name, 0, names)
    assert node is not None, f"Slicer's reader could not load {files[0]}"
    uids = []
    for f in files:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        database.files[uid] = str(f)
        uids.append(uid)
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(uids))
    return node


def segmentationNodeFromFile(scene, path: Path, name: str):
    """A segmentation node with the file's segments drawn in it (one segment per mask, on its grid)."""
    seg = read_segmentation(path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    for segment in seg.names:
        info = seg.segment(segment)
        addSegmentFromMaskImage(node, sitk.Cast(seg.image == info.label_value, sitk.sitkUInt8), segment)
    return node


def sceneInputs(scene, p, manifest: Path):
    """The phantom's files as nodes, and CycleInputs prefilled from DICOM (as the panel does)."""
    root = manifest.parent
    volumesLogic, keep = volumesLogicFor(scene)
    database = FakeDicomDatabase()
    ct = loadDicomLikeSlicer(volumesLogic, database, sorted((root / "ct").glob("*.dcm")), "CT")
    cycles = []
    for k in range(len(p.cycle_dates)):
        spects = [loadDicomLikeSlicer(volumesLogic, database, [root / f"c{k + 1}" / f"spect_{h:g}h.dcm"],
                             f"SPECT c{k + 1} {h:g}h")
                  for h in HOURS]
        seg = segmentationNodeFromFile(scene, root / f"c{k + 1}" / "tumours.seg.nrrd", f"tumours c{k + 1}")
        cycles.append(cycleInputFromNodes(k + 1, spects, seg, ctVolumeNode=ct,
                                          calibrationCpsPerMbq=p.calibration_cps_per_mbq, dicomDatabase=database))
    followUps = [FollowUpInput(day, segmentationNodeFromFile(scene, root / "fu" / f"ct_{i}.seg.nrrd", f"follow-up {i}"))
                 for i, day in enumerate(p.followup_dates)]
    prefilled = [c.activityMBq for c in cycles]
    for cycle, activity in zip(cycles, p.activities_mbq, strict=True):
        cycle.activityMBq = round(activity, 1)  # the user types the manifest's value (write_patient rounds it)
    return cycles, followUps, SimpleNamespace(logics=keep, prefilled=prefilled, database=database)
