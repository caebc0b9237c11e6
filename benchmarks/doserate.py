"""Benchmark: dose_rate_map against scipy.signal.fftconvolve(mode="same") with the same kernel.

Grids: 256×256×160 and 128³, both at 4.8 mm (the Lu-177 kernel with photons to 100 mm is 43³).
For each grid it prints, measured in this run on this machine:

- wall time of dose_rate_map (median of repeats; the kernel spectrum and work buffer are reused as
  across time points), and of its first call on the grid (which makes them);
- wall time of the naive baseline fftconvolve(activity_mbq, kernel, mode="same") in float32, and the ratio;
- peak memory of the first dose_rate_map call on the grid as a multiple of the input array: traced numpy
  allocations (tracemalloc) and the rise of the resident-set high-water mark (Linux /proc, when available);
  and the memory kept between time points.

It also times kernel generation for a new voxel size in an empty cache (Monte Carlo + integration),
for a second new voxel size (the electron dose-point kernel is then cached), and a cached load.

Targets (issue 3): ≤ 0.5× the naive time; peak ≤ 4× the input array; kernel generation ≤ 10 s.
Usage: .venv/bin/python benchmarks/doserate.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import SimpleITK as sitk
from peak_memory import rss_tools
from scipy.signal import fftconvolve

VOXEL_MM = 4.8


def _phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Bq/mL: a body-like ellipsoid with uptake spheres and Poisson-like noise (float32)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    body = ((x / 0.8) ** 2 + (y / 0.6) ** 2 + (z / 0.9) ** 2) <= 1
    act = np.where(body, 2.0e3, 0.0).astype(np.float32)
    for _ in range(12):
        c = rng.uniform(-0.5, 0.5, 3)
        r = rng.uniform(0.03, 0.12)
        act[((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= r * r] += rng.uniform(5e4, 5e5)
    act *= rng.gamma(50.0, 1 / 50.0, size=shape).astype(np.float32)
    return act


def _timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_kernel_generation() -> None:
    from LuDoseResponseLib.physics import electron_transport, kernels

    electron_transport._electron_dpk_cached.cache_clear()
    saved = os.environ.get("LUDR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LUDR_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        kernels.lu177_voxel_kernel(4.42)
        first = time.perf_counter() - t0
        electron_transport._electron_dpk_cached.cache_clear()
        t0 = time.perf_counter()
        kernels.lu177_voxel_kernel((3.9, 3.9, 3.0))
        second = time.perf_counter() - t0
        t0 = time.perf_counter()
        kernels.lu177_voxel_kernel(4.42)
        cached = time.perf_counter() - t0
    if saved is None:             # leave the caller's cache setting as it was
        del os.environ["LUDR_CACHE_DIR"]
    else:
        os.environ["LUDR_CACHE_DIR"] = saved
    print("kernel generation (new voxel size, empty cache, includes the electron Monte Carlo): "
          f"{first:.2f} s  [target ≤ 10 s]")
    print(f"kernel generation (another new voxel size, dose-point kernel cached): {second:.2f} s")
    print(f"kernel load from the disk cache: {cached * 1000:.1f} ms")


def bench_grid(shape: tuple[int, int, int], repeat: int) -> None:
    from LuDoseResponseLib.dosimetry.doserate import dose_rate_map
    from LuDoseResponseLib.physics import convolution
    from LuDoseResponseLib.physics.kernels import lu177_voxel_kernel

    act = _phantom(shape)
    img = sitk.GetImageFromArray(act)
    img.SetSpacing((VOXEL_MM,) * 3)
    kernel = lu177_voxel_kernel(VOXEL_MM).astype(np.float32)
    voxel_ml = VOXEL_MM**3 / 1000.0
    act_mbq = act * np.float32(voxel_ml * 1e-6)
    input_bytes = act.nbytes

    convolution.clear_convolver_cache()
    dose_rate_map(img)                                  # warm-up: imports, kernel from the disk cache
    convolution.clear_convolver_cache()
    rss = rss_tools()
    base = rss[2]() if rss else 0
    if rss:
        rss[0]()
    tracemalloc.start()
    t0 = time.perf_counter()
    first = dose_rate_map(img)                          # first call on the grid: spectrum and work buffer
    t_first = time.perf_counter() - t0
    _, peak_ours = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rise = (rss[1]() - base) if rss else None
    held = sum(c.spectrum_bytes + (c._buffer.nbytes if c._buffer is not None else 0)
               for c in convolution._CACHE.values())
    t_ours = _timed(lambda: dose_rate_map(img), repeat)
    fftconvolve(act_mbq, kernel, mode="same")          # warm-up
    t_naive = _timed(lambda: fftconvolve(act_mbq, kernel, mode="same"), repeat)

    naive = fftconvolve(act_mbq, kernel, mode="same") * np.float32(3.6)
    ours = sitk.GetArrayViewFromImage(first)
    agreement = float(np.max(np.abs(ours - naive)) / np.max(np.abs(naive)))
    del first, ours, naive
    tracemalloc.start()
    out = fftconvolve(act_mbq, kernel, mode="same")
    _, peak_naive = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out
    rss_line = (f"RSS high-water rise {rise / 2**20:.0f} MiB = {rise / input_bytes:.2f}× input (first call)"
                if rise is not None else "RSS high-water rise: not available on this platform")
    print(f"\ngrid {shape[2]}×{shape[1]}×{shape[0]} (x×y×z) at {VOXEL_MM} mm, kernel {kernel.shape[::-1]}, "
          f"input {input_bytes / 2**20:.0f} MiB float32, {convolution.default_workers()} FFT workers")
    print(f"  dose_rate_map: {t_ours:.3f} s per time point (first call on the grid, which makes the kernel "
          f"spectrum and work buffer: {t_first:.3f} s)")
    print(f"  naive fftconvolve(mode='same'): {t_naive:.3f} s")
    print(f"  ratio ours/naive: {t_ours / t_naive:.2f} (first call {t_first / t_naive:.2f})  [target ≤ 0.5]")
    print(f"  peak traced memory (first call, everything allocated): ours {peak_ours / 2**20:.0f} MiB = "
          f"{peak_ours / input_bytes:.2f}× input; naive {peak_naive / 2**20:.0f} MiB = "
          f"{peak_naive / input_bytes:.2f}× input  [target ≤ 4×]")
    print(f"  kept between time points (kernel spectrum + work buffer): {held / 2**20:.0f} MiB = "
          f"{held / input_bytes:.2f}× input")
    print(f"  {rss_line}")
    print(f"  max |ours − naive| / max(naive) = {agreement:.1e} (float32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--grid", help="internal: benchmark one grid 'z,y,x' in this process")
    args = parser.parse_args()
    if args.grid:
        bench_grid(tuple(int(v) for v in args.grid.split(",")), args.repeat)
        return
    bench_kernel_generation()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, LUDR_CACHE_DIR=cache)
        for shape in ((160, 256, 256), (128, 128, 128)):
            # One process per grid, so the resident-set high-water mark starts clean.
            subprocess.run([sys.executable, __file__, "--grid", ",".join(map(str, shape)),
                            "--repeat", str(args.repeat)], check=True, env=env)


if __name__ == "__main__":
    main()
