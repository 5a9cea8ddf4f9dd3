"""Encoding of the descriptors for the model: one-hots, age z-score and presence mask.

The encoding maps (``cat_maps``) are saved beside each model as JSON, so the same
categories, order and age statistics are used at training and inference time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from thyrocam.clinical.vocabulary import (
    CATEGORICAL_FIELDS,
    FIELDS,
    VOCABULARY,
    _is_number,
    normalize_clinical,
)
from thyrocam.errors import CheckpointError, ClinicalValueError

__all__ = [
    "default_cat_maps",
    "fit_cat_maps",
    "save_cat_maps",
    "load_cat_maps",
    "clinical_dim",
    "encode_clinical_with_mask",
    "feature_slices",
    "mask_slice",
]

logger = logging.getLogger(__name__)


def default_cat_maps() -> dict[str, Any]:
    """Encoding maps over the full vocabulary, age z-scored with mean 50 and std 15.

    Returns:
        ``{"version": 1, "fields": {field: [categories...]}, "age": {"mean", "std"}}``,
        JSON-serialisable.
    """
    return {
        "version": 1,
        "fields": {field: list(VOCABULARY[field]) for field in CATEGORICAL_FIELDS},
        "age": {"mean": 50.0, "std": 15.0},
    }


def fit_cat_maps(records: Iterable[Mapping[str, object]]) -> dict[str, Any]:
    """Encoding maps with the age mean/std of the training records.

    The categories stay the full vocabulary, so a value absent from a training split
    still encodes at inference time. The std is the population std, floored at 1.0;
    with no recorded age the defaults (50, 15) are kept.

    Args:
        records: clinical dicts (normalised or raw: they are normalised again).

    Raises:
        ClinicalValueError: for an invalid value in any record.
    """
    cat_maps = default_cat_maps()
    ages = [
        age for age in (normalize_clinical(record)["age"] for record in records) if age is not None
    ]
    if not ages:
        logger.info("no record has an age; keeping the default age mean/std")
        return cat_maps
    values = np.asarray(ages, dtype=np.float64)
    cat_maps["age"] = {"mean": float(values.mean()), "std": max(float(values.std()), 1.0)}
    return cat_maps


def _checked_cat_maps(cat_maps: object) -> dict[str, Any]:
    """Validated copy of ``cat_maps``; raises ValueError describing the first problem."""
    if not isinstance(cat_maps, Mapping):
        raise ValueError(f"expected a JSON object, got {type(cat_maps).__name__}")
    if cat_maps.get("version") != 1:
        raise ValueError(f"version: got {cat_maps.get('version')!r}; allowed: 1")
    fields = cat_maps.get("fields")
    if not isinstance(fields, Mapping) or set(fields) != set(CATEGORICAL_FIELDS):
        got = sorted(fields) if isinstance(fields, Mapping) else fields
        raise ValueError(f"fields: got {got!r}; expected the keys {', '.join(CATEGORICAL_FIELDS)}")
    checked: dict[str, list[str]] = {}
    for field in CATEGORICAL_FIELDS:
        categories = fields[field]
        if (
            not isinstance(categories, list)
            or not categories
            or not all(isinstance(c, str) for c in categories)
            or len(set(categories)) != len(categories)
            or not set(categories) <= set(VOCABULARY[field])
        ):
            raise ValueError(
                f"fields.{field}: got {categories!r}; expected a non-empty list of distinct "
                f"values from {', '.join(VOCABULARY[field])}"
            )
        checked[field] = list(categories)
    age = cat_maps.get("age")
    if not (
        isinstance(age, Mapping)
        and _is_number(age.get("mean"))
        and _is_number(age.get("std"))
        and age["std"] > 0
    ):
        raise ValueError(f"age: got {age!r}; expected {{'mean': number, 'std': number > 0}}")
    return {
        "version": 1,
        "fields": checked,
        "age": {"mean": float(age["mean"]), "std": float(age["std"])},
    }


def _validated(cat_maps: object) -> dict[str, Any]:
    try:
        return _checked_cat_maps(cat_maps)
    except ValueError as err:
        raise CheckpointError(f"invalid cat_maps: {err}") from None


def save_cat_maps(cat_maps: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``cat_maps`` as JSON (UTF-8, indented).

    Raises:
        CheckpointError: if ``cat_maps`` is not a valid encoding map.
    """
    try:
        checked = _checked_cat_maps(cat_maps)
    except ValueError as err:
        raise CheckpointError(f"{os.fspath(path)}: not saved, invalid cat_maps: {err}") from None
    Path(path).write_text(json.dumps(checked, indent=2) + "\n", encoding="utf-8")


def load_cat_maps(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the encoding maps saved beside a model.

    Raises:
        CheckpointError: naming the file when it is missing, unreadable, not JSON, or
            not a valid encoding map (wrong version, fields, categories or age stats).
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{name}: cannot read cat_maps ({err})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{name}: cat_maps is not valid JSON ({err})") from None
    try:
        return _checked_cat_maps(obj)
    except ValueError as err:
        raise CheckpointError(f"{name}: invalid cat_maps: {err}") from None


def feature_slices(cat_maps: dict[str, Any]) -> dict[str, slice]:
    """Where each field's value entries lie in the encoded vector.

    Categorical fields own their one-hot block, ``age`` owns one entry (its z-score).
    The presence mask is separate: see :func:`mask_slice`. To present a field as
    missing, zero its slice *and* its mask entry.

    Returns:
        ``{field: slice}`` for every field of :data:`FIELDS`.
    """
    return _slices(_validated(cat_maps))


def _slices(checked: dict[str, Any]) -> dict[str, slice]:
    slices: dict[str, slice] = {}
    start = 0
    for field in CATEGORICAL_FIELDS:
        stop = start + len(checked["fields"][field])
        slices[field] = slice(start, stop)
        start = stop
    slices["age"] = slice(start, start + 1)
    return slices


def mask_slice(cat_maps: dict[str, Any]) -> slice:
    """The presence-mask entries of the encoded vector: the last ``len(FIELDS)``.

    Entry ``mask_slice(m).start + FIELDS.index(field)`` is 1.0 when ``field`` is present.
    """
    dim = clinical_dim(cat_maps)
    return slice(dim - len(FIELDS), dim)


def clinical_dim(cat_maps: dict[str, Any]) -> int:
    """Length of the encoded vector: one-hots + 1 (age) + 6 (mask); 28 with the defaults."""
    checked = _validated(cat_maps)
    return sum(len(checked["fields"][f]) for f in CATEGORICAL_FIELDS) + 1 + len(FIELDS)


def encode_clinical_with_mask(
    payload: Mapping[str, object] | None, cat_maps: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Encode descriptors for the model's tabular branch.

    ``vec`` is the concatenation of one one-hot block per categorical field (all zeros
    when missing), the age z-score (0.0 when missing) and the presence mask, so an
    all-missing payload encodes to zeros, which is what the model assumes for
    ``clin=None``.

    Args:
        payload: raw or normalised descriptors (see :func:`normalize_clinical`).
        cat_maps: the encoding maps the model was trained with.

    Returns:
        ``(vec, mask)``: float32 arrays of shape ``(clinical_dim(cat_maps),)`` and
        ``(6,)``; ``mask[i]`` is 1.0 when ``FIELDS[i]`` is present.

    Raises:
        ClinicalValueError: an invalid value, or a valid one this model has no
            category for.
        CheckpointError: if ``cat_maps`` is not a valid encoding map.
    """
    checked = _validated(cat_maps)
    raw_payload: Mapping[str, object] = payload if payload is not None else {}
    clinical = normalize_clinical(raw_payload)
    slices = _slices(checked)
    dim = slices["age"].stop + len(FIELDS)
    vec = np.zeros(dim, dtype=np.float32)
    mask = np.zeros(len(FIELDS), dtype=np.float32)
    for i, field in enumerate(FIELDS):
        value = clinical[field]
        if value is None:
            continue
        mask[i] = 1.0
        if field == "age":
            age_stats = checked["age"]
            vec[slices["age"].start] = (float(value) - age_stats["mean"]) / age_stats["std"]
            continue
        categories = checked["fields"][field]
        if value not in categories:
            raw = raw_payload[field]
            raise ClinicalValueError(
                f"{field}: got {raw!r}; this model knows: {', '.join(categories)}",
                field=field,
                value=raw,
                allowed=tuple(categories),
            )
        vec[slices[field].start + categories.index(value)] = 1.0
    vec[dim - len(FIELDS) :] = mask
    return vec, mask
