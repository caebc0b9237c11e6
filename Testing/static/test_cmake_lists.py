"""The CMake files list every file the extension needs, and list no file that is missing.

A file left out of a CMake list is silently missing from the packaged extension and shows up
only on users' machines (slicer-notes, pitfall 3). This test parses the CMake files (a small
tokenizer for the subset of CMake they use) and compares the lists with the folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "LuDoseResponseLib"
MODULE = REPO / "LuDoseResponse"


def cmakeCommands(text: str) -> list[tuple[str, list[str]]]:
    """``[(command, [arguments])]`` in file order. Handles comments, quoted arguments (kept as
    one argument without the quotes) and nested parentheses."""
    commands = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*\(").match(text, i)
        if not match or (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
            i += 1
            continue
        name = match.group(0).rstrip("( \t\n").lower()
        i = match.end()
        args, depth, token = [], 0, ""
        while i < n:
            c = text[i]
            if c == '"':
                end = i + 1
                while end < n and text[end] != '"':
                    end += 2 if text[end] == "\\" else 1
                args.append(text[i + 1:end])
                i = end + 1
                continue
            if c == "#" and not token:
                i = text.find("\n", i)
                i = n if i < 0 else i
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    if token:
                        args.append(token)
                    i += 1
                    break
                depth -= 1
            if c.isspace():
                if token:
                    args.append(token)
                token = ""
            else:
                token += c
            i += 1
        commands.append((name, args))
    return commands


def expand(value: str, variables: dict[str, list[str]]) -> list[str]:
    """Expand ``${NAME}`` references (a reference that is the whole argument expands to a list)."""
    whole = re.fullmatch(r"\$\{(\w+)\}", value)
    if whole and whole.group(1) in variables:
        return list(variables[whole.group(1)])
    return [re.sub(r"\$\{(\w+)\}", lambda m: ";".join(variables.get(m.group(1), [m.group(0)])), value)]


def cmakeSets(path: Path) -> tuple[dict[str, list[str]], list[tuple[str, list[str]]]]:
    commands = cmakeCommands(path.read_text(encoding="utf-8"))
    variables: dict[str, list[str]] = {}
    for name, args in commands:
        if name == "set" and args:
            values = []
            for arg in args[1:]:
                values.extend(expand(arg, variables))
            variables[args[0]] = values
    return variables, commands


def filesUnder(root: Path, *, exclude_dirs=("__pycache__",)) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not any(part in exclude_dirs for part in p.relative_to(root).parts)
            and p.suffix != ".pyc"}


def compareListing(where: str, listed: list[str], expected: set[str], root: Path) -> list[str]:
    problems = []
    duplicates = sorted({f for f in listed if listed.count(f) > 1})
    if duplicates:
        problems.append(f"{where}: listed more than once: {duplicates}")
    for f in sorted(expected - set(listed)):
        problems.append(f"{where}: {root.name}/{f} exists but is not listed")
    for f in sorted(set(listed) - expected):
        state = "does not exist" if not (root / f).is_file() else "is not the expected kind of file"
        problems.append(f"{where}: lists {root.name}/{f}, which {state}")
    return problems


def _command(commands, name):
    found = [args for n, args in commands if n == name]
    assert found, f"no {name}(...) call"
    return found


def _keyword(args, key):
    assert key in args, f"{key} missing in {args}"
    return args[args.index(key) + 1]


def test_library_lists_every_file():
    path = LIB / "CMakeLists.txt"
    variables, commands = cmakeSets(path)
    where = path.relative_to(REPO).as_posix()
    files = filesUnder(LIB) - {"CMakeLists.txt"}
    scripts = {f for f in files if f.endswith(".py")}
    problems = compareListing(f"{where} LuDoseResponseLib_PYTHON_SCRIPTS",
                              variables.get("LuDoseResponseLib_PYTHON_SCRIPTS", []), scripts, LIB)
    problems += compareListing(f"{where} LuDoseResponseLib_PYTHON_RESOURCES",
                               variables.get("LuDoseResponseLib_PYTHON_RESOURCES", []), files - scripts, LIB)
    assert not problems, "\n".join(problems)


def test_library_is_installed_beside_the_module():
    variables, commands = cmakeSets(LIB / "CMakeLists.txt")
    (args,) = _command(commands, "ctkmacrocompilepythonscript")
    assert _keyword(args, "TARGET_NAME") == "LuDoseResponseLib"
    assert _keyword(args, "SCRIPTS") == "${LuDoseResponseLib_PYTHON_SCRIPTS}"
    assert _keyword(args, "RESOURCES") == "${LuDoseResponseLib_PYTHON_RESOURCES}"
    assert _keyword(args, "DESTINATION_DIR") == \
        "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/LuDoseResponseLib"
    assert _keyword(args, "INSTALL_DIR") == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/LuDoseResponseLib"
    assert "NO_INSTALL_SUBDIR" in args


def test_module_lists_every_file():
    path = MODULE / "CMakeLists.txt"
    variables, commands = cmakeSets(path)
    where = path.relative_to(REPO).as_posix()
    assert variables.get("MODULE_NAME") == ["LuDoseResponse"]
    files = {f for f in filesUnder(MODULE) if not f.startswith("Testing/") and f != "CMakeLists.txt"}
    scripts = {f for f in files if f.endswith(".py")}
    problems = compareListing(f"{where} MODULE_PYTHON_SCRIPTS", variables.get("MODULE_PYTHON_SCRIPTS", []),
                              scripts, MODULE)
    problems += compareListing(f"{where} MODULE_PYTHON_RESOURCES", variables.get("MODULE_PYTHON_RESOURCES", []),
                               files - scripts, MODULE)
    assert not problems, "\n".join(problems)
    (args,) = _command(commands, "slicermacrobuildscriptedmodule")
    assert _keyword(args, "NAME") == "${MODULE_NAME}"
    assert _keyword(args, "SCRIPTS") == "${MODULE_PYTHON_SCRIPTS}"
    assert _keyword(args, "RESOURCES") == "${MODULE_PYTHON_RESOURCES}"
    assert "WITH_GENERIC_TESTS" in args
    assert ["SCRIPT", "${MODULE_NAME}.py"] in _command(commands, "slicer_add_python_unittest")
    assert ["Testing"] in _command(commands, "add_subdirectory")


def test_in_app_test_scripts_are_registered():
    _, commands = cmakeSets(MODULE / "Testing" / "CMakeLists.txt")
    assert ["Python"] in _command(commands, "add_subdirectory")
    path = MODULE / "Testing" / "Python" / "CMakeLists.txt"
    _, commands = cmakeSets(path)
    registered = {args[args.index("SCRIPT") + 1] for name, args in commands
                  if name == "slicer_add_python_unittest" and "SCRIPT" in args}
    present = {p.name for p in path.parent.glob("*.py")}
    assert not present - registered, f"{path.relative_to(REPO)}: not registered: {sorted(present - registered)}"
    assert not registered - present, f"{path.relative_to(REPO)}: registered but missing: {sorted(registered - present)}"


def test_extension_top_level():
    path = REPO / "CMakeLists.txt"
    text = path.read_text(encoding="utf-8")
    variables, commands = cmakeSets(path)
    names = [name for name, _ in commands]
    assert names[0] == "cmake_minimum_required"
    assert ["LuDoseResponse"] in _command(commands, "project")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert key in variables, f"{key} is not set"
    assert variables["EXTENSION_CATEGORY"] == ["Nuclear Medicine"]
    assert variables["EXTENSION_DEPENDS"] == ["NA"]
    assert variables["EXTENSION_ICONURL"][0].endswith("LuDoseResponse/Resources/Icons/LuDoseResponse.png")
    assert ["Slicer", "REQUIRED"] in _command(commands, "find_package")
    includes = _command(commands, "include")
    assert includes[0] == ["${Slicer_USE_FILE}"]
    assert includes[-2:] == [["${Slicer_EXTENSION_GENERATE_CONFIG}"], ["${Slicer_EXTENSION_CPACK}"]]
    subdirectories = [args for name, args in commands if name == "add_subdirectory"]
    assert subdirectories[:2] == [["LuDoseResponseLib"], ["LuDoseResponse"]]
    for folder in subdirectories:
        assert (REPO / folder[0] / "CMakeLists.txt").is_file(), folder
    marker = text.index("## NEXT_MODULE")
    assert text.index("add_subdirectory(LuDoseResponse)") < marker < text.index("Slicer_EXTENSION_GENERATE_CONFIG")
    assert names.index("find_package") < names.index("add_subdirectory")


@pytest.mark.parametrize("text, expected", [
    ('set(A a.py "b c.py" # comment\n d.py)', [("set", ["A", "a.py", "b c.py", "d.py"])]),
    ("if(X)\n  foo(SCRIPT x.py)\nendif()", [("if", ["X"]), ("foo", ["SCRIPT", "x.py"]), ("endif", [])]),
    ("#set(A b)\nset(B)", [("set", ["B"])]),
])
def test_tokenizer(text, expected):
    assert cmakeCommands(text) == expected
