"""LuDoseResponseLib: Lu-177 DOTATATE tumour dosimetry and absorbed-dose-response analysis.

Pure Python (numpy, scipy, SimpleITK, pydicom; pandas and matplotlib where tables and
figures are made). Never imports slicer, vtk or qt. Method: Warfvinge et al.,
J Nucl Med 2024;65:1070.
"""

__version__ = "0.1.0"

from LuDoseResponseLib.errors import LuDoseResponseError  # noqa: E402

__all__ = ["LuDoseResponseError", "__version__"]
