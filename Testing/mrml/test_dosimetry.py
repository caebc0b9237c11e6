"""The patient pipeline driven from MRML nodes, against the command line on the same phantom.

A tiny digital patient (``pipeline.phantoms.write_patient``: 2 tumours, 2 cycles of 3 SPECTs in counts as NM
DICOM, a CT series, .seg.nrrd tumours and follow-ups) is run once by the command line
(``ludoseresponse dosimetry``) and once from a scene: the SPECTs and the CT loaded by Slicer's own DICOM
volume reader (``vtkSlicerVolumesLogic.AddArchetypeScalarVolume``, GDCM, as the DICOM plugin does), their
times and activities read through a stand-in DICOM database, and the segments drawn into segmentation
nodes. References: the command line's files, the phantom's own specification (times, activities,
duration) and, for the time-activity samples, the VOI sum of the counts divided by calibration x duration.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import slicer
from phantom_scene import HOURS, FakeDicomDatabase, sceneInputs

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.pipeline.study import Settings
from LuDoseResponseLib.response.volumetry import read_segmentation
from LuDoseResponseMRML.dicom import INSTANCE_UIDS_ATTRIBUTE
from LuDoseResponseMRML.dosimetry import (
    FollowUpInput,
    cycleInputFromNodes,
    runDosimetry,
    writeCohortCsvFromScene,
    writeSegmentationFile,
)
from LuDoseResponseMRML.segments import addSegmentFromMaskImage, segmentNames
from LuDoseResponseMRML.volumes import volumeNodeFromImage


def _tableFrame(tableNode) -> pd.DataFrame:
    table = tableNode.GetTable()
    columns = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        columns[array.GetName()] = [array.GetValue(r) for r in range(table.GetNumberOfRows())]
    return pd.DataFrame(columns)


def _assertSameTable(node, csvPath: Path):
    expected = pd.read_csv(csvPath, keep_default_na=False)
    got = _tableFrame(node)
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        want = expected[column].tolist()
        have = got[column].tolist()
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(np.array(have, dtype=float), np.array(want, dtype=float), rtol=1e-9,
                                       atol=1e-12, equal_nan=True, err_msg=column)
        else:
            assert [str(v) for v in have] == [str(v) for v in want], column


@pytest.fixture(scope="module")
def mrmlRun(phantoms, module_scene):
    """P07 run from a scene (module scope: the scene is shared by the checks)."""
    p, manifest, cli = phantoms["P07"]
    cycles, followUps, keep = sceneInputs(module_scene, p, manifest)
    nodes = runDosimetry(module_scene, "P07", cycles, followUps, settings=Settings(pvc="none", psf_fwhm_mm=11.0),
                         grade=p.grade)
    yield module_scene, p, cli, cycles, nodes, keep.prefilled


def test_dicom_prefill_matches_the_phantom(mrmlRun):
    """Times, duration, units and administration come from the NM headers' nested sequences."""
    _, p, _, cycles, _, prefilledActivity = mrmlRun
    for k, cycle in enumerate(cycles):
        assert cycle.administeredAt == p.cycle_dates[k]
        # RadionuclideTotalDose holds the activity in Bq with 10 significant digits
        assert prefilledActivity[k] == pytest.approx(p.activities_mbq[k], rel=1e-9)
        for spect, hours in zip(cycle.spect, HOURS, strict=True):
            assert spect.acquiredAt == p.cycle_dates[k] + timedelta(hours=hours)
            assert spect.units == "counts"
            assert spect.durationS == pytest.approx(p.duration_s, rel=1e-3)  # 60 views x rounded ms


def test_tables_equal_the_command_line(mrmlRun):
    _, _, cli, _, nodes, _ = mrmlRun
    _assertSameTable(nodes.tumoursTable, cli / "tumours.csv")
    _assertSameTable(nodes.cyclesTable, cli / "tumour_cycles.csv")
    assert nodes.tumoursTable.GetColumnUnitLabel("dose_gy") == "Gy"
    # the run's warnings name nodes, not the temporary hand-over files, and say nothing about those files
    assert nodes.warnings and not any("LuDoseResponse_" in w or "not DICOM" in w for w in nodes.warnings)


def test_dose_maps_equal_the_command_line(mrmlRun):
    _, _, cli, _, nodes, _ = mrmlRun
    assert sorted(nodes.doseVolumes) == [1, 2]
    from LuDoseResponseMRML.volumes import imageFromVolumeNode

    for cycle, node in nodes.doseVolumes.items():
        expected = sitk.ReadImage(str(cli / f"dose_cycle{cycle}.nrrd"))
        got = imageFromVolumeNode(node)
        np.testing.assert_allclose(got.GetOrigin(), expected.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(got.GetSpacing(), expected.GetSpacing(), atol=1e-9)
        want = sitk.GetArrayFromImage(expected)
        np.testing.assert_allclose(sitk.GetArrayFromImage(got), want, rtol=0, atol=1e-9 * want.max())
        display = node.GetDisplayNode()
        assert display.GetWindowLevelMin() == 0.0 and display.GetWindowLevelMax() == pytest.approx(want.max())
        assert node.GetVoxelValueUnits().GetCodeValue() == "Gy"
        assert slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(node) is not None


def test_dose_rate_volumes_hold_the_integrated_dose_rates(mrmlRun):
    """One Gy/h volume per cycle and scan; its tumour means are the samples the CLI run integrated
    (time_points.csv, PVC off), so the panel shows what the doses were computed from."""
    from LuDoseResponseMRML.segments import segmentMaskImage

    _, _, cli, cycles, nodes, _ = mrmlRun
    assert sorted(nodes.doseRateVolumes) == [(k, h) for k in (1, 2) for h in HOURS]
    samples = pd.read_csv(cli / "time_points.csv")
    for (k, hours), node in nodes.doseRateVolumes.items():
        assert node.GetVoxelValueUnits().GetCodeValue() == "Gy/h"
        rate = slicer.util.arrayFromVolume(node)
        seg = cycles[k - 1].segmentationNode
        for name in segmentNames(seg):
            mask = sitk.GetArrayFromImage(segmentMaskImage(seg, name, node)) > 0
            row = samples[(samples["tumor"] == f"P07.{name}") & (samples["cycle"] == k)
                          & np.isclose(samples["time_h"], hours)]
            assert len(row) == 1
            assert rate[mask].mean() == pytest.approx(row["dose_rate_gy_per_h"].iloc[0], rel=1e-6)


def test_time_activity_is_the_voi_sum_of_counts(mrmlRun):
    """Counts = C V 1e-6 S t in the phantom, so the VOI activity (MBq) is the counts' sum / (S t)."""
    scene, p, _, cycles, nodes, _ = mrmlRun
    chart = nodes.timeActivityChart
    assert chart.GetNumberOfPlotSeriesNodes() == 2 * len(p.tumours)
    for k, cycle in enumerate(cycles, start=1):
        table = nodes.timeActivityTables[k]
        assert table.GetColumnUnitLabel("P07.T1") == "MBq"
        times = [table.GetTable().GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())]
        assert times == pytest.approx(list(HOURS), abs=1e-9)
        seg = cycle.segmentationNode
        for name in segmentNames(seg):
            from LuDoseResponseMRML.segments import segmentMaskImage

            mask = sitk.GetArrayFromImage(segmentMaskImage(seg, name)) > 0
            column = table.GetTable().GetColumnByName(f"P07.{name}")
            for r, spect in enumerate(cycle.spect):
                counts = slicer.util.arrayFromVolume(spect.volumeNode)
                expected = counts[mask].sum() / (p.calibration_cps_per_mbq * spect.durationS)
                assert column.GetValue(r) == pytest.approx(expected, rel=1e-9)


def test_outputs_survive_save_and_reload(mrmlRun, scene_factory, tmp_path, phantoms):
    scene, _, cli, _, nodes, _ = mrmlRun
    bundle = tmp_path / "dosimetry.mrb"
    assert scene.WriteToMRB(str(bundle))
    loaded = scene_factory()
    assert loaded.ReadFromMRB(str(bundle))
    dose = loaded.GetFirstNodeByName(nodes.doseVolumes[1].GetName())
    want = sitk.GetArrayFromImage(sitk.ReadImage(str(cli / "dose_cycle1.nrrd")))
    np.testing.assert_allclose(slicer.util.arrayFromVolume(dose), want, rtol=0, atol=1e-9 * want.max())
    assert dose.GetVoxelValueUnits().GetCodeValue() == "Gy"
    assert loaded.GetFirstNodeByName(nodes.timeActivityChart.GetName()).GetNumberOfPlotSeriesNodes() == 4
    table = loaded.GetFirstNodeByName(nodes.tumoursTable.GetName())
    assert table.GetNumberOfRows() == 2
    cohort = tmp_path / "cohort.csv"
    writeCohortCsvFromScene(loaded, cohort)
    assert cohort.read_text() == (cli / "tumours.csv").read_text()   # full precision after the reload


def test_rerun_updates_in_place_and_output_folder(mrmlRun, phantoms, tmp_path):
    scene, p, cli, cycles, nodes, _ = mrmlRun
    tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    again = runDosimetry(scene, "P07", cycles, _followUpsOf(scene, p, phantoms),
                         settings=Settings(pvc="none"), grade=p.grade, outputDir=tmp_path / "out")
    assert again.tumoursTable is nodes.tumoursTable and again.doseVolumes[1] is nodes.doseVolumes[1]
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes
    assert (tmp_path / "out" / "tumours.csv").read_text() == (cli / "tumours.csv").read_text()
    assert sorted(Path(f).name for f in again.outputFiles.values()) == [
        "dose_cycle1.nrrd", "dose_cycle2.nrrd",
        *sorted(f"dose_rate_cycle{k}_{h:.1f}h.nrrd" for k in (1, 2) for h in HOURS),
        "report.html", "run.json", "time_points.csv", "tumour_cycles.csv", "tumours.csv"]


def _followUpsOf(scene, p, phantoms):
    return [FollowUpInput(day, scene.GetFirstNodeByName(f"follow-up {i}")) for i, day in enumerate(p.followup_dates)]


def test_bad_inputs_name_the_nodes(mrmlRun, phantoms):
    scene, p, _, cycles, _, _ = mrmlRun
    followUps = _followUpsOf(scene, p, phantoms)
    early = cycles[0].spect[1]
    saved = early.acquiredAt
    early.acquiredAt = cycles[0].administeredAt - timedelta(hours=2)
    try:
        with pytest.raises(InputError, match=r"before the administration(.|\n)*SPECT 'SPECT c1 96h'"):
            runDosimetry(scene, "P07", cycles, followUps, settings=Settings(pvc="none"))
    finally:
        early.acquiredAt = saved
    with pytest.raises(InputError, match="patient ID is empty"):
        runDosimetry(scene, " ", cycles, followUps)
    with pytest.raises(InputError, match="no followups|followups"):
        runDosimetry(scene, "P07", cycles, [])


def test_overlapping_segments_keep_their_voxels(scene, tmp_path):
    """Two overlapping spheres and a third apart: written as layers, each read back with all its voxels."""
    reference = sitk.Image(20, 18, 16, sitk.sitkUInt8)
    reference.SetSpacing((1.5, 2.0, 2.5))
    reference.SetOrigin((-10.0, 4.0, 30.0))
    reference.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    kk, jj, ii = np.meshgrid(*[np.arange(s) for s in reference.GetSize()[::-1]], indexing="ij")
    truth = {"A": (ii - 6) ** 2 + (jj - 8) ** 2 + (kk - 8) ** 2 <= 16,
             "B": (ii - 9) ** 2 + (jj - 8) ** 2 + (kk - 8) ** 2 <= 16,
             "C": (ii - 16) ** 2 + (jj - 3) ** 2 + (kk - 3) ** 2 <= 4}
    assert (truth["A"] & truth["B"]).any()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "overlap")
    for name, mask in truth.items():
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.CopyInformation(reference)
        addSegmentFromMaskImage(node, image, name)
    path = writeSegmentationFile(node, tmp_path / "overlap.seg.nrrd")
    seg = read_segmentation(path)
    assert list(seg.names) == ["A", "B", "C"]
    for name, mask in truth.items():
        info = seg.segment(name)
        layer = sitk.VectorIndexSelectionCast(seg.image, info.layer) if seg.image.GetNumberOfComponentsPerPixel() > 1 \
            else seg.image
        np.testing.assert_array_equal(sitk.GetArrayFromImage(layer) == info.label_value, mask, err_msg=name)
        np.testing.assert_allclose(layer.GetOrigin(), reference.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(layer.GetDirection(), reference.GetDirection(), atol=1e-12)
    # Slicer's own reader opens the file with the names and the voxels of every segment
    reread = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reread")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(reread)
    assert segmentNames(reread) == ["A", "B", "C"]
    grid = volumeNodeFromImage(scene, reference, "grid")
    for name, mask in truth.items():
        from LuDoseResponseMRML.segments import segmentMaskImage

        exported = segmentMaskImage(reread, name, grid)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(exported) > 0, mask, err_msg=name)


def test_nodes_without_dicom_are_left_to_the_user(scene):
    image = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    node = volumeNodeFromImage(scene, image, "from NRRD")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "s")
    cycle = cycleInputFromNodes(1, [node], seg, dicomDatabase=FakeDicomDatabase())
    assert cycle.administeredAt is None and cycle.activityMBq is None
    assert cycle.spect[0].acquiredAt is None and cycle.spect[0].units is None
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, "1.2.3.4")
    with pytest.raises(InputError, match="no file for instance"):
        cycleInputFromNodes(1, [node], seg, dicomDatabase=FakeDicomDatabase())


def test_csv_columns_keep_their_text():
    """IDs that look like numbers stay text; numbers are typed only when they print back identically."""
    from LuDoseResponseMRML.dosimetry import columnsFromCsvText

    text = "patient,tumor,dose_gy,n,flag\n007,007.T1,4.339625763126238,2,True\n8,8.T1,,3,False\n"
    columns = {c.name: c for c in columnsFromCsvText(text)}
    assert columns["patient"].values == ["007", "8"]
    assert columns["dose_gy"].values == [4.339625763126238, None] and columns["dose_gy"].unit == "Gy"
    assert columns["n"].values == [2, 3]
    assert columns["flag"].values == ["True", "False"]
    assert list(csv.reader(io.StringIO(text)))[0] == list(columns)


def test_cohort_from_the_scene_joins_the_patients(mrmlRun, phantoms, tmp_path):
    """A second patient run in the same scene (kept last: it adds to the module's scene): the cohort CSV is
    the command line's two tumours.csv, stacked."""
    scene = mrmlRun[0]
    p, manifest, _ = phantoms["P08"]
    cycles, followUps, keep = sceneInputs(scene, p, manifest)
    runDosimetry(scene, "P08", cycles, followUps, settings=Settings(pvc="none"), grade=p.grade)
    cohort = writeCohortCsvFromScene(scene, tmp_path / "cohort.csv")
    expected = pd.concat([pd.read_csv(phantoms[pt][2] / "tumours.csv") for pt in ("P07", "P08")], ignore_index=True)
    pd.testing.assert_frame_equal(pd.read_csv(cohort), expected)
    from LuDoseResponseLib.response.cohort import load_cohort_csv

    assert load_cohort_csv(cohort).n_rows == 4
    del keep


def test_phantom_segmentations_open_in_slicer_with_their_names(scene, tmp_path):
    """The phantom writer and the hand-over share one .seg.nrrd writer; Slicer's reader keeps the names."""
    from LuDoseResponseLib.pipeline.phantoms import write_seg_nrrd

    kk, jj, ii = np.mgrid[:12, :14, :16]
    masks = [(ii - 4) ** 2 + (jj - 7) ** 2 + (kk - 6) ** 2 <= 9, (ii - 11) ** 2 + (jj - 7) ** 2 + (kk - 6) ** 2 <= 9]
    path = write_seg_nrrd(masks, ["T1", "Kidney_L"], 4.0, (-30.0, 10.0, 5.0), tmp_path / "p.seg.nrrd")
    reread = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "phantom")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(reread)
    assert segmentNames(reread) == ["T1", "Kidney_L"]
