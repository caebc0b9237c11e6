"""Assembly of per-cycle doses and follow-up volumes into cohort-table rows.

The crafted patient has analytic per-cycle doses (mono-exponential dose rates, D = Ḋ0/λ), known
segment voxel counts, and follow-ups chosen so that v_max comes after baseline for one tumour
and the best response comes before the last cycle for another.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import pytest
import SimpleITK as sitk

from LuDoseResponseLib.dosimetry.integration import time_integral
from LuDoseResponseLib.dosimetry.uncertainty import cycle_dose_uncertainty
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.response.tumour_rows import (
    CYCLE_COLUMNS,
    TUMOUR_COLUMNS,
    CycleAdministration,
    TumourCycleDose,
    tumour_cycles_table,
    tumour_rows,
)
from LuDoseResponseLib.response.volumetry import VolumeSeries, volumes_over_time

CONTRACT_COLUMNS = ("patient", "tumor", "grade", "dose_gy", "activity_gbq", "baseline_volume_cm3", "dv",
                    "responder", "dose_gy_sd", "dose_all_cycles_gy", "activity_all_cycles_gbq", "n_cycles",
                    "best_response_before_last_cycle", "t_vmin_days")
ADMIN = [CycleAdministration(1, datetime(2019, 3, 4, 9, 30), 7400.0),
         CycleAdministration(2, datetime(2019, 5, 13, 9, 0), 7350.0),
         CycleAdministration(3, datetime(2019, 7, 22, 10, 0), 7420.0),
         CycleAdministration(4, datetime(2019, 9, 30, 9, 45), 7380.0)]
T_H = np.array([1.0, 24.0, 96.0, 168.0])
T_HALF_H = 6.647 * 24.0


def _cycle_doses(name, rate0_gy_per_h, t_biol_h, rel_sd=0.04, cal=0.03):
    """Per-cycle doses from analytic dose-rate curves; returns (doses, truths)."""
    out, truth = [], []
    for k, (r0, tb) in enumerate(zip(rate0_gy_per_h, t_biol_h, strict=True), start=1):
        lam = math.log(2) / T_HALF_H + math.log(2) / tb
        rates = r0 * np.exp(-lam * T_H)
        integral = time_integral(T_H, rates, model="mono", values_sd=rel_sd * rates)
        budget = cycle_dose_uncertainty(integral.value, fit_sd_gy=integral.sd, calibration_rel_sd=cal,
                                        volume_rel_sd=0.05)
        out.append(TumourCycleDose.from_integral(name, k, integral, uncertainty=budget, mass_g=21.0))
        truth.append(r0 / lam)
    return out, truth


def _box_scans(tmp_path, volumes_voxels):
    """One .seg.nrrd per follow-up; each tumour a box of the given voxel count (1 mm³ voxels)."""
    scans = []
    for i, (when, counts) in enumerate(volumes_voxels):
        arr = np.zeros((40, 40, 40), np.uint8)
        img_segments = []
        for j, (tumour, n) in enumerate(counts.items()):
            flat = arr[j * 10:(j + 1) * 10].reshape(-1)   # view into a 10×40×40 slab
            flat[:n] = j + 1
            img_segments.append((tumour, j + 1))
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((1.0, 1.0, 1.0))
        for k, (tumour, value) in enumerate(img_segments):
            img.SetMetaData(f"Segment{k}_Name", tumour)
            img.SetMetaData(f"Segment{k}_LabelValue", str(value))
            img.SetMetaData(f"Segment{k}_Layer", "0")
        path = tmp_path / f"fu{i}.seg.nrrd"
        sitk.WriteImage(img, str(path), True)
        scans.append((when, path))
    return scans


def _patient(tmp_path):
    # T1: v_max at baseline, best response after the last cycle (Δv = (9000 − 2000)/9000)
    # T2: v_max at the first follow-up, best response (2019-06-20) before cycles 3 and 4
    follow = [(date(2019, 2, 20), {"T1": 9000, "T2": 5000}),
              (date(2019, 4, 25), {"T1": 8000, "T2": 6000}),
              (date(2019, 6, 20), {"T1": 5000, "T2": 1800}),
              (date(2019, 11, 15), {"T1": 2000, "T2": 2500}),
              (date(2020, 3, 1), {"T1": 2400, "T2": 3000})]
    volumes = volumes_over_time(_box_scans(tmp_path, follow))
    d1, truth1 = _cycle_doses("T1", [0.30, 0.28, 0.26, 0.25], [120.0, 110.0, 100.0, 90.0])
    d2, truth2 = _cycle_doses("T2", [0.50, 0.42, 0.35, 0.30], [60.0, 55.0, 50.0, 45.0])
    return volumes, d1 + d2, truth1, truth2


def test_rows_sums_and_flags(tmp_path):
    volumes, doses, truth1, truth2 = _patient(tmp_path)
    df = tumour_rows("P007", "G2", ADMIN, doses, volumes)
    assert tuple(df.columns) == TUMOUR_COLUMNS
    assert set(CONTRACT_COLUMNS) <= set(df.columns)
    r1 = df.set_index("tumor").loc["P007.T1"]
    r2 = df.set_index("tumor").loc["P007.T2"]
    acts = [a.activity_mbq for a in ADMIN]
    # T1: best response on 2019-11-15, after all four cycles
    assert r1["dose_gy"] == pytest.approx(sum(truth1), rel=1e-9)
    assert r1["dose_all_cycles_gy"] == r1["dose_gy"]
    assert r1["activity_gbq"] == pytest.approx(sum(acts) / 1000, rel=1e-15)
    assert r1["dv"] == pytest.approx(7000 / 9000, rel=1e-12) and r1["responder"] == 1
    assert r1["baseline_volume_cm3"] == pytest.approx(9.0, rel=1e-12)
    assert r1["best_response_before_last_cycle"] == 0 and r1["n_cycles_until_best_response"] == 4
    assert r1["t_vmin_days"] == (date(2019, 11, 15) - date(2019, 2, 20)).days
    # T2: v_max 6.0 cm³ on 2019-04-25 (after baseline), v_min 1.8 cm³ on 2019-06-20, before cycles 3 and 4
    assert r2["vmax_cm3"] == pytest.approx(6.0, rel=1e-12) and r2["vmax_date"] == "2019-04-25"
    assert r2["vmin_cm3"] == pytest.approx(1.8, rel=1e-12)
    assert r2["dv"] == pytest.approx(0.7, rel=1e-12) and r2["responder"] == 1
    assert r2["best_response_before_last_cycle"] == 1 and r2["n_cycles_until_best_response"] == 2
    assert r2["dose_gy"] == pytest.approx(truth2[0] + truth2[1], rel=1e-9)
    assert r2["dose_all_cycles_gy"] == pytest.approx(sum(truth2), rel=1e-9)
    assert r2["activity_gbq"] == pytest.approx((acts[0] + acts[1]) / 1000, rel=1e-15)
    assert r2["activity_all_cycles_gbq"] == pytest.approx(sum(acts) / 1000, rel=1e-15)
    # complementary scoring after all treatment: T2's CTs after the last cycle hold 2.5 and 3.0 cm³,
    # so Δv_after = (6.0 − 2.5)/6.0; T1's best response already came after the last cycle
    assert r2["dv_all_cycles"] == pytest.approx(3.5 / 6.0, rel=1e-12)
    assert r1["dv_all_cycles"] == pytest.approx(r1["dv"], rel=1e-15)
    assert r2["baseline_volume_cm3"] == pytest.approx(5.0, rel=1e-12)
    # SDs: independent cycles, √Σσ² over the same cycles
    sd2 = [d.dose_sd_gy for d in doses if d.tumor == "T2"]
    assert r2["dose_gy_sd"] == pytest.approx(math.hypot(sd2[0], sd2[1]), rel=1e-12)
    assert r2["dose_all_cycles_gy_sd"] == pytest.approx(math.sqrt(sum(s * s for s in sd2)), rel=1e-12)
    # each cycle: √(u_cal² + (s_V·u_V)² + (fit/D)²) with u_cal = 3 %, u_V = 5 %, fit from 4 % per sample
    assert all(0.058 < s / t < 0.07 for s, t in zip(sd2, truth2, strict=True))
    assert r1["n_cycles"] == 4 and r1["grade"] == "G2" and r1["patient"] == "P007"


def test_correlated_calibration_option(tmp_path):
    volumes, doses, _, _ = _patient(tmp_path)
    indep = tumour_rows("P007", "G2", ADMIN, doses, volumes).set_index("tumor")
    corr = tumour_rows("P007", "G2", ADMIN, doses, volumes, calibration_correlation=1.0).set_index("tumor")
    t1 = [d for d in doses if d.tumor == "T1"]
    s = np.array([d.dose_sd_gy for d in t1])
    c = np.array([d.calibration_sd_gy for d in t1])
    assert np.allclose(c, 0.03 * np.array([d.dose_gy for d in t1]), rtol=1e-12)
    expected = math.sqrt(float(np.sum(s ** 2) + c.sum() ** 2 - np.sum(c ** 2)))
    assert corr.loc["P007.T1", "dose_all_cycles_gy_sd"] == pytest.approx(expected, rel=1e-12)
    assert corr.loc["P007.T1", "dose_all_cycles_gy_sd"] > indep.loc["P007.T1", "dose_all_cycles_gy_sd"]


def test_rows_pass_cohort_validation(tmp_path):
    """The rows are a valid cohort table for the lead's cohort.py (written and read back as CSV)."""
    import pandas as pd

    from LuDoseResponseLib.response.cohort import load_cohort_csv

    volumes, doses, _, _ = _patient(tmp_path)
    other = tumour_rows("P008", "G1", ADMIN[:2], [TumourCycleDose("T1", k, 20.0, 2.0) for k in (1, 2)],
                        {"T1": VolumeSeries("T1", (date(2019, 2, 1), date(2019, 8, 1)), (12.0, 9.0))})
    df = pd.concat([tumour_rows("P007", "G2", ADMIN, doses, volumes), other], ignore_index=True)
    path = tmp_path / "tumours.csv"
    df.to_csv(path, index=False)
    cohort = load_cohort_csv(path)
    assert cohort.n_rows == 3
    assert list(cohort.table["responder"].astype(int)) == list(df["responder"])


def test_tumour_cycles_table_columns(tmp_path):
    _, doses, truth1, truth2 = _patient(tmp_path)
    table = tumour_cycles_table("P007", doses)
    assert tuple(table.columns[:len(CYCLE_COLUMNS)]) == CYCLE_COLUMNS
    assert len(table) == 8 and set(table["tumor"]) == {"P007.T1", "P007.T2"}
    t2 = table[table["tumor"] == "P007.T2"].sort_values("cycle")
    np.testing.assert_allclose(t2["dose_gy"], truth2, rtol=1e-9)
    assert (t2["model"] == "mono").all() and (t2["mass_g"] == 21.0).all()
    lam4 = math.log(2) / T_HALF_H + math.log(2) / 45.0
    assert t2["t_eff_h"].iloc[3] == pytest.approx(math.log(2) / lam4, rel=1e-9)


def test_no_shrinkage_uses_all_cycles():
    vols = {"T1": VolumeSeries("T1", (date(2019, 2, 1), date(2019, 6, 1)), (5.0, 5.0))}
    doses = [TumourCycleDose("T1", a.number, 10.0, 1.0) for a in ADMIN]
    df = tumour_rows("P1", "G1", ADMIN, doses, vols)
    assert df.loc[0, "dose_gy"] == 40.0 and df.loc[0, "dv"] == 0.0 and df.loc[0, "responder"] == 0
    assert "no cycle was administered before the best response" in df.loc[0, "warnings"]


def test_mismatches_are_errors():
    vols = {"T1": VolumeSeries("T1", (date(2019, 2, 1), date(2019, 10, 1)), (5.0, 2.0))}
    full = [TumourCycleDose("T1", a.number, 10.0, 1.0) for a in ADMIN]
    with pytest.raises(InputError, match=r"'T1' has no dose for cycle\(s\) \[3\]"):
        tumour_rows("P1", "G1", ADMIN, [d for d in full if d.cycle != 3], vols)
    with pytest.raises(InputError, match="'T9' has doses but no follow-up volumes"):
        tumour_rows("P1", "G1", ADMIN, full + [TumourCycleDose("T9", a.number, 1.0, 0.1) for a in ADMIN], vols)
    with pytest.raises(InputError, match="'T1' has follow-up volumes but no doses"):
        tumour_rows("P1", "G1", ADMIN, [TumourCycleDose("T2", a.number, 1.0, 0.1) for a in ADMIN],
                    {**vols, "T2": vols["T1"]})
    with pytest.raises(InputError, match="cycle 5, which was not administered"):
        tumour_rows("P1", "G1", ADMIN, full + [TumourCycleDose("T1", 5, 1.0, 0.1)], vols)
    with pytest.raises(InputError, match="unknown grade 'G3'"):
        tumour_rows("P1", "G3", ADMIN, full, vols)
    with pytest.raises(InputError, match="dose_gy must be finite"):
        TumourCycleDose("T1", 1, float("nan"), 1.0)
    with pytest.raises(InputError, match="activity_mbq must be a positive"):
        CycleAdministration(1, datetime(2019, 1, 1), 0.0)


def test_baseline_volume_zero_is_an_error():
    """The cohort table needs baseline_volume_cm3 > 0: a tumour first seen after baseline cannot be a row."""
    vols = {"T1": VolumeSeries("T1", (date(2019, 2, 1), date(2019, 6, 1)), (0.0, 5.0))}
    doses = [TumourCycleDose("T1", a.number, 10.0, 1.0) for a in ADMIN]
    with pytest.raises(InputError, match=r"tumour 'T1' has volume 0 on the baseline CT \(2019-02-01\)"):
        tumour_rows("P1", "G1", ADMIN, doses, vols)


def test_implausible_cycle_dose_is_a_warning():
    """Physics README §5: warn outside 0.1–100 Gy per cycle (e.g. mGy taken for Gy)."""
    vols = {"T1": VolumeSeries("T1", (date(2019, 2, 1), date(2019, 12, 1)), (10.0, 2.0))}
    doses = [TumourCycleDose("T1", a.number, d, 1.0) for a, d in zip(ADMIN, (20.0, 0.05, 150.0, 100.0), strict=True)]
    warnings = tumour_rows("P1", "G1", ADMIN, doses, vols).loc[0, "warnings"]
    assert "cycle 2: 0.05 Gy is outside the plausible 0.1–100 Gy" in warnings
    assert "cycle 3: 150 Gy is outside" in warnings
    assert "cycle 1:" not in warnings and "cycle 4:" not in warnings
