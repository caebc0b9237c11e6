"""The cohort figures (matplotlib), after the paper's Figures 2–5 (Warfvinge et al. 2024).

- Fig. 2: absorbed dose by response, one panel per grade present;
- Fig. 3: TCP against dose for one grade (G2 by default, as in the paper): the GLMM curve solid within
  the grade's observed doses and dashed beyond (extrapolation), its pointwise 95 % band, the tumours
  at 0 (non-responder) and 1 (responder) nudged inwards only, the report doses (76 and 135 Gy) and the
  dose at the highest TCP target (D90) with its 95 % CI marked;
- Fig. 4: Δv against dose with the mixed asymptotic model, its band and the responder threshold;
- Fig. 5: Δv by baseline-volume group.

Patients keep one colour across figures (:func:`report_format.distinct_colours`, unique for any
number of patients). Figures are drawn at the size they are shown in the report (``DPI`` pixels per
inch, shown at 100 CSS px per inch) with 10–11 pt text. Files are written atomically as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from LuDoseResponseLib import defaults
from LuDoseResponseLib.analysis.report_format import distinct_colours, gy, pct
from LuDoseResponseLib.files import atomic_path
from LuDoseResponseLib.response.cohort import GRADES

DPI = 150
GRADE_LABELS = {"G1": "G1 (Ki-67 ≤ 2 %)", "G2": "G2 (Ki-67 3–20 %)"}
FIGURES = {
    "fig_dose_by_response": "Figure 2. Cumulative absorbed dose of responders (R) and non-responders (NR), per "
                            "grade; boxes: median and quartiles, whiskers 1.5 × IQR, points: tumours (spread "
                            "sideways for visibility).",
    "fig_tcp": "Figure 3. Tumour control probability (TCP) against cumulative absorbed dose: logistic mixed model "
               "(black; dashed beyond the observed doses), pointwise 95 % CI (grey), tumours at 1 (responder) or 0 "
               "(non-responder), one colour per patient.",
    "fig_dv_vs_dose": "Figure 4. Volume reduction Δv against cumulative absorbed dose: mixed asymptotic model "
                      "Δv = A(1 − e^(−D/s)) with its 95 % CI; error bars ±1 SD of the dose; one colour per patient.",
    "fig_dv_by_volume": "Figure 5. Volume reduction by baseline volume (all tumours, including those below the "
                        "volume cut-off).",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 11,
                         "legend.fontsize": 9.5, "xtick.labelsize": 10, "ytick.labelsize": 10})
    return plt


def patient_colours(patients) -> dict:
    names = sorted({str(p) for p in patients})
    return dict(zip(names, distinct_colours(len(names)), strict=True))


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        target = out_dir / f"{stem}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, bbox_inches="tight")
        paths.append(target)
    _pyplot().close(fig)
    return paths


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _grades_present(df) -> list[str]:
    return [g for g in GRADES if (df["grade"] == g).any()]


def _panels(n: int, width_in: float, height_in: float):
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width_in * max(n, 1), height_in), sharey=True, squeeze=False)
    return fig, list(axes[0])


def _box_panel(ax, groups: list[np.ndarray], labels: list[str], rng: np.random.Generator) -> None:
    """Box plot of each group with its points spread sideways on top (an empty group is labelled "none")."""
    ax.boxplot([x if len(x) else [np.nan] for x in groups], tick_labels=labels, widths=0.5, showfliers=False)
    for k, x in enumerate(groups, start=1):
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(x)), x, s=16, alpha=0.75, color="k")
        if not len(x):
            ax.text(k, 0.5, "none", transform=ax.get_xaxis_transform(), ha="center", color="0.4")


def fig_dose_by_response(df, out_dir: Path) -> list[Path]:
    grades = _grades_present(df)
    fig, axes = _panels(len(grades), 3.4, 4.0)
    rng = np.random.default_rng(0)
    for ax, g in zip(axes, grades, strict=False):
        d = df[df["grade"] == g]
        groups = [d.loc[d["responder"] == r, "dose_gy"].to_numpy() for r in (0, 1)]
        _box_panel(ax, groups, [f"NR (n = {len(groups[0])})", f"R (n = {len(groups[1])})"], rng)
        ax.set_title(GRADE_LABELS[g])
    axes[0].set_ylabel("Cumulative absorbed dose (Gy)")
    return _save(fig, out_dir, "fig_dose_by_response")


def tcp_grade(analysis: dict, df, preferred: str = "G2") -> str | None:
    """The grade of the TCP figure: ``preferred`` when it has a curve, else a grade that has one."""
    curves = (analysis.get("tcp") or {}).get("curves") or {}
    for g in (preferred, *GRADES):
        if curves.get(g) and (df["grade"] == g).any():
            return g
    return None


def _highest_target(pg: dict) -> tuple[str, dict] | None:
    items = [(k, v) for k, v in (pg.get("dose_at_tcp") or {}).items() if v.get("dose_gy") is not None]
    return max(items, key=lambda kv: float(kv[0])) if items else None


def fig_tcp(analysis: dict, df, out_dir: Path, grade: str = "G2") -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    colours = patient_colours(df["patient"])
    g = tcp_grade(analysis, df, grade)
    if g is None:
        ax.text(0.5, 0.5, "TCP model not estimated (see the TCP section)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, out_dir, "fig_tcp")
    tcp = analysis["tcp"]
    for curve in tcp["curves"].values():   # every grade's curve must be numbers, also those not drawn
        for key in ("dose_gy", "tcp", "ci_low", "ci_high"):
            _arr(curve[key])
    c = tcp["curves"][g]
    d = df[df["grade"] == g]
    x = np.asarray(c["dose_gy"], float)
    lo_obs, hi_obs = float(d["dose_gy"].min()), float(d["dose_gy"].max())
    pg = (tcp.get("per_grade") or {}).get(g, {})
    target = _highest_target(pg)
    x_end = max(hi_obs * 1.1, 150.0)
    if target and target[1]["dose_gy"] is not None:
        x_end = max(x_end, float(target[1]["dose_gy"]) * 1.1)
    x_end = min(x_end, float(x[-1]))
    show = x <= x_end
    inside = show & (x >= lo_obs) & (x <= hi_obs)
    y, low, high = _arr(c["tcp"]), _arr(c["ci_low"]), _arr(c["ci_high"])
    ax.fill_between(x[show], low[show], high[show], color="0.85", lw=0, label="95 % CI (pointwise)")
    ax.plot(x[show], y[show], color="k", lw=1.6, ls=(0, (4, 3)), label="extrapolation (beyond observed doses)")
    ax.plot(np.where(inside, x, np.nan), y, color="k", lw=2.4, label="TCP, logistic mixed model")
    # tumours at 0 / 1, nudged inwards only (never above 1 or below 0)
    nudge = np.random.default_rng(1).uniform(0.0, 0.035, len(d))
    resp = d["responder"].to_numpy(int)
    ax.scatter(d["dose_gy"], np.where(resp == 1, 1.0 - nudge, nudge), c=[colours[str(p)] for p in d["patient"]],
               s=30, edgecolors="k", linewidths=0.4, zorder=3, label="tumour (colour = patient)")
    for key, at in (pg.get("at_dose") or {}).items():
        dose = float(key)
        if dose <= x_end:
            ax.axvline(dose, color="tab:blue", lw=0.9, ls=":")
            ax.text(dose, 0.03, f" {gy(dose)} Gy\n TCP {pct(at.get('tcp'))}", color="tab:blue", fontsize=9.5,
                    va="bottom", ha="left")
    if target:
        key, v = target
        dose, low_ci, high_ci = v["dose_gy"], v.get("ci_low"), v.get("ci_high")
        p = float(key)
        if low_ci is not None and high_ci is not None:
            ax.errorbar([dose], [p], xerr=[[dose - max(low_ci, 0.0)], [min(high_ci, x_end) - dose]], fmt="none",
                        ecolor="tab:red", elinewidth=1.4, capsize=4, zorder=4)
        ax.plot([dose], [p], marker="D", color="tab:red", ms=7, zorder=5, ls="none",
                label=f"D{100 * p:g} = {gy(dose)} Gy" + (f" (95 % CI {gy(low_ci)} to {gy(high_ci)} Gy)"
                                                        if low_ci is not None and high_ci is not None else ""))
    ax.set_xlim(0, x_end)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Cumulative absorbed dose (Gy)")
    ax.set_ylabel("Tumour control probability")
    ax.set_title(f"{GRADE_LABELS[g]}: TCP against absorbed dose")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, out_dir, "fig_tcp")


def dose_response_curve(analysis: dict, g: str) -> tuple[dict | None, str]:
    """The curve of grade ``g`` from the both-grades model, else from the G2-only fit, and its name."""
    dr = analysis.get("dose_response") or {}
    c = ((dr.get("both_grades") or {}).get("curves") or {}).get(g)
    if c:
        return c, "both grades, grade as a factor"
    c = ((dr.get("G2_only") or {}).get("curves") or {}).get(g)
    return (c, "G2 tumours only") if c else (None, "")


def fig_dv_vs_dose(analysis: dict, df, out_dir: Path) -> list[Path]:
    grades = _grades_present(df)
    fig, axes = _panels(len(grades), 4.2, 4.2)
    colours = patient_colours(df["patient"])
    threshold = float((analysis.get("settings") or {}).get("responder_threshold", defaults.RESPONDER_THRESHOLD))
    for ax, g in zip(axes, grades, strict=False):
        d = df[df["grade"] == g]
        if "dose_gy_sd" in d.columns and d["dose_gy_sd"].notna().any():
            ax.errorbar(d["dose_gy"], d["dv"], xerr=d["dose_gy_sd"].fillna(0.0), fmt="none", ecolor="0.55",
                        elinewidth=0.8, capsize=2)
        ax.scatter(d["dose_gy"], d["dv"], c=[colours[str(p)] for p in d["patient"]], s=26, edgecolors="k",
                   linewidths=0.4, zorder=3, label="tumour (colour = patient)")
        c, name = dose_response_curve(analysis, g)
        if c:
            x = np.asarray(c["dose_gy"], float)
            show = x <= max(float(d["dose_gy"].max()) * 1.1, 50.0)
            ax.fill_between(x[show], _arr(c["ci_low"])[show], _arr(c["ci_high"])[show], color="0.85", lw=0,
                            label="95 % CI")
            ax.plot(x[show], _arr(c["dv"])[show], color="k", lw=2.2,
                    label=f"mixed asymptotic model\nΔv = A(1 − e^(−D/s)), {name}")
        else:
            ax.text(0.5, 0.92, "model not estimated", transform=ax.transAxes, ha="center", color="0.35")
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.9, label=f"responder threshold Δv = {pct(threshold)}")
        ax.set_title(GRADE_LABELS[g])
        ax.set_xlabel("Cumulative absorbed dose (Gy)")
        ax.set_ylim(-0.02, 1.05)
    axes[0].set_ylabel("Volume reduction Δv")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=2, frameon=False)
        fig.subplots_adjust(bottom=0.3)
    return _save(fig, out_dir, "fig_dv_vs_dose")


def fig_dv_by_volume(analysis: dict, df_all, out_dir: Path) -> list[Path]:
    cutoff = float((analysis.get("baseline_volume") or {}).get("cutoff_cm3", defaults.BASELINE_VOLUME_CUTOFF_CM3))
    grades = _grades_present(df_all)
    fig, axes = _panels(len(grades), 3.4, 4.0)
    rng = np.random.default_rng(0)
    for ax, g in zip(axes, grades, strict=False):
        d = df_all[df_all["grade"] == g]
        big = d["baseline_volume_cm3"] > cutoff
        _box_panel(ax, [d.loc[~big, "dv"].to_numpy(), d.loc[big, "dv"].to_numpy()],
                   [f"≤ {cutoff:g} cm³", f"> {cutoff:g} cm³"], rng)
        ax.set_title(GRADE_LABELS[g])
    axes[0].set_ylabel("Volume reduction Δv")
    return _save(fig, out_dir, "fig_dv_by_volume")


def write_figures(analysis: dict, tumours, out_dir: str | Path, tcp_grade: str = "G2") -> list[Path]:
    """Write the four figures as PNG and SVG into ``out_dir``; return their paths.

    ``tumours`` is the table of ``tumours.csv`` (all rows, with ``excluded``); ``tcp_grade`` the grade
    of the TCP figure (another grade is drawn when it has no curve).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = tumours[tumours["excluded"].astype(int) == 0]
    paths = []
    paths += fig_dose_by_response(kept, out_dir)
    paths += fig_tcp(analysis, kept, out_dir, tcp_grade)
    paths += fig_dv_vs_dose(analysis, kept, out_dir)
    paths += fig_dv_by_volume(analysis, tumours, out_dir)
    return paths
