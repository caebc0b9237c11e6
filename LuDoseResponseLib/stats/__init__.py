"""Stage 5, statistics: the model families of the dose-response analysis, on plain arrays.

:mod:`.lmm` (REML linear mixed model, Kenward–Roger, Satterthwaite), :mod:`.glmm` (binomial
GLMM, Laplace and AGQ), :mod:`.tcp` (the TCP curve with delta-method CI), :mod:`.roc` (pROC
conventions, DeLong, bootstrap) and :mod:`.nlmm` (the asymptotic dose-response NLMM). Imports
nothing from io, physics, dosimetry or response.
"""
