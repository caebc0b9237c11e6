"""The ``ludoseresponse`` command line.

Each subcommand lives in ``LuDoseResponseLib/commands/<name>.py`` and provides
``register(subparsers)`` (adds its parser and sets ``func``) and a ``run(args) -> int``.
Errors of the library (``LuDoseResponseError``) become one line on stderr and exit code 2;
anything unexpected becomes a one-line internal-error message and exit code 3. No traceback
reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import LuDoseResponseError

#: subcommand modules under LuDoseResponseLib.commands, in the order shown by --help
COMMANDS = ("demo", "dosimetry", "cohort", "analyze", "report", "inspect")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    logging.captureWarnings(True)   # library warnings.warn (errors.py, rule 2) reach the log
    try:
        return int(args.func(args) or 0)
    except LuDoseResponseError as exc:
        if args.debug:
            raise
        print(f"ludoseresponse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ludoseresponse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback to the user
        if args.debug:
            raise
        print(f"ludoseresponse {args.command}: internal error: {type(exc).__name__}: {exc}. "
              "Re-run with --debug for the traceback and please report it.", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
