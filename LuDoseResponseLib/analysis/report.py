"""Figures (matplotlib) and a self-contained HTML report of a cohort analysis.

Figures follow the paper's Figures 2–5 (Warfvinge et al. 2024): dose box plots by response
and grade, the TCP curve with its CI band and points coloured by patient, Δv against dose
with the fitted asymptote and band, and Δv box plots by baseline-volume group.
Every file is written atomically; PNG figures are embedded in ``report.html`` so the report
is a single file.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import numpy as np

from LuDoseResponseLib import defaults
from LuDoseResponseLib.files import atomic_path, write_text_atomic
from LuDoseResponseLib.response.cohort import GRADES

log = logging.getLogger(__name__)

FIGURES = {
    "fig_dose_by_response": "Absorbed dose by response and grade (cf. paper Fig. 2)",
    "fig_tcp": "Tumour control probability vs absorbed dose, 95 % CI on the logit scale (cf. Fig. 3)",
    "fig_dv_vs_dose": "Volume reduction vs absorbed dose with the mixed asymptotic model (cf. Fig. 4)",
    "fig_dv_by_volume": "Volume reduction by baseline-volume group (cf. Fig. 5)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _patient_colours(patients) -> dict:
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    return {p: cmap(i % 20) for i, p in enumerate(sorted(set(patients)))}


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        target = out_dir / f"{stem}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight")
        paths.append(target)
    _pyplot().close(fig)
    return paths


def _box_panel(ax, groups: list[np.ndarray], labels: list[str], rng: np.random.Generator) -> None:
    """Box plot of each group with its points jittered on top (empty groups stay empty)."""
    if not sum(len(x) for x in groups):
        return
    ax.boxplot([x if len(x) else [np.nan] for x in groups], tick_labels=labels, widths=0.5, showfliers=False)
    for k, x in enumerate(groups, start=1):
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(x)), x, s=14, alpha=0.7, color="k")


def _fig_dose_by_response(df, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    rng = np.random.default_rng(0)
    for ax, g in zip(axes, GRADES, strict=True):
        d = df[df["grade"] == g]
        _box_panel(ax, [d.loc[d["responder"] == r, "dose_gy"].to_numpy() for r in (0, 1)],
                   ["Non-responders", "Responders"], rng)
        ax.set_title(g)
    axes[0].set_ylabel("Cumulative absorbed dose (Gy)")
    fig.suptitle(FIGURES["fig_dose_by_response"], fontsize=9)
    return _save(fig, out_dir, "fig_dose_by_response")


def _fig_tcp(analysis: dict, df, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    colours = _patient_colours(df["patient"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    curves = (analysis.get("tcp") or {}).get("curves") or {}
    for ax, g in zip(axes, GRADES, strict=True):
        c = curves.get(g)
        if c:
            x = np.asarray(c["dose_gy"], float)
            ax.fill_between(x, _arr(c["ci_low"]), _arr(c["ci_high"]), color="0.8", label="95 % CI")
            ax.plot(x, _arr(c["tcp"]), color="k", lw=2, label="TCP (GLMM)")
        d = df[df["grade"] == g]
        jitter = np.random.default_rng(1).uniform(-0.03, 0.03, len(d))
        ax.scatter(d["dose_gy"], d["responder"] + jitter, c=[colours[p] for p in d["patient"]], s=22,
                   edgecolors="k", linewidths=0.3)
        ax.set_title(g if c else f"{g} (model not estimated)")
        ax.set_xlabel("Cumulative absorbed dose (Gy)")
        ax.set_ylim(-0.08, 1.08)
    axes[0].set_ylabel("Tumour control probability")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(FIGURES["fig_tcp"], fontsize=9)
    return _save(fig, out_dir, "fig_tcp")


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _fig_dv_vs_dose(analysis: dict, df, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    colours = _patient_colours(df["patient"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    dr = analysis.get("dose_response") or {}
    threshold = float((analysis.get("settings") or {}).get("responder_threshold", defaults.RESPONDER_THRESHOLD))
    for ax, g in zip(axes, GRADES, strict=True):
        d = df[df["grade"] == g]
        if "dose_gy_sd" in d.columns and d["dose_gy_sd"].notna().any():
            ax.errorbar(d["dose_gy"], d["dv"], xerr=d["dose_gy_sd"].fillna(0.0), fmt="none", ecolor="0.5",
                        elinewidth=0.8, capsize=2)
        ax.scatter(d["dose_gy"], d["dv"], c=[colours[p] for p in d["patient"]], s=22, edgecolors="k",
                   linewidths=0.3, zorder=3)
        c = ((dr.get("both_grades") or {}).get("curves") or {}).get(g)
        if c is None and g == "G2":  # both-grades model not estimated: fall back to the G2-only fit
            c = ((dr.get("G2_only") or {}).get("curves") or {}).get(g)
        if c:
            x = np.asarray(c["dose_gy"], float)
            ax.fill_between(x, _arr(c["ci_low"]), _arr(c["ci_high"]), color="0.85")
            ax.plot(x, _arr(c["dv"]), color="k", lw=2)
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"responder threshold {threshold:g}")
        ax.set_title(g)
        ax.set_xlabel("Cumulative absorbed dose (Gy)")
    axes[0].set_ylabel("Volume reduction Δv")
    fig.suptitle(FIGURES["fig_dv_vs_dose"], fontsize=9)
    return _save(fig, out_dir, "fig_dv_vs_dose")


def _fig_dv_by_volume(analysis: dict, df_all, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    cutoff = float((analysis.get("baseline_volume") or {}).get("cutoff_cm3", 30.0))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    rng = np.random.default_rng(0)
    for ax, g in zip(axes, GRADES, strict=True):
        d = df_all[df_all["grade"] == g]
        big = d["baseline_volume_cm3"] > cutoff
        _box_panel(ax, [d.loc[~big, "dv"].to_numpy(), d.loc[big, "dv"].to_numpy()],
                   [f"≤ {cutoff:g} cm³", f"> {cutoff:g} cm³"], rng)
        ax.set_title(g)
    axes[0].set_ylabel("Volume reduction Δv")
    fig.suptitle(FIGURES["fig_dv_by_volume"], fontsize=9)
    return _save(fig, out_dir, "fig_dv_by_volume")


def write_figures(analysis: dict, tumours, out_dir: str | Path) -> list[Path]:
    """Write the four figures as PNG and SVG into ``out_dir``; return their paths.

    ``tumours`` is the table of ``tumours.csv`` (all rows, with ``excluded``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = tumours[tumours["excluded"].astype(int) == 0]
    paths = []
    paths += _fig_dose_by_response(kept, out_dir)
    paths += _fig_tcp(analysis, kept, out_dir)
    paths += _fig_dv_vs_dose(analysis, kept, out_dir)
    paths += _fig_dv_by_volume(analysis, tumours, out_dir)
    return paths


# ----------------------------------------------------------------------------------------- HTML

def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x, digits) for x in v) + "]"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _error_or(block, render) -> str:
    if not isinstance(block, dict):
        return "<p>not computed</p>"
    if "error" in block:
        return f"<p class='err'>Not estimated: {html.escape(str(block['error']))}</p>"
    return render(block)


def _section_summary(a: dict) -> str:
    s = a.get("summary", {})
    keys = ["n_tumours", "n_patients", "n_responders", "n_nonresponders", "dose_median_gy", "dose_min_gy",
            "dose_max_gy", "dv_median", "baseline_volume_median_cm3"]
    rows = [[k] + [s.get(g, {}).get(k) for g in ("all",) + GRADES] for k in keys]
    return "<h2>Cohort</h2>" + _table(["", "all", *GRADES], rows)


def _section_response_groups(a: dict, key: str = "response_groups",
                              title: str = "Responders vs non-responders (linear mixed model, Kenward–Roger; "
                                           "cf. Table 2)") -> str:
    if key not in a:
        return ""
    rows = []
    for g in GRADES:
        for var in ("dose_gy", "activity_gbq"):
            b = a.get(key, {}).get(g, {}).get(var, {})
            if "error" in b or not b:
                rows.append([g, var, b.get("error", "not computed"), None, None, None, None, None])
                continue
            rows.append([g, var, b.get("mean_nonresponder"), b.get("se_nonresponder"), b.get("mean_responder"),
                         b.get("se_responder"), b.get("p_value"), b.get("singular")])
    return (f"<h2>{html.escape(title)}</h2>"
            + _table(["grade", "variable", "mean NR", "SE NR", "mean R", "SE R", "p (KR)", "singular"], rows))


def _section_tcp(a: dict) -> str:
    def render(t):
        coef = [[k, v.get("estimate"), v.get("se")] for k, v in t.get("coefficients", {}).items()]
        rows = []
        for g, pg in t.get("per_grade", {}).items():
            d = pg.get("dose_at_tcp", {})
            at = pg.get("at_dose", {})
            rows.append([g, pg.get("intercept"), pg.get("intercept_se"), pg.get("slope_per_gy"), pg.get("slope_se"),
                         "; ".join(f"TCP {k}: {_fmt(v.get('dose_gy'))} ± {_fmt(v.get('se'))} Gy" for k, v in d.items()),
                         "; ".join(f"{k} Gy: {_fmt(v.get('tcp'))} ({_fmt(v.get('ci_low'))}–{_fmt(v.get('ci_high'))})"
                                   for k, v in at.items())])
        flags = (f"<p>method {_fmt(t.get('method'))}, random-intercept SD {_fmt(t.get('random_intercept_sd'))}, "
                 f"logLik {_fmt(t.get('loglik'))}, singular {_fmt(t.get('singular'))}, converged "
                 f"{_fmt(t.get('converged'))}, separation {_fmt(t.get('separation'))}</p>")
        return (f"<p><code>{html.escape(str(t.get('formula', '')))}</code></p>" + flags
                + _table(["coefficient", "estimate", "SE"], coef)
                + _table(["grade", "intercept", "SE", "slope (1/Gy)", "SE", "dose at TCP", "TCP at dose (95 % CI)"],
                         rows) + _warnings(t))
    return "<h2>Tumour control probability (logistic GLMM)</h2>" + _error_or(a.get("tcp"), render)


def _section_roc(a: dict) -> str:
    rows = []
    for g in GRADES:
        r = a.get("roc", {}).get(g, {})
        if "error" in r or not r:
            rows.append([g, r.get("error", "not computed"), None, None, None, None])
            continue
        youden = "; ".join(f"{_fmt(y['threshold_gy'])} Gy (sens {_fmt(y['sensitivity'])}, spec "
                           f"{_fmt(y['specificity'])})" for y in r.get("youden", []))
        at = "; ".join(f"{k} Gy: sens {_fmt(v['sensitivity'])}, spec {_fmt(v['specificity'])}"
                       for k, v in r.get("at_dose", {}).items())
        rows.append([g, r.get("auc"), r.get("auc_ci_delong"), r.get("auc_ci_bootstrap"), youden, at])
    return ("<h2>ROC of absorbed dose</h2>"
            + _table(["grade", "AUC", "95 % CI DeLong", "95 % CI bootstrap", "Youden threshold(s)", "at dose"], rows))


def _section_roc_predicted_tcp(a: dict) -> str:
    if "roc_predicted_tcp" not in a:
        return ""

    def render(b):
        rows = []
        for g, pg in b.get("per_grade", {}).items():
            pop, cond = pg.get("population", {}), pg.get("conditional", {})
            youden = "; ".join(
                f"TCP {_fmt(y['tcp'])} = {_fmt(y['dose_gy'])} Gy (sens {_fmt(y['sensitivity'])}, spec "
                f"{_fmt(y['specificity'])}; odds {_fmt(y['odds'])}, 95 % CI {_fmt(y['odds_ci_low'])}–"
                f"{_fmt(y['odds_ci_high'])})" for y in pg.get("youden_population", []))
            cond_youden = "; ".join(f"TCP {_fmt(y['threshold_tcp'])}" for y in cond.get("youden", []))
            rows.append([g, pop.get("auc"), pop.get("auc_ci_delong"), youden, cond.get("auc"),
                         cond.get("auc_ci_delong"), cond_youden])
        return (f"<p><code>{html.escape(str(b.get('formula', '')))}</code> (Laplace). Population level: random "
                "effect 0, a monotone function of dose within a grade (its AUC equals the dose AUC); conditional: "
                "with the patients' conditional modes. Odds at the threshold t are t/(1 − t), CI from the GLMM "
                "linear predictor at the threshold dose.</p>"
                + _table(["grade", "AUC (population)", "95 % CI DeLong", "Youden threshold (population)",
                          "AUC (conditional)", "95 % CI DeLong", "Youden threshold (conditional)"], rows)
                + _warnings(b))
    return "<h2>ROC of the model-predicted TCP (extension)</h2>" + _error_or(a.get("roc_predicted_tcp"), render)


def _section_dose_response(a: dict) -> str:
    out = "<h2>Dose–response (mixed asymptotic model Δv = A(1 − e^(−D/s)))</h2>"
    for name, block in (a.get("dose_response") or {}).items():
        def render(b):
            rows = [[g, v.get("amplitude"), v.get("amplitude_se"), v.get("scale_gy"), v.get("scale_gy_se")]
                    for g, v in b.get("per_grade", {}).items()]
            sw = b.get("shapiro_wilk") or {}
            return (_table(["grade", "A", "SE", "s (Gy)", "SE"], rows)
                    + f"<p>random-amplitude SD {_fmt(b.get('random_amplitude_sd'))}, residual SD "
                      f"{_fmt(b.get('residual_sd'))}, logLik {_fmt(b.get('loglik'))}, Shapiro–Wilk W "
                      f"{_fmt(sw.get('w'))} (p {_fmt(sw.get('p_value'))})</p>" + _warnings(b))
        out += f"<h3>{html.escape(name)}</h3>" + _error_or(block, render)
    return out


def _section_baseline_volume(a: dict) -> str:
    bv = a.get("baseline_volume") or {}
    rows = []
    for g in GRADES:
        b = bv.get(g, {})
        if "error" in b or not b:
            rows.append([g, b.get("error", "not computed"), None, None, None])
            continue
        rows.append([g, b.get("mean_small"), b.get("mean_large"), b.get("difference"), b.get("p_value")])
    return (f"<h2>Exploratory: baseline volume above {_fmt(bv.get('cutoff_cm3'))} cm³ (all tumours)</h2>"
            + _table(["grade", "mean Δv small", "mean Δv large", "difference", "p (KR)"], rows))


def _warnings(block: dict) -> str:
    w = block.get("warnings") or []
    if not w:
        return ""
    return "<ul class='warn'>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in w) + "</ul>"


def write_report_html(analysis: dict, figure_paths: list[Path], out_dir: str | Path) -> Path:
    """Write ``report.html`` (tables + embedded PNG figures) into ``out_dir``."""
    out_dir = Path(out_dir)
    figs = ""
    for p in figure_paths:
        if p.suffix != ".png":
            continue
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        caption = html.escape(FIGURES.get(p.stem, p.stem))
        figs += (f"<figure><img alt='{caption}' src='data:image/png;base64,{b64}'/>"
                 f"<figcaption>{caption}</figcaption></figure>")
    inp = analysis.get("input", {})
    sw = analysis.get("software", {})
    body = "".join([
        f"<h1>LuDoseResponse cohort analysis</h1><p>Input <code>{html.escape(str(inp.get('path', '')))}</code> "
        f"(sha256 {html.escape(str(inp.get('sha256', ''))[:16])}…), {inp.get('n_rows')} rows, "
        f"{inp.get('n_excluded')} excluded. {html.escape(sw.get('name', ''))} {html.escape(sw.get('version', ''))}, "
        f"schema {html.escape(str(analysis.get('schema', '')))}.</p>",
        f"<p>Settings: {html.escape(str(analysis.get('settings', {})))}</p>",
        _section_summary(analysis), _section_response_groups(analysis),
        _section_response_groups(analysis, "response_groups_all_cycles",
                                 "Complementary: dose and activity over all delivered cycles"),
        _section_tcp(analysis),
        _section_roc(analysis), _section_roc_predicted_tcp(analysis), _section_dose_response(analysis),
        _section_baseline_volume(analysis),
        "<h2>Warnings</h2>" + (_warnings(analysis) or "<p>none</p>"),
        "<h2>Figures</h2>" + figs,
        "<p class='foot'>Method: Warfvinge et al., J Nucl Med 2024;65:1070. Statistics re-implemented in Python "
        "and validated against R 4.2.2 (lme4, nlme, emmeans, pbkrtest, pROC); see the README's Validation "
        "section.</p>",
    ])
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 7px;"
             "font-size:13px;text-align:right}th{background:#eee}.err{color:#a00}.warn{color:#a60}"
             "figure{display:inline-block;margin:.5em}img{max-width:520px}.foot{color:#666;font-size:12px}")
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>LuDoseResponse report</title>"
           f"<style>{style}</style></head><body>{body}</body></html>")
    return write_text_atomic(out_dir / "report.html", doc)
