"""Digital patients: anatomy, tumour kinetics, shrinkage, and the ground truth (no images written here).

A patient is a water body (0 HU) with lungs (−750 HU), a spine (+600 HU), a liver, two kidneys and
spherical tumours of 2–300 mL. Activity concentration in each region follows an uptake–washout curve

    C(t) = A₀ · f · (e^(−λ_eff t) − e^(−λ_up t)),   λ_eff = λ_phys + ln2/T_bio,

with A₀ the administered activity (Bq), f the uptake per mL, T_bio grade-dependent for tumours (G2
washes out faster than G1). A tumour's T_bio is the same in every cycle unless ``cycle_t_bio_factor``
changes it (a test of reduced imaging with changing kinetics). Its time integral is
∫₀^∞ C dt = A₀ f (1/λ_eff − 1/λ_up) exactly.

Ground truth per tumour and cycle is local energy deposition of the electrons in the tumour's true
(uniform) activity: D = ∫C dt · E_e / ρ, E_e = 0.147923 MeV (ICRP-107), ρ = 1 g/mL. For spheres of
5 g–1 kg the uniform-sphere S-value is 0.99–1.04 × LED (photons add ≤ 4 %; shared physics
reference §3), so LED is the truth to within those few per cent; below 2 g electrons escape and LED
overestimates by ~3 % at 1 g.

Kidneys: ``Kidney_L`` (patient's left, +x in LPS) and ``Kidney_R`` share the kidneys' uptake–washout curve
(uptake per mL and T_bio of ORGANS, or of the patient). Their true dose per cycle is the same local
deposition, at the density that their 30 HU stand for on the CT calibration of ``physics.density``
(1 + 30·0.92/1530 = 1.018 g/mL); their true BED is the linear-quadratic BED of that uptake–washout
dose rate, Ḋ(t) = K(e^(−λt) − e^(−ut)), in closed form (:func:`uptake_washout_bed_gy`).

Shrinkage: after each cycle the tumour volume is V₀ (1 − Δv(D_cum)), Δv = A_dr (1 − e^(−D_cum/s))
(Warfvinge et al. 2024, Fig. 4 model), D_cum the true dose of the cycles administered before that CT.
Segmentations are voxelised spheres; the true Δv and responder status are computed from the voxel counts
of the very segmentations written, with the paper's definitions (v_max, then v_min at or after it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from scipy.integrate import quad
from scipy.special import erf

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H, MEV_TO_J, lu177

LN2 = math.log(2.0)
LAMBDA_PHYS_PER_H = LN2 / LU177_HALF_LIFE_H
UPTAKE_HALF_LIFE_H = 2.0
#: tumour biological half-lives (h), uniform ranges per grade; G2 washes out faster
TUMOUR_T_BIO_H = {"G1": (250.0, 600.0), "G2": (90.0, 250.0)}
#: generating dose–response Δv = A (1 − exp(−D/s)) per grade (A, s in Gy)
DOSE_RESPONSE = {"G1": (0.95, 60.0), "G2": (0.95, 30.0)}
TUMOUR_UPTAKE_PER_ML = (0.6e-4, 4.0e-4)          # log-uniform, fraction of A₀ per mL
ORGANS = {  # name: (HU, uptake per mL, T_bio h)
    "body": (0.0, 1.0e-6, 30.0),
    "liver": (40.0, 1.5e-5, 150.0),
    "kidneys": (30.0, 4.0e-5, 60.0),
    "lungs": (-750.0, 0.0, 1.0),
    "spine": (600.0, 2.0e-6, 200.0),
}


def uptake_washout(t_h, a0_bq: float, f_per_ml: float, t_bio_h: float) -> np.ndarray:
    """C(t) in Bq/mL (module docstring); physical decay included (not decay-corrected)."""
    lam = LAMBDA_PHYS_PER_H + LN2 / t_bio_h
    lam_up = LN2 / UPTAKE_HALF_LIFE_H
    t = np.asarray(t_h, dtype=float)
    return a0_bq * f_per_ml * (np.exp(-lam * t) - np.exp(-lam_up * t))


def uptake_washout_integral(a0_bq: float, f_per_ml: float, t_bio_h: float) -> float:
    """∫₀^∞ C dt in Bq·h/mL, exactly: A₀ f (1/λ_eff − 1/λ_up)."""
    lam = LAMBDA_PHYS_PER_H + LN2 / t_bio_h
    return a0_bq * f_per_ml * (1.0 / lam - UPTAKE_HALF_LIFE_H / LN2)


#: the density (g/mL) the kidneys' HU stand for: water 1.000 at 0 HU to ICRU-44 cortical bone 1.92 at 1530 HU
KIDNEY_DENSITY_G_PER_ML = 1.0 + ORGANS["kidneys"][0] * (1.92 - 1.0) / 1530.0


def uptake_washout_bed_gy(dose_gy: float, t_bio_h: float, *, alpha_beta_gy: float,
                          repair_half_time_h: float) -> float:
    """BED of a dose delivered by Ḋ(t) = K(e^(−λt) − e^(−ut)), λ = λ_phys + ln2/T_bio, u the uptake rate.

    BED = D + G·D²/(α/β) with G = (2/D²) ∫₀^∞ Ḋ(t) ∫₀^t Ḋ(w) e^(−μ(t−w)) dw dt (Dale 1985; MIRD 20), which
    for this Ḋ is K²[1/(2λ(λ+μ)) − 1/((λ+u)(λ+μ)) − 1/((λ+u)(u+μ)) + 1/(2u(u+μ))] with K = D/(1/λ − 1/u).
    """
    lam = LAMBDA_PHYS_PER_H + LN2 / t_bio_h
    u = LN2 / UPTAKE_HALF_LIFE_H
    mu = LN2 / repair_half_time_h
    k = dose_gy / (1.0 / lam - 1.0 / u)
    double = k * k * (1 / (2 * lam * (lam + mu)) - 1 / ((lam + u) * (lam + mu)) - 1 / ((lam + u) * (u + mu))
                      + 1 / (2 * u * (u + mu)))
    g = 2.0 * double / dose_gy**2
    return dose_gy + g * dose_gy**2 / alpha_beta_gy


def led_gy_per_bq_h_per_ml(density_g_per_ml: float = 1.0) -> float:
    """Local electron deposition: Gy per (Bq·h/mL) = E_e [J] · 3600 s/h / (ρ · 1e-3 kg/mL)."""
    return lu177().electron_energy_mev * MEV_TO_J * 3600.0 / (density_g_per_ml * 1e-3)


def rc_mean_sphere(radius_mm: float, fwhm_mm: float) -> float:
    """Mean recovery of a uniform sphere blurred by an isotropic Gaussian (physics reference §4, closed form)."""
    s = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    r_big = radius_mm

    def p_in(r):
        if r < 1e-9:
            return float(erf(r_big / (s * math.sqrt(2))) - 2 * r_big / (s * math.sqrt(2 * math.pi))
                         * math.exp(-r_big ** 2 / (2 * s * s)))
        a = 0.5 * (erf((r_big - r) / (s * math.sqrt(2))) + erf((r_big + r) / (s * math.sqrt(2))))
        b = s / (r * math.sqrt(2 * math.pi)) * (math.exp(-(r_big - r) ** 2 / (2 * s * s))
                                                 - math.exp(-(r_big + r) ** 2 / (2 * s * s)))
        return a - b

    return 3.0 / r_big ** 3 * quad(lambda r: p_in(r) * r * r, 0.0, r_big, limit=200)[0]


@dataclass(frozen=True)
class Grid3:
    """An axial LPS grid centred on 0: shape [z, y, x], isotropic spacing (mm)."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: float

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        nz, ny, nx = self.shape_zyx
        h = self.spacing_mm
        return (-(nx - 1) / 2 * h, -(ny - 1) / 2 * h, -(nz - 1) / 2 * h)

    @property
    def voxel_ml(self) -> float:
        return self.spacing_mm ** 3 / 1000.0

    def coordinates_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z, y, x) coordinate arrays broadcastable to the shape."""
        nz, ny, nx = self.shape_zyx
        ox, oy, oz = self.origin_mm
        h = self.spacing_mm
        return ((oz + h * np.arange(nz))[:, None, None], (oy + h * np.arange(ny))[None, :, None],
                (ox + h * np.arange(nx))[None, None, :])

    def refined(self, factor: int) -> Grid3:
        """The same field of view with ``factor``× finer voxels (same outer bounds)."""
        nz, ny, nx = self.shape_zyx
        return Grid3((nz * factor, ny * factor, nx * factor), self.spacing_mm / factor)


def ellipsoid(grid: Grid3, centre_xyz, radii_xyz) -> np.ndarray:
    z, y, x = grid.coordinates_mm()
    return (((x - centre_xyz[0]) / radii_xyz[0]) ** 2 + ((y - centre_xyz[1]) / radii_xyz[1]) ** 2
            + ((z - centre_xyz[2]) / radii_xyz[2]) ** 2) <= 1.0


def sphere(grid: Grid3, centre_xyz, radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies in the sphere (at least the voxel at the centre when it is a voxel centre)."""
    return ellipsoid(grid, centre_xyz, (radius_mm, radius_mm, radius_mm))


def organ_masks(grid: Grid3) -> dict[str, np.ndarray]:
    """Boolean masks of body, lungs, spine, liver and kidneys (exclusive; body is what is left)."""
    z, y, x = grid.coordinates_mm()
    nz = grid.shape_zyx[0]
    top = grid.origin_mm[2] + (nz - 1) * grid.spacing_mm
    body = np.broadcast_to(((x / 140.0) ** 2 + (y / 100.0) ** 2) <= 1.0, grid.shape_zyx).copy()
    lungs = (ellipsoid(grid, (65, -5, top), (45, 55, 0.55 * top))
             | ellipsoid(grid, (-65, -5, top), (45, 55, 0.55 * top))) & body
    spine = np.broadcast_to(((x / 15.0) ** 2 + ((y - 70.0) / 15.0) ** 2) <= 1.0, grid.shape_zyx) & body
    liver = ellipsoid(grid, (-60, 0, 0.1 * top), (55, 55, 0.4 * top)) & body & ~lungs & ~spine
    kidneys = (ellipsoid(grid, (70, 45, -0.35 * top), (22, 22, 0.4 * top))
               | ellipsoid(grid, (-75, 45, -0.4 * top), (22, 22, 0.4 * top))) & body & ~spine & ~liver
    rest = body & ~lungs & ~spine & ~liver & ~kidneys
    return {"body": rest, "lungs": lungs, "spine": spine, "liver": liver, "kidneys": kidneys}


def kidney_masks(grid: Grid3, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The two kidneys of ``organ_masks``: Kidney_L on the patient's left (x > 0 in LPS), Kidney_R on the right."""
    _, _, x = grid.coordinates_mm()
    left = np.broadcast_to(x > 0, grid.shape_zyx)
    return {"Kidney_L": masks["kidneys"] & left, "Kidney_R": masks["kidneys"] & ~left}


@dataclass(frozen=True)
class PhantomTumour:
    """One spherical tumour: where, how big at baseline, how it takes up and washes out."""

    name: str
    centre_mm: tuple[float, float, float]
    volume_ml: float
    uptake_per_ml: float
    t_bio_h: float
    cycle_uptake_factor: tuple[float, ...]   # per cycle, multiplies the uptake
    cycle_t_bio_factor: tuple[float, ...] = ()   # per cycle, multiplies T_bio (empty: the same every cycle)

    def t_bio_at_cycle_h(self, cycle_index: int) -> float:
        """The biological half-life in a cycle (h): ``t_bio_h``, times that cycle's ``cycle_t_bio_factor``."""
        factors = self.cycle_t_bio_factor
        return self.t_bio_h * (factors[cycle_index] if factors else 1.0)

    @property
    def radius_mm(self) -> float:
        return (3.0 * self.volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


@dataclass(frozen=True)
class PhantomPatient:
    """Everything needed to write and to score one digital patient."""

    patient: str
    grade: str
    grid: Grid3
    fu_refine: int
    tumours: tuple[PhantomTumour, ...]
    cycle_dates: tuple[datetime, ...]
    activities_mbq: tuple[float, ...]
    scan_hours: tuple[float, ...]
    followup_dates: tuple[date, ...]
    psf_fwhm_mm: float
    calibration_cps_per_mbq: float
    duration_s: float
    seed: int
    dose_response: tuple[float, float] = field(default=(0.95, 60.0))
    kidney_uptake_per_ml: float = ORGANS["kidneys"][1]
    kidney_t_bio_h: float = ORGANS["kidneys"][2]


def _place_tumours(grid: Grid3, masks: dict[str, np.ndarray], volumes_ml, rng: np.random.Generator):
    """Tumour centres at voxel centres inside the soft tissue (body or liver), clear of other tumours."""
    allowed = masks["body"] | masks["liver"]
    z, y, x = grid.coordinates_mm()
    zz, yy, xx = np.broadcast_arrays(z, y, x)
    placed: list[tuple[tuple[float, float, float], float]] = []
    for v in volumes_ml:
        r = (3.0 * v * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        candidates = np.flatnonzero(allowed)
        for _attempt in range(400):
            i = int(rng.choice(candidates))
            c = (float(xx.flat[i]), float(yy.flat[i]), float(zz.flat[i]))
            if abs(c[2]) + r + 2 * grid.spacing_mm > -grid.origin_mm[2]:
                continue                                   # keep clear of the first and last slices
            ball = sphere(grid, c, r + grid.spacing_mm)
            if not np.all(allowed[ball]):
                continue
            if any(math.dist(c, c2) < r + r2 + 2 * grid.spacing_mm for c2, r2 in placed):
                continue
            placed.append((c, r))
            break
        else:
            raise InputError(f"phantom: could not place a {v:.0f} mL tumour in the {grid.shape_zyx} grid; "
                             "use fewer or smaller tumours or a larger grid")
    return [c for c, _ in placed]


def make_patient(patient: str, *, seed: int, grade: str | None = None, n_tumours: int = 4,
                 shape_zyx=(48, 64, 64), spacing_mm: float = 4.8, n_cycles: int = 2,
                 scan_hours=(4.0, 24.0, 96.0, 168.0), psf_fwhm_mm: float = 11.0, fu_refine: int = 2,
                 volume_range_ml=(2.0, 300.0), calibration_cps_per_mbq: float = 5.7,
                 duration_s: float = 1800.0, kidney_uptake_per_ml: float = ORGANS["kidneys"][1],
                 kidney_t_bio_h: float = ORGANS["kidneys"][2]) -> PhantomPatient:
    """A random (seeded) digital patient; tumour volumes log-uniform in ``volume_range_ml``; the kidneys'
    uptake (fraction of A₀ per mL) and biological half-life as given (not drawn)."""
    rng = np.random.default_rng(seed)
    grade = grade or ("G1" if rng.random() < 0.4 else "G2")
    if grade not in TUMOUR_T_BIO_H:
        raise InputError(f"phantom {patient}: grade must be G1 or G2, got {grade!r}")
    if not (kidney_uptake_per_ml >= 0 and kidney_t_bio_h > 0):
        raise InputError(f"phantom {patient}: kidney_uptake_per_ml must be >= 0 and kidney_t_bio_h > 0, got "
                         f"{kidney_uptake_per_ml!r} and {kidney_t_bio_h!r}")
    grid = Grid3(tuple(int(v) for v in shape_zyx), float(spacing_mm))
    masks = organ_masks(grid)
    lo, hi = volume_range_ml
    volumes = np.sort(np.exp(rng.uniform(math.log(lo), math.log(hi), n_tumours)))[::-1]
    centres = _place_tumours(grid, masks, volumes, rng)
    lo_f, hi_f = TUMOUR_UPTAKE_PER_ML
    tb_lo, tb_hi = TUMOUR_T_BIO_H[grade]
    tumours = tuple(PhantomTumour(
        name=f"T{i + 1}", centre_mm=centres[i], volume_ml=float(volumes[i]),
        uptake_per_ml=float(math.exp(rng.uniform(math.log(lo_f), math.log(hi_f)))),
        t_bio_h=float(rng.uniform(tb_lo, tb_hi)),
        cycle_uptake_factor=tuple(float(v) for v in rng.uniform(0.8, 1.2, n_cycles))) for i in range(n_tumours))
    first = datetime(2019, 3, 4, 9, 30) + timedelta(days=int(rng.integers(0, 300)))
    cycles = tuple(first + timedelta(weeks=8 * k) for k in range(n_cycles))
    followups = (cycles[0].date() - timedelta(days=14),) + tuple(
        (c + timedelta(weeks=7)).date() for c in cycles)
    return PhantomPatient(patient=patient, grade=grade, grid=grid, fu_refine=fu_refine, tumours=tumours,
                          cycle_dates=cycles, activities_mbq=tuple(float(v) for v in rng.uniform(7000, 7600, n_cycles)),
                          scan_hours=tuple(float(h) for h in scan_hours), followup_dates=followups,
                          psf_fwhm_mm=psf_fwhm_mm, calibration_cps_per_mbq=calibration_cps_per_mbq,
                          duration_s=duration_s, seed=seed, dose_response=DOSE_RESPONSE[grade],
                          kidney_uptake_per_ml=float(kidney_uptake_per_ml), kidney_t_bio_h=float(kidney_t_bio_h))


def true_cycle_dose_gy(p: PhantomPatient, tumour: PhantomTumour, cycle_index: int) -> float:
    """Truth: LED dose of the tumour's uniform true activity in one cycle (module docstring)."""
    tia = uptake_washout_integral(p.activities_mbq[cycle_index] * 1e6,
                                  tumour.uptake_per_ml * tumour.cycle_uptake_factor[cycle_index],
                                  tumour.t_bio_at_cycle_h(cycle_index))
    return tia * led_gy_per_bq_h_per_ml(1.0)


def true_kidney_cycle_dose_gy(p: PhantomPatient, cycle_index: int) -> float:
    """Truth: LED dose of the kidneys' uniform true activity in one cycle, at the kidney density."""
    tia = uptake_washout_integral(p.activities_mbq[cycle_index] * 1e6, p.kidney_uptake_per_ml, p.kidney_t_bio_h)
    return tia * led_gy_per_bq_h_per_ml(KIDNEY_DENSITY_G_PER_ML)


def tumour_radii_mm(p: PhantomPatient, tumour: PhantomTumour) -> list[float]:
    """Sphere radius at each follow-up CT: baseline, then shrunk by the dose of the cycles before it."""
    a_dr, s_gy = p.dose_response
    radii = []
    for day in p.followup_dates:
        d_cum = sum(true_cycle_dose_gy(p, tumour, k) for k, c in enumerate(p.cycle_dates) if c.date() < day)
        frac = 1.0 - a_dr * (1.0 - math.exp(-d_cum / s_gy))
        radii.append(tumour.radius_mm * frac ** (1.0 / 3.0))
    return radii


def radius_at_cycle_mm(p: PhantomPatient, tumour: PhantomTumour, cycle_index: int) -> float:
    """The tumour's radius during a cycle: that of the last follow-up CT before the administration."""
    radii = tumour_radii_mm(p, tumour)
    day = p.cycle_dates[cycle_index].date()
    before = [r for d, r in zip(p.followup_dates, radii, strict=True) if d <= day]
    return before[-1] if before else tumour.radius_mm


def activity_map_bq_per_ml(p: PhantomPatient, cycle_index: int, t_h: float,
                           masks: dict[str, np.ndarray], tumour_masks: list[np.ndarray]) -> np.ndarray:
    """True activity concentration (Bq/mL) on the SPECT grid at ``t_h`` hours after the administration."""
    a0 = p.activities_mbq[cycle_index] * 1e6
    out = np.zeros(p.grid.shape_zyx)
    for name, (_, f, t_bio) in ORGANS.items():
        if name == "kidneys":
            f, t_bio = p.kidney_uptake_per_ml, p.kidney_t_bio_h
        if f > 0:
            out[masks[name]] = float(uptake_washout(t_h, a0, f, t_bio))
    for t, m in zip(p.tumours, tumour_masks, strict=True):
        out[m] = float(uptake_washout(t_h, a0, t.uptake_per_ml * t.cycle_uptake_factor[cycle_index],
                                      t.t_bio_at_cycle_h(cycle_index)))
    return out


def hu_map(masks: dict[str, np.ndarray], tumour_masks: list[np.ndarray], shape_zyx) -> np.ndarray:
    """CT in HU: air outside the body, organs as in ORGANS, tumours water (0 HU, 1 g/mL)."""
    hu = np.full(shape_zyx, -1000.0)
    for name, (value, _, _) in ORGANS.items():
        hu[masks[name]] = value
    for m in tumour_masks:
        hu[m] = 0.0
    return hu
