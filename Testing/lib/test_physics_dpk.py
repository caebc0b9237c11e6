"""Radial shape of the electron and photon dose-point kernels against published kernels.

The Lu-177 kernel is renormalised to ICRP-107's energy, which hides errors in how the energy is
spread in space. These tests compare the spread itself.

Electrons: scaled dose-point kernels j(x) = d(E/E0)/d(r/r0) of monoenergetic electrons from a
point isotropic source in water, x = r/r0 with r0 the CSDA range.
- ETRAN (Berger/Seltzer; Seltzer SM, Appl Radiat Isot 1991;42:917), 100 and 500 keV, as tabulated by
  Ferrer L et al., Cancer Biother Radiopharm 2007;22:125 and distributed with Geant4's TestEm12
  example (github.com/Geant4/geant4, examples/extended/electromagnetic/TestEm12/berger/Etran/
  100keV-DPK.ascii and 500keV-DPK.ascii; Geant4 Software License, reproduced with attribution).
- EGSnrc/EDKnrc (Mainegra-Hing E, Rogers DWO, Kawrakow I, Med Phys 2005;32:685), 100 keV, same
  example (berger/EGSnrc/100keV-DPK.ascii), bins of 0.05 r0 centred at the listed x.
- r0 from NIST ESTAR: 1.431e-2 g/cm² at 100 keV, 0.1766 g/cm² at 500 keV.

Tolerances (ours measured with 40 000 / 20 000 histories, reported in the closing note):
- |j_ours − j_ref| ≤ 0.15 at every x (≈ 10 % of the peak, ~1.6): the published codes differ by 0.06
  at the peak (ETRAN 1.659, EGSnrc 1.601 at 100 keV); ours 0.08 (100 keV ETRAN), 0.06 (100 keV EGSnrc)
  and 0.10 (500 keV ETRAN) at most, 6 % low at the peak.
- the radii holding 50 % and 90 % of the energy, x50 and x90, within ±0.02 (ours within 0.01);
- the energy beyond 0.9 r0 at 100 keV within ±30 % of both references (they differ by 13 %: ETRAN
  0.025, EGSnrc 0.028; ours 0.025). Without energy-loss straggling ours drops to 0.016 (−36 %/−43 %).

Photons: the photon part of our voxel kernel against Lanconelli et al. (Phys Med Biol 2012;57:517)
voxel S-values at all 13 voxel sizes, in the voxels that electrons cannot reach (a gap of more than
3 mm between source and target voxel; 189–208 offsets per size, 4–51 mm): within ±6 % (measured
−3.7 % to +3.1 %). And the photon attenuation coefficient that sets the build-up kernel's mean free
path must be ANS-6.4.3's water μ without coherent scattering, the quantity the GP build-up fits are
defined with (ANSI/ANS-6.4.3-1991; Trubey DK, NUREG/CR-5740, 1991; water: 0.1674, 0.1490, 0.1361,
0.1183 cm²/g at 0.10, 0.15, 0.20, 0.30 MeV, also in the ZapMeNot material library,
github.com/AlanFord/ZapMeNot); NIST's μ with coherent scattering is 1.7 % larger at 113 keV.
"""

from __future__ import annotations

import glob
import math

import numpy as np
import pytest

from LuDoseResponseLib.physics import electron_transport as et
from LuDoseResponseLib.physics import kernel_compute as KP
from LuDoseResponseLib.physics import kernel_files as KF
from LuDoseResponseLib.physics import photon_kernel as pk

ESTAR_CSDA_G_PER_CM2 = {0.1: 1.431e-2, 0.5: 0.1766}
ETRAN_X_STEP = 0.025
ETRAN = {   # j at x = 0, 0.025, …, 1.2
    0.1: [0.572, 0.588, 0.607, 0.627, 0.65, 0.676, 0.704, 0.735, 0.769, 0.806, 0.848, 0.893, 0.944, 1.001, 1.063,
          1.131, 1.202, 1.276, 1.35, 1.422, 1.49, 1.55, 1.601, 1.637, 1.658, 1.659, 1.638, 1.592, 1.521, 1.422,
          1.293, 1.138, 0.969, 0.807, 0.662, 0.533, 0.414, 0.306, 0.211, 0.134, 0.076, 0.039, 0.018, 0.007,
          0.003, 0.001, 0.0, 0.0, 0.0],
    0.5: [0.674, 0.698, 0.721, 0.742, 0.763, 0.783, 0.805, 0.828, 0.854, 0.882, 0.914, 0.949, 0.989, 1.035, 1.086,
          1.142, 1.203, 1.266, 1.33, 1.393, 1.452, 1.505, 1.549, 1.579, 1.593, 1.588, 1.562, 1.513, 1.442, 1.349,
          1.235, 1.103, 0.956, 0.797, 0.633, 0.473, 0.336, 0.23, 0.152, 0.092, 0.048, 0.019, 0.007, 0.002, 0.001,
          0.0, 0.0, 0.0, 0.0],
}
EGSNRC_100KEV_J = [0.577, 0.630, 0.680, 0.739, 0.813, 0.900, 1.002, 1.120, 1.248, 1.375, 1.494, 1.572, 1.601, 1.553,
                   1.402, 1.190, 0.916, 0.614, 0.349, 0.157, 0.050, 0.009, 0.001, 0.000]   # bins of 0.05 r0
HISTORIES = {0.1: 40_000, 0.5: 20_000}


@pytest.fixture(scope="module")
def scaled_kernels():
    """Our j(x) in bins of 0.025 r0 (x up to 1.2) for 100 and 500 keV electrons, full transport."""
    out = {}
    for e0, n in HISTORIES.items():
        edges = np.linspace(0.0, 1.2, 49) * ESTAR_CSDA_G_PER_CM2[e0]
        tally = et.transport_electrons(np.full(n, e0), np.ones(n), edges, seed=2025)
        assert tally.beyond_mev < 1e-3 * n * e0           # beyond 1.2 r0: a straggling tail of < 0.1 %
        out[e0] = tally.shell_mev / (n * e0)          # fraction of E0 per bin
    return out


def _reference_bins(e0):
    """ETRAN energy fraction per 0.025-r0 bin (trapezoid between the tabulated points)."""
    j = np.asarray(ETRAN[e0])
    return 0.5 * (j[1:] + j[:-1]) * ETRAN_X_STEP


def _radius_holding(fraction_per_bin, f):
    cum = np.concatenate([[0.0], np.cumsum(fraction_per_bin)])
    return float(np.interp(f * cum[-1], cum, np.linspace(0.0, 1.2, cum.size)))


@pytest.mark.parametrize("e0", [0.1, 0.5])
def test_electron_point_kernel_shape_matches_etran(scaled_kernels, e0):
    ours = scaled_kernels[e0]
    x_mid = (np.arange(48) + 0.5) * ETRAN_X_STEP
    j_ours = ours / ETRAN_X_STEP
    j_ref = np.interp(x_mid, np.arange(49) * ETRAN_X_STEP, ETRAN[e0])
    assert np.max(np.abs(j_ours - j_ref)) <= 0.15
    ref_bins = _reference_bins(e0)
    for f in (0.5, 0.9):
        assert _radius_holding(ours, f) == pytest.approx(_radius_holding(ref_bins, f), abs=0.02), f


def test_electron_point_kernel_tail_matches_etran_and_egsnrc(scaled_kernels):
    # The energy carried beyond 0.9 r0 by 100 keV electrons: set by energy-loss straggling and δ-rays.
    ours = scaled_kernels[0.1]
    beyond_ours = float(ours[36:].sum())
    beyond_etran = float(_reference_bins(0.1)[36:].sum())
    beyond_egs = float(np.sum(EGSNRC_100KEV_J[18:]) * 0.05)
    assert beyond_ours / beyond_etran == pytest.approx(1.0, abs=0.30)
    assert beyond_ours / beyond_egs == pytest.approx(1.0, abs=0.30)
    # EGSnrc's 0.05-r0 bins: our kernel rebinned, pointwise within the same 0.15.
    j_ours = (ours[0::2] + ours[1::2]) / 0.05
    assert np.max(np.abs(j_ours - np.asarray(EGSNRC_100KEV_J))) <= 0.15


def test_photon_kernel_matches_lanconelli_where_electrons_do_not_reach(physics_reference_dir):
    dpk = et.lu177_electron_dpk(n_histories=20_000)          # electrons do not reach these voxels
    files = sorted(glob.glob(str(physics_reference_dir / "lanconelli2012_via_MIRDCalculation" / "177Lu*mmsoft.txt")))
    assert len(files) == 13
    offsets = np.indices((6, 6, 6)).reshape(3, -1).T
    for path in files:
        lan = KF.load_lanconelli_kernel(path)
        h = lan.voxel_size_mm[0]
        parts = KP.compute_lu177_kernel_parts(h, photon_radius_mm=5 * h, dpk=dpk)
        c = np.array(parts.photon.shape) // 2
        far = offsets[(offsets.max(axis=1) - 1) * h > 3.0]
        assert len(far) >= 189
        for o in far:
            assert parts.electron[tuple(c + o)] == 0.0
            ratio = parts.photon[tuple(c + o)] / lan.values[tuple(5 + o)]
            assert ratio == pytest.approx(1.0, abs=0.06), (h, tuple(o))


def test_photon_mean_free_path_is_the_ans_one_without_coherent_scattering():
    ans = {0.10: 0.1674, 0.15: 0.1490, 0.20: 0.1361, 0.30: 0.1183}     # cm²/g, ANSI/ANS-6.4.3 water
    energies = np.array(sorted(ans))

    def ans_mu(e):
        return math.exp(np.interp(math.log(e), np.log(energies), np.log([ans[k] for k in energies])))

    lines, _ = pk.lu177_photon_lines()
    checked = 0
    for line in lines:
        if line.gp is not None and 0.10 <= line.energy_mev <= 0.30:
            assert line.mu_per_cm == pytest.approx(ans_mu(line.energy_mev), rel=2e-3), line.energy_mev
            checked += 1
    assert checked >= 3                      # 113, 137, 208, 250 keV
