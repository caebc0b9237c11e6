"""Stage 3, dosimetry: activity images to absorbed doses with their uncertainty.

Inputs: SimpleITK images (counts or Bq/mL) with their metadata, tumour masks, kernels.
Outputs: Bq/mL images (:mod:`.quantification`), dose-rate maps in Gy/h (:mod:`.doserate`),
time integrals per tumour and per voxel (:mod:`.integration`, :mod:`.voxelwise_integration`)
and the EANM-style uncertainty budget (:mod:`.uncertainty`). Uses physics and io.
"""

from LuDoseResponseLib.dosimetry.doserate import dose_rate_map
from LuDoseResponseLib.dosimetry.integration import TimeIntegral, sum_cycles, time_integral
from LuDoseResponseLib.dosimetry.pvc import gtm, numerical_recovery_coefficient, recovery_coefficient
from LuDoseResponseLib.dosimetry.pvc_correction import PvcResult, correct_partial_volume, scale_dose_map
from LuDoseResponseLib.dosimetry.quantification import QuantifiedSpect, quantify_spect
from LuDoseResponseLib.dosimetry.rc_curve import PhantomRecoveryCurve
from LuDoseResponseLib.dosimetry.segmentation import SpectSegmentation, search_region_from_ct, segment_tumour
from LuDoseResponseLib.dosimetry.uncertainty import DoseUncertainty, cycle_dose_uncertainty
from LuDoseResponseLib.dosimetry.voxelwise_integration import VoxelwiseIntegral, voxelwise_time_integral

__all__ = [
    "DoseUncertainty", "QuantifiedSpect", "TimeIntegral", "VoxelwiseIntegral", "cycle_dose_uncertainty",
    "dose_rate_map", "quantify_spect", "sum_cycles", "time_integral", "voxelwise_time_integral",
]
__all__ += [
    "PhantomRecoveryCurve", "PvcResult", "SpectSegmentation", "correct_partial_volume", "gtm",
    "numerical_recovery_coefficient", "recovery_coefficient", "scale_dose_map", "search_region_from_ct",
    "segment_tumour",
]
