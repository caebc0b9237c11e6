"""RTSTRUCT in (io/rtstruct.py): reading, and rasterisation against analytic shapes and an independent
point-in-polygon test (matplotlib.path), on pydicom's own RTSTRUCT test file and on generated ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from LuDoseResponseLib.errors import DicomError, GeometryError, InputError
from LuDoseResponseLib.io.rtstruct import rasterise_rtstruct, read_rtstruct

PYDICOM_RTSTRUCT = Path(pydicom.__file__).parent / "data" / "test_files" / "rtstruct.dcm"
FRAME = generate_uid()


def _grid(size, spacing, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction])
    return image


def _write_rtstruct(path: Path, rois: dict[str, list[np.ndarray]], point_rois: tuple[str, ...] = ()) -> Path:
    """A minimal RTSTRUCT with CLOSED_PLANAR contours (each an (n, 3) LPS array) per ROI name."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", generate_uid(), generate_uid()
    roi_items, contour_items = [], []
    for number, (name, contours) in enumerate(list(rois.items()) + [(n, None) for n in point_rois], start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, FRAME
        roi_items.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        seq = []
        for points in contours if contours is not None else [np.zeros((1, 3))]:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR" if contours is not None else "POINT"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6f}" for v in np.asarray(points).ravel()]
            seq.append(c)
        item.ContourSequence = DicomSequence(seq)
        contour_items.append(item)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.save_as(path, enforce_file_format=True)
    return path


def _circle(cx, cy, z, r, n=256):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(a), cy + r * np.sin(a), np.full(n, z)])


def test_pydicom_rtstruct_file(tmp_path):
    ss = read_rtstruct(PYDICOM_RTSTRUCT)
    raw = pydicom.dcmread(PYDICOM_RTSTRUCT, force=True)
    assert ss.names == tuple(r.ROIName for r in raw.StructureSetROISequence)
    assert ss.frame_of_reference_uid == raw.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    assert any("POINT" in n for n in ss.notes)                     # the isocentres hold no volume
    patient = raw.ROIContourSequence[0].ContourSequence
    assert len(ss.rois[0].contours) == len(patient)
    for ours, theirs in zip(ss.rois[0].contours, patient, strict=True):
        assert np.array_equal(ours, np.asarray([float(v) for v in theirs.ContourData]).reshape(-1, 3))
    # planes at z = -200, -190, -180 mm: a grid with those slices, 2 mm in-plane
    grid = _grid((211, 161, 3), (2.0, 2.0, 10.0), (-210.0, -160.0, -200.0))
    result = rasterise_rtstruct(ss, grid, names=["patient"])["patient"]
    # independent: shoelace area of each contour from pydicom's values × 10 mm
    areas = []
    for c in patient:
        p = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
        areas.append(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))
    assert result.contour_volume_ml == pytest.approx(sum(areas) * 10.0 / 1000.0, rel=1e-9)
    # a 400 × 300 mm rectangle on a 2 mm grid: (200 + 1) × (150 + 1) centres on or inside per plane? edges
    # on voxel centres are half-open; 200 × 150 centres per plane × 3 planes
    assert int(sitk.GetArrayViewFromImage(result.mask).sum()) == 3 * 200 * 150
    with pytest.raises(InputError, match="no closed planar contours"):
        rasterise_rtstruct(ss, grid, names=["Isocenter 1"])


def test_sphere_volume(tmp_path):
    radius, spacing = 20.0, (0.9, 0.9, 2.0)
    zs = np.arange(-radius + 1.0, radius, spacing[2])
    contours = [_circle(1.3, -0.7, z, math.sqrt(radius**2 - z**2)) for z in zs]
    ss = read_rtstruct(_write_rtstruct(tmp_path / "sphere.dcm", {"T1": contours}))
    grid = _grid((61, 61, zs.size), spacing, (-27.0, -27.0, zs[0]))
    roi = rasterise_rtstruct(ss, grid)["T1"]
    assert int(sitk.GetArrayFromImage(roi.mask).sum()) * 0.9 * 0.9 * 2.0 / 1000.0 == pytest.approx(roi.volume_ml)
    exact_ml = 4 / 3 * math.pi * radius**3 / 1000.0
    # planes every 2 mm through a 40 mm sphere: the slab (contour) estimate is within 0.5 % of the sphere,
    # and the voxel count within 1 % of the slab estimate (edge voxelisation at 0.9 mm)
    assert roi.contour_volume_ml == pytest.approx(exact_ml, rel=5e-3)
    assert roi.volume_ml == pytest.approx(roi.contour_volume_ml, rel=1e-2)


def test_torus_with_hole(tmp_path):
    big, small, spacing = 25.0, 8.0, (1.0, 1.0, 1.0)
    zs = np.arange(-small + 0.5, small, spacing[2])
    contours = []
    for z in zs:
        half = math.sqrt(small**2 - z**2)
        contours += [_circle(0.0, 0.0, z, big + half), _circle(0.0, 0.0, z, big - half)]
    ss = read_rtstruct(_write_rtstruct(tmp_path / "torus.dcm", {"ring": contours}))
    grid = _grid((81, 81, zs.size), spacing, (-40.0, -40.0, zs[0]))
    roi = rasterise_rtstruct(ss, grid)["ring"]
    mask = sitk.GetArrayViewFromImage(roi.mask)
    assert mask[:, 40, 40].sum() == 0                               # the hole stays empty (even–odd)
    exact_ml = 2 * math.pi**2 * big * small**2 / 1000.0
    assert roi.contour_volume_ml == pytest.approx(exact_ml, rel=5e-3)
    assert roi.volume_ml == pytest.approx(exact_ml, rel=1e-2)


def test_concave_contour_against_matplotlib(tmp_path):
    star = []
    for k in range(10):
        r = 30.0 if k % 2 == 0 else 11.0
        a = math.pi / 2 + k * math.pi / 5
        star.append((r * math.cos(a) + 0.37, r * math.sin(a) - 0.21, 0.0))
    star = np.asarray(star)
    ss = read_rtstruct(_write_rtstruct(tmp_path / "star.dcm", {"star": [star]}))
    grid = _grid((75, 75, 1), (0.8, 0.8, 3.0), (-30.0, -30.0, 0.0))
    mask = sitk.GetArrayFromImage(rasterise_rtstruct(ss, grid)["star"].mask)[0]
    jj, ii = np.mgrid[0:75, 0:75]
    centres = np.column_stack([-30.0 + 0.8 * ii.ravel(), -30.0 + 0.8 * jj.ravel()])
    expected = MplPath(star[:, :2]).contains_points(centres).reshape(75, 75)
    assert np.array_equal(mask.astype(bool), expected)


def test_feet_first_grid_and_flipped_axes(tmp_path):
    """The mask lands on the same physical voxels whatever the grid's direction (no centre lies exactly on
    an edge here: there the half-open scan-line rule decides, which depends on the direction)."""
    contours = [_circle(5.3, 3.2, z, 9.7) for z in (0.0, 3.0, 6.0)]
    ss = read_rtstruct(_write_rtstruct(tmp_path / "c.dcm", {"T": contours}))
    plain = _grid((31, 31, 3), (1.0, 1.0, 3.0), (-10.0, -12.0, 0.0))
    flipped = _grid((31, 31, 3), (1.0, 1.0, 3.0), (20.0, 18.0, 6.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, -1))
    a = rasterise_rtstruct(ss, plain)["T"].mask
    b = rasterise_rtstruct(ss, flipped)["T"].mask
    resampled = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(a))


def test_bad_input(tmp_path):
    ss = read_rtstruct(_write_rtstruct(tmp_path / "t.dcm", {"T": [_circle(0, 0, 0, 5.0)]}))
    grid = _grid((21, 21, 1), (1.0, 1.0, 2.0), (-10.0, -10.0, 0.0))
    with pytest.raises(InputError, match="no ROI named"):
        rasterise_rtstruct(ss, grid, names=["T9"])
    far = _grid((21, 21, 1), (1.0, 1.0, 2.0), (500.0, 500.0, 0.0))
    with pytest.raises(InputError, match="covers no voxel"):
        rasterise_rtstruct(ss, far)
    tilted = np.column_stack([_circle(0, 0, 0, 5.0)[:, :2], np.linspace(0, 4, 256)])
    ss2 = read_rtstruct(_write_rtstruct(tmp_path / "o.dcm", {"O": [tilted]}))
    with pytest.raises(GeometryError, match="not in a slice plane"):
        rasterise_rtstruct(ss2, grid)
    with pytest.raises(DicomError, match="not an RT Structure Set"):
        read_rtstruct(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(DicomError, match="junk.dcm"):
        read_rtstruct(tmp_path / "junk.dcm")
    dup = _write_rtstruct(tmp_path / "d.dcm", {"T": [_circle(0, 0, 0, 5.0)]})
    ds = pydicom.dcmread(dup)
    ds.StructureSetROISequence.append(ds.StructureSetROISequence[0])
    ds.save_as(dup)
    with pytest.raises(DicomError, match="more than one ROI"):
        read_rtstruct(dup)


def test_duplicate_roi_names(tmp_path):
    path = _write_rtstruct(tmp_path / "n.dcm", {"T": [_circle(0, 0, 0, 5.0)], "U": [_circle(0, 0, 0, 3.0)]})
    ds = pydicom.dcmread(path)
    ds.StructureSetROISequence[1].ROIName = "T"
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"\['T'\] occur more than once"):
        read_rtstruct(path)
