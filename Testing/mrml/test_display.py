"""Dose maps: colour table, window/level from 0 Gy to the maximum, Gy units, threshold, legend."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util

from LuDoseResponseMRML.display import DOSE_COLOR_COUNT, doseVolumeNodeFromImage, showAsDose


def _doseImage(seed=0, scale=87.5):
    rng = np.random.default_rng(seed)
    array = (rng.random((6, 8, 10)) * scale).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((4.8, 4.8, 4.8))
    return image, array


def _colorTableNodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode"))]


def test_dose_volume_display(scene):
    image, array = _doseImage()
    node = doseVolumeNodeFromImage(scene, image, "Dose cycle 1")
    display = node.GetDisplayNode()
    color = display.GetColorNode()
    assert color.GetName() == "LuDoseResponse dose"
    assert color.GetNumberOfColors() == DOSE_COLOR_COUNT
    low, high = [0.0] * 4, [0.0] * 4
    color.GetColor(0, low)
    color.GetColor(DOSE_COLOR_COUNT - 1, high)
    assert sum(low[:3]) < 0.1 < 2.5 < sum(high[:3])  # dark at 0 Gy, bright at the top
    assert not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMin() == pytest.approx(0.0)
    assert display.GetWindowLevelMax() == pytest.approx(float(array.max()), rel=1e-6)
    assert not display.GetApplyThreshold()
    assert node.GetVoxelValueUnits().GetCodeValue() == "Gy"
    assert node.GetVoxelValueUnits().GetCodingSchemeDesignator() == "UCUM"
    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(node)
    assert legend is not None and legend.GetTitleText() == "Absorbed dose [Gy]"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)


def test_second_map_reuses_colour_table_and_options(scene):
    first, _ = _doseImage(0)
    second, array = _doseImage(1, scale=20.0)
    doseVolumeNodeFromImage(scene, first, "a")
    n_tables = len(_colorTableNodes(scene))
    node = doseVolumeNodeFromImage(scene, second, "b", windowMaxGy=150.0, lowerThresholdGy=2.0)
    assert len(_colorTableNodes(scene)) == n_tables
    display = node.GetDisplayNode()
    assert display.GetWindowLevelMax() == pytest.approx(150.0)
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(2.0)
    assert display.GetUpperThreshold() >= float(array.max())
    showAsDose(node)  # again: one legend only
    legends = scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode")
    showAsDose(node)
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode") == legends


def test_integer_dose_becomes_float_and_zero_map_gets_a_window(scene):
    zeros = sitk.Image(4, 4, 4, sitk.sitkUInt16)
    node = doseVolumeNodeFromImage(scene, zeros, "zero dose")
    assert node.GetImageData().GetScalarTypeAsString() == "float"
    assert node.GetDisplayNode().GetWindowLevelMax() == pytest.approx(1.0)
