"""The evaluation report: ``thyrocam evaluate RUN DATA --report DIR``.

Writes ``DIR/metrics.json`` (every number) and ``DIR/report.html``, one
self-contained page (figures embedded as PNG data URIs): ROC and calibration
curves, the confusion matrix at the run's threshold, results by TI-RADS grade, a
modality ablation, descriptor attributions, explanation measures per CAM method
and a gallery of the most confident right and wrong calls.

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

from thyrocam.checkpoint import write_json
from thyrocam.errors import InputError
from thyrocam.report.build import (
    ABLATION_KINDS,
    BASELINES,
    CENTRE_BASELINE,
    RANDOM_BASELINE,
    REPORT_METHODS,
    GalleryItem,
    ReportData,
    attribution_summary,
    bootstrap_auc,
    build_report,
    load_ablation_runs,
    measure_cases,
    results_by_grade,
    roi_for,
    select_gallery,
    summarize_measures,
)
from thyrocam.report.html import render_html

__all__ = [
    "REPORT_METHODS",
    "ABLATION_KINDS",
    "RANDOM_BASELINE",
    "CENTRE_BASELINE",
    "BASELINES",
    "GalleryItem",
    "ReportData",
    "write_report",
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


def write_report(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    device: str | None = None,
    ablation: Mapping[str, str | os.PathLike] | None = None,
    methods: Sequence[str] = REPORT_METHODS,
    max_cases: int | None = 60,
    gallery: int = 4,
    label_source: str = "auto",
    seed: int = 0,
) -> Path:
    """Evaluate ``run`` on ``data`` and write ``out/metrics.json`` and ``out/report.html``.

    Args:
        run: the run folder of the combined model.
        data: DDTI folder or CSV manifest (its test split is used when it is the
            run's training data).
        out: the report folder (created).
        device: ``None``: CUDA when present.
        ablation: ``{"image": RUN, "clinical": RUN}``: single-modality runs trained on
            the same data with the same seed.
        methods: the CAM methods to measure.
        max_cases: at most this many outlined held-out images are measured; ``None``: all.
        gallery: number of most confident right and of wrong calls shown.
        label_source: ``auto``, ``labels`` or ``tirads``.
        seed: seeds the bootstrap, the measured subset and the random baselines.

    Returns:
        The path of ``report.html``.
    """
    if max_cases is not None and max_cases < 1:
        raise InputError(
            f"max_cases: got {max_cases!r}; allowed: an integer >= 1 or None (all)",
            field="max_cases",
            value=max_cases,
            allowed=">= 1",
        )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(
        run,
        data,
        device=device,
        ablation=ablation,
        methods=methods,
        max_cases=max_cases,
        gallery=gallery,
        label_source=label_source,
        seed=seed,
    )
    write_json(folder / "metrics.json", _json_safe(report.metrics))
    page = folder / "report.html"
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(render_html(report, methods=methods), encoding="utf-8")
    os.replace(tmp, page)
    log.info("report written to %s", page)
    return page
