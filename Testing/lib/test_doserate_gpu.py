"""GPU dose rate (``backend="cupy"``, issue 16): clear errors everywhere; results against
scipy.signal.fftconvolve (independent) within float32 rounding where CuPy and a GPU are present.

The comparison is skipped only where cupy cannot be imported (with cupy but without a GPU it checks the
error instead). It was written without a GPU machine: run this file on one to check the GPU path.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.signal import fftconvolve

from LuDoseResponseLib.dosimetry import doserate as dr
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics import convolution as kc
from LuDoseResponseLib.physics.kernels import lu177_voxel_kernel


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


def _activity(shape=(23, 40, 37), spacing=(3.0, 2.5, 2.0)):
    rng = np.random.default_rng(16)
    img = sitk.GetImageFromArray(rng.gamma(2.0, 1e5, shape).astype(np.float32))
    img.SetSpacing(spacing)
    return img


def test_an_unknown_backend_is_refused():
    with pytest.raises(InputError, match="backend must be one of"):
        dr.dose_rate_map(_activity(), backend="gpu")
    with pytest.raises(InputError, match="backend must be one of"):
        kc.KernelConvolver(np.ones((3, 3, 3)), (4, 4, 4), backend="cuda")


def test_cupy_backend_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # import cupy now raises ImportError
    with pytest.raises(InputError, match="needs CuPy, which is not installed.*backend='cpu'"):
        dr.dose_rate_map(_activity(), backend="cupy")
    with pytest.raises(InputError, match="needs CuPy"):
        kc.cached_convolver(np.ones((3, 3, 3)), (4, 4, 4), backend="cupy")


def test_gpu_code_path_with_numpy_standing_in_for_cupy(monkeypatch):
    """Runs everywhere: the padding, spectrum layout and cropping of the GPU path, with numpy's FFTs in
    place of CuPy's (checks our code, not cuFFT), against scipy.signal.fftconvolve."""
    fake = types.SimpleNamespace(asarray=np.asarray, asnumpy=np.asarray, fft=np.fft,
                                 cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    rng = np.random.default_rng(3)
    x = rng.random((11, 20, 17))
    for kern in (lu177_voxel_kernel((2.0, 2.5, 3.0), photon_radius_mm=12.0), rng.random((5, 9, 3))):
        ref = fftconvolve(x, kern, mode="same")
        conv = kc.KernelConvolver(kern, x.shape, dtype=np.float64, backend="cupy")
        for _ in range(2):      # the second call reuses the kept spectrum
            np.testing.assert_allclose(conv(x, scale=2.0), 2.0 * ref, rtol=1e-10, atol=1e-13 * np.abs(ref).max())


def test_cupy_backend_matches_fftconvolve_within_float32_rounding():
    cupy = pytest.importorskip("cupy")
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        n_gpus = 0
    if n_gpus < 1:          # CuPy without a usable GPU: the error, not a crash in CuPy
        with pytest.raises(InputError, match="backend='cupy'"):
            dr.dose_rate_map(_activity(), backend="cupy")
        return
    rng = np.random.default_rng(7)
    x = rng.random((23, 40, 37))
    sym = lu177_voxel_kernel((2.0, 2.5, 3.0), photon_radius_mm=12.0)
    asym = rng.random((5, 9, 3))
    for kern in (sym, asym):
        ref = fftconvolve(x, kern, mode="same")
        gpu32 = kc.KernelConvolver(kern, x.shape, dtype=np.float32, backend="cupy")(x)
        assert gpu32.dtype == np.float32 and gpu32.shape == x.shape
        np.testing.assert_allclose(gpu32, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
        gpu64 = kc.KernelConvolver(kern, x.shape, dtype=np.float64, backend="cupy")(x)
        np.testing.assert_allclose(gpu64, ref, rtol=1e-10, atol=1e-13 * np.abs(ref).max())
    # the whole dose-rate map, against the default CPU path (tested against its own references)
    img = _activity()
    cpu = sitk.GetArrayFromImage(dr.dose_rate_map(img))
    for _ in range(2):      # the second call reuses the spectrum kept on the GPU
        out = dr.dose_rate_map(img, backend="cupy")
        gpu = sitk.GetArrayFromImage(out)
        np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-5 * np.abs(cpu).max())
    assert out.GetSpacing() == img.GetSpacing()
