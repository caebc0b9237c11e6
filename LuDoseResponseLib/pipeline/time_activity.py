"""Per-tumour time–activity samples of a study: the VOI activities the patient pipeline integrates.

For every cycle, SPECT time point and tumour: the tumour's activity in MBq, the mean activity
concentration of the quantified SPECT (counts → Bq/mL, :func:`quantify_spect`) over the tumour's mask
on the SPECT grid times the mask volume; with PVC (``settings.pvc``) also the corrected activity. The
quantification, the masks and the PVC factors are those of :func:`patient.run_patient` (its
``_masks_on_grid`` and ``_pvc_factors``), so the time integral of ``activity_pvc_mbq`` is the
``tia_mbq_h`` of ``tumour_cycles.csv``. Used to plot time–activity curves; no pixel is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LuDoseResponseLib.dosimetry.integration import voi_mean_values
from LuDoseResponseLib.dosimetry.quantification import quantify_spect
from LuDoseResponseLib.imaging import voxel_volume_ml
from LuDoseResponseLib.pipeline.patient import _masks_on_grid, _pvc_factors
from LuDoseResponseLib.pipeline.study import Study
from LuDoseResponseLib.response.tumour_rows import tumour_id


@dataclass(frozen=True)
class ActivitySample:
    """One tumour's activity at one SPECT time point (``tumor`` as in tumours.csv: patient.name)."""

    tumor: str
    cycle: int
    hours_since_administration: float
    activity_mbq: float
    activity_pvc_mbq: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def time_activity_samples(study: Study) -> list[ActivitySample]:
    """Every tumour's VOI activity (measured and partial-volume corrected, MBq) at every SPECT time point."""
    samples: list[ActivitySample] = []
    for cycle in study.cycles:
        activities = []
        for tp in cycle.spect:
            q = quantify_spect(tp.load_image(), units=tp.units, calibration_cps_per_mbq=cycle.calibration_cps_per_mbq,
                               duration_s=tp.duration_s, name=tp.key)
            activities.append(q.image)
        if not activities:
            continue
        masks = _masks_on_grid(cycle, activities[0])
        vox_ml = voxel_volume_ml(activities[0])
        factors = [_pvc_factors(study, a, masks, tp.key, []) for a, tp in zip(activities, cycle.spect, strict=True)]
        for name, mask in masks.items():
            what = f"tumour {name!r}, cycle {cycle.number}"
            measured = voi_mean_values(activities, mask, what=what) * float(mask.sum()) * vox_ml * 1e-6
            pvc = np.array([f[name] for f in factors])
            for tp, a, a_pvc in zip(cycle.spect, measured, measured * pvc, strict=True):
                samples.append(ActivitySample(tumour_id(study.patient.id, name), cycle.number,
                                              float(tp.hours_since_administration), float(a), float(a_pvc)))
    return samples
