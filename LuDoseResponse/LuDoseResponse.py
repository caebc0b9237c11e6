"""LuDoseResponse: Lu-177 DOTATATE tumour dosimetry and absorbed-dose-response analysis.

The module is thin: the widget reads the panel (through the parameter node) and calls the
logic; the logic passes the application scene to ``LuDoseResponseMRML`` (the MRML bridge),
which calls ``LuDoseResponseLib`` (the pure-Python library) and turns its results into nodes.
Method: Warfvinge et al., J Nucl Med 2024;65:1070.
"""

import logging
import pathlib
import sys
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLPlotChartNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Minimum, WithinRange, parameterNodeWrapper
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
from LuDoseResponseLib.parsing import parse_number_list  # noqa: E402
from LuDoseResponseMRML import cohort as cohortBridge  # noqa: E402
from LuDoseResponseMRML.tables import ROLE_ATTRIBUTE  # noqa: E402

#: import name -> requirement: what the cohort panel needs beyond what Slicer ships
#: (numpy, scipy, SimpleITK, pydicom); saving the outputs (figures, report) also needs matplotlib
COHORT_REQUIREMENTS = {"pandas": "pandas>=2.0"}
OUTPUT_REQUIREMENTS = {"matplotlib": "matplotlib>=3.7"}
#: top-level packages reloaded by the developer "Reload" button besides this file
RELOADED_PACKAGES = ("LuDoseResponseLib", "LuDoseResponseMRML")


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
Tumour absorbed-dose-response analysis for [177Lu]Lu-DOTATATE therapy. Choose a cohort table
(one row per tumour: patient, tumor, grade, dose_gy, activity_gbq, baseline_volume_cm3, dv) and
press Apply: the module validates the table and computes, per tumour grade, the dose and
activity of responders and non-responders, the tumour control probability (TCP) curve of a
logistic mixed model, ROC analysis of dose, and the asymptotic dose-response curve.
The same analysis runs from the command line (<code>ludoseresponse analyze</code>) and from the
Python console (<code>LuDoseResponseLogic().runCohortAnalysis(path)</code>).
""")
        self.parent.acknowledgementText = _("""
The analyses follow Warfvinge C.F. et al., "Relationship between absorbed dose and response in
neuroendocrine tumors treated with [177Lu]Lu-DOTATATE", J Nucl Med 2024;65:1070-1075.
""")


#
# LuDoseResponseParameterNode
#


@parameterNodeWrapper
class LuDoseResponseParameterNode:
    """The panel's settings, saved with the scene.

    cohortCsvPath - the cohort table (CSV, one row per tumour).
    responderThreshold - responder when the volume reduction dv is at least this.
    minBaselineVolumeCm3 - tumours below this baseline volume are excluded (0: none).
    glmmMethod - likelihood of the TCP model: laplace or agq.
    bootstrapReplicates, seed - ROC AUC bootstrap.
    dosesGy, tcpTargets - comma-separated doses (Gy) and TCP values to report.
    saveOutputs, outputDirectory - write analysis.json, tumours.csv, figures and report.html there.
    resultsTable, tcpChart - the outputs last shown.
    """

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
    """The module panel: GUI glue only, all work is in LuDoseResponseLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LuDoseResponse.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LuDoseResponseLogic()
        self.ui.resultsTableSelector.addAttribute("vtkMRMLTableNode", ROLE_ATTRIBUTE)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showResultsButton.connect("clicked(bool)", self.onShowResultsButton)

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
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        path = self._parameterNode.cohortCsvPath if self._parameterNode else None
        ready = bool(path) and pathlib.Path(path).is_file()
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (_("Validate the cohort table and run the analyses.") if ready
                                       else _("Choose a cohort table (CSV) first."))

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cohort analysis failed."), waitCursor=True):
            parameters = self._parameterNode
            if parameters.saveOutputs and str(parameters.outputDirectory) in ("", "."):
                raise ValueError(_("Choose a folder for the results, or untick 'Save results to'."))
            self._ensureRequirements(parameters.saveOutputs)
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

    def _ensureRequirements(self, saveOutputs: bool) -> None:
        """Ask to install what the cohort panel needs (pandas; matplotlib to save outputs)."""
        missing = self.logic.missingCohortRequirements(saveOutputs)
        if not missing:
            return
        if hasattr(slicer, "packaging"):  # Slicer >= 5.11: asks the user, skipped in testing mode
            slicer.packaging.pip_ensure(missing, requester="LuDoseResponse")
        elif slicer.util.confirmOkCancelDisplay(
                _("The cohort analysis needs {packages}. Install now?").format(packages=", ".join(missing))):
            slicer.util.pip_install(" ".join(missing))
        else:
            raise RuntimeError(_("The cohort analysis needs {packages}.").format(packages=", ".join(missing)))

    def onReload(self) -> None:
        """Developer "Reload": also drop the library and bridge modules, so that the fresh
        LuDoseResponse.py imports their current code."""
        for name in [n for n in sys.modules if n.split(".")[0] in RELOADED_PACKAGES]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)


#
# LuDoseResponseLogic
#


class LuDoseResponseLogic(ScriptedLoadableModuleLogic):
    """Console and widget entry points; works on the application scene (slicer.mrmlScene).

    Example (Slicer's Python console)::

        import LuDoseResponse
        logic = LuDoseResponse.LuDoseResponseLogic()
        nodes = logic.runCohortAnalysis("/data/cohort.csv", "/data/out", bootstrap=2000)
        print(nodes.analysis["tcp"]["per_grade"]["G2"]["dose_at_tcp"]["0.5"])
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return LuDoseResponseParameterNode(super().getParameterNode())

    def runCohortAnalysis(self, csvPath, outputDir=None, **settings):
        """Validate a cohort CSV, run the paper's analyses and show them as table and chart nodes.

        :param csvPath: the cohort table (one row per tumour).
        :param outputDir: if given, analysis.json, tumours.csv, figures and report.html are
            written there (as by ``ludoseresponse analyze``; needs matplotlib).
        :param settings: LuDoseResponseLib.analysis.cohort_analysis.AnalysisSettings options: responder_threshold,
            min_baseline_volume_cm3, glmm_method, bootstrap, seed, doses, tcp_targets.
        :returns: LuDoseResponseMRML.cohort.CohortAnalysisNodes (analysis dict, tables, charts).
        """
        return cohortBridge.runCohortAnalysis(slicer.mrmlScene, csvPath, outputDir, **settings)

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

    def missingCohortRequirements(self, saveOutputs: bool = False) -> list:
        """Requirements of the cohort analysis (and of saving its outputs) that cannot be imported."""
        import importlib.util

        needed = {**COHORT_REQUIREMENTS, **(OUTPUT_REQUIREMENTS if saveOutputs else {})}
        return [requirement for module, requirement in needed.items() if importlib.util.find_spec(module) is None]

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
    the library are tested headless with pytest; these cover what needs the application."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_CohortAnalysisInApplicationScene()
        self.setUp()
        self.test_ParameterNodeDefaults()

    def test_CohortAnalysisInApplicationScene(self) -> None:
        import json
        import tempfile

        from LuDoseResponseLib.response.synthetic_cohort import generate_cohort

        self.delayDisplay("Cohort analysis of a synthetic cohort")
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
        parameters = LuDoseResponseLogic().getParameterNode()
        settings = LuDoseResponseLogic().cohortSettings(parameters)
        self.assertEqual(settings["doses"], (76.0, 135.0))
        self.assertEqual(settings["tcp_targets"], (0.5, 0.9))
        self.assertAlmostEqual(settings["responder_threshold"], 0.66)
        self.assertEqual(settings["glmm_method"], "laplace")
        self.delayDisplay("Parameter node defaults match the command line's")
