"""Segmentation -> per-segment masks: voxel-count truth on the own grid, nearest-neighbour truth
and centroid conservation on a coarse grid, overlap, transforms, names, and no leftover nodes.

Truth comes from the numpy masks the segments were made from, and, for the resampled export,
from an independent nearest-neighbour lookup written here with SimpleITK's index <-> physical
point maps. Internal label maps are read back with slicer.util (code the bridge does not use).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseMRML.segments import (
    addSegmentFromMaskImage,
    segmentMaskImage,
    segmentMaskImages,
    segmentNames,
)
from LuDoseResponseMRML.volumes import volumeNodeFromImage

CT_SIZE = (48, 40, 24)  # (i, j, k)
CT_SPACING = (2.0, 2.0, 2.5)
CT_ORIGIN = (-47.3, -39.1, 100.7)


def _grid(size, spacing, origin, direction=None, pixel=sitk.sitkInt16):
    image = sitk.Image(*size, pixel)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def _sphere(reference: sitk.Image, centre_lps, radius_mm) -> np.ndarray:
    """uint8 [k, j, i] mask of voxel centres within ``radius_mm`` of ``centre_lps``."""
    size = reference.GetSize()
    kk, jj, ii = np.meshgrid(*[np.arange(s) for s in size[::-1]], indexing="ij")
    origin = np.array(reference.GetOrigin())
    axes = np.array(reference.GetDirection()).reshape(3, 3) * np.array(reference.GetSpacing())
    points = origin + np.stack([ii, jj, kk], axis=-1) @ axes.T
    return (np.linalg.norm(points - np.array(centre_lps), axis=-1) <= radius_mm).astype(np.uint8)


def _maskImage(array, reference):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


@pytest.fixture
def ct_case(scene):
    """A CT grid, a segmentation drawn on it with two overlapping spheres and a small one."""
    ct = _grid(CT_SIZE, CT_SPACING, CT_ORIGIN)
    ct_node = volumeNodeFromImage(scene, ct, "CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumours")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    truth = {
        "P001.T1": _sphere(ct, (-5.0, -3.0, 130.0), 12.0),
        "P001.T2": _sphere(ct, (5.0, 2.0, 133.0), 9.0),  # overlaps T1
        "P001.T3": _sphere(ct, (-30.0, 20.0, 115.0), 4.0),
    }
    for name, array in truth.items():
        addSegmentFromMaskImage(segmentation, _maskImage(array, ct), name)
    return ct, ct_node, segmentation, truth


def test_own_grid_export_is_exact(scene, ct_case):
    ct, _, segmentation, truth = ct_case
    overlap = int(np.sum(truth["P001.T1"] & truth["P001.T2"]))
    assert overlap > 100, "the test needs overlapping segments"
    masks = segmentMaskImages(segmentation)
    assert list(masks) == list(truth)
    for name, array in truth.items():
        mask = masks[name]
        assert mask.GetPixelID() == sitk.sitkUInt8
        assert mask.GetSize() == ct.GetSize()
        np.testing.assert_allclose(mask.GetOrigin(), ct.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(mask.GetSpacing(), ct.GetSpacing(), atol=1e-12)
        np.testing.assert_allclose(mask.GetDirection(), ct.GetDirection(), atol=1e-12)
        exported = sitk.GetArrayFromImage(mask)
        assert int(exported.sum()) == int(array.sum()), name
        np.testing.assert_array_equal(exported, array)
        # the segment as stored in MRML holds the same voxel count (independent reader)
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
        internal = slicer.util.arrayFromSegmentInternalBinaryLabelmap(segmentation, segment_id)
        label = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
        assert int(np.sum(internal == label)) == int(array.sum()), name


def test_export_leaves_the_scene_as_it_was(scene, ct_case):
    _, _, segmentation, _ = ct_case
    before = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    segmentMaskImages(segmentation)
    after = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    assert after == before


def _nearestNeighbourTruth(fine_array, fine: sitk.Image, coarse: sitk.Image) -> np.ndarray:
    """Value of the fine voxel nearest to each coarse voxel centre (0 outside the fine grid)."""
    size = coarse.GetSize()
    out = np.zeros(size[::-1], np.uint8)
    for k in range(size[2]):
        for j in range(size[1]):
            for i in range(size[0]):
                point = coarse.TransformIndexToPhysicalPoint((i, j, k))
                index = np.rint(fine.TransformPhysicalPointToContinuousIndex(point)).astype(int)
                if np.all(index >= 0) and np.all(index < np.array(fine.GetSize())):
                    out[k, j, i] = fine_array[index[2], index[1], index[0]]
    return out


@pytest.mark.parametrize("oblique", [False, True])
def test_coarse_grid_export(scene, ct_case, oblique):
    """On a coarse SPECT-like grid (4.8 mm, offset origin, optionally rotated) each segment is the
    nearest-neighbour sample of the drawn mask, and its centroid stays within half a voxel."""
    ct, _, segmentation, truth = ct_case
    direction = sitk.VersorTransform((0.1, 0.2, 1.0), 0.3).GetMatrix() if oblique else None
    spect = _grid((24, 20, 14), (4.8, 4.8, 4.8), (-55.13, -47.37, 96.91) if not oblique else (-40.0, -70.0, 96.0),
                  direction, sitk.sitkFloat32)
    spect_node = volumeNodeFromImage(scene, spect, "SPECT")
    for name in ("P001.T1", "P001.T2"):
        mask = segmentMaskImage(segmentation, name, spect_node)
        assert mask.GetSize() == spect.GetSize()
        np.testing.assert_allclose(mask.GetOrigin(), spect.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(mask.GetDirection(), spect.GetDirection(), atol=1e-9)
        exported = sitk.GetArrayFromImage(mask)
        expected = _nearestNeighbourTruth(truth[name], ct, spect)
        assert int(exported.sum()) > 0
        np.testing.assert_array_equal(exported, expected)
        coarse_centroid = np.array(mask.TransformContinuousIndexToPhysicalPoint(
            np.argwhere(exported > 0).mean(axis=0)[::-1].tolist()))
        fine_centroid = np.array(ct.TransformContinuousIndexToPhysicalPoint(
            np.argwhere(truth[name] > 0).mean(axis=0)[::-1].tolist()))
        assert np.linalg.norm(coarse_centroid - fine_centroid) < 0.5 * 4.8, name


def test_transformed_segmentation(scene, ct_case):
    """A segmentation moved 10 mm towards the patient's right (RAS +x) exports onto the CT grid
    shifted by 10 mm: the CT's i axis points to LPS +x (= left), so 5 voxels towards lower i."""
    _, ct_node, segmentation, truth = ct_case
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = np.eye(4)
    matrix[0, 3] = 10.0
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    exported = sitk.GetArrayFromImage(segmentMaskImage(segmentation, "P001.T1", ct_node))
    expected = np.zeros_like(truth["P001.T1"])
    expected[:, :, :-5] = truth["P001.T1"][:, :, 5:]
    np.testing.assert_array_equal(exported, expected)
    with pytest.raises(GeometryError, match="harden"):
        segmentMaskImage(segmentation, "P001.T1")


def test_names_and_errors(scene, ct_case):
    ct, ct_node, segmentation, truth = ct_case
    assert segmentNames(segmentation) == list(truth)
    with pytest.raises(InputError, match="no segment named 'P009.T1'"):
        segmentMaskImage(segmentation, "P009.T1")
    with pytest.raises(InputError, match="already has a segment named"):
        addSegmentFromMaskImage(segmentation, _maskImage(truth["P001.T3"], ct), "P001.T3")
    segmentation.GetSegmentation().AddEmptySegment("", "P001.T1")  # a second segment with the same name
    with pytest.raises(InputError, match="more than once"):
        segmentNames(segmentation)
    bare = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no geometry")
    bare.GetSegmentation().AddEmptySegment("", "x")
    with pytest.raises(GeometryError, match="no reference geometry"):
        segmentMaskImage(bare, "x")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(GeometryError, match="harden"):
        segmentMaskImage(segmentation, "P001.T3", ct_node)


def test_mask_on_other_grid_lands_on_segmentation_grid(scene, ct_case):
    """A mask given on a coarse grid joins a CT segmentation at the CT grid; a segmentation
    without geometry takes the mask's grid."""
    ct, _, segmentation, _ = ct_case
    # coarse voxel (0, 0, 0) spans CT voxel centres 0..3 along each axis: every coarse voxel holds
    # exactly 4 x 4 x 4 CT voxel centres, none on a boundary
    coarse_origin = tuple(o + 1.5 * s for o, s in zip(CT_ORIGIN, CT_SPACING, strict=True))
    coarse = _grid((12, 10, 6), tuple(4 * s for s in CT_SPACING), coarse_origin)
    block = np.zeros((6, 10, 12), np.uint8)
    block[2:4, 3:6, 4:8] = 1
    addSegmentFromMaskImage(segmentation, _maskImage(block, coarse), "coarse block", color=(0.1, 0.9, 0.1))
    on_ct = sitk.GetArrayFromImage(segmentMaskImage(segmentation, "coarse block"))
    assert on_ct.shape == CT_SIZE[::-1]
    np.testing.assert_array_equal(on_ct, np.kron(block, np.ones((4, 4, 4), np.uint8)))

    fresh = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "fresh")
    addSegmentFromMaskImage(fresh, _maskImage(block, coarse), "block")
    back = segmentMaskImage(fresh, "block")
    assert back.GetSize() == coarse.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), block)
