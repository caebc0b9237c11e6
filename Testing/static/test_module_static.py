"""Static checks of the Slicer module, the bridge and the library's import hygiene (plain Python:
ast and xml.etree; no Slicer needed).

- LuDoseResponse.py compiles and has the four standard classes with their Slicer bases;
- the library never imports slicer, vtk, qt or ctk (so it runs anywhere);
- the bridge never uses qt, ctk, slicer.app, slicer.modules, slicer.mrmlScene, nor the
  slicer.util helpers that reach for those globals (it gets the scene from its arguments);
- nothing installs packages at import time;
- LuDoseResponse/ holds no top-level .py besides LuDoseResponse.py (Slicer would load it as a
  module);
- requirements.txt is the one list of extra packages (none of its lines is repeated in the code);
- the widget calls only logic methods that exist, and reads or writes only parameter-node fields
  that exist (the widget cannot be run here, so its glue is checked by name);
- the .ui file is valid XML with a qMRMLWidget root, declares its custom widgets, connects the
  scene to its MRML combo boxes, binds only parameters that exist, and has every widget the
  code uses as ``self.ui.<name>``.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "LuDoseResponseLib"
MODULE = REPO / "LuDoseResponse"
MODULE_FILE = MODULE / "LuDoseResponse.py"
BRIDGE = MODULE / "LuDoseResponseMRML"
UI_FILE = MODULE / "Resources" / "UI" / "LuDoseResponse.ui"

#: slicer.util helpers that use slicer.mrmlScene, slicer.modules or slicer.app (slicer-notes §4)
GLOBAL_UTIL_HELPERS = {
    "getNode", "getNodes", "getFirstNodeByName", "getFirstNodeByClassByName", "getNodesByClass",
    "addVolumeFromArray", "arrayFromSegmentBinaryLabelmap", "updateSegmentBinaryLabelmapFromArray",
    "loadVolume", "loadSegmentation", "loadScene", "loadNodeFromFile", "loadNodesFromFile", "saveNode",
    "saveScene", "plot", "tempDirectory", "delayDisplay", "pip_install", "mainWindow", "selectModule",
    "setSliceViewerLayers", "errorDisplay", "infoDisplay", "warningDisplay", "resetSliceViews",
}
SLICER_GLOBALS = {"app", "modules", "mrmlScene", "dicomDatabase"}


def pythonFiles(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def importedModules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for import statements and importlib.import_module / __import__ calls
    with a constant name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def dottedName(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def test_module_file_compiles_and_has_the_four_classes():
    source = MODULE_FILE.read_text(encoding="utf-8")
    compile(source, str(MODULE_FILE), "exec")
    classes = {node.name: [dottedName(b) for b in node.bases]
               for node in parse(MODULE_FILE).body if isinstance(node, ast.ClassDef)}
    assert classes["LuDoseResponse"] == ["ScriptedLoadableModule"]
    assert classes["LuDoseResponseWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["LuDoseResponseLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["LuDoseResponseTest"] == ["ScriptedLoadableModuleTest"]
    assert "LuDoseResponseParameterNode" in classes
    assert '"Nuclear Medicine"' in source


@pytest.mark.parametrize("path", pythonFiles(LIB), ids=lambda p: p.relative_to(REPO).as_posix())
def test_library_never_imports_slicer_vtk_qt_ctk(path):
    bad = [(line, name) for line, name in importedModules(parse(path))
           if name.split(".")[0] in {"slicer", "vtk", "vtkmodules", "qt", "ctk", "PythonQt", "__main__"}]
    assert not bad, f"{path.relative_to(REPO)} imports {bad}; the library must run without Slicer"


@pytest.mark.parametrize("path", pythonFiles(BRIDGE), ids=lambda p: p.relative_to(REPO).as_posix())
def test_bridge_uses_no_application_globals(path):
    tree = parse(path)
    where = path.relative_to(REPO).as_posix()
    problems = [f"line {line}: imports {name}" for line, name in importedModules(tree)
                if name.split(".")[0] in {"qt", "ctk", "PythonQt", "__main__", "DICOMLib", "SampleData"}
                or name in {f"slicer.{g}" for g in SLICER_GLOBALS}
                or name in {f"slicer.util.{h}" for h in GLOBAL_UTIL_HELPERS}]
    for node in ast.walk(tree):
        name = dottedName(node) if isinstance(node, ast.Attribute) else ""
        if name.startswith("slicer.") and name.split(".")[1] in SLICER_GLOBALS:
            problems.append(f"line {node.lineno}: uses {name}")
        if name.startswith("slicer.util.") and name.split(".")[2] in GLOBAL_UTIL_HELPERS:
            problems.append(f"line {node.lineno}: uses {name}")
    assert not problems, f"{where}: " + "; ".join(problems) + " (take the scene from an argument or a node)"


@pytest.mark.parametrize("path", [MODULE_FILE, *pythonFiles(BRIDGE), *pythonFiles(LIB)],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_package_installation_at_import_time(path):
    """pip runs only inside functions (Slicer's rule: never at global scope or in the module class)."""
    tree = parse(path)
    inside_functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for n in ast.walk(f)}
    module_class = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "LuDoseResponse"]
    in_module_class = {id(n) for c in module_class for n in ast.walk(c)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dottedName(node.func)
            if name.split(".")[-1] in {"pip_install", "pip_ensure"}:
                assert id(node) in inside_functions and id(node) not in in_module_class, \
                    f"{path.relative_to(REPO)} line {node.lineno}: {name} outside a function or in the module class"


def test_module_folder_has_one_top_level_python_file():
    top_level = sorted(p.name for p in MODULE.glob("*.py"))
    assert top_level == ["LuDoseResponse.py"], \
        f"LuDoseResponse/ holds {top_level}: every top-level .py is loaded by Slicer as a module; move helpers into " \
        "the LuDoseResponseMRML package"
    assert not (MODULE / "conftest.py").exists() and not (BRIDGE / "conftest.py").exists()


def _uiTree():
    return ET.parse(UI_FILE).getroot()


def _parameterNodeFields() -> set[str]:
    for node in parse(MODULE_FILE).body:
        if isinstance(node, ast.ClassDef) and node.name == "LuDoseResponseParameterNode":
            assert any(dottedName(d) == "parameterNodeWrapper" for d in node.decorator_list)
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("LuDoseResponseParameterNode not found")


def test_ui_file_structure():
    root = _uiTree()
    assert root.tag == "ui"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "LuDoseResponse"
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    sections = [n for n, c in widgets.items() if c == "ctkCollapsibleButton"]
    for section in ("inputsCollapsibleButton", "dosimetryCollapsibleButton", "responseCollapsibleButton",
                    "cohortCollapsibleButton", "resultsCollapsibleButton"):
        assert section in sections, f"the panel lacks the section {section}"

    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {c for c in widgets.values() if not c.startswith("Q")}
    assert not custom - declared, f"custom widgets not declared in <customwidgets>: {sorted(custom - declared)}"

    connections = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")]
    for sender, _, receiver, _ in connections:
        assert sender in widgets and receiver in widgets, (sender, receiver)
    scene_receivers = {r for s, sig, r, slot in connections
                       if s == "LuDoseResponse" and sig == "mrmlSceneChanged(vtkMRMLScene*)"
                       and slot == "setMRMLScene(vtkMRMLScene*)"}
    combo_boxes = {n for n, c in widgets.items() if c == "qMRMLNodeComboBox"}
    assert combo_boxes <= scene_receivers, f"no scene for {sorted(combo_boxes - scene_receivers)}"


def test_ui_parameter_bindings_exist():
    fields = _parameterNodeFields()
    bound = {}
    for widget in _uiTree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = prop.findtext("string")
    assert bound, "no widget is bound to the parameter node"
    unknown = {w: p for w, p in bound.items() if p not in fields}
    assert not unknown, f"SlicerParameterName naming no LuDoseResponseParameterNode field: {unknown}"
    values = list(bound.values())
    assert len(values) == len(set(values)), f"a parameter is bound twice: {bound}"


def test_every_ui_widget_used_in_code_exists():
    names = {w.get("name") for w in _uiTree().iter("widget")}
    used = {}
    for node in ast.walk(parse(MODULE_FILE)):
        if isinstance(node, ast.Attribute) and dottedName(node.value) == "self.ui":
            used.setdefault(node.attr, node.lineno)
    assert used, "LuDoseResponse.py uses no self.ui widget"
    missing = {n: line for n, line in used.items() if n not in names}
    assert not missing, f"LuDoseResponse.py uses widgets missing from {UI_FILE.name}: {missing}"


REQUIREMENTS_FILE = MODULE / "Resources" / "requirements.txt"


def test_requirements_file_is_the_one_list():
    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()]
    requirements = [line for line in lines if line]
    assert requirements, "requirements.txt lists nothing, but the cohort and the patient tables need pandas"
    for path in [MODULE_FILE, *pythonFiles(BRIDGE)]:
        literals = {n.value for n in ast.walk(parse(path)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        repeated = [r for r in requirements if r in literals]
        assert not repeated, f"{path.relative_to(REPO)} repeats {repeated}; read them from {REQUIREMENTS_FILE.name}"


def _classMembers(tree: ast.Module, name: str) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
    raise AssertionError(f"{name} not found in {MODULE_FILE.name}")


def test_widget_uses_existing_logic_methods_and_parameters():
    tree = parse(MODULE_FILE)
    logicMethods = _classMembers(tree, "LuDoseResponseLogic") | {"getParameterNode"}
    fields = _parameterNodeFields() | {"connectGui", "disconnectGui"}
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = dottedName(node.value)
        if owner == "self.logic" and node.attr not in logicMethods:
            problems.append(f"line {node.lineno}: self.logic.{node.attr} is not a LuDoseResponseLogic method")
        if owner in ("self._parameterNode", "parameterNode", "parameters") and node.attr not in fields:
            problems.append(f"line {node.lineno}: {owner}.{node.attr} is not a LuDoseResponseParameterNode field")
    assert not problems, "; ".join(problems)
