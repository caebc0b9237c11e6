"""Benchmark: one phantom patient (4 cycles × 4 SPECT time points, 128×128×100) through run_patient.

Prints the wall time of the phantom generation and of the whole patient pipeline (kernels cached after
a warm-up run) and the peak traced Python memory. Per-stage timing is not broken out yet.
Run: python benchmarks/pipeline.py
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

from LuDoseResponseLib.pipeline.patient import run_patient
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        p = make_patient("B01", seed=7, shape_zyx=(100, 128, 128), spacing_mm=3.0, n_cycles=4,
                         scan_hours=(4.0, 24.0, 96.0, 168.0), fu_refine=1, duration_s=900.0)
        manifest = write_patient(p, root / "B01")
        t1 = time.perf_counter()
        run_patient(manifest, root / "warm")            # kernel for 3 mm computed/cached here
        t2 = time.perf_counter()
        tracemalloc.start()
        run_patient(manifest, root / "out")
        t3 = time.perf_counter()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"phantom generation: {t1 - t0:.1f} s")
    print(f"run_patient (first, kernel cache cold or warm): {t2 - t1:.1f} s")
    print(f"run_patient (kernels cached): {t3 - t2:.1f} s  (target < 20 s on 2 cores)")
    print(f"peak traced memory: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
