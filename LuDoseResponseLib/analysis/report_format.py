"""Building blocks of the self-contained HTML reports: number formats, tables, warnings, embedded figures.

Numbers are shown with the digits a reader needs: doses to 4 significant digits (never in
scientific notation), probabilities as percentages, p-values to 2 significant digits (``< 0.001``
below that), other numbers to 3 significant digits. Missing values are shown as "–" with, where a
block failed, its reason beside it.
"""

from __future__ import annotations

import base64
import colorsys
import html
import math
import struct
from pathlib import Path

MISSING = "–"

STYLE = (
    "body{font-family:system-ui,'DejaVu Sans',sans-serif;max-width:1040px;margin:auto;padding:1em 1.5em;"
    "color:#222;line-height:1.45;font-size:15px}"
    "h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    "h3{font-size:1.1em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;font-size:14px;text-align:left;vertical-align:top}"
    "th{background:#eee}"
    ".answer{background:#f3f7fb;border-left:4px solid #36c;padding:.6em 1em;font-size:16px}"
    ".err{color:#a00}.warn-inline{color:#8a5a00;display:block}"
    ".warn{color:#8a5a00;background:#fff8e6;border-left:3px solid #e0a000;"
    "padding:.3em .8em .3em 1.6em;margin:.4em 0}"
    "dl.glossary dt{font-weight:bold;float:left;clear:left;width:4.5em}dl.glossary dd{margin-left:5em}"
    "figure{margin:1em 0}figcaption{font-size:14px;color:#444;max-width:760px}"
    "img{max-width:100%;height:auto}.foot{color:#666;font-size:13px}.note{color:#555;font-size:14px}")


def _finite(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def gy(v, sig: int = 4) -> str:
    """A dose in Gy to ``sig`` significant digits (never in scientific notation), no unit."""
    x = _finite(v)
    if x is None:
        return MISSING
    return f"{x:.0f}" if abs(x) >= 10 ** sig else f"{x:.{sig}g}"


def pct(v, digits: int = 0) -> str:
    """A probability or fraction as a percentage ("90 %")."""
    x = _finite(v)
    return MISSING if x is None else f"{100 * x:.{digits}f} %"


def pvalue(v) -> str:
    x = _finite(v)
    if x is None:
        return MISSING
    return "< 0.001" if x < 0.001 else f"{x:.2g}"


def num(v, sig: int = 3) -> str:
    """A plain number to ``sig`` significant digits."""
    x = _finite(v)
    if x is None:
        return MISSING
    if x != 0 and not 1e-3 <= abs(x) < 1e7:
        return f"{x:.{sig - 1}e}"
    return f"{x:.0f}" if abs(x) >= 10 ** sig else f"{x:.{sig}g}"


def yes_no(v) -> str:
    return MISSING if v is None else ("yes" if v else "no")


def esc(text) -> str:
    return html.escape(str(text))


def table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; ``header`` is plain text, ``rows`` are already-formatted HTML cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    klass = f" class='{cls}'" if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


#: column names that library messages quote, in the words of the report (longest first)
PLAIN_WORDS = {"dose_all_cycles_gy": "dose over all cycles", "activity_all_cycles_gbq": "activity over all cycles",
               "dv_all_cycles": "volume reduction after all cycles", "baseline_volume_cm3": "baseline volume",
               "dose_gy": "absorbed dose", "activity_gbq": "administered activity", "sd_patient/sd_residual":
               "patient SD / residual SD", "sd_patient": "patient SD", "sd_residual": "residual SD"}


def plain_message(text) -> str:
    """A library message with the column identifiers it quotes replaced by words."""
    out = str(text)
    for ident, words in PLAIN_WORDS.items():
        out = out.replace(ident, words)
    return out


def warnings_list(warnings, title: str = "Read with care") -> str:
    """The warnings of one block, shown where its numbers are (empty when there are none)."""
    items = [w for w in (warnings or []) if str(w).strip()]
    if not items:
        return ""
    return (f"<div class='warn'><b>{esc(title)}:</b><ul>"
            + "".join(f"<li>{esc(plain_message(w))}</li>" for w in items) + "</ul></div>")


def error_note(block) -> str | None:
    """"Not estimated: reason" for a failed block, else None."""
    if isinstance(block, dict) and "error" in block:
        return f"<p class='err'>Not estimated: {esc(plain_message(block['error']))}</p>"
    if not isinstance(block, dict) or not block:
        return "<p class='err'>Not computed.</p>"
    return None


def png_size_px(data: bytes) -> tuple[int, int]:
    """Width and height of PNG data from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not PNG data")
    return struct.unpack(">II", data[16:24])


def png_html(data: bytes, caption: str, dpi: float, fig_id: str = "") -> str:
    """PNG ``data`` embedded in a figure, shown at its physical size (1 inch = 100 CSS px) so that its
    text appears at the point size it was drawn with."""
    width_px, _ = png_size_px(data)
    shown = int(round(width_px * 100 / dpi))
    b64 = base64.b64encode(data).decode("ascii")
    ident = f" id='{esc(fig_id)}'" if fig_id else ""
    return (f"<figure{ident}><img alt='{esc(caption)}' width='{shown}' src='data:image/png;base64,{b64}'/>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def figure_html(path: Path, caption: str, dpi: float, fig_id: str = "") -> str:
    """The PNG file at ``path`` embedded (:func:`png_html`)."""
    return png_html(Path(path).read_bytes(), caption, dpi, fig_id)


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def distinct_colours(n: int) -> list[tuple[float, float, float]]:
    """``n`` different RGB colours: the 20 of matplotlib's tab20 order, then hues spaced by the golden
    angle at alternating lightness, so that every patient keeps a colour of its own."""
    from matplotlib import colormaps

    tab = [tuple(float(c) for c in colormaps["tab20"](i)[:3]) for i in range(20)]
    out = tab[:n]
    k = 0
    while len(out) < n:
        hue = (k * 0.618033988749895) % 1.0
        light = (0.35, 0.5, 0.65)[k % 3]
        c = colorsys.hls_to_rgb(hue, light, 0.75)
        if all(max(abs(a - b) for a, b in zip(c, o, strict=True)) > 1e-3 for o in out):
            out.append(c)
        k += 1
    return out
