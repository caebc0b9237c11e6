"""Volumetry: volumes from segmentations written by external writers, and Δv / response on crafted series.

Segmentations are written here by SimpleITK (label maps, and .seg.nrrd files with Slicer's header
keys) and, where slicer-core is installed, by 3D Slicer's own segmentation storage node. The
truth is the voxel count placed in the array times the voxel volume from the spacing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta

import numpy as np
import pytest
import SimpleITK as sitk

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.response.volumetry import (
    RECIST_VOLUME_EQUIVALENT,
    VolumeSeries,
    read_segmentation,
    response_metrics,
    segment_names,
    segmentation_from_labelmap,
    volumes_over_time,
)

SPACING = (0.8, 1.1, 2.5)   # mm: voxel volume 2.2 mm³ = 0.0022 mL
VOXEL_ML = 0.8 * 1.1 * 2.5 / 1000.0


def _geometry(img: sitk.Image, spacing=SPACING) -> sitk.Image:
    img.SetSpacing(spacing)
    img.SetOrigin((-12.0, 30.5, 7.25))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))   # rotated: volume must not depend on it
    return img


def _label_array(shape=(20, 30, 40)):
    """Three tumours with known voxel counts (label 1: 6·7·8, label 2: 3·4·5, label 5: 1)."""
    a = np.zeros(shape, np.uint16)
    a[2:8, 3:10, 4:12] = 1
    a[10:13, 15:19, 20:25] = 2
    a[18, 28, 38] = 5
    return a, {"T1": 336, "T2": 60, "T5": 1}


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz", ".mha"])
def test_label_map_volumes_match_voxel_counts(tmp_path, ext):
    arr, counts = _label_array()
    path = tmp_path / f"labels{ext}"
    sitk.WriteImage(_geometry(sitk.GetImageFromArray(arr)), str(path))
    seg = read_segmentation(path, {1: "T1", 2: "T2", 5: "T5"})
    assert seg.voxel_counts() == counts
    for name, n in counts.items():
        assert seg.volumes_ml()[name] == pytest.approx(n * VOXEL_ML, rel=1e-5)   # NIfTI stores float32 spacing
    assert seg.mask("T2").sum() == 60
    default_names = read_segmentation(path)
    assert set(default_names.names) == {"1", "2", "5"}
    assert segment_names(path) is None  # a label image's names are its values: not in the header


def test_label_image_float_labels_and_errors(tmp_path):
    arr, _ = _label_array()
    path = tmp_path / "float.nrrd"
    sitk.WriteImage(_geometry(sitk.GetImageFromArray(arr.astype(np.float32))), str(path))
    assert read_segmentation(path, {1: "T1"}).voxel_counts() == {"T1": 336}
    bad = tmp_path / "frac.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.float32) * 0.5), str(bad))
    with pytest.raises(InputError, match="whole numbers"):
        read_segmentation(bad)
    with pytest.raises(InputError, match="not found"):
        read_segmentation(tmp_path / "missing.seg.nrrd")
    with pytest.raises(InputError, match="background"):
        segmentation_from_labelmap(sitk.GetImageFromArray(arr), {0: "T0"})
    with pytest.raises(InputError, match="two segments are named"):
        segmentation_from_labelmap(sitk.GetImageFromArray(arr), {1: "T1", 2: "T1"})


def _write_seg_nrrd(path, image: sitk.Image, segments):
    for i, (name, layer, value) in enumerate(segments):
        image.SetMetaData(f"Segment{i}_Name", name)
        image.SetMetaData(f"Segment{i}_ID", f"Segment_{i}")
        if layer is not None:
            image.SetMetaData(f"Segment{i}_Layer", str(layer))
        if value is not None:
            image.SetMetaData(f"Segment{i}_LabelValue", str(value))
        image.SetMetaData(f"Segment{i}_Extent", "0 1 0 1 0 1")
    sitk.WriteImage(image, str(path), True)


def test_seg_nrrd_single_layer(tmp_path):
    arr, counts = _label_array()
    path = tmp_path / "tumours.seg.nrrd"
    _write_seg_nrrd(path, _geometry(sitk.GetImageFromArray(arr.astype(np.uint8))),
                    [("liver lesion", 0, 1), ("node", 0, 2), ("tiny", 0, 5), ("gone", 0, 7)])
    seg = read_segmentation(path)
    assert seg.names == ("liver lesion", "node", "tiny", "gone")
    assert segment_names(path) == seg.names  # from the header alone
    assert seg.voxel_counts() == {"liver lesion": 336, "node": 60, "tiny": 1, "gone": 0}
    assert seg.volumes_ml()["liver lesion"] == pytest.approx(336 * VOXEL_ML, rel=1e-12)


def test_seg_nrrd_multi_layer_overlapping(tmp_path):
    """Two overlapping segments on two layers (a vector image, as Slicer stores them), third shares layer 0."""
    shape = (10, 12, 14)
    layer0 = np.zeros(shape, np.uint8)
    layer1 = np.zeros(shape, np.uint8)
    layer0[1:5, 2:6, 3:9] = 1          # 4·4·6 = 96
    layer1[3:7, 4:9, 5:10] = 1         # 4·5·5 = 100, overlaps layer 0
    layer0[8, 10, 12] = 2              # 1
    img = _geometry(sitk.GetImageFromArray(np.stack([layer0, layer1], axis=-1), isVector=True))
    path = tmp_path / "overlap.seg.nrrd"
    _write_seg_nrrd(path, img, [("A", 0, 1), ("B", 1, 1), ("C", 0, 2)])
    seg = read_segmentation(path)
    assert seg.n_layers == 2
    assert seg.voxel_counts() == {"A": 96, "B": 100, "C": 1}
    assert np.logical_and(seg.mask("A"), seg.mask("B")).sum() == 2 * 2 * 4   # the overlap survives
    # legacy files (Slicer < 4.11): no Layer / LabelValue keys, one segment per layer with value 1
    legacy = tmp_path / "legacy.seg.nrrd"
    img2 = _geometry(sitk.GetImageFromArray(np.stack([layer0 == 1, layer1], axis=-1).astype(np.uint8),
                                            isVector=True))
    _write_seg_nrrd(legacy, img2, [("A", None, None), ("B", None, None)])
    assert read_segmentation(legacy).voxel_counts() == {"A": 96, "B": 100}
    # a legacy file with one segment is a plain 3-D 0/1 image
    single = tmp_path / "legacy_single.seg.nrrd"
    _write_seg_nrrd(single, _geometry(sitk.GetImageFromArray(layer1)), [("B", None, None)])
    assert read_segmentation(single).voxel_counts() == {"B": 100}
    # several segments in one layer without label values are ambiguous: an error naming the key
    ambiguous = tmp_path / "ambiguous.seg.nrrd"
    _write_seg_nrrd(ambiguous, _geometry(sitk.GetImageFromArray(layer0)), [("A", None, None), ("C", None, None)])
    with pytest.raises(InputError, match="segment 'A' has no Segment0_LabelValue"):
        read_segmentation(ambiguous)


def test_seg_nrrd_four_dimensional_scalar(tmp_path):
    """A 4-D scalar NRRD with the layers on the fourth axis."""
    shape = (6, 7, 8)
    l0, l1 = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    l0[0:2, 0:3, 0:4] = 3              # 24
    l1[1:4, 1:4, 1:4] = 1              # 27
    layers = [_geometry(sitk.GetImageFromArray(x), (2.0, 2.0, 3.0)) for x in (l0, l1)]
    img4 = sitk.JoinSeries(layers)
    path = tmp_path / "four_d.seg.nrrd"
    _write_seg_nrrd(path, img4, [("X", 0, 3), ("Y", 1, 1)])
    seg = read_segmentation(path)
    assert seg.voxel_counts() == {"X": 24, "Y": 27}
    assert seg.volumes_ml()["Y"] == pytest.approx(27 * 12.0 / 1000.0, rel=1e-12)


def test_seg_nrrd_errors(tmp_path):
    arr, _ = _label_array()
    path = tmp_path / "bad_layer.seg.nrrd"
    _write_seg_nrrd(path, sitk.GetImageFromArray(arr.astype(np.uint8)), [("A", 3, 1)])
    with pytest.raises(InputError, match="layer 3"):
        read_segmentation(path)
    nokeys = tmp_path / "plain.seg.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(nokeys))
    with pytest.raises(InputError, match="Segment<N>_Name"):
        read_segmentation(nokeys)
    dup = tmp_path / "dup.seg.nrrd"
    _write_seg_nrrd(dup, sitk.GetImageFromArray(arr.astype(np.uint8)), [("A", 0, 1), ("A", 0, 2)])
    with pytest.raises(InputError, match="two segments are named 'A'"):
        read_segmentation(dup)


_SLICER_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import slicer, slicer.util
    scene = slicer.vtkMRMLScene()
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic(); seg_logic.SetMRMLScene(scene)
    vol = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    slicer.util.updateVolumeFromArray(vol, np.zeros((10, 20, 30), np.int16))
    vol.SetSpacing(1.5, 2.0, 3.0); vol.SetOrigin(-10, 5, 7)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumours")
    node.SetReferenceImageGeometryParameterFromVolumeNode(vol)
    def add(mask, name):
        tmp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tmp")
        tmp.CopyOrientation(vol)
        slicer.util.updateVolumeFromArray(tmp, mask.astype(np.uint8))
        img = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(tmp)
        sid = node.GetSegmentation().AddEmptySegment("", name, (1, 0, 0))
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            img, node, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        scene.RemoveNode(tmp)
    m1 = np.zeros((10, 20, 30), np.uint8); m1[2:6, 3:9, 4:14] = 1
    m2 = np.zeros((10, 20, 30), np.uint8); m2[4:8, 5:12, 10:20] = 1
    m3 = np.zeros((10, 20, 30), np.uint8); m3[8:9, 15:18, 25:28] = 1
    add(m1, "T1"); add(m2, "T2"); add(m3, "T3")
    node.GetSegmentation().AddEmptySegment("", "Gone", (0, 1, 0))
    sn = node.CreateDefaultStorageNode(); scene.AddNode(sn); node.SetAndObserveStorageNodeID(sn.GetID())
    sn.SetFileName(sys.argv[1])
    sys.exit(0 if sn.WriteData(node) else 1)
""")


def test_seg_nrrd_written_by_slicer(tmp_path):
    """3D Slicer's own writer (slicer-core): overlapping T1/T2 go to two layers, an empty segment stays."""
    if importlib.util.find_spec("slicer") is None:
        if os.environ.get("LUDR_REQUIRE_SLICER_CORE") or os.environ.get("CI"):
            pytest.fail("slicer-core is required (LUDR_REQUIRE_SLICER_CORE/CI) but not installed")
        pytest.skip("slicer-core not installed")
    script = tmp_path / "write_seg.py"
    script.write_text(_SLICER_WRITER)
    out = tmp_path / "Tumours.seg.nrrd"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seg = read_segmentation(out)
    assert seg.voxel_counts() == {"T1": 4 * 6 * 10, "T2": 4 * 7 * 10, "T3": 1 * 3 * 3, "Gone": 0}
    assert seg.n_layers == 2
    assert seg.volumes_ml()["T2"] == pytest.approx(280 * 1.5 * 2.0 * 3.0 / 1000.0, rel=1e-12)


# ---------------------------------------------------------------- volumes over time

def _scan(tmp_path, name, blocks, spacing):
    """A .seg.nrrd with one box per tumour; ``blocks`` maps name → box size in voxels."""
    arr = np.zeros((30, 30, 30), np.uint8)
    segs = []
    z = 0
    for i, (tumour, (a, b, c)) in enumerate(blocks.items()):
        arr[z:z + a, 0:b, 0:c] = i + 1
        z += a + 1
        segs.append((tumour, 0, i + 1))
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path = tmp_path / f"{name}.seg.nrrd"
    _write_seg_nrrd(path, img, segs)
    return path


def test_volumes_over_time_each_on_its_own_grid(tmp_path):
    base = _scan(tmp_path, "base", {"T1": (4, 5, 5), "T2": (2, 2, 2)}, (1.0, 1.0, 1.0))
    fu1 = _scan(tmp_path, "fu1", {"T2": (1, 2, 2), "T1": (2, 5, 5)}, (2.0, 1.0, 1.0))     # other order, grid
    fu2 = _scan(tmp_path, "fu2", {"T1": (1, 5, 5), "T2": (0, 0, 0)}, (0.5, 0.5, 4.0))    # T2 gone: empty
    series = volumes_over_time([(date(2019, 2, 20), base), ("2019-06-01", fu1), (datetime(2019, 9, 3), fu2)])
    assert series["T1"].volumes_cm3 == pytest.approx((0.1, 0.1, 0.025), rel=1e-12)
    assert series["T2"].volumes_cm3 == pytest.approx((0.008, 0.008, 0.0), abs=1e-15)
    assert series["T1"].dates[1] == datetime(2019, 6, 1)


def test_unmatched_tumours_are_named(tmp_path):
    base = _scan(tmp_path, "base", {"T1": (4, 5, 5), "T2": (2, 2, 2)}, (1.0, 1.0, 1.0))
    fu1 = _scan(tmp_path, "fu1", {"T1": (2, 5, 5), "T3": (1, 2, 2)}, (1.0, 1.0, 1.0))
    with pytest.raises(InputError) as exc:
        volumes_over_time([(date(2019, 2, 20), base), (date(2019, 6, 1), fu1)])
    msg = str(exc.value)
    assert "lacks 'T2'" in msg and "'T3'" in msg and "fu1.seg.nrrd" in msg
    # following only T1 ignores the others
    assert set(volumes_over_time([(date(2019, 2, 20), base), (date(2019, 6, 1), fu1)], tumours=["T1"])) == {"T1"}


# ---------------------------------------------------------------- Δv and response on crafted series

def _series(vols, start=date(2019, 1, 10), step_days=91):
    first = datetime(start.year, start.month, start.day)
    dates = [first + timedelta(days=i * step_days) for i in range(len(vols))]
    return VolumeSeries("T", tuple(dates), tuple(vols))


def test_vmax_at_baseline():
    s = _series([20.0, 15.0, 8.0, 6.0, 7.0])
    r = response_metrics(s)
    assert (r.vmax_cm3, r.vmin_cm3) == (20.0, 6.0)
    assert r.dv == pytest.approx(0.7, rel=1e-15) and r.responder
    assert r.vmin_date == s.dates[3] and r.t_vmin_days == 3 * 91
    assert r.baseline_volume_cm3 == 20.0


def test_vmax_after_baseline():
    """v_max at the first follow-up (the paper: 'in some cases'), v_min after it."""
    s = _series([10.0, 12.0, 6.0, 3.6, 5.0])
    r = response_metrics(s)
    assert r.vmax_cm3 == 12.0 and r.vmax_date == s.dates[1] and r.t_vmax_days == 91
    assert r.vmin_cm3 == 3.6 and r.dv == pytest.approx(0.7, rel=1e-12)
    assert r.baseline_volume_cm3 == 10.0


def test_vmin_is_taken_at_or_after_vmax():
    """A smaller volume before the maximum is growth, not response."""
    r = response_metrics(_series([5.0, 10.0, 8.0]))
    assert r.vmin_cm3 == 8.0 and r.dv == pytest.approx(0.2, rel=1e-15) and not r.responder
    grow = response_metrics(_series([5.0, 6.0, 9.0]))   # monotonic growth: v_min = v_max, Δv = 0
    assert grow.dv == 0.0 and grow.vmin_date == grow.vmax_date
    regrow = response_metrics(_series([10.0, 4.0, 12.0, 11.0]))
    assert regrow.vmax_cm3 == 12.0 and regrow.dv == pytest.approx(1 / 12, rel=1e-12)
    assert regrow.warnings and "grew" in regrow.warnings[0]


def test_responder_threshold_and_recist_equivalence():
    assert RECIST_VOLUME_EQUIVALENT == pytest.approx(0.657, abs=5e-4)   # 1 − 0.7³, spheres
    assert response_metrics(_series([50.0, 17.0])).responder           # Δv = 0.66 exactly
    assert not response_metrics(_series([50.0, 17.01])).responder
    assert response_metrics(_series([50.0, 17.01]), responder_threshold=0.6).responder


def test_best_response_before_last_cycle_flag():
    s = _series([20.0, 8.0, 6.0, 9.0])   # v_min on 2019-07-11 (day 182)
    cycles_before = [date(2019, 1, 20), date(2019, 3, 30), date(2019, 6, 10)]
    cycles_after = cycles_before + [date(2019, 8, 20)]
    assert response_metrics(s, cycle_dates=cycles_before).best_response_before_last_cycle is False
    assert response_metrics(s, cycle_dates=cycles_after).best_response_before_last_cycle is True
    assert response_metrics(s).best_response_before_last_cycle is None


def test_best_response_after_treatment_for_the_complementary_analysis():
    """Paper: when the best response came before the last cycle, the smallest volume after treatment
    is also scored. Volumes 20, 8, 6, 9 cm3; a last cycle between the 6 and 9 cm3 CTs leaves only
    the 9 cm3 CT after treatment: Δv_after = (20 − 9)/20 = 0.55, a non-responder, while Δv = 0.7."""
    s = _series([20.0, 8.0, 6.0, 9.0])
    early = response_metrics(s, cycle_dates=[date(2019, 1, 20), date(2019, 8, 20)])
    assert early.dv == pytest.approx(0.7, rel=1e-12) and early.responder
    assert early.vmin_after_treatment_cm3 == 9.0
    assert early.dv_after_treatment == pytest.approx(0.55, rel=1e-12)
    # all cycles before the v_min CT: the best response after treatment is the best response
    late = response_metrics(s, cycle_dates=[date(2019, 1, 20), date(2019, 3, 30)])
    assert late.vmin_after_treatment_cm3 == 6.0 and late.dv_after_treatment == pytest.approx(0.7, rel=1e-12)
    # no CT after the last administration, or no cycle dates: not scored
    assert response_metrics(s, cycle_dates=[date(2020, 1, 1)]).dv_after_treatment is None
    assert response_metrics(s).dv_after_treatment is None


def test_exclusion_and_grouping_flags():
    assert response_metrics(_series([3.99, 1.0])).below_min_baseline_volume
    assert not response_metrics(_series([4.0, 1.0])).below_min_baseline_volume
    assert response_metrics(_series([30.0, 1.0])).baseline_volume_group == "small"
    assert response_metrics(_series([30.01, 1.0])).baseline_volume_group == "large"


def test_response_bad_input():
    with pytest.raises(InputError, match="0 in every follow-up"):
        response_metrics(_series([0.0, 0.0]))
    with pytest.raises(InputError, match="strictly increasing"):
        VolumeSeries("T", (date(2019, 5, 1), date(2019, 2, 1)), (1.0, 2.0))
    with pytest.raises(InputError, match="finite and >= 0"):
        VolumeSeries("T", (date(2019, 1, 1), date(2019, 2, 1)), (1.0, -2.0))
    with pytest.raises(InputError, match="not an ISO date"):
        VolumeSeries("T", ("2019-13-01",), (1.0,))
