"""Voxel-wise time integration: one integral per voxel from a time series of maps, vectorised over voxels.

A dose-rate map per time point (Gy/h) gives a dose map (Gy); activity maps (MBq) give TIA maps (MBq·h).
Per voxel either a mono-exponential A·e^(−λt) fitted by weighted least squares (σ_i = rel_i·y_i; the same
objective as :func:`integration.time_integral` with ``values_sd = rel_sd·y``) or the trapezoid with the
head and tail rules of :func:`integration.trapezoid_columns`. No Python loop over voxels: the fit is a
Levenberg–Marquardt iteration on blocks of a few thousand voxels (small enough to stay in the CPU cache),
the unconverged voxels of all blocks pooled again every few iterations. Each voxel's arithmetic is the same
whatever the blocks, so the result does not depend on them (bit for bit). Each voxel's samples are divided by a
power of two near their maximum before fitting (exact), so the result does not depend on their unit.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.dosimetry.integration.inputs import (
    CAP_TOLERANCE,
    HEADS,
    LN2,
    TAILS,
    as_1d,
    check_choice,
    check_samples,
    check_tail_points,
    finite,
)
from LuDoseResponseLib.dosimetry.integration.models import RATE_BOUNDS_PER_H
from LuDoseResponseLib.dosimetry.integration.trapezoid import trapezoid_columns
from LuDoseResponseLib.dosimetry.integration.voi import as_array_on_grid
from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.physics.convolution import default_workers
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)   # holds arrays/images: compare by identity
class VoxelwiseIntegral:
    """Voxel-wise time integrals (value·h per voxel, e.g. a dose map in Gy from dose-rate maps in Gy/h).

    ``lambda_per_h``: the effective decay constant used after the last sample (fitted, or the
    physical one where capped). ``fallback``: voxels integrated by trapezoid because a sample was
    ≤ 0 (model ``mono`` only).
    """

    integral: np.ndarray
    lambda_per_h: np.ndarray
    fallback: np.ndarray
    n_capped: int
    model: str
    tail: str
    reference: object = None   # SimpleITK image whose grid the maps had, or None

    def integral_image(self):
        """The integral as a SimpleITK image on the maps' grid (needs SimpleITK maps as input)."""
        from LuDoseResponseLib.imaging import image_like

        if self.reference is None:
            raise InputError("voxel-wise integral: the maps were numpy arrays; there is no grid to attach")
        return image_like(self.integral.astype(np.float32), self.reference)

    def to_dict(self) -> dict:
        return {"model": self.model, "tail": self.tail, "shape": list(self.integral.shape),
                "n_fallback": int(self.fallback.sum()), "n_capped": int(self.n_capped),
                "integral_sum": float(self.integral.sum()), "integral_max": float(self.integral.max())}


def _power_of_two_scales(peaks: np.ndarray) -> np.ndarray:
    """Per voxel, the power of two nearest its largest sample (1 for an all-zero voxel)."""
    exponent = np.frexp(peaks)[1] - 1
    return np.where(peaks > 0, np.ldexp(1.0, exponent), 1.0)


_BLOCK_VOXELS = 8192          # voxels per block: each block's n_t × block temporaries stay in the CPU cache
_ROUND_ITERATIONS = 10        # iterations per block before the unconverged voxels of all blocks are pooled

BlockMap = Callable[[Callable, list], list]


@contextmanager
def _block_map(workers: int) -> Iterator[BlockMap]:
    """``map(fn, blocks)`` as a list, on ``workers`` threads (numpy releases the GIL in its loops)."""
    if workers == 1:
        yield lambda fn, blocks: [fn(b) for b in blocks]
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield lambda fn, blocks: list(pool.map(fn, blocks))


def _polish(tt, y, w, amp, lam, block_map: BlockMap, steps: int = 4):
    """Secant steps on the profiled gradient ∂WRSS/∂λ = 0, with A(λ) = Σwey/Σwe² (linear WLS).

    Levenberg–Marquardt accepts a step only if WRSS drops, so it stops where WRSS no longer changes in floating
    point: λ to about √ε. The root of the gradient is found to about ε, which makes the result reproducible
    to ~1e-12 whatever the unit of the samples. A voxel keeps its LM iterate unless the polished λ stays within
    1e-4 of it (a polish, not a jump) and within the rate bounds. Runs block by block (voxels are independent).
    """
    blocks = [slice(lo, lo + _BLOCK_VOXELS) for lo in range(0, amp.size, _BLOCK_VOXELS)]
    parts = block_map(lambda s: _polish_block(tt, y[:, s], w[:, s], amp[s], lam[s], steps), blocks)
    return np.concatenate([a for a, _ in parts]), np.concatenate([lm for _, lm in parts])


def _polish_block(tt, y, w, amp, lam, steps):
    def amplitude_and_grad(lm):
        e = np.exp(-lm * tt)
        we = w * e
        a = (we * y).sum(0) / (we * e).sum(0)
        return a, (w * (a * e - y) * (-a * tt * e)).sum(0)

    l0, l1 = lam, lam * (1 + 1e-7)
    # a diverging secant step may overflow: such voxels fail the checks below and keep their LM iterate
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g0 = amplitude_and_grad(l0)[1]
        a1, g1 = amplitude_and_grad(l1)
        for _ in range(steps):
            step = np.where(g1 != g0, g1 * (l1 - l0) / (g1 - g0), 0.0)
            l0, g0 = l1, g1
            l1 = l1 - np.where(np.isfinite(step), step, 0.0)
            a1, g1 = amplitude_and_grad(l1)
    ok = (np.abs(l1 - lam) <= 1e-4 * lam) & (l1 >= RATE_BOUNDS_PER_H[0]) & (l1 <= RATE_BOUNDS_PER_H[1])
    ok &= np.isfinite(a1) & (a1 > 0)
    return np.where(ok, a1, amp), np.where(ok, l1, lam)


def _lm_block(tt, w, y, amp, lam, cur, mu, idx, iterations: int) -> np.ndarray:
    """Up to ``iterations`` Levenberg–Marquardt steps for the voxels ``idx`` (state arrays updated in place).

    Each voxel's arithmetic does not depend on the others, so blocks give the same bits as one big array.
    The voxels still iterating are kept packed; e^(−λt) of an accepted trial step is reused.
    Returns the voxels of ``idx`` that have not converged.
    """
    wa, ya = w[:, idx], y[:, idx]
    a, lm, c, m = amp[idx], lam[idx], cur[idx], mu[idx]
    e = np.exp(-lm * tt)
    active = idx
    for _ in range(iterations):
        r = a * e - ya
        jl = -a * tt * e
        we, wj = wa * e, wa * jl
        a11, a12, a22 = (we * e).sum(0), (we * jl).sum(0), (wj * jl).sum(0)
        g1, g2 = (we * r).sum(0), (wj * r).sum(0)
        b11, b22 = a11 * (1 + m), a22 * (1 + m)
        det = b11 * b22 - a12 * a12
        det = np.where(det > 0, det, np.inf)
        da = -(b22 * g1 - a12 * g2) / det
        dl = -(b11 * g2 - a12 * g1) / det
        a_new = np.maximum(a + da, 0.0)
        l_new = np.clip(lm + dl, RATE_BOUNDS_PER_H[0], RATE_BOUNDS_PER_H[1])
        e_new = np.exp(-l_new * tt)
        trial = (wa * (a_new * e_new - ya) ** 2).sum(0)
        better = trial < c
        small_step = (np.abs(da) <= 1e-10 * np.maximum(a, 1e-300)) & (np.abs(dl) <= 1e-10 * lm)
        a, lm, c = np.where(better, a_new, a), np.where(better, l_new, lm), np.where(better, trial, c)
        e = np.where(better, e_new, e)
        m = np.where(better, m / 3.0, m * 4.0)
        done = small_step | (m > 1e12)
        if done.any():
            fin = active[done]
            amp[fin], lam[fin] = a[done], lm[done]
            keep = ~done
            active, wa, ya, e = active[keep], wa[:, keep], ya[:, keep], e[:, keep]
            a, lm, c, m = a[keep], lm[keep], c[keep], m[keep]
            if active.size == 0:
                break
    amp[active], lam[active], cur[active], mu[active] = a, lm, c, m
    return active


def _levenberg_marquardt(tt, w, y, amp, lam, cur, iterations: int, block_map: BlockMap) -> int:
    """Levenberg–Marquardt on all voxels (amp, lam updated in place); returns the number not converged.

    Blocks of voxels run a few iterations each; the unconverged voxels of all blocks are then pooled into
    new blocks, so the few slow voxels do not keep every block iterating.
    """
    mu = np.full(amp.size, 1e-3)
    todo = np.arange(amp.size)
    done_iterations = 0
    while todo.size and done_iterations < iterations:
        n = min(_ROUND_ITERATIONS, iterations - done_iterations)
        blocks = [todo[lo:lo + _BLOCK_VOXELS] for lo in range(0, todo.size, _BLOCK_VOXELS)]
        todo = np.concatenate(block_map(lambda idx, n=n: _lm_block(tt, w, y, amp, lam, cur, mu, idx, n), blocks))
        done_iterations += n
    return int(todo.size)


def _vw_mono(t, y, rel, tail, lam_phys, block_map: BlockMap, iterations: int = 100):
    """Vectorised weighted LS fit of A·e^(−λt) with σ_ij = rel_i·y_ij (all y > 0); λ capped at λ_phys."""
    w = 1.0 / (rel[:, None] * y) ** 2
    wl = 1.0 / rel ** 2
    ln = np.log(y)
    tm = (wl @ t) / wl.sum()
    slope = (wl[:, None] * (t - tm)[:, None] * (ln - (wl @ ln) / wl.sum())).sum(0) / (wl * (t - tm) ** 2).sum()
    lam = np.clip(-slope, RATE_BOUNDS_PER_H[0], RATE_BOUNDS_PER_H[1])
    amp = np.exp((wl @ ln) / wl.sum() + lam * tm)
    tt = t[:, None]
    cur = (w * (amp * np.exp(-lam * tt) - y) ** 2).sum(0)
    n_left = _levenberg_marquardt(tt, w, y, amp, lam, cur, iterations, block_map)
    if n_left:
        log.warning("voxel-wise mono-exponential fit: %d of %d voxels did not converge in %d Levenberg-Marquardt "
                    "iterations; their last iterate (lower weighted RSS than the log-linear start) is used",
                    n_left, y.shape[1], iterations)
    amp, lam = _polish(tt, y, w, amp, lam, block_map)
    capped = lam < lam_phys * (1 - CAP_TOLERANCE)
    low = lam < lam_phys
    if np.any(low):
        e = np.exp(-lam_phys * tt[:, :1])
        amp_fixed = (w[:, low] * e * y[:, low]).sum(0) / (w[:, low] * e * e).sum(0)
        amp = amp.copy()
        amp[low] = amp_fixed
        lam = np.where(low, lam_phys, lam)
    if tail == "fit":
        value = amp / lam
    else:
        t_last = t[-1]
        value = amp * (-np.expm1(-lam * t_last)) / lam + amp * np.exp(-lam * t_last) / lam_phys
    return value, lam, capped


def voxelwise_time_integral(times_h, maps: Sequence, *, model: str = "mono", tail: str = "fit", mask=None,
                            rel_sd=None, head: str = "linear", tail_points: int = 3,
                            half_life_h: float = LU177_HALF_LIFE_H, chunk_voxels: int = 1_000_000,
                            workers: int | None = None, what: str = "voxel-wise integral") -> VoxelwiseIntegral:
    """Integrate a time series of maps voxel by voxel, vectorised over voxels (no per-voxel Python loop).

    ``model``: ``mono`` (weighted LS fit of A·e^(−λt) per voxel with σ ∝ y, the same objective as
    :func:`integration.time_integral` with ``values_sd = rel_sd·y``; voxels with a sample ≤ 0 fall back
    to the trapezoid) or ``trapezoid`` (the rules of :func:`integration.trapezoid_columns`). ``rel_sd``: the
    relative SD of each time point (default equal). Voxels outside ``mask`` get 0. ``workers``: threads for
    the fit (default: the CPUs this process may use); the result is the same for any number.
    """
    check_choice("model", model, ("mono", "trapezoid"), what)
    check_choice("tail", tail, TAILS, what)
    check_choice("head", head, HEADS, what)
    t = as_1d("times_h", times_h, what)
    try:
        n_maps = len(maps)
    except TypeError:
        raise InputError(f"{what}: maps must be a sequence of images or arrays, got {type(maps).__name__}") from None
    if n_maps != t.size:
        raise InputError(f"{what}: {t.size} times but {n_maps} maps")
    check_samples(t, np.zeros(t.size), None, what)
    half_life_h = finite("half_life_h", half_life_h, what, positive=True)
    tail_points = check_tail_points(tail_points, what)
    if isinstance(chunk_voxels, bool) or not isinstance(chunk_voxels, numbers.Integral) or chunk_voxels < 1:
        raise InputError(f"{what}: chunk_voxels must be a positive integer, got {chunk_voxels!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1):
        raise InputError(f"{what}: workers must be a positive integer or None, got {workers!r}")
    if t.size < 2:
        raise InputError(f"{what}: voxel-wise integration needs at least two time points")
    import SimpleITK as sitk

    ref = maps[0]
    arrays = [np.asarray(as_array_on_grid(mp, ref, what, f"map {i}"), dtype=float) for i, mp in enumerate(maps)]
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise GeometryError(f"{what}: map {i} has shape {a.shape}, map 0 has {shape}; resample onto one grid")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{what}: map {i} has NaN or infinite values")
        if np.any(a < 0):
            raise InputError(f"{what}: map {i} has negative values; dose rates and activities must be >= 0")
    rel = np.ones(t.size) if rel_sd is None else as_1d("rel_sd", rel_sd, what)
    if rel.size != t.size or np.any(~np.isfinite(rel)) or np.any(rel <= 0):
        raise InputError(f"{what}: rel_sd must hold one positive relative SD per time point")
    sel = np.ones(shape, bool) if mask is None else np.asarray(as_array_on_grid(mask, ref, what, "mask")) > 0
    if sel.shape != shape:
        raise GeometryError(f"{what}: mask shape {sel.shape} differs from the maps' {shape}")
    stack = np.stack([a[sel] for a in arrays])         # n_t × N
    log_w = (1.0 / rel ** 2)[:, None]                  # σ_i = rel_i·y_i: the weight of ln y_i is 1/rel_i²
    lam_phys = LN2 / half_life_h
    n_vox = stack.shape[1]
    value = np.zeros(n_vox)
    lam = np.full(n_vox, lam_phys)
    fallback = np.zeros(n_vox, bool)
    n_capped = 0
    with _block_map(workers or default_workers()) as block_map:
        for lo in range(0, n_vox, chunk_voxels):
            # each voxel normalised by a power of two near its largest sample (exact): scale-invariant fits
            scale = _power_of_two_scales(stack[:, lo:lo + chunk_voxels].max(axis=0))
            y = stack[:, lo:lo + chunk_voxels] / scale
            n = y.shape[1]
            fit = np.all(y > 0, axis=0) if model == "mono" else np.zeros(n, bool)
            trap = ~fit                                    # model "trapezoid", and the mono fallback
            v, lm, cp = np.empty(n), np.empty(n), np.empty(n, bool)
            if np.any(trap):
                tc = trapezoid_columns(t, y[:, trap], log_w, head, tail, tail_points, lam_phys)
                v[trap], lm[trap] = tc.total, tc.lam_tail
                cp[trap] = tc.fitted & (tc.lam_fitted < lam_phys * (1 - CAP_TOLERANCE))
            if np.any(fit):
                v[fit], lm[fit], cp[fit] = _vw_mono(t, y[:, fit], rel, tail, lam_phys, block_map)
            value[lo:lo + chunk_voxels] = v * scale
            lam[lo:lo + chunk_voxels] = lm
            fallback[lo:lo + chunk_voxels] = trap & (model == "mono")
            n_capped += int(cp.sum())
    out = np.zeros(shape)
    out[sel] = value
    lam_map = np.full(shape, lam_phys)
    lam_map[sel] = lam
    fb_map = np.zeros(shape, bool)
    fb_map[sel] = fallback
    if n_capped:
        log.warning("%s: %d voxel(s) had an effective half-life above the physical one; capped", what, n_capped)
    reference = ref if isinstance(ref, sitk.Image) else None
    return VoxelwiseIntegral(out, lam_map, fb_map, n_capped, model, tail, reference)
