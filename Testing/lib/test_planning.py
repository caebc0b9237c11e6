"""The treatment planner (issue 15) against independent truths.

- the paper's G2 TCP curve against the paper's own published numbers (Results);
- the analysis.json curve against stats.tcp's own TCP at the report doses;
- the dose-per-GBq fit against hand-computed posteriors and an augmented least-squares solve;
- the schedule moments against Monte Carlo sampling of the stated model;
- the free-activity optimum against random feasible schedules;
- calibration on simulated patients whose true future doses are drawn from a known per-patient model.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit, logit

from LuDoseResponseLib.dosimetry.bed import bed_mono_exponential
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.planning import (
    PlanSettings,
    TrendModel,
    fit_dose_per_gbq,
    paper_tcp_curve,
    plan_treatment,
    tcp_curve_from_analysis,
)
from LuDoseResponseLib.planning.inputs import MeasuredCycles, PatientDosimetry
from LuDoseResponseLib.planning.schedules import (
    KidneyTerm,
    TumourTerm,
    kidney_bed,
    kidney_bed_upper,
    lognormal_interval,
    tumour_dose,
)

AB, T_MU = 2.6, 2.8


# ---------------------------------------------------------------- TCP curves
def test_paper_g2_curve_reproduces_the_published_numbers():
    """Results: TCP 90 % at 135 Gy, the Youden TCP 65 % and odds 1.85 at 76 Gy, SE(b) 0.01 per Gy."""
    c = paper_tcp_curve("G2")
    assert round(c.at(135.0).tcp, 2) == 0.90
    at76 = c.at(76.0)
    assert round(at76.tcp, 2) == 0.65
    assert round(math.exp(c.eta_se(76.0)[0]), 2) == 1.84  # exp(-1.44 + 0.027*76); the paper's 1.85 from unrounded β
    assert round(math.sqrt(c.vcov[1, 1]), 2) == 0.01
    # the covariance is solved from the two published CIs, so they come back (a consistency check)
    eta, se = c.eta_se(76.0)
    assert math.exp(eta - 1.96 * se) == pytest.approx(0.71 * math.exp(eta) / 1.85, rel=0.02)
    assert c.at(135.0).ci_low == pytest.approx(expit(c.eta_se(135)[0] - (logit(0.98) - logit(0.64)) / 2), rel=1e-9)
    assert np.all(np.linalg.eigvalsh(c.vcov) > 0)


def test_paper_has_no_g1_curve():
    with pytest.raises(InputError, match="G2 only.*give a cohort model"):
        paper_tcp_curve("G1")


def _analysis_json(tmp_path, cohort):
    from LuDoseResponseLib.stats.tcp import tcp_analysis

    result = tcp_analysis(cohort["dose_gy"], cohort["grade"], cohort["responder"], cohort["patient"])
    path = tmp_path / "analysis.json"
    path.write_text(json.dumps({"schema": "ludoseresponse.analysis/1", "tcp": result.to_dict()}))
    return path, result


@pytest.fixture(scope="module")
def cohort():
    from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

    return generate_cohort(seed=4)


@pytest.mark.parametrize("grade", ["G1", "G2"])
def test_analysis_curve_matches_the_tcp_analysis(tmp_path, cohort, grade):
    path, result = _analysis_json(tmp_path, cohort)
    curve = tcp_curve_from_analysis(tmp_path, grade)   # the folder works as the file
    for key, expected in result.per_grade[grade].at_dose.items():
        got = curve.at(float(key))
        assert (got.tcp, got.ci_low, got.ci_high) == pytest.approx(
            (expected.tcp, expected.ci_low, expected.ci_high), rel=1e-9)


def test_analysis_without_the_patients_grade_is_refused(tmp_path, cohort):
    path, _ = _analysis_json(tmp_path, cohort[cohort["grade"] == "G2"])
    with pytest.raises(InputError, match="no TCP curve for grade G1"):
        tcp_curve_from_analysis(path, "G1")
    assert tcp_curve_from_analysis(path, "G2").slope_per_gy > 0


def test_analysis_tcp_error_and_tampering_are_refused(tmp_path, cohort):
    path, _ = _analysis_json(tmp_path, cohort)
    doc = json.loads(path.read_text())
    doc["tcp"]["per_grade"]["G2"]["slope_per_gy"] *= 2
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="disagree with the coefficients"):
        tcp_curve_from_analysis(path, "G2")
    path.write_text(json.dumps({"schema": "ludoseresponse.analysis/1", "tcp": {"error": "separation"}}))
    with pytest.raises(InputError, match="has no TCP model"):
        tcp_curve_from_analysis(path, "G2")
    with pytest.raises(InputError, match="no such file"):
        tcp_curve_from_analysis(tmp_path / "absent.json", "G2")


# ---------------------------------------------------------------- dose-per-GBq prediction
def test_constant_model_one_cycle_by_hand():
    """One cycle, exact measurement: ln y of a future cycle ~ N(ln y1, 2σ²)."""
    m = TrendModel("constant", cv=0.2)
    fit = fit_dose_per_gbq("T", [1], [30.0], [0.0], [7.4], m)
    mu, cov = fit.log_moments([2, 3])
    s2 = math.log(1 + 0.2**2)
    assert mu == pytest.approx([math.log(30 / 7.4)] * 2)
    assert cov == pytest.approx(np.array([[2 * s2, s2], [s2, 2 * s2]]))


def test_predicted_interval_of_one_cycle_is_the_lognormal_quantiles():
    fit = fit_dose_per_gbq("K", [1], [3.7], [0.0], [7.4], TrendModel("constant", cv=0.15))
    s = math.sqrt(2 * math.log(1 + 0.15**2))
    (p,) = fit.predicted([2])
    assert p["dose_per_gbq_gy"] == pytest.approx(0.5 * math.exp(s * s / 2))
    assert (p["ci_low_gy"], p["ci_high_gy"]) == pytest.approx((0.5 * math.exp(-1.96 * s), 0.5 * math.exp(1.96 * s)))


def test_constant_model_pools_the_residual_scatter_by_hand():
    y = np.array([4.0, 5.0, 3.5])
    m = TrendModel("constant", cv=0.2, prior_df=4)
    fit = fit_dose_per_gbq("K", [1, 2, 3], y * 7.4, [0, 0, 0], [7.4] * 3, m)
    z = np.log(y)
    s2 = np.sum((z - z.mean()) ** 2) / 2
    sigma2 = (4 * math.log(1.04) + 2 * s2) / 6
    assert fit.sigma2 == pytest.approx(sigma2)
    assert fit.theta[0] == pytest.approx(z.mean())
    assert fit.cov[0, 0] == pytest.approx(sigma2 / 3)


def test_decreasing_model_one_cycle_uses_the_published_rate():
    """One cycle: slope = prior ln(1 − 0.14) (Roth 2022, G2), var(ln y_3) = σ² + 4τ² + σ²."""
    m = TrendModel("decreasing", decrease_per_cycle=0.14, log_slope_sd=0.1, cv=0.2)
    fit = fit_dose_per_gbq("T", [1], [40.0], [0.0], [7.4], m)
    mu, cov = fit.log_moments([3])
    s2 = math.log(1.04)
    assert mu[0] == pytest.approx(math.log(40 / 7.4) + 2 * math.log(0.86))
    assert cov[0, 0] == pytest.approx(2 * s2 + 4 * 0.01)


def test_decreasing_model_equals_augmented_least_squares():
    """Posterior of normal regression with a slope prior = WLS with the prior as one more observation."""
    c = np.array([1, 2])
    d, sd, a = np.array([40.0, 31.0]), np.array([2.0, 1.5]), np.array([7.4, 6.0])
    m = TrendModel("decreasing", decrease_per_cycle=0.06, log_slope_sd=0.1, cv=0.25)
    fit = fit_dose_per_gbq("T", c, d, sd, a, m)
    var = math.log(1 + 0.25**2) + (sd / d) ** 2
    x = np.vstack([np.column_stack([np.ones(2), c - 1]), [0.0, 1.0]])
    z = np.append(np.log(d / a), math.log(0.94))
    w = np.sqrt(1 / np.append(var, 0.01))
    theta, *_ = np.linalg.lstsq(x * w[:, None], z * w, rcond=None)
    cov = np.linalg.inv((x * w[:, None]).T @ (x * w[:, None]))
    assert fit.theta == pytest.approx(theta)
    assert fit.cov == pytest.approx(cov)


def test_bad_cycles_are_refused():
    m = TrendModel("constant")
    with pytest.raises(InputError, match="dose > 0"):
        fit_dose_per_gbq("tumour 'T1'", [1, 2], [30.0, 0.0], [1, 1], [7.4, 7.4], m)
    with pytest.raises(InputError, match="must be one of"):
        TrendModel("linear")
    with pytest.raises(InputError, match="cv must be > 0"):
        TrendModel("constant", cv=0)


# ---------------------------------------------------------------- schedule moments
def _sample_log(fit, cycles, n, rng):
    mu, cov = fit.log_moments(cycles)
    return np.exp(rng.multivariate_normal(mu, cov, size=n))


def test_tumour_and_kidney_moments_match_monte_carlo():
    rng = np.random.default_rng(3)
    tfit = fit_dose_per_gbq("T", [1, 2], [40.0, 33.0], [2.0, 2.0], [7.4, 7.4],
                            TrendModel("decreasing", decrease_per_cycle=0.14, cv=0.2))
    kfit = fit_dose_per_gbq("K", [1, 2], [3.5, 3.9], [0.3, 0.3], [7.4, 7.4], TrendModel("constant", cv=0.15))
    g = bed_mono_exponential(1.0, 50.0, alpha_beta_gy=AB, repair_half_time_h=T_MU).g_factor
    tumour = TumourTerm("T", 73.0, 8.0, tfit)
    kidney = KidneyTerm("K", 8.1, 0.25, kfit, g, AB)
    cycles, a = (3, 4, 5), np.array([11.1, 7.0, 3.7])
    n = 400_000
    y = _sample_log(tfit, cycles, n, rng)
    dose = 73.0 + rng.normal(0, math.sqrt(8.0), n) + y @ a
    mean, var = tumour_dose(tumour, cycles, a)
    assert mean == pytest.approx(dose.mean(), abs=4 * dose.std() / math.sqrt(n))
    assert var == pytest.approx(dose.var(), rel=0.02)
    k = _sample_log(kfit, cycles, n, rng) * a
    beds = np.array([[bed_mono_exponential(d, 50.0).bed_gy for d in row] for row in k[:2000]])
    assert beds.sum(axis=1) == pytest.approx((k[:2000] + g * k[:2000] ** 2 / AB).sum(axis=1))  # the BED module's BED
    bed = 8.1 + rng.normal(0, 0.5, n) + (k + g * k**2 / AB).sum(axis=1)
    mean, var = kidney_bed(kidney, cycles, a)
    assert mean == pytest.approx(bed.mean(), abs=4 * bed.std() / math.sqrt(n))
    assert var == pytest.approx(bed.var(), rel=0.02)


def test_upper_bound_gradient_matches_finite_differences():
    kfit = fit_dose_per_gbq("K", [1, 2], [3.5, 3.9], [0.3, 0.3], [7.4, 7.4], TrendModel("constant", cv=0.15))
    term = KidneyTerm("K", 8.1, 0.25, kfit, 0.05, AB)
    a, cycles = np.array([11.1, 7.0, 3.7]), (3, 4, 5)
    upper, grad = kidney_bed_upper(term, cycles, a)
    assert upper == pytest.approx(lognormal_interval(*kidney_bed(term, cycles, a))[1])
    h = 1e-6
    numeric = [(kidney_bed_upper(term, cycles, a + h * np.eye(3)[j])[0]
                - kidney_bed_upper(term, cycles, a - h * np.eye(3)[j])[0]) / (2 * h) for j in range(3)]
    assert grad == pytest.approx(numeric, rel=1e-6)


def test_lognormal_interval_is_exact_for_a_lognormal():
    m, s = 4.0, 0.3
    mean, var = math.exp(m + s * s / 2), (math.exp(s * s) - 1) * math.exp(2 * m + s * s)
    assert lognormal_interval(mean, var) == pytest.approx((math.exp(m - 1.96 * s), math.exp(m + 1.96 * s)))


# ---------------------------------------------------------------- whole plans
def _patient(tumour_doses, kidney_doses, *, activities=None, t_eff=50.0, grade="G2", rel_sd=0.05, n_tumours=1,
             kidney_names=("Kidney_L", "Kidney_R")):
    n = len(kidney_doses[0])
    acts = activities or [7.4] * n
    cycles = tuple(range(1, n + 1))
    tumours = tuple(MeasuredCycles(f"P.T{i + 1}", cycles, tuple(acts), tuple(tumour_doses[i]),
                                   tuple(rel_sd * d for d in tumour_doses[i]), mass_g=20.0)
                    for i in range(n_tumours))
    kidneys = []
    for name, doses in zip(kidney_names, kidney_doses, strict=True):
        beds = [bed_mono_exponential(d, t_eff, dose_sd_gy=rel_sd * d) for d in doses]
        kidneys.append(MeasuredCycles(name, cycles, tuple(acts), tuple(doses), tuple(rel_sd * d for d in doses),
                                      t_eff_h=(t_eff,) * n, bed_gy=tuple(b.bed_gy for b in beds),
                                      bed_sd_gy=tuple(b.sd_gy for b in beds)))
    return PatientDosimetry("P", grade, dict(zip(cycles, acts, strict=True)), tumours, tuple(kidneys))


def test_fixed_plan_uses_the_limit_to_one_cycle():
    p = plan_treatment(_patient([[30.0, 27.0]], [[3.6, 3.8], [3.3, 3.4]]))
    fixed = [e for e in p.evaluations if e.schedule.kind == "fixed"]
    best = p.evaluations[p.recommended["fixed"]]
    n = best.schedule.n_cycles
    assert best.max_kidney_bed_gy <= 27.0 < fixed[n + 1].max_kidney_bed_gy
    assert best.limit_binds
    assert [e.feasible for e in fixed] == [e.max_kidney_bed_gy <= 27.0 for e in fixed]


def test_free_plan_sits_on_the_limit_and_beats_random_feasible_schedules():
    p = plan_treatment(_patient([[30.0, 27.0], [12.0, 11.5]], [[3.6, 3.8], [3.3, 3.4]], n_tumours=2))
    free = [e for e in p.evaluations if e.schedule.kind == "free" and e.feasible]
    for e in free:
        if e.limit_binds:
            assert abs(e.max_kidney_bed_gy - 27.0) <= 0.01
        assert e.max_kidney_bed_gy <= 27.0
    # brute force for 3 further cycles: no random feasible schedule has a higher mean TCP
    three = next(e for e in free if e.schedule.n_cycles == 3)
    from LuDoseResponseLib.planning.schedules import Problem, Schedule

    problem = Problem(p.tumour_terms, p.kidney_terms, p.curve, 27.0, 2)
    rng = np.random.default_rng(0)
    better = 0
    for a in rng.uniform(3.7, 11.1, size=(1500, 3)):
        e = problem.evaluate(Schedule("free", (3, 4, 5), tuple(a)))
        better += e.feasible and e.objective_tcp > three.objective_tcp + 1e-9
    assert better == 0
    best_fixed = p.evaluations[p.recommended["fixed"]]
    assert p.evaluations[p.recommended["free"]].objective_tcp >= best_fixed.objective_tcp - 1e-3


def test_limit_not_binding_when_upper_activities_fit():
    p = plan_treatment(_patient([[30.0]], [[0.6], [0.5]]), PlanSettings(max_total_cycles=3))
    free = [e for e in p.evaluations if e.schedule.kind == "free"]
    assert all(e.schedule.activities_gbq == (11.1,) * e.schedule.n_cycles and not e.limit_binds for e in free)


def test_limit_below_received_bed_and_missing_grade_are_refused():
    patient = _patient([[30.0, 27.0, 25.0]], [[5.0, 5.2, 5.1], [4.0, 4.1, 4.2]])
    received = sum(patient.kidneys[0].bed_gy)
    with pytest.raises(InputError, match=r"limit \(15 Gy\) is below the BED already received by Kidney_L"):
        plan_treatment(patient, PlanSettings(kidney_bed_limit_gy=15.0))
    assert received > 15
    with pytest.raises(InputError, match="no tumour grade"):
        plan_treatment(_patient([[30.0]], [[3.0], [3.0]], grade=None))
    with pytest.raises(InputError, match="G2 only"):
        plan_treatment(_patient([[30.0]], [[3.0], [3.0]], grade="G1"))


def test_plan_states_research_notice_and_assumptions():
    p = plan_treatment(_patient([[30.0]], [[3.0], [3.0]]))
    doc = p.to_dict()
    assert "RESEARCH TOOL" in doc["notice"]
    text = " ".join(doc["assumptions"])
    for needle in ("Roth et al", "CV 20%", "alpha/beta 2.6", "27 Gy", "Warfvinge", "mean TCP", "0.71-4.85"):
        assert needle in text
    json.dumps(doc, allow_nan=False)


# ---------------------------------------------------------------- calibration on simulated patients
TRUE_TUMOUR_CV, TRUE_KIDNEY_CV, MEASUREMENT_CV = 0.20, 0.15, 0.05


def _simulated_patient(rng, settings):
    """A G2 patient from the stated model: per-patient first-cycle dose per GBq and rate, noise per cycle;
    drawn again while the BED already received exceeds the limit (the planner refuses those)."""
    while True:
        drawn = _draw_patient(rng, settings)
        if sum(drawn[0].kidneys[0].bed_gy) < settings.kidney_bed_limit_gy:
            return drawn


def _draw_patient(rng, settings):
    s_t, s_k = math.sqrt(math.log(1 + TRUE_TUMOUR_CV**2)), math.sqrt(math.log(1 + TRUE_KIDNEY_CV**2))
    y1 = rng.lognormal(math.log(4.0), 0.5)
    slope = rng.normal(math.log(1 - 0.14), 0.10)
    kappa = rng.lognormal(math.log(0.5), 0.3)
    t_eff = rng.uniform(35, 65)
    m = int(rng.integers(1, 4))
    n_all = settings.max_total_cycles
    cycles = np.arange(1, n_all + 1)
    true_tumour = y1 * np.exp(slope * (cycles - 1) + rng.normal(0, s_t, n_all))
    true_kidney = kappa * np.exp(rng.normal(0, s_k, n_all))
    acts = [7.4] * m
    obs_t = true_tumour[:m] * 7.4 * np.exp(rng.normal(0, MEASUREMENT_CV, m))
    obs_k = true_kidney[:m] * 7.4 * np.exp(rng.normal(0, MEASUREMENT_CV, m))
    patient = _patient([list(obs_t)], [list(obs_k)], activities=acts, t_eff=t_eff, rel_sd=MEASUREMENT_CV,
                       kidney_names=("Kidneys",))
    return patient, true_tumour, true_kidney, t_eff, m


def test_predicted_cumulative_doses_cover_the_truth_in_simulated_patients():
    rng = np.random.default_rng(2024)
    settings = PlanSettings(max_total_cycles=6)
    g_of = {}
    hits_dose, hits_bed, n_patients, binding = 0, 0, 300, 0
    for _ in range(n_patients):
        patient, true_t, true_k, t_eff, m = _simulated_patient(rng, settings)
        plan = plan_treatment(patient, settings)
        best = plan.best
        a = np.array(best.schedule.activities_gbq)
        n = best.schedule.n_cycles
        dose_truth = float(true_t[:m].sum() * 7.4 + true_t[m:m + n] @ a)
        t = best.tumours["P.T1"]
        hits_dose += t["dose_ci_low_gy"] <= dose_truth <= t["dose_ci_high_gy"]
        g = g_of.setdefault(round(t_eff, 9), bed_mono_exponential(1.0, t_eff).g_factor)
        k_dose = np.concatenate([true_k[:m] * 7.4, true_k[m:m + n] * a])
        bed_truth = float(np.sum(k_dose + g * k_dose**2 / AB))
        k = best.kidneys["Kidneys"]
        hits_bed += k["bed_ci_low_gy"] <= bed_truth <= k["bed_ci_high_gy"]
        assert all(e.max_kidney_bed_gy <= 27.0 for e in plan.evaluations if e.feasible)
        for e in plan.evaluations:
            if e.limit_binds and e.schedule.kind == "free":
                assert 27.0 - 0.01 <= e.max_kidney_bed_gy <= 27.0
        fixed = [e for e in plan.evaluations if e.schedule.kind == "fixed"]
        chosen = plan.evaluations[plan.recommended["fixed"]]
        most = max(n for n, e in enumerate(fixed) if e.feasible)   # the limit (or the cycle cap) stops here
        assert most == len(fixed) - 1 or fixed[most + 1].max_kidney_bed_gy > 27.0
        # the plan goes to the limit unless one more cycle gains less than the 0.001 TCP tie
        assert chosen.schedule.n_cycles == most or fixed[most].objective_tcp - chosen.objective_tcp <= 1e-3
        binding += best.limit_binds
    print(f"coverage: dose {hits_dose}/{n_patients}, kidney BED {hits_bed}/{n_patients}; limit binds in {binding}")
    assert hits_dose / n_patients >= 0.90
    assert hits_bed / n_patients >= 0.90
    assert binding > n_patients / 4    # the limit is exercised, not only the cycle cap


def test_upper_bound_limit_keeps_the_true_bed_below_it_in_simulated_patients():
    """Held on the upper 95 % bound, the limit is exceeded by the true BED in few patients (≈2.5 % if the
    model holds); held on the mean, in a large share (the plan says so)."""
    rng = np.random.default_rng(77)
    settings = PlanSettings(max_total_cycles=6, kidney_limit_on="upper95")
    over, n_patients = 0, 120
    for _ in range(n_patients):
        patient, _, true_k, t_eff, m = _simulated_patient(rng, settings)
        plan = plan_treatment(patient, settings)
        best = plan.best
        a, n = np.array(best.schedule.activities_gbq), best.schedule.n_cycles
        g = bed_mono_exponential(1.0, t_eff).g_factor
        k_dose = np.concatenate([true_k[:m] * 7.4, true_k[m:m + n] * a])
        over += float(np.sum(k_dose + g * k_dose**2 / AB)) > 27.0
        for e in plan.evaluations:
            if e.feasible and e.schedule.cycles:   # stopping now is always allowed
                assert e.kidneys["Kidneys"]["bed_ci_high_gy"] <= 27.0
            if e.limit_binds and e.schedule.kind == "free":
                assert 27.0 - 0.01 <= e.kidneys["Kidneys"]["bed_ci_high_gy"] <= 27.0
    print(f"upper95: true BED over the limit in {over}/{n_patients}")
    assert over / n_patients <= 0.05
