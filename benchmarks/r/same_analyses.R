#!/usr/bin/env Rscript
## The analyses that `ludoseresponse analyze` runs, done in R with the paper's packages, for timing.
## Usage: Rscript same_analyses.R cohort.csv [n_repeat]
## Prints one line: "elapsed_s=<seconds per run>" (median over n_repeat runs, package loading excluded).
suppressPackageStartupMessages({
  library(lme4); library(emmeans); library(pROC); library(nlme)
})
invisible(loadNamespace("pbkrtest")); invisible(loadNamespace("lmerTest"))
args <- commandArgs(trailingOnly = TRUE)
dat <- read.csv(args[1], stringsAsFactors = FALSE)
n_rep <- if (length(args) > 1) as.integer(args[2]) else 1L
dat$patient <- factor(dat$patient); dat$grade <- factor(dat$grade, levels = c("G1", "G2"))
dat$responder <- as.integer(dat$dv >= 0.66)

one_run <- function() {
  q <- function(expr) tryCatch(suppressWarnings(suppressMessages(expr)), error = function(e) NULL)
  for (g in c("G1", "G2")) {
    d <- dat[dat$grade == g, ]; d$responder <- factor(d$responder, levels = c(0, 1))
    for (y in c("dose_gy", "activity_gbq")) {
      fit <- q(lmer(as.formula(paste(y, "~ responder + (1|patient)")), data = d, REML = TRUE))
      if (!is.null(fit)) {
        q(pairs(emmeans(fit, ~ responder, lmer.df = "kenward-roger")))
        q(summary(pairs(emmeans(fit, ~ responder, lmer.df = "satterthwaite"))))
      }
    }
    d$big <- d$baseline_volume_cm3 > 30
    fit <- q(lmer(dv ~ big + (1|patient), data = d))
    if (!is.null(fit)) q(summary(pairs(emmeans(fit, ~ big, lmer.df = "kenward-roger"))))
  }
  q(glmer(responder ~ dose_gy + dose_gy:grade + (1 | patient), data = dat, family = binomial))
  for (g in c("G1", "G2")) {
    d <- dat[dat$grade == g, ]
    r <- q(roc(d$responder, d$dose_gy, levels = c(0, 1), direction = "auto", quiet = TRUE))
    if (!is.null(r)) {
      q(ci.auc(r, method = "delong")); set.seed(1)
      q(ci.auc(r, method = "bootstrap", boot.n = 10000, boot.stratified = TRUE, progress = "none"))
      q(coords(r, x = "best", best.method = "youden")); q(coords(r, x = c(76, 135), input = "threshold"))
    }
  }
  d2 <- dat[dat$grade == "G2", ]; d2$patient <- droplevels(d2$patient)
  st <- coef(q(nls(dv ~ A * (1 - exp(-dose_gy / s)), data = d2, start = list(A = 0.8, s = 50))))
  q(nlme(dv ~ A * (1 - exp(-dose_gy / s)), data = d2, fixed = A + s ~ 1, random = A ~ 1 | patient, start = st))
  d1 <- dat[dat$grade == "G1", ]
  s1 <- coef(q(nls(dv ~ A * (1 - exp(-dose_gy / s)), data = d1, start = list(A = 0.8, s = 50))))
  if (!is.null(s1) && !is.null(st)) {
    q(nlme(dv ~ A * (1 - exp(-dose_gy / s)), data = dat, fixed = list(A ~ grade, s ~ grade),
           random = A ~ 1 | patient, start = c(s1[["A"]], st[["A"]] - s1[["A"]], s1[["s"]], st[["s"]] - s1[["s"]])))
  }
}
invisible(one_run())  # warm-up: first calls load lazily loaded code
times <- replicate(n_rep, unname(system.time(one_run())["elapsed"]))
cat(sprintf("elapsed_s=%.4f\n", median(times)))
