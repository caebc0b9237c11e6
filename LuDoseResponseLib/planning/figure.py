"""The plan's figure: mean TCP and the most exposed kidney's cumulative BED against the number of cycles."""

from __future__ import annotations

from pathlib import Path

from LuDoseResponseLib.files import atomic_path


def plan_figure(plan, path: Path) -> Path:
    """Two panels (fixed and free schedules): mean TCP with its 95 % CI; max kidney BED with the limit."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_tcp, ax_bed) = plt.subplots(1, 2, figsize=(10, 4.2))
    styles = {"fixed": ("o-", f"fixed {plan.settings.fixed_activity_gbq:g} GBq/cycle"),
              "free": ("s--", f"free {plan.settings.min_activity_gbq:g}-{plan.settings.max_activity_gbq:g} GBq/cycle")}
    for kind, (style, label) in styles.items():
        es = [e for e in plan.evaluations if e.schedule.kind == kind or (kind == "free" and not e.schedule.cycles)]
        if not es:
            continue
        ok = [e for e in es if e.feasible]
        bad = [e for e in es if not e.feasible]
        tcp = [e.objective_tcp for e in ok]
        err = [[t - e.objective_ci[0] for t, e in zip(tcp, ok, strict=True)],
               [e.objective_ci[1] - t for t, e in zip(tcp, ok, strict=True)]]
        line = ax_tcp.errorbar([e.schedule.n_cycles for e in ok], tcp, yerr=err, fmt=style, capsize=3, label=label)
        colour = line[0].get_color()
        ax_tcp.plot([e.schedule.n_cycles for e in bad], [e.objective_tcp for e in bad], "x", color=colour, alpha=0.5,
                    label=f"{kind}: over the kidney limit" if bad else None)
        ax_bed.plot([e.schedule.n_cycles for e in es], [e.max_kidney_bed_gy for e in es], style, color=colour,
                    label=label)
        ax_bed.plot([e.schedule.n_cycles for e in bad], [e.max_kidney_bed_gy for e in bad], "x", color="red",
                    markersize=9, label=None)
    best = plan.best
    if best is not None:
        ax_tcp.plot([best.schedule.n_cycles], [best.objective_tcp], "*", color="gold", markersize=16,
                    markeredgecolor="k", label=f"recommended: {best.schedule.label}")
    ax_bed.axhline(plan.settings.kidney_bed_limit_gy, color="red", lw=1,
                   label=f"limit {plan.settings.kidney_bed_limit_gy:g} Gy")
    ax_tcp.set(xlabel="further cycles", ylabel="mean TCP over tumours", ylim=(0, 1))
    ax_bed.set(xlabel="further cycles", ylabel="predicted max kidney BED (Gy)")
    for ax in (ax_tcp, ax_bed):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Patient {plan.patient_id} ({plan.grade}) - RESEARCH TOOL, NOT FOR CLINICAL DECISIONS", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
