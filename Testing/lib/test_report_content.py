"""What the cohort report says, and where (LuDoseResponseLib.analysis.report, report_text, report_figures).

Checked for meaning, not for markup: the opening sentence's numbers are analysis.json's values (and
the G2 D90 is R's, from ../shared/reference/stats), every block warning or failure stands inside the
section of its block, no raw identifier reaches the visible text, the figures exist and are the
embedded images, nothing is fetched from outside, and the TCP figure is drawn as in the paper.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from LuDoseResponseLib.analysis import report_figures
from LuDoseResponseLib.analysis.report import patient_pages
from LuDoseResponseLib.analysis.report_figures import FIGURES
from LuDoseResponseLib.analysis.report_format import distinct_colours, plain_message
from LuDoseResponseLib.cli import main as cli_main

RAW_IDENTIFIERS = ("n_tumours", "n_patients", "n_responders", "n_nonresponders", "G2_only", "both_grades",
                   "dose_median_gy", "dose_min_gy", "baseline_volume_median", "per_grade", "dose_at_tcp",
                   "at_dose", "slope_per_gy", "intercept_se", "random_intercept_sd", "response_groups",
                   "roc_predicted_tcp", "dose_gy", "activity_gbq", "scale_gy", "amplitude_se", "glmm_method",
                   "responder_threshold", "min_baseline_volume", "big_volume_cutoff", "{'", "None", "nan")


def _analyze(csv, out, *extra) -> tuple[dict, str]:
    assert cli_main(["-q", "analyze", str(csv), "--out", str(out), "--bootstrap", "0", *extra]) == 0
    return json.loads((out / "analysis.json").read_text()), (out / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paper_like(stats_reference_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_like")
    a, text = _analyze(stats_reference_dir / "paper_like_s1202.csv", out, "--min-baseline-volume", "0")
    return out, a, text


@pytest.fixture(scope="module")
def troubled(stats_reference_dir, tmp_path_factory):
    """A cohort whose blocks warn and fail (separation, singular fits)."""
    out = tmp_path_factory.mktemp("separation")
    a, text = _analyze(stats_reference_dir / "separation_s401.csv", out, "--min-baseline-volume", "0")
    return out, a, text


def _visible(html_text: str) -> str:
    text = re.sub(r"<(style|code)[^>]*>.*?</\1>", " ", html_text, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", html.unescape(text))


def _section(html_text: str, ident: str) -> str:
    m = re.search(rf"<section id='{re.escape(ident)}'>(.*?)</section>", html_text, flags=re.S)
    assert m, f"no section {ident}"
    return m.group(1)


def _answer(html_text: str) -> str:
    return _visible(re.search(r"<div class='answer' id='answer'>(.*?)</div>", html_text, flags=re.S).group(1))


def _close_to_shown(shown: str, value: float, sig: int) -> bool:
    """``shown`` is ``value`` rounded to ``sig`` significant digits (or to an integer)."""
    x = float(shown)
    step = 10 ** (math.floor(math.log10(abs(value))) - sig + 1) if value else 1.0
    return abs(x - value) <= max(0.5 * step, 0.5) + 1e-9


def test_answer_states_the_dose_at_tcp_with_its_ci_from_analysis_json(paper_like, stats_reference_dir):
    _, a, text = paper_like
    answer = _answer(text)
    r = json.loads((stats_reference_dir / "paper_like_s1202.json").read_text())
    r_d90 = r["glmm_tcp"]["common_intercept"]["laplace"]["per_grade"]["G2"]["dose_for_tcp"][1]
    assert r_d90["tcp"] == 0.9
    for g in ("G2", "G1"):
        para = re.search(rf"{g}: (\d+) tumours in (\d+) patients, (\d+) responders\.(.*?)(?= G\d: |\d+ tumours in)",
                         answer + " 0 tumours in", flags=re.S)
        assert para, (g, answer)
        s = a["summary"][g]
        assert (int(para.group(1)), int(para.group(2)), int(para.group(3))) == (
            s["n_tumours"], s["n_patients"], s["n_responders"])
        body = para.group(4)
        for key, v in a["tcp"]["per_grade"][g]["dose_at_tcp"].items():
            if v["ci_low"] is None:
                m = re.search(rf"{float(key) * 100:g} % TCP at ([\d.]+) Gy \(95 % CI not bounded", body)
                assert m and _close_to_shown(m.group(1), v["dose_gy"], 3), (g, key, body)
                continue
            m = re.search(rf"{float(key) * 100:g} % TCP at ([\d.]+) Gy "
                          r"\(95 % CI (from below 0|[\d.]+) to ([\d.]+) Gy\)", body)
            assert m, (g, key, body)
            assert _close_to_shown(m.group(1), v["dose_gy"], 3)
            if m.group(2) == "from below 0":
                assert v["ci_low"] < 0
            else:
                assert _close_to_shown(m.group(2), v["ci_low"], 3)
            assert _close_to_shown(m.group(3), v["ci_high"], 3)
            if g == "G2" and key == "0.9":
                assert _close_to_shown(m.group(1), r_d90["dose_gy"], 3)    # R's D90 for G2
        for dose, v in a["tcp"]["per_grade"][g]["at_dose"].items():
            m = re.search(rf"(\d+) % at {dose} Gy \(95 % CI (\d+) % to (\d+) %\)", body)
            assert m, (g, dose, body)
            assert [int(x) for x in m.groups()] == [round(100 * v[k]) for k in ("tcp", "ci_low", "ci_high")]
        rg = a["response_groups"][g]["dose_gy"]
        m = re.search(r"Responders \(R\) received a mean of ([\d.]+) Gy, non-responders \(NR\) ([\d.]+) Gy "
                      r"\(p (= [\d.]+|< 0\.001),", body)
        assert m, body
        assert _close_to_shown(m.group(1), rg["mean_responder"], 3)
        assert _close_to_shown(m.group(2), rg["mean_nonresponder"], 3)
        if m.group(3) == "< 0.001":
            assert rg["p_value"] < 0.001
        else:
            assert float(m.group(3)[2:]) == pytest.approx(rg["p_value"], rel=0.05)
    # G2 comes first, as in the paper
    assert answer.index("G2:") < answer.index("G1:")


def test_no_raw_identifiers_in_the_visible_text(paper_like, troubled):
    for _, _, text in (paper_like, troubled):
        visible = _visible(text)
        found = [ident for ident in RAW_IDENTIFIERS if ident in visible]
        assert not found, found
    for term in ("NR", "R", "KR", "A", "s", "TCP", "D90"):
        assert f"<dt>{term}</dt>" in paper_like[2]


def _block_messages(a: dict):
    """(section id, message) for every block warning and failure of analysis.json."""
    def of(block):
        if not isinstance(block, dict):
            return []
        return ([block["error"]] if "error" in block else []) + list(block.get("warnings") or [])

    for w in of(a["tcp"]):
        yield "tcp", w
    for w in of(a.get("roc_predicted_tcp")):
        yield "roc_predicted_tcp", w
    for variant in ("G2_only", "both_grades"):
        for w in of(a["dose_response"][variant]):
            yield "dose_response", w
    for g in ("G1", "G2"):
        for w in of(a["roc"][g]):
            yield "roc", w
        for w in of(a["baseline_volume"][g]):
            yield "baseline_volume", w
        for key in ("response_groups", "response_groups_all_cycles"):
            for v in ("dose_gy", "activity_gbq"):
                for w in of((a.get(key) or {}).get(g, {}).get(v)):
                    yield key, w


def test_every_block_warning_is_shown_in_its_section(troubled):
    _, a, text = troubled
    messages = list(_block_messages(a))
    assert len(messages) >= 3 and any(section == "tcp" for section, _ in messages)
    for section, message in messages:
        shown = _visible(_section(text, section))
        assert " ".join(plain_message(message).split()) in shown, (section, message)
    # "none" is never claimed beside a block that has a failure
    assert "Warnings: none" not in _visible(text)


def test_settings_are_a_table(paper_like):
    _, a, text = paper_like
    settings = _visible(_section(text, "settings"))
    assert "Responder threshold (Δv) 66 %" in settings
    assert "Bootstrap replicates (ROC CI) 0" in settings
    assert "Doses of interest 76 Gy, 135 Gy" in settings and "TCP targets 50 %, 90 %" in settings
    assert "{" not in settings


def test_figures_exist_are_embedded_and_nothing_is_external(paper_like):
    out, _, text = paper_like
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(embedded) == len(FIGURES)
    for stem in FIGURES:
        png = (out / f"{stem}.png").read_bytes()
        assert (out / f"{stem}.svg").stat().st_size > 1000
        assert base64.b64encode(png).decode("ascii") in embedded, stem
        assert f"id='{stem}'" in text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", re.sub(r"base64,[^']+", "", text), flags=re.I)
    assert "<script" not in text and "<link" not in text
    srcs = re.findall(r"src='([^']*)'", text)
    assert srcs and all(s.startswith("data:") for s in srcs)


def test_patient_colours_stay_unique_beyond_20():
    for n in (1, 20, 21, 64, 150):
        colours = distinct_colours(n)
        assert len(colours) == n and len({tuple(round(c, 4) for c in rgb) for rgb in colours}) == n


def _capture(monkeypatch) -> dict:
    figures = {}

    def keep(fig, out_dir, stem):
        figures[stem] = fig
        return []
    monkeypatch.setattr(report_figures, "_save", keep)
    return figures


def test_tcp_figure_as_in_the_paper(paper_like, monkeypatch):
    out, a, _ = paper_like
    tumours = pd.read_csv(out / "tumours.csv")
    figures = _capture(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # no "No artists with labels" or other warnings
        report_figures.write_figures(a, tumours, out)
    fig = figures["fig_tcp"]
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title().startswith("G2")
    g2 = tumours[(tumours["grade"] == "G2") & (tumours["excluded"] == 0)]
    points = np.vstack([c.get_offsets() for c in ax.collections if hasattr(c, "get_offsets") and
                        len(c.get_offsets()) == len(g2)])
    assert points[:, 1].max() <= 1.0 and points[:, 1].min() >= 0.0       # no jitter beyond 0 and 1
    lines = {line.get_label(): line for line in ax.get_lines()}
    solid = lines["TCP, logistic mixed model"]
    x = np.asarray(solid.get_xdata(), float)
    x = x[np.isfinite(x)]
    assert x.min() >= g2["dose_gy"].min() and x.max() <= g2["dose_gy"].max()
    assert lines["extrapolation (beyond observed doses)"].get_linestyle() != "-"
    vertical = sorted(round(float(line.get_xdata()[0]), 6) for line in ax.get_lines()
                      if len(set(line.get_xdata())) == 1 and list(line.get_ydata()) == [0, 1])  # axvline
    assert vertical == [76.0, 135.0]
    d90 = a["tcp"]["per_grade"]["G2"]["dose_at_tcp"]["0.9"]
    marker = next(line for label, line in lines.items() if label.startswith("D90"))
    assert marker.get_xdata()[0] == pytest.approx(d90["dose_gy"]) and marker.get_ydata()[0] == 0.9
    dv = figures["fig_dv_vs_dose"]
    legend_text = " ".join(t.get_text() for leg in dv.legends for t in leg.get_texts())
    assert "mixed asymptotic model" in legend_text and "A(1 − e^(−D/s))" in legend_text


def test_a_missing_grade_draws_no_empty_panel(stats_reference_dir, tmp_path, monkeypatch):
    d = pd.read_csv(stats_reference_dir / "paper_like_s1202.csv")
    csv = tmp_path / "g2.csv"
    d[d["grade"] == "G2"].to_csv(csv, index=False)
    a, text = _analyze(csv, tmp_path / "out", "--min-baseline-volume", "0")
    figures = _capture(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_figures.write_figures(a, pd.read_csv(tmp_path / "out" / "tumours.csv"), tmp_path / "out")
    for stem in ("fig_dose_by_response", "fig_dv_vs_dose", "fig_dv_by_volume", "fig_tcp"):
        titles = [ax.get_title() for ax in figures[stem].axes if ax.get_title()]
        assert titles and all(t.startswith("G2") for t in titles), (stem, titles)
    assert "G1:" not in _answer(text)


def test_cohort_report_links_existing_patient_pages(tmp_path):
    (tmp_path / "000_P01").mkdir()
    (tmp_path / "000_P01" / "report.html").write_text("<html></html>")
    table = pd.DataFrame({"patient": ["P01", "P01", "P02"],
                          "patient_report": ["000_P01/report.html", "000_P01/report.html", "001_P02/report.html"]})
    analysis = {"input": {"path": str(tmp_path / "cohort.csv")}}
    assert patient_pages(analysis, table, tmp_path / "analysis") == {"P01": "../000_P01/report.html"}
    assert patient_pages(analysis, table.drop(columns="patient_report"), tmp_path / "analysis") == {}
