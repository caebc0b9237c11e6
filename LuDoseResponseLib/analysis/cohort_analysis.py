"""The paper's cohort analyses on a validated cohort table → ``analysis.json``.

Warfvinge et al., J Nucl Med 2024;65:1070, "Statistical Analysis":

- response groups: ``lmer(y ~ responder + (1|patient))`` per grade for dose and activity, means
  and Kenward–Roger p as emmeans (Table 2);
- TCP: logistic GLMM ``responder ~ dose_gy + dose_gy:grade + (1|patient)`` (Fig. 3);
- ROC of dose per grade with a bootstrap CI and Youden thresholds;
- dose–response: ``nlme(dv ~ A(1 − exp(−D/s)), random = A ~ 1|patient)`` (Fig. 4);
- exploratory: ``lmer(dv ~ (V0 > 30 cm³) + (1|patient))`` per grade (Fig. 5);
- complementary (when the table has ``dose_all_cycles_gy`` / ``activity_all_cycles_gbq``): the
  response-group comparison with dose and activity over all delivered cycles against the best
  response after all treatment (``dv_all_cycles``, where given) — ``response_groups_all_cycles``,
  an extension of the contract;
- extension ``roc_predicted_tcp``: the ROC of the model-predicted TCP per tumour (population level and
  conditional on the patient modes) with the Youden threshold as TCP, dose and odds (stats/tcp_roc.py).

The exploratory baseline-volume analysis uses every tumour, including those below the
baseline-volume cut-off, as the paper did ("the 4 cm³ volume cutoff was not required, and
volume data on 118 tumors could be included"); every other analysis uses the kept tumours.
Each block is computed independently: a block that cannot be estimated holds
``{"error": "...", "error_type": "..."}`` and the others are still computed (``BLOCK_FAILURES`` is the rule
for what counts as a block's own failure). The key layout is the contract
``contracts/cohort-and-analysis.md`` (schema ``ludoseresponse.analysis/1``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from LuDoseResponseLib import __version__, defaults
from LuDoseResponseLib.errors import InputError, LuDoseResponseError
from LuDoseResponseLib.response.cohort import GRADES, Cohort

log = logging.getLogger(__name__)

SCHEMA = "ludoseresponse.analysis/1"
GLMM_METHODS = defaults.GLMM_METHODS


@dataclass(frozen=True)
class AnalysisSettings:
    """Every option of ``ludoseresponse analyze`` (contract defaults)."""

    responder_threshold: float = defaults.RESPONDER_THRESHOLD
    min_baseline_volume_cm3: float = defaults.MIN_BASELINE_VOLUME_CM3
    glmm_method: str = defaults.GLMM_METHOD
    bootstrap: int = defaults.BOOTSTRAP_REPLICATES
    seed: int = defaults.BOOTSTRAP_SEED
    doses: tuple[float, ...] = defaults.REPORT_DOSES_GY
    tcp_targets: tuple[float, ...] = defaults.TCP_TARGETS
    big_volume_cutoff_cm3: float = defaults.BASELINE_VOLUME_CUTOFF_CM3
    dose_grid_max_gy: float = 400.0
    dose_grid_step_gy: float = 5.0

    def __post_init__(self):
        if self.glmm_method not in GLMM_METHODS:
            raise InputError(f"glmm_method must be one of {', '.join(GLMM_METHODS)}, got '{self.glmm_method}'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise InputError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if int(self.bootstrap) < 0:
            raise InputError(f"bootstrap must be >= 0 replicates, got {self.bootstrap}")
        for d in self.doses:
            if not (math.isfinite(d) and d >= 0):
                raise InputError(f"doses must be finite doses >= 0 Gy, got {d}")
        for p in self.tcp_targets:
            if not (0.0 < p < 1.0):
                raise InputError(f"tcp_targets must lie strictly between 0 and 1, got {p}")
        if not (self.dose_grid_max_gy > 0 and self.dose_grid_step_gy > 0):
            raise InputError("the dose grid needs a positive maximum and step")

    @property
    def dose_grid_gy(self) -> np.ndarray:
        n = int(round(self.dose_grid_max_gy / self.dose_grid_step_gy))
        return np.arange(n + 1) * self.dose_grid_step_gy

    def to_dict(self) -> dict:
        d = asdict(self)
        d["doses"] = [float(x) for x in self.doses]
        d["tcp_targets"] = [float(x) for x in self.tcp_targets]
        return d


@dataclass(frozen=True)
class AnalysisResult:
    """All blocks of ``analysis.json``; ``to_dict()`` gives the contract's layout."""

    input: dict
    settings: dict
    summary: dict
    response_groups: dict
    tcp: dict
    roc: dict
    dose_response: dict
    baseline_volume: dict
    response_groups_all_cycles: dict | None = None
    roc_predicted_tcp: dict | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        extra = {} if self.response_groups_all_cycles is None else {
            "response_groups_all_cycles": self.response_groups_all_cycles}
        if self.roc_predicted_tcp is not None:
            extra["roc_predicted_tcp"] = self.roc_predicted_tcp
        return json_ready({
            "schema": SCHEMA,
            "software": {"name": "LuDoseResponse", "version": __version__},
            "input": self.input,
            "settings": self.settings,
            "summary": self.summary,
            "response_groups": self.response_groups,
            "tcp": self.tcp,
            "roc": self.roc,
            "dose_response": self.dose_response,
            "baseline_volume": self.baseline_volume,
            **extra,
            "warnings": list(self.warnings),
        })


def json_ready(obj):
    """Plain JSON types: numpy scalars/arrays to Python, NaN and ±inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_ready(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


# A block's own failure: the library's errors (a model that cannot be estimated on these data) and the
# numerical failures numpy/scipy/math raise from the model code (math domain, overflow, a singular matrix).
# They are recorded with their type and logged with the traceback, so a defect is never silent. Any other
# exception (TypeError, KeyError, AttributeError, ...) is a programming error and propagates.
BLOCK_FAILURES = (LuDoseResponseError, ArithmeticError, ValueError, np.linalg.LinAlgError)


def _run_block(name: str, warnings: list[str], fn: Callable[[], dict]) -> dict:
    """Run one analysis block; a block that cannot be estimated becomes ``{"error", "error_type"}``."""
    try:
        return fn()
    except BLOCK_FAILURES as exc:
        kind = type(exc).__name__
        msg = str(exc) or kind
        if isinstance(exc, LuDoseResponseError):
            log.warning("%s: not estimated: %s", name, msg)
        else:
            msg = f"numerical failure in the model code ({kind}: {msg})"
            log.warning("%s: not estimated: %s", name, msg, exc_info=True)
        warnings.append(f"{name}: not estimated: {msg}")
        return {"error": msg, "error_type": kind}


def _summary(df) -> dict:
    def one(d):
        n = len(d)

        def med(col):
            return float(np.median(d[col])) if n else None

        return {
            "n_tumours": int(n),
            "n_patients": int(d["patient"].nunique()),
            "n_responders": int(d["responder"].sum()),
            "n_nonresponders": int(n - d["responder"].sum()),
            "dose_median_gy": med("dose_gy"),
            "dose_min_gy": float(d["dose_gy"].min()) if n else None,
            "dose_max_gy": float(d["dose_gy"].max()) if n else None,
            "dv_median": med("dv"),
            "baseline_volume_median_cm3": med("baseline_volume_cm3"),
        }

    out = {"all": one(df)}
    for g in GRADES:
        out[g] = one(df[df["grade"] == g])
    return out


def _grade_rows(df, grade: str, what: str):
    d = df[df["grade"] == grade]
    if len(d) == 0:
        raise InputError(f"no {grade} tumours in the analysed cohort; {what} for {grade} is not estimated")
    return d


def _response_groups(df, warnings: list[str], variables=(("dose_gy", "dose_gy"), ("activity_gbq", "activity_gbq")),
                     block: str = "response_groups", responder_column: str = "responder") -> dict:
    """``lmer(y ~ responder + (1|patient))`` per grade for each (key, column) in ``variables``."""
    from LuDoseResponseLib.stats.lmm import fit_two_group_lmm

    out = {}
    for g in GRADES:
        per_grade = {}
        for key, column in variables:
            def fit(g=g, column=column):
                d = _grade_rows(df, g, "the responder-group comparison")
                res = fit_two_group_lmm(d[column].to_numpy(float), d[responder_column].to_numpy(int),
                                        d["patient"].to_numpy(str), levels=(0, 1), y_name=column)
                return res.to_response_groups_block()
            per_grade[key] = _run_block(f"{block}.{g}.{key}", warnings, fit)
        out[g] = per_grade
    return out


ALL_CYCLES_COLUMNS = (("dose_gy", "dose_all_cycles_gy"), ("activity_gbq", "activity_all_cycles_gbq"))


def _response_groups_all_cycles(df, settings: AnalysisSettings, warnings: list[str]) -> dict | None:
    """The paper's complementary analysis: dose and activity summed over all delivered cycles against
    the best response after all treatment (``dv_all_cycles`` when the table has it, else ``dv``),
    when the cohort table carries those columns."""
    present = tuple((k, c) for k, c in ALL_CYCLES_COLUMNS if c in df.columns and df[c].notna().all())
    if not present:
        return None
    df = df.copy()
    dv = df["dv"]
    if "dv_all_cycles" in df.columns:
        dv = df["dv_all_cycles"].fillna(df["dv"])
    df["responder_all_cycles"] = (dv.to_numpy(float) >= settings.responder_threshold).astype(int)
    return _response_groups(df, warnings, present, block="response_groups_all_cycles",
                            responder_column="responder_all_cycles")


def _baseline_volume(df_all, settings: AnalysisSettings, warnings: list[str]) -> dict:
    from LuDoseResponseLib.stats.lmm import fit_two_group_lmm

    out: dict = {"cutoff_cm3": float(settings.big_volume_cutoff_cm3)}
    for g in GRADES:
        def fit(g=g):
            d = _grade_rows(df_all, g, "the baseline-volume comparison")
            big = d["baseline_volume_cm3"].to_numpy(float) > settings.big_volume_cutoff_cm3
            res = fit_two_group_lmm(d["dv"].to_numpy(float), big, d["patient"].to_numpy(str),
                                    levels=(False, True))
            return res.to_baseline_volume_block()
        out[g] = _run_block(f"baseline_volume.{g}", warnings, fit)
    return out


def _tcp(df, settings: AnalysisSettings) -> dict:
    from LuDoseResponseLib.stats.tcp import tcp_analysis

    res = tcp_analysis(df["dose_gy"].to_numpy(float), df["grade"].to_numpy(str), df["responder"].to_numpy(int),
                       df["patient"].to_numpy(str), method=settings.glmm_method,
                       doses_gy=tuple(settings.doses), tcp_targets=tuple(settings.tcp_targets),
                       dose_grid_gy=settings.dose_grid_gy)
    return res.to_dict()


def _roc(df, settings: AnalysisSettings, warnings: list[str]) -> dict:
    from LuDoseResponseLib.stats.roc import roc_analysis

    out = {}
    for g in GRADES:
        def fit(g=g):
            d = _grade_rows(df, g, "the ROC analysis")
            return roc_analysis(d["responder"].to_numpy(int), d["dose_gy"].to_numpy(float),
                                doses=tuple(settings.doses), n_boot=int(settings.bootstrap),
                                seed=int(settings.seed)).to_dict()
        out[g] = _run_block(f"roc.{g}", warnings, fit)
    return out


def _roc_predicted_tcp(df, settings: AnalysisSettings) -> dict:
    """Extension ``roc_predicted_tcp``: ROC of the GLMM-predicted TCP (population and conditional) with
    the population Youden threshold as TCP, dose and odds (stats/tcp_roc.py)."""
    from LuDoseResponseLib.stats.tcp_roc import predicted_tcp_roc

    return predicted_tcp_roc(df["dose_gy"].to_numpy(float), df["grade"].to_numpy(str), df["responder"].to_numpy(int),
                             df["patient"].to_numpy(str), n_boot=int(settings.bootstrap), seed=int(settings.seed))


def _dose_response(df, settings: AnalysisSettings, warnings: list[str]) -> dict:
    from LuDoseResponseLib.stats.nlmm import fit_asymptotic_nlmm

    variants: dict[str, Sequence[str]] = {"G2_only": ("G2",), "both_grades": GRADES}
    out = {}
    for name, grades in variants.items():
        def fit(grades=grades):
            for g in grades:
                _grade_rows(df, g, "the dose-response model")
            return fit_asymptotic_nlmm(df["dose_gy"].to_numpy(float), df["dv"].to_numpy(float),
                                       df["patient"].to_numpy(str), df["grade"].to_numpy(str),
                                       grades=tuple(grades), dose_grid_gy=settings.dose_grid_gy).to_dict()
        out[name] = _run_block(f"dose_response.{name}", warnings, fit)
    return out


def analyze_cohort(cohort: Cohort, settings: AnalysisSettings | None = None) -> AnalysisResult:
    """Run every analysis of the paper on ``cohort`` (see the module docstring)."""
    settings = settings or AnalysisSettings(responder_threshold=cohort.responder_threshold,
                                            min_baseline_volume_cm3=cohort.min_baseline_volume_cm3)
    if (abs(settings.responder_threshold - cohort.responder_threshold) > 1e-12
            or abs(settings.min_baseline_volume_cm3 - cohort.min_baseline_volume_cm3) > 1e-12):
        raise InputError("the cohort was validated with other responder/volume rules than the analysis settings; "
                         "load it with the same responder_threshold and min_baseline_volume_cm3")
    warnings: list[str] = list(cohort.warnings)
    df = cohort.included
    log.info("analysing %d tumours (%d excluded) from %s", len(df), cohort.n_excluded, cohort.source)
    response_groups = _response_groups(df, warnings)
    all_cycles = _response_groups_all_cycles(df, settings, warnings)
    tcp = _run_block("tcp", warnings, lambda: _tcp(df, settings))
    roc = _roc(df, settings, warnings)
    roc_predicted_tcp = _run_block("roc_predicted_tcp", warnings, lambda: _roc_predicted_tcp(df, settings))
    dose_response = _dose_response(df, settings, warnings)
    baseline_volume = _baseline_volume(cohort.table, settings, warnings)
    return AnalysisResult(
        input={"path": cohort.source, "sha256": cohort.sha256, "n_rows": cohort.n_rows,
               "n_excluded": cohort.n_excluded},
        settings=settings.to_dict(),
        summary=_summary(df),
        response_groups=response_groups,
        tcp=tcp,
        roc=roc,
        dose_response=dose_response,
        baseline_volume=baseline_volume,
        response_groups_all_cycles=all_cycles,
        roc_predicted_tcp=roc_predicted_tcp,
        warnings=tuple(warnings),
    )
