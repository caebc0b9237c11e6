"""A planar phantom for the tests: analytic conjugate views of spheres in an attenuating water cylinder.

The cylinder (axis along z, radius R) holds a uniform background; spheres hold uniform activity that
replaces the background. Each view's primary counts are the exact line integrals along y (the
anterior detector at −y, the posterior at +y; LPS) of c·e^(−μ·depth), sampled at the pixel centres,
with μ = 0.1350 cm²/g · 1 g/cm³ for water at 208.4 keV (NIST XCOM, coherent included). Scatter is a
blurred fraction of the primary with a spectrum linear in energy, so triple-energy-window correction
removes it exactly in expectation. Poisson noise is drawn per window.

:func:`planar_nm_dataset` writes a view set as an NM planar DICOM (pydicom) with energy windows and
detector/energy-window frame vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, NuclearMedicineImageStorage, generate_uid
from scipy import ndimage

MU_WATER_PER_MM = 0.01350          # NIST XCOM water at 208.4 keV, 0.1350 cm²/g
PEAK = (187.56, 229.24)            # 208.4 keV ± 10 %
LOWER = (175.0, 187.6)             # 181.3 ± 6.3 keV (MRTDosimetry protocol)
UPPER = (229.2, 241.8)             # 235.5 ± 6.3 keV


@dataclass(frozen=True)
class Sphere:
    name: str
    centre_mm: tuple[float, float, float]      # LPS x, y, z
    radius_mm: float
    activity_mbq_at: object                    # callable t_h -> MBq

    @property
    def volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * self.radius_mm ** 3


@dataclass
class CylinderPhantom:
    spheres: list[Sphere]
    background_mbq_per_ml_at: object = field(default=lambda t: 0.05 * np.exp(-np.log(2) * t / 30.0))
    radius_mm: float = 100.0
    z_range_mm: tuple[float, float] = (-80.0, 80.0)
    planar_shape: tuple[int, int] = (64, 64)
    pixel_mm: float = 4.0
    planar_origin_mm: tuple[float, float] = (-126.0, 126.0)     # (x0, z0) of pixel [0, 0]
    ct_spacing_mm: tuple[float, float, float] = (4.0, 2.0, 4.0)
    ct_size: tuple[int, int, int] = (60, 120, 50)                # x, y, z
    ct_z_offset_mm: float = 0.0                                  # CT centre z (a CT shorter than the planar)

    # ---------------------------------------------------------------- CT and VOIs
    def ct_origin(self) -> tuple[float, float, float]:
        x, y, z = (-(n - 1) * h / 2 for n, h in zip(self.ct_size, self.ct_spacing_mm, strict=True))
        return x, y, z + self.ct_z_offset_mm

    def _ct_points(self):
        o, h, n = self.ct_origin(), self.ct_spacing_mm, self.ct_size
        z, y, x = np.meshgrid(*[o[i] + h[i] * np.arange(n[i]) for i in (2, 1, 0)], indexing="ij")
        return x, y, z

    def _image(self, array) -> sitk.Image:
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(self.ct_spacing_mm)
        img.SetOrigin(self.ct_origin())
        return img

    def ct_hu(self) -> sitk.Image:
        x, y, z = self._ct_points()
        inside = (x ** 2 + y ** 2 <= self.radius_mm ** 2) & (z >= self.z_range_mm[0]) & (z <= self.z_range_mm[1])
        return self._image(np.where(inside, 0.0, -1000.0).astype(np.float32))

    def masks(self) -> dict[str, sitk.Image]:
        x, y, z = self._ct_points()
        out = {}
        for s in self.spheres:
            cx, cy, cz = s.centre_mm
            inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= s.radius_mm ** 2
            out[s.name] = self._image(inside.astype(np.uint8))
        return out

    # ---------------------------------------------------------------- projections
    def pixel_centres(self):
        rows, cols = self.planar_shape
        x0, z0 = self.planar_origin_mm
        x = x0 + self.pixel_mm * np.arange(cols)
        z = z0 - self.pixel_mm * np.arange(rows)
        return np.meshgrid(x, z)  # [row, col] arrays of x and z

    def primary_mbq(self, t_h: float) -> tuple[np.ndarray, np.ndarray]:
        """(anterior, posterior) attenuated activity per pixel (MBq), both in the anterior frame."""
        mu = MU_WATER_PER_MM
        x, z = self.pixel_centres()
        half = np.sqrt(np.clip(self.radius_mm ** 2 - x ** 2, 0.0, None))
        in_body = (half > 0) & (z >= self.z_range_mm[0]) & (z <= self.z_range_mm[1])
        y_a, y_b = -half, half

        def seg(c, u, v):  # ∫_u^v c e^(−μ depth) dy for both views
            ant = c * (np.exp(-mu * (u - y_a)) - np.exp(-mu * (v - y_a))) / mu
            post = c * (np.exp(-mu * (y_b - v)) - np.exp(-mu * (y_b - u))) / mu
            return ant, post

        c_b = self.background_mbq_per_ml_at(t_h) / 1000.0       # MBq/mm³
        ant, post = seg(np.where(in_body, c_b, 0.0), y_a, y_b)
        for s in self.spheres:
            cx, cy, cz = s.centre_mm
            h = np.sqrt(np.clip(s.radius_mm ** 2 - (x - cx) ** 2 - (z - cz) ** 2, 0.0, None))
            c_s = s.activity_mbq_at(t_h) / s.volume_mm3
            a, p = seg(np.where(h > 0, c_s - c_b, 0.0), cy - h, cy + h)
            ant, post = ant + a, post + p
        area = self.pixel_mm ** 2
        return ant * area, post * area

    def views(self, t_h: float, *, cps_per_mbq: float, duration_s: float, rng: np.random.Generator,
              scatter_fraction: float = 0.3, scatter_slope_per_kev: float = -0.01, noise: bool = True,
              blur_sigma_px: float = 0.0) -> dict:
        """{"anterior"|"posterior": {"peak"|"lower"|"upper": counts}} as displayed (posterior flipped);
        ``blur_sigma_px`` blurs the primary image with a Gaussian (the camera's resolution, depth-independent)."""
        out = {}
        for name, mbq in zip(("anterior", "posterior"), self.primary_mbq(t_h), strict=True):
            primary = mbq * cps_per_mbq * duration_s
            if blur_sigma_px > 0:
                primary = ndimage.gaussian_filter(primary, blur_sigma_px, mode="constant")
            s = scatter_fraction * ndimage.gaussian_filter(primary, 4.0) / (PEAK[1] - PEAK[0])  # counts/keV at 208.4

            def in_window(w, s=s):  # ∫ s·(1 + b(E − 208.4)) dE over the window
                lo, hi = w
                return s * ((hi - lo) + scatter_slope_per_kev * 0.5 * ((hi - 208.4) ** 2 - (lo - 208.4) ** 2))

            windows = {"peak": primary + in_window(PEAK), "lower": in_window(LOWER), "upper": in_window(UPPER)}
            if noise:
                windows = {k: rng.poisson(np.clip(v, 0, None)).astype(float) for k, v in windows.items()}
            if name == "posterior":
                windows = {k: v[:, ::-1] for k, v in windows.items()}
            out[name] = windows
        return out


def planar_nm_dataset(views: dict, *, pixel_mm: float, duration_s: float, acquired_at: datetime,
                      view_codes: bool = True, whole_body: tuple[float, float] | None = None) -> Dataset:
    """An NM planar dataset: frames for each detector (views in ``views`` order) × energy window
    (peak, lower, upper), with EnergyWindowInformationSequence and DetectorInformationSequence.
    ``whole_body`` = (scan velocity mm/s, scan length mm) writes a whole-body sweep instead of a duration."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = NuclearMedicineImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = NuclearMedicineImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "WHOLE BODY" if whole_body else "STATIC", "EMISSION"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.AcquisitionDate = acquired_at.strftime("%Y%m%d")
    ds.AcquisitionTime = acquired_at.strftime("%H%M%S")
    windows = [PEAK, LOWER, UPPER]
    keys = ["peak", "lower", "upper"]
    ds.EnergyWindowInformationSequence = DicomSequence()
    for lo, hi in windows:
        rng = Dataset()
        rng.EnergyWindowLowerLimit, rng.EnergyWindowUpperLimit = lo, hi
        item = Dataset()
        item.EnergyWindowRangeSequence = DicomSequence([rng])
        ds.EnergyWindowInformationSequence.append(item)
    names = list(views)
    ds.DetectorInformationSequence = DicomSequence()
    for name in names:
        item = Dataset()
        if view_codes:
            code = Dataset()
            code.CodeValue = "399488007" if name == "anterior" else "399348003"
            code.CodingSchemeDesignator = "SCT"
            code.CodeMeaning = "anterior-posterior" if name == "anterior" else "posterior-anterior"
            item.ViewCodeSequence = DicomSequence([code])
        ds.DetectorInformationSequence.append(item)
    frames, det_vec, win_vec = [], [], []
    for d, name in enumerate(names, start=1):
        for w, key in enumerate(keys, start=1):
            frames.append(views[name][key])
            det_vec.append(d)
            win_vec.append(w)
    data = np.clip(np.rint(np.stack(frames)), 0, 65535).astype(np.uint16)
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]
    ds.EnergyWindowVector, ds.DetectorVector = win_vec, det_vec
    ds.NumberOfEnergyWindows, ds.NumberOfDetectors = len(windows), len(names)
    ds.Rows, ds.Columns = data.shape[1:]
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    if whole_body:
        ds.ScanVelocity, ds.ScanLength = whole_body
    else:
        ds.ActualFrameDuration = int(round(duration_s * 1000))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = data.tobytes()
    return ds


def planar_view(name: str, windows: dict, *, pixel_mm: float = 4.0, duration_s: float = 600.0):
    """A library PlanarView from a window dict of :meth:`CylinderPhantom.views`."""
    from LuDoseResponseLib.io.planar import EnergyWindow, PlanarView

    return PlanarView(name, windows["peak"], EnergyWindow(*PEAK), (pixel_mm, pixel_mm), duration_s,
                      windows["lower"], EnergyWindow(*LOWER), windows["upper"], EnergyWindow(*UPPER))


def conjugate_pairs(phantom: CylinderPhantom, times_h, *, cps_per_mbq: float = 9.3, duration_s: float = 600.0,
                    seed: int = 0, noise: bool = True, **view_kwargs) -> list:
    """One library ConjugatePair per time point, from the phantom."""
    from LuDoseResponseLib.dosimetry.planar import ConjugatePair

    rng = np.random.default_rng(seed)
    pairs = []
    for t in times_h:
        v = phantom.views(t, cps_per_mbq=cps_per_mbq, duration_s=duration_s, rng=rng, noise=noise, **view_kwargs)
        pairs.append(ConjugatePair(planar_view("anterior", v["anterior"], pixel_mm=phantom.pixel_mm,
                                               duration_s=duration_s),
                                   planar_view("posterior", v["posterior"], pixel_mm=phantom.pixel_mm,
                                               duration_s=duration_s), float(t), cps_per_mbq, key=f"planar {t} h"))
    return pairs
