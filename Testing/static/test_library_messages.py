"""Library messages name library arguments, never command-line flags (issue 8): the CLI translates.

Every string literal in LuDoseResponseLib outside ``commands/`` and ``cli.py`` is searched for one of
the command line's own flags (read from its parsers, so a new flag is covered too).
"""

from __future__ import annotations

import ast
from pathlib import Path

from LuDoseResponseLib.cli import build_parser

LIB = Path(__file__).resolve().parents[2] / "LuDoseResponseLib"


def _cli_flags() -> set[str]:
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        for sub in (getattr(action, "choices", None) or {}).values():
            if hasattr(sub, "_actions"):
                flags |= {s for a in sub._actions for s in a.option_strings}
    return {f for f in flags if f.startswith("--") and f not in ("--help", "--version")}


def _string_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_library_messages_do_not_name_cli_flags():
    flags = _cli_flags()
    assert "--min-baseline-volume" in flags and "--out" in flags   # the parsers were read
    found = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB)
        if rel.parts[0] == "commands" or rel.name in ("cli.py", "__main__.py"):
            continue
        for line, text in _string_literals(path):
            for flag in flags:
                if flag in text.split() or f"{flag} " in text or text.endswith(flag) or f"{flag}=" in text:
                    found.append(f"{rel}:{line}: {flag} in {text[:80]!r}")
    assert not found, "library messages naming CLI flags (name the argument instead):\n" + "\n".join(found)
