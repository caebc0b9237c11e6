"""Statistical models of the dose-response analysis (LMM, GLMM/TCP, ROC, NLMM)."""
