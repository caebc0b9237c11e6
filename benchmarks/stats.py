"""Benchmark: a full `analyze` (all models, 10 000-replicate bootstrap per grade) against R.

Cohorts: a paper-like synthetic cohort (32 patients) and a 200-patient cohort, both from the
package's own generator. For each, prints our wall time (median of repeats), our peak traced
memory, and — when ``Rscript`` with lme4/nlme/emmeans/pbkrtest/pROC is installed — the same
analyses in R (benchmarks/r/same_analyses.R) measured in the same run, as the ratio R / ours.
Without R, it prints the R timings recorded in ../shared/reference/stats (when present),
clearly labelled as recorded on another machine.

Usage: .venv/bin/python benchmarks/stats.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings
from LuDoseResponseLib.analysis.outputs import run_cohort_analysis
from LuDoseResponseLib.response.synthetic_cohort import SyntheticCohortSpec, generate_cohort

HERE = Path(__file__).resolve().parent
R_SCRIPT = HERE / "r" / "same_analyses.R"
RECORDED = HERE.parent.parent / "shared" / "reference" / "stats" / "public"
# steps of analyze.R equivalent to one `analyze` run (the recorded timings' keys, summed)
RECORDED_STEPS = ("lmm.", "explor.", "glmm.common_intercept.laplace", "roc.G1.dose", "roc.G2.dose",
                  "nlme.G2_only.ML", "nlme.both_grades.ML")


def time_ours(csv: Path, repeat: int) -> tuple[float, float]:
    settings = AnalysisSettings(min_baseline_volume_cm3=0.0)
    run_cohort_analysis(csv, None, settings)  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_cohort_analysis(csv, None, settings)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    run_cohort_analysis(csv, None, settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def time_r(csv: Path, repeat: int) -> float | None:
    if not shutil.which("Rscript"):
        return None
    proc = subprocess.run(["Rscript", str(R_SCRIPT), str(csv), str(repeat)], capture_output=True, text=True,
                          timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("elapsed_s="):
            return float(line.split("=", 1)[1])
    print(f"  (R run failed: {proc.stderr.strip()[-300:]})")
    return None


def recorded_r(name: str) -> float | None:
    path = RECORDED / f"{name}.json"
    if not path.is_file():
        return None
    timings = json.loads(path.read_text()).get("timings_s", {})
    total = 0.0
    for key, value in timings.items():
        if key.startswith(RECORDED_STEPS) and key.count(".") <= 2 and not key.endswith(("REML", "exactML")):
            total += float(value)
    return total or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # model warnings (singular fits, ...) are not what is measured here
    cohorts = {
        "paper-like (32 patients)": (generate_cohort(seed=13), "paper_like_s1202"),
        "large (200 patients)": (generate_cohort(seed=201, spec=SyntheticCohortSpec(n_patients=200)), "large_s201"),
    }
    print("Full `analyze` (LMM+KR x6, GLMM Laplace, ROC + 10000 bootstrap x2, NLMM x2), median of "
          f"{args.repeat} runs")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (df, recorded_name) in cohorts.items():
            csv = Path(tmp) / "cohort.csv"
            df.to_csv(csv, index=False)
            ours, peak_mib = time_ours(csv, args.repeat)
            print(f"{label}: {len(df)} tumours")
            print(f"  LuDoseResponse: {ours:.3f} s, peak traced memory {peak_mib:.1f} MiB")
            r = time_r(csv, args.repeat)
            if r is not None:
                print(f"  R 4.2 (lme4/emmeans+pbkrtest/pROC/nlme), same machine, same run: {r:.3f} s "
                      f"-> R / ours = {r / ours:.1f}x")
            else:
                rec = recorded_r(recorded_name)
                if rec is None:
                    print("  no R baseline: Rscript not installed and no recorded timings found")
                else:
                    print(f"  R timings RECORDED on another machine (reference {recorded_name}, not this run): "
                          f"{rec:.3f} s -> R / ours = {rec / ours:.1f}x (indicative only)")


if __name__ == "__main__":
    main()
