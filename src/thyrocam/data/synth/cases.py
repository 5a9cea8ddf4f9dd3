"""Drawing one synthetic case: the latent label, the nodule's true features, the XML's reading.

The words come from :mod:`thyrocam.clinical` (``VOCABULARY``, ``TIRADS_GRADES``,
``DDTI_SPELLINGS``, ``LABELS``); what this module adds is the generator's own model of
them: how likely each value is per class, and which values neighbour each other when
readers disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple, TypeVar

import numpy as np

from thyrocam.clinical import CATEGORICAL_FIELDS, DDTI_SPELLINGS, TIRADS_GRADES, VOCABULARY
from thyrocam.errors import DataError

__all__ = [
    "NODULE_FIELDS",
    "COMPOSITIONS",
    "ECHOGENICITIES",
    "MARGINS",
    "CALCIFICATIONS",
    "SUSPICION_ORDER",
    "SynthConfig",
    "NoduleFeatures",
    "invalid",
    "known",
    "per_value",
    "sample_case_features",
]

T = TypeVar("T")

#: The four descriptors the frame shows (sex and age it does not).
NODULE_FIELDS: tuple[str, ...] = tuple(f for f in CATEGORICAL_FIELDS if f != "sex")


def invalid(field: str, value: object, allowed: object, shown: str | None = None) -> DataError:
    """The generator's error for a bad ``value`` of ``field``.

    Args:
        allowed: what is allowed (kept on the error); a tuple is listed in the message.
        shown: the message's words for it, when ``allowed`` is not a tuple.
    """
    if shown is None:
        shown = ", ".join(map(str, allowed)) if isinstance(allowed, tuple) else str(allowed)
    return DataError(
        f"{field}: got {value!r}; allowed: {shown}", field=field, value=value, allowed=allowed
    )


def known(field: str, *values: str) -> tuple[str, ...]:
    """``values``, checked against ``VOCABULARY[field]`` (at import, where it is used).

    The generator names some canonical values in its rules ("a cyst keeps a smooth
    lining"); going through here makes a renamed word fail loudly instead of silently
    never matching.
    """
    unknown = [v for v in values if v not in VOCABULARY[field]]
    if unknown:
        raise invalid(field, unknown[0], VOCABULARY[field])
    return values


def per_value(field: str, table: Mapping[str, T]) -> dict[str, T]:
    """``table``, checked to hold one entry for each word of ``VOCABULARY[field]``.

    The generator's per-value tables (probabilities, echo levels) are keyed by the
    clinical vocabulary; this makes a table that misses or invents a word fail at import.
    """
    if sorted(table) != sorted(VOCABULARY[field]):
        raise invalid(field, sorted(table), VOCABULARY[field])
    return dict(table)


class _Truth(NamedTuple):
    """How this generator models one canonical value of a nodule field."""

    # Place from least (0) to most suspicious: reader disagreement moves a value one
    # step along it. The generator's own order: ACR TI-RADS scores several values alike.
    rank: int
    # P(true value | y) for y = 0 benign, 1 malignant. They overlap on purpose: no
    # single feature decides, the combination does.
    benign: float
    malignant: float


_P_TRUE = {
    "composition": per_value(
        "composition",
        {
            "cystic": _Truth(0, 0.135, 0.015),
            "predominantly cystic": _Truth(1, 0.185, 0.04),
            "spongiform": _Truth(2, 0.18, 0.015),
            "predominantly solid": _Truth(3, 0.21, 0.165),
            "solid": _Truth(4, 0.27, 0.71),
            "dense": _Truth(5, 0.02, 0.055),
        },
    ),
    "echogenicity": per_value(
        "echogenicity",
        {
            "hyperechogenicity": _Truth(0, 0.20, 0.04),
            "isoechogenicity": _Truth(1, 0.48, 0.14),
            "hypoechogenicity": _Truth(2, 0.28, 0.50),
            "marked hypoechogenicity": _Truth(3, 0.04, 0.32),
        },
    ),
    "margins": per_value(
        "margins",
        {
            "well defined smooth": _Truth(0, 0.385, 0.05),
            "well defined": _Truth(1, 0.34, 0.075),
            "ill defined": _Truth(2, 0.15, 0.165),
            "macrolobulated": _Truth(3, 0.075, 0.14),
            "microlobulated": _Truth(4, 0.035, 0.245),
            "spiculated": _Truth(5, 0.015, 0.325),
        },
    ),
    "calcifications": per_value(
        "calcifications",
        {
            "non": _Truth(0, 0.71, 0.375),
            "macrocalcifications": _Truth(1, 0.22, 0.11),
            "microcalcifications": _Truth(2, 0.07, 0.515),
        },
    ),
}
#: Canonical values of each nodule field, least to most suspicious (see ``_Truth``).
SUSPICION_ORDER: dict[str, tuple[str, ...]] = {
    f: tuple(sorted(VOCABULARY[f], key=lambda v, f=f: _P_TRUE[f][v].rank)) for f in NODULE_FIELDS
}
COMPOSITIONS = SUSPICION_ORDER["composition"]
ECHOGENICITIES = SUSPICION_ORDER["echogenicity"]
MARGINS = SUSPICION_ORDER["margins"]
CALCIFICATIONS = SUSPICION_ORDER["calcifications"]

_P_TALLER_THAN_WIDE = {0: 0.03, 1: 0.60}
# Median nodule size (mm); malignant nodules here tend to be found smaller.
_SIZE_MEDIAN_MM = {0: 18.5, 1: 12.0}
_MALE, _FEMALE = known("sex", "M", "F")
_P_MALE = {0: 0.08, 1: 0.27}
_UNKNOWN_SEX = "u"  # DDTI writes this for a recorded case of unknown sex
# Readers agree most on composition and least on margins (Hoang et al., AJR 2018),
# so the reader-disagreement rate is scaled per descriptor.
_NOISE_SCALE = {"composition": 0.6, "echogenicity": 1.0, "margins": 1.5, "calcifications": 0.8}

# Kwak et al. (Radiology 2011) count suspicious features: solid composition,
# hypo- or marked hypoechogenicity, microlobulated or irregular (here: ill-defined)
# margins, microcalcifications. No suspicious feature: grade 2 for a cyst or a
# spongiform nodule, else 3; one to four: 4a, 4b, 4c, 5.
_KWAK_SUSPICIOUS = {
    "composition": known("composition", "solid", "dense"),
    "echogenicity": known("echogenicity", "hypoechogenicity", "marked hypoechogenicity"),
    "margins": known("margins", "ill defined", "microlobulated", "spiculated"),
    "calcifications": known("calcifications", "microcalcifications"),
}
_KWAK_BENIGN = known("composition", "cystic", "spongiform")
# canonical -> DDTI's raw spelling, per field (DDTI has one misspelling per value).
_RAW_SPELLINGS = {
    field: {canonical: raw for raw, canonical in DDTI_SPELLINGS[field].items()}
    for field in NODULE_FIELDS
}


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic DDTI generator.

    Every rate is a probability in [0, 1]. Defaults mimic the public DDTI set.
    """

    width: int = 560
    height: int = 360  # DDTI frames are 560x360
    malignant_rate: float = 0.45  # near-balanced classes keep small sets trainable
    two_panel_rate: float = 0.30  # DDTI: ~40% of its views outline a nodule in 2 panels
    second_view_rate: float = 0.15  # about 1 case in 6 in DDTI has an N_2.jpg
    caliper_rate: float = 0.50  # calipers are common in DDTI; half marks neither class
    # Reader disagreement: a descriptor moves one category with this probability,
    # scaled per descriptor (composition 0.18, echogenicity 0.30, margins 0.45,
    # calcifications 0.24), so the descriptors alone stay clearly below the image.
    descriptor_noise: float = 0.30
    missing_composition_echogenicity: float = 0.40  # DDTI: about half lack both
    missing_margins_calcifications: float = 0.20  # these two are blank less often
    missing_sex_age: float = 0.20  # DDTI: ~55 of 260 cases lack age and sex
    unknown_sex_rate: float = 0.05  # DDTI writes "u" for some recorded cases
    raw_spelling_rate: float = 0.15  # real misspellings, so readers must normalise
    missing_tirads: float = 0.25  # about a quarter of DDTI's sample has no grade
    tirads_noise: float = 0.15  # the grade moves one step, as graders disagree
    jpeg_quality: int = 90  # DDTI's quantisation tables are close to quality 85-90

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("width", "height"):
                low = 160 if f.name == "width" else 120
                if not _is_int(value) or value < low:
                    raise invalid(f.name, value, f">= {low}", f"an integer >= {low}")
            elif f.name == "jpeg_quality":
                if not _is_int(value) or not 1 <= value <= 95:
                    raise invalid(f.name, value, "1..95", "an integer in 1..95")
            elif not _is_number(value) or not 0.0 <= value <= 1.0:
                raise invalid(f.name, value, "[0, 1]", "a probability in [0, 1]")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class NoduleFeatures:
    """The true features of one nodule (what the frame shows).

    Attributes:
        composition: one of ``VOCABULARY["composition"]``.
        echogenicity: one of ``VOCABULARY["echogenicity"]`` (of the solid part).
        margins: one of ``VOCABULARY["margins"]``.
        calcifications: one of ``VOCABULARY["calcifications"]``.
        taller_than_wide: deeper than broad.
        size_mm: largest diameter in millimetres, 5..30.
    """

    composition: str
    echogenicity: str
    margins: str
    calcifications: str
    taller_than_wide: bool
    size_mm: float

    def __post_init__(self) -> None:
        for name in NODULE_FIELDS:
            value, allowed = getattr(self, name), SUSPICION_ORDER[name]
            if value not in allowed:
                raise invalid(name, value, allowed)
        if not isinstance(self.taller_than_wide, bool):
            raise invalid("taller_than_wide", self.taller_than_wide, (True, False))
        if not _is_number(self.size_mm) or not 5 <= self.size_mm <= 30:
            raise invalid("size_mm", self.size_mm, "5..30", "5 to 30")


def _choice(rng: np.random.Generator, field: str, y: int) -> str:
    """A true value of ``field`` drawn from P(value | y)."""
    options = SUSPICION_ORDER[field]
    p = tuple(_P_TRUE[field][v][1 + y] for v in options)
    return options[int(rng.choice(len(options), p=np.asarray(p) / sum(p)))]


def _neighbour(rng: np.random.Generator, value: str, options: tuple[str, ...]) -> str:
    i = options.index(value)
    step = -1 if rng.random() < 0.5 else 1
    if not 0 <= i + step < len(options):
        step = -step
    return options[i + step]


def _grade(descriptors: Mapping[str, str]) -> str:
    """Kwak-style TI-RADS grade (DDTI's 2/3/4a/4b/4c/5) from canonical descriptors."""
    suspicious = sum(int(descriptors[f] in values) for f, values in _KWAK_SUSPICIOUS.items())
    if suspicious == 0:
        return TIRADS_GRADES[0] if descriptors["composition"] in _KWAK_BENIGN else TIRADS_GRADES[1]
    return TIRADS_GRADES[1 + suspicious]


def _true_features(rng: np.random.Generator, y: int) -> NoduleFeatures:
    size = float(np.clip(_SIZE_MEDIAN_MM[y] * math.exp(0.35 * rng.standard_normal()), 5, 30))
    return NoduleFeatures(
        composition=_choice(rng, "composition", y),
        echogenicity=_choice(rng, "echogenicity", y),
        margins=_choice(rng, "margins", y),
        calcifications=_choice(rng, "calcifications", y),
        taller_than_wide=bool(rng.random() < _P_TALLER_THAN_WIDE[y]),
        size_mm=round(size, 1),
    )


def _sex_and_age(rng: np.random.Generator, y: int) -> tuple[str, int]:
    sex = _MALE if rng.random() < _P_MALE[y] else _FEMALE
    # Malignancy is likelier at both ends of life here: benign ages cluster mid-life.
    if y:
        age = rng.normal(33.0, 8.0) if rng.random() < 0.5 else rng.normal(66.0, 8.0)
    else:
        age = rng.normal(50.0, 9.0)
    return sex, int(np.clip(round(age), 15, 90))


def _blank_and_misspell(rng: np.random.Generator, xml: dict[str, str], config: SynthConfig) -> None:
    """Empty some tags and write some values in DDTI's own spellings (in place)."""
    if rng.random() < config.missing_composition_echogenicity:
        xml["composition"] = xml["echogenicity"] = ""
    for name in ("margins", "calcifications"):
        if rng.random() < config.missing_margins_calcifications:
            xml[name] = ""
    if rng.random() < config.missing_sex_age:
        xml["sex"] = xml["age"] = ""
    if rng.random() < config.missing_tirads:
        xml["tirads"] = ""
    for name in NODULE_FIELDS:
        raw = _RAW_SPELLINGS[name].get(xml[name])
        if raw is not None and rng.random() < config.raw_spelling_rate:
            xml[name] = raw


def sample_case_features(
    rng: np.random.Generator, config: SynthConfig
) -> tuple[NoduleFeatures, dict[str, str], int]:
    """Draw one case: latent label, true nodule features and the XML's descriptors.

    Args:
        rng: the random source (consumed).
        config: rates of malignancy, reader noise, blank tags and raw spellings.

    Returns:
        ``(features, xml, y)``: the true :class:`NoduleFeatures`; the text of each
        XML tag (``age``, ``sex``, ``composition``, ``echogenicity``, ``margins``,
        ``calcifications``, ``tirads``; ``""`` where the tag is empty, DDTI's raw
        spellings included); the label, 1 malignant and 0 benign.
    """
    y = int(rng.random() < config.malignant_rate)
    features = _true_features(rng, y)
    sex, age = _sex_and_age(rng, y)
    read = {}
    for name in NODULE_FIELDS:
        value = getattr(features, name)
        noise = config.descriptor_noise * _NOISE_SCALE[name]
        read[name] = (
            _neighbour(rng, value, SUSPICION_ORDER[name]) if rng.random() < noise else value
        )
    grade_index = TIRADS_GRADES.index(_grade(read))
    if rng.random() < config.tirads_noise:
        step = 1 if rng.random() < 0.5 else -1
        grade_index = int(np.clip(grade_index + step, 0, len(TIRADS_GRADES) - 1))
    xml = {
        "age": str(age),
        "sex": _UNKNOWN_SEX if rng.random() < config.unknown_sex_rate else sex,
        **read,
        "tirads": TIRADS_GRADES[grade_index],
    }
    _blank_and_misspell(rng, xml, config)
    return features, xml, y
