"""One patient's dosimetry from MRML nodes, by the library's patient pipeline (the command line's path).

The nodes (SPECT volumes with their acquisition times, CT, tumour segmentations, follow-up
segmentations) are written to a temporary study folder as NRRD files, ``.seg.nrrd`` files and a
``manifest.toml`` (``contracts/study-manifest.md``); then ``LuDoseResponseLib.pipeline.patient.run_patient``
runs on that manifest exactly as ``ludoseresponse dosimetry`` would, so the panel and the command line
give the same numbers from the same voxels. The outputs come back into the scene:

- per cycle, the absorbed-dose map (Gy) as a volume node shown as dose (``display.showAsDose``);
- ``tumours.csv`` and ``tumour_cycles.csv`` as table nodes, and ``tumours.csv`` as a text node too (a saved
  scene keeps table cells to 6 significant digits, the text in full: the cohort is built from the text);
- the tumours' time–activity samples (``LuDoseResponseLib.pipeline.time_activity``) as one table per cycle
  and a chart with one series per tumour and cycle;
- ``run.json`` (settings, inputs, overrides, warnings) as a text node.

Segments are exported one at a time on the segmentation's own grid (the voxels as drawn, overlaps kept:
overlapping segments go to separate layers of the ``.seg.nrrd``); the pipeline maps them onto the SPECT
grid as it does for files. Re-running updates the nodes of the same patient in place.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import SimpleITK as sitk
import slicer

from LuDoseResponseLib.errors import InputError, ManifestError
from LuDoseResponseLib.files import atomic_path, write_text_atomic
from LuDoseResponseLib.io.seg_nrrd_write import write_slicer_segmentation
from LuDoseResponseLib.pipeline.patient import dose_rate_map_name, run_patient
from LuDoseResponseLib.pipeline.study import UNITS, Settings, Study, load_manifest
from LuDoseResponseLib.pipeline.time_activity import ActivitySample, read_activity_samples
from LuDoseResponseMRML.cohort import unitOfColumn
from LuDoseResponseMRML.dicom import dicomMetadataForNode, hasDicomSource, voxelValueProblem
from LuDoseResponseMRML.display import showAsDose
from LuDoseResponseMRML.segments import segmentMaskImage, segmentNames
from LuDoseResponseMRML.tables import ROLE_ATTRIBUTE, Column, fillTableNode, findNodeByRole, findOrCreateNode
from LuDoseResponseMRML.volumes import imageFromVolumeNode, updateVolumeNodeFromImage

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
PATIENT_ATTRIBUTE = "LuDoseResponse.Patient"
TIME_COLUMN = "Time [h]"
_TUMOURS_ROLE = "Table.patient.{patient}.tumours"
_CYCLES_ROLE = "Table.patient.{patient}.cycles"


# ------------------------------------------------------------------------------------------- inputs


@dataclass
class SpectInput:
    """One quantitative SPECT of a cycle: the volume node, when it was acquired and what its voxels are.

    ``units``: ``counts`` (then ``durationS`` and the cycle's calibration are needed) or ``bq_per_ml``.
    """

    volumeNode: object
    acquiredAt: datetime | None = None
    units: str | None = None
    durationS: float | None = None


@dataclass
class CycleInput:
    """One treatment cycle: administration, calibration, SPECTs, CT (optional) and the tumour segmentation."""

    number: int
    spect: list[SpectInput]
    segmentationNode: object
    administeredAt: datetime | None = None
    activityMBq: float | None = None
    calibrationCpsPerMbq: float | None = None
    ctVolumeNode: object = None


@dataclass
class FollowUpInput:
    """A follow-up CT segmentation and its date; the first follow-up is the baseline."""

    date: date
    segmentationNode: object


@dataclass
class DosimetryNodes:
    """What a dosimetry run put in the scene (``study``: the validated pipeline Study it ran on)."""

    study: Study                 # its files were temporary: use the nodes, or run with an output folder
    tumoursTable: object
    cyclesTable: object
    doseVolumes: dict = field(default_factory=dict)            # cycle number -> volume node (Gy)
    doseRateVolumes: dict = field(default_factory=dict)        # (cycle, hours) -> volume node (Gy/h)
    timeActivityTables: dict = field(default_factory=dict)     # cycle number -> table node
    timeActivityChart: object = None
    runTextNode: object = None
    samples: tuple[ActivitySample, ...] = ()
    outputFiles: dict = field(default_factory=dict)            # name -> path (only with an output folder)
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ DICOM prefill


def spectInputFromNode(volumeNode, dicomDatabase=None) -> SpectInput:
    """A SpectInput with the acquisition time, duration and units read from the node's DICOM (each left
    None when the node was not loaded from DICOM or the header lacks it)."""
    spect = SpectInput(volumeNode)
    if dicomDatabase is None or not hasDicomSource(volumeNode):
        return spect
    problem = voxelValueProblem(volumeNode, dicomDatabase)
    if problem is not None:
        raise InputError(problem)
    meta = dicomMetadataForNode(volumeNode, dicomDatabase)
    spect.acquiredAt, spect.durationS = meta.acquired_at, meta.duration_s
    spect.units = meta.units if meta.units in UNITS else None
    return spect


def administrationFromNodes(spectNodes: Sequence, dicomDatabase) -> tuple[datetime | None, float | None]:
    """The administration time and activity (MBq) the SPECTs' DICOM agree on, (None, None) without DICOM.

    InputError naming the volumes when two headers disagree (by more than 60 s or 0.5 %, as the manifest).
    """
    found = []
    for node in spectNodes:
        if dicomDatabase is not None and hasDicomSource(node):
            meta = dicomMetadataForNode(node, dicomDatabase)
            found.append((node.GetName(), meta.administered_at, meta.activity_mbq))
    when = [(n, t) for n, t, _ in found if t is not None]
    activity = [(n, a) for n, _, a in found if a is not None]
    for (n0, t0), (n1, t1) in zip(when, when[1:], strict=False):
        if abs((t1 - t0).total_seconds()) > 60:
            raise InputError(f"the DICOM of '{n0}' and '{n1}' give different injection times ({t0.isoformat()} vs "
                             f"{t1.isoformat()}); are they of one cycle? Enter the administration time by hand")
    for (n0, a0), (n1, a1) in zip(activity, activity[1:], strict=False):
        if not math.isclose(a0, a1, rel_tol=0.005):
            raise InputError(f"the DICOM of '{n0}' and '{n1}' give different administered activities ({a0:g} vs "
                             f"{a1:g} MBq); enter the activity by hand")
    return (when[0][1] if when else None), (activity[0][1] if activity else None)


def cycleInputFromNodes(number: int, spectNodes: Sequence, segmentationNode, *, ctVolumeNode=None,
                        calibrationCpsPerMbq: float | None = None, dicomDatabase=None) -> CycleInput:
    """A CycleInput prefilled from DICOM (acquisition times, durations, units, administration, activity)."""
    administeredAt, activityMBq = administrationFromNodes(spectNodes, dicomDatabase)
    return CycleInput(number=int(number), spect=[spectInputFromNode(n, dicomDatabase) for n in spectNodes],
                      segmentationNode=segmentationNode, administeredAt=administeredAt, activityMBq=activityMBq,
                      calibrationCpsPerMbq=calibrationCpsPerMbq, ctVolumeNode=ctVolumeNode)


# ------------------------------------------------------------------------- the study folder


def _toml(value) -> str:
    """A TOML value: string, number, bool or local date-time (naive)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise InputError(f"{value.isoformat()}: give local clock times without a UTC offset, as DICOM stores "
                             "them")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InputError(f"{value!r} is not a finite number")
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON escapes are valid TOML escapes


def writeSegmentationFile(segmentationNode, path: Path) -> Path:
    """Write the segmentation as a Slicer-style ``.seg.nrrd`` on its own grid, exporting one segment at a
    time. A segment goes to the first layer where it overlaps no earlier segment (else to a new layer),
    so overlapping segments keep every voxel; only the layers are held in memory."""
    names = segmentNames(segmentationNode)
    if not names:
        raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segments; draw the tumours first")
    return write_slicer_segmentation(((name, segmentMaskImage(segmentationNode, name)) for name in names), path,
                                     what=f"segmentation '{segmentationNode.GetName()}'", compress=False)


def _writeVolume(volumeNode, path: Path) -> Path:
    with atomic_path(path) as tmp:
        sitk.WriteImage(imageFromVolumeNode(volumeNode), str(tmp), useCompression=False)
    return path


def _requireNode(node, what: str):
    if node is None:
        raise InputError(f"{what} is not chosen")
    return node


def writeStudyFolder(folder, patient: str, cycles: Sequence[CycleInput], followUps: Sequence[FollowUpInput], *,
                     settings: Settings | None = None, grade: str | None = None) -> tuple[Path, dict[str, str]]:
    """Write the inputs as NRRD, .seg.nrrd and ``manifest.toml`` under ``folder``.

    :returns: the manifest path and ``{manifest key or file path: what it is in the scene}`` (for messages).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    settings = settings or Settings()
    if not str(patient).strip():
        raise InputError("the patient ID is empty; give one (it prefixes the tumour IDs in the cohort table)")
    if not cycles:
        raise InputError("no cycle is given; add at least one cycle with its SPECT volumes")
    written: dict[str, str] = {}   # node ID -> relative path, so a node shared by cycles is written once
    legend: dict[str, str] = {}

    def file_of(node, rel: str, writer) -> str:
        if node.GetID() not in written:
            writer(node, root / rel)
            written[node.GetID()] = rel
            legend[str(root / rel)] = f"'{node.GetName()}'"
        return written[node.GetID()]

    lines = [f"patient = {_toml(patient)}"]
    if grade:
        lines.append(f"grade = {_toml(grade)}")
    lines += ["", "[settings]"] + [f"{k} = {_toml(v)}" for k, v in settings.to_dict().items()] + [""]
    for i, cycle in enumerate(cycles):
        key = f"cycles[{i}]"
        legend[key] = f"cycle {cycle.number}"
        seg = _requireNode(cycle.segmentationNode, f"cycle {cycle.number}: the tumour segmentation")
        lines += ["[[cycles]]", f"number = {_toml(int(cycle.number))}"]
        for name, value in (("administered_at", cycle.administeredAt), ("activity_mbq", cycle.activityMBq),
                            ("calibration_cps_per_mbq", cycle.calibrationCpsPerMbq)):
            if value is not None:
                lines.append(f"{name} = {_toml(float(value) if name != 'administered_at' else value)}")
        if cycle.ctVolumeNode is not None:
            lines.append(f"ct = {_toml(file_of(cycle.ctVolumeNode, f'ct_{len(written)}.nrrd', _writeVolume))}")
            legend[f"{key}.ct"] = f"CT '{cycle.ctVolumeNode.GetName()}'"
        lines.append(f"tumours = {_toml(file_of(seg, f'seg_{len(written)}.seg.nrrd', writeSegmentationFile))}")
        legend[f"{key}.tumours"] = f"segmentation '{seg.GetName()}'"
        if not cycle.spect:
            raise InputError(f"cycle {cycle.number}: no SPECT volume is given")
        for j, spect in enumerate(cycle.spect):
            node = _requireNode(spect.volumeNode, f"cycle {cycle.number}: SPECT {j + 1}")
            legend[f"{key}.spect[{j}]"] = f"SPECT '{node.GetName()}'"
            lines += ["", "  [[cycles.spect]]",
                      f"  path = {_toml(file_of(node, f'spect_{len(written)}.nrrd', _writeVolume))}"]
            for name, value in (("acquired_at", spect.acquiredAt), ("units", spect.units),
                                ("duration_s", None if spect.durationS is None else float(spect.durationS))):
                if value is not None:
                    lines.append(f"  {name} = {_toml(value)}")
        lines.append("")
    for i, fu in enumerate(followUps):
        seg = _requireNode(fu.segmentationNode, f"follow-up {i + 1}: the segmentation")
        legend[f"followups[{i}]"] = f"follow-up '{seg.GetName()}'"
        lines += ["[[followups]]", f"date = {_toml(fu.date)}",
                  f"tumours = {_toml(file_of(seg, f'seg_{len(written)}.seg.nrrd', writeSegmentationFile))}", ""]
    manifest = write_text_atomic(root / "manifest.toml", "\n".join(lines))
    return manifest, legend


def _inSceneTerms(text: str, legend: dict[str, str]) -> str:
    """``text`` with the temporary files named by their nodes."""
    for path, label in sorted(((k, v) for k, v in legend.items() if k.startswith(("/", "\\")) or ":" in k[:3]),
                              key=lambda kv: -len(kv[0])):
        text = text.replace(path, label)
    return text


def _explained(exc: ManifestError, legend: dict[str, str]) -> InputError:
    """The manifest's error with its keys explained in terms of the scene."""
    text = _inSceneTerms(str(exc).split(": ", 1)[-1], legend)
    used = [f"{k} = {v}" for k, v in sorted(legend.items()) if k.startswith(("cycles[", "followups[")) and k in text]
    where = ("\n(" + "; ".join(used) + ")") if used else ""
    return InputError(f"the inputs are not valid: {text}{where}")


#: run_patient warnings that only describe the hand-over files (NRRD carries no DICOM header, hence no
#: acquisition data or frame of reference); the values are the panel's, and the SPECT/CT overlap is still checked
_HANDOVER_WARNINGS = ("not DICOM, so there is no acquisition time", "have different (or missing) frames of reference")


def _userWarnings(warnings: list[str], legend: dict[str, str]) -> tuple[str, ...]:
    return tuple(_inSceneTerms(w, legend) for w in warnings if not any(h in w for h in _HANDOVER_WARNINGS))


# ---------------------------------------------------------------------------------- outputs


def _parsedColumn(values: list[str]):
    """Typed values of a CSV column: ints, or floats (empty -> None), when every cell's text is exactly what
    the number prints as (so nothing is rounded or re-spelled, e.g. an ID '007'); else the text itself."""
    present = [v for v in values if v != ""]
    if present and len(present) == len(values):
        try:
            ints = [int(v) for v in values]
            if [str(v) for v in ints] == values:
                return ints
        except ValueError:
            pass
    try:
        floats = [None if v == "" else float(v) for v in values]
        if present and all(repr(f) == v for f, v in zip(floats, values, strict=True) if f is not None):
            return floats
    except ValueError:
        pass
    return values


def columnsFromCsvText(text: str) -> list[Column]:
    """Table columns from CSV text (header row first), with units from the column-name suffix."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise InputError("the table is empty (no header row)")
    header, body = rows[0], rows[1:]
    return [Column(name, _parsedColumn([r[i] if i < len(r) else "" for r in body]), unitOfColumn(name))
            for i, name in enumerate(header)]


def _tableFromCsv(scene, path: Path, role: str, name: str, patient: str):
    node = findOrCreateNode(scene, "vtkMRMLTableNode", role, name)
    fillTableNode(node, columnsFromCsvText(path.read_text(encoding="utf-8")))
    node.SetAttribute(PATIENT_ATTRIBUTE, patient)
    return node


def _textNode(scene, role: str, name: str, text: str, patient: str):
    """A text node saved with the scene as its own file (full precision, unlike table cells)."""
    node = findOrCreateNode(scene, "vtkMRMLTextNode", role, name)
    node.SetForceCreateStorageNode(slicer.vtkMRMLTextNode.CreateStorageNodeAlways)
    node.SetText(text)
    node.SetAttribute(PATIENT_ATTRIBUTE, patient)
    return node


def _doseVolume(scene, path: Path, patient: str, cycle: int):
    role = f"Volume.patient.{patient}.dose.cycle{cycle}"
    node = findNodeByRole(scene, "vtkMRMLScalarVolumeNode", role)
    if node is None:
        node = findOrCreateNode(scene, "vtkMRMLScalarVolumeNode", role, f"{patient} absorbed dose cycle {cycle}")
        node.CreateDefaultDisplayNodes()
    updateVolumeNodeFromImage(node, sitk.ReadImage(str(path)))
    node.SetAttribute(PATIENT_ATTRIBUTE, patient)
    showAsDose(node)
    return node


def _doseRateVolume(scene, path: Path, patient: str, cycle: int, hours: float):
    role = f"Volume.patient.{patient}.doserate.cycle{cycle}.{hours:.1f}h"
    node = findNodeByRole(scene, "vtkMRMLScalarVolumeNode", role)
    if node is None:
        node = findOrCreateNode(scene, "vtkMRMLScalarVolumeNode", role,
                                f"{patient} dose rate cycle {cycle} at {hours:g} h")
        node.CreateDefaultDisplayNodes()
    updateVolumeNodeFromImage(node, sitk.ReadImage(str(path)))
    node.SetAttribute(PATIENT_ATTRIBUTE, patient)
    showAsDose(node, quantity="Dose rate", unit="Gy/h")
    return node


def timeActivityNodes(scene, patient: str, samples: Sequence[ActivitySample], *, pvc: bool):
    """One table per cycle (time [h], then one activity column per tumour, MBq) and a chart with a series
    per tumour and cycle; the plotted activity is the partial-volume corrected one when ``pvc``."""
    chart = findOrCreateNode(scene, "vtkMRMLPlotChartNode", f"Chart.patient.{patient}.tac",
                             f"{patient} time-activity")
    chart.RemoveAllPlotSeriesNodeIDs()
    tables = {}
    for cycle in sorted({s.cycle for s in samples}):
        rows = [s for s in samples if s.cycle == cycle]
        hours = sorted({s.hours_since_administration for s in rows})
        tumours = list(dict.fromkeys(s.tumor for s in rows))
        value = {(s.tumor, s.hours_since_administration): (s.activity_pvc_mbq if pvc else s.activity_mbq)
                 for s in rows}
        table = findOrCreateNode(scene, "vtkMRMLTableNode", f"Table.patient.{patient}.tac.cycle{cycle}",
                                 f"{patient} time-activity cycle {cycle}")
        fillTableNode(table, [Column(TIME_COLUMN, hours, "h", "time since the administration")]
                      + [Column(t, [value.get((t, h)) for h in hours], "MBq",
                                "VOI activity" + (", partial-volume corrected" if pvc else "")) for t in tumours])
        table.SetAttribute(PATIENT_ATTRIBUTE, patient)
        tables[cycle] = table
        for t in tumours:
            series = findOrCreateNode(scene, "vtkMRMLPlotSeriesNode", f"Series.patient.{patient}.tac.{cycle}.{t}",
                                      f"{t} cycle {cycle}")
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName(TIME_COLUMN)
            series.SetYColumnName(t)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(f"{patient}: tumour time-activity")
    chart.SetXAxisTitle("Time since administration [h]")
    chart.SetYAxisTitle("Tumour activity [MBq]")
    chart.SetLegendVisibility(True)
    return tables, chart


def runDosimetry(scene, patient: str, cycles: Sequence[CycleInput], followUps: Sequence[FollowUpInput], *,
                 settings: Settings | None = None, grade: str | None = None, outputDir=None,
                 progress: Progress | None = None) -> DosimetryNodes:
    """Run the patient pipeline on MRML inputs and put its results into ``scene``.

    :param patient: patient ID (tumour IDs become ``<patient>.<segment name>``).
    :param cycles: CycleInput per cycle (see ``cycleInputFromNodes`` for DICOM prefill).
    :param followUps: FollowUpInput per follow-up CT, baseline first (volumetry and response).
    :param settings: ``LuDoseResponseLib.pipeline.study.Settings`` (method, density, PVC, FWHM, integration).
    :param outputDir: if given, the command line's outputs are also published there (tumours.csv,
        tumour_cycles.csv, dose_cycle<N>.nrrd, the dose-rate maps, run.json, ...); it must be new, empty or an
        earlier run's.
    :returns: DosimetryNodes.
    """
    settings = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="LuDoseResponse_") as tmp:
        manifest, legend = writeStudyFolder(Path(tmp) / "study", patient, cycles, followUps, settings=settings,
                                            grade=grade)
        out = Path(outputDir) if outputDir else Path(tmp) / "out"
        try:
            study = load_manifest(manifest)
            files = run_patient(manifest, out, dose_rate_maps=True, progress=progress)
        except ManifestError as exc:
            raise _explained(exc, legend) from None
        except InputError as exc:
            raise type(exc)(_inSceneTerms(str(exc), legend)) from None
        samples = tuple(read_activity_samples(out / "time_points.csv"))
        tumours = _tableFromCsv(scene, out / "tumours.csv", _TUMOURS_ROLE.format(patient=patient),
                                f"{patient} tumours", patient)
        cyclesTable = _tableFromCsv(scene, out / "tumour_cycles.csv", _CYCLES_ROLE.format(patient=patient),
                                    f"{patient} tumour cycles", patient)
        doses = {c.number: _doseVolume(scene, out / f"dose_cycle{c.number}.nrrd", patient, c.number)
                 for c in study.cycles if (out / f"dose_cycle{c.number}.nrrd").is_file()}
        rates = {(c.number, tp.hours_since_administration): _doseRateVolume(
                     scene, out / dose_rate_map_name(c.number, tp.hours_since_administration), patient, c.number,
                     tp.hours_since_administration) for c in study.cycles for tp in c.spect}
        runText = (out / "run.json").read_text(encoding="utf-8")
        tumoursText = (out / "tumours.csv").read_text(encoding="utf-8")
    textNode = _textNode(scene, f"Text.patient.{patient}.run", f"{patient} run.json", runText, patient)
    _textNode(scene, f"Text.patient.{patient}.tumours_csv", f"{patient} tumours.csv", tumoursText, patient)
    tacTables, chart = timeActivityNodes(scene, patient, samples, pvc=settings.pvc != "none")
    warnings = _userWarnings(json.loads(runText).get("warnings", []), legend)
    log.info("dosimetry of %s: %d tumours, %d cycles, %d warnings", patient, tumours.GetNumberOfRows(),
             len(study.cycles), len(warnings))
    return DosimetryNodes(study=study, tumoursTable=tumours, cyclesTable=cyclesTable, doseVolumes=doses,
                          doseRateVolumes=rates,
                          timeActivityTables=tacTables, timeActivityChart=chart, runTextNode=textNode,
                          samples=samples, outputFiles={k: str(v) for k, v in files.items()} if outputDir else {},
                          warnings=warnings)


# ------------------------------------------------------------------------- cohort from the scene


def patientTumourTexts(scene) -> list:
    """The text nodes holding each patient's tumours.csv (from dosimetry runs), in scene order."""
    out = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLTextNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLTextNode")
        role = node.GetAttribute(ROLE_ATTRIBUTE) or ""
        if role.startswith("Text.patient.") and role.endswith(".tumours_csv"):
            out.append(node)
    return out


def writeCohortCsvFromScene(scene, csvPath) -> Path:
    """Write every patient's tumours.csv kept in the scene into one cohort CSV: the pipeline's own text
    (full precision, also after the scene was saved and loaded again), rows in scene order, columns of the
    first patient's file. InputError when there is none, the columns differ, or a tumour ID repeats."""
    texts = patientTumourTexts(scene)
    if not texts:
        raise InputError("the scene holds no patient tumour table; run the dosimetry of at least one patient first, "
                         "or load a cohort CSV")
    header: list[str] | None = None
    lines: list[str] = []
    ids: list[str] = []
    for node in texts:
        rows = list(csv.reader(io.StringIO(node.GetText())))
        if not rows:
            raise InputError(f"text node '{node.GetName()}' holds no table")
        if header is None:
            header = rows[0]
        elif rows[0] != header:
            raise InputError(f"'{node.GetName()}' has the columns {rows[0]}, the first patient {header}; re-run the "
                             "dosimetry of every patient with this version")
        ids += [r[header.index("tumor")] for r in rows[1:] if "tumor" in header]
        lines += node.GetText().splitlines()[1:]
    repeated = sorted({t for t in ids if ids.count(t) > 1})
    if repeated:
        raise InputError(f"tumour(s) {repeated} appear in more than one patient table; give each patient its own "
                         "patient ID")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(header)
    return write_text_atomic(Path(csvPath), buffer.getvalue() + "".join(f"{line}\n" for line in lines))
