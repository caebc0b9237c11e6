"""Stage 7, pipeline: one patient's study from its manifest to per-tumour results.

Inputs: a study manifest (TOML, ``contracts/study-manifest.md``). Outputs: the validated
:class:`~.study.Study` (:mod:`.study`) and, from :func:`~.patient.run_patient`, the per-tumour tables,
dose maps and run record. :mod:`.phantoms` writes digital patients (DICOM, .seg.nrrd, manifest, truth).
"""

from LuDoseResponseLib.pipeline.study import Study, load_manifest

__all__ = ["Study", "load_manifest"]
