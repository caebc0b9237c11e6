#!/usr/bin/env Rscript
## Extra reference for Testing/lib/test_stats_nlmm.py: nlme's own ML algorithm (Lindstrom-Bates)
## run with tight tolerances, so that it stops at its fixed point instead of at the default
## pnlsTol = 1e-3. Used to check LuDoseResponseLib.stats.nlmm at ~1e-8 and to show where the
## public lb_fixed_point_ML numbers (analyze.R, BFGS inner step) are themselves not fully converged.
##
## Usage (R 4.2.2, nlme 3.1-162, jsonlite), from the repository root:
##   Rscript Testing/data/stats/nlme_tight.R ../shared/reference/stats/public Testing/data/stats/nlme_tight.json
suppressPackageStartupMessages({ library(nlme); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
pub <- args[1]; out_json <- args[2]

nls_coef <- function(d) {
  f <- tryCatch(nls(dv ~ A * (1 - exp(-dose_gy / s)), data = d, start = list(A = 0.8, s = 50)), error = function(e) NULL)
  if (is.null(f)) f <- nls(dv ~ A * (1 - exp(-dose_gy / s)), data = d, start = list(A = 0.8, s = 50),
                           algorithm = "port", lower = c(0, 1), upper = c(2, 1000))
  coef(f)
}
tight_fit <- function(d, fixed, start, tol) {
  ctrl <- nlmeControl(maxIter = 1000, pnlsMaxIter = 200, msMaxIter = 1000, niterEM = 100,
                      pnlsTol = tol, tolerance = tol, msTol = tol * 1e-2, returnObject = TRUE)
  warns <- character(0)
  f <- withCallingHandlers(
    nlme(dv ~ A * (1 - exp(-dose_gy / s)), data = d, fixed = fixed, random = A ~ 1 | patient,
         start = start, method = "ML", control = ctrl),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  V <- as.matrix(f$varFix)
  list(tol = tol, fixef = as.list(fixef(f)), fixef_se = as.list(sqrt(diag(V))),
       vcov = lapply(seq_len(nrow(V)), function(i) unname(V[i, ])),
       re_sd_A = f$sigma * sqrt(as.numeric(pdMatrix(f$modelStruct$reStruct)[[1]])),
       residual_sd = f$sigma, logLik = as.numeric(logLik(f)), n_iterations = f$numIter,
       warnings = unique(warns))
}
res <- list(meta = list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                        note = "nlme ML with maxIter=1000, pnlsMaxIter=200, msMaxIter=1000, niterEM=100, pnlsTol=tolerance=tol, msTol=tol/100; start = nls as analyze.R"))
for (csv in sort(list.files(pub, pattern = "\\.csv$", full.names = TRUE))) {
  dat <- read.csv(csv, stringsAsFactors = FALSE)
  dat$patient <- factor(dat$patient); dat$grade <- factor(dat$grade, levels = c("G1", "G2"))
  d2 <- droplevels(dat[dat$grade == "G2", ])
  c1 <- nls_coef(dat[dat$grade == "G1", ]); c2 <- nls_coef(d2)
  st_both <- c(c1[["A"]], c2[["A"]] - c1[["A"]], c1[["s"]], c2[["s"]] - c1[["s"]])
  one <- list()
  for (m in c("G2_only", "both_grades")) {
    fits <- lapply(c(1e-10, 1e-12), function(tol) tryCatch(
      if (m == "G2_only") tight_fit(d2, A + s ~ 1, c2, tol) else tight_fit(dat, list(A ~ grade, s ~ grade), st_both, tol),
      error = function(e) list(error = conditionMessage(e))))
    r <- fits[[2]]
    if (is.null(r$error) && is.null(fits[[1]]$error))
      r$max_rel_change_tol_1e10_to_1e12 <- max(abs(unlist(fits[[1]]$fixef) - unlist(r$fixef)) / abs(unlist(r$fixef)))
    one[[m]] <- r
  }
  res[[sub("\\.csv$", "", basename(csv))]] <- one
}
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null", na = "null"), out_json)
cat("wrote", out_json, "\n")
