"""Descriptor vocabulary and normalisation of raw values to canonical ones.

Missing is a value, not an error: ``None``, ``""``, ``"u"``, ``"unknown"``, ``"nan"``
and float NaN all mean "not recorded". Anything else outside the vocabulary (or an age
outside :data:`AGE_RANGE`) raises :class:`~thyrocam.errors.ClinicalValueError`, a
``ValueError`` whose message names the field, the value received and what is allowed.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping

import numpy as np

from thyrocam.errors import ClinicalValueError

__all__ = [
    "FIELDS",
    "CATEGORICAL_FIELDS",
    "VOCABULARY",
    "AGE_RANGE",
    "DDTI_SPELLINGS",
    "normalize_value",
    "normalize_clinical",
]

FIELDS: tuple[str, ...] = (
    "composition",
    "echogenicity",
    "margins",
    "calcifications",
    "sex",
    "age",
)
CATEGORICAL_FIELDS: tuple[str, ...] = FIELDS[:5]

#: Canonical values per categorical field. The order is the default one-hot order.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "composition": (
        "cystic",
        "predominantly cystic",
        "spongiform",
        "predominantly solid",
        "solid",
        "dense",
    ),
    "echogenicity": (
        "hyperechogenicity",
        "isoechogenicity",
        "hypoechogenicity",
        "marked hypoechogenicity",
    ),
    "margins": (
        "well defined",
        "well defined smooth",
        "ill defined",
        "microlobulated",
        "macrolobulated",
        "spiculated",
    ),
    "calcifications": ("non", "macrocalcifications", "microcalcifications"),
    "sex": ("F", "M"),
}

#: Inclusive plausible age range, in years.
AGE_RANGE: tuple[float, float] = (1.0, 110.0)
_AGE_ALLOWED = f"a number of years between {AGE_RANGE[0]:g} and {AGE_RANGE[1]:g}"


def _key(text: str) -> str:
    """Lower-case, hyphens/underscores as spaces, whitespace collapsed ("Ill- defined")."""
    return re.sub(r"[\s_-]+", " ", text.lower()).strip()


_MISSING_TOKENS = frozenset({"", "u", "unknown", "nan"})

#: Misspellings found in the public DDTI set's XML, per field: raw text -> canonical value.
#: Readers accept them (they join the aliases below); the synthetic generator writes them
#: now and then, so that readers must normalise.
DDTI_SPELLINGS: dict[str, dict[str, str]] = {
    "composition": {"spongiform appareance": "spongiform"},
    "echogenicity": {"marked hypoechogenecity": "marked hypoechogenicity"},
    "margins": {"ill- defined": "ill defined"},
    "calcifications": {
        "microcalcification": "microcalcifications",
        "macrocalcification": "macrocalcifications",
    },
    "sex": {},
}

# Other spellings seen in DDTI and short synonyms a clinician types into the web form, keyed by
# the _key() form. Kept explicit: a guess that maps a typo to the wrong category would
# silently change the model input.
_ALIASES: dict[str, dict[str, str]] = {
    "composition": {
        "spongiform appearance": "spongiform",
    },
    "echogenicity": {
        **{v.replace("echogenicity", "echogenecity"): v for v in VOCABULARY["echogenicity"]},
        "hyper": "hyperechogenicity",
        "hyperechoic": "hyperechogenicity",
        "iso": "isoechogenicity",
        "isoechoic": "isoechogenicity",
        "hypo": "hypoechogenicity",
        "hypoechoic": "hypoechogenicity",
        "marked hypoechoic": "marked hypoechogenicity",
        "markedly hypoechoic": "marked hypoechogenicity",
        "very hypoechoic": "marked hypoechogenicity",
    },
    "margins": {},
    "calcifications": {
        "none": "non",
        "no": "non",
    },
    "sex": {
        "female": "F",
        "mujer": "F",
        "male": "M",
        "hombre": "M",
    },
}

_LOOKUP: dict[str, dict[str, str]] = {
    field: {
        **{_key(v): v for v in VOCABULARY[field]},
        **{_key(raw): v for raw, v in DDTI_SPELLINGS[field].items()},
        **_ALIASES[field],
    }
    for field in CATEGORICAL_FIELDS
}

_AGE_PATTERN = re.compile(r"\d+(?:\.\d+)?")


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return _key(value) in _MISSING_TOKENS
    # np.float32 NaN is a numbers.Real but not a float.
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isnan(float(value))
    )


def _is_number(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


def _invalid(field: str, value: object, allowed: Iterable[str] | str) -> ClinicalValueError:
    shown = allowed if isinstance(allowed, str) else ", ".join(allowed)
    return ClinicalValueError(
        f"{field}: got {value!r}; allowed: {shown}",
        field=field,
        value=value,
        allowed=allowed,
    )


def _normalize_age(value: object) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise _invalid("age", value, _AGE_ALLOWED)
    if isinstance(value, str):
        text = value.strip()
        # A strict pattern, because float() also takes "1_0", "inf" and "5e1".
        if not _AGE_PATTERN.fullmatch(text):
            raise _invalid("age", value, _AGE_ALLOWED)
        age = float(text)
    elif isinstance(value, numbers.Real):
        age = float(value)
    else:
        raise _invalid("age", value, _AGE_ALLOWED)
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise _invalid("age", value, _AGE_ALLOWED)
    return age


def normalize_value(field: str, value: object) -> str | float | None:
    """Map one raw descriptor to its canonical value.

    Args:
        field: one of :data:`FIELDS`.
        value: the raw value (DDTI XML text, a web form string, a number for age).

    Returns:
        The canonical string from :data:`VOCABULARY`, the age in years as a float,
        or ``None`` when the value is missing.

    Raises:
        ClinicalValueError: unknown field, a category outside the vocabulary, or an
            age that is not a number in :data:`AGE_RANGE`.
    """
    if field not in FIELDS:
        raise _invalid("field", field, FIELDS)
    if _is_missing(value):
        return None
    if field == "age":
        return _normalize_age(value)
    if isinstance(value, str):
        canonical = _LOOKUP[field].get(_key(value))
        if canonical is not None:
            return canonical
    raise _invalid(field, value, VOCABULARY[field])


def normalize_clinical(payload: Mapping[str, object] | None) -> dict[str, str | float | None]:
    """Normalise a record of descriptors.

    Args:
        payload: raw values keyed by field name; absent keys are missing and keys
            outside :data:`FIELDS` are ignored (a web form carries other fields).
            ``None`` means every value is missing.

    Returns:
        A dict with exactly the :data:`FIELDS` keys, in that order.

    Raises:
        ClinicalValueError: for the first invalid field, in :data:`FIELDS` order.
    """
    if payload is None:
        return dict.fromkeys(FIELDS)
    return {field: normalize_value(field, payload.get(field)) for field in FIELDS}
