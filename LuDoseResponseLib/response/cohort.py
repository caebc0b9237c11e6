"""The cohort table: one row per tumour (contract: contracts/cohort-and-analysis.md).

Loading validates every row before any model runs and reports every problem at once, each
with its CSV line number and column. It then applies the paper's two rules (Warfvinge et al.
2024, Statistical Analysis): responder = Δv ≥ 0.66 (RECIST 1.1's 30 % diameter reduction of
a sphere), and exclusion of tumours below 4 cm³ on the baseline CT. Both are configurable.
"""

from __future__ import annotations

import hashlib
import logging
import math
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


def _as_float(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


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
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CohortError(f"{source}: missing column(s) {', '.join(missing)}; the cohort table needs "
                          f"{', '.join(REQUIRED_COLUMNS)} (see the README, 'Cohort CSV format')")
    if len(df) == 0:
        raise CohortError(f"{source}: the cohort table has no rows")

    problems: list[str] = []
    warnings: list[str] = []
    for col in ("patient", "tumor", "grade"):
        df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                              else str(v).strip())
        for i in np.flatnonzero(df[col].to_numpy() == ""):
            problems.append(f"{_line(i)}, column '{col}': empty value")

    for i, g in enumerate(df["grade"]):
        if g and g not in GRADES:
            problems.append(f"{_line(i)}, column 'grade': unknown grade '{g}' (use G1 or G2)")

    numeric = {}
    for col in NUMERIC_COLUMNS + tuple(c for c in OPTIONAL_NUMERIC_COLUMNS if c in df.columns):
        optional = col in OPTIONAL_NUMERIC_COLUMNS
        values = np.full(len(df), np.nan)
        for i, raw in enumerate(df[col].tolist()):
            v = _as_float(raw)
            if v is None:
                if optional and (raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == ""):
                    continue
                problems.append(f"{_line(i)}, column '{col}': '{raw}' is not a number")
            elif not math.isfinite(v):
                problems.append(f"{_line(i)}, column '{col}': {raw} is not a finite number")
            else:
                values[i] = v
        numeric[col] = values

    def check(col, bad_mask, what):
        for i in np.flatnonzero(bad_mask):
            problems.append(f"{_line(i)}, column '{col}': {numeric[col][i]:g} {what}")

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
            if v is None and (raw is None or str(raw).strip() in ("", "nan")):
                continue
            if v not in (0.0, 1.0):
                problems.append(f"{_line(i)}, column 'responder': '{raw}' must be 0 or 1")
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
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: cannot be read as a CSV table ({exc}); save it as comma-separated UTF-8 "
                          "with a header line") from None
    return validate_cohort_table(df, source=str(path), responder_threshold=responder_threshold,
                                 min_baseline_volume_cm3=min_baseline_volume_cm3,
                                 sha256=hashlib.sha256(raw).hexdigest())


def cohort_output_table(cohort: Cohort):
    """The validated table as written to ``tumours.csv``: input columns, recomputed responder,
    ``excluded`` and ``exclusion_reason``."""
    out = cohort.table.copy()
    out["excluded"] = out["excluded"].astype(int)
    return out
