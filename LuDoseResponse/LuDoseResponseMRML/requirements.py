"""The module's extra Python requirements, read from ``Resources/requirements.txt`` (the one list).

``slicer.packaging.load_requirements`` reads the same file in Slicer >= 5.11; these helpers serve older
Slicer versions and the headless tests. A requirement counts as missing when its package cannot be
imported; nothing here installs anything.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from LuDoseResponseLib.errors import InputError

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: distribution name -> import name, where they differ
_IMPORT_NAMES = {"scikit-image": "skimage", "pyyaml": "yaml"}


def readRequirements(path: Path | str = REQUIREMENTS_FILE) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the requirements file {p} ({exc}); reinstall the extension") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def importName(requirement: str) -> str:
    """The module a requirement such as ``pandas>=2.0`` is imported as."""
    match = _NAME.match(requirement)
    if match is None:
        raise InputError(f"'{requirement}' is not a requirement line (name[version specifier])")
    name = match.group(1).lower()
    return _IMPORT_NAMES.get(name, name.replace("-", "_"))


def missingRequirements(requirements: list[str] | None = None) -> list[str]:
    """The requirements (default: the module's file) whose package cannot be imported."""
    requirements = readRequirements() if requirements is None else requirements
    return [r for r in requirements if importlib.util.find_spec(importName(r)) is None]
