"""``ludoseresponse report DIR``: re-draw figures and report.html from an analysis folder."""

from __future__ import annotations

import json
from pathlib import Path

from LuDoseResponseLib.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("report", help="re-make figures and report.html from DIR/analysis.json",
                       description="Read DIR/analysis.json and DIR/tumours.csv written by `analyze` and "
                                   "write the figures and a self-contained report.html again.")
    p.add_argument("folder", help="folder written by `ludoseresponse analyze`")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from LuDoseResponseLib.analysis.cohort_analysis import SCHEMA
    from LuDoseResponseLib.analysis.report import write_figures, write_report_html

    folder = Path(args.folder)
    aj, tc = folder / "analysis.json", folder / "tumours.csv"
    for f in (aj, tc):
        if not f.is_file():
            raise InputError(f"{f} not found; run `ludoseresponse analyze COHORT.csv --out {folder}` first")
    try:
        analysis = json.loads(aj.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{aj} is not valid JSON ({exc})") from None
    if analysis.get("schema") != SCHEMA:
        raise InputError(f"{aj} has schema {analysis.get('schema')!r}; this version reads {SCHEMA}")
    tumours = pd.read_csv(tc)
    figures = write_figures(analysis, tumours, folder)
    path = write_report_html(analysis, figures, folder)
    print(f"wrote {path}")
    return 0
