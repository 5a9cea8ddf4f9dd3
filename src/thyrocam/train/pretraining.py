"""The synthetic pretraining set, written once per process.

A run's classifier and its locator, and every fold of a cross-validation, pretrain on
the same synthetic cases (the same count and seed); writing 1,500 of them takes about
a minute, so the set is kept for the next network instead of written again.
"""

from __future__ import annotations

import atexit
import csv
import tempfile
from dataclasses import replace
from pathlib import Path

from thyrocam.clinical import normalize_value
from thyrocam.data import prepare_samples
from thyrocam.data.samples import Sample
from thyrocam.model import DESCRIPTOR_FIELDS

__all__ = ["synthetic_set", "drop_synthetic_set"]


def synthetic_set(*, cases: int, seed: int) -> tuple[Sample, ...]:
    """``cases`` synthetic cases (seed ``seed``) as samples with their true descriptors
    (``labels.csv``; the XML holds a noisy reading, like a radiologist's).

    One set is kept at a time; its folder goes when another set replaces it, or at exit.
    """
    global _KEPT_SET
    if _KEPT_SET is not None and _KEPT_SET[0] == (cases, seed):
        return _KEPT_SET[2]
    from thyrocam.data import make_synthetic_ddti

    drop_synthetic_set()
    tmp = tempfile.TemporaryDirectory(prefix="thyrocam-pretrain-")
    try:
        folder = make_synthetic_ddti(tmp.name, cases=cases, seed=seed)
        samples, _, _ = prepare_samples(folder, label_source="labels")
        samples = _with_true_descriptors(samples, folder / "labels.csv")
    except BaseException:
        tmp.cleanup()
        raise
    _KEPT_SET = ((cases, seed), tmp, tuple(samples))
    return _KEPT_SET[2]


def drop_synthetic_set() -> None:
    """Remove the kept synthetic pretraining set (its folder too), if any."""
    global _KEPT_SET
    if _KEPT_SET is not None:
        _KEPT_SET[1].cleanup()
        _KEPT_SET = None


_KEPT_SET: tuple[tuple[int, int], tempfile.TemporaryDirectory, tuple[Sample, ...]] | None = None
atexit.register(drop_synthetic_set)


def _with_true_descriptors(samples: list[Sample], labels_csv: Path) -> list[Sample]:
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        truth = {row["number"]: row for row in csv.DictReader(fh)}
    out = []
    for s in samples:
        row = truth.get(s.case_id)
        if row is None:
            out.append(s)
            continue
        clinical = dict(s.clinical)
        clinical.update(
            {f: normalize_value(f, row[f]) if row.get(f) else None for f in DESCRIPTOR_FIELDS}
        )
        out.append(replace(s, clinical=clinical))
    return out
