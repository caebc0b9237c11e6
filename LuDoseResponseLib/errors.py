"""One exception family for the whole library.

Every message names the file, series, tumour, row or column at fault and says what to do.
The command line turns these into a one-line message and a non-zero exit, never a traceback.
"""


class LuDoseResponseError(Exception):
    """Base class of every error the library raises on purpose."""


class InputError(LuDoseResponseError, ValueError):
    """Bad user input: a file, a table cell, an argument or a manifest key."""


class CohortError(InputError):
    """The cohort table is invalid (missing column, bad value, duplicate tumour, ...)."""


class DicomError(InputError):
    """A DICOM file or series cannot be read or lacks a required tag."""


class ManifestError(InputError):
    """The study manifest is invalid (missing key, missing file, inconsistent times, ...)."""


class GeometryError(InputError):
    """Images do not share a grid, do not overlap, or have invalid spacing."""


class ModelFitError(LuDoseResponseError):
    """A statistical model or curve fit cannot be estimated on these data."""


class PhysicsError(LuDoseResponseError, ValueError):
    """Invalid physical input (non-positive voxel size, NaN activity, ...)."""
