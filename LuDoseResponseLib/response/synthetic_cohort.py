"""A synthetic tumour cohort that resembles the paper's (demo and tests).

The generative model follows the quantities reported by Warfvinge et al. 2024: 7.4-GBq cycles
(G1 about 6, G2 about 4), tumour dose per GBq lognormal with patient and tumour effects
(medians about 179 Gy / 45 GBq in G1 and 109 Gy / 30 GBq in G2), baseline volumes lognormal
(median about 17 cm³, range 4–630 cm³), and a volume reduction that follows the asymptotic
model Δv = A·(1 − exp(−D/s)) with the paper's G2 fit (A ≈ 0.78, s ≈ 32 Gy), a patient random
amplitude and residual noise. Each tumour also gets a relative dose uncertainty of 4–10 %
(mean 5 %), as the paper reports. Nothing here is fitted to any reference file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from LuDoseResponseLib import defaults

GBQ_PER_CYCLE = 7.4


@dataclass(frozen=True)
class SyntheticCohortSpec:
    """Parameters of the generator; the defaults give a cohort like the paper's."""

    n_patients: int = 32
    tumours_per_patient_probs: tuple[float, ...] = (0.40, 0.33, 0.13, 0.06, 0.04, 0.02, 0.01, 0.01)
    fraction_g1_patients: float = 0.6
    cycles: dict = field(default_factory=lambda: {"G1": ((4, 5, 6, 7, 8), (0.15, 0.2, 0.3, 0.2, 0.15)),
                                                  "G2": ((2, 3, 4, 5, 6), (0.1, 0.25, 0.35, 0.2, 0.1))})
    dose_per_gbq_median: dict = field(default_factory=lambda: {"G1": 4.6, "G2": 4.5})
    dose_per_gbq_sdlog_patient: float = 0.3
    dose_per_gbq_sdlog_tumour: float = 0.3
    dose_clip_gy: tuple[float, float] = (15.0, 400.0)
    volume_median_cm3: float = 17.0
    volume_sdlog: float = 1.1
    volume_range_cm3: tuple[float, float] = (4.0, 630.0)
    amplitude: dict = field(default_factory=lambda: {"G1": 0.80, "G2": 0.80})
    scale_gy: dict = field(default_factory=lambda: {"G1": 65.0, "G2": 32.0})
    amplitude_sd_patient: float = 0.06
    big_volume_amplitude_loss: dict = field(default_factory=lambda: {"G1": 0.2, "G2": 0.1})
    big_volume_cutoff_cm3: float = 30.0
    residual_sd: dict = field(default_factory=lambda: {"G1": 0.12, "G2": 0.09})
    fraction_best_response_early: float = 0.07


def generate_cohort(seed: int = 13, spec: SyntheticCohortSpec | None = None):
    """A cohort table (pandas DataFrame) in the contract's columns plus ``dose_gy_sd``,
    ``dose_all_cycles_gy``, ``activity_all_cycles_gbq``, ``dv_all_cycles`` (best response after all
    treatment), ``n_cycles`` and ``best_response_before_last_cycle``. Deterministic for a given seed."""
    import pandas as pd

    spec = spec or SyntheticCohortSpec()
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.arange(1, len(spec.tumours_per_patient_probs) + 1), size=spec.n_patients,
                       p=np.asarray(spec.tumours_per_patient_probs) / np.sum(spec.tumours_per_patient_probs))
    rows = []
    for p in range(spec.n_patients):
        grade = "G1" if rng.random() < spec.fraction_g1_patients else "G2"
        values, probs = spec.cycles[grade]
        n_cycles = int(rng.choice(values, p=np.asarray(probs) / np.sum(probs)))
        activity_gbq = GBQ_PER_CYCLE * rng.uniform(0.96, 1.02, size=n_cycles)
        patient_dose_effect = rng.normal(0.0, spec.dose_per_gbq_sdlog_patient)
        patient_amplitude = rng.normal(0.0, spec.amplitude_sd_patient)
        for t in range(int(sizes[p])):
            dose_per_gbq = spec.dose_per_gbq_median[grade] * np.exp(
                patient_dose_effect + rng.normal(0.0, spec.dose_per_gbq_sdlog_tumour))
            # per-cycle doses fall slightly over cycles (paper ref. 7: G2 falls faster than G1)
            fall = 0.06 if grade == "G1" else 0.14
            cycle_dose_gy = dose_per_gbq * activity_gbq * (1.0 - fall) ** np.arange(n_cycles)
            n_until_best = n_cycles
            if n_cycles > 2 and rng.random() < spec.fraction_best_response_early:
                n_until_best = n_cycles - int(rng.integers(1, 3))
            lo, hi = spec.dose_clip_gy
            dose_all = float(np.clip(cycle_dose_gy.sum(), lo, hi))
            dose = float(np.clip(cycle_dose_gy[:n_until_best].sum(), lo, hi))
            rel_sd = rng.uniform(0.04, 0.10, size=n_cycles) * np.where(rng.random(n_cycles) < 0.8, 0.8, 1.4)
            dose_sd = float(np.sqrt(np.sum((rel_sd[:n_until_best] * cycle_dose_gy[:n_until_best]) ** 2)))
            v0 = _truncated_lognormal(rng, spec.volume_median_cm3, spec.volume_sdlog, *spec.volume_range_cm3)
            amp = spec.amplitude[grade] + patient_amplitude
            if v0 > spec.big_volume_cutoff_cm3:
                amp *= 1.0 - spec.big_volume_amplitude_loss[grade]
            dv = amp * (1.0 - np.exp(-dose / spec.scale_gy[grade])) + rng.normal(0.0, spec.residual_sd[grade])
            dv = float(np.clip(dv, 0.01, 1.0))
            # best response before the last cycle: the tumour regrew somewhat after it (paper: 5 tumours)
            dv_after = dv if n_until_best == n_cycles else float(np.clip(dv - rng.uniform(0.05, 0.2), 0.0, 1.0))
            rows.append({
                "patient": f"P{p + 1:03d}", "tumor": f"P{p + 1:03d}.T{t + 1}", "grade": grade,
                "dose_gy": round(dose, 2), "activity_gbq": round(float(activity_gbq[:n_until_best].sum()), 2),
                "baseline_volume_cm3": round(v0, 2), "dv": round(dv, 4),
                "dose_gy_sd": round(dose_sd, 2), "dose_all_cycles_gy": round(dose_all, 2),
                "activity_all_cycles_gbq": round(float(activity_gbq.sum()), 2), "dv_all_cycles": round(dv_after, 4),
                "n_cycles": n_cycles,
                "best_response_before_last_cycle": int(n_until_best < n_cycles),
            })
    df = pd.DataFrame(rows)
    df.insert(7, "responder", (df["dv"] >= defaults.RESPONDER_THRESHOLD).astype(int))
    return df


def _truncated_lognormal(rng, median: float, sdlog: float, lo: float, hi: float) -> float:
    while True:
        v = float(median * np.exp(rng.normal(0.0, sdlog)))
        if lo <= v <= hi:
            return v
