"""Lay out the report as one self-contained HTML page (inline CSS, images as data URIs)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from html import escape

from thyrocam.report.build import BASELINES, CENTRE_BASELINE, RANDOM_BASELINE, ReportData
from thyrocam.report.figures import (
    attribution_figure,
    calibration_figure,
    confusion_figure,
    explanation_figure,
    faithfulness_figure,
    figure_to_data_uri,
    roc_figure,
)

__all__ = ["render_html"]

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
  margin:0;background:#f4f6f9;line-height:1.45}
main{max-width:1160px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:34px 0 8px;border-bottom:2px solid
  #dde3ec;padding-bottom:4px}h3{font-size:1.0em;margin:18px 0 6px}
.meta{color:#566074;font-size:.9em;margin:0 0 12px}
.caveat{background:#fff4d6;border-left:5px solid #e0a100;padding:10px 14px;margin:14px 0}
.note{color:#566074;font-size:.88em}
.headline{display:flex;gap:14px;flex-wrap:wrap;margin:12px 0}
.kpi{border:1px solid #dde3ec;border-radius:6px;padding:8px 14px;min-width:130px}
.kpi b{display:block;font-size:1.5em}.kpi span{color:#566074;font-size:.82em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #dde3ec;padding:4px 9px;text-align:right}
th{background:#eef2f7;text-align:center}td:first-child,th:first-child{text-align:left}
tr.baseline td{color:#6b7385;font-style:italic}
.figs{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.figs img{max-width:100%;border:1px solid #eef0f4}
.gallery{display:grid;grid-template-columns:repeat(2,1fr);gap:12px}
.tile{border:1px solid #dde3ec;border-radius:6px;padding:6px}
.tile img{width:100%}.tile p{margin:4px 2px;font-size:.85em}
.ok{color:#1e7d32;font-weight:600}.bad{color:#b3261e;font-weight:600}
footer{margin-top:36px;color:#8a92a3;font-size:.8em}
"""


_BASELINE_NAMES = {
    RANDOM_BASELINE: "random map (chance)",
    CENTRE_BASELINE: "centre map (prior)",
}


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "n/a"
    return "<span class='ok'>passes</span>" if passed else "<span class='bad'>fails</span>"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f" <span class='note'>({ci[0]:.3f} to {ci[1]:.3f})</span>"


def _img(fig, alt: str) -> str:
    return f"<img src='{figure_to_data_uri(fig)}' alt='{escape(alt)}'>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes=None) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f" class='{classes[i]}'" if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _summary(m: Mapping) -> str:
    kpis = [
        ("AUC", _num(m["auc"]), "95% CI " + (_ci(m.get("auc_ci")) or " n/a")),
        (
            "sensitivity",
            _pct(m["sensitivity"]),
            f"{m['confusion']['tp']} of {m['n_malignant']} malignant",
        ),
        (
            "specificity",
            _pct(m["specificity"]),
            f"{m['confusion']['tn']} of {m['n_benign']} benign",
        ),
        ("accuracy", _pct(m["accuracy"]), f"{m['n']} images"),
    ]
    return (
        "<div class='headline'>"
        + "".join(
            f"<div class='kpi'><span>{k}</span><b>{v}</b><span>{s}</span></div>" for k, v, s in kpis
        )
        + "</div>"
    )


def _ablation(models: Mapping[str, Mapping]) -> str:
    inputs = {"both": "image + descriptors", "image": "image only", "clinical": "descriptors only"}
    rows = []
    for name, m in models.items():
        rows.append(
            [
                f"<b>{escape(name)}</b>",
                inputs.get(m["modalities"], m["modalities"]),
                _num(m["auc"]) + _ci(m.get("auc_ci")),
                "—" if name == "combined" else _ci(m.get("diff_ci")).strip() or "n/a",
                _pct(m["sensitivity"]),
                _pct(m["specificity"]),
            ]
        )
    header = ["model", "inputs", "AUC (95% CI)", "combined − this (95% CI)", "sens.", "spec."]
    text = _table(header, rows)
    if len(models) == 1:
        text += (
            "<p class='note'>No single-modality runs were given. Train them on the same data "
            "with the same seed (<code>thyrocam train DATA --out RUN_I --modalities image</code>, "
            "and <code>--modalities clinical</code>) and pass "
            "<code>--ablation image=RUN_I clinical=RUN_C</code>.</p>"
        )
    else:
        text += (
            "<p class='note'>Every model is scored on the same held-out images (the runs share "
            "the split). Intervals: 1000 bootstrap resamples of cases; the difference column is "
            "paired (same resamples).</p>"
        )
    return text


def _grades(rows: Sequence[Mapping]) -> str:
    body = [
        [
            escape(r["grade"]),
            str(r["cases"]),
            str(r["images"]),
            f"{r['malignant']} / {r['images']}",
            _num(r["mean_probability"], 2),
            _pct(r["called_malignant"]),
            _pct(r["accuracy"]),
            _num(r["auc"]),
        ]
        for r in rows
    ]
    header = [
        "TI-RADS",
        "cases",
        "images",
        "labelled malignant",
        "mean P",
        "called malignant",
        "accuracy",
        "AUC within grade",
    ]
    return _table(header, body)


def _measures(summary: Mapping[str, Mapping], info: Mapping) -> str:
    rows, classes = [], []
    for method, s in summary.items():
        rows.append(
            [
                _BASELINE_NAMES.get(method, f"<b>{escape(method)}</b>"),
                f"{_pct(s['pointing_malignant'])} <span class='note'>of {s['n_malignant']}</span>",
                _pct(s["pointing_benign"]),
                _pct(s["energy"]) + f" <span class='note'>(area {_pct(s['mask_share'])})</span>",
                _num(s["deletion_auc"]),
                _num(s["insertion_auc"]),
                _num(s["randomization_rho_median"], 2),
                _verdict(s["randomization_passed"])
                + (
                    f" <span class='note'>({_pct(s['randomization_pass_rate'])} of cases)</span>"
                    if s["randomization_pass_rate"] is not None
                    else ""
                ),
            ]
        )
        classes.append("baseline" if method in BASELINES else "")
    header = [
        "method",
        "pointing game, malignant",
        "pointing game, benign",
        "energy in nodule (nodule's share of view)",
        "deletion AUC ↓",
        "insertion AUC ↑",
        "randomisation ρ (median) ↓",
        "randomisation check (median ρ &lt; 0.5)",
    ]
    how = f"""
<ul class='note'>
<li><b>Baselines</b>: a smooth random map (chance) and a Gaussian at the centre of the
network's input, which ignores the image. With crops around the nodule (<code>roi</code> runs)
the nodule is always at the centre, so the centre map is the bar a CAM method has to beat.</li>
<li><b>Pointing game</b>: the map's peak lies on the outlined nodule, within
{info["pointing_tolerance_px"]} px (Zhang et al. 2018). Each map explains the case's true
class.</li>
<li><b>Energy in nodule</b>: share of the map's total mass inside the outline; the share of the
network's view that the nodule covers (what a flat map would score) is given beside it.</li>
<li><b>Deletion / insertion</b> (Petsiuk et al. 2018): P(true class) as the highest-ranked pixels
are replaced by a blurred copy ({escape(info["deletion_baseline"])}) or restored onto it, in
{info["steps"]} steps; areas under those curves. Blur, not black: a black patch looks like a
cyst.</li>
<li><b>Randomisation check</b> (Adebayo et al. 2018): Spearman ρ between the map and the map of the
same model with {escape(info["randomized"])}. A map that does not change (ρ ≥ 0.5) does not reflect
what the model learned; a method passes when the median ρ is below 0.5 (the share of cases below
0.5 in brackets).</li>
</ul>"""
    return (
        f"<p>{info['images']} held-out images with a nodule outline.</p>"
        + _table(header, rows, classes)
        + how
    )


def _explanations(report: ReportData, methods: Sequence[str]) -> str:
    expl = report.metrics["explanations"]
    if not expl["images"]:
        return (
            "<p>No held-out image has a nodule outline, so the maps cannot be checked against "
            "the nodule here.</p>"
        )
    curves = faithfulness_figure(report.curves, [*methods, *BASELINES])
    return (
        _measures(expl["summary"], expl)
        + f"<div class='figs'>{_img(curves, 'deletion and insertion curves')}</div>"
    )


def _tile(item) -> str:
    s = item.sample
    exp = item.explanation
    called = "malignant" if item.probability >= exp.prediction.threshold else "benign"
    truth = "malignant" if s.label == 1 else "benign"
    title = f"case {s.case_id} · {s.image_path.name}"
    fig = explanation_figure(exp, mask=item.mask, title=title)
    verdict = "<span class='ok'>right</span>" if item.correct else "<span class='bad'>wrong</span>"
    grade = f" · TI-RADS {escape(s.tirads)}" if s.tirads else ""
    return (
        f"<div class='tile'>{_img(fig, title)}<p>{verdict}: truly <b>{truth}</b>{grade}; "
        f"called <b>{called}</b>, P(malignant) = {item.probability:.3f}. "
        f"Map: evidence for <i>{exp.target}</i> (Grad-CAM)"
        + ("; <b>no positive evidence found</b> (all-zero map)" if exp.all_zero else "")
        + ".</p></div>"
    )


def render_html(report: ReportData, *, methods: Sequence[str]) -> str:
    """The report page for ``report`` (everything embedded; no external file or script)."""
    m = report.metrics
    ev = m["evaluation"]
    pre = m.get("preprocessing") or {}
    caveat = ""
    if str(m["label_definition"]).startswith("tirads"):
        caveat = (
            "<div class='caveat'><b>Label caveat.</b> "
            + escape(m["label_definition"].removeprefix("tirads: "))
            + " The descriptors largely determine that grade, so a high AUC here means the model "
            "reproduces the radiologist's grading, not that it detects cancer; compare the "
            "descriptors-only row of the ablation. Some DDTI frames carry the grade written on "
            'the image (e.g. "TIRADS 4A"): check in the gallery that the maps fall on the '
            "nodule, not on burnt-in text or calipers.</div>"
        )
    figures = "".join(
        [
            _img(roc_figure(report.curves, m["ablation"]), "ROC curves"),
            _img(calibration_figure(report.curves["calibration"]), "calibration"),
            _img(confusion_figure(ev["confusion"], threshold=m["threshold"]), "confusion matrix"),
        ]
    )
    att = m["attributions"]
    right = [it for it in report.gallery if it.correct]
    wrong = [it for it in report.gallery if not it.correct]
    tiles_right = "".join(_tile(it) for it in right) or "<p>none</p>"
    tiles_wrong = "".join(_tile(it) for it in wrong) or (
        "<p>No wrong call among the held-out images.</p>"
    )
    legend = (
        "<p class='note'>Left: the frame as stored; right: the Grad-CAM map over what the "
        "network saw (the dashed box on the left when it saw a crop), red = strongest evidence "
        "for the class the model called. Green line: the nodule outline from the data. White "
        "circle: the map's peak (the pointing-game point).</p>"
    )
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>thyrocam report — {escape(m["run"])}</title><style>{_CSS}</style></head>
<body><main>
<h1>Thyroid nodule classifier — evaluation report</h1>
<p class="meta">Run <code>{escape(m["run"])}</code> ({escape(str(m["arch"]))},
input {escape(str(pre.get("mode")))} {escape(str(pre.get("size")))} px) ·
data <code>{escape(m["data"])}</code> · scored: {escape(m["subset"])},
{m["cases"]} cases / {m["images"]} images · threshold {
        m["threshold"]:.3f} (chosen on validation)</p>
{caveat}
{"" if caveat else f"<p><b>Labels:</b> {escape(m['label_definition'])}</p>"}

<h2>1. Performance on the held-out cases</h2>
{_summary(ev)}
<div class="figs">{figures}</div>

<h2>2. Modality ablation: image, descriptors, both</h2>
{_ablation(m["ablation"])}

<h2>3. Results by TI-RADS grade</h2>
{_grades(m["by_tirads_grade"])}
<p class="note">The DDTI grade (2/3/4a/4b/4c/5) as recorded with each case; "none" = no grade.
"Called malignant" is the share of images above the threshold.</p>

<h2>4. What the descriptors contribute</h2>
<p>Exact Shapley values of the six descriptors for the malignancy logit, with "missing" as the
absent value (the 64 combinations of given/missing fields are evaluated for each image). On
average the descriptors move the logit by {att["mean_abs_effect"]:.2f} from its all-missing
value; largest completeness error {att["max_completeness_error"]:.1e}.</p>
<div class="figs">{_img(attribution_figure(att), "descriptor attributions")}</div>
<p class="note">Share of images with the field given:
{", ".join(f"{f} {_pct(p)}" for f, p in zip(att["fields"], att["present"], strict=True))}.</p>

<h2>5. Do the heatmaps point at the nodule, and do they show what the model uses?</h2>
{_explanations(report, methods)}

<h2>6. Gallery: the most confident calls</h2>
{legend}
<h3>Most confident right calls</h3><div class="gallery">{tiles_right}</div>
<h3>Most confident wrong calls</h3><div class="gallery">{tiles_wrong}</div>

<footer>Generated {generated} by <code>thyrocam evaluate --report</code> · {escape(versions)}
· numbers also in metrics.json beside this page.</footer>
</main></body></html>
"""
