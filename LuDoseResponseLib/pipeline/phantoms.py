"""Digital patients written to disk as real files: NM SPECT and CT DICOM (pydicom), .seg.nrrd, manifest.toml.

Per cycle and time point the SPECT is true activity (:mod:`phantom_anatomy`) → Gaussian PSF
(``psf_fwhm_mm``) → counts = C · V_voxel · 1e-6 · S · t_acq → Poisson noise, stored as a multi-frame
NM RECON TOMO in counts (Units CNTS) with the acquisition time, duration and administration in its
header. Each cycle also has ``organs.seg.nrrd`` (Kidney_L, Kidney_R) named by ``organs =`` in the manifest.
With ``spect_format="nrrd"`` the same noisy image is written in Bq/mL as NRRD and the manifest
gives ``units = "bq_per_ml"`` and the time. ``truth.json`` holds the ground truth (see
:mod:`phantom_anatomy`), never computed by the pipeline.

Reduced imaging (issue 11): ``imaging="hybrid"`` writes per cycle whole-body anterior/posterior NM planar
DICOM (both detectors in one file, three energy windows; :mod:`phantom_planar`) at the planar hours and
one SPECT at ``single_spect_h``, with the manifest's ``[[cycles.planar]]`` entries;
``later_cycles="from-cycle-1"`` gives every cycle after the first one SPECT at ``single_spect_h`` and
``kinetics = "from-cycle-1"``. The truth is the same either way: it comes from the true activity.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, NuclearMedicineImageStorage, generate_uid
from scipy.ndimage import gaussian_filter

from LuDoseResponseLib.dosimetry.bed import KIDNEY_ALPHA_BETA_GY, KIDNEY_REPAIR_HALF_TIME_H
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.files import atomic_path, write_text_atomic
from LuDoseResponseLib.io.seg_nrrd_write import write_slicer_segmentation
from LuDoseResponseLib.physics.nuclides import LU177_HALF_LIFE_H
from LuDoseResponseLib.pipeline.phantom_anatomy import (
    KIDNEY_DENSITY_G_PER_ML,
    LAMBDA_PHYS_PER_H,
    LN2,
    PhantomPatient,
    activity_map_bq_per_ml,
    hu_map,
    kidney_masks,
    organ_masks,
    radius_at_cycle_mm,
    rc_mean_sphere,
    sphere,
    true_cycle_dose_gy,
    true_kidney_cycle_dose_gy,
    tumour_radii_mm,
    uptake_washout_bed_gy,
)
from LuDoseResponseLib.pipeline.phantom_planar import WINDOWS, PlanarSettings, planar_windows

SPECT_FORMATS = ("dicom", "nrrd")
IMAGING = ("spect", "hybrid")
LATER_CYCLES = ("full", "from-cycle-1")
#: SNOMED view codes of the planar detectors (DICOM CID 26)
_VIEW_CODES = {"anterior": ("399488007", "anterior-posterior"), "posterior": ("399348003", "posterior-anterior")}


def _base(modality: str, sop_class: str, p: PhantomPatient, ids: dict, series_uid: str, number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.Manufacturer = "LuDoseResponse phantom"
    ds.PatientID, ds.PatientName = p.patient, f"Phantom^{p.patient}"
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = ids["study"], ids["frame"]
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, number
    return ds


def _pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.astype("<u2").tobytes()


def _dicom_dt(when) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def write_nm_counts(counts_zyx: np.ndarray, path: Path, p: PhantomPatient, ids: dict, *, cycle_index: int,
                    acquired_at, number: int) -> Path:
    """One multi-frame NM RECON TOMO in counts (uint16, Units CNTS) with timing and administration tags."""
    if counts_zyx.max() > 65535:
        raise InputError(f"{path}: {counts_zyx.max():.0f} counts in a voxel do not fit 16 bits; shorten duration_s")
    ds = _base("NM", NuclearMedicineImageStorage, p, ids, generate_uid(), number)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    n = counts_zyx.shape[0]
    ds.NumberOfFrames = n
    ds.NumberOfSlices = n
    ds.FrameIncrementPointer = 0x00540080
    ds.SliceVector = list(range(1, n + 1))
    h = p.grid.spacing_mm
    ds.PixelSpacing = [f"{h:.10g}", f"{h:.10g}"]
    ds.SpacingBetweenSlices = ds.SliceThickness = f"{h:.10g}"
    det = Dataset()
    det.ImagePositionPatient = [f"{v:.10g}" for v in p.grid.origin_mm]
    det.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.DetectorInformationSequence = DicomSequence([det])
    ds.Units = "CNTS"
    ds.DecayCorrection = "NONE"
    ds.AcquisitionDate, ds.AcquisitionTime = _dicom_dt(acquired_at)
    rp = Dataset()
    rp.Radiopharmaceutical = "Lu-177-DOTATATE"
    admin = p.cycle_dates[cycle_index]
    rp.RadiopharmaceuticalStartDateTime = admin.strftime("%Y%m%d%H%M%S")
    rp.RadionuclideTotalDose = f"{p.activities_mbq[cycle_index] * 1e6:.10g}"
    rp.RadionuclideHalfLife = f"{LU177_HALF_LIFE_H * 3600:.10g}"
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
    views = 60
    rot = Dataset()
    rot.ActualFrameDuration = int(round(p.duration_s / views * 1000))
    rot.NumberOfFramesInRotation = views
    ds.RotationInformationSequence = DicomSequence([rot])
    _pixels(ds, counts_zyx)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_nm_planar(views: dict[str, dict[str, np.ndarray]], path: Path, p: PhantomPatient, ids: dict, *,
                    scan_time_s: float, acquired_at, number: int) -> Path:
    """One whole-body NM file: detector 1 anterior, 2 posterior (view codes), three energy windows each, the
    sweep as ScanVelocity/ScanLength (scan time = length / velocity)."""
    frames, detectors, windows = [], [], []
    for d, view in enumerate(("anterior", "posterior"), start=1):
        for w, key in enumerate(WINDOWS, start=1):
            frames.append(views[view][key])
            detectors.append(d)
            windows.append(w)
    data = np.stack(frames)
    if data.max() > 65535:
        raise InputError(f"{path}: {data.max():.0f} counts in a pixel do not fit 16 bits; shorten the scan time")
    ds = _base("NM", NuclearMedicineImageStorage, p, ids, generate_uid(), number)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]
    ds.EnergyWindowInformationSequence = DicomSequence()
    for window in WINDOWS.values():
        limits = Dataset()
        limits.EnergyWindowLowerLimit = f"{window.lower_kev:.6g}"
        limits.EnergyWindowUpperLimit = f"{window.upper_kev:.6g}"
        item = Dataset()
        item.EnergyWindowRangeSequence = DicomSequence([limits])
        ds.EnergyWindowInformationSequence.append(item)
    ds.DetectorInformationSequence = DicomSequence()
    for view in ("anterior", "posterior"):
        code = Dataset()
        code.CodeValue, code.CodeMeaning = _VIEW_CODES[view]
        code.CodingSchemeDesignator = "SCT"
        item = Dataset()
        item.ViewCodeSequence = DicomSequence([code])
        ds.DetectorInformationSequence.append(item)
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]
    ds.EnergyWindowVector, ds.DetectorVector = windows, detectors
    ds.NumberOfEnergyWindows, ds.NumberOfDetectors = len(WINDOWS), 2
    h = p.grid.spacing_mm
    ds.PixelSpacing = [f"{h:.10g}", f"{h:.10g}"]
    length_mm = data.shape[1] * h
    ds.ScanLength = f"{length_mm:.10g}"
    ds.ScanVelocity = f"{length_mm / scan_time_s:.10g}"
    ds.AcquisitionDate, ds.AcquisitionTime = _dicom_dt(acquired_at)
    _pixels(ds, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_ct(hu_zyx: np.ndarray, folder: Path, p: PhantomPatient, ids: dict) -> Path:
    """A CT series, one file per slice, stored = HU + 1024."""
    uid = generate_uid()
    h = p.grid.spacing_mm
    ox, oy, oz = p.grid.origin_mm
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(hu_zyx):
        ds = _base("CT", CTImageStorage, p, ids, uid, 2)
        ds.InstanceNumber = k + 1
        ds.PixelSpacing = [f"{h:.10g}", f"{h:.10g}"]
        ds.SliceThickness = f"{h:.10g}"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = [f"{ox:.10g}", f"{oy:.10g}", f"{oz + k * h:.10g}"]
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.AcquisitionDate, ds.AcquisitionTime = _dicom_dt(p.cycle_dates[0])
        _pixels(ds, np.clip(np.rint(plane + 1024), 0, 65535))
        with atomic_path(folder / f"CT{k:04d}.dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return folder


def write_seg_nrrd(masks: list[np.ndarray], names: list[str], spacing_mm: float, origin_mm, path: Path) -> Path:
    """A Slicer .seg.nrrd of the masks (:func:`io.seg_nrrd_write.write_slicer_segmentation`)."""
    def image(mask: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing((spacing_mm,) * 3)
        img.SetOrigin(tuple(origin_mm))
        return img

    return write_slicer_segmentation(((n, image(m)) for n, m in zip(names, masks, strict=True)), path,
                                     what=str(path))


def _response(volumes: list[float]) -> tuple[float, int, int]:
    """(Δv, index of v_max, index of v_min): v_max first maximum, v_min first minimum at or after it."""
    v = np.asarray(volumes)
    i_max = int(np.argmax(v))
    i_min = i_max + int(np.argmin(v[i_max:]))
    return float((v[i_max] - v[i_min]) / v[i_max]), i_max, i_min


def write_patient(p: PhantomPatient, folder: str | Path, *, spect_format: str = "dicom",
                  responder_threshold: float = 0.66, imaging: str = "spect", later_cycles: str = "full",
                  single_spect_h: float = 24.0, planar: PlanarSettings | None = None) -> Path:
    """Write one digital patient under ``folder`` and return its manifest.toml path.

    ``imaging``: ``"spect"`` (a SPECT at each of ``p.scan_hours``) or ``"hybrid"`` (planars at
    ``planar.hours`` and one SPECT at ``single_spect_h``); ``later_cycles``: ``"full"`` (as cycle 1) or
    ``"from-cycle-1"`` (one SPECT at ``single_spect_h``, kinetics from cycle 1). See the module docstring.
    """
    if spect_format not in SPECT_FORMATS:
        raise InputError(f"spect_format must be one of {SPECT_FORMATS}, got {spect_format!r}")
    if imaging not in IMAGING:
        raise InputError(f"imaging must be one of {IMAGING}, got {imaging!r}")
    if later_cycles not in LATER_CYCLES:
        raise InputError(f"later_cycles must be one of {LATER_CYCLES}, got {later_cycles!r}")
    planar = planar or PlanarSettings()
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(p.seed + 1)
    ids = {"study": generate_uid(), "frame": generate_uid()}
    grid = p.grid
    masks = organ_masks(grid)
    names = [t.name for t in p.tumours]
    kidneys = kidney_masks(grid, masks)
    base_masks = [sphere(grid, t.centre_mm, t.radius_mm) for t in p.tumours]
    hu = hu_map(masks, base_masks, grid.shape_zyx)
    write_ct(hu, root / "ct", p, ids)
    sigma_vox = p.psf_fwhm_mm / (2 * math.sqrt(2 * math.log(2))) / grid.spacing_mm
    counts_per_bq_per_ml = grid.voxel_ml * 1e-6 * p.calibration_cps_per_mbq * p.duration_s
    lines = [f'patient = "{p.patient}"', f'grade = "{p.grade}"', "", "[settings]", 'pvc = "none"',
             f"psf_fwhm_mm = {p.psf_fwhm_mm}", ""]
    for k, admin in enumerate(p.cycle_dates):
        c = f"c{k + 1}"
        cyc_masks = [sphere(grid, t.centre_mm, radius_at_cycle_mm(p, t, k)) for t in p.tumours]
        write_seg_nrrd(cyc_masks, names, grid.spacing_mm, grid.origin_mm, root / c / "tumours.seg.nrrd")
        write_seg_nrrd(list(kidneys.values()), list(kidneys), grid.spacing_mm, grid.origin_mm,
                       root / c / "organs.seg.nrrd")
        lines += ["[[cycles]]", f"number = {k + 1}", f"administered_at = {admin.isoformat()}",
                  f"activity_mbq = {p.activities_mbq[k]:.1f}",
                  f"calibration_cps_per_mbq = {p.calibration_cps_per_mbq}", 'ct = "ct"',
                  f'tumours = "{c}/tumours.seg.nrrd"', f'organs = "{c}/organs.seg.nrrd"']
        reduced = k > 0 and later_cycles == "from-cycle-1"
        lines += ['kinetics = "from-cycle-1"', ""] if reduced else [""]
        if imaging == "hybrid" and not reduced:
            for j, hours in enumerate(planar.hours):
                views = planar_windows(activity_map_bq_per_ml(p, k, hours, masks, cyc_masks), hu, grid.spacing_mm,
                                       planar, rng)
                rel = f"{c}/wb_{hours:g}h.dcm"
                write_nm_planar(views, root / rel, p, ids, scan_time_s=planar.scan_time_s,
                                acquired_at=admin + timedelta(hours=hours), number=100 + 10 * (k + 1) + j)
                lines += ["  [[cycles.planar]]", f'  anterior = "{rel}"', f'  posterior = "{rel}"',
                          f"  calibration_cps_per_mbq = {planar.sensitivity_cps_per_mbq}", ""]
        spect_hours = (single_spect_h,) if reduced or imaging == "hybrid" else p.scan_hours
        for j, hours in enumerate(spect_hours):
            conc = activity_map_bq_per_ml(p, k, hours, masks, cyc_masks)
            blurred = gaussian_filter(conc, sigma_vox, mode="constant")
            counts = rng.poisson(np.maximum(blurred, 0) * counts_per_bq_per_ml).astype(float)
            acquired = admin + timedelta(hours=hours)
            lines.append("  [[cycles.spect]]")
            if spect_format == "dicom":
                rel = f"{c}/spect_{hours:g}h.dcm"
                write_nm_counts(counts, root / rel, p, ids, cycle_index=k, acquired_at=acquired,
                                number=10 * (k + 1) + j)
                lines.append(f'  path = "{rel}"')
            else:
                rel = f"{c}/spect_{hours:g}h.nrrd"
                img = sitk.GetImageFromArray((counts / counts_per_bq_per_ml).astype(np.float32))
                img.SetSpacing((grid.spacing_mm,) * 3)
                img.SetOrigin(grid.origin_mm)
                (root / c).mkdir(parents=True, exist_ok=True)
                with atomic_path(root / rel) as tmp:
                    sitk.WriteImage(img, str(tmp), useCompression=True)
                lines += [f'  path = "{rel}"', f"  acquired_at = {acquired.isoformat()}", '  units = "bq_per_ml"']
            lines.append("")
    fu = grid.refined(p.fu_refine)
    fu_volumes = {t.name: [] for t in p.tumours}
    for i, day in enumerate(p.followup_dates):
        radii = [tumour_radii_mm(p, t)[i] for t in p.tumours]
        fu_masks = [sphere(fu, t.centre_mm, r) for t, r in zip(p.tumours, radii, strict=True)]
        rel = f"fu/ct_{i}.seg.nrrd"
        write_seg_nrrd(fu_masks, names, fu.spacing_mm, fu.origin_mm, root / rel)
        for t, m in zip(p.tumours, fu_masks, strict=True):
            fu_volumes[t.name].append(float(m.sum()) * fu.voxel_ml)
        lines += ["[[followups]]", f"date = {day.isoformat()}", f'tumours = "{rel}"', ""]
    write_text_atomic(root / "manifest.toml", "\n".join(lines))
    truth = _truth(p, fu_volumes, responder_threshold)
    truth["organs"] = _organ_truth(p, {n: float(m.sum()) * grid.voxel_ml for n, m in kidneys.items()})
    write_text_atomic(root / "truth.json", json.dumps(truth, indent=2))
    return root / "manifest.toml"


def _organ_truth(p: PhantomPatient, volumes_ml: dict[str, float]) -> dict:
    """True dose and BED per kidney and cycle (and of both kidneys: the same curve, so the same values)."""
    doses = [true_kidney_cycle_dose_gy(p, k) for k in range(len(p.cycle_dates))]
    beds = [uptake_washout_bed_gy(d, p.kidney_t_bio_h, alpha_beta_gy=KIDNEY_ALPHA_BETA_GY,
                                  repair_half_time_h=KIDNEY_REPAIR_HALF_TIME_H) for d in doses]
    t_eff_h = LN2 / (LAMBDA_PHYS_PER_H + LN2 / p.kidney_t_bio_h)
    volumes = {**volumes_ml, "Kidneys": sum(volumes_ml.values())}
    return {name: {"cycle_dose_gy": doses, "cycle_bed_gy": beds, "cumulative_bed_gy": float(sum(beds)),
                   "t_eff_h": t_eff_h, "volume_ml": v, "mass_g": v * KIDNEY_DENSITY_G_PER_ML,
                   "alpha_beta_gy": KIDNEY_ALPHA_BETA_GY, "repair_half_time_h": KIDNEY_REPAIR_HALF_TIME_H,
                   "physics": f"local electron deposition, rho = {KIDNEY_DENSITY_G_PER_ML:.4f} g/mL; BED of the "
                              "uptake-washout dose rate (phantom_anatomy.uptake_washout_bed_gy)"}
            for name, v in volumes.items()}


def _truth(p: PhantomPatient, fu_volumes: dict[str, list[float]], responder_threshold: float) -> dict:
    tumours = []
    for t in p.tumours:
        doses = [true_cycle_dose_gy(p, t, k) for k in range(len(p.cycle_dates))]
        dv, _, i_min = _response(fu_volumes[t.name])
        vmin_day = p.followup_dates[i_min]
        until = [d for d, c in zip(doses, p.cycle_dates, strict=True) if c.date() < vmin_day] or doses
        tumours.append({"tumor": f"{p.patient}.{t.name}", "name": t.name, "baseline_volume_ml": t.volume_ml,
                        "cycle_dose_gy": doses, "dose_gy": float(sum(until)),
                        "dose_all_cycles_gy": float(sum(doses)), "volumes_cm3": fu_volumes[t.name], "dv": dv,
                        "responder": int(dv >= responder_threshold),
                        "rc_mean": rc_mean_sphere(t.radius_mm, p.psf_fwhm_mm), "t_bio_h": t.t_bio_h,
                        "cycle_t_bio_h": [t.t_bio_at_cycle_h(k) for k in range(len(p.cycle_dates))]})
    return {"patient": p.patient, "grade": p.grade, "psf_fwhm_mm": p.psf_fwhm_mm,
            "physics": "local electron deposition, E_e = 0.147923 MeV, rho = 1 g/mL (phantom_anatomy)",
            "dose_response": {"A": p.dose_response[0], "s_gy": p.dose_response[1]},
            "tumours": tumours, "spec": {k: v for k, v in asdict(p).items() if k in ("seed", "scan_hours")}}
