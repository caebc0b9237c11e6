"""Stage 2, input and output of images: DICOM and image files in, NRRD and RTDOSE out.

Inputs: paths to DICOM folders or files, NRRD / NIfTI / MetaImage files.
Outputs: SimpleITK images in LPS with :class:`~.dicom.metadata.SeriesMetadata` that records the
tag behind every value (:mod:`.dicom`); NRRD and DICOM RT Dose files written atomically
(:mod:`.write`). Uses physics only for the Lu-177 half-life.
"""

from LuDoseResponseLib.io.dicom import SeriesMetadata, Volume, inspect, read_metadata, read_volume
from LuDoseResponseLib.io.write import write_nrrd, write_rtdose

__all__ = ["SeriesMetadata", "Volume", "inspect", "read_metadata", "read_volume", "write_nrrd", "write_rtdose"]
