"""From cases to labelled training samples (one per view), and splits by case.

Two label sources exist and must not be confused: explicit ground truth (a
``labels.csv`` beside a DDTI folder, or a manifest's ``label`` column, usually
pathology) and the label derived from DDTI's TI-RADS grade, which is the radiologist's
assessment, not pathology.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from thyrocam.clinical import tirads_to_label
from thyrocam.data.ddti import Case, Polygon, read_ddti
from thyrocam.data.manifest import read_manifest
from thyrocam.errors import DataError, check_choice

__all__ = [
    "LabelSource",
    "Sample",
    "load_cases",
    "cases_to_samples",
    "split_by_case",
    "label_counts",
    "prepare_samples",
    "outline_only_samples",
    "has_outline",
    "LABEL_CAVEAT",
]

logger = logging.getLogger(__name__)

LabelSource = Literal["auto", "labels", "tirads"]
_LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)
_CLASS_NAMES = ("benign", "malignant")
_SHOWN_IDS = 10

LABEL_CAVEAT = (
    "DDTI labels are derived from the radiologist's TI-RADS grade ({2,3} benign, "
    "{4a,4b,4c,5} malignant), not from pathology."
)


@dataclass(frozen=True)
class Sample:
    """One image (one view of a case) with its case-level label.

    Attributes:
        case_id: the group key for splitting (``str(case.number)`` for DDTI, the
            manifest's case id otherwise).
        image_path: the image file.
        polygons: nodule outlines in image pixels, as :attr:`View.polygons`.
        clinical: the six normalised descriptors, ``None`` where missing.
        label: 0 benign, 1 malignant; ``None`` for a view of an unlabelled case kept
            for its outline (:func:`outline_only_samples`), which trains the outline and
            descriptor heads and never the malignancy logit.
        tirads: the DDTI grade or ``None``.
        mask_path: a binary nodule mask, when the manifest gives one.
    """

    case_id: str
    image_path: Path
    polygons: tuple[Polygon, ...]
    clinical: dict[str, str | float | None]
    label: int | None
    tirads: str | None
    mask_path: Path | None = None


def load_cases(path: str | os.PathLike[str]) -> tuple[list[Case], list[str]]:
    """Read a DDTI folder (:func:`read_ddti`) or a ``.csv`` manifest (:func:`read_manifest`).

    Raises:
        DataError: ``path`` is neither an existing folder nor a ``.csv`` file, or the
            reader rejects it.
    """
    source = Path(path)
    if source.is_dir():
        return read_ddti(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_manifest(source)
    what = "does not exist" if not source.exists() else "is not a folder or a .csv file"
    raise DataError(
        f"data: got '{source}', which {what}; allowed: a DDTI folder or a .csv manifest",
        field="data",
        value=str(source),
        allowed="a DDTI folder or a .csv manifest",
    )


def _case_label(case: Case, label_source: str) -> int | None:
    if label_source == "labels":
        return case.label
    if label_source == "tirads":
        return tirads_to_label(case.tirads)
    return case.label if case.label is not None else tirads_to_label(case.tirads)


def cases_to_samples(
    cases: Iterable[Case],
    *,
    label_source: LabelSource = "auto",
) -> tuple[list[Sample], list[str]]:
    """Turn cases into one sample per view, labelled at case level.

    Args:
        cases: from :func:`load_cases`.
        label_source: ``"labels"`` uses explicit ground truth only (``labels.csv``
            or the manifest's ``label``); ``"tirads"`` always derives the label from
            the DDTI grade, {2, 3} benign and {4a, 4b, 4c, 5} malignant. That grade is
            the radiologist's, not pathology, and the descriptors largely determine
            it, so a model trained on it learns to reproduce the grade. ``"auto"``
            takes the explicit label when a case has one, else the grade.

    Returns:
        ``(samples, problems)``: cases without a usable label are left out and
        summarised in one problem line.

    Raises:
        DataError: ``label_source`` is not one of ``auto``, ``labels``, ``tirads``.
    """
    check_choice(label_source, field="label_source", allowed=_LABEL_SOURCES, error=DataError)
    samples: list[Sample] = []
    unlabelled: list[str] = []
    for case in cases:
        label = _case_label(case, label_source)
        if label is None:
            unlabelled.append(_case_id(case))
            continue
        samples.extend(_view_samples(case, label))
    problems: list[str] = []
    if unlabelled:
        missing = {
            "auto": "no TI-RADS grade and no label",
            "tirads": "no TI-RADS grade",
            "labels": "no label",
        }[label_source]
        shown = ", ".join(unlabelled[:_SHOWN_IDS]) + (
            ", ..." if len(unlabelled) > _SHOWN_IDS else ""
        )
        problems.append(f"{len(unlabelled)} cases have {missing}; left out ({shown})")
    return samples, problems


def _case_id(case: Case) -> str:
    return case.case_id if case.case_id is not None else str(case.number)


def _view_samples(case: Case, label: int | None) -> list[Sample]:
    return [
        Sample(
            case_id=_case_id(case),
            image_path=view.image_path,
            polygons=view.polygons,
            clinical=dict(case.clinical),
            label=label,
            tirads=case.tirads,
            mask_path=view.mask_path,
        )
        for view in case.views
    ]


def has_outline(sample: Sample) -> bool:
    """Whether ``sample`` has a nodule outline to learn from: a mask file or a polygon."""
    return sample.mask_path is not None or any(len(p) >= 3 for p in sample.polygons)


def outline_only_samples(
    data: str | os.PathLike[str], *, label_source: LabelSource = "auto"
) -> list[Sample]:
    """The outlined views of the cases :func:`prepare_samples` leaves out for want of a label.

    Each has ``label=None``: it can teach the outline head (and the descriptor heads,
    where a value is recorded) what a nodule looks like in every training set, and is
    never scored or split. ``../shared/ddti``: 61 cases have no TI-RADS grade, and 82 frames
    of 60 of them an outline, beside the 231 labelled frames.
    """
    check_choice(label_source, field="label_source", allowed=_LABEL_SOURCES, error=DataError)
    cases, _ = load_cases(data)
    out: list[Sample] = []
    for case in cases:
        if _case_label(case, label_source) is not None:
            continue
        out.extend(s for s in _view_samples(case, None) if has_outline(s))
    return out


def split_by_case(
    samples: Sequence[Sample],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Split into train/validation/test so that all views of a case stay together.

    Cases are stratified by label and shuffled with ``seed``; the result does not
    depend on the order of ``samples``. With at least 3 cases of a class, each split
    gets at least one case of that class (when its fraction is above 0).

    Args:
        samples: from :func:`cases_to_samples`.
        fractions: shares of cases for train, validation and test; non-negative,
            summing to 1.
        seed: the shuffle seed.

    Returns:
        ``(train, val, test)``, each in the order of ``samples``.

    Raises:
        DataError: bad ``fractions``, or fewer than 2 cases.
    """
    if (
        len(fractions) != 3
        or any(not math.isfinite(f) or f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise DataError(
            f"fractions: got {tuple(fractions)!r}; allowed: three non-negative numbers "
            "summing to 1",
            field="fractions",
            value=fractions,
            allowed="three non-negative numbers summing to 1",
        )
    case_labels: dict[str, int] = {}
    for sample in samples:
        case_labels.setdefault(sample.case_id, sample.label)
    if len(case_labels) < 2:
        raise DataError(
            f"samples: got {len(case_labels)} case(s); allowed: at least 2 cases to split",
            field="samples",
            value=len(case_labels),
            allowed="at least 2 cases",
        )
    rng = random.Random(seed)
    split_of: dict[str, int] = {}
    for label in sorted(set(case_labels.values())):
        ids = sorted(cid for cid, lab in case_labels.items() if lab == label)
        rng.shuffle(ids)
        n_train, n_val, _ = _allocate(len(ids), fractions)
        for position, cid in enumerate(ids):
            split_of[cid] = 0 if position < n_train else 1 if position < n_train + n_val else 2
    splits: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    for sample in samples:
        splits[split_of[sample.case_id]].append(sample)
    logger.info(
        "split_by_case seed %d: %s cases",
        seed,
        "/".join(str(len({s.case_id for s in split})) for split in splits),
    )
    return splits


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Cases per split for one class: largest-remainder shares, none empty from n=3."""
    exact = [n * f for f in fractions]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            if fractions[i] > 0 and counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def label_counts(samples: Iterable[Sample]) -> dict[str, int]:
    """Number of samples (images) per class: ``{"benign": n0, "malignant": n1}``."""
    counts = dict.fromkeys(_CLASS_NAMES, 0)
    for sample in samples:
        counts[_CLASS_NAMES[sample.label]] += 1
    return counts


def prepare_samples(
    data: str | os.PathLike[str], *, label_source: LabelSource = "auto"
) -> tuple[list[Sample], list[str], str]:
    """Read a DDTI folder or a CSV manifest into labelled samples.

    Returns:
        ``(samples, problems, label_definition)``; the definition says whether
        the labels are explicit (labels.csv, manifest) or TI-RADS-derived.

    Raises:
        DataError: unreadable ``data``, or no labelled image in it.
    """
    cases, problems = load_cases(data)
    samples, more = cases_to_samples(cases, label_source=label_source)
    problems = list(problems) + list(more)
    if not samples:
        raise DataError(
            f"data: {data} yields no labelled image (problems: {len(problems)}); "
            "allowed: a DDTI folder with TI-RADS grades or labels.csv, or a labelled CSV manifest",
            field="data",
            value=str(data),
            allowed="labelled DDTI folder or manifest",
        )
    explicit = label_source != "tirads" and all(c.label is not None for c in cases)
    definition = (
        "explicit labels (labels.csv or manifest)" if explicit else "tirads: " + LABEL_CAVEAT
    )
    return samples, problems, definition
