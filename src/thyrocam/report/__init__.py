"""The evaluation report: ``thyrocam evaluate RUN DATA --report DIR``.

Writes ``DIR/metrics.json`` (every number) and ``DIR/report.html``, one
self-contained page (figures embedded as PNG data URIs): ROC and calibration
curves, the confusion matrix at the run's threshold, results by TI-RADS grade, a
modality ablation, descriptor attributions, explanation measures per CAM method
and a gallery of the most confident right and wrong calls.

The parts: :mod:`~thyrocam.report.scoring` (probabilities, metrics, ablation,
grades), :mod:`~thyrocam.report.attributions`,
:mod:`~thyrocam.report.explanations` (the measures per method),
:mod:`~thyrocam.report.gallery`; :mod:`~thyrocam.report.build` assembles them
into one typed :class:`Report`, :mod:`~thyrocam.report.html` renders it through
``templates/report.html``.

The ablation takes runs you trained (it does not train them): ``thyrocam train
DATA --out RUN_I --modalities image`` and ``--modalities clinical`` with the same
data and seed hold out the same cases, which the report checks.

Example:
    >>> write_report("runs/demo", "data/ddti", out="runs/demo/report",
    ...              ablation={"image": "runs/demo_image", "clinical": "runs/demo_clin"})
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from thyrocam.checkpoint import write_json
from thyrocam.errors import InputError
from thyrocam.evaluate import Scored
from thyrocam.report.attributions import AttributionSummary, attribution_summary
from thyrocam.report.build import Report, ReportOptions, build_report
from thyrocam.report.explanations import (
    BASELINES,
    CENTRE_BASELINE,
    RANDOM_BASELINE,
    REPORT_METHODS,
    Measures,
    measure_cases,
    roi_for,
    summarize_measures,
)
from thyrocam.report.gallery import GalleryItem, select_gallery
from thyrocam.report.html import render_html
from thyrocam.report.scoring import (
    ABLATION_KINDS,
    Scoring,
    bootstrap_auc,
    load_ablation_runs,
    results_by_grade,
)

__all__ = [
    "REPORT_METHODS",
    "ABLATION_KINDS",
    "RANDOM_BASELINE",
    "CENTRE_BASELINE",
    "BASELINES",
    "ReportOptions",
    "Report",
    "Scoring",
    "AttributionSummary",
    "Measures",
    "GalleryItem",
    "write_report",
    "save_report",
    "build_report",
    "render_html",
    "load_ablation_runs",
    "bootstrap_auc",
    "results_by_grade",
    "attribution_summary",
    "roi_for",
    "measure_cases",
    "summarize_measures",
    "select_gallery",
    "parse_ablation",
]

log = logging.getLogger(__name__)


def parse_ablation(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["image=RUN", "clinical=RUN"]`` (the CLI's ``--ablation``) -> ``{kind: RUN}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        kind, sep, path = pair.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in ABLATION_KINDS or not path.strip():
            raise InputError(
                f"--ablation: got {pair!r}; allowed: KIND=RUN with KIND one of "
                f"{', '.join(ABLATION_KINDS)}",
                field="ablation",
                value=pair,
                allowed=ABLATION_KINDS,
            )
        out[kind] = path.strip()
    return out


def _json_safe(value):
    """NaN/inf -> None, numpy scalars -> Python numbers, so metrics.json is strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_report(report: Report, *, out: str | os.PathLike) -> Path:
    """Write ``out/metrics.json`` and ``out/report.html`` (created) for ``report``.

    Returns:
        The path of ``report.html``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", _json_safe(report.to_json()))
    page = folder / "report.html"
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    os.replace(tmp, page)
    log.info("report written to %s", page)
    return page


def write_report(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    scored: Scored | None = None,
    **options: Any,
) -> Path:
    """Evaluate ``run`` on ``data`` and write ``out/metrics.json`` and ``out/report.html``.

    Args:
        run: the run folder of the combined model.
        data: DDTI folder or CSV manifest (its test split is used when it is the
            run's training data).
        out: the report folder (created).
        scored: the run's evaluation on ``data``, when already done (reused, not
            recomputed).
        **options: fields of :class:`ReportOptions`, checked before any scoring.

    Returns:
        The path of ``report.html``.
    """
    report = build_report(run, data, options=ReportOptions(**options), scored=scored)
    return save_report(report, out=out)
