"""TI-RADS: DDTI's radiologist grades (the binary label) and the ACR TI-RADS 2017 calculator."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from thyrocam.clinical.vocabulary import _invalid, _is_missing, _is_number, normalize_clinical

__all__ = [
    "TIRADS_GRADES",
    "LABELS",
    "TIRADS_FEATURES",
    "normalize_tirads",
    "tirads_to_label",
    "TiradsResult",
    "acr_tirads",
]

#: DDTI's radiologist grades (the older 2/3/4a/4b/4c/5 scale, not ACR TR1-TR5).
TIRADS_GRADES: tuple[str, ...] = ("2", "3", "4a", "4b", "4c", "5")
LABELS: tuple[str, ...] = ("benign", "malignant")

#: Point features of ACR TI-RADS 2017, in the order of the ACR chart.
TIRADS_FEATURES: tuple[str, ...] = (
    "composition",
    "echogenicity",
    "shape",
    "margins",
    "echogenic_foci",
)


def normalize_tirads(value: object) -> str | None:
    """Normalise a DDTI TI-RADS grade ("2", "3", "4a", "4b", "4c", "5").

    Case and surrounding spaces are ignored; the integers 2, 3 and 5 are accepted.
    Missing values (as for the descriptors) give ``None``. ACR levels ("TR4") are not
    DDTI grades and are rejected.

    Raises:
        ClinicalValueError: with ``field="tirads"`` for anything else.
    """
    if _is_missing(value):
        return None
    if isinstance(value, str):
        grade = value.strip().lower()
    elif isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        grade = str(int(value))
    else:
        grade = None
    if grade not in TIRADS_GRADES:
        raise _invalid("tirads", value, TIRADS_GRADES)
    return grade


def tirads_to_label(grade: str | None) -> int | None:
    """Binary label from a DDTI grade: {2, 3} -> 0 (benign), {4a, 4b, 4c, 5} -> 1.

    This is the radiologist's grade, not pathology: a model trained on it learns to
    reproduce the grade, which the descriptors largely determine.

    Returns:
        0, 1, or ``None`` when the grade is missing.

    Raises:
        ClinicalValueError: for a value :func:`normalize_tirads` rejects.
    """
    normalized = normalize_tirads(grade)
    if normalized is None:
        return None
    return 0 if normalized in ("2", "3") else 1


# Tessler et al., "ACR Thyroid Imaging, Reporting and Data System (TI-RADS): White Paper
# of the ACR TI-RADS Committee", J Am Coll Radiol 2017;14:587-595.
_COMPOSITION_POINTS = {
    "cystic": 0,
    "spongiform": 0,
    "predominantly cystic": 1,
    "predominantly solid": 1,
    "solid": 2,
    # DDTI's "dense" is read as solid: no cystic component.
    "dense": 2,
}
# DDTI has no "anechoic" (0 points).
_ECHOGENICITY_POINTS = {
    "hyperechogenicity": 1,
    "isoechogenicity": 1,
    "hypoechogenicity": 2,
    "marked hypoechogenicity": 3,
}
# Smooth or ill-defined 0, lobulated/irregular 2; DDTI does not record extrathyroidal
# extension (3).
_MARGIN_POINTS = {
    "well defined": 0,
    "well defined smooth": 0,
    "ill defined": 0,
    "microlobulated": 2,
    "macrolobulated": 2,
    "spiculated": 2,
}
# DDTI has no rim calcifications (2); its microcalcifications are punctate foci (3).
_FOCI_POINTS = {"non": 0, "macrocalcifications": 1, "microcalcifications": 3}
# The ACR chart adds no further points to a spongiform nodule, and an (almost) completely
# cystic one is anechoic with nothing else to score: both are TR1 whatever else is recorded.
_NO_FURTHER_POINTS = frozenset({"cystic", "spongiform"})

# (level, lowest total, FNA threshold cm, follow-up threshold cm), highest level first.
_LEVELS: tuple[tuple[str, int, float | None, float | None], ...] = (
    ("TR5", 7, 1.0, 0.5),
    ("TR4", 4, 1.5, 1.0),
    ("TR3", 3, 2.5, 1.5),
    ("TR2", 2, None, None),
    ("TR1", 0, None, None),
)


@dataclass(frozen=True)
class TiradsResult:
    """ACR TI-RADS 2017 scoring of one nodule.

    Attributes:
        points: points per feature of :data:`TIRADS_FEATURES`; ``None`` where missing,
            0 for the other features of a cystic or spongiform nodule (the ACR chart adds
            no further points to those). ``shape`` is always ``None``: DDTI never records
            taller-than-wide (3 points), so every level assumes wider-than-tall.
        total: sum of the known points.
        level: ``"TR1"`` .. ``"TR5"``.
        missing: the features that were not recorded, ``"shape"`` always among them.
        fna_threshold_cm: size at or above which FNA is advised (``None`` for TR1/TR2).
        follow_up_threshold_cm: size at or above which follow-up is advised.
        recommendation: the rule in words, and which part applies when a size is given.
        is_partial: a feature other than shape that could add points was missing, so
            ``level`` is a lower bound.
    """

    points: dict[str, int | None]
    total: int
    level: str
    missing: tuple[str, ...]
    fna_threshold_cm: float | None
    follow_up_threshold_cm: float | None
    recommendation: str
    is_partial: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (``missing`` as a list)."""
        return {
            "points": dict(self.points),
            "total": self.total,
            "level": self.level,
            "missing": list(self.missing),
            "fna_threshold_cm": self.fna_threshold_cm,
            "follow_up_threshold_cm": self.follow_up_threshold_cm,
            "recommendation": self.recommendation,
            "is_partial": self.is_partial,
        }


def _check_size(size_cm: object) -> float:
    if not _is_number(size_cm) or size_cm <= 0:
        raise _invalid("size_cm", size_cm, "a positive nodule size in centimetres")
    return float(size_cm)


def acr_tirads(
    clinical: Mapping[str, object] | None, *, size_cm: float | None = None
) -> TiradsResult:
    """Score a nodule with ACR TI-RADS 2017 from the DDTI descriptors.

    Args:
        clinical: raw or normalised descriptors (normalised here).
        size_cm: maximum nodule diameter; when given, the recommendation says whether
            FNA, follow-up or neither applies.

    Returns:
        The :class:`TiradsResult`.

    Raises:
        ClinicalValueError: an invalid descriptor or a non-positive ``size_cm``.

    Example:
        >>> acr_tirads({"composition": "solid", "echogenicity": "marked hypoechogenicity",
        ...             "margins": "spiculated", "calcifications": "microcalcifications"}).level
        'TR5'
    """
    size = None if size_cm is None else _check_size(size_cm)
    values = normalize_clinical(clinical)
    composition = values["composition"]
    tables = {
        "composition": (composition, _COMPOSITION_POINTS),
        "echogenicity": (values["echogenicity"], _ECHOGENICITY_POINTS),
        "shape": (None, {}),
        "margins": (values["margins"], _MARGIN_POINTS),
        "echogenic_foci": (values["calcifications"], _FOCI_POINTS),
    }
    no_further = composition in _NO_FURTHER_POINTS
    points: dict[str, int | None] = {}
    for feature, (value, table) in tables.items():
        if value is None:
            points[feature] = None
        elif no_further and feature != "composition":
            points[feature] = 0
        else:
            points[feature] = table[value]
    missing = tuple(f for f in TIRADS_FEATURES if points[f] is None)
    total = sum(p for p in points.values() if p is not None)
    level, _, fna, follow_up = next(row for row in _LEVELS if total >= row[1])
    is_partial = not no_further and any(f != "shape" for f in missing)

    if fna is None or follow_up is None:
        recommendation = "no FNA or follow-up"
    else:
        recommendation = f"FNA if >= {fna:.1f} cm; follow-up if >= {follow_up:.1f} cm"
        if size is not None:
            action = "FNA" if size >= fna else "follow-up" if size >= follow_up else "neither"
            recommendation += f"; at {size:g} cm: {action}"
    if is_partial:
        unknown = ", ".join(f for f in missing if f != "shape")
        recommendation += f" (level is a lower bound: {unknown} not recorded)"
    return TiradsResult(
        points=points,
        total=total,
        level=level,
        missing=missing,
        fna_threshold_cm=fna,
        follow_up_threshold_cm=follow_up,
        recommendation=recommendation,
        is_partial=is_partial,
    )
