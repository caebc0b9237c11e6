"""Layer order of the library (issue 8): no stage imports a later stage.

base (errors, imaging, files, defaults, ...) < physics < io < dosimetry < response < analysis
< planning < pipeline < commands and cli. stats is a side branch: it imports only base modules. The Slicer
bridge may import any library stage except the command line. Every import counts: top-level,
inside functions, and ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "LuDoseResponseLib"
BRIDGE = REPO / "LuDoseResponse" / "LuDoseResponseMRML"

#: stage -> rank; a module may import stages of its own rank or lower
RANKS = {"base": 0, "physics": 1, "io": 2, "dosimetry": 3, "response": 4, "stats": 4, "analysis": 5,
         "planning": 6, "pipeline": 7, "commands": 8}
#: what stats may import besides itself
STATS_ALLOWED = {"base"}


def stage_of(module: str) -> str:
    """The stage of a dotted module name inside LuDoseResponseLib."""
    parts = module.split(".")
    assert parts[0] == "LuDoseResponseLib", module
    if len(parts) == 1:
        return "base"
    head = parts[1]
    if head in RANKS:
        return head
    if head in ("cli", "__main__"):
        return "commands"
    return "base"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every LuDoseResponseLib import in ``source``."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if target == "LuDoseResponseLib"]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value).replace("{", "").split("}")[0]))
    return [(line, m) for line, m in found if m == "LuDoseResponseLib" or m.startswith("LuDoseResponseLib.")]


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Upward imports of ``module`` (a LuDoseResponseLib module), as readable messages."""
    own = stage_of(module)
    problems = []
    for line, target in imported_modules(source, module, is_package):
        if target == "LuDoseResponseLib":
            continue
        theirs = stage_of(target)
        if own == "stats" and theirs not in STATS_ALLOWED | {"stats"}:
            problems.append(f"{module}:{line} imports {target}: stats may import only base modules")
        elif RANKS[theirs] > RANKS[own] or (theirs == "stats" and own in ("response",)):
            problems.append(f"{module}:{line} imports {target}: {theirs} is a later stage than {own}")
    return problems


def test_library_imports_only_earlier_stages():
    problems = []
    for path in sorted(LIB.rglob("*.py")):
        problems += violations(module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_bridge_never_imports_the_command_line():
    problems = []
    for path in sorted(BRIDGE.rglob("*.py")):
        for line, target in imported_modules(path.read_text(encoding="utf-8"), "LuDoseResponseMRML.x", False):
            if stage_of(target) == "commands":
                problems.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not problems, "the Slicer bridge imports the command line:\n" + "\n".join(problems)


def test_checker_finds_upward_imports():
    """The checker itself: each kind of upward import is reported with the module and line."""
    upward = "import x\nfrom LuDoseResponseLib.dosimetry import doserate\n"
    assert violations("LuDoseResponseLib.physics.kernels", upward) == [
        "LuDoseResponseLib.physics.kernels:2 imports LuDoseResponseLib.dosimetry: "
        "dosimetry is a later stage than physics"]
    assert violations("LuDoseResponseLib.stats.roc", "def f():\n    from LuDoseResponseLib.io.dicom import tags\n")
    assert violations("LuDoseResponseLib.stats.roc", "from ..physics import nuclides\n")
    assert violations("LuDoseResponseLib.files", "from LuDoseResponseLib import analysis\n")
    assert violations("LuDoseResponseLib.analysis.report",
                      "import importlib\nimportlib.import_module('LuDoseResponseLib.cli')\n")
    assert violations("LuDoseResponseLib.response.cohort", "from LuDoseResponseLib.stats import lmm\n")
    assert not violations("LuDoseResponseLib.dosimetry.doserate", "from LuDoseResponseLib.physics import kernels\n")
    assert not violations("LuDoseResponseLib.stats.tcp", "from LuDoseResponseLib import defaults\n")
    assert not violations("LuDoseResponseLib.analysis.outputs", "from LuDoseResponseLib.stats import tcp\n")
    assert not violations("LuDoseResponseLib.planning.plan", "from LuDoseResponseLib.dosimetry import bed\n")
    assert violations("LuDoseResponseLib.planning.plan", "from LuDoseResponseLib.pipeline import patient\n")
