"""External Lu-177 dose-voxel kernels: Lanconelli et al. 2012 text tables and raw 3-D arrays.

Both load as :class:`~LuDoseResponseLib.physics.kernels.VoxelKernel` in mGy/(MBq·s), indexed
[z, y, x] with the source voxel at the centre.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics.kernel_compute import UNIT, voxel_size_xyz_mm
from LuDoseResponseLib.physics.kernels import VoxelKernel

_UNIT_FACTORS = {   # to mGy/(MBq·s)
    "mGy/(MBq·s)": 1.0, "mGy/(MBq*s)": 1.0, "mGy/MBq/s": 1.0,
    "Gy/(Bq·s)": 1e9, "Gy/(Bq*s)": 1e9, "Gy/Bq/s": 1e9,
    "mGy/(MBq·h)": 1.0 / 3600.0, "mGy/(MBq*h)": 1.0 / 3600.0, "mGy/MBq/h": 1.0 / 3600.0,
    "Gy/(GBq·h)": 1.0 / 3600.0, "Gy/(GBq*h)": 1.0 / 3600.0,
}



def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise InputError(f"cannot read kernel file {path}: {exc}") from exc


def load_lanconelli_kernel(path: str | os.PathLike, *, voxel_size_mm=None,
                           density_g_per_cm3: float = 1.0) -> VoxelKernel:
    """Read a Lanconelli et al. (Phys Med Biol 2012;57:517) voxel S-value table.

    Format: a title line (e.g. ``Lu177 - 4.8mm - Soft tissue``), a header ``i j k S [mGy/(MBq·s)]``,
    then one row per octant offset i, j, k ≥ 0. The octant is mirrored into a (2n+1)³ kernel; i, j, k
    are taken as x, y, z. The voxel size comes from the title unless ``voxel_size_mm`` is given.
    """
    p = Path(path)
    lines = [ln.strip() for ln in _read_text(p).splitlines() if ln.strip()]
    if len(lines) < 3:
        raise InputError(f"{p}: too short for a Lanconelli kernel table (title, header, rows)")
    if voxel_size_mm is None:
        m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*mm", lines[0])
        if not m:
            raise InputError(f"{p}: no voxel size like '4.8mm' in the title line {lines[0]!r}; "
                             "pass voxel_size_mm")
        voxel_size_mm = float(m.group(1))
    vox = voxel_size_xyz_mm(voxel_size_mm, what=f"voxel size of {p}")
    header = lines[1]
    if "mGy" not in header or "MBq" not in header:
        raise InputError(f"{p}: header {header!r} does not state S in mGy/(MBq·s)")
    rows = []
    for n, ln in enumerate(lines[2:], start=3):
        parts = ln.replace(",", ".").split()
        try:
            i, j, k = (int(x) for x in parts[:3])
            s = float(parts[3])
        except (ValueError, IndexError) as exc:
            raise InputError(f"{p}, line {n}: expected 'i j k S', got {ln!r}") from exc
        if min(i, j, k) < 0 or not math.isfinite(s):
            raise InputError(f"{p}, line {n}: negative index or non-finite S in {ln!r}")
        rows.append((i, j, k, s))
    n_max = max(max(r[:3]) for r in rows)
    octant = np.full((n_max + 1,) * 3, np.nan)
    for i, j, k, s in rows:
        octant[k, j, i] = s
    if np.isnan(octant).any():
        raise InputError(f"{p}: the table does not list every offset of the octant 0..{n_max}")
    idx = np.abs(np.arange(-n_max, n_max + 1))
    values = octant[np.ix_(idx, idx, idx)]
    return VoxelKernel(values=values, voxel_size_mm=vox, source=str(p), density_g_per_cm3=density_g_per_cm3)


def load_raw_kernel(path: str | os.PathLike, *, shape_zyx: tuple[int, int, int] | None, voxel_size_mm,
                    unit: str = UNIT, dtype: str = "<f4", density_g_per_cm3: float = 1.0) -> VoxelKernel:
    """Read a raw 3-D kernel (e.g. PyTheranostics' 51³ float32) or a ``.npy`` file.

    ``shape_zyx`` must be given for raw files; the source voxel must be the centre (odd sizes).
    ``unit``: one of mGy/(MBq·s), Gy/(Bq·s), mGy/(MBq·h), Gy/(GBq·h).
    """
    p = Path(path)
    if unit not in _UNIT_FACTORS:
        raise InputError(f"kernel unit {unit!r} for {p} is not one of {sorted(set(_UNIT_FACTORS))}")
    vox = voxel_size_xyz_mm(voxel_size_mm, what=f"voxel size of {p}")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            if shape_zyx is None:
                raise InputError(f"{p}: a raw kernel needs shape_zyx")
            arr = np.fromfile(p, dtype=np.dtype(dtype))
            expected = int(np.prod(shape_zyx))
            if arr.size != expected:
                raise InputError(f"{p} holds {arr.size} values of {dtype}, but shape {tuple(shape_zyx)} needs "
                                 f"{expected}: check the shape and dtype")
            arr = arr.reshape(tuple(shape_zyx))
    except OSError as exc:
        raise InputError(f"cannot read kernel file {p}: {exc}") from exc
    if shape_zyx is not None and tuple(arr.shape) != tuple(shape_zyx):
        raise InputError(f"{p} has shape {arr.shape}, expected {tuple(shape_zyx)}")
    values = np.asarray(arr, dtype=float) * _UNIT_FACTORS[unit]
    return VoxelKernel(values=values, voxel_size_mm=vox, source=str(p), density_g_per_cm3=density_g_per_cm3)
