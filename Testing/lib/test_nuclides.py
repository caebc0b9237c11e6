"""Lu-177 decay data and decay correction against ICRP-107 (reference file) and physics/README §1."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from LuDoseResponseLib.errors import PhysicsError
from LuDoseResponseLib.physics.nuclides import (
    LU177_DECAY_CONSTANT_PER_H,
    LU177_HALF_LIFE_H,
    MEV_TO_J,
    decay_correct,
    decay_factor,
    lu177,
)


@pytest.fixture(scope="module")
def icrp(physics_reference_dir):
    with open(physics_reference_dir / "icrp107_Lu-177.json") as f:
        return json.loads(json.load(f))


def test_packaged_data_equal_the_icrp107_reference_file(icrp):
    nuc = lu177()
    em = icrp["emissions"]
    assert icrp["half_life"] == pytest.approx(6.647) and icrp["time_unit"].lower().startswith("d")
    pairs = {"IE": nuc.conversion_electrons, "auger": nuc.auger_electrons, "gamma": nuc.gamma, "X": nuc.xray,
             "beta-": nuc.beta_mean_lines}
    for key, ours in pairs.items():
        ref = np.asarray(em[key], dtype=float)
        np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=0, err_msg=key)
    np.testing.assert_array_equal(nuc.beta_spectrum, np.asarray(em["b-spectra"], dtype=float))


def test_energies_per_decay_match_the_published_table():
    # physics/README §1 (ICRP-107): β 0.133270, CE 0.013522, Auger 0.001132, all electrons 0.147923 MeV,
    # photons 0.035098 MeV.
    nuc = lu177()
    assert nuc.beta_energy_mev == pytest.approx(0.133270, abs=5e-7)
    assert nuc.conversion_electron_energy_mev == pytest.approx(0.013522, abs=5e-7)
    assert nuc.auger_energy_mev == pytest.approx(0.001132, abs=5e-7)
    assert nuc.electron_energy_mev == pytest.approx(0.147923, abs=5e-7)
    assert nuc.electron_energy_mev * MEV_TO_J == pytest.approx(2.36999e-14, rel=2e-6)
    assert nuc.photon_energy_mev == pytest.approx(0.035098, abs=5e-7)
    assert sum(e * y for e, y in nuc.gamma) == pytest.approx(0.031558, abs=5e-7)
    assert sum(e * y for e, y in nuc.xray) == pytest.approx(0.003540, abs=5e-7)
    # Imaging lines: 208.366 keV (11.0 %) and 112.950 keV (6.40 %).
    gam = dict(nuc.gamma)
    assert gam[0.208366] == pytest.approx(0.110) and gam[0.11295] == pytest.approx(0.064)


def test_beta_spectrum_integrals():
    # 101 points up to 0.4978 MeV; spectrum mean 0.13335 MeV (README §1); one β per decay.
    nuc = lu177()
    assert nuc.beta_spectrum.shape == (101, 2)
    assert nuc.beta_spectrum[-1, 0] == pytest.approx(0.4978)
    assert nuc.beta_spectrum_mean_mev == pytest.approx(0.13335, abs=1e-5)
    assert nuc.beta_spectrum_yield == pytest.approx(1.0, abs=2e-3)


def test_half_life_decay_constant_and_mean_life():
    nuc = lu177()
    assert LU177_HALF_LIFE_H == pytest.approx(159.528, abs=1e-9)
    assert nuc.half_life_h == pytest.approx(159.528, abs=1e-9)
    assert LU177_DECAY_CONSTANT_PER_H == pytest.approx(4.34499e-3, rel=2e-6)
    assert nuc.mean_life_h == pytest.approx(230.150, abs=1e-3)   # TIA per unit A0, physical decay only


def test_decay_factor_is_exp_minus_lambda_t():
    t = np.array([0.0, 1.0, 24.0, 96.0, 168.0, 159.528, 1000.0, -5.0])
    np.testing.assert_allclose(decay_factor(t), np.exp(-LU177_DECAY_CONSTANT_PER_H * t), rtol=1e-9)
    assert decay_factor(LU177_HALF_LIFE_H) == pytest.approx(0.5, rel=1e-12)
    assert isinstance(decay_factor(3.0), float)


def test_decay_correct_forward_and_back():
    a = np.array([10.0, 250.0])
    later = decay_correct(a, 24.0, 120.0)
    np.testing.assert_allclose(later, a * math.exp(-LU177_DECAY_CONSTANT_PER_H * 96.0), rtol=1e-9)
    np.testing.assert_allclose(decay_correct(later, 120.0, 24.0), a, rtol=1e-12)


def test_other_datasets_agree_within_the_stated_tolerance(physics_reference_dir):
    # README §1: PTB measured 6.639(9) d; datasets differ by ≤ 0.1 %; allow rtol 2e-3 on T½-scaled quantities.
    with open(physics_reference_dir / "PyTheranostics_isotopes.json") as f:
        pyt = json.load(f)["Lu177"]
    assert pyt["half_life_units"] == "days"
    assert lu177().half_life_h == pytest.approx(pyt["half_life"] * 24.0, rel=2e-3)
    tia_ptb_h = 6.639 * 24.0 / math.log(2.0)
    assert lu177().mean_life_h == pytest.approx(tia_ptb_h, rel=2e-3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_decay_factor_rejects_non_finite_time(bad):
    with pytest.raises(PhysicsError):
        decay_factor(bad)


def test_decay_correction_rejects_non_numbers():
    with pytest.raises(PhysicsError, match="must be numbers"):
        decay_factor("one day")
    with pytest.raises(PhysicsError, match="needs numbers"):
        decay_correct("10 MBq", 0.0, 24.0)


@pytest.mark.parametrize("half_life", [0.0, -1.0, float("nan"), "6.6 d", None])
def test_decay_factor_rejects_bad_half_life(half_life):
    with pytest.raises(PhysicsError, match="half-life"):
        decay_factor(1.0, half_life_h=half_life)
