"""Shared set-up of the library tests. Other test modules may append fixtures below.

Testing/data holds generators of synthetic fixtures (e.g. ``dicom_factory``), not binaries;
it is put on the import path here so that tests can ``import dicom_factory``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
if str(_DATA_DIR) not in sys.path:
    sys.path.insert(0, str(_DATA_DIR))
