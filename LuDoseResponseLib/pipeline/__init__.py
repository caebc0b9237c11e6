"""Stage 7, pipeline: one patient's study from its manifest to per-tumour results.

Inputs: a study manifest (TOML, ``contracts/study-manifest.md``). Outputs: the validated
:class:`~.study.Study` (:mod:`.study`); the patient pipeline that runs the earlier stages on it
comes later.
"""

from LuDoseResponseLib.pipeline.study import Study, load_manifest

__all__ = ["Study", "load_manifest"]
