"""``ludoseresponse inspect PATH [--json] [--series-uid UID]``: what was read, and from which tag.

PATH is a DICOM folder (every series in it), a DICOM file, or an NRRD/NIfTI/MetaImage file.
``--json`` prints a JSON list with one flat object per series (``SeriesMetadata.to_dict``):
modality, patient_id, series_uid, acquired_at, duration_s, administered_at, activity_mbq,
hours_since_administration, units, size, spacing_mm, origin_mm, frame_of_reference_uid,
sources (field → tag) and warnings, among others. Unknown values are null, never guessed.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings

#: fields shown by the text output, in this order
_TEXT_FIELDS = (
    "modality", "patient_id", "study_uid", "series_uid", "series_description", "manufacturer",
    "acquired_at", "duration_s", "administered_at", "activity_mbq", "hours_since_administration",
    "half_life_h", "radionuclide", "units", "decay_correction", "size", "spacing_mm", "origin_mm",
    "frame_of_reference_uid",
)


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show what the DICOM headers say: times, activity, units, geometry",
                       description="Read the headers of every series at PATH (a DICOM folder or file, or an "
                                   "NRRD/NIfTI/MetaImage file) and show each value with the tag it came "
                                   "from, and every fallback or inconsistency as a warning.")
    p.add_argument("path", help="DICOM folder or file, or NRRD/NIfTI/MetaImage file")
    p.add_argument("--json", action="store_true", help="print a JSON list, one flat object per series")
    p.add_argument("--series-uid", help="show only the series with this SeriesInstanceUID")
    p.set_defaults(func=run)


def _format(value) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def run(args) -> int:
    from LuDoseResponseLib.io import dicom

    with warnings.catch_warnings():
        if not args.debug:
            # pydicom's own notes on odd values repeat what the warnings list says, tag by tag
            warnings.filterwarnings("ignore", module="pydicom")
            logging.getLogger("pydicom").setLevel(logging.ERROR)
        if args.series_uid:
            found = [dicom.read_metadata(args.path, series_uid=args.series_uid)]
        else:
            found = dicom.inspect(args.path)
    records = [m.to_dict() for m in found]
    if args.json:
        sys.stdout.write(json.dumps(records, indent=2, allow_nan=False) + "\n")
        return 0
    lines = []
    for n, rec in enumerate(records, start=1):
        lines.append(f"Series {n} of {len(records)}: {rec['path']} ({rec['n_files']} file(s))")
        for key in _TEXT_FIELDS:
            source = rec["sources"].get(key, "")
            lines.append(f"  {key:<27} {_format(rec[key]):<40} {source}".rstrip())
        if rec["warnings"]:
            lines.append("  warnings:")
            lines += [f"    - {w}" for w in rec["warnings"]]
        lines.append("")
    sys.stdout.write("\n".join(lines))
    return 0
