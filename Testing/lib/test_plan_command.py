"""``ludoseresponse plan``: end to end on a dosimetry folder, its outputs, and its user errors (exit 2, one line).

Kidney dosimetry (organ_cycles.csv) comes from the organ pipeline; here the test writes it into the
dosimetry folder in the column layout fixed for it, with BEDs from dosimetry.bed.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from LuDoseResponseLib.cli import main
from LuDoseResponseLib.dosimetry.bed import bed_mono_exponential

ORGAN_COLUMNS = ["organ", "cycle", "administered_activity_mbq", "dose_gy", "dose_sd_gy", "dose_per_gbq_gy", "t_eff_h",
                 "t_eff_sd_h", "bed_gy", "bed_sd_gy", "mass_g", "model", "warnings"]


def write_organ_cycles(folder, activities_mbq, kidney_gy_per_gbq=(0.55, 0.48), t_eff_h=48.0):
    rows = []
    for organ, k in zip(("Kidney_L", "Kidney_R"), kidney_gy_per_gbq, strict=True):
        for n, a in activities_mbq.items():
            dose = k * a / 1000.0
            bed = bed_mono_exponential(dose, t_eff_h, dose_sd_gy=0.07 * dose, t_eff_sd_h=2.0)
            rows.append({"organ": organ, "cycle": n, "administered_activity_mbq": a, "dose_gy": dose,
                         "dose_sd_gy": 0.07 * dose, "dose_per_gbq_gy": k, "t_eff_h": t_eff_h, "t_eff_sd_h": 2.0,
                         "bed_gy": bed.bed_gy, "bed_sd_gy": bed.sd_gy, "mass_g": 160.0, "model": "mono",
                         "warnings": ""})
    pd.DataFrame(rows, columns=ORGAN_COLUMNS).to_csv(folder / "organ_cycles.csv", index=False)


def write_dosimetry(folder, *, grade="G2", organs=True, tumour_doses=((31.0, 27.5), (18.0, 16.4))):
    folder.mkdir(parents=True)
    activities = {1: 7400.0, 2: 7350.0}
    (folder / "run.json").write_text(json.dumps({
        "patient": {"id": "P7", "grade": grade},
        "study": {"cycles": [{"number": n, "activity_mbq": a} for n, a in activities.items()]}}))
    rows = [{"tumor": f"P7.T{i + 1}", "cycle": n, "dose_gy": d, "dose_sd_gy": 0.06 * d, "tia_mbq_h": 1.0,
             "mass_g": 25.0, "model": "mono", "t_eff_h": 90.0}
            for i, doses in enumerate(tumour_doses) for n, d in zip(activities, doses, strict=True)]
    pd.DataFrame(rows).to_csv(folder / "tumour_cycles.csv", index=False)
    if organs:
        write_organ_cycles(folder, activities)
    return folder


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if not x.startswith(("INFO:", "WARNING:", "DEBUG:"))]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("ludoseresponse plan: error: "), err
    assert match in lines[0], err


def test_plan_from_a_dosimetry_folder(tmp_path, capsys):
    dosimetry = write_dosimetry(tmp_path / "dosimetry")
    before = _tree(dosimetry)
    out = tmp_path / "out"
    assert main(["-q", "plan", "--dosimetry", str(dosimetry), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RESEARCH TOOL" in printed and "overall:" in printed
    files = sorted(p.name for p in (out / "plan").iterdir())
    assert files == ["ludoseresponse-run.json", "plan.csv", "plan.json", "plan.png"]
    assert (out / "plan" / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads((out / "plan" / "plan.json").read_text())
    assert plan["schema"] == "ludoseresponse.plan/1" and "NOT FOR CLINICAL" in plan["notice"]
    assert len(plan["assumptions"]) >= 8
    best = plan["schedules"][plan["recommended"]["overall"]]
    assert best["max_kidney_bed_gy"] <= 27.0 and best["feasible"]
    assert set(best["kidneys"]) == {"Kidney_L", "Kidney_R"} and set(best["tumours"]) == {"P7.T1", "P7.T2"}
    # received doses are the measured sums
    assert plan["received"]["tumours"]["P7.T1"]["dose_gy"] == pytest.approx(31.0 + 27.5)
    table = pd.read_csv(out / "plan" / "plan.csv")
    assert len(table) == 4 * len(plan["schedules"])       # 2 tumours + 2 kidneys per schedule
    assert table.loc[table["recommended"] == 1, "schedule"].unique().tolist() == [best["id"]]
    assert _tree(dosimetry) == before                       # the input is never written
    # the 40 Gy limit (Iluminet, younger patients) allows more: re-running replaces the plan
    assert main(["-q", "plan", "--dosimetry", str(dosimetry), "--out", str(out), "--kidney-bed-limit", "40"]) == 0
    again = json.loads((out / "plan" / "plan.json").read_text())
    best40 = again["schedules"][again["recommended"]["fixed"]]
    assert best40["max_kidney_bed_gy"] <= 40.0
    assert best40["n_further_cycles"] > plan["schedules"][plan["recommended"]["fixed"]]["n_further_cycles"]
    # holding the upper 95 % bound to the limit is more cautious than holding the mean
    assert main(["-q", "plan", "--dosimetry", str(dosimetry), "--out", str(out), "--kidney-limit-on", "upper95"]) == 0
    safe = json.loads((out / "plan" / "plan.json").read_text())
    best_safe = safe["schedules"][safe["recommended"]["overall"]]
    assert max(k["bed_ci_high_gy"] for k in best_safe["kidneys"].values()) <= 27.0
    assert best_safe["max_kidney_bed_gy"] < best["max_kidney_bed_gy"]
    assert "upper 95 % bound of the cumulative BED" in " ".join(safe["assumptions"])


def test_plan_without_kidney_dosimetry_is_a_clear_error(tmp_path, capsys):
    dosimetry = write_dosimetry(tmp_path / "d", organs=False)
    _one_error(capsys, ["plan", "--dosimetry", str(dosimetry), "--out", str(tmp_path / "o")],
               "has no organ_cycles.csv: a plan needs kidney dosimetry")
    assert not (tmp_path / "o").exists()


def test_limit_below_received_bed_names_the_option(tmp_path, capsys):
    dosimetry = write_dosimetry(tmp_path / "d")
    _one_error(capsys, ["plan", "--dosimetry", str(dosimetry), "--out", str(tmp_path / "o"), "--kidney-bed-limit", "5"],
               "raise --kidney-bed-limit")


def test_cohort_model_without_the_grade(tmp_path, capsys):
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort
    from LuDoseResponseLib.stats.tcp import tcp_analysis

    cohort = generate_cohort(seed=4)
    g1 = cohort[cohort["grade"] == "G1"]
    result = tcp_analysis(g1["dose_gy"], g1["grade"], g1["responder"], g1["patient"])
    model = tmp_path / "analysis.json"
    model.write_text(json.dumps({"schema": "ludoseresponse.analysis/1", "tcp": result.to_dict()}))
    dosimetry = write_dosimetry(tmp_path / "d")
    _one_error(capsys, ["plan", "--dosimetry", str(dosimetry), "--out", str(tmp_path / "o"), "--cohort-model",
                        str(model)], "has no TCP curve for grade G2")
    # a G1 patient is planned with that model, while the paper's curve has no G1
    g1_patient = write_dosimetry(tmp_path / "g1", grade="G1")
    assert main(["-q", "plan", "--dosimetry", str(g1_patient), "--out", str(tmp_path / "o1"), "--cohort-model",
                 str(model)]) == 0
    capsys.readouterr()
    _one_error(capsys, ["plan", "--dosimetry", str(g1_patient), "--out", str(tmp_path / "o2")],
               "give --cohort-model")


@pytest.mark.parametrize(("extra", "match"), [
    (["--activity-range", "11.1,3.7"], "the --activity-range low bound (11.1) exceeds"),
    (["--activity-range", "3.7"], "--activity-range: give two numbers"),
    (["--kidney-bed-limit", "nan"], "--kidney-bed-limit: 'nan' is not a number"),
    (["--tumour-cv", "0"], "--tumour-cv must be a finite number > 0"),
    (["--max-cycles", "0"], "--max-cycles must be a whole number"),
])
def test_bad_options(tmp_path, capsys, extra, match):
    dosimetry = write_dosimetry(tmp_path / "d")
    _one_error(capsys, ["plan", "--dosimetry", str(dosimetry), "--out", str(tmp_path / "o"), *extra], match)


def test_manifest_or_dosimetry_not_both(tmp_path, capsys):
    dosimetry = write_dosimetry(tmp_path / "d")
    _one_error(capsys, ["plan", "--out", str(tmp_path / "o")], "give either MANIFEST")
    _one_error(capsys, ["plan", "x.toml", "--dosimetry", str(dosimetry), "--out", str(tmp_path / "o")],
               "give either MANIFEST")
    _one_error(capsys, ["plan", "--dosimetry", str(dosimetry), "--out", str(dosimetry)], "inside the dosimetry folder")


def test_plan_runs_the_dosimetry_of_a_manifest(tmp_path, capsys):
    """The manifest route: DIR/dosimetry is the pipeline's output (the phantom has kidney VOIs), and the plan
    starts from what the pipeline measured: tumour doses of tumour_cycles.csv, kidney BED of run.json."""
    from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
    from LuDoseResponseLib.pipeline.phantoms import write_patient

    manifest = write_patient(make_patient("P01", seed=3, scan_hours=(4.0, 24.0, 96.0, 168.0)), tmp_path / "pt")
    out = tmp_path / "out"
    rc = main(["-q", "plan", str(manifest), "--out", str(out), "--grade", "G2"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "dosimetry" / "organ_cycles.csv").is_file()
    plan = json.loads((out / "plan" / "plan.json").read_text())
    tumours = pd.read_csv(out / "dosimetry" / "tumour_cycles.csv")
    assert set(plan["received"]["tumours"]) == set(tumours["tumor"])
    for name, group in tumours.groupby("tumor"):
        assert plan["received"]["tumours"][name]["dose_gy"] == pytest.approx(group["dose_gy"].sum())
    organs = json.loads((out / "dosimetry" / "run.json").read_text())["organs"]
    for name, received in plan["received"]["kidneys"].items():
        assert received["bed_gy"] == pytest.approx(organs[name]["cumulative_bed_gy"], rel=1e-9)
