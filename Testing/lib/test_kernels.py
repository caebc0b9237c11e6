"""Lu-177 kernels from physics: stopping powers, transport, photon kernel, voxel integration, I/O.

References (independent of the code): NIST ESTAR values, physics/README.md §1–§3 (computed CSDA
fractions, bounds, published kernels), Lewis' exact first moment of multiple scattering, energy
conservation, exact superposition identities of voxel kernels, the published Lanconelli and
PyTheranostics kernels and the uniform-sphere S-values in shared/reference/physics.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from LuDoseResponseLib.errors import InputError, PhysicsError
from LuDoseResponseLib.physics import electron_transport as et
from LuDoseResponseLib.physics import kernel_cache as KC
from LuDoseResponseLib.physics import kernel_compute as KP
from LuDoseResponseLib.physics import kernel_files as KF
from LuDoseResponseLib.physics import kernels as K
from LuDoseResponseLib.physics import photon_kernel as pk
from LuDoseResponseLib.physics.nuclides import MEV_TO_J, lu177

E_E = 0.147923          # ICRP-107 electron energy per decay (README §1)
E_PH = 0.035098
MEV_G = KP.MEV_PER_G_TO_MGY_PER_MBQ_S


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


@pytest.fixture(scope="module")
def dpk():
    return et.lu177_electron_dpk()


def _centre(k):
    return tuple(s // 2 for s in k.shape)


def _face(k):
    cz, cy, cx = _centre(k)
    return float(np.mean([k[cz, cy, cx + 1], k[cz, cy + 1, cx], k[cz + 1, cy, cx]]))


def _crop(k, n):
    cz, cy, cx = _centre(k)
    return k[cz - n:cz + n + 1, cy - n:cy + n + 1, cx - n:cx + n + 1]


def _energy_mev(k, voxel_mm, rho=1.0):
    return float(k.sum()) * rho * float(np.prod(np.broadcast_to(voxel_mm, 3))) / 1000.0 / MEV_G


# ---------------------------------------------------------------------------------------------
# Electron physics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("energy_mev, estar", [(0.01, 22.56), (0.1, 4.115), (0.2, 2.793), (0.3, 2.355),
                                               (0.5, 2.034)])
def test_collision_stopping_power_matches_nist_estar(energy_mev, estar):
    # NIST ESTAR, liquid water, collision stopping power in MeV cm²/g.
    assert et.collision_stopping_power(energy_mev) == pytest.approx(estar, rel=2e-3)


def test_csda_ranges_match_estar_and_the_readme():
    # ESTAR CSDA ranges (g/cm²): 0.1 MeV 1.431e-2, 0.5 MeV 0.1766. README §1: 0.23 mm at the mean β energy,
    # 1.75 mm at the endpoint 0.4978 MeV.
    assert et.csda_range(0.1) == pytest.approx(1.431e-2, rel=5e-3)
    assert et.csda_range(0.5) == pytest.approx(0.1766, rel=5e-3)
    assert et.csda_range(0.4978) * 10 == pytest.approx(1.75, rel=1e-2)
    assert et.csda_range(0.13327) * 10 == pytest.approx(0.23, rel=2e-2)


def test_moller_closed_form_equals_numerical_integral():
    e, wc = 0.3, 0.01
    w = np.linspace(wc, e / 2, 200001)
    tau = e / et.ME_C2_MEV
    b2 = 1 - 1 / (1 + tau) ** 2
    dsig = (2 * math.pi * et.R_E_CM**2 * et.ME_C2_MEV / b2) * (
        1 / w**2 + 1 / (e - w) ** 2 + (tau / (tau + 1)) ** 2 / e**2 - (2 * tau + 1) / (tau + 1) ** 2 / (w * (e - w)))
    assert float(et.moller_cross_section_per_electron(e, wc)) == pytest.approx(np.trapezoid(dsig, w), rel=1e-6)
    hard_loss = et.ELECTRONS_PER_G * np.trapezoid(w * dsig, w)
    assert float(et._moller_energy_loss(e, wc)[0]) == pytest.approx(hard_loss, rel=1e-6)


def test_straight_ahead_mode_reproduces_the_readme_csda_fractions():
    # README §2 test 5 (computed, straight-ahead CSDA): 96.4 % of the electron energy within 1.0 mm,
    # 99.9 % within 1.5 mm.
    prof = et.lu177_electron_dpk(n_histories=50_000, mode="csda")
    assert prof.fraction_within(0.10) == pytest.approx(0.964, abs=1.5e-3)
    assert prof.fraction_within(0.15) == pytest.approx(0.999, abs=1.5e-3)


def test_dose_point_kernel_normalisation_and_r90(dpk):
    # README §2 test 5: the electron part integrates to E_e within ±2 % and r(90 %) < 0.75 mm in water.
    assert dpk.raw_total_mev == pytest.approx(E_E, rel=0.02)
    assert dpk.beyond_mev == 0.0
    assert dpk.total_mev == pytest.approx(E_E, rel=1e-6)
    r90_mm = dpk.radius_containing(0.9) * 10
    assert 0.3 < r90_mm < 0.75
    # Scattering shortens radial penetration compared with the straight-ahead bound (96.4 % within 1 mm).
    assert dpk.fraction_within(0.10) > 0.964


def test_multiple_scattering_reproduces_lewis_first_moment():
    # Lewis (Phys Rev 1950;78:526): for a pencil beam with CSDA energy loss, the mean depth after path s is
    # ⟨z(s)⟩ = ∫₀^s exp(−∫₀^t ds'/λ1) dt for any angular distribution with transport mean free path λ1.
    e0, n = 0.2, 20_000
    tally = et.transport_electrons(np.full(n, e0), np.ones(n), np.linspace(0, 0.1, 11), seed=11, mode="scatter",
                                   pencil_beam=True, step_fraction=0.02)
    mc_depth = tally.z_moment_mev_cm / (tally.shell_mev.sum() + tally.beyond_mev)
    energies = np.geomspace(et.DEFAULT_CUTOFF_MEV, e0, 4000)[::-1]
    s = float(et.csda_range(e0)) - et.csda_range(energies)
    inv_lambda = 1.0 / et.transport_mean_free_path(energies)
    optical = np.concatenate([[0.0], np.cumsum(0.5 * (inv_lambda[1:] + inv_lambda[:-1]) * np.diff(s))])
    z = np.concatenate([[0.0], np.cumsum(0.5 * (np.exp(-optical[1:]) + np.exp(-optical[:-1])) * np.diff(s))])
    stop = et.collision_stopping_power(energies)
    lewis = (np.sum(0.5 * (z[1:] * stop[1:] + z[:-1] * stop[:-1]) * np.diff(s))
             + z[-1] * et.DEFAULT_CUTOFF_MEV) / e0
    assert mc_depth == pytest.approx(lewis, rel=4e-3)


def test_monte_carlo_is_deterministic():
    e = np.full(2000, 0.15)
    a = et.transport_electrons(e, np.ones(2000), np.linspace(0, 0.05, 26), seed=3)
    b = et.transport_electrons(e, np.ones(2000), np.linspace(0, 0.05, 26), seed=3)
    np.testing.assert_array_equal(a.shell_mev, b.shell_mev)
    assert a.shell_mev.sum() + a.beyond_mev == pytest.approx(0.15 * 2000, rel=1e-12)   # energy conserved


def test_transport_rejects_unknown_mode():
    with pytest.raises(PhysicsError, match="mode"):
        et.transport_electrons(np.ones(3) * 0.1, np.ones(3), np.linspace(0, 0.1, 3), seed=1, mode="fast")


# ---------------------------------------------------------------------------------------------
# Photon point kernel
# ---------------------------------------------------------------------------------------------

def test_gp_buildup_nearly_conserves_energy_before_normalisation():
    # Independent data (ANS-6.4.3 build-up, NIST μ_en) and an exact law: all photon energy is absorbed
    # in an infinite medium. The raw GP exposure build-up kernel holds it within 5 %.
    lines, local = pk.lu177_photon_lines()
    for line in lines:
        if line.gp is not None:
            assert line.infinite_medium_fraction_unnormalised() == pytest.approx(1.0, abs=0.05), line.energy_mev
    assert local == pytest.approx(1.94297e-05 * 1.28087 + 3.31365e-05 * 8.92734e-08 + 0.000219884 * 9.09227e-05
                                  + 0.000482 * 1.05223e-07, rel=1e-9)


def test_photon_kernel_conserves_the_photon_energy():
    edges = np.concatenate([np.linspace(0, 1, 1001), np.geomspace(1, 2000, 4000)[1:]])
    total = pk.photon_shell_energies(edges).sum()
    assert total == pytest.approx(E_PH, rel=1e-4)
    assert total == pytest.approx(lu177().photon_energy_mev, rel=1e-4)


def test_photon_kernel_density_scaling():
    r = np.array([0.5, 2.0, 7.0])
    np.testing.assert_allclose(pk.photon_energy_per_cm(r, 1.5), 1.5 * pk.photon_energy_per_cm(1.5 * r), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Voxel kernels
# ---------------------------------------------------------------------------------------------

def test_kernel_shape_symmetry_and_energy():
    k = K.lu177_voxel_kernel(4.8)
    assert k.ndim == 3 and all(s % 2 == 1 for s in k.shape)
    assert k.shape == (43, 43, 43)                      # photons to 100 mm: ceil(100/4.8) = 21
    c = _centre(k)
    assert k[c] == k.max()
    for axis in range(3):
        np.testing.assert_allclose(k, np.flip(k, axis), rtol=0, atol=1e-15 * k.max())
    np.testing.assert_allclose(k, k.transpose(2, 1, 0), rtol=0, atol=1e-15 * k.max())
    e_only = K.lu177_voxel_kernel(4.8, photons=False)
    assert _energy_mev(e_only, 4.8) == pytest.approx(lu177().electron_energy_mev, rel=1e-9)   # conserved
    energy = _energy_mev(k, 4.8)                                        # README §2 test 3 bounds
    assert 0.90 * E_E <= energy <= E_E + E_PH
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = K.check_kernel_energy(K.lu177_kernel(4.8))
    assert check.within_bounds and not check.low


def test_float_and_tuple_voxel_sizes_agree():
    np.testing.assert_array_equal(K.lu177_voxel_kernel(4.8, photons=False),
                                  K.lu177_voxel_kernel((4.8, 4.8, 4.8), photons=False))


def test_voxel_integration_superposition_identities():
    # Exact identities of voxel-pair averages: a 2h voxel is 8 h voxels, an (h, h, 2h) voxel is 2 of them.
    # The kernels are computed independently (different lattices, different splat densities).
    fine = KP.compute_lu177_kernel_parts(1.2, photon_radius_mm=0, points_per_area=32).electron
    coarse = KP.compute_lu177_kernel_parts(2.4, photon_radius_mm=0).electron
    aniso = KP.compute_lu177_kernel_parts((1.2, 1.2, 2.4), photon_radius_mm=0).electron
    cf = np.array(fine.shape) // 2

    def f(o):
        idx = np.array(o) + cf
        return fine[tuple(idx)] if np.all(idx >= 0) and np.all(idx < fine.shape) else 0.0

    cc, ca = _centre(coarse), _centre(aniso)
    for o in [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0)]:
        s = sum(f((2 * o[0] + tz - sz, 2 * o[1] + ty - sy, 2 * o[2] + tx - sx))
                for sz in (0, 1) for sy in (0, 1) for sx in (0, 1) for tz in (0, 1) for ty in (0, 1) for tx in (0, 1))
        target = coarse[cc[0] + o[0], cc[1] + o[1], cc[2] + o[2]]
        assert s / 64 == pytest.approx(target, rel=2e-3, abs=1e-6 * coarse[cc]), o
        s2 = sum(f((2 * o[0] + tz - sz, o[1], o[2])) for sz in (0, 1) for tz in (0, 1))
        assert s2 / 4 == pytest.approx(aniso[ca[0] + o[0], ca[1] + o[1], ca[2] + o[2]], rel=2e-3,
                                       abs=1e-6 * aniso[ca]), o


def test_photon_part_obeys_the_superposition_identity():
    # Near field (splat) and far field (Gauss–Jacobi) of the photon kernel, across the partition radius.
    fine = KP.compute_lu177_kernel_parts(2.4, photon_radius_mm=60).photon
    coarse = KP.compute_lu177_kernel_parts(4.8, photon_radius_mm=48).photon
    cf, cc = np.array(fine.shape) // 2, np.array(coarse.shape) // 2
    for o in [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 0, 3), (1, 2, 3), (0, 0, 5), (2, 3, 4)]:
        s = sum(fine[tuple(np.array((2 * o[0] + tz - sz, 2 * o[1] + ty - sy, 2 * o[2] + tx - sx)) + cf)]
                for sz in (0, 1) for sy in (0, 1) for sx in (0, 1) for tz in (0, 1) for ty in (0, 1) for tx in (0, 1))
        assert s / 64 == pytest.approx(coarse[tuple(np.array(o) + cc)], rel=3e-3), o


def test_voxel_integration_has_converged():
    a = KP.compute_lu177_kernel_parts(1.5, photon_radius_mm=20)
    b = KP.compute_lu177_kernel_parts(1.5, photon_radius_mm=20, points_per_area=32)
    for part in ("electron", "photon"):
        x, y = getattr(a, part), getattr(b, part)
        assert x[_centre(x)] == pytest.approx(y[_centre(y)], rel=1e-4)
        assert _face(x) == pytest.approx(_face(y), rel=1e-3)


def test_density_scaling_theorem():
    # O'Connor's theorem: K_ρ(h) = ρ² K_1(ρh) for a water-like medium.
    rho = 1.5
    a = KP.compute_lu177_kernel_parts(3.0, density_g_per_cm3=rho, photon_radius_mm=0).electron
    b = KP.compute_lu177_kernel_parts(3.0 * rho, photon_radius_mm=0).electron
    assert a[_centre(a)] == pytest.approx(rho**2 * b[_centre(b)], rel=1e-3)
    assert _face(a) == pytest.approx(rho**2 * _face(b), rel=2e-3)


def test_uniform_sphere_self_dose_from_the_point_kernel(physics_reference_dir, dpk):
    # Mean dose in a uniform sphere from the point kernel: φ = ∫ε(r)(1 − 3x/4 + x³/16) dr / E, x = r/R
    # (Berger 1971, MIRD Pamphlet 7). Reference: uniform-sphere S-values, 4 mg–932 g, composition 100 %/0 %,
    # ρ = 1.03 (README §3, "match a Lu-177 physics model within 1–5 %").
    ref = json.loads((physics_reference_dir / "PyTheranostics_spheres_svalues.json").read_text())["100%/0%"]
    rho = 1.03

    def absorbed(edges, energy, radius):
        x = 0.5 * (edges[1:] + edges[:-1]) / radius
        return float(np.sum(energy * np.where(x < 2, 1 - 0.75 * x + x**3 / 16, 0.0)))

    for mass_g, s_ref in zip(ref["tumor_mass"], ref["total_s_value"], strict=True):
        radius = (3 * mass_g / rho / (4 * math.pi)) ** (1 / 3)
        e_abs = absorbed(dpk.edges_cm / rho, dpk.energy_mev, radius)
        edges_ph = np.linspace(0, 2 * radius, 20001)
        e_abs += absorbed(edges_ph, pk.photon_shell_energies(edges_ph, rho), radius)
        s_ours = e_abs * MEV_TO_J / (mass_g * 1e-3)
        assert s_ours / s_ref == pytest.approx(1.0, abs=0.02), mass_g


# ---------------------------------------------------------------------------------------------
# Published kernels
# ---------------------------------------------------------------------------------------------

def _lanconelli_files(physics_reference_dir):
    files = sorted((physics_reference_dir / "lanconelli2012_via_MIRDCalculation").glob("177Lu*mmsoft.txt"))
    assert len(files) == 13
    return files


def test_lanconelli_loader_reads_the_published_values(physics_reference_dir):
    kern = KF.load_lanconelli_kernel(
        physics_reference_dir / "lanconelli2012_via_MIRDCalculation" / "177Lu4.8mmsoft.txt")
    assert kern.values.shape == (11, 11, 11)
    assert kern.voxel_size_mm == (4.8, 4.8, 4.8)
    assert kern.self_value() == pytest.approx(0.178)          # README §2
    assert kern.face_neighbour() == pytest.approx(2.46e-3)
    with pytest.warns(UserWarning, match="conversion electrons"):
        check = K.check_kernel_energy(kern)
    assert check.within_bounds and check.low          # 0.135–0.146 MeV: 5–9 % below E_e


def test_pytheranostics_raw_loader(physics_reference_dir):
    kern = KF.load_raw_kernel(physics_reference_dir / "PyTheranostics_Lu177-4.80-mm-mGyperMBqs-SoftICRP.img",
                             shape_zyx=(51, 51, 51), voxel_size_mm=4.8)
    assert kern.self_value() == pytest.approx(0.2066, abs=1e-4)
    assert kern.face_neighbour() == pytest.approx(2.26e-3, abs=1e-5)
    assert K.check_kernel_energy(kern).within_bounds


def test_our_kernel_lies_between_the_published_ones_at_4_8_mm(physics_reference_dir):
    # README §2: the published kernels disagree by ±10 % in the source voxel (Lanconelli 0.178, PyTheranostics
    # 0.2066); a straight-ahead CSDA estimate gives 0.19–0.20 mGy/(MBq·s) in water.
    pyt = KF.load_raw_kernel(physics_reference_dir / "PyTheranostics_Lu177-4.80-mm-mGyperMBqs-SoftICRP.img",
                            shape_zyx=(51, 51, 51), voxel_size_mm=4.8)
    ours = K.lu177_voxel_kernel(4.8, photon_radius_mm=120.0)     # 51³, the PyTheranostics box
    assert ours.shape == (51, 51, 51)
    assert 0.178 < ours[_centre(ours)] < 0.2066
    assert 0.19 <= ours[_centre(ours)] <= 0.20
    # Both boxes hold all electrons and the photons absorbed within ±12 cm.
    assert _energy_mev(ours, 4.8) == pytest.approx(pyt.energy_mev(), rel=0.02)


def test_lanconelli_kernels_are_ours_without_conversion_electrons(physics_reference_dir):
    # Lanconelli et al. 2012 hold 5–9 % less energy than ICRP-107's electrons (README §2). Our kernel with the
    # conversion electrons removed (water, photons inside their 11³ box) reproduces all 13 voxel sizes.
    for path in _lanconelli_files(physics_reference_dir):
        lan = KF.load_lanconelli_kernel(path)
        h = lan.voxel_size_mm[0]
        ours = _crop(KP.compute_lu177_kernel_parts(h, include_conversion=False, photon_radius_mm=5 * h,
                                                  n_histories=50_000).total, 5)
        assert ours[_centre(ours)] / lan.self_value() == pytest.approx(1.0, abs=0.03), h
        assert _face(ours) / lan.face_neighbour() == pytest.approx(1.0, abs=0.06), h
        assert _energy_mev(ours, h) / lan.energy_mev() == pytest.approx(1.0, abs=0.03), h
        full = K.lu177_voxel_kernel(h)
        assert full[_centre(full)] > 1.08 * lan.self_value()          # the conversion electrons' share


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

def test_cache_is_written_reused_and_repaired(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path / "c"))
    assert KC.kernel_cache_dir() == tmp_path / "c"
    first = K.lu177_voxel_kernel(7.0)
    files = list((tmp_path / "c").glob("lu177_dvk_7x7x7mm_*.npz"))
    assert len(files) == 1
    assert not [p for p in (tmp_path / "c").iterdir() if ".tmp" in p.name]

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(KC, "compute_lu177_kernel_parts", boom)
    np.testing.assert_array_equal(K.lu177_voxel_kernel(7.0), first)
    monkeypatch.undo()
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path / "c"))
    files[0].write_bytes(files[0].read_bytes()[:200])            # truncated file
    with caplog.at_level("WARNING"):
        again = K.lu177_voxel_kernel(7.0)
    np.testing.assert_array_equal(again, first)                  # regenerated, deterministic
    assert "regenerating" in caplog.text


def test_electron_dpk_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path))
    first = K.lu177_voxel_kernel(6.5, photons=False)
    assert len(list(Path(tmp_path).glob("lu177_electron_dpk_*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("Monte Carlo rerun although its result is cached")

    monkeypatch.setattr(KC, "lu177_electron_dpk", boom)
    again = K.lu177_voxel_kernel(6.6, photons=False)          # a new voxel size: only the integration runs
    assert again[_centre(again)] < first[_centre(first)]


def test_cache_rejects_a_tampered_array(tmp_path, monkeypatch):
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path))
    first = K.lu177_voxel_kernel(8.0, photons=False)
    path = next(Path(tmp_path).glob("lu177_dvk_*.npz"))
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["electron"] = data["electron"] * 2
    np.savez(path, **data)
    np.testing.assert_array_equal(K.lu177_voxel_kernel(8.0, photons=False), first)


def test_unwritable_cache_still_gives_the_kernel_with_a_warning(tmp_path, monkeypatch, caplog):
    # A cache folder that cannot be created (here: below a regular file, which fails even for root): the kernel
    # is computed in memory, equal to the cached one, and the failure is logged.
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path / "ok"))
    cached = K.lu177_voxel_kernel(7.5, photons=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LUDR_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level("WARNING"):
        again = K.lu177_voxel_kernel(7.5, photons=False, density_g_per_cm3=1.0)
        KC.lu177_kernel_parts(7.5, photon_radius_mm=0.0)
    np.testing.assert_array_equal(again, cached)
    assert "could not write the kernel cache" in caplog.text
    assert not blocker.is_dir()


def test_concurrent_writers_leave_one_valid_cache_file(tmp_path, monkeypatch):
    # Four processes compute and cache the same kernel at once: every write is atomic (temporary file, then
    # os.replace), so the cache holds exactly one complete file that loads without recomputation.
    import os
    import subprocess
    import sys

    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path))
    KC.cached_electron_dpk()                  # the electron DPK on disk: the processes only integrate
    env = dict(os.environ)
    code = ("import numpy as np; from LuDoseResponseLib.physics import kernels as K; "
            "k = K.lu177_voxel_kernel(9.0, photon_radius_mm=40.0); print(repr(float(k.sum())))")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    sums = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(sums) == 1                                 # deterministic: every writer computed the same kernel
    files = list(tmp_path.glob("lu177_dvk_9x9x9mm_*.npz"))
    assert len(files) == 1 and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    key = KC._request_key((9.0, 9.0, 9.0), 1.0, 40.0)
    loaded = KC._load_cached(files[0], key)
    assert loaded is not None and repr(float(loaded.total.sum())) == sums.pop()


def test_cache_key_includes_the_packaged_data():
    # SOURCES.md lets users replace the data files: the key holds their digest, so old kernels are not reused.
    import hashlib
    from importlib import resources

    h = hashlib.sha256()
    for name in ("lu177_icrp107.json", "water_photon_coefficients.json"):
        h.update(resources.files("LuDoseResponseLib.data").joinpath(name).read_bytes())
    key = KC._request_key((4.8, 4.8, 4.8), 1.0, 100.0)
    assert key["data"] == h.hexdigest()[:16]
    assert KC._cache_path(key) != KC._cache_path({**key, "data": "0" * 16})


def test_default_cache_dir_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LUDR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if KC.sys.platform.startswith("linux"):
        assert KC.kernel_cache_dir() == tmp_path / "ludoseresponse"

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(KC.Path, "home", staticmethod(no_home))
    import tempfile

    assert KC.kernel_cache_dir() == Path(tempfile.gettempdir()) / "ludoseresponse-cache"


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.0, -4.8, float("nan"), float("inf"), (4.8, 4.8), (4.8, 0.0, 4.8),
                                 (4.8, float("nan"), 4.8), "abc", None])
def test_bad_voxel_sizes_are_refused(bad):
    with pytest.raises(PhysicsError, match="voxel_size_mm"):
        K.lu177_voxel_kernel(bad)


def test_bad_density_and_photon_radius_are_refused():
    with pytest.raises(PhysicsError, match="density"):
        K.lu177_voxel_kernel(4.8, density_g_per_cm3=0.0)
    with pytest.raises(PhysicsError, match="photon_radius_mm"):
        KP.compute_lu177_kernel_parts(4.8, photon_radius_mm=-1.0)
    with pytest.raises(PhysicsError, match="photon_radius_mm"):
        K.lu177_voxel_kernel(4.8, photon_radius_mm="wide")
    with pytest.raises(PhysicsError, match="density"):
        K.lu177_voxel_kernel(4.8, density_g_per_cm3="water")


def test_bad_kernel_files_give_clear_errors(tmp_path):
    raw = tmp_path / "k.img"
    np.zeros(26, dtype="<f4").tofile(raw)
    with pytest.raises(InputError, match="shape"):
        KF.load_raw_kernel(raw, shape_zyx=(3, 3, 3), voxel_size_mm=4.8)
    with pytest.raises(InputError, match="unit"):
        KF.load_raw_kernel(raw, shape_zyx=(3, 3, 3), voxel_size_mm=4.8, unit="rad")
    with pytest.raises(InputError, match="cannot read"):
        KF.load_lanconelli_kernel(tmp_path / "missing.txt")
    txt = tmp_path / "bad.txt"
    txt.write_text("Lu177 - 4.8mm - Soft tissue\ni\tj\tk\tS [mGy/(MBq*s)]\n0\t0\t0\t0.178\n0\t0\tx\t1\n")
    with pytest.raises(InputError, match="line 4"):
        KF.load_lanconelli_kernel(txt)
    even = tmp_path / "even.npy"
    np.save(even, np.ones((4, 4, 4)))
    with pytest.raises(InputError, match="odd"):
        KF.load_raw_kernel(even, shape_zyx=None, voxel_size_mm=4.8)


def test_raw_kernel_units_convert(tmp_path):
    arr = np.zeros((3, 3, 3))
    arr[1, 1, 1] = 2.0e-10           # Gy/(Bq·s)
    path = tmp_path / "k.npy"
    np.save(path, arr)
    kern = KF.load_raw_kernel(path, shape_zyx=(3, 3, 3), voxel_size_mm=(4.0, 4.0, 5.0), unit="Gy/(Bq·s)")
    assert kern.self_value() == pytest.approx(0.2)              # mGy/(MBq·s)
    with pytest.raises(PhysicsError, match="outside"):
        K.check_kernel_energy(kern.__class__(values=arr * 1e9 * 100, voxel_size_mm=(4.0, 4.0, 5.0), source="x"))


def test_a_changed_physics_code_digest_misses_the_cache(tmp_path, monkeypatch):
    # Issue 17: a kernel computed by older physics code must never be served. The key holds a digest of the source
    # of the modules that compute it; a changed digest (as after any edit of them) recomputes, the same one reuses.
    import hashlib
    import importlib

    h = hashlib.sha256()
    for name in KC.PHYSICS_MODULES:
        h.update(name.encode())
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    key = KC._request_key((7.0, 7.0, 7.0), 1.0, 40.0)
    assert key["physics_code"] == h.hexdigest()[:16]
    assert set(KC.PHYSICS_MODULES) >= {"LuDoseResponseLib.physics.electron_transport",
                                       "LuDoseResponseLib.physics.photon_kernel",
                                       "LuDoseResponseLib.physics.kernel_compute", "LuDoseResponseLib.physics.nuclides"}
    monkeypatch.setenv("LUDR_CACHE_DIR", str(tmp_path))
    calls = []
    real = KC.compute_lu177_kernel_parts

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(KC, "compute_lu177_kernel_parts", counting)
    first = K.lu177_voxel_kernel(7.0, photon_radius_mm=40.0)
    K.lu177_voxel_kernel(7.0, photon_radius_mm=40.0)
    assert len(calls) == 1                                        # same code: served from the cache
    real_digest = KC.code_digest

    def edited(modules):
        return "0" * 16 if modules == KC.PHYSICS_MODULES else real_digest(modules)

    monkeypatch.setattr(KC, "code_digest", edited)
    again = K.lu177_voxel_kernel(7.0, photon_radius_mm=40.0)
    assert len(calls) == 2                                        # changed code: recomputed, not the old file
    np.testing.assert_array_equal(again, first)                   # (the "edit" changed nothing physical)
    assert len(list(tmp_path.glob("lu177_dvk_7x7x7mm_*.npz"))) == 2
    dpk_key = KC._dpk_key()
    monkeypatch.setattr(KC, "code_digest", lambda modules: "1" * 16)
    assert KC._dpk_key() != dpk_key                               # the electron DPK cache is keyed the same way
