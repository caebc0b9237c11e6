"""The short summary of a cohort analysis that the command line prints and the Slicer panel shows."""

from __future__ import annotations

from collections.abc import Mapping

from LuDoseResponseLib import defaults
from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA
from LuDoseResponseLib.errors import InputError


def _get(block, *keys):
    """``block[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(block, Mapping) or key not in block:
            return None
        block = block[key]
    return block


def _percent(target: str) -> str:
    try:
        return f"{float(target) * 100:g} %"
    except ValueError:
        return target


def _dose_text(grade: str, block: Mapping) -> str:
    """'G2 138 Gy', with ' (95 % CI 94-449)' where analysis.json bounds it."""
    low, high = block.get("ci_low"), block.get("ci_high")
    ci = f" (95 % CI {low:.0f}-{high:.0f})" if isinstance(low, int | float) and isinstance(high, int | float) else ""
    return f"{grade} {block['dose_gy']:.0f} Gy{ci}"


def _tcp_doses(analysis: Mapping) -> list[str]:
    """'TCP 50 %: G1 140 Gy, G2 82 Gy (95 % CI 60-110)' for each TCP target of the analysis."""
    per_grade = _get(analysis, "tcp", "per_grade") or {}
    targets = dict.fromkeys(k for g in per_grade.values() for k in (_get(g, "dose_at_tcp") or {}))
    found = []
    for target in targets:
        doses = [_dose_text(grade, _get(per_grade, grade, "dose_at_tcp", target)) for grade in defaults.GRADES
                 if isinstance(_get(per_grade, grade, "dose_at_tcp", target, "dose_gy"), int | float)]
        if doses:
            found.append(f"TCP {_percent(target)}: " + ", ".join(doses))
    return found


def summary_text(analysis: Mapping, warnings_hint: str = "analysis.json and report.html") -> str:
    """One paragraph: tumour, patient and responder counts, the dose at each TCP target per grade,
    a failed TCP model, and the number of warnings (with ``warnings_hint``: where to read them).

    ``analysis`` is the ``analysis.json`` dict (``AnalysisResult.to_dict()``); InputError if it is not one.
    """
    if not isinstance(analysis, Mapping) or analysis.get("schema") != SCHEMA:
        raise InputError(f"expected an analysis.json dict of schema {SCHEMA}")
    total = _get(analysis, "summary", "all") or {}
    excluded = _get(analysis, "input", "n_excluded")
    parts = [f"{total.get('n_tumours', '?')} tumours in {total.get('n_patients', '?')} patients analysed"
             + (f" ({excluded} excluded)" if excluded else "")
             + f", {total.get('n_responders', '?')} responders."]
    tcp_error = _get(analysis, "tcp", "error")
    if tcp_error:
        parts.append(f"TCP model not estimated: {tcp_error}.")
    elif doses := _tcp_doses(analysis):
        parts.append("Dose for " + "; ".join(doses) + ".")
    n_warnings = len(analysis.get("warnings") or [])
    if n_warnings:
        parts.append(f"{n_warnings} warning(s): see {warnings_hint}.")
    return " ".join(parts)
