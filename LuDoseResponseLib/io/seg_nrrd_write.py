"""Write a Slicer ``.seg.nrrd`` segmentation (the header fields of Slicer's vtkMRMLSegmentationStorageNode).

Each segment gets ``Segment<N>_ID``, ``_Name``, ``_Layer``, ``_LabelValue`` and ``_Extent``; without an ID,
Slicer's own reader drops the segment names. A segment goes to the first layer where it overlaps no
earlier segment (else to a new layer), so overlapping segments keep every voxel. Segments are consumed one
at a time, so only the layers are held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import atomic_path
from LuDoseResponseLib.imaging import same_grid


def write_slicer_segmentation(segments: Iterable[tuple[str, sitk.Image]], path: str | os.PathLike, *,
                              what: str = "segmentation", compress: bool = True) -> Path:
    """Write ``(name, mask image)`` pairs (non-zero = inside; all on the first mask's grid) as a ``.seg.nrrd``."""
    reference: sitk.Image | None = None
    layers: list[np.ndarray] = []
    placed: list[tuple[str, int, int]] = []          # (name, layer, label value)
    for name, image in segments:
        if reference is None:
            reference = image
        elif not same_grid(image, reference):
            raise InputError(f"{what}: segment {name!r} is not on the grid of segment {placed[0][0]!r}")
        mask = sitk.GetArrayViewFromImage(image) > 0
        layer = next((i for i, labels in enumerate(layers) if not np.any(labels[mask])), None)
        if layer is None:
            layers.append(np.zeros(mask.shape, dtype=np.uint8))
            layer = len(layers) - 1
        label = 1 + sum(1 for _, other, _ in placed if other == layer)
        if label > 255:
            raise InputError(f"{what} has more than 255 segments in one layer")
        layers[layer][mask] = label
        placed.append((name, layer, label))
    if reference is None:
        raise InputError(f"{what} has no segments")
    images = []
    for labels in layers:
        img = sitk.GetImageFromArray(labels)
        img.CopyInformation(reference)
        images.append(img)
    out = images[0] if len(images) == 1 else sitk.Compose(images)
    extent = " ".join(f"0 {n - 1}" for n in reference.GetSize())
    for i, (name, layer, label) in enumerate(placed):
        out.SetMetaData(f"Segment{i}_ID", f"Segment_{i + 1}")
        out.SetMetaData(f"Segment{i}_Name", name)
        out.SetMetaData(f"Segment{i}_Layer", str(layer))
        out.SetMetaData(f"Segment{i}_LabelValue", str(label))
        out.SetMetaData(f"Segment{i}_Extent", extent)
    p = Path(path)
    with atomic_path(p) as tmp:
        sitk.WriteImage(out, str(tmp), useCompression=compress)
    return p
