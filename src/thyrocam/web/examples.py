"""Example cases for the page: a handful of DDTI-format cases with their descriptors and ROI."""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thyrocam.clinical import tirads_to_label
from thyrocam.data import read_ddti
from thyrocam.errors import DataError

__all__ = ["Example", "load_examples"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One example frame.

    Attributes:
        case: the DDTI case number.
        view: the view index (``V`` in ``N_V.jpg``).
        image_path: the frame on disk.
        clinical: the six descriptors, normalised (``None`` where missing).
        tirads: the DDTI grade, if any.
        label: ``"benign"``/``"malignant"`` from ``labels.csv`` or the grade, else ``None``.
        roi: the nodule box ``(x0, y0, x1, y1)`` around the largest outline, if any.
    """

    case: int
    view: int
    image_path: Path
    clinical: dict[str, Any]
    tirads: str | None
    label: str | None
    roi: tuple[float, float, float, float] | None

    def to_dict(self, *, image_url: str) -> dict[str, Any]:
        """What ``/examples`` lists; ``case`` also names the image: ``/examples/<case>/image``."""
        return {
            "case": self.case,
            "view": self.view,
            "image_url": image_url,
            "clinical": dict(self.clinical),
            "tirads": self.tirads,
            "label": self.label,
            "roi": [round(v, 1) for v in self.roi] if self.roi else None,
        }


def load_examples(folder: str | os.PathLike | None, *, limit: int = 8) -> list[Example]:
    """Pick up to ``limit`` annotated frames from a DDTI folder, alternating the labels.

    A missing or unreadable folder gives no examples (logged), never an error:
    the page works without them.
    """
    if not folder:
        return []
    try:
        # Absolute paths: Flask resolves a relative send_file path against the app's root.
        cases, problems = read_ddti(Path(folder).resolve())
    except DataError as exc:
        log.warning("examples: %s", exc)
        return []
    if problems:
        log.info(
            "examples: %d problem(s) reading %s (cases skipped or degraded)", len(problems), folder
        )
    by_label: dict[str | None, list[Example]] = {"benign": [], "malignant": [], None: []}
    for case in cases:
        view = next((v for v in case.views if v.nodule_box and v.image_path.is_file()), None)
        if view is None:
            continue
        label = case.label if case.label is not None else tirads_to_label(case.tirads)
        name = None if label is None else ("benign", "malignant")[label]
        by_label[name].append(
            Example(
                case=case.number,
                view=view.index,
                image_path=view.image_path,
                clinical=dict(case.clinical),
                tirads=case.tirads,
                label=name,
                roi=view.nodule_box,
            )
        )
    # Benign and malignant cases in turn, so a short list still shows both.
    mixed = itertools.chain.from_iterable(
        itertools.zip_longest(by_label["benign"], by_label["malignant"], by_label[None])
    )
    return [ex for ex in mixed if ex is not None][:limit]
