"""`analysis.json` carries every key of the contract (contracts/cohort-and-analysis.md), and the
demo writes every promised output.

The key lists below are transcribed from the contract, which other tools rely on; they are the
specification, not our output.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from LuDoseResponseLib.cli import main as cli_main

TOP = {"schema", "software", "input", "settings", "summary", "response_groups", "tcp", "roc", "dose_response",
       "baseline_volume", "warnings"}
SETTINGS = {"responder_threshold", "min_baseline_volume_cm3", "glmm_method", "bootstrap", "seed", "doses",
            "tcp_targets"}
SUMMARY = {"n_tumours", "n_patients", "n_responders", "n_nonresponders", "dose_median_gy", "dose_min_gy",
           "dose_max_gy", "dv_median", "baseline_volume_median_cm3"}
RESPONSE_GROUP = {"mean_nonresponder", "mean_responder", "se_nonresponder", "se_responder", "df_nonresponder",
                  "df_responder", "difference", "difference_se", "difference_df", "p_value", "p_value_satterthwaite",
                  "difference_df_satterthwaite", "sd_patient", "sd_residual", "loglik_reml", "singular", "warnings"}
TCP = {"formula", "method", "n_agq", "coefficients", "vcov", "random_intercept_sd", "loglik", "singular", "converged",
       "separation", "warnings", "per_grade", "curves"}
TCP_GRADE = {"intercept", "intercept_se", "slope_per_gy", "slope_se", "dose_at_tcp", "at_dose"}
TCP_AT = {"tcp", "ci_low", "ci_high", "odds", "odds_ci_low", "odds_ci_high"}
CURVE_TCP = {"dose_gy", "tcp", "se_eta", "ci_low", "ci_high"}
ROC = {"n_cases", "n_controls", "auc", "auc_ci_delong", "auc_ci_bootstrap", "bootstrap_n", "seed", "youden",
       "at_dose", "warnings"}
DOSE_RESPONSE = {"method", "estimator", "per_grade", "random_amplitude_sd", "residual_sd", "loglik", "shapiro_wilk",
                 "curves", "warnings"}
DR_GRADE = {"amplitude", "amplitude_se", "scale_gy", "scale_gy_se"}
BASELINE = {"mean_small", "mean_large", "difference", "difference_se", "p_value", "singular", "warnings"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert cli_main(["-q", "demo", "--out", str(out), "--bootstrap", "2000"]) == 0
    return out


def _has(d: dict, keys: set, where: str):
    missing = keys - set(d)
    assert not missing, f"{where}: missing contract keys {sorted(missing)}"


def _no_nan(obj, where="analysis.json"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_nan(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_nan(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), where


def test_demo_writes_every_output(demo_dir):
    for name in ("cohort.csv", "analysis.json", "tumours.csv", "report.html"):
        assert (demo_dir / name).is_file(), name
    for stem in ("fig_dose_by_response", "fig_tcp", "fig_dv_vs_dose", "fig_dv_by_volume"):
        for ext in ("png", "svg"):
            assert (demo_dir / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    html = (demo_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # self-contained
    assert "Tumour control probability" in html and "<table>" in html
    tumours = pd.read_csv(demo_dir / "tumours.csv")
    cohort = pd.read_csv(demo_dir / "cohort.csv")
    assert list(tumours["tumor"]) == list(cohort["tumor"])
    assert {"excluded", "exclusion_reason", "responder"} <= set(tumours.columns)
    assert not list(demo_dir.glob(".*tmp*")), "temporary files left behind"


def test_analysis_json_has_every_contract_key(demo_dir):
    a = json.loads((demo_dir / "analysis.json").read_text())
    _no_nan(a)
    _has(a, TOP, "top level")
    assert a["schema"] == "ludoseresponse.analysis/1"
    assert a["software"]["name"] == "LuDoseResponse" and a["software"]["version"]
    _has(a["input"], {"path", "sha256", "n_rows", "n_excluded"}, "input")
    assert len(a["input"]["sha256"]) == 64
    _has(a["settings"], SETTINGS, "settings")
    for g in ("all", "G1", "G2"):
        _has(a["summary"][g], SUMMARY, f"summary.{g}")
    for g in ("G1", "G2"):
        for v in ("dose_gy", "activity_gbq"):
            _has(a["response_groups"][g][v], RESPONSE_GROUP, f"response_groups.{g}.{v}")
    tcp = a["tcp"]
    _has(tcp, TCP, "tcp")
    assert set(tcp["coefficients"]) == {"(Intercept)", "dose_gy", "dose_gy:gradeG2"}
    assert tcp["vcov"]["names"] == ["(Intercept)", "dose_gy", "dose_gy:gradeG2"]
    for g in ("G1", "G2"):
        pg = tcp["per_grade"][g]
        _has(pg, TCP_GRADE, f"tcp.per_grade.{g}")
        assert set(pg["dose_at_tcp"]) == {"0.5", "0.9"}
        assert set(pg["at_dose"]) == {"76", "135"}
        for d in pg["at_dose"].values():
            _has(d, TCP_AT, f"tcp.per_grade.{g}.at_dose")
        _has(tcp["curves"][g], CURVE_TCP, f"tcp.curves.{g}")
        _has(a["roc"][g], ROC, f"roc.{g}")
        assert set(a["roc"][g]["at_dose"]) == {"76", "135"}
        for y in a["roc"][g]["youden"]:
            _has(y, {"threshold_gy", "sensitivity", "specificity"}, f"roc.{g}.youden")
        _has(a["baseline_volume"][g], BASELINE, f"baseline_volume.{g}")
    for variant, grades in (("G2_only", ("G2",)), ("both_grades", ("G1", "G2"))):
        dr = a["dose_response"][variant]
        _has(dr, DOSE_RESPONSE, f"dose_response.{variant}")
        assert dr["method"] == "ML" and dr["estimator"] == "lindstrom-bates"
        for g in grades:
            _has(dr["per_grade"][g], DR_GRADE, f"dose_response.{variant}.per_grade.{g}")
            _has(dr["curves"][g], {"dose_gy", "dv", "ci_low", "ci_high"}, f"dose_response.{variant}.curves.{g}")
        _has(dr["shapiro_wilk"], {"w", "p_value"}, f"dose_response.{variant}.shapiro_wilk")
    assert a["baseline_volume"]["cutoff_cm3"] == 30


def test_options_are_honoured(tmp_path):
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

    csv = tmp_path / "c.csv"
    # the responder column follows the 0.66 rule, so it is dropped when another threshold is chosen
    generate_cohort(seed=5).drop(columns="responder").to_csv(csv, index=False)
    rc = cli_main(["-q", "analyze", str(csv), "--out", str(tmp_path / "o"), "--doses", "50,100,150",
                   "--tcp-targets", "0.8", "--bootstrap", "500", "--seed", "4", "--responder-threshold", "0.6",
                   "--min-baseline-volume", "10"])
    assert rc == 0
    a = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert a["settings"]["doses"] == [50.0, 100.0, 150.0] and a["settings"]["tcp_targets"] == [0.8]
    assert a["settings"]["responder_threshold"] == 0.6 and a["settings"]["min_baseline_volume_cm3"] == 10
    df = pd.read_csv(csv)
    kept = df[df["baseline_volume_cm3"] >= 10]
    assert a["input"]["n_excluded"] == int((df["baseline_volume_cm3"] < 10).sum())
    assert a["summary"]["all"]["n_responders"] == int((kept["dv"] >= 0.6).sum())
    for g in ("G1", "G2"):
        assert set(a["tcp"]["per_grade"][g]["at_dose"]) == {"50", "100", "150"}
        assert set(a["tcp"]["per_grade"][g]["dose_at_tcp"]) == {"0.8"}
        assert a["roc"][g]["bootstrap_n"] == 500 and a["roc"][g]["seed"] == 4


def test_report_command_rebuilds_report(demo_dir):
    (demo_dir / "report.html").unlink()
    assert cli_main(["-q", "report", str(demo_dir)]) == 0
    assert (demo_dir / "report.html").is_file()


def test_report_command_on_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "analysis.json not found" in capsys.readouterr().err


def test_all_cycles_block_is_the_response_group_analysis_of_the_all_cycles_columns(demo_dir, tmp_path):
    """The complementary all-cycles analysis must be exactly the main analysis run on a table whose
    dose, activity and Δv columns are the all-cycles ones (an identity of definitions, not a stored output)."""
    a = json.loads((demo_dir / "analysis.json").read_text())
    cohort = pd.read_csv(demo_dir / "cohort.csv")
    assert (cohort["dose_all_cycles_gy"] >= cohort["dose_gy"]).all()
    assert (cohort["dv_all_cycles"] < cohort["dv"]).any()  # some tumours regrew after an early best response
    swapped = cohort.drop(columns=["dose_gy", "activity_gbq", "dv", "responder"]).rename(
        columns={"dose_all_cycles_gy": "dose_gy", "activity_all_cycles_gbq": "activity_gbq", "dv_all_cycles": "dv"})
    csv = tmp_path / "swapped.csv"
    swapped.to_csv(csv, index=False)
    assert cli_main(["-q", "analyze", str(csv), "--out", str(tmp_path / "o"), "--bootstrap", "0"]) == 0
    b = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert "response_groups_all_cycles" not in b
    assert a["response_groups_all_cycles"] == b["response_groups"]


def test_settings_refuse_a_negative_or_fractional_seed():
    """From Python, as from the CLI, a bootstrap seed must be a whole number >= 0 (numpy would fail deep inside)."""
    from LuDoseResponseLib.analysis import AnalysisSettings
    from LuDoseResponseLib.errors import InputError

    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="seed must be a whole number"):
            AnalysisSettings(seed=bad)
    assert AnalysisSettings(seed=0).seed == 0
