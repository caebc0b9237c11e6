"""LuDoseResponse: Lu-177 DOTATATE tumour dosimetry and absorbed-dose-response analysis.

The module is thin: the widget reads the panel (through the parameter node) and calls the
logic; the logic passes the application scene (and DICOM database) to ``LuDoseResponseMRML``
(the MRML bridge), which calls ``LuDoseResponseLib`` (the pure-Python library) and turns its
results into nodes. The dosimetry runs the library's patient pipeline, the same code as
``ludoseresponse dosimetry``. Method: Warfvinge et al., J Nucl Med 2024;65:1070.
"""

import logging
import pathlib
import sys
from datetime import date, datetime
from typing import Annotated

import slicer
import vtk
from slicer import (
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Minimum, WithinRange, parameterNodeWrapper, parameterPack
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _addRepositoryRootIfNeeded() -> None:
    """In a built extension LuDoseResponseLib sits beside this module in qt-scripted-modules.
    When the module is loaded from a source checkout (Additional module paths), the library
    is the module folder's sibling: put the repository root on sys.path."""
    try:
        import LuDoseResponseLib  # noqa: F401
    except ImportError:
        sys.path.append(str(pathlib.Path(__file__).resolve().parents[1]))


_addRepositoryRootIfNeeded()

from LuDoseResponseLib import defaults  # noqa: E402
from LuDoseResponseLib.analysis.summary import summary_text  # noqa: E402
from LuDoseResponseLib.errors import InputError  # noqa: E402
from LuDoseResponseLib.parsing import parse_number_list  # noqa: E402
from LuDoseResponseLib.pipeline.study import SETTINGS_CHOICES, UNITS, Settings  # noqa: E402
from LuDoseResponseMRML import cohort as cohortBridge  # noqa: E402
from LuDoseResponseMRML import dosimetry as dosimetryBridge  # noqa: E402
from LuDoseResponseMRML import requirements as requirementsBridge  # noqa: E402
from LuDoseResponseMRML.tables import ROLE_ATTRIBUTE  # noqa: E402

#: top-level packages reloaded by the developer "Reload" button besides this file
RELOADED_PACKAGES = ("LuDoseResponseLib", "LuDoseResponseMRML")
_DEFAULT_SETTINGS = Settings()


#
# LuDoseResponse
#


class LuDoseResponse(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Lu-177 Dose Response")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["LuDoseResponse developers"]
        self.parent.helpText = _("""
Tumour dosimetry and absorbed-dose-response analysis for [177Lu]Lu-DOTATATE therapy.
<b>Inputs</b>: per cycle, the quantitative SPECT volumes (times, duration and units read from
DICOM and editable), the administration, the calibration factor, the CT and the tumour
segmentation. <b>Dosimetry</b>: the dose method, density and partial-volume correction and the
time-integration model; <i>Compute doses</i> runs the same pipeline as
<code>ludoseresponse dosimetry</code> and shows the dose maps (Gy), a tumour table and the
time-activity curves. <b>Response</b>: follow-up segmentations and dates (tumour volumes).
<b>Cohort</b>: collect the tumours of the patients in the scene (or load a cohort CSV), run the
paper's analyses and see the TCP curve. Everything is available from the Python console through
<code>LuDoseResponseLogic</code>.
""")
        self.parent.acknowledgementText = _("""
The analyses follow Warfvinge C.F. et al., "Relationship between absorbed dose and response in
neuroendocrine tumors treated with [177Lu]Lu-DOTATATE", J Nucl Med 2024;65:1070-1075.
""")


#
# LuDoseResponseParameterNode
#


@parameterPack
class LuDoseResponseSpect:
    """One SPECT of a cycle; empty text / 0 means unknown (then DICOM or the user must give it)."""

    volume: vtkMRMLScalarVolumeNode
    acquiredAt: str = ""
    durationS: Annotated[float, Minimum(0.0)] = 0.0
    units: Annotated[str, Choice(["", *UNITS])] = ""


@parameterPack
class LuDoseResponseCycle:
    """One treatment cycle as the panel edits it."""

    spects: list[LuDoseResponseSpect]
    administeredAt: str = ""
    activityMBq: Annotated[float, Minimum(0.0)] = 0.0
    calibrationCpsPerMbq: Annotated[float, Minimum(0.0)] = 0.0
    ct: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


@parameterPack
class LuDoseResponseFollowUp:
    """A follow-up CT segmentation and its date (YYYY-MM-DD)."""

    segmentation: vtkMRMLSegmentationNode
    date: str = ""


@parameterNodeWrapper
class LuDoseResponseParameterNode:
    """The panel's settings, saved with the scene.

    Inputs: patientId, grade, cycles (per cycle: SPECTs with times, administration, calibration,
    CT, segmentation). Dosimetry: doseMethod, densityCorrection, pvc, psfFwhmMm, integration, tail
    (the manifest's [settings]); saveDosimetryOutputs, dosimetryOutputDirectory. Response:
    followUps. Cohort: cohortCsvPath, responderThreshold, minBaselineVolumeCm3, glmmMethod,
    bootstrapReplicates, seed, dosesGy, tcpTargets, saveOutputs, outputDirectory; resultsTable and
    tcpChart are the outputs last shown.
    """

    patientId: str = ""
    grade: Annotated[str, Choice(["", *defaults.GRADES])] = ""
    cycles: list[LuDoseResponseCycle]
    doseMethod: Annotated[str, Choice(list(SETTINGS_CHOICES["dose_method"]))] = _DEFAULT_SETTINGS.dose_method
    densityCorrection: bool = _DEFAULT_SETTINGS.density_correction
    pvc: Annotated[str, Choice(list(SETTINGS_CHOICES["pvc"]))] = _DEFAULT_SETTINGS.pvc
    psfFwhmMm: Annotated[float, WithinRange(0.1, 100.0)] = _DEFAULT_SETTINGS.psf_fwhm_mm
    integration: Annotated[str, Choice(list(SETTINGS_CHOICES["integration"]))] = _DEFAULT_SETTINGS.integration
    tail: Annotated[str, Choice(list(SETTINGS_CHOICES["tail"]))] = _DEFAULT_SETTINGS.tail
    saveDosimetryOutputs: bool = False
    dosimetryOutputDirectory: pathlib.Path
    followUps: list[LuDoseResponseFollowUp]

    cohortCsvPath: pathlib.Path
    responderThreshold: Annotated[float, WithinRange(0.01, 1.0)] = defaults.RESPONDER_THRESHOLD
    minBaselineVolumeCm3: Annotated[float, Minimum(0.0)] = defaults.MIN_BASELINE_VOLUME_CM3
    glmmMethod: Annotated[str, Choice(list(defaults.GLMM_METHODS))] = defaults.GLMM_METHOD
    bootstrapReplicates: Annotated[int, WithinRange(0, 1000000)] = defaults.BOOTSTRAP_REPLICATES
    seed: Annotated[int, WithinRange(0, 2147483647)] = defaults.BOOTSTRAP_SEED
    dosesGy: str = ",".join(f"{dose:g}" for dose in defaults.REPORT_DOSES_GY)
    tcpTargets: str = ",".join(f"{p:g}" for p in defaults.TCP_TARGETS)
    saveOutputs: bool = False
    outputDirectory: pathlib.Path
    resultsTable: vtkMRMLTableNode
    tcpChart: vtkMRMLPlotChartNode


#
# LuDoseResponseWidget
#


class LuDoseResponseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: GUI glue only, all work is in LuDoseResponseLogic.

    The parameter node's scalar fields are bound with connectGui; the per-cycle inputs and the
    follow-ups are lists, for which Slicer has no GUI connector, so they are copied between the
    parameter node and the widgets here (``_showCycle`` / ``_storeCycle``).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LuDoseResponse.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LuDoseResponseLogic()
        self.ui.resultsTableSelector.addAttribute("vtkMRMLTableNode", ROLE_ATTRIBUTE)
        import qt

        self.ui.followUpDateEdit.date = qt.QDate.currentDate()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.cycleSpinBox.connect("valueChanged(int)", lambda _value: self._showCycle())
        self.ui.addCycleButton.connect("clicked(bool)", self.onAddCycle)
        self.ui.removeCycleButton.connect("clicked(bool)", self.onRemoveCycle)
        self.ui.addSpectButton.connect("clicked(bool)", self.onAddSpect)
        self.ui.removeSpectButton.connect("clicked(bool)", self.onRemoveSpects)
        self.ui.readDicomButton.connect("clicked(bool)", self.onReadDicom)
        self.ui.spectTable.connect("cellChanged(int,int)", lambda _r, _c: self._storeCycle())
        self.ui.administeredAtLineEdit.connect("editingFinished()", self._storeCycle)
        self.ui.activitySpinBox.connect("valueChanged(double)", lambda _v: self._storeCycle())
        self.ui.calibrationSpinBox.connect("valueChanged(double)", lambda _v: self._storeCycle())
        self.ui.ctSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda _n: self._storeCycle())
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda _n: self._storeCycle())
        self.ui.addFollowUpButton.connect("clicked(bool)", self.onAddFollowUp)
        self.ui.removeFollowUpButton.connect("clicked(bool)", self.onRemoveFollowUps)
        self.ui.runDosimetryButton.connect("clicked(bool)", self.onRunDosimetry)
        self.ui.buildCohortButton.connect("clicked(bool)", self.onBuildCohort)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showResultsButton.connect("clicked(bool)", self.onShowResultsButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            if not self._parameterNode.cycles:
                self._parameterNode.cycles = [LuDoseResponseCycle()]
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._showCycle()
            self._showFollowUps()
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        path = parameters.cohortCsvPath if parameters else None
        ready = bool(path) and pathlib.Path(path).is_file()
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (_("Validate the cohort table and run the analyses.") if ready
                                       else _("Choose a cohort table (CSV), or build one from the scene, first."))
        canDose = bool(parameters and parameters.patientId.strip() and parameters.followUps
                       and all(c.spects and c.segmentation for c in parameters.cycles))
        self.ui.runDosimetryButton.enabled = canDose
        self.ui.runDosimetryButton.toolTip = (_("Compute the doses of every cycle of this patient.") if canDose else _(
            "Give the patient ID, the SPECTs and the segmentation of every cycle, and at least one follow-up."))

    # -- per-cycle inputs (lists: copied by hand) ---------------------------------------------------

    def _cycleIndex(self) -> int:
        return max(0, min(int(self.ui.cycleSpinBox.value) - 1, len(self._parameterNode.cycles) - 1))

    def _showCycle(self) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        import qt

        self._updatingGui = True
        try:
            cycles = self._parameterNode.cycles
            self.ui.cycleSpinBox.maximum = max(1, len(cycles))
            self.ui.cycleCountLabel.text = _("of {count}").format(count=len(cycles))
            cycle = cycles[self._cycleIndex()]
            self.ui.spectTable.setRowCount(len(cycle.spects))
            for row, spect in enumerate(cycle.spects):
                name = qt.QTableWidgetItem(spect.volume.GetName() if spect.volume else "")
                name.setFlags(name.flags() & ~qt.Qt.ItemIsEditable)
                self.ui.spectTable.setItem(row, 0, name)
                self.ui.spectTable.setItem(row, 1, qt.QTableWidgetItem(spect.acquiredAt))
                duration = f"{spect.durationS:g}" if spect.durationS else ""
                self.ui.spectTable.setItem(row, 2, qt.QTableWidgetItem(duration))
                self.ui.spectTable.setItem(row, 3, qt.QTableWidgetItem(spect.units))
            self.ui.administeredAtLineEdit.text = cycle.administeredAt
            self.ui.activitySpinBox.value = cycle.activityMBq
            self.ui.calibrationSpinBox.value = cycle.calibrationCpsPerMbq
            self.ui.ctSelector.setCurrentNode(cycle.ct)
            self.ui.segmentationSelector.setCurrentNode(cycle.segmentation)
        finally:
            self._updatingGui = False

    def _storeCycle(self) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        cycles = list(self._parameterNode.cycles)
        cycle = cycles[self._cycleIndex()]
        table = self.ui.spectTable
        cell = lambda r, c: table.item(r, c).text().strip() if table.item(r, c) else ""  # noqa: E731
        spects = []
        for row, spect in enumerate(cycle.spects):
            duration = cell(row, 2)
            units = cell(row, 3)
            spects.append(LuDoseResponseSpect(volume=spect.volume, acquiredAt=cell(row, 1),
                                              durationS=float(duration) if _isNumber(duration) else 0.0,
                                              units=units if units in UNITS else ""))
        cycles[self._cycleIndex()] = LuDoseResponseCycle(
            spects=spects, administeredAt=self.ui.administeredAtLineEdit.text.strip(),
            activityMBq=float(self.ui.activitySpinBox.value),
            calibrationCpsPerMbq=float(self.ui.calibrationSpinBox.value),
            ct=self.ui.ctSelector.currentNode(), segmentation=self.ui.segmentationSelector.currentNode())
        self._parameterNode.cycles = cycles

    def onAddCycle(self) -> None:
        self._storeCycle()
        self._parameterNode.cycles = [*self._parameterNode.cycles, LuDoseResponseCycle()]
        self.ui.cycleSpinBox.maximum = len(self._parameterNode.cycles)
        self.ui.cycleSpinBox.value = len(self._parameterNode.cycles)
        self._showCycle()

    def onRemoveCycle(self) -> None:
        cycles = list(self._parameterNode.cycles)
        del cycles[self._cycleIndex()]
        self._parameterNode.cycles = cycles or [LuDoseResponseCycle()]
        self._showCycle()

    def onAddSpect(self) -> None:
        node = self.ui.spectSelector.currentNode()
        if node is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not read the SPECT's DICOM header."), waitCursor=True):
            self._storeCycle()
            cycle = self._parameterNode.cycles[self._cycleIndex()]
            if any(s.volume is node for s in cycle.spects):
                return
            cycles = list(self._parameterNode.cycles)
            cycles[self._cycleIndex()] = self.logic.cycleParametersWithSpect(cycle, node)
            self._parameterNode.cycles = cycles
            self._showCycle()

    def onRemoveSpects(self) -> None:
        self._storeCycle()
        rows = {index.row() for index in self.ui.spectTable.selectedIndexes()}
        cycles = list(self._parameterNode.cycles)
        cycle = cycles[self._cycleIndex()]
        cycle.spects = [s for i, s in enumerate(cycle.spects) if i not in rows]
        cycles[self._cycleIndex()] = cycle
        self._parameterNode.cycles = cycles
        self._showCycle()

    def onReadDicom(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not read the DICOM headers."), waitCursor=True):
            self._storeCycle()
            cycles = list(self._parameterNode.cycles)
            cycles[self._cycleIndex()] = self.logic.cycleParametersFromDicom(cycles[self._cycleIndex()])
            self._parameterNode.cycles = cycles
            self._showCycle()

    # -- follow-ups ---------------------------------------------------------------------------------

    def _showFollowUps(self) -> None:
        import qt

        followUps = self._parameterNode.followUps
        self.ui.followUpTable.setRowCount(len(followUps))
        for row, fu in enumerate(followUps):
            name = fu.segmentation.GetName() if fu.segmentation else ""
            self.ui.followUpTable.setItem(row, 0, qt.QTableWidgetItem(name))
            self.ui.followUpTable.setItem(row, 1, qt.QTableWidgetItem(fu.date))

    def onAddFollowUp(self) -> None:
        node = self.ui.followUpSegmentationSelector.currentNode()
        if node is None:
            return
        day = self.ui.followUpDateEdit.date.toString("yyyy-MM-dd")
        followUps = sorted([*self._parameterNode.followUps, LuDoseResponseFollowUp(segmentation=node, date=day)],
                           key=lambda f: f.date)
        self._parameterNode.followUps = followUps
        self._showFollowUps()

    def onRemoveFollowUps(self) -> None:
        rows = {index.row() for index in self.ui.followUpTable.selectedIndexes()}
        self._parameterNode.followUps = [f for i, f in enumerate(self._parameterNode.followUps) if i not in rows]
        self._showFollowUps()

    # -- actions ------------------------------------------------------------------------------------

    def onRunDosimetry(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Dosimetry failed."), waitCursor=True):
            self._storeCycle()
            nodes = self.logic.runDosimetryFromParameterNode(self._parameterNode)
            self.ui.dosimetryStatusLabel.text = _("{tumours} tumours, {cycles} cycle(s); {warnings} warning(s) "
                                                  "(see the run.json text node).").format(
                tumours=nodes.tumoursTable.GetNumberOfRows(), cycles=len(nodes.doseVolumes),
                warnings=len(nodes.warnings))
            ct = self._parameterNode.cycles[0].ct
            self.logic.showDosimetry(nodes, ct)

    def onBuildCohort(self) -> None:
        import qt

        path = qt.QFileDialog.getSaveFileName(None, _("Save the cohort table"), "cohort.csv", "CSV (*.csv)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not build the cohort table."), waitCursor=True):
            self._parameterNode.cohortCsvPath = self.logic.writeCohortCsvFromScene(path)

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cohort analysis failed."), waitCursor=True):
            parameters = self._parameterNode
            if parameters.saveOutputs and str(parameters.outputDirectory) in ("", "."):
                raise ValueError(_("Choose a folder for the results, or untick 'Save results to'."))
            self.logic.ensureRequirements()
            outputDir = str(parameters.outputDirectory) if parameters.saveOutputs else None
            nodes = self.logic.runCohortAnalysis(str(parameters.cohortCsvPath), outputDir,
                                                 **self.logic.cohortSettings(parameters))
            parameters.resultsTable = nodes.tables["tcp"]
            parameters.tcpChart = nodes.charts["tcp"]
            self.ui.statusLabel.text = summary_text(nodes.analysis, "the tables' Warnings and Error columns")
            self.logic.showResults(nodes.tables["tcp"], nodes.charts["tcp"])

    def onShowResultsButton(self) -> None:
        parameters = self._parameterNode
        if parameters.tcpChart is None:
            slicer.util.infoDisplay(_("Run the analysis first."))
            return
        self.logic.showResults(parameters.resultsTable, parameters.tcpChart)

    def onOpenReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the report."), waitCursor=False):
            self.logic.openReport(self._parameterNode.outputDirectory)

    def onReload(self) -> None:
        """Developer "Reload": also drop the library and bridge modules, so that the fresh
        LuDoseResponse.py imports their current code."""
        for name in [n for n in sys.modules if n.split(".")[0] in RELOADED_PACKAGES]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)


def _isNumber(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parseDateTime(text: str, what: str):
    """A naive datetime from ISO text; None for empty text; InputError naming ``what`` otherwise."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: '{text}' is not a date and time like 2019-03-04T09:30:00") from None
    if value.tzinfo is not None:
        raise InputError(f"{what}: give the local clock time without a UTC offset, as DICOM stores it")
    return value


#
# LuDoseResponseLogic
#


class LuDoseResponseLogic(ScriptedLoadableModuleLogic):
    """The console API (and the panel's work); it works on the application scene
    (``slicer.mrmlScene``) and, for DICOM metadata, on ``slicer.dicomDatabase``.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("LuDoseResponse")
        cycle = logic.cycleFromNodes(1, [spect4h, spect24h, spect96h], tumours, ctVolumeNode=ct,
                                     calibrationCpsPerMbq=5.7)      # times and activity from DICOM
        nodes = logic.runDosimetry("P01", [cycle], [logic.followUp("2019-02-20", baseline)], pvc="rc")
        nodes = logic.runCohortAnalysis(logic.writeCohortCsvFromScene("/data/cohort.csv"))
    """

    def __init__(self, scene=None, dicomDatabase=None) -> None:
        """:param scene: the scene to work on (default ``slicer.mrmlScene``).
        :param dicomDatabase: where DICOM files are found (default ``slicer.dicomDatabase``)."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self._dicomDatabase = dicomDatabase

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def dicomDatabase(self):
        return self._dicomDatabase if self._dicomDatabase is not None else getattr(slicer, "dicomDatabase", None)

    def getParameterNode(self):
        return LuDoseResponseParameterNode(super().getParameterNode())

    # -- requirements -------------------------------------------------------------------------------

    def requirementsPath(self) -> pathlib.Path:
        """``Resources/requirements.txt``: the one list of what the module needs beyond Slicer."""
        return requirementsBridge.REQUIREMENTS_FILE

    def missingRequirements(self) -> list:
        """The requirements of requirements.txt that cannot be imported."""
        return requirementsBridge.missingRequirements(requirementsBridge.readRequirements(self.requirementsPath()))

    def ensureRequirements(self) -> None:
        """Install the missing requirements after asking the user (never at import; skipped in testing)."""
        missing = self.missingRequirements()
        if not missing:
            return
        if hasattr(slicer, "packaging"):  # Slicer >= 5.11: asks the user, skipped in testing mode
            slicer.packaging.pip_ensure(slicer.packaging.load_requirements(str(self.requirementsPath())),
                                        requester="LuDoseResponse")
        elif slicer.util.confirmOkCancelDisplay(
                _("LuDoseResponse needs {packages}. Install now?").format(packages=", ".join(missing))):
            slicer.util.pip_install(" ".join(missing))
        else:
            raise RuntimeError(_("LuDoseResponse needs {packages}.").format(packages=", ".join(missing)))

    # -- dosimetry ----------------------------------------------------------------------------------

    def spectFromNode(self, volumeNode):
        """A LuDoseResponseMRML.dosimetry.SpectInput with acquisition time, duration and units read
        from the node's DICOM (None where unknown; then set them before running)."""
        return dosimetryBridge.spectInputFromNode(volumeNode, self.dicomDatabase)

    def cycleFromNodes(self, number, spectVolumeNodes, segmentationNode, ctVolumeNode=None,
                       calibrationCpsPerMbq=None):
        """A LuDoseResponseMRML.dosimetry.CycleInput prefilled from DICOM (SPECT times, durations,
        units; administration time and activity). Edit its fields to correct them.

        :param number: cycle number (1 for the first treatment).
        :param spectVolumeNodes: the cycle's quantitative SPECT volumes.
        :param segmentationNode: the tumours (one named segment each).
        :param ctVolumeNode: CT in HU for the density correction (optional).
        :param calibrationCpsPerMbq: needed when the SPECTs are in counts.
        """
        return dosimetryBridge.cycleInputFromNodes(number, spectVolumeNodes, segmentationNode,
                                                   ctVolumeNode=ctVolumeNode,
                                                   calibrationCpsPerMbq=calibrationCpsPerMbq,
                                                   dicomDatabase=self.dicomDatabase)

    def followUp(self, day, segmentationNode):
        """A follow-up CT segmentation and its date (``datetime.date`` or 'YYYY-MM-DD')."""
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day)
            except ValueError:
                raise InputError(f"follow-up '{segmentationNode.GetName()}': '{day}' is not a date like "
                                 "2019-02-20") from None
        return dosimetryBridge.FollowUpInput(day, segmentationNode)

    def runDosimetry(self, patient, cycles, followUps, grade=None, outputDir=None, **settings):
        """Run the patient pipeline (as ``ludoseresponse dosimetry``) and show its results as nodes.

        :param patient: patient ID; tumour IDs become ``<patient>.<segment name>``.
        :param cycles: CycleInput per cycle (``cycleFromNodes``).
        :param followUps: follow-ups, baseline first (``followUp``).
        :param grade: tumour grade G1 or G2 (needed later by the cohort analysis).
        :param outputDir: if given, tumours.csv, tumour_cycles.csv, dose_cycle<N>.nrrd and run.json
            are also published there.
        :param settings: the manifest's [settings]: dose_method, density_correction, pvc,
            psf_fwhm_mm, integration, tail.
        :returns: LuDoseResponseMRML.dosimetry.DosimetryNodes (study, tables, dose volumes, charts).
        """
        return dosimetryBridge.runDosimetry(self.scene, patient, cycles, followUps,
                                            settings=self.dosimetrySettings(**settings), grade=grade or None,
                                            outputDir=outputDir)

    def dosimetrySettings(self, **settings) -> Settings:
        """The pipeline Settings from keyword options; InputError naming an unknown one."""
        known = set(Settings().to_dict())
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InputError(f"unknown dosimetry option(s) {unknown}; valid options are {sorted(known)}")
        for name, choices in SETTINGS_CHOICES.items():
            if name in settings and settings[name] not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, got {settings[name]!r}")
        return Settings(**settings)

    def cycleParametersWithSpect(self, cycle, volumeNode):
        """The panel's cycle with one more SPECT, its time, duration and units prefilled from DICOM."""
        spect = self.spectFromNode(volumeNode)
        cycle.spects = [*cycle.spects, LuDoseResponseSpect(
            volume=volumeNode, acquiredAt=spect.acquiredAt.isoformat() if spect.acquiredAt else "",
            durationS=spect.durationS or 0.0, units=spect.units or "")]
        return cycle

    def cycleParametersFromDicom(self, cycle):
        """The panel's cycle with every SPECT's time, duration, units and the administration re-read
        from DICOM (values DICOM does not give are kept)."""
        kept = [s for s in cycle.spects if s.volume is not None]
        read = self.cycleFromNodes(1, [s.volume for s in kept], cycle.segmentation)
        cycle.spects = [LuDoseResponseSpect(volume=s.volumeNode,
                                            acquiredAt=s.acquiredAt.isoformat() if s.acquiredAt else old.acquiredAt,
                                            durationS=s.durationS or old.durationS, units=s.units or old.units)
                        for s, old in zip(read.spect, kept, strict=True)]
        if read.administeredAt is not None:
            cycle.administeredAt = read.administeredAt.isoformat()
        if read.activityMBq is not None:
            cycle.activityMBq = float(read.activityMBq)
        return cycle

    def inputsFromParameterNode(self, parameterNode):
        """(cycles, followUps) as CycleInput / FollowUpInput from the panel's parameter node."""
        cycles = []
        for number, c in enumerate(parameterNode.cycles, start=1):
            where = f"cycle {number}"
            spects = [dosimetryBridge.SpectInput(
                volumeNode=s.volume, acquiredAt=_parseDateTime(s.acquiredAt, f"{where}, SPECT "
                                                               f"'{s.volume.GetName() if s.volume else '?'}'"),
                units=s.units or None, durationS=s.durationS or None) for s in c.spects]
            cycles.append(dosimetryBridge.CycleInput(
                number=number, spect=spects, segmentationNode=c.segmentation,
                administeredAt=_parseDateTime(c.administeredAt, f"{where}, administered at"),
                activityMBq=c.activityMBq or None, calibrationCpsPerMbq=c.calibrationCpsPerMbq or None,
                ctVolumeNode=c.ct))
        followUps = [self.followUp(f.date, f.segmentation) for f in parameterNode.followUps]
        return cycles, followUps

    def runDosimetryFromParameterNode(self, parameterNode):
        """``runDosimetry`` with everything the panel holds."""
        cycles, followUps = self.inputsFromParameterNode(parameterNode)
        outputDir = str(parameterNode.dosimetryOutputDirectory) if parameterNode.saveDosimetryOutputs else None
        if outputDir in ("", "."):
            raise InputError(_("Choose a folder for the dosimetry outputs, or untick 'Save to'."))
        return self.runDosimetry(parameterNode.patientId.strip(), cycles, followUps, grade=parameterNode.grade,
                                 outputDir=outputDir, dose_method=parameterNode.doseMethod,
                                 density_correction=bool(parameterNode.densityCorrection), pvc=parameterNode.pvc,
                                 psf_fwhm_mm=float(parameterNode.psfFwhmMm), integration=parameterNode.integration,
                                 tail=parameterNode.tail)

    def showDosimetry(self, nodes, ctVolumeNode=None) -> None:
        """Show the first cycle's dose over the CT, and the tumour table and time-activity chart."""
        if slicer.app.layoutManager() is None:
            return
        dose = next(iter(nodes.doseVolumes.values()), None)
        if dose is not None:
            slicer.util.setSliceViewerLayers(background=ctVolumeNode, foreground=dose, foregroundOpacity=0.5)
        self.showResults(nodes.tumoursTable, nodes.timeActivityChart)

    # -- cohort -------------------------------------------------------------------------------------

    def writeCohortCsvFromScene(self, csvPath):
        """Write the tumours of every patient computed in the scene into one cohort CSV; returns its path."""
        return dosimetryBridge.writeCohortCsvFromScene(self.scene, csvPath)

    def runCohortAnalysis(self, csvPath, outputDir=None, **settings):
        """Validate a cohort CSV, run the paper's analyses and show them as table and chart nodes.

        :param csvPath: the cohort table (one row per tumour).
        :param outputDir: if given, analysis.json, tumours.csv, figures and report.html are
            written there (as by ``ludoseresponse analyze``; needs matplotlib).
        :param settings: LuDoseResponseLib.analysis.cohort_analysis.AnalysisSettings options: responder_threshold,
            min_baseline_volume_cm3, glmm_method, bootstrap, seed, doses, tcp_targets.
        :returns: LuDoseResponseMRML.cohort.CohortAnalysisNodes (analysis dict, tables, charts).
        """
        return cohortBridge.runCohortAnalysis(self.scene, csvPath, outputDir, **settings)

    def cohortSettings(self, parameterNode) -> dict:
        """The analysis options of the panel, as runCohortAnalysis keyword arguments."""
        return {
            "responder_threshold": float(parameterNode.responderThreshold),
            "min_baseline_volume_cm3": float(parameterNode.minBaselineVolumeCm3),
            "glmm_method": parameterNode.glmmMethod,
            "bootstrap": int(parameterNode.bootstrapReplicates),
            "seed": int(parameterNode.seed),
            "doses": parse_number_list(parameterNode.dosesGy, "TCP report doses"),
            "tcp_targets": parse_number_list(parameterNode.tcpTargets, "TCP targets"),
        }

    def openReport(self, outputDir) -> None:
        """Open ``report.html`` of a saved analysis in the system's web browser."""
        import qt

        report = pathlib.Path(str(outputDir)) / "report.html"
        if not report.is_file():
            raise InputError(f"{report} does not exist; run the cohort analysis with 'Save results to' ticked")
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))

    def showResults(self, tableNode, chartNode) -> None:
        """Switch to a layout with a chart and a table view and show these nodes there."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no main window (e.g. batch mode)
            return
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        applicationLogic = slicer.app.applicationLogic()
        selectionNode = applicationLogic.GetSelectionNode()
        if tableNode is not None:
            selectionNode.SetActiveTableID(tableNode.GetID())
            applicationLogic.PropagateTableSelection()
        if chartNode is not None:
            selectionNode.SetActivePlotChartID(chartNode.GetID())
            applicationLogic.PropagatePlotChartSelection()
        logging.info("LuDoseResponse: showing %s and %s", tableNode.GetName() if tableNode else "no table",
                     chartNode.GetName() if chartNode else "no chart")


#
# LuDoseResponseTest
#


class LuDoseResponseTest(ScriptedLoadableModuleTest):
    """In-application tests (Reload and Test, or ctest in an extension build). The bridge and
    the library are tested headless with pytest (Testing/mrml); these cover what needs the
    application: the real DICOM database and plugins, slicer.util loaders, the layout."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_DosimetryOfAPhantomFromTheDicomDatabase()
        self.setUp()
        self.test_CohortAnalysisInApplicationScene()
        self.setUp()
        self.test_ParameterNodeDefaults()

    def test_DosimetryOfAPhantomFromTheDicomDatabase(self) -> None:
        """A tiny phantom: imported into a temporary DICOM database, loaded by the DICOM plugins, run
        from the scene and compared with the library's run_patient on its manifest."""
        import csv
        import tempfile

        from DICOMLib import DICOMUtils

        from LuDoseResponseLib.pipeline.patient import run_patient
        from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
        from LuDoseResponseLib.pipeline.phantoms import write_patient
        from LuDoseResponseLib.response.volumetry import read_segmentation
        from LuDoseResponseMRML.segments import addSegmentFromMaskImage

        self.delayDisplay("Writing a tiny phantom")
        folder = pathlib.Path(tempfile.mkdtemp(prefix="LuDoseResponseTest_"))
        p = make_patient("P07", seed=5, n_tumours=2, shape_zyx=(24, 32, 32), n_cycles=1,
                         scan_hours=(24.0, 96.0, 168.0), volume_range_ml=(8.0, 40.0))
        manifest = write_patient(p, folder / "phantom")
        run_patient(manifest, folder / "cli")

        def segmentation(path, name):
            import SimpleITK as sitk

            seg = read_segmentation(path)
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            for segment in seg.names:
                mask = sitk.Cast(seg.image == seg.segment(segment).label_value, sitk.sitkUInt8)
                addSegmentFromMaskImage(node, mask, segment)
            return node

        with DICOMUtils.TemporaryDICOMDatabase() as database:
            DICOMUtils.importDicom(str(folder / "phantom"), database)
            loaded = []
            for patientUid in database.patients():
                loaded += DICOMUtils.loadPatientByUID(patientUid)
            volumes = [slicer.mrmlScene.GetNodeByID(i) for i in loaded]
            spects = sorted([v for v in volumes if v and v.IsA("vtkMRMLScalarVolumeNode")
                             and database.fileValue(
                                 database.fileForInstance(v.GetAttribute("DICOM.instanceUIDs").split()[0]),
                                 "0008,0060") == "NM"], key=lambda v: v.GetName())
            ct = next(v for v in volumes if v and v.IsA("vtkMRMLScalarVolumeNode") and v not in spects)
            logic = LuDoseResponseLogic(dicomDatabase=database)
            cycle = logic.cycleFromNodes(1, spects, segmentation(folder / "phantom" / "c1" / "tumours.seg.nrrd", "T"),
                                         ctVolumeNode=ct, calibrationCpsPerMbq=p.calibration_cps_per_mbq)
            self.assertEqual(cycle.administeredAt, p.cycle_dates[0])
            cycle.activityMBq = round(p.activities_mbq[0], 1)   # as the phantom's manifest gives it
            followUps = [logic.followUp(day, segmentation(folder / "phantom" / "fu" / f"ct_{i}.seg.nrrd", f"FU{i}"))
                         for i, day in enumerate(p.followup_dates)]
            nodes = logic.runDosimetry("P07", [cycle], followUps, grade=p.grade, pvc="none")

        with open(folder / "cli" / "tumours.csv", encoding="utf-8") as f:
            expected = {row["tumor"]: float(row["dose_gy"]) for row in csv.DictReader(f)}
        table = nodes.tumoursTable.GetTable()
        got = {table.GetValueByName(r, "tumor").ToString(): table.GetValueByName(r, "dose_gy").ToDouble()
               for r in range(table.GetNumberOfRows())}
        self.assertEqual(sorted(got), sorted(expected))
        for tumour, dose in expected.items():
            self.assertAlmostEqual(got[tumour] / dose, 1.0, places=6)
        logic.showDosimetry(nodes, ct)
        self.delayDisplay("Dosimetry from the DICOM database equals the library's run on the files")

    def test_CohortAnalysisInApplicationScene(self) -> None:
        import json
        import tempfile

        from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

        self.delayDisplay("Cohort analysis of a synthetic cohort")
        LuDoseResponseLogic().ensureRequirements()
        folder = pathlib.Path(tempfile.mkdtemp(prefix="LuDoseResponseTest_"))
        csvPath = folder / "cohort.csv"
        table = generate_cohort(seed=3)
        table.to_csv(csvPath, index=False)
        nodes = LuDoseResponseLogic().runCohortAnalysis(str(csvPath), str(folder / "out"), bootstrap=200, seed=2)

        written = json.loads((folder / "out" / "analysis.json").read_text())
        self.assertEqual(written, nodes.analysis)
        tumours = nodes.tables["tumours"]
        self.assertIs(tumours.GetScene(), slicer.mrmlScene)
        self.assertEqual(tumours.GetNumberOfRows(), len(table))
        included = table[table["baseline_volume_cm3"] >= 4.0]
        chart = nodes.charts["tcp"]
        observed = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())
                    if chart.GetNthPlotSeriesNode(i).GetName().endswith("(responder = 1)")]
        self.assertEqual(sum(s.GetTableNode().GetNumberOfRows() for s in observed), len(included))
        LuDoseResponseLogic().showResults(nodes.tables["tcp"], chart)
        self.delayDisplay("Cohort analysis shown")

    def test_ParameterNodeDefaults(self) -> None:
        logic = LuDoseResponseLogic()
        parameters = logic.getParameterNode()
        settings = logic.cohortSettings(parameters)
        self.assertEqual(settings["doses"], (76.0, 135.0))
        self.assertEqual(settings["tcp_targets"], (0.5, 0.9))
        self.assertAlmostEqual(settings["responder_threshold"], 0.66)
        self.assertEqual(settings["glmm_method"], "laplace")
        self.assertEqual(parameters.pvc, Settings().pvc)
        self.assertEqual(parameters.psfFwhmMm, Settings().psf_fwhm_mm)
        self.delayDisplay("Parameter node defaults match the command line's")
