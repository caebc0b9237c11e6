#!/usr/bin/env Rscript
## Extra GLMM reference: lme4::glmer refitted with a tight PIRLS tolerance (tolPwrss = 1e-14).
##
## Why: with the default tolPwrss = 1e-7, lme4's Laplace deviance is not the Laplace approximation at
## the conditional modes. PIRLS stops on a relative change of the penalised deviance below 1e-7 and
## log|L|^2 is taken from the Cholesky factor built with the weights of the *previous* iterate; every
## evaluation restarts from the linear predictor left by stage 1 (nAGQ = 0, bobyqa). The reported
## -2logLik then depends on where stage 1 stopped, by up to ~3e-4 when theta is large
## (paper_like_s1202 G1_only, unbalanced_s501 G2_only). The stale-weight error in log|L|^2 is first
## order in the last PIRLS step, i.e. of order sqrt(tolPwrss): still ~2e-6 at tolPwrss = 1e-12
## (paper_like_s1102 common_intercept) and below 1e-11 at 1e-13 or 1e-14. With tolPwrss -> 0 lme4
## converges to the exact Laplace objective, which is what LuDoseResponseLib.stats.glmm computes.
## AGQ (nAGQ = 25) is insensitive to this (the quadrature absorbs the stale scale) and is refitted too.
## polished.fixef_se_richardson: SEs from numDeriv::hessian (Richardson) of the tight objective at the
## estimate, an accurate-Hessian reference for the deriv12 (delta = 1e-4) SEs.
##
## Usage (from the repository root; needs R with lme4 and jsonlite):
##   Rscript Testing/data/stats/glmm_tight_pirls.R ../shared/reference/stats/public Testing/data/stats/glmm_tight_pirls.json
## Same computations and keys as reference/stats/R/analyze.R section (b), for the four models used
## by the tests.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(loadNamespace("numDeriv"))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript glmm_tight_pirls.R <public dir> <out.json>")
in_dir <- args[1]; out_json <- args[2]

TOL_PWRSS <- 1e-14
Z95 <- 1.96
DOSE_GRID <- seq(0, 400, by = 5)
DOSES_OF_INTEREST <- c(76, 135)
TCP_TARGETS <- c(0.5, 0.9)

models <- list(
  grade_sep = list(formula = responder ~ grade + dose_gy:grade + (1 | patient), subset = NULL),
  common_intercept = list(formula = responder ~ dose_gy + dose_gy:grade + (1 | patient), subset = NULL),
  G2_only = list(formula = responder ~ dose_gy + (1 | patient), subset = "G2"),
  G1_only = list(formula = responder ~ dose_gy + (1 | patient), subset = "G1")
)

mat2list <- function(m) {
  m <- as.matrix(m)
  list(rownames = rownames(m), colnames = colnames(m),
       values = lapply(seq_len(nrow(m)), function(i) unname(as.numeric(m[i, ]))))
}

xrow <- function(fit, grade, dose) {
  nd <- data.frame(grade = factor(rep(grade, length(dose)), levels = c("G1", "G2")), dose_gy = dose)
  tt <- delete.response(terms(fit, fixed.only = TRUE))
  X <- model.matrix(tt, nd)
  X[, names(fixef(fit)), drop = FALSE]
}

fit_one <- function(dat, spec, nAGQ) {
  d <- if (is.null(spec$subset)) dat else dat[dat$grade == spec$subset, ]
  warns <- character(0); msgs <- character(0)
  fit <- tryCatch(withCallingHandlers(
    glmer(spec$formula, data = d, family = binomial, nAGQ = nAGQ, control = glmerControl(tolPwrss = TOL_PWRSS)),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") }),
    error = function(e) e)
  if (inherits(fit, "error")) return(list(error = conditionMessage(fit)))
  beta <- fixef(fit)
  V <- as.matrix(vcov(fit))
  V_rx <- tryCatch(suppressWarnings(as.matrix(vcov(fit, use.hessian = FALSE))), error = function(e) NULL)
  dd <- glmer(spec$formula, data = d, family = binomial, nAGQ = nAGQ, devFunOnly = TRUE,
              control = glmerControl(tolPwrss = TOL_PWRSS))
  p0 <- c(getME(fit, "theta"), beta)
  o <- optim(p0, dd, method = "L-BFGS-B", lower = c(0, rep(-Inf, length(beta))),
             control = list(parscale = c(0.1, pmax(sqrt(diag(V)), 1e-8)), factr = 1, pgtol = 0, maxit = 5000))
  H_rich <- numDeriv::hessian(dd, p0)        # Richardson extrapolation on the (now smooth) objective
  V_rich <- tryCatch(2 * solve(H_rich)[-1, -1, drop = FALSE], error = function(e) NULL)
  grades <- if (is.null(spec$subset)) c("G1", "G2") else spec$subset
  per_grade <- list(); curves <- list()
  for (g in grades) {
    x0 <- xrow(fit, g, 0)[1, ]; x1 <- xrow(fit, g, 1)[1, ]
    ca <- x0; cb <- x1 - x0
    a <- sum(ca * beta); b <- sum(cb * beta)
    dose_at <- lapply(TCP_TARGETS, function(p) {
      Dp <- (qlogis(p) - a) / b
      grad <- -ca / b - cb * (qlogis(p) - a) / b^2
      list(tcp = p, dose_gy = Dp, se_delta = sqrt(drop(t(grad) %*% V %*% grad)))
    })
    X <- xrow(fit, g, DOSE_GRID)
    eta <- drop(X %*% beta); se_eta <- sqrt(rowSums((X %*% V) * X)); pr <- plogis(eta)
    curves[[g]] <- list(dose_gy = DOSE_GRID, eta = eta, se_eta = se_eta, tcp = pr,
                        lo_logit = plogis(eta - Z95 * se_eta), hi_logit = plogis(eta + Z95 * se_eta))
    Xd <- xrow(fit, g, DOSES_OF_INTEREST)
    etad <- drop(Xd %*% beta); sed <- sqrt(rowSums((Xd %*% V) * Xd)); pd <- plogis(etad)
    per_grade[[g]] <- list(intercept = a, intercept_se = sqrt(drop(t(ca) %*% V %*% ca)), slope_per_gy = b,
                           slope_se = sqrt(drop(t(cb) %*% V %*% cb)), dose_for_tcp = dose_at,
                           at_doses = list(dose_gy = DOSES_OF_INTEREST, eta = etad, se_eta = sed, tcp = pd,
                                           lo_logit = plogis(etad - Z95 * sed), hi_logit = plogis(etad + Z95 * sed),
                                           odds = exp(etad), odds_lo = exp(etad - Z95 * sed), odds_hi = exp(etad + Z95 * sed)))
  }
  derivs <- fit@optinfo$derivs
  list(formula = deparse(spec$formula), nAGQ = nAGQ, tolPwrss = TOL_PWRSS,
       fixef = as.list(beta), fixef_se = as.list(sqrt(diag(V))), vcov = mat2list(V),
       vcov_RX = if (is.null(V_rx)) NULL else mat2list(V_rx),
       hessian_deviance_theta_beta = if (is.null(derivs)) NULL else mat2list(derivs$Hessian),
       gradient_deviance_theta_beta = if (is.null(derivs)) NULL else derivs$gradient,
       theta = unname(getME(fit, "theta")), minus2logLik = -2 * as.numeric(logLik(fit)),
       is_singular = isSingular(fit), conv_messages = fit@optinfo$conv$lme4$messages,
       ranef_patient = as.list(setNames(ranef(fit)$patient[, 1], rownames(ranef(fit)$patient))),
       polished = list(par = as.list(setNames(o$par, c("theta1", names(beta)))), minus2logLik = o$value,
                       improvement_in_minus2logLik = dd(p0) - o$value,
                       fixef_se_richardson = if (is.null(V_rich)) NULL else
                         as.list(setNames(sqrt(pmax(diag(V_rich), 0)), names(beta)))),
       max_abs_eta = max(abs(predict(fit, re.form = NA))),
       per_grade = per_grade, tcp_curve = curves, warnings = I(unique(warns)), messages = I(unique(msgs)))
}

res <- list(meta = list(
  note = "lme4::glmer(family = binomial) with glmerControl(tolPwrss = 1e-14); see the header of glmm_tight_pirls.R",
  R_version = R.version.string,
  packages = lapply(setNames(nm = c("lme4", "Matrix", "jsonlite", "numDeriv")), function(p) as.character(packageVersion(p)))),
  datasets = list())
for (csv in sort(list.files(in_dir, pattern = "\\.csv$", full.names = TRUE))) {
  name <- sub("\\.csv$", "", basename(csv))
  dat <- read.csv(csv, stringsAsFactors = FALSE)
  dat$patient <- factor(dat$patient)
  dat$grade <- factor(dat$grade, levels = c("G1", "G2"))
  out <- list(csv_md5 = unname(tools::md5sum(csv)))
  for (mn in names(models)) {
    out[[mn]] <- list(laplace = fit_one(dat, models[[mn]], 1L), agq25 = fit_one(dat, models[[mn]], 25L))
  }
  res$datasets[[name]] <- out
  message(name, " done")
}
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = FALSE), out_json)
