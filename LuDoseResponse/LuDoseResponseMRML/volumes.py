"""SimpleITK images (LPS) <-> MRML volume nodes (RAS), with full geometry.

This is the one place where LPS and RAS meet. A SimpleITK image maps voxel index (i, j, k) to
the LPS point ``origin + D @ diag(spacing) @ (i, j, k)``; a volume node maps it to the RAS
point ``IJKToRAS @ (i, j, k, 1)``. With ``F = diag(-1, -1, 1)`` (LPS <-> RAS, its own inverse)
the node gets ``origin_ras = F @ origin`` and ``directions_ras = F @ D``; the spacing and the
voxel array ([k, j, i] in both numpy views) are unchanged.

Geometry lives in the node: the node's vtkImageData keeps origin 0 and spacing 1, as Slicer
expects.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from LuDoseResponseLib.errors import GeometryError, InputError

#: LPS <-> RAS: negate the first two axes (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _nodeLabel(node) -> str:
    return f"{node.GetClassName()} '{node.GetName()}'"


def _matrixToArray(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _arrayToMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def requireNoParentTransform(node, what: str = "") -> None:
    """Raise GeometryError if ``node`` sits under a transform (its voxels are not where its
    geometry says until the transform is hardened)."""
    transform = node.GetParentTransformNode()
    if transform is not None:
        raise GeometryError(
            f"{what or _nodeLabel(node)} is under the transform '{transform.GetName()}'; harden the transform "
            "first (Data module: right-click the node, 'Harden transform') so its geometry is in world RAS")


def ijkToRasFromVolumeNode(volumeNode) -> np.ndarray:
    """The node's 4x4 IJK -> RAS matrix as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return _matrixToArray(matrix)


def _requireScalar3d(image: sitk.Image, what: str) -> None:
    if image.GetDimension() != 3:
        raise InputError(f"{what} must be a 3-D image, got {image.GetDimension()}-D; "
                         "stack 2-D slices into a volume first")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "only scalar images can become scalar volume nodes")


def updateVolumeNodeFromImage(volumeNode, image: sitk.Image) -> None:
    """Replace the voxels and geometry of ``volumeNode`` by those of ``image`` (LPS).

    The voxel type is kept (float32 stays float32, uint8 stays uint8).
    """
    _requireScalar3d(image, f"the image for {_nodeLabel(volumeNode)}")
    array_kji = np.ascontiguousarray(sitk.GetArrayFromImage(image))
    size_ijk = image.GetSize()
    vtk_array = numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True,
                                           array_type=numpy_support.get_vtk_array_type(array_kji.dtype))
    vtk_array.SetName("ImageScalars")
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*size_ijk)
    image_data.GetPointData().SetScalars(vtk_array)

    directions_ras = np.eye(4)
    directions_ras[:3, :3] = LPS_TO_RAS @ np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    was_modifying = volumeNode.StartModify()
    volumeNode.SetSpacing(*image.GetSpacing())
    volumeNode.SetOrigin(*(LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)))
    volumeNode.SetIJKToRASDirectionMatrix(_arrayToMatrix(directions_ras))
    volumeNode.SetAndObserveImageData(image_data)
    volumeNode.EndModify(was_modifying)


def volumeNodeFromImage(scene, image: sitk.Image, name: str,
                        className: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` holding ``image`` (LPS) with its geometry, plus default
    display nodes. Use ``className="vtkMRMLLabelMapVolumeNode"`` for label images."""
    _requireScalar3d(image, f"the image for volume '{name}'")
    node = scene.AddNewNodeByClass(className, name)
    updateVolumeNodeFromImage(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def imageFromVolumeNode(volumeNode) -> sitk.Image:
    """A SimpleITK image (LPS) holding a copy of the node's voxels and its geometry.

    Raises InputError when the node has no scalar voxels, GeometryError when it sits under an
    unhardened transform.
    """
    image_data = volumeNode.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"{_nodeLabel(volumeNode)} has no voxels; load or compute the volume first")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"{_nodeLabel(volumeNode)} has {image_data.GetNumberOfScalarComponents()} components "
                         "per voxel; choose a scalar volume")
    requireNoParentTransform(volumeNode)
    dims_ijk = image_data.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    array_kji = np.array(scalars, copy=True).reshape(dims_ijk[::-1])

    ijk_to_ras = ijkToRasFromVolumeNode(volumeNode)
    extent = image_data.GetExtent()
    first_voxel_ras = ijk_to_ras @ np.array([extent[0], extent[2], extent[4], 1.0])
    spacing = np.array(volumeNode.GetSpacing(), dtype=float)
    if np.any(spacing <= 0):
        raise GeometryError(f"{_nodeLabel(volumeNode)} has a non-positive spacing {tuple(spacing)} mm")
    directions_ras = ijk_to_ras[:3, :3] / spacing[np.newaxis, :]

    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(x) for x in LPS_TO_RAS @ first_voxel_ras[:3]))
    image.SetDirection(tuple(float(x) for x in (LPS_TO_RAS @ directions_ras).ravel()))
    return image
