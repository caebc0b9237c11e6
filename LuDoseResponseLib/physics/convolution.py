"""Same-size 3-D convolution with a fixed kernel: pruned, blocked FFTs with a reusable kernel spectrum.

y[n] = Σ_m x[m]·K[n − m] for every n on x's grid (like ``scipy.signal.fftconvolve(mode="same")``
with an odd-sized kernel centred on its middle voxel), computed without wrap-around:

- The kernel is placed with its centre at index 0 of a periodic box of P_a ≥ N_a + c_a samples
  (c_a = kernel half-width, cropped to N_a − 1): output n and input m differ by at most N_a − 1,
  so a circular convolution of that length never aliases. That is c_a fewer samples per axis than
  the full linear convolution (N_a + 2c_a) that ``fftconvolve`` uses. P_a is a 5-smooth FFT size.
- The kernel spectrum is computed once per grid and kept (float32 or float64). For a
  mirror-symmetric kernel it is real and even, so only the quarter k_z ≤ P_z/2, k_y ≤ P_y/2 is kept.
- Transforms run axis by axis on blocks: rows that are known to be zero are never transformed, and
  the inverse transforms only produce rows inside the grid. The transforms run in place on one
  complex buffer of P_z × P_y × (P_x/2+1); temporaries are blocks of at most ``block_bytes``
  (default: 1/16 of the buffer, between 1 and 8 MiB). Cached convolvers keep the work buffer
  between calls (no page faults for the next time point); :func:`clear_convolver_cache` frees it.
- ``backend="cupy"`` runs the same padded convolution as full 3-D FFTs on a CUDA GPU (CuPy, optional;
  :mod:`.convolution_gpu`); ``"cpu"`` (default) is the path above.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics.convolution_gpu import check_backend, convolve_on_gpu

_DEFAULT_BLOCK_BYTES = 8 * 2**20


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:      # not on Linux
        return max(1, os.cpu_count() or 1)


def _is_mirror_symmetric(k: np.ndarray) -> bool:
    tol = 1e-12 * float(np.max(np.abs(k))) if k.size else 0.0
    return all(np.max(np.abs(k - np.flip(k, axis=a))) <= tol for a in range(3))


class KernelConvolver:
    """Convolve arrays of one grid shape [z, y, x] with one kernel (odd sizes, centre = source)."""

    def __init__(self, kernel_zyx: np.ndarray, grid_shape_zyx: tuple[int, int, int], *, dtype=np.float32,
                 workers: int | None = None, block_bytes: int | None = None, keep_buffer: bool = False,
                 backend: str = "cpu"):
        check_backend(backend)
        self.backend = backend
        k = np.asarray(kernel_zyx, dtype=np.float64)
        if k.ndim != 3 or any(s % 2 == 0 for s in k.shape):
            raise InputError(f"kernel must be 3-D with odd sizes (source voxel at the centre), got {k.shape}")
        if len(grid_shape_zyx) != 3 or any(int(n) < 1 for n in grid_shape_zyx):
            raise InputError(f"grid shape must be 3 positive sizes [z, y, x], got {grid_shape_zyx}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InputError(f"dtype must be float32 or float64, got {self.dtype}")
        self.cdtype = np.complex64 if self.dtype == np.float32 else np.complex128
        self.shape = tuple(int(n) for n in grid_shape_zyx)
        self.workers = workers or default_workers()
        self.block_bytes = int(block_bytes) if block_bytes else 0
        self.keep_buffer = bool(keep_buffer)
        self._buffer: np.ndarray | None = None
        self._lock = threading.Lock()
        # Crop the kernel where it cannot reach inside the grid.
        half = [min(s // 2, n - 1) for s, n in zip(k.shape, self.shape, strict=True)]
        cz, cy, cx = (s // 2 for s in k.shape)
        k = k[cz - half[0]:cz + half[0] + 1, cy - half[1]:cy + half[1] + 1, cx - half[2]:cx + half[2] + 1]
        self.half = tuple(half)
        nz, ny, nx = self.shape
        self.padded = (sfft.next_fast_len(nz + half[0], real=False), sfft.next_fast_len(ny + half[1], real=False),
                       sfft.next_fast_len(nx + half[2], real=True))
        self.symmetric = _is_mirror_symmetric(k)
        self._spectrum = self._kernel_spectrum(k)

    # -- kernel ----------------------------------------------------------------------------
    def _kernel_spectrum(self, k: np.ndarray) -> np.ndarray:
        pz, py, px = self.padded
        hz, hy, hx = self.half
        hxn = px // 2 + 1
        a = np.zeros((k.shape[0], k.shape[1], px))
        a[:, :, np.arange(-hx, hx + 1) % px] = k
        a = sfft.rfft(a, axis=2, workers=self.workers)
        b = np.zeros((k.shape[0], py, hxn), dtype=np.complex128)
        b[:, np.arange(-hy, hy + 1) % py, :] = a
        b = sfft.fft(b, axis=1, workers=self.workers)
        zpos = np.arange(-hz, hz + 1) % pz
        if self.symmetric:
            ny_keep, nz_keep = py // 2 + 1, pz // 2 + 1
            spec = np.empty((nz_keep, ny_keep, hxn), dtype=self.dtype)
        else:
            ny_keep, nz_keep = py, pz
            spec = np.empty((pz, py, hxn), dtype=self.cdtype)
        step = max(1, _DEFAULT_BLOCK_BYTES // (pz * hxn * 16))
        for y0 in range(0, ny_keep, step):
            y1 = min(ny_keep, y0 + step)
            c = np.zeros((pz, y1 - y0, hxn), dtype=np.complex128)
            c[zpos] = b[:, y0:y1, :]
            c = sfft.fft(c, axis=0, workers=self.workers)
            spec[:, y0:y1, :] = c[:nz_keep].real if self.symmetric else c
        return spec

    @property
    def spectrum_bytes(self) -> int:
        return int(self._spectrum.nbytes)

    def full_spectrum(self) -> np.ndarray:
        """The kernel spectrum on the whole padded box, P_z × P_y × (P_x/2+1), for full 3-D FFTs."""
        return self._spectrum_block(0, self.padded[1])

    def _spectrum_block(self, y0: int, y1: int) -> np.ndarray:
        if not self.symmetric:
            return self._spectrum[:, y0:y1, :]
        pz, py, _ = self.padded
        kz = np.arange(pz)
        ky = np.arange(y0, y1)
        return self._spectrum[np.ix_(np.minimum(kz, pz - kz), np.minimum(ky, py - ky))]

    # -- data ------------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, *, scale: float = 1.0,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 progress: Callable[[float], None] | None = None) -> np.ndarray:
        """scale · (x ⊛ K) on x's grid, in the convolver's dtype.

        ``transform`` is applied to each z-block of ``x`` before the transform (e.g. clipping),
        so a read-only view of the input image can be passed without a full copy.
        """
        if tuple(x.shape) != self.shape:
            raise InputError(f"array shape {x.shape} does not match the convolver's grid {self.shape}")
        with self._lock:
            if self.backend == "cupy":
                out = convolve_on_gpu(self, x, scale, transform)
                if progress:
                    progress(1.0)
                return out
            return self._convolve(x, scale, transform, progress)

    def _work_buffer(self) -> np.ndarray:
        pz, py, px = self.padded
        nz, ny, _ = self.shape
        buf = self._buffer
        if buf is None:
            buf = np.zeros((pz, py, px // 2 + 1), dtype=self.cdtype)
            if self.keep_buffer:
                self._buffer = buf
        else:   # reused: clear the padding that the transforms assume to be zero
            buf[nz:] = 0
            buf[:nz, ny:] = 0
        return buf

    def release_buffer(self) -> None:
        """Free the kept work buffer (it is reallocated on the next call)."""
        self._buffer = None

    def _convolve(self, x, scale, transform, progress) -> np.ndarray:
        nz, ny, nx = self.shape
        pz, py, px = self.padded
        hxn = px // 2 + 1
        buf = self._work_buffer()
        block = self._block_bytes(buf.nbytes)
        zstep = max(1, block // (py * hxn * buf.itemsize))
        for z0 in range(0, nz, zstep):      # x (real-to-complex) then y, only for the z-rows that hold data
            z1 = min(nz, z0 + zstep)
            blk = np.asarray(x[z0:z1], dtype=self.dtype)
            if transform is not None:
                blk = transform(blk)
            buf[z0:z1, :ny, :] = sfft.rfft(blk, n=px, axis=2, workers=self.workers)
            _in_place(sfft.fft, buf[z0:z1], 1, self.workers)
        if progress:
            progress(0.35)
        ystep = max(1, block // (pz * hxn * buf.itemsize))
        for y0 in range(0, py, ystep):      # z forward, kernel product, z inverse
            y1 = min(py, y0 + ystep)
            view = buf[:, y0:y1, :]
            _in_place(sfft.fft, view, 0, self.workers)
            view *= self._spectrum_block(y0, y1)
            _in_place(sfft.ifft, view, 0, self.workers)
        if progress:
            progress(0.7)
        out = np.empty(self.shape, dtype=self.dtype)
        for z0 in range(0, nz, zstep):      # y inverse, then x (complex-to-real), only inside the grid
            z1 = min(nz, z0 + zstep)
            _in_place(sfft.ifft, buf[z0:z1], 1, self.workers)
            r = sfft.irfft(buf[z0:z1, :ny, :], n=px, axis=2, workers=self.workers)
            np.multiply(r[:, :, :nx], scale, out=out[z0:z1], casting="unsafe")
        if progress:
            progress(1.0)
        return out

    def _block_bytes(self, buffer_bytes: int) -> int:
        if self.block_bytes:
            return self.block_bytes
        return int(min(_DEFAULT_BLOCK_BYTES, max(2**20, buffer_bytes // 16)))


def _in_place(fn, view: np.ndarray, axis: int, workers: int) -> None:
    """Apply a complex FFT along ``axis`` to ``view``, in place where scipy allows it."""
    res = fn(view, axis=axis, workers=workers, overwrite_x=True)
    if not np.shares_memory(res, view):
        view[...] = res


_CACHE: OrderedDict[tuple, KernelConvolver] = OrderedDict()
_CACHE_SIZE = 2
_CACHE_STATS = {"hits": 0, "misses": 0}


def cached_convolver(kernel_zyx: np.ndarray, grid_shape_zyx: tuple[int, int, int], *, dtype=np.float32,
                     workers: int | None = None, backend: str = "cpu") -> KernelConvolver:
    """A :class:`KernelConvolver`, reused across calls with the same kernel, grid and dtype.

    The last two are kept with their kernel spectrum and work buffer, so both are made once for all
    time points of a grid. :func:`clear_convolver_cache` frees them.
    """
    import hashlib

    check_backend(backend)

    k = np.ascontiguousarray(kernel_zyx, dtype=np.float64)
    key = (hashlib.sha1(k.tobytes()).hexdigest(), k.shape, tuple(int(n) for n in grid_shape_zyx),
           np.dtype(dtype).str, workers, backend)
    conv = _CACHE.get(key)
    if conv is not None:
        _CACHE.move_to_end(key)
        _CACHE_STATS["hits"] += 1
        return conv
    _CACHE_STATS["misses"] += 1
    conv = KernelConvolver(k, grid_shape_zyx, dtype=dtype, workers=workers, keep_buffer=True, backend=backend)
    _CACHE[key] = conv
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return conv


def convolver_cache_info() -> dict:
    """Hits, misses and current size of the kernel-spectrum cache."""
    return {"hits": _CACHE_STATS["hits"], "misses": _CACHE_STATS["misses"], "size": len(_CACHE)}


def clear_convolver_cache() -> None:
    """Drop the cached kernel spectra (frees their memory)."""
    _CACHE.clear()
