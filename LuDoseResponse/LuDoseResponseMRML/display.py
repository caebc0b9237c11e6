"""Dose maps in MRML: a dose colour table, window/level from 0 Gy, Gy units and a colour legend.

The colour table is built in code (a black -> purple -> red -> yellow ramp), so it exists in
the application and headless alike; file-based tables such as Inferno exist only in the app.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer

from LuDoseResponseLib.errors import InputError
from LuDoseResponseMRML.tables import ROLE_ATTRIBUTE, findNodeByRole
from LuDoseResponseMRML.volumes import volumeNodeFromImage

DOSE_COLOR_TABLE_ROLE = "DoseColorTable"
DOSE_COLOR_TABLE_NAME = "LuDoseResponse dose"
DOSE_COLOR_COUNT = 256

#: (position in [0, 1], red, green, blue): the anchors of the dose ramp, dark for low dose.
DOSE_COLOR_ANCHORS = (
    (0.00, 0.00, 0.00, 0.02),
    (0.15, 0.17, 0.04, 0.37),
    (0.35, 0.47, 0.10, 0.43),
    (0.55, 0.79, 0.23, 0.30),
    (0.75, 0.97, 0.51, 0.10),
    (0.90, 0.98, 0.78, 0.22),
    (1.00, 0.99, 0.99, 0.74),
)


def doseColorTableNode(scene):
    """The extension's dose colour table in ``scene``, created on first use."""
    node = findNodeByRole(scene, "vtkMRMLColorTableNode", DOSE_COLOR_TABLE_ROLE)
    if node is not None:
        return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", DOSE_COLOR_TABLE_NAME)
    node.SetAttribute(ROLE_ATTRIBUTE, DOSE_COLOR_TABLE_ROLE)
    node.SetTypeToUser()
    node.SetNumberOfColors(DOSE_COLOR_COUNT)
    anchors = np.array(DOSE_COLOR_ANCHORS)
    positions = np.linspace(0.0, 1.0, DOSE_COLOR_COUNT)
    rgb = np.stack([np.interp(positions, anchors[:, 0], anchors[:, c]) for c in (1, 2, 3)], axis=1)
    for index, (r, g, b) in enumerate(rgb):
        node.SetColor(index, f"{index}", float(r), float(g), float(b), 1.0)
    return node


def _maximumOf(volumeNode) -> float:
    image_data = volumeNode.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"dose volume '{volumeNode.GetName()}' has no voxels")
    return float(image_data.GetScalarRange()[1])


def showAsDose(volumeNode, *, windowMaxGy: float | None = None, lowerThresholdGy: float | None = None,
               colorLegend: bool = True, quantity: str = "Absorbed dose", unit: str = "Gy"):
    """Display ``volumeNode`` as an absorbed-dose map and return its display node.

    ``quantity`` and ``unit`` (UCUM) name what the voxels hold: a dose-rate map is shown with
    ``quantity="Dose rate", unit="Gy/h"`` (the window and threshold are then in Gy/h).

    :param windowMaxGy: top of the colour window (Gy); the map's maximum when None. The window
        always starts at 0 Gy so equal colours mean equal doses across maps.
    :param lowerThresholdGy: voxels below it are not drawn (useful for an overlay on CT); no
        threshold when None.
    :param colorLegend: add a colour legend titled "Absorbed dose [Gy]" (needs the legend node
        class, which the Colors module registers in the application).
    """
    scene = volumeNode.GetScene()
    if scene is None:
        raise InputError(f"dose volume '{volumeNode.GetName()}' is not in a scene")
    top_gy = _maximumOf(volumeNode) if windowMaxGy is None else float(windowMaxGy)
    if not np.isfinite(top_gy):
        raise InputError(f"dose volume '{volumeNode.GetName()}': window maximum {top_gy} is not finite")
    if top_gy <= 0.0:
        top_gy = 1.0  # an all-zero map: show it on a 0-1 Gy window rather than a degenerate one
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    was_modifying = display.StartModify()
    display.SetAndObserveColorNodeID(doseColorTableNode(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, top_gy)
    if lowerThresholdGy is None:
        display.SetApplyThreshold(False)
    else:
        display.SetAutoThreshold(False)
        display.SetLowerThreshold(float(lowerThresholdGy))
        display.SetUpperThreshold(max(_maximumOf(volumeNode), top_gy))
        display.SetApplyThreshold(True)
    display.EndModify(was_modifying)

    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning(unit, "UCUM", unit)
    volumeNode.SetVoxelValueUnits(units)

    if colorLegend and scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(volumeNode)
        if legend is None:
            legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(volumeNode)
        legend.SetTitleText(f"{quantity} [{unit}]")
    return display


def doseVolumeNodeFromImage(scene, doseImage: sitk.Image, name: str = "Absorbed dose", **displayOptions):
    """A new float32 volume node holding a dose map (Gy, LPS image), displayed as dose.

    ``displayOptions`` go to ``showAsDose``.
    """
    if doseImage.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        doseImage = sitk.Cast(doseImage, sitk.sitkFloat32)
    node = volumeNodeFromImage(scene, doseImage, name)
    showAsDose(node, **displayOptions)
    return node
