"""Named VOI masks on an image grid, checked: on the grid, inside the image, not empty, not overlapping.

Masks come as a mapping name → binary SimpleITK image (or boolean [z, y, x] array) on the image
grid, or as one label image with ``labels`` (name → label value, or label value → name). Every problem is an error that
names the tumour.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.imaging import overlap_fraction, same_grid


def _mask_array(name: str, mask, image: sitk.Image) -> np.ndarray:
    shape = tuple(reversed(image.GetSize()))
    if isinstance(mask, sitk.Image):
        if not same_grid(image, mask):
            if overlap_fraction(mask, image) == 0.0:
                raise GeometryError(f"mask {name!r} lies outside the image: its bounding box does not overlap the "
                                    "image's; check that the mask belongs to this study and frame of reference")
            raise GeometryError(f"mask {name!r} is not on the image grid (size {mask.GetSize()} vs {image.GetSize()}, "
                                f"spacing {mask.GetSpacing()} vs {image.GetSpacing()}, origin {mask.GetOrigin()} vs "
                                f"{image.GetOrigin()}); resample it onto the image first "
                                "(imaging.resample_to with sitk.sitkNearestNeighbor)")
        arr = sitk.GetArrayFromImage(mask)
    else:
        arr = np.asarray(mask)
        if arr.shape != shape:
            raise GeometryError(f"mask {name!r} has shape {arr.shape}, the image {shape} [z, y, x]; "
                                "a mask array must be on the image grid")
    if arr.dtype != bool:
        if not np.all(np.isfinite(arr)):
            raise InputError(f"mask {name!r} contains NaN or infinite values; a mask is binary (0/1)")
        values = np.unique(arr)
        if not np.all(np.isin(values, (0, 1))):
            raise InputError(f"mask {name!r} is not binary (values {values[:6].tolist()}); pass a label image "
                             "with labels={{name: value}} instead")
    return arr.astype(bool)


def voi_masks(image: sitk.Image, masks, labels: Mapping[str, int] | None = None,
              *, allow_overlap: bool = False) -> dict[str, np.ndarray]:
    """Boolean [z, y, x] arrays per VOI name, checked (see the module docstring)."""
    if isinstance(masks, sitk.Image) or isinstance(masks, np.ndarray):
        if not labels:
            raise InputError("masks is a label image: give labels={name: label value} to name the tumours")
        label_arr = _label_array(image, masks)
        if all(isinstance(k, (int, np.integer)) for k in labels):   # given as value -> name
            labels = {str(name): int(value) for value, name in labels.items()}
        out = {}
        for name, value in labels.items():
            out[str(name)] = label_arr == int(value)
    elif isinstance(masks, Mapping):
        if labels:
            raise InputError("labels apply to a label image; masks is already a mapping of named masks")
        out = {str(name): _mask_array(str(name), m, image) for name, m in masks.items()}
    else:
        raise InputError("masks must be a mapping name -> binary mask image or a label image, "
                         f"got {type(masks).__name__}")
    if not out:
        raise InputError("no VOI masks given")
    empty = [name for name, m in out.items() if not m.any()]
    if empty:
        raise InputError(f"empty mask(s) {', '.join(map(repr, empty))}: no voxel on the image grid; check the "
                         "segmentation (or its labels) and that it was resampled onto this image")
    if not allow_overlap:
        clashes = [(a, b, int(np.count_nonzero(out[a] & out[b]))) for a, b in combinations(out, 2)]
        clashes = [c for c in clashes if c[2] > 0]
        if clashes:
            text = "; ".join(f"{a!r} and {b!r} share {n} voxel(s)" for a, b, n in clashes)
            raise InputError(f"overlapping masks: {text}; each voxel may belong to one tumour only")
    return out


def _label_array(image: sitk.Image, labels_image) -> np.ndarray:
    if isinstance(labels_image, sitk.Image):
        if not same_grid(image, labels_image):
            if overlap_fraction(labels_image, image) == 0.0:
                raise GeometryError("the label image lies outside the image: its bounding box does not overlap")
            raise GeometryError("the label image is not on the image grid; resample it onto the image first "
                                "(imaging.resample_to with sitk.sitkNearestNeighbor)")
        return sitk.GetArrayFromImage(labels_image)
    arr = np.asarray(labels_image)
    if arr.shape != tuple(reversed(image.GetSize())):
        raise GeometryError(f"the label array has shape {arr.shape}, the image {tuple(reversed(image.GetSize()))}")
    return arr


def touches_edge(mask_zyx: np.ndarray) -> bool:
    """True when the mask has a voxel on the outer face of the array (the object may extend outside the FOV)."""
    return bool(mask_zyx[0].any() or mask_zyx[-1].any() or mask_zyx[:, 0].any() or mask_zyx[:, -1].any()
                or mask_zyx[:, :, 0].any() or mask_zyx[:, :, -1].any())
