"""Segmentation node -> one binary mask per segment, as SimpleITK images (LPS), keyed by name.

Segments are exported one at a time, so overlapping tumours keep their own voxels (a merged
multi-label export would give shared voxels to one segment only). Two grids are offered:

- the segmentation's own grid (its reference image geometry, usually the CT it was drawn on):
  the masks are the drawn voxels, use them for volumes;
- a reference volume's grid (e.g. a SPECT): nearest-neighbour resampling of the drawn mask on
  the reference voxel centres. On a coarse grid small tumours gain or lose volume, so compute
  volumes on the own grid (see slicer-notes, pitfall 8).

A tumour is joined across scans by its segment name, so names must be unique.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import SimpleITK as sitk
import slicer
import vtk

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseMRML.volumes import imageFromVolumeNode, requireNoParentTransform, volumeNodeFromImage


def _sceneOf(segmentationNode):
    scene = segmentationNode.GetScene()
    if scene is None:
        raise InputError(f"segmentation '{segmentationNode.GetName()}' is not in a scene")
    return scene


def _nodeIds(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _removeNodesAddedSince(scene, before: set[str]) -> None:
    """Remove the helper nodes (label map, its display node, colour table) a call added."""
    added = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    for node_id in added:
        node = scene.GetNodeByID(node_id)
        if node_id not in before and node is not None:
            scene.RemoveNode(node)


def segmentNames(segmentationNode) -> list[str]:
    """Segment names in the segmentation's order; InputError if a name is empty or repeated."""
    segmentation = segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    empty = [i for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise InputError(f"segmentation '{segmentationNode.GetName()}': segment number(s) "
                         f"{[i + 1 for i in empty]} have no name; name every tumour segment")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"segmentation '{segmentationNode.GetName()}': segment name(s) {repeated} are used more "
                         "than once; tumours are joined across scans by name, so rename the duplicates")
    return names


def _segmentId(segmentationNode, segmentName: str) -> str:
    segment_id = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(segmentName)
    if not segment_id:
        raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segment named '{segmentName}'; "
                         f"it has {segmentNames(segmentationNode)}")
    return segment_id


def _hasOwnGeometry(segmentationNode) -> bool:
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    return bool(segmentationNode.GetSegmentation().GetConversionParameter(parameter))


def segmentMaskImage(segmentationNode, segmentName: str, referenceVolumeNode=None) -> sitk.Image:
    """The mask (uint8, 1 inside) of one segment, on the segmentation's own grid or, when
    ``referenceVolumeNode`` is given, on that volume's grid.

    A segmentation under a transform is accepted with a reference volume (the export applies
    the transform) and refused without one. A transformed reference volume is refused.
    """
    scene = _sceneOf(segmentationNode)
    segment_id = _segmentId(segmentationNode, segmentName)
    if referenceVolumeNode is None:
        requireNoParentTransform(segmentationNode, f"segmentation '{segmentationNode.GetName()}'")
        if not _hasOwnGeometry(segmentationNode):
            raise GeometryError(f"segmentation '{segmentationNode.GetName()}' has no reference geometry; "
                                "pass the volume it was drawn on as the reference volume")
    else:
        requireNoParentTransform(referenceVolumeNode)
        if referenceVolumeNode.GetImageData() is None:
            raise InputError(f"reference volume '{referenceVolumeNode.GetName()}' has no voxels")

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    before = _nodeIds(scene)
    try:
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{segmentName} (export)")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        exported = logic.ExportSegmentsToLabelmapNode(segmentationNode, ids, labelmap, referenceVolumeNode,
                                                      slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not exported or labelmap.GetImageData() is None:
            raise GeometryError(f"segment '{segmentName}' of '{segmentationNode.GetName()}' could not be exported "
                                "as a binary label map; check that it has a binary labelmap or closed surface")
        labels = imageFromVolumeNode(labelmap)
    finally:
        _removeNodesAddedSince(scene, before)
    return sitk.Cast(labels > 0, sitk.sitkUInt8)


def iterSegmentMaskImages(segmentationNode, referenceVolumeNode=None,
                          segmentNamesToExport: Iterable[str] | None = None) -> Iterator[tuple[str, sitk.Image]]:
    """Yield ``(name, mask)`` one segment at a time (one mask in memory at a time)."""
    names = segmentNames(segmentationNode) if segmentNamesToExport is None else list(segmentNamesToExport)
    for name in names:
        yield name, segmentMaskImage(segmentationNode, name, referenceVolumeNode)


def segmentMaskImages(segmentationNode, referenceVolumeNode=None,
                      segmentNamesToExport: Sequence[str] | None = None) -> dict[str, sitk.Image]:
    """``{segment name: mask}`` for every segment (or the named ones); see ``segmentMaskImage``."""
    return dict(iterSegmentMaskImages(segmentationNode, referenceVolumeNode, segmentNamesToExport))


def addSegmentFromMaskImage(segmentationNode, maskImage: sitk.Image, segmentName: str,
                            color: tuple[float, float, float] | None = None) -> str:
    """Add a segment named ``segmentName`` whose voxels are the non-zero voxels of ``maskImage``
    (LPS); return its segment ID. A segmentation without geometry takes the mask's grid."""
    scene = _sceneOf(segmentationNode)
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetSegmentIdBySegmentName(segmentName):
        raise InputError(f"segmentation '{segmentationNode.GetName()}' already has a segment named "
                         f"'{segmentName}'; choose another name or remove the old segment")
    requireNoParentTransform(segmentationNode, f"segmentation '{segmentationNode.GetName()}'")
    binary = sitk.Cast(sitk.NotEqual(maskImage, 0), sitk.sitkUInt8)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    before = _nodeIds(scene)
    try:
        labelmap = volumeNodeFromImage(scene, binary, f"{segmentName} (import)", "vtkMRMLLabelMapVolumeNode")
        if not _hasOwnGeometry(segmentationNode):
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
        oriented = logic.CreateOrientedImageDataFromVolumeNode(labelmap)
        if color is None:
            segment_id = segmentation.AddEmptySegment("", segmentName)
        else:
            segment_id = segmentation.AddEmptySegment("", segmentName, [float(c) for c in color])
        if not logic.SetBinaryLabelmapToSegment(oriented, segmentationNode, segment_id, logic.MODE_REPLACE):
            segmentation.RemoveSegment(segment_id)
            raise GeometryError(f"segment '{segmentName}' could not be set from the mask")
    finally:
        _removeNodesAddedSince(scene, before)
    return segment_id
