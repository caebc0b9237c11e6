"""The words of the cohort report: the answer it opens with, the glossary and the settings table.

Everything is computed from ``analysis.json`` (the contract's layout), so the report says what the
analysis found: per grade (G2 first, the paper's focus) the dose at each TCP target with its 95 % CI
(the doses where the drawn CI band crosses the target, ``dose_at_tcp.ci_low/ci_high``), the modelled
TCP at the report doses, the mean doses of responders and non-responders with the Kenward–Roger p,
and the plateau A and dose scale s of the volume-reduction model.
"""

from __future__ import annotations

from LuDoseResponseLib import defaults
from LuDoseResponseLib.analysis.report_format import esc, gy, num, pct, pvalue, table

ANSWER_GRADES = ("G2", "G1")
SIG = 3  # significant digits of the doses in the answer


def _p_relation(text: str) -> str:
    """``= 0.011`` or ``< 0.001``: a p-value as it reads after "p"."""
    return text if text.startswith("<") else f"= {text}"


def _get(block, *keys):
    for k in keys:
        if not isinstance(block, dict) or k not in block:
            return None
        block = block[k]
    return block


def dose_ci_text(v: dict, sig: int = 4) -> str:
    """"95 % CI 94 to 449 Gy" ("from below 0 to ..." for a negative lower limit), or why there is none."""
    if "ci_low" not in v:  # an analysis.json written before the CI was added
        return f"± {gy(v.get('se'), sig)} Gy SE; re-run the analysis for its 95 % CI"
    low, high = v.get("ci_low"), v.get("ci_high")
    if low is None or high is None:
        return "95 % CI not bounded: the dose slope does not differ from 0 at the 5 % level"
    return f"95 % CI {'from below 0' if low < 0 else gy(low, sig)} to {gy(high, sig)} Gy"


def _tcp_sentences(a: dict, g: str) -> list[str]:
    tcp = a.get("tcp") or {}
    if "error" in tcp:
        return [f"TCP model not estimated: {tcp['error']}."]
    pg = _get(tcp, "per_grade", g)
    if not pg:
        return [f"No TCP curve for {g}."]
    dose_max = _get(a, "summary", g, "dose_max_gy")
    parts = []
    targets = sorted(((float(k), v) for k, v in (pg.get("dose_at_tcp") or {}).items()), key=lambda kv: -kv[0])
    for p, v in targets:
        if v.get("dose_gy") is None:
            continue
        text = f"{100 * p:g} % TCP at {gy(v['dose_gy'], SIG)} Gy ({dose_ci_text(v, SIG)})"
        if dose_max is not None and not 0 <= v["dose_gy"] <= dose_max:
            text += f", an extrapolation beyond the observed doses (up to {gy(dose_max, SIG)} Gy)"
        parts.append(text)
    out = ["; ".join(parts) + "." if parts else "The TCP curve gives no dose for the TCP targets."]
    at = [f"{pct(v.get('tcp'))} at {gy(float(k), SIG)} Gy (95 % CI {pct(v.get('ci_low'))} to {pct(v.get('ci_high'))})"
          for k, v in (pg.get("at_dose") or {}).items()]
    if at:
        out.append("Modelled TCP " + ", ".join(at) + ".")
    return out


def _group_sentence(a: dict, g: str) -> str | None:
    b = _get(a, "response_groups", g, "dose_gy")
    if not isinstance(b, dict):
        return None
    if "error" in b:
        return f"Responder and non-responder doses not compared: {b['error']}."
    return (f"Responders (R) received a mean of {gy(b.get('mean_responder'), SIG)} Gy, non-responders (NR) "
            f"{gy(b.get('mean_nonresponder'), SIG)} Gy (p {_p_relation(pvalue(b.get('p_value')))}, Kenward–Roger).")


def _plateau_sentence(a: dict, g: str) -> str | None:
    for variant in ("both_grades", "G2_only"):
        v = _get(a, "dose_response", variant, "per_grade", g)
        if isinstance(v, dict) and v.get("amplitude") is not None:
            return (f"Volume reduction approaches A = {pct(v['amplitude'])} with dose scale s = "
                    f"{gy(v.get('scale_gy'), SIG)} Gy (Δv = A(1 − e^(−D/s))).")
    return None


def answer_paragraphs(a: dict) -> list[str]:
    """The report's opening, one plain-text paragraph per grade with tumours, then the counts."""
    paragraphs = []
    for g in ANSWER_GRADES:
        s = _get(a, "summary", g) or {}
        if not s.get("n_tumours"):
            continue
        head = (f"{g}: {s['n_tumours']} tumours in {s.get('n_patients')} patients, {s.get('n_responders')} "
                f"responders.")
        body = _tcp_sentences(a, g) + [x for x in (_group_sentence(a, g), _plateau_sentence(a, g)) if x]
        paragraphs.append(" ".join([head, *body]))
    total = _get(a, "summary", "all") or {}
    excluded = _get(a, "input", "n_excluded")
    threshold = _get(a, "settings", "responder_threshold")
    minimum = _get(a, "settings", "min_baseline_volume_cm3")
    tail = (f"{total.get('n_tumours', 0)} tumours in {total.get('n_patients', 0)} patients analysed"
            + (f"; {excluded} excluded (baseline volume below {gy(minimum)} cm³)" if excluded else "")
            + f". A responder has a volume reduction of at least {pct(threshold)}.")
    paragraphs.append(tail)
    return paragraphs


def answer_html(a: dict) -> str:
    return "<div class='answer' id='answer'>" + "".join(f"<p>{esc(p)}</p>" for p in answer_paragraphs(a)) + "</div>"


def glossary_html(a: dict) -> str:
    threshold = pct(_get(a, "settings", "responder_threshold") or defaults.RESPONDER_THRESHOLD)
    terms = [
        ("TCP", "tumour control probability: the modelled probability that a tumour responds, at a given "
                "cumulative absorbed dose (population level, i.e. for a typical patient)."),
        ("R", f"responder: a tumour whose volume fell by at least {threshold} from its largest to its smallest "
              "volume after therapy (Δv ≥ threshold)."),
        ("NR", "non-responder: any other analysed tumour."),
        ("Δv", "relative volume reduction (largest − smallest volume) / largest volume."),
        ("D90", "the dose at which the modelled TCP is 90 % (likewise D50); its 95 % CI are the doses where "
                "the grey CI band of the TCP figure crosses 90 %."),
        ("KR", "Kenward–Roger: the small-sample degrees of freedom used for the p-value of the linear mixed "
               "model comparing responders and non-responders."),
        ("A", "asymptote (plateau) of the dose–response model Δv = A(1 − e^(−D/s)): the largest volume "
              "reduction reached at high doses."),
        ("s", "dose scale (Gy) of that model: at D = s the reduction has reached 63 % of A."),
        ("SE / CI", "standard error / 95 % confidence interval."),
        ("G1, G2", "tumour grade: Ki-67 ≤ 2 % / 3–20 %."),
    ]
    return ("<section id='glossary'><h2>Terms</h2><dl class='glossary'>"
            + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in terms) + "</dl></section>")


def _list(values, fmt) -> str:
    return ", ".join(fmt(v) for v in values or [])


def settings_table(settings: dict) -> str:
    s = settings or {}
    method = {"laplace": "Laplace approximation (nAGQ = 1)",
              "agq": f"adaptive Gauss–Hermite quadrature ({defaults.AGQ_NODES} nodes)"}
    rows = [
        ["Responder threshold (Δv)", pct(s.get("responder_threshold"))],
        ["Minimum baseline volume", f"{gy(s.get('min_baseline_volume_cm3'))} cm³"],
        ["TCP model fit", esc(method.get(s.get("glmm_method"), s.get("glmm_method")))],
        ["Bootstrap replicates (ROC CI)", esc(s.get("bootstrap"))],
        ["Random seed", esc(s.get("seed"))],
        ["Doses of interest", _list(s.get("doses"), lambda v: f"{gy(v)} Gy")],
        ["TCP targets", _list(s.get("tcp_targets"), lambda v: pct(v, 0))],
        ["Baseline-volume cut-off (exploratory)", f"{gy(s.get('big_volume_cutoff_cm3'))} cm³"],
        ["Dose grid of the curves", f"0 to {gy(s.get('dose_grid_max_gy'))} Gy in {num(s.get('dose_grid_step_gy'))}-Gy "
                                    "steps"],
    ]
    known = {"responder_threshold", "min_baseline_volume_cm3", "glmm_method", "bootstrap", "seed", "doses",
             "tcp_targets", "big_volume_cutoff_cm3", "dose_grid_max_gy", "dose_grid_step_gy"}
    rows += [[esc(k.replace("_", " ")), esc(v)] for k, v in s.items() if k not in known]
    return "<section id='settings'><h2>Settings</h2>" + table(["Setting", "Value"], rows) + "</section>"
