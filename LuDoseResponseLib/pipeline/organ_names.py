"""Organ segment names: which segments are kidneys, and the check of an organ segmentation's names.

Organ VOIs are named segments: ``Kidney_L`` and ``Kidney_R`` (either or both), or ``Kidneys`` (both
kidneys as one VOI). They come from a cycle's ``organs`` segmentation, or from segments with these
names inside its ``tumours`` segmentation (they are then organs, not tumours). Names are matched
exactly; a case or spelling variant (``kidney_l``, ``Kidney Left``) is an error that says the name to
use, so that a kidney is never taken for a tumour, nor silently left out.
"""

from __future__ import annotations

import re

KIDNEY_SIDES = ("Kidney_L", "Kidney_R")
KIDNEYS_COMBINED = "Kidneys"
ORGAN_NAMES = (*KIDNEY_SIDES, KIDNEYS_COMBINED)
#: spellings of a kidney VOI (lower case, letters only) that are not the organ names: TotalSegmentator's
#: kidney_left / kidney_right, Kidney Left, L_Kidney, ...
_KIDNEY_SPELLINGS = {"kidney", "kidneys", "kidneyl", "kidneyr", "kidneyleft", "kidneyright", "leftkidney",
                     "rightkidney", "lkidney", "rkidney", "kidneylt", "kidneyrt", "kidneysboth", "bothkidneys"}


def is_organ(name: str) -> bool:
    """True for a segment name that is an organ VOI (exact match)."""
    return name in ORGAN_NAMES


def looks_like_kidney(name: str) -> bool:
    """A name that is meant to be a kidney but is not spelled as an organ name."""
    return not is_organ(name) and re.sub(r"[^a-z]", "", name.lower()) in _KIDNEY_SPELLINGS


def organ_name_problems(names: tuple[str, ...], *, organs_file: bool) -> list[str]:
    """What is wrong with the segment names of an organ segmentation (``organs_file``) or of a tumours
    segmentation (only kidney-like names that are not organ names are problems there)."""
    allowed = ", ".join(ORGAN_NAMES)
    problems = []
    for name in names:
        if looks_like_kidney(name):
            problems.append(f"segment {name!r} looks like a kidney but organ segments are named exactly "
                            f"{allowed}; rename it")
        elif organs_file and not is_organ(name):
            problems.append(f"segment {name!r} is not an organ this tool computes (allowed: {allowed}); remove "
                            "it from the organ segmentation")
    organs = [n for n in names if is_organ(n)]
    for name in sorted({n for n in organs if organs.count(n) > 1}):
        problems.append(f"segment {name!r} appears more than once")
    if KIDNEYS_COMBINED in organs and any(n in organs for n in KIDNEY_SIDES):
        problems.append(f"{KIDNEYS_COMBINED!r} (both kidneys as one VOI) and {' / '.join(KIDNEY_SIDES)} are both "
                        "given; give either the combined VOI or the sides")
    if organs_file and not organs and not problems:
        problems.append(f"no organ segment: name the kidney segments {allowed}")
    return problems
