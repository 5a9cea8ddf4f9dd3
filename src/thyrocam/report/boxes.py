"""How well the run finds the nodule on whole frames given without a box.

Each held-out frame with an outline goes through :meth:`Predictor.locate` exactly as
an upload without a box does (the run's locator network when it has one, else its own
outline head). The box is scored against the outline's box (IoU; a two-panel frame
counts the better of its outlines, as ``thyrocam cv`` does), and the whole-frame
outline that search drew against the outline itself (Dice at frame resolution).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from thyrocam.data import Sample
from thyrocam.imaging import Box, polygons_to_mask
from thyrocam.predictor import Predictor
from thyrocam.predictor.autobox import MASK_THRESHOLD, autobox_ious, sample_outline_boxes
from thyrocam.report.scoring import BOOTSTRAP_RESAMPLES, case_resamples, percentile_interval

__all__ = ["HIT_IOU", "BoxRow", "BoxMeasures", "measure_boxes"]

log = logging.getLogger(__name__)

HIT_IOU = 0.5  # a box "finds" the nodule from this IoU with the outline's box


@dataclass(frozen=True)
class BoxRow:
    """One frame: its automatic box (``None``: no nodule found, the whole frame used),
    the IoU with the best-matching outline box and with the largest, the outline's Dice."""

    sample: Sample
    box: Box | None
    outline_box: Box
    iou: float
    iou_largest: float
    dice: float | None

    def to_json(self) -> dict:
        return {
            "case": self.sample.case_id,
            "image": self.sample.image_path.name,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "outline_box": [round(v, 1) for v in self.outline_box],
            "iou": round(self.iou, 4),
            "iou_largest": round(self.iou_largest, 4),
            "dice": None if self.dice is None else round(self.dice, 4),
        }


@dataclass(frozen=True)
class BoxMeasures:
    """The automatic box over the measured frames.

    Attributes:
        finder: ``"locator"`` (the run's locator network) or ``"outline head"``.
        rows: one per held-out frame with an outline, in the data's order.
        hit_ci: 95% bootstrap interval of the hit rate, resampling cases.
    """

    finder: str
    rows: list[BoxRow]
    hit_ci: list[float] | None

    @property
    def frames(self) -> int:
        return len(self.rows)

    @property
    def cases(self) -> int:
        return len({r.sample.case_id for r in self.rows})

    @property
    def hit_rate(self) -> float:
        return float(np.mean([r.iou >= HIT_IOU for r in self.rows]))

    @property
    def hit_rate_largest(self) -> float:
        return float(np.mean([r.iou_largest >= HIT_IOU for r in self.rows]))

    @property
    def mean_iou(self) -> float:
        return float(np.mean([r.iou for r in self.rows]))

    @property
    def dice(self) -> float | None:
        values = [r.dice for r in self.rows if r.dice is not None]
        return float(np.mean(values)) if values else None

    @property
    def not_found(self) -> int:
        return sum(r.box is None for r in self.rows)

    def to_json(self) -> dict:
        return {
            "finder": self.finder,
            "frames": self.frames,
            "cases": self.cases,
            "hit_iou": HIT_IOU,
            "hit_rate": self.hit_rate,
            "hit_rate_ci": self.hit_ci,
            "hit_rate_largest": self.hit_rate_largest,
            "mean_iou": self.mean_iou,
            "outline_dice": self.dice,
            "not_found": self.not_found,
            "per_frame": [r.to_json() for r in self.rows],
        }


def measure_boxes(
    predictor: Predictor, samples: Sequence[Sample], *, seed: int = 0
) -> BoxMeasures | None:
    """Box every outlined frame of ``samples`` as an upload without a box.

    Returns ``None`` when the run cannot find a nodule (no outline head, no locator)
    or no frame has an outline.
    """
    if predictor.locator is None and "outline" not in predictor.heads:
        return None
    rows = []
    for sample in samples:
        outlines = sample_outline_boxes(sample)
        if not outlines:
            continue
        frame = predictor.decode(sample.image_path)
        _, clin = predictor.encode_clinical(sample.clinical)
        located = predictor.locate(frame, clin)
        iou, iou_largest = autobox_ious(located.roi, outlines)
        dice = None
        if located.outline_frame is not None:
            truth = _outline_mask(sample, frame.image.size)
            dice = _dice(located.outline_frame >= MASK_THRESHOLD, truth)
        rows.append(
            BoxRow(
                sample=sample,
                box=located.roi,
                outline_box=outlines[0],
                iou=iou,
                iou_largest=iou_largest,
                dice=dice,
            )
        )
    if not rows:
        return None
    finder = "locator" if predictor.locator is not None else "outline head"
    log.info("report: automatic box on %d outlined frames (%s)", len(rows), finder)
    return BoxMeasures(finder=finder, rows=rows, hit_ci=_hit_interval(rows, seed=seed))


def _outline_mask(sample: Sample, size: tuple[int, int]) -> np.ndarray:
    """The outline as a bool ``(H, W)`` mask of a frame of ``size`` ``(W, H)``."""
    if sample.polygons:
        return polygons_to_mask(sample.polygons, size=size)
    mask = Image.open(sample.mask_path).convert("L")  # type: ignore[arg-type]
    return np.asarray(mask.resize(size, Image.Resampling.NEAREST)) > 127


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def _hit_interval(rows: Sequence[BoxRow], *, seed: int) -> list[float] | None:
    """95% interval of the hit rate over resampled cases (a case's frames stay together)."""
    groups = [r.sample.case_id for r in rows]
    if len(set(groups)) < 2:
        return None
    hits = np.array([r.iou >= HIT_IOU for r in rows])
    resamples = case_resamples(groups, n=BOOTSTRAP_RESAMPLES, seed=seed)
    return percentile_interval([float(hits[idx].mean()) for idx in resamples])
