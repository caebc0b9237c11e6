"""One exception family and one warning family for the whole library.

Every message names the file, series, tumour, row or column at fault and says what to do.
Library messages name library arguments (``min_baseline_volume_cm3``), never command-line
flags; the command line translates. The command line turns errors into a one-line message and
exit code 2, never a traceback.

Which channel an event uses (one rule for the whole library):

1. **Result ``warnings``**: a condition that qualifies a number the function returns (a fit that
   did not converge, a capped half-life, separation, an extrapolated TCP dose, a data-quality
   problem that changes a value) goes into the ``warnings`` field of the returned result, so it
   travels with the number into ``analysis.json``, ``tumours.csv`` and the report. It is also
   logged once at WARNING level, so that a command-line user sees it.
2. **``warnings.warn(message, <LuDoseResponseWarning subclass>)``**: the same kind of condition
   from a function whose result has no ``warnings`` field (an image, an array, a kernel). It is
   not logged as well; the command line routes Python warnings into ``logging``.
3. **``logging``**: everything else — what was read and from which tag, manifest overrides,
   cache use, fallbacks that do not change a number (INFO/DEBUG), and operational trouble such as
   an unwritable cache folder (WARNING).
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


class LuDoseResponseWarning(UserWarning):
    """Base class of every warning the library emits with :func:`warnings.warn`."""


class DataQualityWarning(LuDoseResponseWarning):
    """An input is usable but doubtful: negative activity, an image outside the CT, lossy pixels."""


class ModelFitWarning(LuDoseResponseWarning):
    """A fitted model is poorly determined, capped or did not converge."""


class ExtrapolationWarning(LuDoseResponseWarning):
    """A value lies outside the data it was estimated from (doses beyond those observed, times
    beyond the last sample)."""
