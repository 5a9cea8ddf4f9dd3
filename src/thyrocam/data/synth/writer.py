"""Writing a synthetic set in DDTI's on-disk format: ``N.xml``, ``N_V.jpg`` and ``labels.csv``."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from thyrocam.clinical import LABELS
from thyrocam.data.synth.cases import (
    NODULE_FIELDS,
    NoduleFeatures,
    SynthConfig,
    invalid,
    sample_case_features,
)
from thyrocam.data.synth.frame import render_case
from thyrocam.errors import DataError

__all__ = ["LABELS_HEADER", "make_synthetic_ddti"]

logger = logging.getLogger(__name__)

#: Columns of ``labels.csv``: the latent label and the true features of each case.
LABELS_HEADER: tuple[str, ...] = (
    "number",
    "label",
    "label_name",
    *NODULE_FIELDS,
    "taller_than_wide",
    "size_mm",
)

# DDTI's tag order (as in its 67.xml); marks follow.
_XML_TAGS = ("number", "age", "sex", *NODULE_FIELDS, "tirads", "reportbacaf", "reporteco")

_CASE_FILE = re.compile(r"^[1-9][0-9]*(\.xml|_[1-9][0-9]*\.jpg)$")
_LABELS_FILE = "labels.csv"


def _xml_text(number: int, xml: dict[str, str], marks: list[tuple[int, list]]) -> str:
    values = {"number": str(number), "reportbacaf": "", "reporteco": "", **xml}
    parts = ["<case>"]
    parts += [f"<{tag}>{escape(values[tag])}</{tag}>" for tag in _XML_TAGS]
    for view, polygons in marks:
        regions = [
            {
                "points": [{"x": x, "y": y} for x, y in polygon],
                "annotation": {},
                "regionType": "freehand",
            }
            for polygon in polygons
        ]
        parts.append(f"<mark><image>{view}</image><svg>{escape(json.dumps(regions))}</svg></mark>")
    parts.append("</case>")
    return "".join(parts)


def _refuse(out: Path, why: str, allowed: str) -> DataError:
    return DataError(
        f"out: got {str(out)!r}, {why}; allowed: a new or empty folder, "
        "or one make_synthetic_ddti wrote before",
        field="out",
        value=str(out),
        allowed=allowed,
    )


def _prepare_folder(out: Path) -> None:
    """Make `out` ready: new, empty, or a previous synthetic set (whose files go)."""
    if out.exists() and not out.is_dir():
        raise _refuse(out, "which is a file", "folder")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(out.iterdir())
    if not entries:
        return
    labels = out / _LABELS_FILE
    header = ""
    if labels.is_file():
        with labels.open(encoding="utf-8") as fh:
            header = fh.readline().strip()
    strays = [e.name for e in entries if e.name != _LABELS_FILE and not _CASE_FILE.match(e.name)]
    if header != ",".join(LABELS_HEADER) or strays:
        why = f"it holds {strays[0]!r}" if strays else f"it has no synthetic {_LABELS_FILE}"
        raise _refuse(
            out,
            f"a non-empty folder that is not a synthetic DDTI set ({why})",
            "new, empty or synthetic folder",
        )
    for entry in entries:
        if not entry.is_file():
            raise _refuse(
                out, f"which holds the folder {entry.name!r}", "new, empty or synthetic folder"
            )
    for entry in entries:
        entry.unlink()


def _check_count(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise invalid(name, value, f">= {low}", f"an integer >= {low}")


def _labels_row(number: int, y: int, features: NoduleFeatures) -> list[Any]:
    return [
        number,
        y,
        LABELS[y],
        *(getattr(features, name) for name in NODULE_FIELDS),
        int(features.taller_than_wide),
        f"{features.size_mm:.1f}",
    ]


def _write_case(
    folder: Path, number: int, child: np.random.SeedSequence, config: SynthConfig
) -> tuple[list[Any], int]:
    """Write case ``number``'s frames and XML; return its ``labels.csv`` row and frame count."""
    # Separate streams: the descriptors never shift the pictures, nor the reverse.
    feature_seed, image_seed = child.spawn(2)
    features, xml, y = sample_case_features(np.random.default_rng(feature_seed), config)
    rng = np.random.default_rng(image_seed)
    views = 2 if rng.random() < config.second_view_rate else 1
    marks = []
    for view in range(1, views + 1):
        image, polygons = render_case(rng, features=features, config=config)
        image.save(folder / f"{number}_{view}.jpg", quality=config.jpeg_quality)
        marks.append((view, polygons))
    (folder / f"{number}.xml").write_text(_xml_text(number, xml, marks), encoding="utf-8")
    return _labels_row(number, y, features), views


def make_synthetic_ddti(
    out: str | os.PathLike[str],
    *,
    cases: int,
    seed: int = 0,
    config: SynthConfig | None = None,
) -> Path:
    """Write a synthetic data set in DDTI's format.

    Writes ``N.xml`` and ``N_V.jpg`` for N = 1..cases, and ``labels.csv`` with the
    latent label and the true features (:data:`LABELS_HEADER`). The same seed
    gives byte-identical files. A folder written before by this function is
    emptied first; any other non-empty folder is refused.

    Args:
        out: the folder to write (created when missing).
        cases: number of cases, >= 1.
        seed: the random seed, >= 0.
        config: generator settings; defaults to :class:`SynthConfig`.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: bad ``cases`` or ``seed``, or ``out`` is not a usable folder.
    """
    _check_count("cases", cases, 1)
    _check_count("seed", seed, 0)
    config = config or SynthConfig()
    folder = Path(out)
    _prepare_folder(folder)
    rows: list[list[Any]] = []
    frames = 0
    for number, child in enumerate(np.random.SeedSequence(seed).spawn(cases), start=1):
        row, views = _write_case(folder, number, child, config)
        rows.append(row)
        frames += views
    with (folder / _LABELS_FILE).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(LABELS_HEADER)
        writer.writerows(rows)
    logger.info("wrote %d synthetic cases (%d frames) to %s", cases, frames, folder)
    return folder
