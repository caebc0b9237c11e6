"""Figures of one patient's dosimetry page: time–activity and dose-rate curves, dose-map slices over CT.

- Curves: per cycle, each tumour's samples (``time_points.csv``) with the curve the time integration
  fitted (:data:`dosimetry.integration.models.CURVES`) and its pointwise 95 % band from the fit's
  parameter covariance (delta method, var f(t) = J Σ Jᵀ, J = ∂f/∂θ); a cycle integrated by the
  trapezoid rule shows its samples joined by straight lines.
- Slices: per cycle, the axial, coronal and sagittal planes through the hottest tumour voxel of the
  cycle's dose map, the CT (resampled onto the dose grid) in grey under the dose in colour (doses
  below 5 % of the maximum transparent), the tumour outlines of the cycle's segmentation (named), and a
  colour bar in Gy. Arrays are indexed [z, y, x] in LPS: axial slices show the patient's right on
  the left (radiological convention), coronal and sagittal slices head up.

Each figure is returned as PNG bytes, drawn at the size it is shown (``DPI``).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np

from LuDoseResponseLib.analysis.report_format import distinct_colours
from LuDoseResponseLib.dosimetry.integration.models import CURVES

DPI = 150
Z95 = 1.96
OUTLINE = "#39ff14"  # tumour outlines: a green that stands out from the grey CT and the dose colours
_CURVES = (("activity", "activity_mbq", "Activity in the tumour (MBq)"),
           ("dose_rate", "dose_rate_gy_per_h", "Mean dose rate (Gy/h)"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 11, "legend.fontsize": 9.5})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def fitted_curve(model: str, params: dict, covariance: dict | None, t: np.ndarray):
    """The fitted curve on ``t`` and its pointwise SD (None without a covariance); None for a method
    without a fitted model (trapezoid, single time point)."""
    curve = CURVES.get(model)
    if curve is None or not params or any(n not in params for n in curve.param_names):
        return None
    theta = np.array([params[n] for n in curve.param_names], float)
    y = curve.f(t, theta)
    if not covariance:
        return y, None
    order = [covariance["names"].index(n) for n in curve.param_names]
    cov = np.asarray(covariance["values"], float)[np.ix_(order, order)]
    jac = curve.jac(t, theta)
    var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return y, np.sqrt(np.clip(var, 0.0, None))


def tumour_colours(tumours) -> dict:
    names = sorted({str(t) for t in tumours})
    return dict(zip(names, distinct_colours(len(names)), strict=True))


def _json_cell(value):
    """A JSON cell of time_points.csv; pandas reads the JSON ``null`` (no covariance) as NaN."""
    return None if not isinstance(value, str) else json.loads(value)


def curves_figure(points, cycle: int) -> bytes:
    """Time–activity and dose-rate curves of every tumour in ``cycle`` (rows of ``time_points.csv``)."""
    plt = _pyplot()
    d = points[points["cycle"] == cycle]
    colours = tumour_colours(points["tumor"])
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    t_end = float(d["time_h"].max()) * 1.6 if len(d) else 1.0
    t = np.linspace(0.0, t_end, 300)
    for tumour, rows in d.groupby("tumor", sort=True):
        colour = colours[str(tumour)]
        for ax, (prefix, column, _) in zip(axes, _CURVES, strict=True):
            ax.plot(rows["time_h"], rows[column], "o", color=colour, mec="k", mew=0.4, ms=6, zorder=3,
                    label=str(tumour))
            first = rows.iloc[0]
            fit = fitted_curve(str(first[f"{prefix}_model"]), _json_cell(first[f"{prefix}_params"]),
                               _json_cell(first[f"{prefix}_covariance"]), t)
            if fit is None:
                ax.plot(rows["time_h"], rows[column], "-", color=colour, lw=1.2)
                continue
            y, sd = fit
            ax.plot(t, y, "-", color=colour, lw=1.6)
            if sd is not None:
                ax.fill_between(t, np.clip(y - Z95 * sd, 0, None), y + Z95 * sd, color=colour, alpha=0.18, lw=0)
    for ax, (_, column, label) in zip(axes, _CURVES, strict=True):
        ax.set_xlabel("Time after administration (h)")
        ax.set_ylabel(label)
        ax.set_xlim(0, t_end)
        positive = d[column][d[column] > 0]
        if len(positive) and positive.max() > 20 * positive.min():   # tumours of very different uptake
            ax.set_yscale("log")
            ax.set_ylim(positive.min() / 3, positive.max() * 2)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="Tumour")
    axes[0].set_title(f"Cycle {cycle}: activity")
    axes[1].set_title(f"Cycle {cycle}: dose rate")
    fig.subplots_adjust(wspace=0.28)
    return _png(fig)


def _plane(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(arr, index, axis=axis)


def slices_figure(dose_gy: np.ndarray, spacing_zyx: tuple[float, float, float], ct_hu: np.ndarray | None,
                  masks: dict[str, np.ndarray], title: str) -> bytes:
    """Axial, coronal and sagittal slices through the hottest tumour voxel (or the hottest voxel when
    there are no masks) of ``dose_gy`` [z, y, x], over ``ct_hu`` on the same grid."""
    plt = _pyplot()
    inside = np.zeros(dose_gy.shape, bool)
    for m in masks.values():
        inside |= m
    where = np.where(inside, dose_gy, -np.inf) if inside.any() else dose_gy
    k, j, i = np.unravel_index(int(np.argmax(where)), dose_gy.shape)
    vmax = float(np.nanmax(dose_gy)) if dose_gy.size else 1.0
    vmax = vmax if math.isfinite(vmax) and vmax > 0 else 1.0
    dz, dy, dx = spacing_zyx
    # (axis, index, aspect (row/col spacing), origin, label)
    planes = ((0, k, dy / dx, "upper", "axial"), (1, j, dz / dx, "lower", "coronal"),
              (2, i, dz / dy, "lower", "sagittal"))
    fig, axes = plt.subplots(1, 3, figsize=(10.4, 4.4))
    image = None
    for ax, (axis, index, aspect, origin, label) in zip(axes, planes, strict=True):
        if ct_hu is not None:
            ax.imshow(_plane(ct_hu, axis, index), cmap="gray", vmin=-300, vmax=400, aspect=aspect, origin=origin,
                      interpolation="nearest")
        dose = _plane(dose_gy, axis, index)
        image = ax.imshow(np.ma.masked_less(dose, 0.05 * vmax), cmap="inferno", vmin=0, vmax=vmax,
                          alpha=0.75 if ct_hu is not None else 1.0, aspect=aspect, origin=origin,
                          interpolation="nearest")
        for name, m in masks.items():
            plane = _plane(m, axis, index)
            if plane.any():
                # contour puts plane[0, 0] at (0, 0) like imshow's pixel coordinates, for either origin
                ax.contour(plane.astype(float), levels=[0.5], colors=[OUTLINE], linewidths=1.3)
                rows, cols = np.nonzero(plane)
                ax.text(cols.max() + 1.5, rows.mean(), name, color=OUTLINE, fontsize=9, va="center")
        ax.set_title(f"{label} (slice {index + 1})")
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(image, ax=list(axes), shrink=0.85, pad=0.02)
    bar.set_label("Absorbed dose (Gy)")
    fig.suptitle(title, fontsize=11.5)
    return _png(fig)
