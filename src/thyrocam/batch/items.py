"""What a batch job explains: one :class:`Item` per image, read from any data source.

``DATA`` is a DDTI folder (``N.xml`` + ``N_V.jpg``), a CSV manifest (read by
:mod:`thyrocam.data`'s readers, so outlines, descriptors and labels come along),
or a plain folder of images (searched recursively; no outlines, no descriptors).
Unlike training, unlabelled cases are kept: an archive is explained whole.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thyrocam.clinical import FIELDS, tirads_to_label
from thyrocam.data import load_cases
from thyrocam.data.ddti import Polygon
from thyrocam.errors import DataError, InputError

__all__ = ["IMAGE_SUFFIXES", "Item", "load_items", "parse_shard", "select_shard"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Item:
    """One image to explain.

    Attributes:
        order: position in the whole data set (before sharding); the index's row order.
        id: unique, file-name-safe name (``67_1`` for DDTI); names the output files.
        path: the image file.
        case_id: the case the image belongs to (its own id for a plain folder).
        polygons: nodule outlines in frame pixels (empty when the data has none).
        clinical: the six descriptors, normalised, ``None`` where missing.
        true_label: 0/1 from the data (explicit label, else the DDTI grade), or ``None``.
    """

    order: int
    id: str
    path: Path
    case_id: str
    polygons: tuple[Polygon, ...] = ()
    clinical: dict[str, str | float | None] = field(default_factory=dict)
    true_label: int | None = None


def load_items(data: str | os.PathLike[str]) -> tuple[list[Item], list[str]]:
    """Read ``data`` into items, in a deterministic order.

    Returns:
        ``(items, problems)``: the problem lines of the DDTI/manifest readers.

    Raises:
        DataError: ``data`` does not exist, or holds no image.
    """
    source = Path(data)
    if source.is_dir() and not any(p.suffix.lower() == ".xml" for p in source.iterdir()):
        items, problems = _image_folder(source), []
    else:
        items, problems = _from_cases(source)
    if not items:
        raise DataError(
            f"data: got '{source}' with no image to explain; allowed: a DDTI folder, "
            "a CSV manifest or a folder of images",
            field="data",
            value=str(source),
            allowed="a DDTI folder, a .csv manifest or a folder of images",
        )
    return items, problems


def _from_cases(source: Path) -> tuple[list[Item], list[str]]:
    cases, problems = load_cases(source)
    drafts = []
    for case in cases:
        case_id = case.case_id if case.case_id is not None else str(case.number)
        label = case.label if case.label is not None else tirads_to_label(case.tirads)
        clinical = {name: case.clinical.get(name) for name in FIELDS}
        for view in case.views:
            draft = (f"{case_id}_{view.index}", view.image_path, case_id, view, clinical, label)
            drafts.append(draft)
    ids = _unique_ids([d[0] for d in drafts])
    items = [
        Item(
            order=i,
            id=ids[i],
            path=Path(path),
            case_id=case_id,
            polygons=tuple(view.polygons),
            clinical=dict(clinical),
            true_label=label,
        )
        for i, (_, path, case_id, view, clinical, label) in enumerate(drafts)
    ]
    return items, problems


def _image_folder(root: Path) -> list[Item]:
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    names = [str(p.relative_to(root).with_suffix("")) for p in paths]
    ids = _unique_ids(names)
    return [
        Item(order=i, id=ids[i], path=p, case_id=ids[i], clinical=dict.fromkeys(FIELDS))
        for i, p in enumerate(paths)
    ]


def _unique_ids(names: Sequence[str]) -> list[str]:
    """File-name-safe ids; a name that collides after cleaning gets ``-2``, ``-3``, ..."""
    used: set[str] = set()
    out = []
    for name in names:
        base = _UNSAFE.sub("_", name.replace(os.sep, "__")).strip("._") or "image"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}-{n}"
        used.add(candidate)
        out.append(candidate)
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; ``None`` -> ``(0, 1)`` (everything).

    Raises:
        InputError: not of the form ``I/N`` with integers ``0 <= I < N``.
    """
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None or not 0 <= int(match[1]) < int(match[2]):
        raise InputError(
            f"shard: got {text!r}; allowed: I/N with integers 0 <= I < N (e.g. 0/4)",
            field="shard",
            value=text,
            allowed="I/N, 0 <= I < N",
        )
    return int(match[1]), int(match[2])


def select_shard(items: Sequence[Item], shard: tuple[int, int]) -> list[Item]:
    """The items of shard ``I`` of ``N``: chosen by a stable hash of the id.

    Hashing the id (not the position) keeps an image in the same shard when
    images are added to or removed from the data set.
    """
    index, count = shard
    if count == 1:
        return list(items)
    return [it for it in items if zlib.crc32(it.id.encode("utf-8")) % count == index]
