"""The ``ludoseresponse`` command line.

Each subcommand lives in ``LuDoseResponseLib/commands/<name>.py`` and provides
``register(subparsers)`` (adds its parser and sets ``func``) and a ``run(args) -> int``.

Exit codes: 0 success; 2 a user mistake — a bad option or argument, bad input, an output folder
that cannot take the run, or an environment that refuses the writes (no permission, read-only or
full disk) — with one line on stderr; 3 an internal error (a fault of the program: please report
it), also one line; 4 a partial cohort (``cohort``, ``demo --phantoms``): the run completed and its
outputs were written, but some patients failed and were skipped — each is named on stderr and in
``failures.json`` and the cohort was analysed without them (3 instead when a patient hit a fault of
the program; 2 when every patient failed); 130 interrupted. No traceback reaches the user unless
``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import LuDoseResponseError
from LuDoseResponseLib.files import user_environment_error

#: subcommand modules under LuDoseResponseLib.commands, in the order shown by --help
COMMANDS = ("demo", "dosimetry", "plan", "cohort", "analyze", "report", "inspect")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
#: a cohort run that completed without some of its patients (see the module docstring)
EXIT_PARTIAL = 4


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (then exit 2), not the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
        prog="ludoseresponse",
        description="Lu-177 DOTATATE tumour dosimetry and absorbed-dose-response analysis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"LuDoseResponseLib.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        print(f"ludoseresponse: error: choose a command: {', '.join(COMMANDS)} (see ludoseresponse --help)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    logging.captureWarnings(True)   # library warnings.warn (errors.py, rule 2) reach the log
    try:
        return int(args.func(args) or 0)
    except LuDoseResponseError as exc:
        if args.debug:
            raise
        print(f"ludoseresponse {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        error = user_environment_error(exc, exc.filename or "a file", "use") if not args.debug else None
        if error is None:
            return _internal_error(args, exc)
        print(f"ludoseresponse {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ludoseresponse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback to the user
        return _internal_error(args, exc)


def _one_line(message: str) -> str:
    """A message on one line: a list of problems below its first line joined with '; '."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()


def _internal_error(args, exc: Exception) -> int:
    if args.debug:
        raise exc
    message = _one_line(str(exc))
    print(f"ludoseresponse {args.command}: internal error: {type(exc).__name__}: {message}. "
          "Re-run with --debug for the traceback and please report it.", file=sys.stderr)
    return EXIT_INTERNAL_ERROR
