"""Optional GPU FFTs (CuPy, CUDA) for the same-size convolution of :mod:`.convolution`.

The same zero-padded circular convolution as the CPU convolver: the kernel centre at index 0 of a periodic
box of ``convolver.padded`` samples, so nothing wraps into the grid; here as full 3-D real FFTs on the GPU
in the convolver's dtype (float32 by default). cuFFT rounds differently from pocketfft, so the two agree
within float32 rounding, not bit for bit. The kernel spectrum is uploaded once per convolver and kept on
the GPU with it. Needs CuPy (the project's optional extra ``gpu`` names it; install the wheel for your
CUDA version) and a CUDA GPU; without either, asking for it is an :class:`InputError`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from LuDoseResponseLib.errors import InputError

BACKENDS = ("cpu", "cupy")


def check_backend(backend: str) -> None:
    """InputError unless ``backend`` is one of :data:`BACKENDS` and, for "cupy", CuPy sees a GPU."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cupy":
        cupy_module()


def cupy_module():
    """The cupy module, once CuPy is importable and at least one CUDA GPU is visible; else InputError."""
    try:
        import cupy
    except ImportError as exc:
        raise InputError("backend='cupy' needs CuPy, which is not installed: install the CuPy wheel for your CUDA "
                         "version (e.g. pip install cupy-cuda12x, or the project's optional extra 'gpu'), "
                         "or use backend='cpu'") from exc
    try:
        n_gpus = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:       # no driver, no runtime: CuPy raises its own CUDA errors
        raise InputError(f"backend='cupy': CuPy is installed but CUDA cannot be used ({exc}); check the GPU "
                         "driver, or use backend='cpu'") from exc
    if n_gpus < 1:
        raise InputError("backend='cupy': CuPy is installed but no CUDA GPU is visible; use backend='cpu'")
    return cupy


def convolve_on_gpu(convolver, x: np.ndarray, scale: float,
                    transform: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """scale · (x ⊛ K) on x's grid for a :class:`~.convolution.KernelConvolver`, FFTs on the GPU."""
    cp = cupy_module()
    spectrum = convolver.__dict__.get("_gpu_spectrum")
    if spectrum is None:           # once per convolver: the full (pz, py, px/2+1) spectrum on the GPU
        spectrum = cp.asarray(convolver.full_spectrum())
        convolver._gpu_spectrum = spectrum
    nz, ny, nx = convolver.shape
    block = np.asarray(x, dtype=convolver.dtype)
    if transform is not None:
        block = transform(block)
    spec = cp.fft.rfftn(cp.asarray(block), s=convolver.padded, axes=(0, 1, 2))   # zero-padded at the end of each axis
    spec *= spectrum
    out = cp.fft.irfftn(spec, s=convolver.padded, axes=(0, 1, 2))[:nz, :ny, :nx]
    del spec
    out *= convolver.dtype.type(scale)
    return np.ascontiguousarray(cp.asnumpy(out), dtype=convolver.dtype)
