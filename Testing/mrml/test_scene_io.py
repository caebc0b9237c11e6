"""What the bridge puts in a scene survives saving and loading: a .mrb bundle, and a .mrml
scene with every node's data written by its storage node. The reloaded scene is compared with
the data the nodes were made from (numpy arrays, masks, the analysis dict), not with itself.

MRML's table storage writes numbers as text with 6 significant digits, so reloaded table cells
equal the original values rounded to 6 significant digits; the analysis text node keeps the
full-precision analysis.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util
import vtk

from LuDoseResponseMRML.display import doseVolumeNodeFromImage
from LuDoseResponseMRML.results import analysisTableNodes, analysisTextNode, tcpChartNode
from LuDoseResponseMRML.segments import addSegmentFromMaskImage, segmentMaskImage
from LuDoseResponseMRML.tables import ROLE_ATTRIBUTE
from LuDoseResponseMRML.volumes import imageFromVolumeNode, volumeNodeFromImage


@pytest.fixture
def filled_scene(scene, analysis_dict, observed_tumours):
    rng = np.random.default_rng(5)
    dose_array = (rng.random((8, 10, 12)) * 140.0).astype(np.float32)
    dose = sitk.GetImageFromArray(dose_array)
    dose.SetSpacing((4.8, 4.8, 4.8))
    dose.SetOrigin((-30.0, -20.0, 50.0))
    dose.SetDirection(sitk.VersorTransform((0.0, 0.3, 1.0), 0.2).GetMatrix())
    doseVolumeNodeFromImage(scene, dose, "Dose", lowerThresholdGy=1.5)

    ct = sitk.Image(24, 20, 16, sitk.sitkInt16)
    ct.SetSpacing((2.0, 2.0, 3.0))
    ct.SetOrigin((-25.0, -20.0, 40.0))
    ct_node = volumeNodeFromImage(scene, ct, "CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumours")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    masks = {}
    for name, box in (("P001.T1", np.s_[3:9, 4:10, 5:12]), ("P001.T2", np.s_[6:12, 8:15, 9:18])):
        array = np.zeros((16, 20, 24), np.uint8)
        array[box] = 1
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(ct)
        addSegmentFromMaskImage(segmentation, image, name)
        masks[name] = array
    analysisTableNodes(scene, analysis_dict)
    analysisTextNode(scene, analysis_dict)
    tcpChartNode(scene, analysis_dict, observed_tumours)
    return {"dose": dose, "dose_array": dose_array, "masks": masks}


def _byName(scene, className, name):
    for i in range(scene.GetNumberOfNodesByClass(className)):
        node = scene.GetNthNodeByClass(i, className)
        if node.GetName() == name:
            return node
    raise AssertionError(f"no {className} named {name!r} in the reloaded scene")


def _sixDigits(values):
    return [float(f"{v:.6g}") for v in values]


def _checkReloaded(scene, filled, analysis_dict):
    dose_node = _byName(scene, "vtkMRMLScalarVolumeNode", "Dose")
    image = imageFromVolumeNode(dose_node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), filled["dose_array"])
    np.testing.assert_allclose(image.GetOrigin(), filled["dose"].GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), filled["dose"].GetDirection(), atol=1e-6)
    display = dose_node.GetDisplayNode()
    assert display.GetColorNode().GetAttribute(ROLE_ATTRIBUTE) == "DoseColorTable"
    assert display.GetColorNode().GetNumberOfColors() == 256
    assert display.GetWindowLevelMax() == pytest.approx(float(filled["dose_array"].max()), rel=1e-6)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(1.5)

    segmentation = _byName(scene, "vtkMRMLSegmentationNode", "Tumours")
    for name, array in filled["masks"].items():
        np.testing.assert_array_equal(sitk.GetArrayFromImage(segmentMaskImage(segmentation, name)), array)

    tcp_table = _byName(scene, "vtkMRMLTableNode", "LuDoseResponse TCP")
    assert tcp_table.GetAttribute(ROLE_ATTRIBUTE) == "Table.tcp"
    slope = tcp_table.GetTable().GetColumnByName("Slope")
    assert float(slope.GetValue(1)) == pytest.approx(
        _sixDigits([analysis_dict["tcp"]["per_grade"]["G2"]["slope_per_gy"]])[0], rel=1e-15)
    assert tcp_table.GetColumnUnitLabel("Slope") == "1/Gy"
    se = tcp_table.GetTable().GetColumnByName("Dose at TCP 0.9 SE")
    assert math.isnan(float(se.GetValue(0)))  # a missing value stays missing

    chart = _byName(scene, "vtkMRMLPlotChartNode", "Tumour control probability")
    assert chart.GetNumberOfPlotSeriesNodes() == 8
    curve = _byName(scene, "vtkMRMLPlotSeriesNode", "G2 CI high")
    column = curve.GetTableNode().GetTable().GetColumnByName(curve.GetYColumnName())
    reloaded = [float(column.GetValue(r)) for r in range(column.GetNumberOfTuples())]
    np.testing.assert_allclose(reloaded, _sixDigits(analysis_dict["tcp"]["curves"]["G2"]["ci_high"]), rtol=1e-15)
    text = _byName(scene, "vtkMRMLTextNode", "LuDoseResponse analysis.json")
    assert json.loads(text.GetText()) == analysis_dict


def test_mrb_round_trip(scene, scene_factory, filled_scene, analysis_dict, tmp_path):
    bundle = tmp_path / "cohort.mrb"
    assert scene.WriteToMRB(str(bundle))
    reloaded = scene_factory()
    assert reloaded.ReadFromMRB(str(bundle))
    _checkReloaded(reloaded, filled_scene, analysis_dict)


def test_mrml_with_node_files_round_trip(scene, scene_factory, filled_scene, analysis_dict, tmp_path):
    folder = tmp_path / "scene"
    folder.mkdir()
    storable = [scene.GetNthNodeByClass(i, "vtkMRMLStorableNode")
                for i in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode"))]
    for node in storable:
        if node.IsA("vtkMRMLColorNode") and node.GetAttribute(ROLE_ATTRIBUTE) is None:
            continue  # the default colour tables the colour logic made are not data
        storage = node.GetStorageNode()
        if storage is None:
            storage = node.CreateDefaultStorageNode()
            scene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
            storage.UnRegister(None)
        extension = storage.GetDefaultWriteFileExtension()
        storage.SetFileName(str(folder / f"{node.GetID()}.{extension}"))
        assert storage.WriteData(node), node.GetName()
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    reloaded = scene_factory()
    reloaded.SetURL(str(folder / "scene.mrml"))
    assert reloaded.Connect()
    _checkReloaded(reloaded, filled_scene, analysis_dict)


def test_colour_legend_and_units_survive(scene, scene_factory, filled_scene, tmp_path):
    bundle = tmp_path / "legend.mrb"
    assert scene.WriteToMRB(str(bundle))
    reloaded = scene_factory()
    assert reloaded.ReadFromMRB(str(bundle))
    dose_node = _byName(reloaded, "vtkMRMLScalarVolumeNode", "Dose")
    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(dose_node)
    assert legend is not None and legend.GetTitleText() == "Absorbed dose [Gy]"
    assert dose_node.GetVoxelValueUnits().GetCodeValue() == "Gy"
    matrix = vtk.vtkMatrix4x4()
    dose_node.GetIJKToRASMatrix(matrix)
    lps = np.array(filled_scene["dose"].TransformIndexToPhysicalPoint((3, 4, 5)))
    ras = slicer.util.arrayFromVTKMatrix(matrix) @ np.array([3, 4, 5, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1.0, -1.0, 1.0]), atol=1e-4)
