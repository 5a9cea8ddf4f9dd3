"""Reader for CSV manifests of pathology-labelled sets (TN3K, Stanford, hospital exports).

One row per image. Columns (header names are matched case-insensitively):

- ``image`` (required; ``name`` is accepted instead, as in TN3K's ``label4trainval.csv``):
  the image path, absolute or relative to ``image_root`` (default: the CSV's folder).
- ``label`` (required): 0/1, benign/malignant or b/m.
- ``case`` (optional): the group id; rows sharing it are views of one case. Default: the
  image's file stem.
- ``mask`` (optional): a binary mask image of the nodule, resolved like ``image``.
- ``tirads`` and the six :data:`~thyrocam.clinical.FIELDS` (optional).

Like :func:`~thyrocam.data.ddti.read_ddti`, content problems are problem lines, not
exceptions: a row with a missing image or a bad label is skipped, a bad descriptor is set
to missing.

Example:
    >>> cases, problems = read_manifest(  # doctest: +SKIP
    ...     "tn3k/label4trainval.csv", image_root="tn3k/trainval-image")
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from thyrocam.clinical import FIELDS, normalize_tirads, normalize_value
from thyrocam.data.ddti import Case, View, parse_label
from thyrocam.errors import ClinicalValueError, DataError

__all__ = ["IMAGE_COLUMNS", "read_manifest"]

logger = logging.getLogger(__name__)

#: Accepted names of the image column, in order of preference ("name" is TN3K's).
IMAGE_COLUMNS: tuple[str, ...] = ("image", "name")
_LABEL_SOURCE = "manifest"


@dataclass
class _Group:
    """The rows of one case while the manifest is being read."""

    case_id: str
    label: int
    tirads: str | None
    clinical: dict[str, str | float | None]
    origin: dict[str, int]  # the line each value came from, for conflict messages
    views: list[View] = field(default_factory=list)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
) -> tuple[list[Case], list[str]]:
    """Read a CSV manifest into cases (label source ``"manifest"``).

    Args:
        path: the CSV file (UTF-8, a BOM is fine; comma-separated, or ``;`` / tab when
            the header uses those instead, as spreadsheet exports in some locales do).
        image_root: the folder relative ``image`` and ``mask`` paths start from.
            Default: the CSV's folder.

    Returns:
        ``(cases, problems)``: cases in order of first appearance, numbered from 1,
        with ``case_id`` set; views numbered from 1 in row order.

    Raises:
        DataError: the file is missing or unreadable, has no header, or lacks the
            ``image`` (or ``name``) or ``label`` column.
    """
    csv_path = Path(path)
    root = Path(image_root) if image_root is not None else csv_path.parent
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"manifest: got '{csv_path}', which cannot be read ({exc}); allowed: a UTF-8 CSV file",
            field="manifest",
            value=str(csv_path),
            allowed="a UTF-8 CSV file",
        ) from exc
    name = csv_path.name
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = next((d for d in (",", ";", "\t") if d in header), ",")
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    image_column = next((c for c in IMAGE_COLUMNS if c in columns), None)
    for required, found in (("image (or name)", image_column), ("label", "label" in columns)):
        if not found:
            raise DataError(
                f"{name}: missing column {required}; columns found: "
                f"{', '.join(columns) or 'none'}; required: image (or name), label",
                field=required.split()[0],
                value=columns,
                allowed=("image", "name", "label"),
            )
    reader.fieldnames = columns

    problems: list[str] = []
    groups: dict[str, _Group] = {}
    seen_images: dict[Path, int] = {}
    try:
        for row in reader:
            _read_row(row, reader.line_num, image_column, root, name, groups, seen_images, problems)
    except csv.Error as exc:
        problems.append(f"{name}: line {reader.line_num}: {exc}; rest of the file ignored")

    cases = [
        Case(
            number=number,
            clinical=group.clinical,
            tirads=group.tirads,
            views=tuple(group.views),
            source=csv_path,
            label=group.label,
            label_source=_LABEL_SOURCE,
            case_id=group.case_id,
        )
        for number, group in enumerate(groups.values(), start=1)
    ]
    logger.info(
        "read_manifest %s: %d cases, %d views, %d problems",
        csv_path,
        len(cases),
        sum(len(c.views) for c in cases),
        len(problems),
    )
    return cases, problems


def _cell(row: dict[str, str | None], column: str) -> str:
    # DictReader gives None for cells missing from a short row.
    return (row.get(column) or "").strip()


def _read_row(
    row: dict[str, str | None],
    line: int,
    image_column: str,
    root: Path,
    name: str,
    groups: dict[str, _Group],
    seen_images: dict[Path, int],
    problems: list[str],
) -> None:
    where = f"{name}: line {line}"
    raw_image = _cell(row, image_column)
    if not raw_image:
        problems.append(f"{where}: {image_column} is empty; row skipped")
        return
    image_path = root / raw_image
    if not image_path.is_file():
        problems.append(f"{where}: image {raw_image!r} not found in {root}; row skipped")
        return
    if image_path in seen_images:
        problems.append(
            f"{where}: image {raw_image!r} already listed on line {seen_images[image_path]}; "
            "row skipped"
        )
        return
    try:
        label = parse_label(_cell(row, "label"))
    except DataError as exc:
        problems.append(f"{where}: {exc}; row skipped")
        return
    seen_images[image_path] = line

    mask_path = None
    raw_mask = _cell(row, "mask")
    if raw_mask:
        mask_path = root / raw_mask
        if not mask_path.is_file():
            problems.append(f"{where}: mask {raw_mask!r} not found; view kept without mask")
            mask_path = None

    clinical: dict[str, str | float | None] = {}
    for column in FIELDS:
        try:
            clinical[column] = normalize_value(column, _cell(row, column))
        except ClinicalValueError as exc:
            problems.append(f"{where}: {exc}; field set to missing")
            clinical[column] = None
    try:
        tirads = normalize_tirads(_cell(row, "tirads"))
    except ClinicalValueError as exc:
        problems.append(f"{where}: {exc}; grade set to missing")
        tirads = None

    case_id = _cell(row, "case") or Path(raw_image).stem
    group = groups.get(case_id)
    if group is None:
        origin = dict.fromkeys(("label", "tirads", *FIELDS), line)
        group = groups[case_id] = _Group(case_id, label, tirads, clinical, origin)
    else:
        _merge(group, line, label, tirads, clinical, problems, where=where)
    group.views.append(View(index=len(group.views) + 1, image_path=image_path, mask_path=mask_path))


def _merge(
    group: _Group,
    line: int,
    label: int,
    tirads: str | None,
    clinical: dict[str, str | float | None],
    problems: list[str],
    *,
    where: str,
) -> None:
    """Fold a later row into its case: the first row that gives a value wins."""
    theirs: dict[str, object] = {"label": label, "tirads": tirads, **clinical}
    ours: dict[str, object] = {"label": group.label, "tirads": group.tirads, **group.clinical}
    for column, value in theirs.items():
        if value is None or value == ours[column]:
            continue
        if ours[column] is None:
            # Exports often fill a case's descriptors on one of its rows only.
            if column == "tirads":
                group.tirads = tirads
            else:
                group.clinical[column] = clinical[column]
            group.origin[column] = line
            continue
        first = group.origin[column]
        problems.append(
            f"{where}: case {group.case_id!r}: {column}: got {value!r}, but line {first} "
            f"says {ours[column]!r}; line {first} kept"
        )
