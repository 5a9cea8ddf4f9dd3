"""Lay the report out: ``templates/report.html`` (Jinja2, autoescaped) over a :class:`Report`.

The page is self-contained: CSS inline, every figure a PNG data URI, no script.
This module draws the figures and hands them, with the typed result, to the
template; the template holds all the text and markup.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from thyrocam.explain.measures import RANDOMIZATION_THRESHOLD
from thyrocam.explain.methods import METHODS
from thyrocam.report.boxes import HIT_IOU
from thyrocam.report.build import Report
from thyrocam.report.explanations import BASELINES, CENTRE_BASELINE, RANDOM_BASELINE
from thyrocam.report.figures import (
    attribution_figure,
    box_figure,
    calibration_figure,
    confusion_figure,
    explanation_figure,
    faithfulness_figure,
    figure_to_data_uri,
    roc_figure,
)
from thyrocam.report.scoring import BOOTSTRAP_RESAMPLES

__all__ = ["TEMPLATE", "render_html", "method_label"]

TEMPLATE = "report.html"

_BASELINE_LABELS = {
    RANDOM_BASELINE: "random map (chance)",
    CENTRE_BASELINE: "centre map (prior)",
}


def method_label(method: str) -> str:
    """What the page calls a method or baseline (``"Grad-CAM"``, ``"random map (chance)"``)."""
    if method in _BASELINE_LABELS:
        return _BASELINE_LABELS[method]
    return METHODS[method].label if method in METHODS else method


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("thyrocam.report", "templates"),
        autoescape=True,  # every value is text, including run paths and labels
        undefined=StrictUndefined,  # a misspelt name fails, not renders empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["method_label"] = method_label
    return env


def _tiles(report: Report) -> list[dict]:
    tiles = []
    for item in report.gallery:
        s = item.sample
        title = f"case {s.case_id} · {s.image_path.name}"
        fig = explanation_figure(item.explanation, mask=item.mask, title=title)
        tiles.append({"item": item, "title": title, "src": figure_to_data_uri(fig)})
    return tiles


def _figures(report: Report) -> dict[str, str]:
    scoring = report.scoring
    combined = scoring.combined.metrics
    figures = {
        "roc": roc_figure(scoring.models),
        "calibration": calibration_figure(scoring.calibration),
        "confusion": confusion_figure(combined["confusion"], threshold=scoring.scored.threshold),
        "attributions": attribution_figure(report.attributions),
    }
    if report.measures.images:
        figures["faithfulness"] = faithfulness_figure(
            report.measures.curves, report.measures.methods
        )
    if report.boxes is not None:
        figures["boxes"] = box_figure(report.boxes)
    return {name: figure_to_data_uri(fig) for name, fig in figures.items()}


def render_html(report: Report, *, generated: _dt.datetime | None = None) -> str:
    """The report page for ``report`` (everything embedded; no external file or script).

    Args:
        report: from :func:`~thyrocam.report.build_report`.
        generated: the time stamp in the footer (default: now, UTC).
    """
    label_definition = report.scored.label_definition
    caveat = (
        label_definition.removeprefix("tirads: ")
        if str(label_definition).startswith("tirads")
        else None
    )
    stamp = generated or _dt.datetime.now(_dt.timezone.utc)
    tiles = _tiles(report)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            report=report,
            scored=report.scored,
            scoring=report.scoring,
            measures=report.measures,
            boxes=report.boxes,
            hit_iou=HIT_IOU,
            attributions=report.attributions,
            meta=report.meta,
            preprocessing=report.meta.get("preprocessing") or {},
            caveat=caveat,
            figures=_figures(report),
            right=[t for t in tiles if t["item"].correct],
            wrong=[t for t in tiles if not t["item"].correct],
            baselines=BASELINES,
            threshold_rho=RANDOMIZATION_THRESHOLD,
            resamples=BOOTSTRAP_RESAMPLES,
            generated=stamp.strftime("%Y-%m-%d %H:%M UTC"),
            versions=_versions(report.meta.get("versions")),
        )
    )


def _versions(versions: dict | None) -> Sequence[str]:
    return [f"{k} {v}" for k, v in (versions or {}).items()]
