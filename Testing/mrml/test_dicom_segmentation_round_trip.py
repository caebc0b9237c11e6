"""Slicer segmentation → DICOM SEG and RTSTRUCT (our writers) → our readers → the same voxels (issue 13).

The segmentation is made by Slicer's MRML alone: closed surfaces from VTK (a sphere, a torus, whose hole
the RTSTRUCT must carry as a second contour per slice), converted by Slicer's own closed-surface →
binary-labelmap rule on a CT's grid. The CT is a DICOM series (dicom_factory), so the SEG and RTSTRUCT
join its study and frame of reference, and the RTSTRUCT is rasterised back onto it through the manifest's
reference search. Truth: Slicer's labelmap, counted by slicer.util independently of our bridge; the
volumes are also compared with the analytic ones (4/3·π·r³; 2·π²·R·r²), within a stated bound for the
voxelisation of the surface. Both files pass dciodvfy with zero errors.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util
import vtk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from dicom_factory import StudyIds, ct_slices, write_series  # noqa: E402

from LuDoseResponseLib.io import dicom  # noqa: E402
from LuDoseResponseLib.io.rtstruct import read_rtstruct  # noqa: E402
from LuDoseResponseLib.io.rtstruct_reference import ImageReference, find_reference  # noqa: E402
from LuDoseResponseLib.io.rtstruct_write import write_rtstruct  # noqa: E402
from LuDoseResponseLib.io.seg_write import write_seg  # noqa: E402
from LuDoseResponseLib.response.volumetry import read_segmentation  # noqa: E402
from LuDoseResponseMRML.segments import segmentMaskImages  # noqa: E402
from LuDoseResponseMRML.volumes import volumeNodeFromImage  # noqa: E402

SHAPE = (30, 64, 72)                  # z, y, x: a CT of 0.9 × 0.8 mm pixels and 2.5 mm slices
SPHERE = ((-4.0, 3.0, -62.0), 14.0)   # LPS centre (mm), radius (mm)
TORUS = ((-6.0, 2.0, -85.0), 16.0, 6.0)   # LPS centre, ring radius R, tube radius r (axial ring)


def _validate(path) -> list[str]:
    validator = shutil.which("dciodvfy")
    if validator is None:
        if os.environ.get("LUDR_REQUIRE_DCIODVFY"):
            pytest.fail("dciodvfy is not installed: apt-get install dicom3tools (make test does it as root)")
        pytest.skip("dciodvfy (dicom3tools) not installed")
    run = subprocess.run([validator, str(path)], capture_output=True, text=True, timeout=60)
    return [s for s in (run.stdout + run.stderr).splitlines() if s.startswith("Error")]


def _surface_segment(segmentation_node, polydata, name: str) -> None:
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName(),
                              polydata)
    segmentation_node.GetSegmentation().AddSegment(segment)


def _ras(lps):
    return (-lps[0], -lps[1], lps[2])


def _internal_on_ct(node, segment_id: str, ct: sitk.Image) -> np.ndarray:
    """Slicer's own binary labelmap of a segment (slicer.util), placed on the CT grid by its extent."""
    segment = node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(
        slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName())
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(3)])
    lps = np.diag([-1.0, -1.0, 1.0]) @ ras
    assert np.allclose(lps[:, :3], np.diag(ct.GetSpacing())) and np.allclose(lps[:, 3], ct.GetOrigin())
    i0, i1, j0, j1, k0, k1 = labelmap.GetExtent()
    assert min(i0, j0, k0) >= 0 and (i1, j1, k1) < ct.GetSize(), "the segment must lie inside the CT"
    full = np.zeros(ct.GetSize()[::-1], dtype=bool)
    internal = slicer.util.arrayFromSegmentInternalBinaryLabelmap(node, segment_id)
    full[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = internal == segment.GetLabelValue()
    return full


@pytest.fixture
def slicer_case(scene, tmp_path):
    write_series(ct_slices(np.zeros(SHAPE), StudyIds(), origin=(-30.0, -25.0, -100.0)), tmp_path / "ct")
    ct = dicom.read_volume(tmp_path / "ct")
    ct_node = volumeNodeFromImage(scene, ct.image, "CT")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumours")
    node.GetSegmentation().SetSourceRepresentationName(
        slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName())
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*_ras(SPHERE[0]))
    sphere.SetRadius(SPHERE[1])
    sphere.SetThetaResolution(96)
    sphere.SetPhiResolution(96)
    sphere.Update()
    _surface_segment(node, sphere.GetOutput(), "T1")
    torus = vtk.vtkParametricTorus()
    torus.SetRingRadius(TORUS[1])
    torus.SetCrossSectionRadius(TORUS[2])
    source = vtk.vtkParametricFunctionSource()
    source.SetParametricFunction(torus)
    source.SetUResolution(160)
    source.SetVResolution(80)
    moved = vtk.vtkTransformPolyDataFilter()
    transform = vtk.vtkTransform()
    transform.Translate(*_ras(TORUS[0]))
    moved.SetTransform(transform)
    moved.SetInputConnection(source.GetOutputPort())
    normals = vtk.vtkPolyDataNormals()          # a consistently oriented closed surface
    normals.SetInputConnection(moved.GetOutputPort())
    normals.Update()
    _surface_segment(node, normals.GetOutput(), "T2 ring")
    assert node.CreateBinaryLabelmapRepresentation()
    truth = {}
    for name in ("T1", "T2 ring"):
        segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(name)
        truth[name] = _internal_on_ct(node, segment_id, ct.image)
    return ct, node, truth, tmp_path


def test_slicer_segmentation_through_seg_and_rtstruct(slicer_case):
    ct, node, truth, tmp_path = slicer_case
    masks = segmentMaskImages(node)
    voxel_ml = 0.9 * 0.8 * 2.5 / 1000.0
    for name, m in masks.items():      # the bridge's export is Slicer's own labelmap
        assert np.array_equal(sitk.GetArrayViewFromImage(m) != 0, truth[name]), name
    counts = {n: int(t.sum()) for n, t in truth.items()}
    analytic = {"T1": 4 / 3 * math.pi * SPHERE[1] ** 3 / 1000,
                "T2 ring": 2 * math.pi ** 2 * TORUS[1] * TORUS[2] ** 2 / 1000}
    for name, volume_ml in analytic.items():
        # surface voxelisation: within 5 % (about one half-slice of 2.5 mm over the torus tube's 12 mm)
        assert counts[name] * voxel_ml == pytest.approx(volume_ml, rel=0.05), name
    seg_path = write_seg(masks, tmp_path / "out" / "seg.dcm", source=ct.metadata, algorithm_type="MANUAL")
    rs_path = write_rtstruct(masks, tmp_path / "out" / "rs.dcm", source=ct.metadata)
    assert _validate(seg_path) == [] and _validate(rs_path) == []
    reference, _ = find_reference(read_rtstruct(rs_path), [("ct", ImageReference(tmp_path / "ct"))])
    assert reference.series_uid == ct.metadata.series_uid
    for path, ref in ((seg_path, None), (rs_path, reference)):
        back = read_segmentation(path, reference=ref)
        assert back.names == ("T1", "T2 ring")
        for name, mask in masks.items():
            info = back.segment(name)
            layer = back.image if back.n_layers == 1 else sitk.VectorIndexSelectionCast(back.image, info.layer)
            on_ct = sitk.Resample(sitk.Cast(layer == info.label_value, sitk.sitkUInt8), ct.image, sitk.Transform(),
                                  sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
            assert np.array_equal(sitk.GetArrayFromImage(on_ct), sitk.GetArrayFromImage(mask)), (path.name, name)
            assert back.volumes_ml()[name] == pytest.approx(counts[name] * voxel_ml, rel=1e-12)
