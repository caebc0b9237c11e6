"""Seeded fuzz of the cohort table (issue 9): mutated CSVs of a synthetic cohort.

Every mutated table must either load, or raise the project's own CohortError/LuDoseResponseError;
never another exception. Where the mutation must not matter (row order, column order, extra unknown
columns, CRLF line endings, quoting every field, a UTF-8 BOM, spaces after commas), the loaded
analysis inputs must equal those of the unmutated table: the truth is the unmutated table, not the
code's own earlier output. Where a mutation does matter and the table still loads, every analysed
value must satisfy the contract's rules (finite, dv in [0, 1], volumes > 0, responder = dv >= 0.66).
"""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pandas as pd
import pytest

from LuDoseResponseLib.errors import LuDoseResponseError
from LuDoseResponseLib.response.cohort import load_cohort_csv
from LuDoseResponseLib.response.synthetic_cohort import SyntheticCohortSpec, generate_cohort

N_NEUTRAL = 300
N_DESTRUCTIVE = 1500
ANALYSIS_COLUMNS = ["patient", "tumor", "grade", "dose_gy", "activity_gbq", "baseline_volume_cm3", "dv"]


@pytest.fixture(scope="module")
def base_rows() -> list[list[str]]:
    df = generate_cohort(seed=21, spec=SyntheticCohortSpec(n_patients=20))[ANALYSIS_COLUMNS]
    rows = [ANALYSIS_COLUMNS] + [[str(v) if not isinstance(v, float) else repr(v) for v in r]
                                 for r in df.itertuples(index=False)]
    return rows


def _to_text(rows, *, lineterminator="\n", quoting=csv.QUOTE_MINIMAL) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator, quoting=quoting).writerows(rows)
    return buf.getvalue()


def _inputs(cohort) -> pd.DataFrame:
    t = cohort.table[ANALYSIS_COLUMNS + ["responder", "excluded"]]
    return t.sort_values("tumor").reset_index(drop=True)


def _load(tmp_path, text: str | bytes):
    p = tmp_path / "cohort.csv"
    if isinstance(text, str):
        p.write_text(text, encoding="utf-8", newline="")
    else:
        p.write_bytes(text)
    return load_cohort_csv(p)


def _neutral(rows, rng: random.Random):
    header, body = rows[0], [list(r) for r in rows[1:]]
    kinds = rng.sample(["shuffle", "columns", "extra", "crlf", "quote", "bom", "space"], k=rng.randint(1, 4))
    if "shuffle" in kinds:
        rng.shuffle(body)
    table = [header] + body
    if "columns" in kinds:
        order = list(range(len(header)))
        rng.shuffle(order)
        table = [[r[k] for k in order] for r in table]
    if "extra" in kinds:
        for j in range(rng.randint(1, 3)):
            table = [r + [f"note_{j}" if i == 0 else rng.choice(["", "x", "1.5", "a,b", 'say "hi"'])]
                     for i, r in enumerate(table)]
    if "space" in kinds:
        table = [[" " + c for c in r] for r in table]
    text = _to_text(table, lineterminator="\r\n" if "crlf" in kinds else "\n",
                    quoting=csv.QUOTE_ALL if "quote" in kinds else csv.QUOTE_MINIMAL)
    if "bom" in kinds:
        text = "\ufeff" + text
    return text, kinds


_LOOKALIKES = ["１", "٣", "_", "\u200b", "\u00a0", "\ufeff", ",", '"', "\n", "e", "-", ".", "nan", "inf", "",
               "1e999", "0x1", "é", "\u0301", "G3", "g1", "\x00"]


def _destructive(rows, rng: random.Random):
    table = [list(r) for r in rows]
    kind = rng.choice(["cell_char", "cell_replace", "dup_header", "drop_column", "dup_row", "truncate",
                       "bytes", "empty_cell", "swap_header", "extra_field", "missing_field"])
    i = rng.randrange(1, len(table))
    j = rng.randrange(len(table[0]))
    if kind == "cell_char":
        cell = table[i][j]
        k = rng.randrange(len(cell) + 1)
        table[i][j] = cell[:k] + rng.choice(_LOOKALIKES) + cell[k:]
    elif kind == "cell_replace":
        table[i][j] = rng.choice(_LOOKALIKES + ["-1", "1.0000001", "0", "1", "1e-300", "abc"])
    elif kind == "dup_header":
        table = [r + [r[j]] for r in table]
    elif kind == "drop_column":
        table = [r[:j] + r[j + 1:] for r in table]
    elif kind == "dup_row":
        table.insert(i, list(table[i]))
    elif kind == "empty_cell":
        table[i][j] = ""
    elif kind == "swap_header":
        table[0][j] = rng.choice(["Patient", "patient ", "dose", "dv\u200b", ""])
    elif kind == "extra_field":
        table[i] = table[i] + ["surplus"]
    elif kind == "missing_field":
        table[i] = table[i][:-1]
    text = _to_text(table)
    if kind == "truncate":
        return text[: rng.randrange(len(text))], kind
    if kind == "bytes":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), kind
    return text, kind


def _check_rules(cohort) -> None:
    t = cohort.table
    for col in ("dose_gy", "activity_gbq", "baseline_volume_cm3", "dv"):
        assert np.all(np.isfinite(t[col].to_numpy(float))), col
    assert np.all((t["dv"] >= 0) & (t["dv"] <= 1))
    assert np.all(t["baseline_volume_cm3"] > 0) and np.all(t["dose_gy"] >= 0)
    assert np.array_equal(t["responder"].to_numpy(), (t["dv"].to_numpy() >= 0.66).astype(int))
    assert set(t["grade"]) <= {"G1", "G2"}
    assert t["tumor"].is_unique
    assert not any(any(ch in s for ch in ("\u200b", "\ufeff", "\u00a0")) for s in t["patient"])


def test_neutral_mutations_give_the_unmutated_inputs(tmp_path, base_rows):
    truth = _inputs(_load(tmp_path, _to_text(base_rows)))
    rng = random.Random(9001)
    for case in range(N_NEUTRAL):
        text, kinds = _neutral(base_rows, rng)
        got = _inputs(_load(tmp_path, text))
        pd.testing.assert_frame_equal(got, truth, check_dtype=False, obj=f"case {case} {kinds}")


def test_destructive_mutations_give_a_project_error_or_a_valid_table(tmp_path, base_rows):
    rng = random.Random(4242)
    outcomes = {"error": 0, "loaded": 0}
    for case in range(N_DESTRUCTIVE):
        text, kind = _destructive(base_rows, rng)
        try:
            cohort = _load(tmp_path, text)
        except LuDoseResponseError as exc:
            assert str(exc), f"case {case} ({kind}): empty message"
            outcomes["error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case} ({kind}): {type(exc).__name__}: {exc}\n{text!r}"[:2000])
        _check_rules(cohort)
        outcomes["loaded"] += 1
    assert outcomes["error"] > 100 and outcomes["loaded"] > 50, outcomes  # both paths are exercised
