"""DICOM reading: tags (:mod:`.tags`), geometry (:mod:`.geometry`), metadata with sources
(:mod:`.metadata`), pixel decoding (:mod:`.read`) and the public entry (:mod:`.volume`).

``inspect(path)``, ``read_metadata(path, series_uid)`` and ``read_volume(path, series_uid)``
are the entry points; they are re-exported here.
"""

from LuDoseResponseLib.io.dicom.volume import SeriesMetadata, Volume, inspect, read_metadata, read_volume

__all__ = ["SeriesMetadata", "Volume", "inspect", "read_metadata", "read_volume"]
