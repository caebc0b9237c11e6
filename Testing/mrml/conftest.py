"""Fixtures for the MRML bridge tests: real MRML from the PyPI package ``slicer-core``.

With ``LUDR_REQUIRE_SLICER_CORE`` set (CI), a missing or wrong ``slicer`` package is an error:
a green run without these tests would hide a broken bridge. Without it (a developer machine),
the tests here are not collected and the run's summary says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REQUIRE_SLICER_CORE = bool(os.environ.get("LUDR_REQUIRE_SLICER_CORE"))


def _slicerCoreProblem() -> str | None:
    """Why slicer-core cannot be used here, or None when it can."""
    try:
        import slicer
    except ImportError as exc:
        return f"slicer-core is not installed ({exc}); pip install slicer-core"
    if not hasattr(slicer, "vtkMRMLScene"):  # e.g. the unrelated PyPI package 'slicer' shadows it
        return f"'slicer' imported from {getattr(slicer, '__file__', '?')} is not slicer-core"
    return None


SLICER_CORE_PROBLEM = _slicerCoreProblem()
if SLICER_CORE_PROBLEM and REQUIRE_SLICER_CORE:
    raise ImportError(f"LUDR_REQUIRE_SLICER_CORE is set: {SLICER_CORE_PROBLEM}")
if SLICER_CORE_PROBLEM:
    # A conftest cannot skip; leave the test files uncollected and say so in the summary.
    collect_ignore_glob = ["test_*.py"]

    def pytest_terminal_summary(terminalreporter):
        terminalreporter.write_line(f"Testing/mrml NOT RUN: {SLICER_CORE_PROBLEM}", yellow=True, bold=True)
else:
    import slicer

MODULE_DIR = Path(__file__).resolve().parents[2] / "LuDoseResponse"
if str(MODULE_DIR) not in sys.path:  # the bridge package lives in the module folder, as in Slicer
    sys.path.insert(0, str(MODULE_DIR))


class HeadlessScene:
    """A scene with what the application's module logics would have set up: segmentation
    converter rules, default colour tables, the colour-legend node class, and a cache/IO
    manager (needed to read .mrb bundles)."""

    def __init__(self, cacheDir: Path):
        self.scene = slicer.vtkMRMLScene()
        self.segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentationsLogic.SetMRMLScene(self.scene)
        self.colorLogic = slicer.vtkMRMLColorLogic()
        self.colorLogic.SetMRMLScene(self.scene)
        self.scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
        self.cacheManager = slicer.vtkCacheManager()
        cacheDir.mkdir(parents=True, exist_ok=True)
        self.cacheManager.SetRemoteCacheDirectory(str(cacheDir))
        self.ioManager = slicer.vtkDataIOManager()
        self.ioManager.SetCacheManager(self.cacheManager)
        self.scene.SetCacheManager(self.cacheManager)
        self.scene.SetDataIOManager(self.ioManager)

    def close(self) -> None:
        self.segmentationsLogic.SetMRMLScene(None)
        self.colorLogic.SetMRMLScene(None)
        self.scene.Clear(1)


@pytest.fixture
def scene_factory(tmp_path):
    """Call it to get a fresh headless scene (several per test for save/load round trips)."""
    made: list[HeadlessScene] = []

    def make():
        holder = HeadlessScene(tmp_path / f"cache{len(made)}")
        made.append(holder)
        return holder.scene

    yield make
    for holder in made:
        holder.close()


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """Two tiny phantoms (P07, P08) written and run through the command line: {id: (spec, manifest, out)}."""
    from phantom_scene import writeAndRunPhantom

    root = tmp_path_factory.mktemp("mrml_phantoms")
    return {patient: writeAndRunPhantom(root, patient, seed) for patient, seed in (("P07", 5), ("P08", 9))}


@pytest.fixture(scope="module")
def module_scene(tmp_path_factory):
    """One headless scene shared by a test module (for results that are expensive to make)."""
    holder = HeadlessScene(tmp_path_factory.mktemp("module_cache"))
    yield holder.scene
    holder.close()


@pytest.fixture
def scene(scene_factory):
    """A fresh headless scene set up like the application's."""
    return scene_factory()


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def analysis_dict() -> dict:
    """A hand-made analysis.json following contracts/cohort-and-analysis.md, with consistent
    curves (logistic TCP with a delta-method CI, asymptotic dose-response), one block that
    failed ({"error": ...}) and a few missing numbers (None)."""
    dose = np.arange(0.0, 405.0, 5.0)
    tcp_per_grade, tcp_curves, dr_curves = {}, {}, {}
    params = {"G1": (-2.9, 0.021, 0.64, -0.0035, 2.4e-5), "G2": (-2.9, 0.045, 0.64, -0.0035, 8.1e-5)}
    for grade, (a, b, vaa, vab, vbb) in params.items():
        eta = a + b * dose
        se = np.sqrt(vaa + 2 * dose * vab + dose**2 * vbb)
        tcp_curves[grade] = {"dose_gy": dose.tolist(), "tcp": _expit(eta).tolist(), "se_eta": se.tolist(),
                             "ci_low": _expit(eta - 1.96 * se).tolist(), "ci_high": _expit(eta + 1.96 * se).tolist()}
        tcp_per_grade[grade] = {
            "intercept": a, "intercept_se": vaa**0.5, "slope_per_gy": b, "slope_se": vbb**0.5,
            "dose_at_tcp": {"0.5": {"dose_gy": -a / b, "se": 11.5},
                            "0.9": {"dose_gy": (np.log(9) - a) / b, "se": None}},
            "at_dose": {d: {"tcp": float(_expit(a + b * float(d))), "ci_low": 0.2, "ci_high": 0.8,
                            "odds": float(np.exp(a + b * float(d))), "odds_ci_low": 0.3, "odds_ci_high": 4.0}
                        for d in ("76", "135")},
        }
        amplitude, scale = {"G1": (0.74, 61.0), "G2": (0.78, 32.0)}[grade]
        dv = amplitude * (1 - np.exp(-dose / scale))
        dr_curves[grade] = {"dose_gy": dose.tolist(), "dv": dv.tolist(), "ci_low": (dv - 0.08).tolist(),
                            "ci_high": (dv + 0.08).tolist()}

    def lmm_block(mean0, mean1):
        return {"mean_nonresponder": mean0, "mean_responder": mean1, "se_nonresponder": 9.1, "se_responder": 8.7,
                "df_nonresponder": 17.2, "df_responder": 15.9, "difference": mean1 - mean0, "difference_se": 12.0,
                "difference_df": 20.4, "p_value": 0.0123, "p_value_satterthwaite": 0.0119,
                "difference_df_satterthwaite": 20.9, "sd_patient": 31.0, "sd_residual": 40.5, "loglik_reml": -201.7,
                "singular": False, "warnings": []}

    return {
        "schema": "ludoseresponse.analysis/1",
        "software": {"name": "LuDoseResponse", "version": "0.1.0"},
        "input": {"path": "cohort.csv", "sha256": "0" * 64, "n_rows": 69, "n_excluded": 3},
        "settings": {"responder_threshold": 0.66, "min_baseline_volume_cm3": 4.0, "glmm_method": "laplace",
                     "bootstrap": 10000, "seed": 1, "doses": [76.0, 135.0], "tcp_targets": [0.5, 0.9]},
        "summary": {g: {"n_tumours": n, "n_patients": p, "n_responders": r, "n_nonresponders": n - r,
                        "dose_median_gy": m, "dose_min_gy": 17.5, "dose_max_gy": 391.0, "dv_median": 0.55,
                        "baseline_volume_median_cm3": 16.8}
                    for g, n, p, r, m in (("all", 66, 31, 30, 121.0), ("G1", 30, 14, 12, 170.2),
                                          ("G2", 36, 17, 18, 98.4))},
        "response_groups": {"G1": {"dose_gy": lmm_block(151.0, 201.0), "activity_gbq": lmm_block(40.1, 47.3)},
                            "G2": {"dose_gy": lmm_block(74.0, 127.0),
                                   "activity_gbq": {"error": "model is not estimable: 1 patient",
                                                    "warnings": ["too few patients"]}}},
        "tcp": {"formula": "responder ~ dose_gy + dose_gy:grade + (1 | patient)", "method": "laplace", "n_agq": 1,
                "coefficients": {"(Intercept)": {"estimate": -2.9, "se": 0.8}, "dose_gy": {"estimate": 0.021,
                                 "se": 0.0049}, "dose_gy:gradeG2": {"estimate": 0.024, "se": 0.008}},
                "vcov": {"names": ["(Intercept)", "dose_gy", "dose_gy:gradeG2"],
                         "values": [[0.64, -0.0035, 0.0], [-0.0035, 2.4e-5, 0.0], [0.0, 0.0, 6.4e-5]]},
                "random_intercept_sd": 0.42, "loglik": -38.2, "singular": False, "converged": True,
                "separation": False, "warnings": ["boundary fit", "slow convergence"],
                "per_grade": tcp_per_grade, "curves": tcp_curves},
        "roc": {"G1": {"n_cases": 12, "n_controls": 18, "auc": 0.71, "auc_ci_delong": [0.52, 0.9],
                       "auc_ci_bootstrap": [0.51, 0.88], "bootstrap_n": 10000, "seed": 1,
                       "youden": [{"threshold_gy": 152.25, "sensitivity": 0.75, "specificity": 0.61},
                                  {"threshold_gy": 188.0, "sensitivity": 0.5, "specificity": 0.83}],
                       "at_dose": {"76": {"sensitivity": 1.0, "specificity": 0.11},
                                   "135": {"sensitivity": 0.83, "specificity": 0.44}}, "warnings": []},
                "G2": {"n_cases": 18, "n_controls": 18, "auc": 0.83, "auc_ci_delong": [0.69, 0.97],
                       "auc_ci_bootstrap": [None, None], "bootstrap_n": 0, "seed": 1,
                       "youden": [{"threshold_gy": 91.5, "sensitivity": 0.83, "specificity": 0.72}],
                       "at_dose": {"76": {"sensitivity": 0.94, "specificity": 0.39},
                                   "135": {"sensitivity": 0.39, "specificity": 0.94}},
                       "warnings": ["bootstrap disabled"]}},
        "dose_response": {
            "G2_only": {"method": "ML", "estimator": "lindstrom-bates",
                        "per_grade": {"G2": {"amplitude": 0.78, "amplitude_se": 0.05, "scale_gy": 32.0,
                                             "scale_gy_se": 7.1}},
                        "random_amplitude_sd": 0.07, "residual_sd": 0.11, "loglik": 21.3,
                        "shapiro_wilk": {"w": 0.97, "p_value": 0.41}, "curves": {"G2": dr_curves["G2"]},
                        "warnings": []},
            "both_grades": {"method": "ML", "estimator": "lindstrom-bates",
                            "per_grade": {"G1": {"amplitude": 0.74, "amplitude_se": 0.09, "scale_gy": 61.0,
                                                 "scale_gy_se": 19.0},
                                          "G2": {"amplitude": 0.78, "amplitude_se": 0.05, "scale_gy": 32.0,
                                                 "scale_gy_se": 7.3}},
                            "random_amplitude_sd": 0.08, "residual_sd": 0.12, "loglik": 30.9,
                            "shapiro_wilk": {"w": 0.95, "p_value": 0.02}, "curves": dr_curves,
                            "warnings": ["residuals not normal"]},
        },
        "baseline_volume": {"cutoff_cm3": 30.0,
                            "G1": {"error": "no G1 tumour above 30 cm3"},
                            "G2": {"mean_small": 0.61, "mean_large": 0.42, "difference": -0.19,
                                   "difference_se": 0.07, "p_value": 0.011, "singular": True,
                                   "warnings": ["singular fit"]}},
        "warnings": ["patient P004 has tumours of both grades"],
    }


@pytest.fixture
def observed_tumours() -> dict:
    """Analysed tumours (the cohort table's grade, dose_gy, responder and dv columns)."""
    rng = np.random.default_rng(11)
    grades = ["G1"] * 7 + ["G2"] * 9
    dose = np.round(rng.uniform(20.0, 380.0, len(grades)), 1)
    dv = np.round(rng.uniform(0.0, 0.95, len(grades)), 3)
    return {"grade": grades, "dose_gy": dose.tolist(), "responder": (dv >= 0.66).astype(int).tolist(),
            "dv": dv.tolist()}
