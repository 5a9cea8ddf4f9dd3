"""Everything the report shows, as one typed result: :class:`Report`.

:func:`build_report` runs the parts (:mod:`~thyrocam.report.scoring`,
:mod:`~thyrocam.report.attributions`, :mod:`~thyrocam.report.explanations`,
:mod:`~thyrocam.report.gallery`) over one evaluation of the run;
:mod:`thyrocam.report.html` lays the result out and :meth:`Report.to_json` is
``metrics.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thyrocam.errors import InputError
from thyrocam.evaluate import Scored, score_run
from thyrocam.explain.methods import canonical_method
from thyrocam.predictor import Predictor
from thyrocam.report.attributions import AttributionSummary, attribution_summary
from thyrocam.report.boxes import BoxMeasures, measure_boxes
from thyrocam.report.explanations import REPORT_METHODS, Measures, measure_cases, measured_subset
from thyrocam.report.gallery import GalleryItem, gallery_items
from thyrocam.report.scoring import COMBINED, Scoring, load_ablation_runs, score_models

__all__ = ["ReportOptions", "Report", "build_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """What :func:`build_report` measures and how (one definition for API and CLI).

    Attributes:
        device: ``None``: CUDA when present.
        ablation: ``{"image": RUN, "clinical": RUN}``: single-modality runs trained on
            the same data with the same seed (see :func:`load_ablation_runs`).
        methods: the CAM methods to measure (any accepted spelling; stored canonical).
        max_cases: at most this many outlined held-out images are measured (a seeded
            random subset); ``None``: all.
        gallery: number of most confident right and of wrong calls shown.
        label_source: ``auto``, ``labels`` or ``tirads`` (see ``thyrocam train``).
        seed: seeds the bootstrap, the measured subset and the random baselines.

    Raises:
        InputError: an unknown method or ``max_cases`` below 1, on construction, so
            a mistake fails before minutes of scoring.
    """

    device: str | None = None
    ablation: Mapping[str, str | os.PathLike] | None = None
    methods: Sequence[str] = REPORT_METHODS
    max_cases: int | None = 60
    gallery: int = 4
    label_source: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_cases is not None and (
            not isinstance(self.max_cases, int) or self.max_cases < 1
        ):
            raise InputError(
                f"max_cases: got {self.max_cases!r}; allowed: an integer >= 1 or None (all)",
                field="max_cases",
                value=self.max_cases,
                allowed=">= 1",
            )
        methods = tuple(dict.fromkeys(canonical_method(m) for m in self.methods))
        object.__setattr__(self, "methods", methods)


@dataclass(frozen=True)
class Report:
    """The evaluation report of one run on one data set.

    Attributes:
        scoring: every model's scores on the held-out images.
        attributions: the descriptors' Shapley values, per field.
        measures: the explanation measures per CAM method and baseline.
        gallery: the most confident right calls, then the wrong ones.
        meta: the run's ``meta.json`` (architecture, preprocessing, versions).
        boxes: the automatic box on the outlined frames given whole (``None``: the run
            cannot find a nodule, or no frame has an outline).
    """

    scoring: Scoring
    attributions: AttributionSummary
    measures: Measures
    gallery: list[GalleryItem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    boxes: BoxMeasures | None = None

    @property
    def scored(self) -> Scored:
        return self.scoring.scored

    def to_json(self) -> dict:
        """``metrics.json``: every number of the page."""
        scored = self.scoring.scored
        models = {name: m.to_json() for name, m in self.scoring.models.items()}
        return {
            "run": str(scored.run),
            "data": str(scored.data),
            "subset": scored.subset,
            "images": len(scored.samples),
            "cases": self.scoring.cases,
            "label_definition": scored.label_definition,
            "data_problems": len(scored.problems),
            "arch": self.meta.get("arch"),
            "preprocessing": self.meta.get("preprocessing"),
            "threshold": scored.threshold,
            "evaluation": models[COMBINED],
            "ablation": models,
            "by_tirads_grade": self.scoring.by_grade,
            "attributions": self.attributions.to_json(),
            "explanations": self.measures.to_json(),
            "automatic_box": None if self.boxes is None else self.boxes.to_json(),
            "gallery": [item.to_json() for item in self.gallery],
            "versions": self.meta.get("versions"),
        }


def _check_scored(scored: Scored, run: str | os.PathLike, data: str | os.PathLike) -> None:
    for name, given, used in (("run", run, scored.run), ("data", data, scored.data)):
        if Path(given).resolve() != Path(used).resolve():
            raise InputError(
                f"scored: got the evaluation of {name} {used}; allowed: one of {given}",
                field="scored",
                value=str(used),
                allowed=str(given),
            )


def build_report(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    options: ReportOptions | None = None,
    scored: Scored | None = None,
) -> Report:
    """Score the run (and its ablation runs) and measure its explanations.

    Args:
        run: the run folder (the combined model).
        data: a DDTI folder or CSV manifest; when it is the run's training data,
            only the run's held-out test split is used.
        options: what to measure (defaults: :class:`ReportOptions`).
        scored: the run's evaluation on ``data`` when the caller already has it
            (``thyrocam evaluate --report``): its probabilities are reused, so each
            image goes through the combined model once.
    """
    options = options or ReportOptions()
    if scored is None:
        scored = score_run(run, data, device=options.device, label_source=options.label_source)
    else:
        _check_scored(scored, run, data)
    predictor = Predictor.load(scored.run, device=options.device)
    others = load_ablation_runs(
        options.ablation,
        main=scored.run,
        same_split=scored.subset == "test split",
        device=options.device,
    )
    log.info("report: scoring %d images (%s)", len(scored.samples), scored.subset)
    scoring = score_models(scored, main=predictor, others=others, seed=options.seed)
    log.info("report: descriptor attributions")
    attributions = attribution_summary(predictor, scored.samples)
    measured = measured_subset(scored.samples, options.max_cases, seed=options.seed)
    log.info("report: explanation measures on %d outlined images", len(measured))
    measures = measure_cases(predictor, measured, methods=options.methods, seed=options.seed)
    boxes = measure_boxes(predictor, scored.samples, seed=options.seed)
    gallery = gallery_items(
        predictor, scored.samples, scored.probs, scoring.labels, k=options.gallery
    )
    return Report(
        scoring=scoring,
        attributions=attributions,
        measures=measures,
        gallery=gallery,
        meta=dict(predictor.meta),
        boxes=boxes,
    )
