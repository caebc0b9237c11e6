"""Cohort table validation: every bad input gives a clear error naming row and column.

The expected row/column in each case is known by construction (the test plants one defect in a
valid table), so each assertion is independent of the code under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from LuDoseResponseLib.cli import main as cli_main
from LuDoseResponseLib.errors import CohortError
from LuDoseResponseLib.response.cohort import load_cohort_csv

GOOD = """patient,tumor,grade,dose_gy,activity_gbq,baseline_volume_cm3,dv,responder
P001,P001.T1,G1,150.0,44.4,12.0,0.70,1
P001,P001.T2,G1,80.0,44.4,3.5,0.30,0
P002,P002.T1,G2,120.0,29.6,40.0,0.80,1
P003,P003.T1,G2,60.0,29.6,8.0,0.20,0
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cohort.csv"
    p.write_text(text)
    return p


def _replace_cell(text: str, row: int, column: str, value: str) -> str:
    lines = text.strip().split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_good_table_rules_applied(tmp_path):
    c = load_cohort_csv(_write(tmp_path, GOOD))
    assert c.n_rows == 4
    # 3.5 cm3 < 4 cm3 is excluded by default (paper); 0 disables the cut-off
    assert c.n_excluded == 1
    assert list(c.included["tumor"]) == ["P001.T1", "P002.T1", "P003.T1"]
    assert c.table.loc[1, "exclusion_reason"].startswith("baseline volume < 4")
    assert load_cohort_csv(_write(tmp_path, GOOD), min_baseline_volume_cm3=0).n_excluded == 0
    # responder threshold is configurable: with 0.75, dv = 0.70 is a non-responder
    c75 = load_cohort_csv(_write(tmp_path, GOOD.replace(",0.70,1", ",0.70,0")), responder_threshold=0.75)
    assert list(c75.table["responder"]) == [0, 0, 1, 0]


def test_responder_column_is_optional_and_recomputed(tmp_path):
    df = pd.read_csv(pd.io.common.StringIO(GOOD)).drop(columns="responder")
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    c = load_cohort_csv(p)
    assert list(c.table["responder"]) == [1, 0, 1, 0]


def test_dv_equal_to_threshold_is_a_responder(tmp_path):
    text = _replace_cell(_replace_cell(GOOD, 4, "dv", "0.66"), 4, "responder", "1")
    c = load_cohort_csv(_write(tmp_path, text), min_baseline_volume_cm3=0)
    assert c.table.loc[3, "responder"] == 1


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t: t.replace(",activity_gbq", "", 1).replace(",44.4", "").replace(",29.6", ""),
         "missing column(s) activity_gbq"),
        (lambda t: _replace_cell(t, 2, "dose_gy", "abc"), "row 2 (line 3), column 'dose_gy': 'abc' is not a number"),
        (lambda t: _replace_cell(t, 3, "dose_gy", "-5"), "row 3 (line 4), column 'dose_gy': -5 is negative"),
        (lambda t: _replace_cell(t, 1, "dv", "1.2"), "row 1 (line 2), column 'dv': 1.2 is outside [0, 1]"),
        (lambda t: _replace_cell(t, 4, "tumor", "P001.T1"), "row 4 (line 5), column 'tumor': duplicate tumour id"),
        (lambda t: _replace_cell(t, 3, "grade", ""), "row 3 (line 4), column 'grade': empty value"),
        (lambda t: _replace_cell(t, 3, "grade", "G3"), "row 3 (line 4), column 'grade': unknown grade 'G3'"),
        (lambda t: _replace_cell(t, 1, "responder", "0"), "row 1 (line 2), column 'responder': 0 disagrees with dv"),
        (lambda t: _replace_cell(t, 2, "baseline_volume_cm3", "0"), "column 'baseline_volume_cm3': 0 is not positive"),
        (lambda t: _replace_cell(t, 2, "dose_gy", "nan"), "row 2 (line 3), column 'dose_gy': nan is not a finite"),
        (lambda t: t.replace(",0.70,1", ",0.50,0").replace(",0.80,1", ",0.60,0"), "no responders"),
        (lambda t: t.split("\n")[0] + "\n", "has no rows"),
    ],
)
def test_bad_input_is_a_clear_cohort_error(tmp_path, mutate, expected):
    p = _write(tmp_path, mutate(GOOD))
    with pytest.raises(CohortError) as err:
        load_cohort_csv(p)
    assert expected in str(err.value)
    assert str(p) in str(err.value)


def test_several_problems_are_all_reported(tmp_path):
    text = _replace_cell(_replace_cell(GOOD, 1, "dv", "2"), 3, "dose_gy", "x")
    with pytest.raises(CohortError) as err:
        load_cohort_csv(_write(tmp_path, text))
    assert "2 problem(s)" in str(err.value)
    assert "row 1 (line 2), column 'dv'" in str(err.value) and "row 3 (line 4), column 'dose_gy'" in str(err.value)


def test_mixed_grade_patient_is_a_warning(tmp_path):
    text = _replace_cell(GOOD, 2, "grade", "G2")
    c = load_cohort_csv(_write(tmp_path, text), min_baseline_volume_cm3=0)
    assert any("P001" in w and "both grades" in w for w in c.warnings)


def test_missing_file(tmp_path):
    with pytest.raises(CohortError, match="does not exist"):
        load_cohort_csv(tmp_path / "nope.csv")


def test_cli_bad_input_exits_nonzero_without_traceback_and_writes_nothing(tmp_path):
    p = _write(tmp_path, _replace_cell(GOOD, 2, "dose_gy", "abc"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "LuDoseResponseLib", "analyze", str(p), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "column 'dose_gy'" in proc.stderr and "row 2" in proc.stderr
    assert not (out / "analysis.json").exists()
    assert p.read_text() == _replace_cell(GOOD, 2, "dose_gy", "abc")  # input untouched


def test_cli_refuses_to_overwrite_its_input(tmp_path):
    p = tmp_path / "tumours.csv"
    p.write_text(GOOD)
    rc = cli_main(["-q", "analyze", str(p), "--out", str(tmp_path), "--bootstrap", "0"])
    assert rc == 2
    assert p.read_text() == GOOD


# ---- issue 9: look-alike numbers, invisible characters, duplicate headers, raw values in messages ----
@pytest.mark.parametrize("cell", ["１５０", "١٥٠", "1_000", "0x10", "1,5", "15O", "infinity"])
def test_non_ascii_or_grouped_numbers_are_rejected_showing_the_raw_cell(tmp_path, cell):
    # Python's float() reads every one of these except '1,5'/'15O' ('１５０' -> 150.0, '1_000' -> 1000.0)
    text = _replace_cell(GOOD, 2, "dose_gy", f'"{cell}"')
    with pytest.raises(CohortError) as err:
        load_cohort_csv(_write(tmp_path, text))
    message = str(err.value)
    assert "row 2 (line 3), column 'dose_gy'" in message
    assert cell in message


def test_dv_just_above_one_shows_the_written_value(tmp_path):
    text = _replace_cell(GOOD, 1, "dv", "1.0000001")
    with pytest.raises(CohortError) as err:
        load_cohort_csv(_write(tmp_path, text))
    assert "row 1 (line 2), column 'dv': 1.0000001 is outside [0, 1]" in str(err.value)


def test_duplicate_header_is_an_error_naming_the_column(tmp_path):
    lines = GOOD.strip().split("\n")
    text = "\n".join([lines[0] + ",dose_gy"] + [ln + ",1.0" for ln in lines[1:]]) + "\n"
    with pytest.raises(CohortError) as err:
        load_cohort_csv(_write(tmp_path, text))
    assert "duplicate column 'dose_gy'" in str(err.value)
    assert "header columns 4 and 9" in str(err.value)


def test_duplicate_header_after_normalisation_is_an_error(tmp_path):
    lines = GOOD.strip().split("\n")
    text = "\n".join([lines[0] + ",dv\u200b"] + [ln + ",0.1" for ln in lines[1:]]) + "\n"
    with pytest.raises(CohortError, match="duplicate column 'dv'"):
        load_cohort_csv(_write(tmp_path, text))


@pytest.mark.parametrize("decorated", ["P001\u200b", "\u200bP001", "P001\u00a0", "\ufeffP001", " P001 ",
                                       "P001\u2060"])
def test_invisible_characters_do_not_split_a_patient(tmp_path, decorated):
    text = _replace_cell(GOOD, 2, "patient", f'"{decorated}"')
    c = load_cohort_csv(_write(tmp_path, text), min_baseline_volume_cm3=0)
    assert list(c.table["patient"]) == ["P001", "P001", "P002", "P003"]
    if decorated.strip(" ") != "P001":  # plain spaces are stripped silently; anything else is reported
        assert any("column 'patient'" in w and "row 2 (line 3)" in w and repr(decorated) in w for w in c.warnings)


def test_nfc_normalisation_joins_composed_and_decomposed_ids(tmp_path):
    composed, decomposed = "P\u00e9", "Pe\u0301"  # 'Pé' written two ways
    text = _replace_cell(_replace_cell(GOOD, 1, "patient", composed), 2, "patient", decomposed)
    c = load_cohort_csv(_write(tmp_path, text), min_baseline_volume_cm3=0)
    assert c.table["patient"].nunique() == 3


def test_tumour_of_exactly_the_cutoff_volume_is_kept(tmp_path):
    # the paper excludes tumours "< 4 cm3": exactly 4.0 is kept, just below is excluded (a '<=' must fail here)
    text = _replace_cell(_replace_cell(GOOD, 2, "baseline_volume_cm3", "4.0"), 4, "baseline_volume_cm3", "3.999999")
    c = load_cohort_csv(_write(tmp_path, text))
    assert list(c.table["excluded"]) == [False, False, False, True]
    c8 = load_cohort_csv(_write(tmp_path, GOOD), min_baseline_volume_cm3=8.0)  # 8.0 cm3 exactly: kept
    assert list(c8.table["excluded"]) == [False, True, False, False]
