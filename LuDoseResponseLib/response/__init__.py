"""Stage 4, response: tumour volumes over follow-up CTs, and the cohort table.

Inputs: follow-up segmentations with dates, per-tumour doses per cycle.
Outputs: volumes and Δv = (v_max − v_min)/v_max with the responder flag (:mod:`.volumetry`),
cohort-table rows of one patient (:mod:`.tumour_rows`), the validated cohort table with its
exclusions (:mod:`.cohort`), and a synthetic paper-like cohort (:mod:`.synthetic_cohort`).
"""

from LuDoseResponseLib.response.cohort import Cohort, cohort_output_table, load_cohort_csv, validate_cohort_table
from LuDoseResponseLib.response.synthetic_cohort import generate_cohort
from LuDoseResponseLib.response.tumour_rows import tumour_cycles_table, tumour_rows
from LuDoseResponseLib.response.volumetry import read_segmentation, response_metrics, volumes_over_time

__all__ = [
    "Cohort", "cohort_output_table", "generate_cohort", "load_cohort_csv", "read_segmentation", "response_metrics",
    "tumour_cycles_table", "tumour_rows", "validate_cohort_table", "volumes_over_time",
]
