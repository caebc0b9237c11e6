"""Benchmark: one phantom patient (4 cycles × 4 SPECT time points, 128×128×100 at 3 mm) through run_patient.

Per stage of the patient pipeline (read images, quantification, density, dose rate, masks, VOI
integrals, voxel-wise dose map, outputs, ...) it prints, measured in this run on this machine:

- calls, wall time and CPU time of the stage inside ``run_patient`` (kernels cached: a warm-up run
  comes first), and "other", the time outside every stage;
- the traced peak memory of the stage above what was allocated when it started (tracemalloc, in a
  separate run, because tracing slows Python code down), and the whole run's traced peak and
  resident-set high-water mark (Linux /proc);
- the stage's own benchmark: the stage called by itself on the same inputs, outside the pipeline,
  and the ratio of the whole run_patient to the sum of these (1 = no overhead beyond the stages).

``--baseline REF`` measures the library of the git revision REF (e.g. ``main`` or a commit) in the
same run, on the same phantom, alternating with this checkout's library, and prints each number as a
ratio after/before. Each measurement runs in its own process (``--repeat`` times; medians).
Target (issue 12): run_patient under 20 s on 2 cores once kernels are cached.

Usage: .venv/bin/python benchmarks/pipeline.py [--baseline main] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import warnings
from io import BytesIO
from pathlib import Path

from peak_memory import rss_tools

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 20.0

# (label, module, attribute): the pipeline's stages, wrapped where run_patient looks them up
STAGES = (
    ("manifest (validation, headers)", "LuDoseResponseLib.pipeline.patient", "load_manifest"),
    ("read images (DICOM)", "LuDoseResponseLib.io.dicom", "read_volume"),
    ("quantification", "LuDoseResponseLib.pipeline.patient", "quantify_spect"),
    ("density on the SPECT grid", "LuDoseResponseLib.pipeline.patient", "density_on_grid"),
    ("dose rate (kernel FFT)", "LuDoseResponseLib.pipeline.patient", "dose_rate_map"),
    ("tumour masks", "LuDoseResponseLib.pipeline.patient", "_masks_on_grid"),
    ("PVC", "LuDoseResponseLib.pipeline.patient", "_pvc_factors"),
    ("VOI means", "LuDoseResponseLib.pipeline.patient", "voi_mean_values"),
    ("VOI time integrals", "LuDoseResponseLib.pipeline.patient", "time_integral"),
    ("voxel-wise dose map", "LuDoseResponseLib.pipeline.patient", "voxelwise_time_integral"),
    ("volumetry", "LuDoseResponseLib.pipeline.patient", "volumes_over_time"),
    ("tumour rows", "LuDoseResponseLib.pipeline.patient", "tumour_rows"),
    ("write NRRD", "LuDoseResponseLib.pipeline.patient", "write_nrrd"),
    ("input hashes", "LuDoseResponseLib.pipeline.patient", "sha256"),
)
# stages that are pure functions of their arguments: re-run on their own for the stage benchmark
STANDALONE = {"read images (DICOM)", "quantification", "density on the SPECT grid", "dose rate (kernel FFT)",
              "VOI means", "VOI time integrals", "voxel-wise dose map"}


# ---------------------------------------------------------------------------------------------
# child: one measurement of one library
class _Recorder:
    """Wraps the stage functions; attributes time (or traced memory) to the outermost stage running."""

    def __init__(self, memory: bool, capture: bool):
        self.memory, self.capture = memory, capture
        self.depth = 0
        self.stats = {label: {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0, "peak_mib": 0.0} for label, *_ in STAGES}
        self.calls: dict[str, list] = {label: [] for label in STANDALONE}
        self.whole_peak = 0

    def wrap(self, label, fn):
        def stage(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            if self.memory:
                self.whole_peak = max(self.whole_peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.reset_peak()
                start = tracemalloc.get_traced_memory()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                s = self.stats[label]
                s["calls"] += 1
                s["wall_s"] += time.perf_counter() - t0
                s["cpu_s"] += time.process_time() - c0
                if self.memory:
                    peak = tracemalloc.get_traced_memory()[1]
                    self.whole_peak = max(self.whole_peak, peak)
                    s["peak_mib"] = max(s["peak_mib"], (peak - start) / 2**20)
                if self.capture and label in STANDALONE:
                    self.calls[label].append((fn, args, kwargs))
                self.depth -= 1
        return stage


def _install(recorder: _Recorder) -> list:
    import importlib

    undo = []
    for label, module, attr in STAGES:
        mod = importlib.import_module(module)
        fn = getattr(mod, attr, None)
        if fn is None:           # a stage this version of the library does not have
            continue
        setattr(mod, attr, recorder.wrap(label, fn))
        undo.append((mod, attr, fn))
    return undo


def _uninstall(undo: list) -> None:
    for mod, attr, fn in undo:
        setattr(mod, attr, fn)


def _measure(manifest: Path) -> dict:
    import logging

    from LuDoseResponseLib.pipeline import patient

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        patient.run_patient(manifest, out / "warm")           # kernel for the voxel size computed/cached here
        rec = _Recorder(memory=False, capture=True)
        undo = _install(rec)
        rss = rss_tools()
        rss_base = rss[1]() if rss else None
        if rss:
            rss[0]()
        t0, c0 = time.perf_counter(), time.process_time()
        patient.run_patient(manifest, out / "timed")
        whole = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        whole["rss_hwm_mib"] = rss[1]() / 2**20 if rss else None
        whole["rss_rise_mib"] = (rss[1]() - rss_base) / 2**20 if rss else None
        _uninstall(undo)
        own = {}
        for label, calls in rec.calls.items():     # each stage by itself, on the inputs it had in the run
            t0, c0 = time.perf_counter(), time.process_time()
            for fn, args, kwargs in calls:
                fn(*args, **kwargs)
            own[label] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        del rec.calls
        mem = _Recorder(memory=True, capture=False)
        undo = _install(mem)
        tracemalloc.start()
        patient.run_patient(manifest, out / "traced")
        mem.whole_peak = max(mem.whole_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        _uninstall(undo)
    stages = rec.stats
    for label, s in mem.stats.items():
        stages[label]["peak_mib"] = s["peak_mib"]
    whole["traced_peak_mib"] = mem.whole_peak / 2**20
    import LuDoseResponseLib

    return {"stages": stages, "whole": whole, "own": own, "library": str(Path(LuDoseResponseLib.__file__).parent)}


# ---------------------------------------------------------------------------------------------
# parent: phantom, child processes, table
def _library_of(ref: str, into: Path) -> Path:
    """This repository's LuDoseResponseLib at git revision ``ref``, extracted into ``into``."""
    blob = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, "LuDoseResponseLib"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def _run_child(library_root: Path, manifest: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    try:
        env = dict(os.environ, PYTHONPATH=str(library_root))
        subprocess.run([sys.executable, __file__, "--measure", str(manifest), "--json", str(result)],
                       check=True, env=env, cwd=str(library_root))
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


def _median(runs: list[dict], *keys):
    vals = []
    for r in runs:
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def _fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


def _ratio(after, before):
    return "–" if after is None or not before else f"{after / before:.2f}"


def _report(after: list[dict], before: list[dict] | None) -> None:
    cols = ("wall_s", "cpu_s", "peak_mib")
    head = f"{'stage':32s} {'calls':>5s} {'wall s':>7s} {'CPU s':>7s} {'peak MiB':>8s} {'own s':>7s}"
    if before:
        head += f" | {'before: wall':>12s} {'CPU':>6s} {'peak':>6s} | {'ratio: wall':>11s} {'CPU':>5s} {'peak':>5s}"
    print(head)
    sum_wall = {"after": 0.0, "before": 0.0}
    for label, *_ in STAGES:
        a = [_median(after, "stages", label, c) for c in cols]
        calls = _median(after, "stages", label, "calls")
        if not calls and not (before and _median(before, "stages", label, "calls")):
            continue
        sum_wall["after"] += a[0] or 0.0
        own = _median(after, "own", label, "wall_s")
        line = f"{label:32s} {int(calls or 0):5d} {_fmt(a[0]):>7s} {_fmt(a[1]):>7s} {_fmt(a[2], 0):>8s} {_fmt(own):>7s}"
        if before:
            b = [_median(before, "stages", label, c) for c in cols]
            sum_wall["before"] += b[0] or 0.0
            line += (f" | {_fmt(b[0]):>12s} {_fmt(b[1]):>6s} {_fmt(b[2], 0):>6s} | {_ratio(a[0], b[0]):>11s} "
                     f"{_ratio(a[1], b[1]):>5s} {_ratio(a[2], b[2]):>5s}")
        print(line)

    def whole(runs, key):
        return _median(runs, "whole", key)

    other_a = whole(after, "wall_s") - sum_wall["after"]
    line = f"{'other (outside the stages)':32s} {'':5s} {_fmt(other_a):>7s}"
    if before:
        other_b = whole(before, "wall_s") - sum_wall["before"]
        line += f" {'':7s} {'':8s} {'':7s} | {_fmt(other_b):>12s} {'':6s} {'':6s} | {_ratio(other_a, other_b):>11s}"
    print(line)
    line = (f"{'whole run_patient':32s} {'':5s} {_fmt(whole(after, 'wall_s')):>7s} {_fmt(whole(after, 'cpu_s')):>7s} "
            f"{_fmt(whole(after, 'traced_peak_mib'), 0):>8s}")
    if before:
        line += (f" {'':7s} | {_fmt(whole(before, 'wall_s')):>12s} {_fmt(whole(before, 'cpu_s')):>6s} "
                 f"{_fmt(whole(before, 'traced_peak_mib'), 0):>6s} | "
                 f"{_ratio(whole(after, 'wall_s'), whole(before, 'wall_s')):>11s} "
                 f"{_ratio(whole(after, 'cpu_s'), whole(before, 'cpu_s')):>5s} "
                 f"{_ratio(whole(after, 'traced_peak_mib'), whole(before, 'traced_peak_mib')):>5s}")
    print(line)
    rss = whole(after, "rss_hwm_mib")
    if rss is not None:
        line = (f"resident-set high-water mark of the timed run: {rss:.0f} MiB "
                f"(rise during the run {whole(after, 'rss_rise_mib'):.0f} MiB)")
        if before and whole(before, "rss_hwm_mib") is not None:
            line += (f"; before {whole(before, 'rss_hwm_mib'):.0f} MiB (rise {whole(before, 'rss_rise_mib'):.0f} MiB), "
                     f"ratio {_ratio(rss, whole(before, 'rss_hwm_mib'))}")
        print(line)
    for name, runs in (("after", after), ("before", before)) if before else (("this checkout", after),):
        own = sum(_median(runs, "own", label, "wall_s") or 0.0 for label in STANDALONE)
        print(f"{name}: whole run_patient / Σ stages' own benchmarks ({', '.join(sorted(STANDALONE))}) = "
              f"{whole(runs, 'wall_s'):.2f} s / {own:.2f} s = {whole(runs, 'wall_s') / own:.2f}")
    w = whole(after, "wall_s")
    print(f"run_patient (kernels cached): {w:.1f} s wall, {whole(after, 'cpu_s'):.1f} s CPU on "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPUs  "
          f"[target < {TARGET_S:.0f} s on 2 cores: {'met' if w < TARGET_S else 'NOT met'}]")
    if before:
        print(f"before: {whole(before, 'wall_s'):.1f} s wall, {whole(before, 'cpu_s'):.1f} s CPU; "
              f"after/before = {_ratio(w, whole(before, 'wall_s'))} (wall), "
              f"{_ratio(whole(after, 'cpu_s'), whole(before, 'cpu_s'))} (CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REF", help="also measure the library at this git revision")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per library (medians)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)     # internal: child process
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        args.json.write_text(json.dumps(_measure(args.measure)))
        return
    sys.path.insert(0, str(REPO_ROOT))           # this checkout's library, not an installed copy
    from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
    from LuDoseResponseLib.pipeline.phantoms import write_patient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        p = make_patient("B01", seed=7, shape_zyx=(100, 128, 128), spacing_mm=3.0, n_cycles=4,
                         scan_hours=(4.0, 24.0, 96.0, 168.0), fu_refine=1, duration_s=900.0)
        manifest = write_patient(p, root / "B01")
        print(f"phantom generation: {time.perf_counter() - t0:.1f} s")
        base_root = _library_of(args.baseline, root / "baseline") if args.baseline else None
        after, before = [], []
        for _ in range(args.repeat):             # alternate, so both see the same machine load
            if base_root:
                before.append(_run_child(base_root, manifest))
            after.append(_run_child(REPO_ROOT, manifest))
    title = "one patient: 4 cycles × 4 SPECT time points, 128×128×100 at 3 mm, kernels cached"
    if args.baseline:
        title += f"; before = {args.baseline}, after = this checkout"
    print(f"{title}; medians of {args.repeat} run(s)")
    print(f"after: {after[0]['library']}" + (f"; before: {before[0]['library']}" if before else ""))
    _report(after, before or None)


if __name__ == "__main__":
    main()
