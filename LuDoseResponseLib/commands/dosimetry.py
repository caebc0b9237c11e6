"""``ludoseresponse dosimetry MANIFEST --out DIR``: one patient's images → per-tumour doses and response."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("dosimetry", help="one patient: SPECT/CT + segmentations -> tumour doses and response",
                       description="Validate a study manifest (contracts/study-manifest.md) and write "
                                   "tumour_cycles.csv, tumours.csv, dose_cycle<N>.nrrd, run.json and, "
                                   "with kidney VOIs, organ_cycles.csv into DIR.")
    p.add_argument("manifest", help="study manifest (TOML)")
    p.add_argument("--out", required=True, help="output folder (re-running into it replaces the outputs)")
    p.add_argument("--rtdose", action="store_true", help="also write each cycle's dose map as DICOM RT Dose")
    p.add_argument("--dose-rate-maps", action="store_true",
                   help="also write the dose-rate map (Gy/h) of every SPECT time point, "
                        "dose_rate_cycle<N>_<hours>h.nrrd")
    p.set_defaults(func=run)


def run(args) -> int:
    from LuDoseResponseLib.pipeline.patient import run_patient

    def progress(stage: str, fraction: float) -> None:
        log.info("%s: %.0f %%", stage, 100 * fraction)

    paths = run_patient(args.manifest, args.out, rtdose=args.rtdose, dose_rate_maps=args.dose_rate_maps,
                        progress=progress)
    print(f"wrote {', '.join(sorted(paths))} -> {args.out}")
    return 0
