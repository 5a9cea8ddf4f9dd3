"""The report's gallery: the most confident right and wrong calls, with their maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thyrocam.data import Sample
from thyrocam.explain.measures import pointing_game
from thyrocam.imaging import load_image, polygons_to_mask
from thyrocam.predictor import Explanation, Predictor
from thyrocam.report.explanations import outlined, roi_for

__all__ = ["GalleryItem", "select_gallery", "gallery_items"]


@dataclass(frozen=True)
class GalleryItem:
    """One gallery case: the sample, its score and the explanation of the model's call.

    Attributes:
        sample: the held-out image.
        probability: P(malignant) from the evaluation.
        correct: whether the call at the run's threshold matches the label.
        explanation: the map of the class the model called (default CAM method).
        mask: ``(H, W)`` bool nodule mask on the frame, ``None`` without an outline.
    """

    sample: Sample
    probability: float
    correct: bool
    explanation: Explanation
    mask: np.ndarray | None

    @property
    def called(self) -> str:
        return (
            "malignant" if self.probability >= self.explanation.prediction.threshold else "benign"
        )

    @property
    def truth(self) -> str:
        return "malignant" if self.sample.label == 1 else "benign"

    @property
    def pointing(self) -> bool | None:
        """Whether the map's peak is on the nodule (``None`` without an outline)."""
        if self.mask is None:
            return None
        return pointing_game(self.explanation.cam_frame, self.mask)

    def to_json(self) -> dict:
        """One entry of ``metrics.json["gallery"]``."""
        return {
            "case_id": self.sample.case_id,
            "image": Path(self.sample.image_path).name,
            "label": int(self.sample.label),
            "probability": self.probability,
            "correct": self.correct,
            "pointing": self.pointing,
        }


def select_gallery(
    probs: np.ndarray, labels: np.ndarray, *, threshold: float, k: int
) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` most confident right and the ``k`` most confident wrong calls.

    Confidence is the probability given to the class the model called.
    """
    called = probs >= threshold
    confidence = np.where(called, probs, 1.0 - probs)
    order = np.argsort(-confidence, kind="stable")
    right = [int(i) for i in order if called[i] == (labels[i] == 1)][:k]
    wrong = [int(i) for i in order if called[i] != (labels[i] == 1)][:k]
    return right, wrong


def gallery_items(
    predictor: Predictor,
    samples: list[Sample],
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    k: int,
) -> list[GalleryItem]:
    """The ``k`` most confident right calls, then the ``k`` wrong ones, each explained.

    Args:
        predictor: the run.
        samples: the scored images.
        probs: ``(N,)`` their P(malignant) (the evaluation's, not recomputed).
        labels: ``(N,)`` 0/1.
        k: how many of each.
    """
    right, wrong = select_gallery(probs, labels, threshold=predictor.threshold, k=k)
    items = []
    for i in right + wrong:
        sample, prob = samples[i], float(probs[i])
        called = prob >= predictor.threshold
        frame = load_image(sample.image_path)
        exp = predictor.explain(
            frame,
            sample.clinical,
            roi=roi_for(predictor, sample),
            target="malignant" if called else "benign",
        )
        mask = polygons_to_mask(sample.polygons, size=frame.size) if outlined(sample) else None
        items.append(
            GalleryItem(
                sample=sample,
                probability=prob,
                correct=bool(called == (labels[i] == 1)),
                explanation=exp,
                mask=mask,
            )
        )
    return items
