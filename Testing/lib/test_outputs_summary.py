"""The one summary writer (LuDoseResponseLib.analysis.summary.summary_text) of the CLI and Slicer panel.

The analysis dicts are written by hand here (the contract's layout), so the expected sentences
follow from the numbers in them, not from the code's earlier output.
"""

from __future__ import annotations

import pytest

from LuDoseResponseLib.analysis.summary import summary_text
from LuDoseResponseLib.errors import InputError


def _analysis(**blocks) -> dict:
    base = {
        "schema": "ludoseresponse.analysis/1",
        "input": {"n_rows": 69, "n_excluded": 3},
        "summary": {"all": {"n_tumours": 66, "n_patients": 31, "n_responders": 30}},
        "tcp": {"per_grade": {
            "G1": {"dose_at_tcp": {"0.5": {"dose_gy": 139.6}, "0.9": {"dose_gy": 250.2}}},
            "G2": {"dose_at_tcp": {"0.5": {"dose_gy": 81.5}, "0.9": {"dose_gy": None}}}}},
        "warnings": ["a", "b"],
    }
    return {**base, **blocks}


def test_counts_doses_per_target_and_warnings():
    assert summary_text(_analysis()) == (
        "66 tumours in 31 patients analysed (3 excluded), 30 responders. "
        "Dose for TCP 50 %: G1 140 Gy, G2 82 Gy; TCP 90 %: G1 250 Gy. "
        "2 warning(s): see analysis.json and report.html.")


def test_failed_tcp_model_no_exclusions_no_warnings_and_the_panel_hint():
    text = summary_text(_analysis(input={"n_rows": 66, "n_excluded": 0}, tcp={"error": "separation"}, warnings=[]),
                        "the tables' Warnings and Error columns")
    assert text == "66 tumours in 31 patients analysed, 30 responders. TCP model not estimated: separation."
    assert summary_text(_analysis(), "the tables' Warnings and Error columns").endswith(
        "2 warning(s): see the tables' Warnings and Error columns.")


def test_not_an_analysis_is_refused():
    with pytest.raises(InputError, match="analysis.json dict of schema"):
        summary_text({"schema": "other"})


def test_dose_ci_is_given_where_analysis_json_bounds_it():
    tcp = {"per_grade": {"G2": {"dose_at_tcp": {"0.9": {"dose_gy": 137.6, "ci_low": 94.2, "ci_high": 448.7}}},
                         "G1": {"dose_at_tcp": {"0.9": {"dose_gy": 496.6, "ci_low": None, "ci_high": None}}}}}
    assert "Dose for TCP 90 %: G1 497 Gy, G2 138 Gy (95 % CI 94-449)." in summary_text(_analysis(tcp=tcp))
