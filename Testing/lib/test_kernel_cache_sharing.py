"""Processes sharing one kernel cache folder (a process pool, the workers of a cluster) compute a missing
kernel once: the others wait for it and read what the first wrote. The count of computations is the truth."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np

import LuDoseResponseLib.physics.kernel_cache as KC
from LuDoseResponseLib.physics.kernel_compute import KernelParts

VOXEL_MM = (7.1, 7.1, 7.1)


def _child(counter: str, result: str) -> None:
    parts = KC.lu177_kernel_parts(VOXEL_MM)
    with open(result, "a") as f:
        f.write(f"{os.getpid()} {parts.electron.sum():.17g} {parts.photon.sum():.17g}\n")


def test_processes_sharing_a_cache_compute_a_kernel_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path / "cache"))
    counter, result = tmp_path / "computed.txt", tmp_path / "result.txt"

    def slow_compute(vox, *, density_g_per_cm3, photon_radius_mm, progress=None, dpk=None):
        with open(counter, "a") as f:                     # O_APPEND: one line per computation, any process
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)                                   # long enough for the others to find the entry missing
        rng = np.random.default_rng(os.getpid())
        return KernelParts(electron=rng.random((5, 5, 5)), photon=rng.random((5, 5, 5)), voxel_size_mm=tuple(vox),
                           density_g_per_cm3=density_g_per_cm3, photon_radius_mm=photon_radius_mm)

    monkeypatch.setattr(KC, "compute_lu177_kernel_parts", slow_compute)
    monkeypatch.setattr(KC, "cached_electron_dpk", lambda **kw: None)
    ctx = multiprocessing.get_context("fork")             # the children inherit the patched functions
    children = [ctx.Process(target=_child, args=(str(counter), str(result))) for _ in range(3)]
    for c in children:
        c.start()
    for c in children:
        c.join(60)
    assert [c.exitcode for c in children] == [0, 0, 0]
    assert len(counter.read_text().splitlines()) == 1
    sums = {tuple(line.split()[1:]) for line in result.read_text().splitlines()}
    assert len(result.read_text().splitlines()) == 3 and len(sums) == 1   # all use the one kernel computed
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [KC._cache_path(KC._request_key(
        VOXEL_MM, 1.0, KC.default_photon_radius_mm(VOXEL_MM))).name]      # the entry only: no lock file left
