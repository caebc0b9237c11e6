"""The bridge's two fixed names are importable from the package itself (issue 8) and are the
functions the bridge uses (a round trip through them keeps every voxel and the geometry)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def test_fixed_names_from_the_package(scene_factory):
    import LuDoseResponseMRML
    from LuDoseResponseMRML import imageFromVolumeNode, volumeNodeFromImage, volumes

    assert imageFromVolumeNode is volumes.imageFromVolumeNode
    assert volumeNodeFromImage is volumes.volumeNodeFromImage
    assert {"imageFromVolumeNode", "volumeNodeFromImage"} <= set(LuDoseResponseMRML.__all__)
    image = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    image.SetOrigin((1.0, -2.0, 3.5))
    image.SetSpacing((0.7, 1.1, 2.3))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    back = imageFromVolumeNode(volumeNodeFromImage(scene_factory(), image, "v"))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert np.allclose(back.GetOrigin(), image.GetOrigin()) and np.allclose(back.GetDirection(), image.GetDirection())
