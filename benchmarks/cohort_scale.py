"""Benchmark: patients per minute against local workers, and `analyze` time and peak memory against the
number of tumours (issue 16 targets).

Throughput: ``--patients`` phantom patients of the demo's size (64x64x48 voxels of 4.8 mm, 4 tumours, 2
cycles x 4 SPECT time points) are run by ``run_cohort`` into a fresh folder with 1 and 2 local worker
processes (``--workers``), and with a Dask ``LocalCluster`` of as many worker processes when
dask.distributed is installed; the kernel is cached first (one patient, not timed). Printed: wall time and
patients per minute.

For each size (default 10^2, 10^3, 10^4, 10^5 tumours) a synthetic cohort from the package's own
generator is analysed with the full 10 000-replicate bootstrap in a fresh subprocess, which reports
its wall time and peak resident memory (ru_maxrss). Printed: time, peak memory, both as ratios to the
smallest size measured in the same run, and the local growth exponent log(ratio)/log(size ratio)
(1 = linear). Targets (issue 16): 10^4 tumours < 30 s on 2 cores; 10^5 < 5 min and 4 GB.

Usage: .venv/bin/python benchmarks/cohort_scale.py [--full] [--sizes 100,1000,10000] [--bootstrap 10000]
       [--workers 1,2] [--patients 8] [--skip-throughput] [--skip-analyze]
(``--full`` adds 10^5 tumours to the sizes.)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TUMOURS_PER_PATIENT = 2.15  # mean of SyntheticCohortSpec.tumours_per_patient_probs


def _child(n_tumours: int, bootstrap: int) -> None:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's library, not an installed copy
    from LuDoseResponseLib.analysis.cohort_analysis import AnalysisSettings, analyze_cohort
    from LuDoseResponseLib.response.cohort import validate_cohort_table
    from LuDoseResponseLib.response.synthetic_cohort import SyntheticCohortSpec, generate_cohort

    logging.disable(logging.WARNING)
    spec = SyntheticCohortSpec(n_patients=max(4, round(n_tumours / TUMOURS_PER_PATIENT)))
    cohort = validate_cohort_table(generate_cohort(seed=7, spec=spec).astype(str), min_baseline_volume_cm3=0.0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = analyze_cohort(cohort, AnalysisSettings(min_baseline_volume_cm3=0.0, bootstrap=bootstrap)).to_dict()
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    failed = [k for k in ("tcp",) if "error" in result[k]]
    print(json.dumps({"n": cohort.n_rows, "time_s": elapsed, "peak_rss_mib": rss / 1024,
                      "rss_before_mib": rss0 / 1024, "failed_blocks": failed}))


def _exponent(a: dict, b: dict | None, key: str) -> float:
    """Local growth exponent log(a/b) / log(n_a/n_b); 1 = linear."""
    if b is None or a[key] <= 0 or b[key] <= 0:
        return float("nan")
    return math.log(a[key] / b[key]) / math.log(a["n"] / b["n"])


def _throughput(workers: list[int], n_patients: int) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from LuDoseResponseLib.pipeline.cohort_run import run_cohort
    from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
    from LuDoseResponseLib.pipeline.phantoms import write_patient

    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="ludr-cohort-bench-"))
    try:
        manifests = [write_patient(make_patient(f"P{i:02d}", seed=500 + i), root / "phantoms" / f"P{i:02d}")
                     for i in range(n_patients)]
        run_cohort(manifests[:1], root / "warm")             # the kernel into the cache; not timed
        backends = [("local pool", None)]
        try:
            from distributed import LocalCluster
            backends.append(("dask LocalCluster", LocalCluster))
        except ImportError:
            print("(dask.distributed is not installed: local pool only)")
        print(f"{'backend':>18} {'workers':>8} {'patients':>9} {'time_s':>8} {'patients/min':>13}")
        for name, cluster_type in backends:
            for n in workers:
                out = root / f"{name.split()[0]}-{n}"
                t0 = time.perf_counter()
                if cluster_type is None:
                    run = run_cohort(manifests, out, jobs=n)
                else:
                    with cluster_type(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster:
                        from distributed import Client

                        with Client(cluster, set_as_default=False) as client:
                            client.run(logging.disable, logging.WARNING)   # as here: no pipeline warnings
                        t0 = time.perf_counter()                 # the cluster's start-up is not counted
                        run = run_cohort(manifests, out, scheduler=cluster.scheduler_address)
                elapsed = time.perf_counter() - t0
                assert not run.failures, run.failures
                print(f"{name:>18} {n:>8} {n_patients:>9} {elapsed:>8.1f} {n_patients / elapsed * 60:>13.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _analyze_scaling(sizes: list[int], bootstrap: int) -> None:
    rows = []
    print(f"{'tumours':>8} {'time_s':>9} {'peak_MiB':>9} {'t/t0':>8} {'mem/mem0':>9} {'exp_time':>9} {'exp_mem':>8}")
    for size in sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", str(size), "--bootstrap", str(bootstrap)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        base, prev = rows[0], rows[-2] if len(rows) > 1 else None
        mem = r["peak_rss_mib"] - base["rss_before_mib"]
        mem0 = base["peak_rss_mib"] - base["rss_before_mib"]

        print(f"{r['n']:>8} {r['time_s']:>9.2f} {r['peak_rss_mib']:>9.0f} {r['time_s'] / base['time_s']:>8.1f} "
              f"{mem / max(mem0, 1e-9):>9.1f} {_exponent(r, prev, 'time_s'):>9.2f} "
              f"{_exponent(r, prev, 'peak_rss_mib'):>8.2f}"
              + (f"  failed: {r['failed_blocks']}" if r["failed_blocks"] else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--full", action="store_true", help="add 100000 tumours to --sizes (minutes)")
    ap.add_argument("--bootstrap", type=int, default=10000)
    ap.add_argument("--workers", default="1,2", help="local worker processes for the throughput (default 1,2)")
    ap.add_argument("--patients", type=int, default=8, help="phantom patients for the throughput (default 8)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-analyze", action="store_true")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.bootstrap)
        return
    if not args.skip_throughput:
        _throughput([int(w) for w in args.workers.split(",")], args.patients)
    if not args.skip_analyze:
        sizes = [int(s) for s in args.sizes.split(",")]
        _analyze_scaling(sizes + ([100000] if args.full and 100000 not in sizes else []), args.bootstrap)


if __name__ == "__main__":
    main()
