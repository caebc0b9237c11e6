"""SimpleITK (LPS) <-> volume node (RAS): geometry and voxels, checked independently.

The reference for geometry is SimpleITK's own index -> physical point map and the LPS <-> RAS
flip diag(-1, -1, 1); the reference for voxels is the numpy array the image was made from,
read back through ``slicer.util.arrayFromVolume`` (code the bridge does not use).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util
import vtk

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseMRML.volumes import imageFromVolumeNode, volumeNodeFromImage

FLIP = np.array([-1.0, -1.0, 1.0])


def _ijkToRas(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _obliqueImage(dtype, seed=0):
    """An image with anisotropic spacing, a rotated (oblique) direction and an offset origin."""
    rng = np.random.default_rng(seed)
    array = (rng.random((5, 7, 9)) * 200 - 50).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.97, 1.5, 3.27))
    image.SetOrigin((-112.4, 37.9, -501.25))
    image.SetDirection(sitk.VersorTransform((0.3, -0.5, 0.8), 0.61).GetMatrix())
    return image, array


def _sampleIndices(size):
    corners = list(itertools.product(*[(0, s - 1) for s in size]))
    return corners + [(1, 2, 3), (size[0] // 2, size[1] - 2, 1)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_image_to_node_geometry_and_voxels(scene, dtype):
    image, array = _obliqueImage(dtype)
    node = volumeNodeFromImage(scene, image, "oblique")
    ijk_to_ras = _ijkToRas(node)
    for index in _sampleIndices(image.GetSize()):
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = ijk_to_ras @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], FLIP * lps, atol=1e-9, err_msg=f"voxel {index}")
    voxels = slicer.util.arrayFromVolume(node)
    assert voxels.dtype == array.dtype
    np.testing.assert_array_equal(voxels, array)
    assert node.GetImageData().GetOrigin() == (0.0, 0.0, 0.0)
    assert node.GetImageData().GetSpacing() == (1.0, 1.0, 1.0)
    assert node.GetSpacing() == pytest.approx(image.GetSpacing(), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_round_trip_keeps_everything(scene, dtype):
    image, array = _obliqueImage(dtype, seed=1)
    back = imageFromVolumeNode(volumeNodeFromImage(scene, image, "rt"))
    assert back.GetSize() == image.GetSize()
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_hand_computed_dicom_axial_case(scene):
    """Axial DICOM (LPS identity directions): the node's RAS origin negates x and y, and the
    RAS directions are diag(-1, -1, 1), as Slicer's DICOM reader gives."""
    image = sitk.Image(4, 3, 2, sitk.sitkInt16)
    image.SetOrigin((-250.0, -180.5, 1033.0))
    image.SetSpacing((0.9765625, 0.9765625, 2.5))
    node = volumeNodeFromImage(scene, image, "axial CT")
    assert node.GetOrigin() == pytest.approx((250.0, 180.5, 1033.0))
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(directions)[:3, :3], np.diag([-1.0, -1.0, 1.0]))
    # voxel (3, 2, 1): LPS (-250 + 3*0.9765625, -180.5 + 2*0.9765625, 1033 + 2.5) -> RAS negates x, y
    ras = _ijkToRas(node) @ np.array([3, 2, 1, 1.0])
    np.testing.assert_allclose(ras[:3], (250.0 - 2.9296875, 180.5 - 1.953125, 1035.5))


def test_node_built_like_slicer_reads_back_in_lps(scene):
    """A node made the way Slicer's loaders make it (spacing, origin, RAS directions, voxels set
    with slicer.util) converts to an image whose physical points are the node's, flipped."""
    rng = np.random.default_rng(3)
    array = rng.integers(-1000, 2000, size=(6, 4, 5)).astype(np.int16)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "loaded")
    node.SetSpacing(2.0, 0.8, 4.4)
    node.SetOrigin(17.0, -3.5, 92.25)
    rotation = np.array(sitk.VersorTransform((1.0, 1.0, 0.2), -0.45).GetMatrix()).reshape(3, 3)
    directions = np.eye(4)
    directions[:3, :3] = rotation
    node.SetIJKToRASDirectionMatrix(slicer.util.vtkMatrixFromArray(directions))
    slicer.util.updateVolumeFromArray(node, array)
    image = imageFromVolumeNode(node)
    ijk_to_ras = _ijkToRas(node)
    for index in _sampleIndices(image.GetSize()):
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose(FLIP * lps, (ijk_to_ras @ np.array([*index, 1.0]))[:3], atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)


def test_image_data_with_shifted_extent(scene):
    """vtkImageData whose extent starts at (2, 1, 3): voxel 0 of the image is IJK (2, 1, 3)."""
    image_data = vtk.vtkImageData()
    image_data.SetExtent(2, 5, 1, 3, 3, 4)
    image_data.AllocateScalars(vtk.VTK_FLOAT, 1)
    values = np.arange(4 * 3 * 2, dtype=np.float32)
    for n, value in enumerate(values):
        image_data.GetPointData().GetScalars().SetValue(n, float(value))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "shifted")
    node.SetSpacing(1.5, 2.0, 2.5)
    node.SetOrigin(-10.0, 4.0, 7.0)
    node.SetAndObserveImageData(image_data)
    image = imageFromVolumeNode(node)
    first = (_ijkToRas(node) @ np.array([2, 1, 3, 1.0]))[:3]
    np.testing.assert_allclose(FLIP * np.array(image.GetOrigin()), first)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).ravel(), values)


def test_label_map_class(scene):
    mask = sitk.Image(3, 3, 3, sitk.sitkUInt8)
    mask[1, 1, 1] = 1
    node = volumeNodeFromImage(scene, mask, "mask", "vtkMRMLLabelMapVolumeNode")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert slicer.util.arrayFromVolume(node)[1, 1, 1] == 1
    assert slicer.util.arrayFromVolume(node).sum() == 1


def test_bad_inputs_are_named(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    with pytest.raises(InputError, match="no voxels"):
        imageFromVolumeNode(empty)
    with pytest.raises(InputError, match="3-D"):
        volumeNodeFromImage(scene, sitk.Image(4, 4, sitk.sitkFloat32), "flat")
    with pytest.raises(InputError, match="components"):
        volumeNodeFromImage(scene, sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), "vector")

    image, _ = _obliqueImage(np.float32)
    node = volumeNodeFromImage(scene, image, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(GeometryError, match="harden"):
        imageFromVolumeNode(node)


def _reflectedOblique() -> tuple[float, ...]:
    rotation = np.array(sitk.VersorTransform((0.2, 0.9, -0.4), 1.1).GetMatrix()).reshape(3, 3)
    return tuple((rotation @ np.diag([1.0, 1.0, -1.0])).ravel())


@pytest.mark.parametrize("direction", [
    (1, 0, 0, 0, 1, 0, 0, 0, -1),          # slices stacked towards the feet (negative slice spacing in DICOM)
    (-1, 0, 0, 0, 1, 0, 0, 0, 1),          # left-right flipped
    (0, 0, 1, 1, 0, 0, 0, -1, 0),          # sagittal, head-first rows reversed
    _reflectedOblique(),                   # oblique and left-handed (determinant -1)
], ids=["feet-first", "lr-flip", "sagittal", "oblique-reflected"])
def test_flipped_and_reflected_geometry(scene, direction):
    """Every voxel centre lands where numpy says: RAS = diag(-1,-1,1) (origin + D diag(spacing) ijk), computed
    here from the numbers alone; the round trip keeps the direction's sign (no silent re-orientation)."""
    rng = np.random.default_rng(7)
    array = rng.normal(size=(4, 5, 6)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    spacing = np.array([0.8, 1.7, 3.1])
    origin = np.array([12.5, -40.25, 77.0])
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(float(v) for v in direction))
    node = volumeNodeFromImage(scene, image, "flipped")
    d = np.array(direction, dtype=float).reshape(3, 3)
    ijk_to_ras = _ijkToRas(node)
    for index in _sampleIndices(image.GetSize()):
        lps = origin + d @ (spacing * np.array(index))
        np.testing.assert_allclose((ijk_to_ras @ np.array([*index, 1.0]))[:3], FLIP * lps, atol=1e-9)
    assert np.linalg.det(ijk_to_ras[:3, :3]) * np.linalg.det(d) > 0  # flipping LPS->RAS twice keeps the handedness
    back = imageFromVolumeNode(node)
    np.testing.assert_allclose(back.GetDirection(), direction, atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), origin, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
