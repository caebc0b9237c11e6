"""The cohort table: one row per tumour (contract: contracts/cohort-and-analysis.md).

Loading validates every row before any model runs and reports every problem at once, each
with its CSV line number and column. It then applies the paper's two rules (Warfvinge et al.
2024, Statistical Analysis): responder = Δv ≥ 0.66 (RECIST 1.1's 30 % diameter reduction of
a sphere), and exclusion of tumours below 4 cm³ on the baseline CT. Both are configurable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from LuDoseResponseLib import defaults
from LuDoseResponseLib.errors import CohortError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient", "tumor", "grade", "dose_gy", "activity_gbq", "baseline_volume_cm3", "dv")
NUMERIC_COLUMNS = ("dose_gy", "activity_gbq", "baseline_volume_cm3", "dv")
OPTIONAL_NUMERIC_COLUMNS = ("dose_gy_sd", "dose_all_cycles_gy", "activity_all_cycles_gbq", "dv_all_cycles",
                            "n_cycles", "t_vmin_days")
GRADES = defaults.GRADES
DEFAULT_RESPONDER_THRESHOLD = defaults.RESPONDER_THRESHOLD
DEFAULT_MIN_BASELINE_VOLUME_CM3 = defaults.MIN_BASELINE_VOLUME_CM3
MAX_PROBLEMS_SHOWN = 25


@dataclass(frozen=True)
class Cohort:
    """A validated cohort table.

    ``table`` holds every input row with the columns of the CSV plus ``responder`` (recomputed
    from ``dv``), ``excluded`` (bool) and ``exclusion_reason`` (str, empty when kept).
    """

    table: object  # pandas.DataFrame
    responder_threshold: float
    min_baseline_volume_cm3: float
    source: str = ""
    sha256: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def included(self):
        """Rows kept for the dose analyses (baseline volume at or above the cut-off)."""
        return self.table.loc[~self.table["excluded"]].reset_index(drop=True)

    @property
    def n_rows(self) -> int:
        return int(len(self.table))

    @property
    def n_excluded(self) -> int:
        return int(self.table["excluded"].sum())


def _line(row_index: int) -> str:
    """CSV line of a 0-based data row (line 1 is the header)."""
    return f"row {row_index + 1} (line {row_index + 2})"


# a decimal number in ASCII digits, as written by R, Python and spreadsheets in the C locale; rejects
# full-width or Arabic-Indic digits, digit-group underscores ("1_000"), "inf"/"nan" and hex, which
# Python's float() would accept
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _as_float(value) -> float | None:
    """The number in a CSV cell, or None when the cell is not a plain decimal number."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out = float(value)
        return out if math.isfinite(out) else None
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if not _NUMBER.fullmatch(text):
        return None
    out = float(text)
    return out if math.isfinite(out) else None


def _raw(value) -> str:
    """A cell as the user wrote it, quoted, so invisible or look-alike characters show."""
    return repr(value) if isinstance(value, str) else repr(str(value))


def _number_problem(raw) -> str:
    """Why a cell is not accepted as a number, showing the cell as written."""
    if _is_blank(raw):
        return "empty value; a number is required"
    text = str(raw).strip()
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return f"{text} is not a finite number"
    return (f"{_raw(raw)} is not a number (write plain decimal numbers: ASCII digits 0-9, '.' as the "
            "decimal point, no digit grouping)")


def normalise_identifier(value: str) -> str:
    """NFC, format characters (zero-width space, BOM, joiners: Unicode category Cf) removed, other
    space characters (NBSP, ...) made plain spaces, and leading/trailing whitespace stripped."""
    text = unicodedata.normalize("NFC", value)
    text = "".join(" " if unicodedata.category(ch) in ("Zs", "Zl", "Zp") else ch
                   for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip()


def _check_columns(columns, source: str) -> list[str]:
    """Normalised header names; a duplicate (after normalisation) or empty name is an error."""
    names = [normalise_identifier(str(c)) for c in columns]
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if name == "":
            raise CohortError(f"{source}: header column {k + 1} has no name; name every column")
        if name in seen:
            raise CohortError(f"{source}: duplicate column '{name}' (header columns {seen[name] + 1} and {k + 1}, "
                              f"written {_raw(str(columns[seen[name]]))} and {_raw(str(columns[k]))}); "
                              "each column may appear once")
        seen[name] = k
    return names


def validate_cohort_table(df, *, source: str = "<table>",
                          responder_threshold: float = DEFAULT_RESPONDER_THRESHOLD,
                          min_baseline_volume_cm3: float = DEFAULT_MIN_BASELINE_VOLUME_CM3,
                          sha256: str = "") -> Cohort:
    """Validate a cohort DataFrame (all cells as read from the CSV) and apply the rules.

    Raises CohortError listing every problem with its row and column.
    """
    import pandas as pd

    if not (0.0 < responder_threshold <= 1.0):
        raise CohortError(f"responder threshold must be in (0, 1], got {responder_threshold}")
    if not (min_baseline_volume_cm3 >= 0.0 and math.isfinite(min_baseline_volume_cm3)):
        raise CohortError(f"minimum baseline volume must be a finite number >= 0 cm3, got {min_baseline_volume_cm3}")

    df = df.copy()
    df.columns = _check_columns(list(df.columns), source)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CohortError(f"{source}: missing column(s) {', '.join(missing)}; the cohort table needs "
                          f"{', '.join(REQUIRED_COLUMNS)} (see the README, 'Cohort CSV format')")
    if len(df) == 0:
        raise CohortError(f"{source}: the cohort table has no rows")

    problems: list[str] = []
    warnings: list[str] = []
    for col in ("patient", "tumor", "grade"):
        raw_ids = ["" if _is_blank(v) else str(v) for v in df[col].tolist()]
        ids = [normalise_identifier(v) for v in raw_ids]
        changed = [i for i, (a, b) in enumerate(zip(raw_ids, ids, strict=True)) if a.strip(" \t") != b]
        if changed:
            i = changed[0]
            warnings.append(f"column '{col}': {len(changed)} identifier(s) contained invisible, format or "
                            f"non-standard space characters and were normalised (first at {_line(i)}: "
                            f"{_raw(raw_ids[i])} read as {_raw(ids[i])}); fix the table to silence this")
        df[col] = ids
        for i in np.flatnonzero(df[col].to_numpy() == ""):
            problems.append(f"{_line(i)}, column '{col}': empty value")

    for i, g in enumerate(df["grade"]):
        if g and g not in GRADES:
            problems.append(f"{_line(i)}, column 'grade': unknown grade '{g}' (use G1 or G2)")

    numeric = {}
    raw_cells: dict[str, list] = {}
    for col in NUMERIC_COLUMNS + tuple(c for c in OPTIONAL_NUMERIC_COLUMNS if c in df.columns):
        optional = col in OPTIONAL_NUMERIC_COLUMNS
        values = np.full(len(df), np.nan)
        raw_cells[col] = df[col].tolist()
        for i, raw in enumerate(raw_cells[col]):
            v = _as_float(raw)
            if v is None:
                if optional and _is_blank(raw):
                    continue
                problems.append(f"{_line(i)}, column '{col}': {_number_problem(raw)}")
            else:
                values[i] = v
        numeric[col] = values

    def check(col, bad_mask, what):
        for i in np.flatnonzero(bad_mask):
            problems.append(f"{_line(i)}, column '{col}': {str(raw_cells[col][i]).strip()} {what}")

    with np.errstate(invalid="ignore"):
        check("dose_gy", numeric["dose_gy"] < 0, "is negative; absorbed dose must be >= 0 Gy")
        check("activity_gbq", numeric["activity_gbq"] < 0, "is negative; activity must be >= 0 GBq")
        check("baseline_volume_cm3", numeric["baseline_volume_cm3"] <= 0,
              "is not positive; the baseline volume must be > 0 cm3")
        check("dv", (numeric["dv"] < 0) | (numeric["dv"] > 1),
              "is outside [0, 1]; dv is the relative volume reduction (vmax - vmin)/vmax")
        if "dv_all_cycles" in numeric:
            check("dv_all_cycles", (numeric["dv_all_cycles"] < 0) | (numeric["dv_all_cycles"] > 1),
                  "is outside [0, 1]; dv_all_cycles is the volume reduction after all treatment")
        if "dose_gy_sd" in numeric:
            check("dose_gy_sd", numeric["dose_gy_sd"] < 0, "is negative; a standard deviation must be >= 0")

    seen: dict[str, int] = {}
    for i, t in enumerate(df["tumor"]):
        if not t:
            continue
        if t in seen:
            problems.append(f"{_line(i)}, column 'tumor': duplicate tumour id '{t}' (first at {_line(seen[t])})")
        else:
            seen[t] = i

    dv = numeric["dv"]
    responder = (dv >= responder_threshold).astype(int)
    if "responder" in df.columns:
        for i, raw in enumerate(df["responder"].tolist()):
            v = _as_float(raw)
            if v is None and _is_blank(raw):
                continue
            if v not in (0.0, 1.0):
                problems.append(f"{_line(i)}, column 'responder': {_raw(raw)} must be 0 or 1")
            elif not np.isnan(dv[i]) and int(v) != responder[i]:
                problems.append(f"{_line(i)}, column 'responder': {int(v)} disagrees with dv = {dv[i]:g} "
                                f"(responder means dv >= {responder_threshold:g}); fix the value or drop the "
                                f"column, it is recomputed from dv")

    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        tail = f"\n  ... and {more} more problem(s)" if more > 0 else ""
        raise CohortError(f"{source}: {len(problems)} problem(s) in the cohort table:\n  "
                          + "\n  ".join(shown) + tail)

    for col, values in numeric.items():
        df[col] = values
    df["responder"] = responder
    grades_per_patient = df.groupby("patient")["grade"].nunique()
    for patient in grades_per_patient.index[grades_per_patient > 1]:
        warnings.append(f"patient {patient} has tumours of both grades; each tumour is analysed in its own grade")

    small = df["baseline_volume_cm3"].to_numpy() < min_baseline_volume_cm3
    df["excluded"] = small
    df["exclusion_reason"] = np.where(small, f"baseline volume < {min_baseline_volume_cm3:g} cm3", "")
    if small.any():
        log.info("%s: %d of %d tumours excluded (baseline volume < %g cm3)", source, int(small.sum()), len(df),
                 min_baseline_volume_cm3)

    kept = df.loc[~df["excluded"]]
    if len(kept) == 0:
        raise CohortError(f"{source}: every tumour has a baseline volume below {min_baseline_volume_cm3:g} cm3; "
                          "lower the minimum baseline volume (0 disables the cut-off)")
    if int(kept["responder"].sum()) == 0:
        raise CohortError(f"{source}: no responders (no tumour with dv >= {responder_threshold:g} among the "
                          f"{len(kept)} analysed); dose-response statistics need both responders and non-responders")
    if int(kept["responder"].sum()) == len(kept):
        raise CohortError(f"{source}: no non-responders (every analysed tumour has dv >= {responder_threshold:g}); "
                          "dose-response statistics need both responders and non-responders")

    table = pd.DataFrame(df)
    for col in ("patient", "tumor", "grade"):
        table[col] = table[col].astype(str)
    return Cohort(table=table, responder_threshold=float(responder_threshold),
                  min_baseline_volume_cm3=float(min_baseline_volume_cm3), source=source, sha256=sha256,
                  warnings=tuple(warnings))


def load_cohort_csv(path: str | Path, *, responder_threshold: float = DEFAULT_RESPONDER_THRESHOLD,
                    min_baseline_volume_cm3: float = DEFAULT_MIN_BASELINE_VOLUME_CM3) -> Cohort:
    """Read and validate a cohort CSV (one row per tumour). See ``validate_cohort_table``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CohortError(f"cohort file {path} does not exist or is not a file")
    raw = path.read_bytes()
    how = "save it as comma-separated UTF-8 with a header line"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CohortError(f"{path}: is not UTF-8 text ({exc}); {how}") from None
    if "\x00" in text:
        raise CohortError(f"{path}: contains NUL bytes, so it is not a text table; {how}")
    try:
        header = next(csv.reader(io.StringIO(text)), [])
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise CohortError(f"{path}: cannot be read as a CSV table ({exc}); {how}") from None
    if len(header) == len(df.columns):
        df.columns = header  # pandas renames a repeated name to 'name.1'; the validation must see the repeat
    return validate_cohort_table(df, source=str(path), responder_threshold=responder_threshold,
                                 min_baseline_volume_cm3=min_baseline_volume_cm3,
                                 sha256=hashlib.sha256(raw).hexdigest())


def cohort_output_table(cohort: Cohort):
    """The validated table as written to ``tumours.csv``: input columns, recomputed responder,
    ``excluded`` and ``exclusion_reason``."""
    out = cohort.table.copy()
    out["excluded"] = out["excluded"].astype(int)
    return out
