"""Disk and memory cache of the computed Lu-177 kernels and of the electron dose-point kernel.

A cache entry is keyed by everything its values depend on: the request (voxel size, density,
photon radius), the numerical settings, a digest of the packaged physics data and a digest of the
source code of the modules that compute a kernel (:data:`PHYSICS_MODULES`). A changed data file
or a changed line of physics code therefore never reuses a kernel computed before; the model
version strings are kept for readability only. Entries carry a SHA-256 of their arrays and are
written atomically (:mod:`LuDoseResponseLib.files`); a corrupt or foreign file is recomputed.

Processes that share the cache folder (a process pool, the workers of a cluster) compute each kernel
once: a missing entry is computed under an exclusive lock file beside it (:mod:`LuDoseResponseLib.locks`,
released by the operating system if its holder dies), and whoever waited for that lock reads the entry
its holder wrote instead of computing it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from LuDoseResponseLib.files import atomic_path
from LuDoseResponseLib.locks import exclusive_lock
from LuDoseResponseLib.physics.electron_transport import DPK_MODEL_VERSION, RadialEnergyProfile, lu177_electron_dpk
from LuDoseResponseLib.physics.kernel_compute import (
    _PHOTON_NEAR_FACTOR,
    _PHOTON_SHELLS_PER_VOXEL,
    _SPLAT_MAX_POINTS,
    _SPLAT_MIN_POINTS,
    _SPLAT_POINTS_PER_AREA,
    DPK_HISTORIES,
    DPK_SEED,
    KERNEL_MODEL_VERSION,
    KernelParts,
    _check_density,
    _check_photon_radius,
    check_kernel_size,
    compute_lu177_kernel_parts,
    default_photon_radius_mm,
    planned_half_width,
    voxel_size_xyz_mm,
)

log = logging.getLogger(__name__)

_DATA_FILES = ("lu177_icrp107.json", "water_photon_coefficients.json")
#: the modules whose source determines a kernel's values (their digest is part of every cache key)
ELECTRON_MODULES = ("LuDoseResponseLib.physics.nuclides", "LuDoseResponseLib.physics.electron_transport")
PHYSICS_MODULES = ELECTRON_MODULES + ("LuDoseResponseLib.physics.photon_kernel",
                                      "LuDoseResponseLib.physics.kernel_compute")


def kernel_cache_dir() -> Path:
    """Where computed kernels are cached: ``$LUDR_CACHE_DIR``, else the platform's user cache.

    Linux: ``$XDG_CACHE_HOME/ludoseresponse`` (default ``~/.cache/ludoseresponse``); macOS:
    ``~/Library/Caches/ludoseresponse``; Windows: ``%LOCALAPPDATA%\\ludoseresponse\\Cache``.
    """
    env = os.environ.get("LUDR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        home = Path.home()
    except (RuntimeError, KeyError):     # no HOME and no password entry (some containers)
        fallback = Path(tempfile.gettempdir()) / "ludoseresponse-cache"
        log.warning("no home folder: caching kernels in %s (set LUDR_CACHE_DIR to choose)", fallback)
        return fallback
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "ludoseresponse"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "ludoseresponse" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "ludoseresponse"


@lru_cache(maxsize=1)
def _data_digest() -> str:
    """SHA-256 of the packaged physics data (nuclide and photon coefficients): part of every cache key, so a
    replaced data file (SOURCES.md allows it) never reuses kernels computed from the old one."""
    h = hashlib.sha256()
    for name in _DATA_FILES:
        h.update(resources.files("LuDoseResponseLib.data").joinpath(name).read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=4)
def code_digest(modules: tuple[str, ...]) -> str:
    """SHA-256 of the source files of ``modules`` (the compiled file where no source is installed).

    Part of the cache keys, so that a kernel computed by older physics code is never served after
    a change of that code, whether or not a model version string was bumped.
    """
    h = hashlib.sha256()
    for name in modules:
        path = Path(importlib.import_module(name).__file__)
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _dpk_key() -> dict:
    return {"dpk_model": DPK_MODEL_VERSION, "n_histories": DPK_HISTORIES, "seed": DPK_SEED,
            "data": _data_digest(), "electron_code": code_digest(ELECTRON_MODULES)}


def _request_key(vox_mm, rho, photon_radius_mm) -> dict:
    return {"model": KERNEL_MODEL_VERSION, "voxel_size_mm_xyz": [round(v, 6) for v in vox_mm],
            "density_g_per_cm3": round(rho, 6), "photon_radius_mm": round(float(photon_radius_mm), 6),
            **_dpk_key(), "points_per_area": _SPLAT_POINTS_PER_AREA, "min_points": _SPLAT_MIN_POINTS,
            "max_points": _SPLAT_MAX_POINTS, "photon_near_factor": list(_PHOTON_NEAR_FACTOR),
            "photon_shells_per_voxel": _PHOTON_SHELLS_PER_VOXEL, "physics_code": code_digest(PHYSICS_MODULES)}


def _cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    hx, hy, hz = key["voxel_size_mm_xyz"]
    return kernel_cache_dir() / f"lu177_dvk_{hx:g}x{hy:g}x{hz:g}mm_{digest}.npz"


def _arrays_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        h.update(repr(a.shape).encode())
    return h.hexdigest()


def _load_cached(path: Path, key: dict) -> KernelParts | None:
    """The cached parts if the file is complete and matches ``key``; None (and delete it) if not."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            electron = np.array(z["electron"], dtype=float)
            photon = np.array(z["photon"], dtype=float)
            meta = json.loads(str(z["meta"]))
        ok = (meta.get("key") == key and electron.shape == photon.shape and electron.ndim == 3
              and all(s % 2 == 1 for s in electron.shape)
              and np.all(np.isfinite(electron)) and np.all(np.isfinite(photon))
              and meta.get("sha256") == _arrays_digest(electron, photon))
    except Exception as exc:        # a truncated or foreign file: regenerate
        log.warning("kernel cache file %s is unreadable (%s); regenerating it", path, exc)
        ok = False
    if not ok:
        log.warning("kernel cache file %s does not match its request or is corrupt; regenerating it", path)
        try:
            path.unlink()
        except OSError:
            pass
        return None
    vox = tuple(float(v) for v in key["voxel_size_mm_xyz"])
    return KernelParts(electron=electron, photon=photon, voxel_size_mm=vox,
                       density_g_per_cm3=float(key["density_g_per_cm3"]),
                       photon_radius_mm=float(key["photon_radius_mm"]), meta=meta.get("info", {}))


def _store(path: Path, key: dict, parts: KernelParts) -> None:
    meta = {"key": key, "sha256": _arrays_digest(parts.electron, parts.photon), "info": parts.meta}
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, electron=parts.electron, photon=parts.photon, meta=np.array(json.dumps(meta)))
    except OSError as exc:
        log.warning("could not write the kernel cache %s (%s); continuing without caching", path, exc)


def cached_electron_dpk(*, use_cache: bool = True) -> RadialEnergyProfile:
    """The Lu-177 electron dose-point kernel, from the disk cache or the Monte Carlo (then cached)."""
    key = _dpk_key()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = kernel_cache_dir() / f"lu177_electron_dpk_{digest}.npz"
    if not use_cache:
        return lu177_electron_dpk(n_histories=DPK_HISTORIES, seed=DPK_SEED)
    cached = _load_cached_dpk(path, key)
    if cached is not None:
        return cached
    with _computing(path):
        return _load_cached_dpk(path, key) or _compute_and_store_dpk(path, key)


def _load_cached_dpk(path: Path, key: dict) -> RadialEnergyProfile | None:
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                edges, energy = np.array(z["edges_cm"]), np.array(z["energy_mev"])
                meta = json.loads(str(z["meta"]))
            if meta.get("key") == key and meta.get("sha256") == _arrays_digest(edges, energy):
                return RadialEnergyProfile(edges_cm=edges, energy_mev=energy, raw_total_mev=meta["raw_total_mev"],
                                           beyond_mev=meta["beyond_mev"], mode="full",
                                           n_histories=DPK_HISTORIES, seed=DPK_SEED)
        except Exception as exc:    # unreadable: recompute below
            log.warning("electron DPK cache %s is unreadable (%s); recomputing it", path, exc)
        log.warning("electron DPK cache %s does not match or is corrupt; recomputing it", path)
    return None


def _compute_and_store_dpk(path: Path, key: dict) -> RadialEnergyProfile:
    dpk = lu177_electron_dpk(n_histories=DPK_HISTORIES, seed=DPK_SEED)
    meta = {"key": key, "sha256": _arrays_digest(dpk.edges_cm, dpk.energy_mev),
            "raw_total_mev": dpk.raw_total_mev, "beyond_mev": dpk.beyond_mev}
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, edges_cm=dpk.edges_cm, energy_mev=dpk.energy_mev, meta=np.array(json.dumps(meta)))
    except OSError as exc:
        log.warning("could not write the DPK cache %s (%s)", path, exc)
    return dpk


@contextlib.contextmanager
def _computing(path: Path):
    """Hold the lock that makes one process of those sharing the cache compute ``path``'s entry.

    Where no lock file can be made (an unwritable cache folder) the entry is computed without it."""
    lock = path.with_name(f".{path.name}.lock")
    with contextlib.ExitStack() as held:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive_lock(lock))
        except OSError as exc:
            log.warning("cannot lock the kernel cache %s (%s); computing without the lock", lock, exc)
        yield


def lu177_kernel_parts(voxel_size_mm, *, density_g_per_cm3: float = 1.0, photon_radius_mm: float | None = None,
                       use_cache: bool = True,
                       progress: Callable[[float], None] | None = None) -> KernelParts:
    """Electron and photon Lu-177 kernels for a voxel size, from the disk cache or computed (then cached)."""
    vox = voxel_size_xyz_mm(voxel_size_mm)
    rho = _check_density(density_g_per_cm3)
    radius = default_photon_radius_mm(vox) if photon_radius_mm is None else _check_photon_radius(photon_radius_mm)
    check_kernel_size(planned_half_width(vox, radius))
    key = _request_key(vox, rho, radius)
    path = _cache_path(key)
    if use_cache:
        memo_key = (str(path), json.dumps(key, sort_keys=True), _file_signature(path))
        if memo_key in _MEMORY:
            return _MEMORY[memo_key]
        cached = _load_cached(path, key)
        if cached is not None:
            log.debug("Lu-177 kernel for %s mm loaded from %s", vox, path)
            _remember((str(path), json.dumps(key, sort_keys=True), _file_signature(path)), cached)
            return cached
    if not use_cache:
        return compute_lu177_kernel_parts(vox, density_g_per_cm3=rho, photon_radius_mm=radius, progress=progress,
                                          dpk=cached_electron_dpk(use_cache=False))
    with _computing(path):
        parts = _load_cached(path, key)   # written by the process that held the lock before us
        if parts is None:
            parts = compute_lu177_kernel_parts(vox, density_g_per_cm3=rho, photon_radius_mm=radius,
                                               progress=progress, dpk=cached_electron_dpk())
            _store(path, key, parts)
    _remember((str(path), json.dumps(key, sort_keys=True), _file_signature(path)), parts)
    return parts


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


_MEMORY: dict[tuple, KernelParts] = {}
_MEMORY_SIZE = 4


def _remember(memo_key: tuple, parts: KernelParts) -> None:
    """Keep the last few kernels in memory (read-only arrays), keyed with the cache file's mtime and size."""
    parts.electron.flags.writeable = False
    parts.photon.flags.writeable = False
    _MEMORY[memo_key] = parts
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.pop(next(iter(_MEMORY)))

