"""LuDoseResponseMRML: the bridge between MRML nodes and LuDoseResponseLib.

Uses MRML classes, vtk, numpy, SimpleITK and the library only. It never uses qt, ctk,
``slicer.app``, ``slicer.modules`` or ``slicer.mrmlScene``: every function takes the scene or
a node, so the same code runs in the Slicer application and headless (PyPI ``slicer-core``).

Images handed to and taken from the library are SimpleITK images in LPS; MRML is RAS. The
flip between the two happens in ``volumes.py`` and nowhere else.

Modules:
  volumes   SimpleITK image <-> scalar / label map volume node, with full geometry
  display   dose maps: colour table, window/level, units, colour legend
  segments  segmentation node -> per-segment binary masks (own grid or a reference grid)
  tables    table nodes from columns; nodes found again by their role
  results   analysis.json dict -> table nodes, TCP and dose-response charts
  cohort    cohort CSV -> library analysis -> result nodes (what the module's Apply runs)
"""

from LuDoseResponseMRML.volumes import imageFromVolumeNode, volumeNodeFromImage

__all__ = ["imageFromVolumeNode", "volumeNodeFromImage"]
