"""The README's Python examples, as code blocks (used by the tests that execute them)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    """Every fenced ``python`` block of README.md, in order."""
    return _BLOCK.findall(README.read_text(encoding="utf-8"))


def slicer_blocks() -> list[str]:
    """The blocks written for Slicer's Python console (they use the ``slicer`` module)."""
    return [b for b in python_blocks() if re.search(r"\bslicer\.", b)]


def library_blocks() -> list[str]:
    """The blocks that use the library alone."""
    return [b for b in python_blocks() if not re.search(r"\bslicer\.", b)]
