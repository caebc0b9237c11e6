"""Dosimetry-guided treatment planning (issue 15): predicted doses of future cycles, schedules under the
kidney BED limit, and the schedule that maximises the expected tumour control. A research tool."""

from LuDoseResponseLib.planning.inputs import PatientDosimetry, read_dosimetry
from LuDoseResponseLib.planning.plan import Plan, PlanSettings, plan_from_folder, plan_treatment, write_plan
from LuDoseResponseLib.planning.prediction import TrendModel, fit_dose_per_gbq
from LuDoseResponseLib.planning.tcp_curve import TcpCurve, paper_tcp_curve, tcp_curve_from_analysis

__all__ = ["PatientDosimetry", "Plan", "PlanSettings", "TcpCurve", "TrendModel", "fit_dose_per_gbq",
           "paper_tcp_curve", "plan_from_folder", "plan_treatment", "read_dosimetry", "tcp_curve_from_analysis",
           "write_plan"]
