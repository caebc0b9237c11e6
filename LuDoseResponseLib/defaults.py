"""The analysis defaults, defined once (Warfvinge et al., J Nucl Med 2024;65:1070).

The library, the command line and the Slicer parameter node read these names; none of them
repeats a value.
"""

#: tumour grades (Ki-67 ≤ 2 % / 3–20 %)
GRADES = ("G1", "G2")

#: responder when Δv ≥ this: RECIST 1.1's 30 % diameter decrease is 1 − 0.7³ = 65.7 % in volume
RESPONDER_THRESHOLD = 0.66
#: tumours below this baseline CT volume are excluded from the dose analyses (the paper's < 4 cm³)
MIN_BASELINE_VOLUME_CM3 = 4.0
#: the paper's exploratory grouping of baseline volumes (Fig. 5)
BASELINE_VOLUME_CUTOFF_CM3 = 30.0

#: doses (Gy) at which TCP, odds, sensitivity and specificity are reported (the paper's 76 and 135 Gy)
REPORT_DOSES_GY = (76.0, 135.0)
#: TCP levels at which the dose is reported
TCP_TARGETS = (0.5, 0.9)
#: likelihood of the TCP GLMM: "laplace" or "agq" (adaptive Gauss–Hermite)
GLMM_METHODS = ("laplace", "agq")
GLMM_METHOD = "laplace"
#: nodes of the adaptive Gauss–Hermite quadrature (lme4's nAGQ)
AGQ_NODES = 25
#: ROC bootstrap replicates and seed
BOOTSTRAP_REPLICATES = 10000
BOOTSTRAP_SEED = 1
