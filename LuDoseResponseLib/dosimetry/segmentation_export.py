"""The semi-automatic SPECT segmentation (:mod:`dosimetry.segmentation`) out as DICOM, so that other tools
(Slicer, MIM, RayStation, a PACS viewer) see the VOIs the doses were computed in.

:func:`write_spect_segmentation` writes the tumours as a BINARY DICOM SEG of the SPECT's study and frame of
reference, on the SPECT grid (``io/seg_write.py``; dciodvfy: zero errors), each segment marked
SEMIAUTOMATIC with the method in SegmentAlgorithmName and the threshold and volume in SegmentDescription.
Read back with ``response.volumetry.read_segmentation`` (or any SEG reader) it gives the same voxels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from LuDoseResponseLib.dosimetry.segmentation import SpectSegmentation
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.io.dicom.metadata import SeriesMetadata
from LuDoseResponseLib.io.seg_write import write_seg

_METHOD_NAMES = {"psf": "PSF-model adaptive threshold", "fixed": "fixed-fraction threshold"}


def write_spect_segmentation(segmentations: Mapping[str, SpectSegmentation], path: str | os.PathLike, *,
                             source: SeriesMetadata, series_number: int = 912) -> Path:
    """Write tumour name → :class:`SpectSegmentation` (all on the grid of the SPECT ``source``) as a DICOM SEG."""
    if not segmentations:
        raise InputError("write_spect_segmentation: no segmentation to write")
    methods = sorted({s.method for s in segmentations.values()})
    descriptions = {name: f"{_METHOD_NAMES.get(s.method, s.method)}: {100 * s.threshold_fraction:.0f} % of peak "
                          f"above background, {s.volume_ml:.3g} mL"
                    for name, s in segmentations.items()}
    return write_seg({name: s.mask for name, s in segmentations.items()}, path, source=source,
                     algorithm_type="SEMIAUTOMATIC",
                     algorithm_name="LuDoseResponse SPECT " + ", ".join(_METHOD_NAMES.get(m, m) for m in methods),
                     series_description="Tumour VOIs, SPECT segmentation (LuDoseResponse)",
                     series_number=series_number, descriptions=descriptions)
