"""The self-contained HTML report of a cohort analysis (``report.html``) and its figures.

The report opens with the answer in words (:mod:`.report_text`), defines its terms, and then gives
each analysis of the paper (Warfvinge et al. 2024) as a section with plain labels, its figure
(:mod:`.report_figures`) and its own warnings beside its numbers; a row of a table that could not be
estimated says why in its Notes column. Settings are a table. Figures are embedded as PNG data, so
the report is one file with no external reference; where the cohort table names each patient's
dosimetry page (column ``patient_report``, written by the cohort runner), the report links to it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from LuDoseResponseLib.analysis.report_figures import DPI, FIGURES, GRADE_LABELS, write_figures
from LuDoseResponseLib.analysis.report_format import (
    MISSING,
    error_note,
    esc,
    figure_html,
    gy,
    num,
    page,
    pct,
    plain_message,
    pvalue,
    table,
    warnings_list,
    yes_no,
)
from LuDoseResponseLib.analysis.report_text import answer_html, dose_ci_text, glossary_html, settings_table
from LuDoseResponseLib.files import write_text_atomic
from LuDoseResponseLib.response.cohort import GRADES

log = logging.getLogger(__name__)

__all__ = ["FIGURES", "write_figures", "write_report_html"]

#: column of the cohort table with the path of a patient's dosimetry page, relative to the table's folder
PATIENT_REPORT_COLUMN = "patient_report"
VARIABLES = {"dose_gy": "Absorbed dose (Gy)", "activity_gbq": "Administered activity (GBq)"}
DOSE_RESPONSE_VARIANTS = {"both_grades": "Both grades (grade as a factor)", "G2_only": "G2 tumours only"}


def _notes(block) -> str:
    """The Notes cell of a table row: why it is missing, or its warnings."""
    if not isinstance(block, dict) or not block:
        return "<span class='err'>not computed</span>"
    if "error" in block:
        return f"<span class='err'>Not estimated: {esc(plain_message(block['error']))}</span>"
    return "<br>".join(f"<span class='warn-inline'>⚠ {esc(plain_message(w))}</span>"
                       for w in block.get("warnings") or [])


def _mean_se(mean, se, fmt=gy) -> str:
    return MISSING if mean is None else f"{fmt(mean)} ({fmt(se)})"


def _section(ident: str, title: str, *parts: str) -> str:
    return f"<section id='{ident}'><h2>{esc(title)}</h2>" + "".join(parts) + "</section>"


def _figure(figures: dict[str, Path], stem: str) -> str:
    path = figures.get(stem)
    return figure_html(path, FIGURES[stem], DPI, f"{stem}") if path else ""


def _block_prefix_warnings(a: dict) -> list[str]:
    """Top-level warnings that belong to no block (the cohort table's own checks)."""
    blocks = {"response_groups", "response_groups_all_cycles", "tcp", "roc", "roc_predicted_tcp",
              "dose_response", "baseline_volume"}
    return [w for w in a.get("warnings") or [] if str(w).split(".")[0].split(":")[0] not in blocks]


def _section_summary(a: dict) -> str:
    s = a.get("summary", {})
    cols = ["all"] + [g for g in GRADES if (s.get(g) or {}).get("n_tumours")]

    def row(label, fn):
        return [esc(label)] + [fn(s.get(c) or {}) for c in cols]

    rows = [
        row("Tumours", lambda d: esc(d.get("n_tumours", MISSING))),
        row("Patients", lambda d: esc(d.get("n_patients", MISSING))),
        row("Responders (R)", lambda d: esc(d.get("n_responders", MISSING))),
        row("Non-responders (NR)", lambda d: esc(d.get("n_nonresponders", MISSING))),
        row("Median absorbed dose (Gy)", lambda d: gy(d.get("dose_median_gy"))),
        row("Absorbed dose range (Gy)", lambda d: f"{gy(d.get('dose_min_gy'))} to {gy(d.get('dose_max_gy'))}"),
        row("Median volume reduction Δv", lambda d: pct(d.get("dv_median"))),
        row("Median baseline volume (cm³)", lambda d: num(d.get("baseline_volume_median_cm3"))),
    ]
    header = [""] + ["All" if c == "all" else GRADE_LABELS[c] for c in cols]
    inp = a.get("input", {})
    note = (f"<p class='note'>{esc(inp.get('n_rows'))} tumours in the table, {esc(inp.get('n_excluded'))} excluded "
            "by the baseline-volume rule; the exploratory baseline-volume analysis uses all of them.</p>")
    return _section("cohort", "Cohort", table(header, rows), note,
                    warnings_list(_block_prefix_warnings(a), "Warnings about the cohort table"))


def _section_response_groups(a: dict, figures: dict, key: str = "response_groups") -> str:
    if key not in a:
        return ""
    rows = []
    for g in GRADES:
        for var, label in VARIABLES.items():
            b = (a.get(key) or {}).get(g, {}).get(var)
            if not isinstance(b, dict):
                continue
            ok = "error" not in b
            rows.append([GRADE_LABELS[g], esc(label),
                         _mean_se(b.get("mean_nonresponder"), b.get("se_nonresponder"), num) if ok else MISSING,
                         _mean_se(b.get("mean_responder"), b.get("se_responder"), num) if ok else MISSING,
                         num(b.get("difference")) if ok else MISSING, pvalue(b.get("p_value")) if ok else MISSING,
                         _notes(b)])
    header = ["Grade", "Variable", "Mean NR (SE)", "Mean R (SE)", "Difference R − NR", "p (KR)", "Notes"]
    if key == "response_groups":
        title = "Responders and non-responders (cf. paper Table 2)"
        intro = ("<p>Mean absorbed dose and administered activity of responders (R) and non-responders (NR), per "
                 "grade, from a linear mixed model with a random intercept per patient; p-value with "
                 "Kenward–Roger (KR) degrees of freedom.</p>")
        return _section("response_groups", title, intro, table(header, rows), _figure(figures, "fig_dose_by_response"))
    intro = ("<p>The same comparison with dose and activity summed over all delivered cycles and the best "
             "response after all treatment (the paper's complementary analysis).</p>")
    return _section(key, "Complementary: all delivered cycles", intro, table(header, rows))


def _tcp_grade_rows(t: dict) -> list[list[str]]:
    rows = []
    for g, pg in (t.get("per_grade") or {}).items():
        targets = "<br>".join(f"D{100 * float(k):g}: {gy(v.get('dose_gy'))} Gy ({esc(dose_ci_text(v))}; "
                              f"± {gy(v.get('se'))} Gy SE)" for k, v in (pg.get("dose_at_tcp") or {}).items())
        at = "<br>".join(f"{gy(float(k))} Gy: {pct(v.get('tcp'))} ({pct(v.get('ci_low'))} to {pct(v.get('ci_high'))})"
                         for k, v in (pg.get("at_dose") or {}).items())
        rows.append([GRADE_LABELS.get(g, esc(g)), f"{num(pg.get('intercept'))} ({num(pg.get('intercept_se'))})",
                     f"{num(pg.get('slope_per_gy'))} ({num(pg.get('slope_se'))})", targets, at])
    return rows


def _section_tcp(a: dict, figures: dict) -> str:
    t = a.get("tcp")
    failed = error_note(t)
    intro = ("<p>Probability of response against cumulative absorbed dose: logistic regression with a random "
             "intercept per patient and a dose slope per grade (common intercept, as in the paper); "
             "population level, 95 % CI on the logit scale.</p>")
    if failed:
        return _section("tcp", "Tumour control probability (TCP, cf. paper Fig. 3)", intro, failed)
    header = ["Grade", "Intercept β0 (SE)", "Dose slope per Gy (SE)", "Dose at TCP target", "TCP at dose (95 % CI)"]
    fit = (f"<p class='note'>Fit: {esc('Laplace' if t.get('method') == 'laplace' else 'adaptive quadrature')}; "
           f"SD of the patient intercept {num(t.get('random_intercept_sd'))} (logit scale); log-likelihood "
           f"{num(t.get('loglik'), 5)}; random effect on the boundary (singular): {yes_no(t.get('singular'))}; "
           f"converged: {yes_no(t.get('converged'))}; separation of responders by dose: "
           f"{yes_no(t.get('separation'))}. R formula: <code>{esc(t.get('formula', ''))}</code></p>")
    return _section("tcp", "Tumour control probability (TCP, cf. paper Fig. 3)", intro,
                    table(header, _tcp_grade_rows(t)), warnings_list(t.get("warnings")), fit,
                    _figure(figures, "fig_tcp"))


def _auc_ci(pair) -> str:
    return MISSING if not pair or None in pair else f"{num(pair[0], 2)} to {num(pair[1], 2)}"


def _section_roc(a: dict) -> str:
    rows = []
    for g in GRADES:
        r = (a.get("roc") or {}).get(g)
        if not isinstance(r, dict):
            continue
        ok = "error" not in r
        youden = "<br>".join(f"{gy(y['threshold_gy'])} Gy (sensitivity {num(y['sensitivity'], 2)}, specificity "
                             f"{num(y['specificity'], 2)})" for y in r.get("youden", []))
        at = "<br>".join(f"{gy(float(k))} Gy: sensitivity {num(v['sensitivity'], 2)}, specificity "
                         f"{num(v['specificity'], 2)}" for k, v in (r.get("at_dose") or {}).items())

        rows.append([GRADE_LABELS[g], num(r.get("auc"), 2) if ok else MISSING, _auc_ci(r.get("auc_ci_delong")),
                     _auc_ci(r.get("auc_ci_bootstrap")), youden, at, _notes(r)])
    intro = ("<p>How well the absorbed dose separates responders from non-responders (area under the ROC curve, "
             "AUC); a tumour is predicted to respond when its dose is at least the threshold, and sensitivity and "
             "specificity count how often that prediction is right for responders and non-responders.</p>")
    return _section("roc", "ROC of absorbed dose", intro,
                    table(["Grade", "AUC", "95 % CI (DeLong)", "95 % CI (bootstrap)", "Best threshold (Youden)",
                           "At dose", "Notes"], rows))


def _section_roc_predicted_tcp(a: dict) -> str:
    if "roc_predicted_tcp" not in a:
        return ""
    b = a["roc_predicted_tcp"]
    title = "ROC of the model-predicted TCP (extension)"
    failed = error_note(b)
    if failed:
        return _section("roc_predicted_tcp", title, failed)
    rows = []
    for g, pg in (b.get("per_grade") or {}).items():
        pop, cond = pg.get("population", {}), pg.get("conditional", {})
        youden = "<br>".join(
            f"TCP {pct(y['tcp'])} ↔ {gy(y['dose_gy'])} Gy (sensitivity {num(y['sensitivity'], 2)}, specificity "
            f"{num(y['specificity'], 2)}; odds {num(y['odds'])}, 95 % CI {num(y['odds_ci_low'])} to "
            f"{num(y['odds_ci_high'])})" for y in pg.get("youden_population", []))
        cond_youden = "<br>".join(f"TCP {pct(y['threshold_tcp'])}" for y in cond.get("youden", []))
        rows.append([GRADE_LABELS.get(g, esc(g)), num(pop.get("auc"), 2), _auc_ci(pop.get("auc_ci_delong")), youden,
                     num(cond.get("auc"), 2), _auc_ci(cond.get("auc_ci_delong")), cond_youden])
    intro = ("<p>The ROC of the TCP the model predicts per tumour: at population level (random effect 0; within a "
             "grade a monotone function of dose, so its AUC equals the dose AUC) and conditional on each "
             "patient's estimated effect. Odds at a TCP threshold t are t/(1 − t).</p>")
    return _section("roc_predicted_tcp", title, intro,
                    table(["Grade", "AUC (population)", "95 % CI (DeLong)", "Best threshold (population)",
                           "AUC (conditional)", "95 % CI (DeLong)", "Best threshold (conditional)"], rows),
                    warnings_list(b.get("warnings")))


def _section_dose_response(a: dict, figures: dict) -> str:
    parts = ["<p>Volume reduction against cumulative absorbed dose: Δv = A(1 − e^(−D/s)) with a random "
             "amplitude per patient (nonlinear mixed model, maximum likelihood). A is the plateau, s the dose "
             "scale.</p>"]
    for name, label in DOSE_RESPONSE_VARIANTS.items():
        block = (a.get("dose_response") or {}).get(name)
        parts.append(f"<div id='dose_response-{name}'><h3>{esc(label)}</h3>")
        failed = error_note(block)
        if failed:
            parts.append(failed + "</div>")
            continue
        rows = [[GRADE_LABELS.get(g, esc(g)), f"{pct(v.get('amplitude'))} ({pct(v.get('amplitude_se'))})",
                 f"{gy(v.get('scale_gy'))} ({gy(v.get('scale_gy_se'))})"]
                for g, v in (block.get("per_grade") or {}).items()]
        sw = block.get("shapiro_wilk") or {}
        parts += [table(["Grade", "Plateau A (SE)", "Dose scale s in Gy (SE)"], rows),
                  f"<p class='note'>SD of the patient amplitude {num(block.get('random_amplitude_sd'))}, residual SD "
                  f"{num(block.get('residual_sd'))}, log-likelihood {num(block.get('loglik'), 5)}; normality of "
                  f"residuals (Shapiro–Wilk) W = {num(sw.get('w'))}, p = {pvalue(sw.get('p_value'))}.</p>",
                  warnings_list(block.get("warnings")), "</div>"]
    parts.append(_figure(figures, "fig_dv_vs_dose"))
    return _section("dose_response", "Dose–response (cf. paper Fig. 4)", *parts)


def _section_baseline_volume(a: dict, figures: dict) -> str:
    bv = a.get("baseline_volume") or {}
    cutoff = gy(bv.get("cutoff_cm3"))
    rows = []
    for g in GRADES:
        b = bv.get(g)
        if not isinstance(b, dict):
            continue
        ok = "error" not in b
        rows.append([GRADE_LABELS[g], pct(b.get("mean_small")) if ok else MISSING,
                     pct(b.get("mean_large")) if ok else MISSING,
                     pct(b.get("difference"), 1) if ok else MISSING, pvalue(b.get("p_value")) if ok else MISSING,
                     _notes(b)])
    return _section("baseline_volume", f"Exploratory: baseline volume above {cutoff} cm³ (cf. paper Fig. 5)",
                    "<p>Mean volume reduction of small and large tumours (all tumours, also those below the volume "
                    "cut-off), linear mixed model with a random intercept per patient.</p>",
                    table(["Grade", f"Mean Δv ≤ {cutoff} cm³", f"Mean Δv > {cutoff} cm³", "Difference", "p (KR)",
                           "Notes"], rows), _figure(figures, "fig_dv_by_volume"))


def patient_pages(analysis: dict, tumours, out_dir: Path) -> dict[str, str]:
    """Patient → link (relative to ``out_dir``) of its dosimetry page, from the cohort table's
    ``patient_report`` column (paths relative to the cohort table's folder); pages that do not exist are left out."""
    if tumours is None or PATIENT_REPORT_COLUMN not in getattr(tumours, "columns", ()):
        return {}
    source = (analysis.get("input") or {}).get("path")
    if not source:
        return {}
    base = Path(source).resolve().parent
    pages = {}
    for patient, rel in tumours[["patient", PATIENT_REPORT_COLUMN]].dropna().drop_duplicates("patient").itertuples(
            index=False):
        target = base / str(rel)
        if target.is_file():
            pages[str(patient)] = Path(os.path.relpath(target, Path(out_dir).resolve())).as_posix()
    return pages


def _section_patients(pages: dict[str, str]) -> str:
    if not pages:
        return ""
    links = "".join(f"<li><a href='{esc(href)}'>{esc(p)}</a></li>" for p, href in sorted(pages.items()))
    return _section("patients", "Patients",
                    "<p>Each patient's dosimetry page: tumour table, time–activity and dose-rate curves with their "
                    f"fits, and dose-map slices over CT.</p><ul>{links}</ul>")


def write_report_html(analysis: dict, figure_paths: list[Path], out_dir: str | Path, tumours=None) -> Path:
    """Write ``report.html`` (words, tables, embedded PNG figures) into ``out_dir``.

    ``tumours`` (the table of ``tumours.csv``), when given, supplies the links to the patients' pages.
    """
    out_dir = Path(out_dir)
    figures = {p.stem: p for p in figure_paths if p.suffix == ".png"}
    inp = analysis.get("input", {})
    sw = analysis.get("software", {})
    head = (f"<h1>LuDoseResponse: tumour dose–response analysis</h1><p class='note'>Cohort table "
            f"<code>{esc(inp.get('path', ''))}</code> (SHA-256 {esc(str(inp.get('sha256', ''))[:16])}…). "
            f"{esc(sw.get('name', ''))} {esc(sw.get('version', ''))}.</p>")
    body = "".join([
        head, answer_html(analysis), glossary_html(analysis), _section_summary(analysis),
        _section_response_groups(analysis, figures), _section_tcp(analysis, figures), _section_roc(analysis),
        _section_roc_predicted_tcp(analysis), _section_dose_response(analysis, figures),
        _section_baseline_volume(analysis, figures),
        _section_response_groups(analysis, figures, "response_groups_all_cycles"),
        _section_patients(patient_pages(analysis, tumours, out_dir)), settings_table(analysis.get("settings", {})),
        "<p class='foot'>Method: Warfvinge et al., J Nucl Med 2024;65:1070. Statistics re-implemented in Python "
        "and validated against R 4.2.2 (lme4, nlme, emmeans, pbkrtest, pROC); see the README's Validation "
        "section.</p>",
    ])
    return write_text_atomic(out_dir / "report.html", page("LuDoseResponse report", body))
