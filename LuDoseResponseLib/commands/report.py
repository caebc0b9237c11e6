"""``ludoseresponse report DIR``: re-draw figures and report.html from an analysis folder."""

from __future__ import annotations

from pathlib import Path

from LuDoseResponseLib.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("report", help="re-make figures and report.html from DIR/analysis.json",
                       description="Read DIR/analysis.json and DIR/tumours.csv written by `analyze` and "
                                   "publish the figures and a self-contained report.html again, with the "
                                   "run's other files, as one set.")
    p.add_argument("folder", help="folder written by `ludoseresponse analyze`")
    p.set_defaults(func=run)


def run(args) -> int:
    from LuDoseResponseLib.analysis.outputs import ANALYSIS_JSON, REPORT_HTML, TUMOURS_CSV, rewrite_report

    folder = Path(args.folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give the folder written by `ludoseresponse analyze`")
    for name in (ANALYSIS_JSON, TUMOURS_CSV):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name} not found; run `ludoseresponse analyze COHORT.csv --out {folder}` first")
    files = rewrite_report(folder)
    print(f"wrote {files[REPORT_HTML]}")
    return 0
