"""Reader for DDTI-format folders: ``N.xml`` per case, ``N_V.jpg`` per view.

The public DDTI set (Pedraza et al., SPIE 9287, 2015) is read as it really is:
truncated SVG JSON, empty tags, misspelled categories and stray files degrade a case
or a view and are reported in a list of problem lines; they never raise. The records
defined here (:class:`View`, :class:`Case`) are shared with the CSV manifest reader.

Example:
    >>> cases, problems = read_ddti("shared/ddti")  # doctest: +SKIP
    >>> cases[0].number, cases[0].views[0].bbox  # doctest: +SKIP
    (1, (133.0, 35.0, 421.0, 296.0))
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from thyrocam.clinical import FIELDS, normalize_tirads, normalize_value
from thyrocam.errors import ClinicalValueError, DataError
from thyrocam.imaging import nodule_box, polygons_bbox

__all__ = [
    "Point",
    "Polygon",
    "View",
    "Case",
    "LABEL_NAMES",
    "parse_label",
    "read_ddti",
]

logger = logging.getLogger(__name__)

Point = tuple[float, float]
Polygon = tuple[Point, ...]

#: Accepted spellings of a ground-truth label (compared lower-cased and stripped).
LABEL_NAMES: dict[str, int] = {
    "0": 0,
    "1": 1,
    "benign": 0,
    "malignant": 1,
    "b": 0,
    "m": 1,
}

_IMAGE_NAME = re.compile(r"(\d+)_(\d+)\.jpe?g", re.IGNORECASE)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class View:
    """One ultrasound frame of a case.

    Attributes:
        index: the view number (``V`` in ``N_V.jpg``; row order within a manifest case).
        image_path: the image file.
        polygons: nodule outlines in image pixels, each a tuple of ``(x, y)`` points;
            may be empty when the annotation is missing or unreadable.
        mask_path: a binary mask image of the nodule, when a manifest gives one.
    """

    index: int
    image_path: Path
    polygons: tuple[Polygon, ...] = ()
    mask_path: Path | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        """``(x0, y0, x1, y1)`` around every polygon point, or ``None`` without polygons."""
        return polygons_bbox(self.polygons)

    @property
    def nodule_box(self) -> tuple[float, float, float, float] | None:
        """The box around the largest outline (one panel of a two-panel frame)."""
        return nodule_box(self.polygons)


@dataclass(frozen=True)
class Case:
    """One nodule: its descriptors, its grade, its label and its views.

    Attributes:
        number: the DDTI case number; for a manifest, the 1-based order of first appearance.
        clinical: the six :data:`~thyrocam.clinical.FIELDS`, normalised, ``None`` where missing.
        tirads: the DDTI grade ("2", "3", "4a", "4b", "4c", "5") or ``None``.
        views: the frames, sorted by index.
        source: the XML file (or the manifest) the case came from.
        label: explicit ground truth (0 benign, 1 malignant) when the data gives one.
        label_source: ``"labels.csv"``, ``"manifest"`` or ``None``.
        case_id: the manifest's case id; ``None`` for DDTI, meaning ``str(number)``.
    """

    number: int
    clinical: dict[str, str | float | None]
    tirads: str | None
    views: tuple[View, ...]
    source: Path
    label: int | None = None
    label_source: str | None = None
    case_id: str | None = None


def parse_label(value: object, *, field: str = "label") -> int:
    """Parse a ground-truth label: 0/1, benign/malignant or b/m (any case).

    Raises:
        DataError: naming ``field``, the value received and the accepted spellings.
    """
    label = LABEL_NAMES.get(str(value).strip().lower()) if value is not None else None
    if label is None:
        allowed = ", ".join(LABEL_NAMES)
        raise DataError(
            f"{field}: got {value!r}; allowed: {allowed}",
            field=field,
            value=value,
            allowed=tuple(LABEL_NAMES),
        )
    return label


def read_ddti(folder: str | os.PathLike[str]) -> tuple[list[Case], list[str]]:
    """Read a DDTI-format folder.

    Content problems never raise: each is one line in ``problems``, starting with the
    file it is about, saying what was degraded or skipped. A ``labels.csv`` beside the
    XML files (columns ``number,label``; extra columns ignored) sets explicit labels.

    Args:
        folder: a flat folder of ``N.xml`` and ``N_V.jpg`` files.

    Returns:
        ``(cases, problems)``: cases sorted by number with views sorted by index, and
        the problem lines.

    Raises:
        DataError: ``folder`` does not exist, is not a directory, or holds neither XML
            nor JPEG files.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise DataError(
            f"folder: got '{root}', which {what}; allowed: a DDTI folder of N.xml and N_V.jpg",
            field="folder",
            value=str(root),
            allowed="a DDTI folder",
        )
    problems: list[str] = []
    xml_files: dict[int, Path] = {}
    images: dict[int, dict[int, Path]] = {}
    for path in sorted(root.iterdir()):
        name = path.name
        # macOS copies leave "._N.xml" resource forks beside the real files.
        if name.startswith(".") or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix == ".xml":
            if not path.stem.isdecimal():
                problems.append(f"{name}: file name is not a case number (N.xml); skipped")
            elif int(path.stem) in xml_files:
                other = xml_files[int(path.stem)].name
                problems.append(f"{name}: same case number as {other}; skipped")
            else:
                xml_files[int(path.stem)] = path
        elif suffix in _IMAGE_SUFFIXES:
            match = _IMAGE_NAME.fullmatch(name)
            if match is None:
                problems.append(f"{name}: not a DDTI image name (N_V.jpg); skipped")
            else:
                images.setdefault(int(match[1]), {}).setdefault(int(match[2]), path)
    if not xml_files and not images:
        raise DataError(
            f"folder: got '{root}' with no N.xml or N_V.jpg file; allowed: a DDTI folder",
            field="folder",
            value=str(root),
            allowed="a DDTI folder",
        )

    for number in sorted(set(images) - set(xml_files)):
        for view in sorted(images[number]):
            problems.append(f"{images[number][view].name}: image has no case XML; skipped")

    cases: list[Case] = []
    for number in sorted(xml_files):
        case = _read_case(xml_files[number], number, images.get(number, {}), problems)
        if case is not None:
            cases.append(case)

    labels_path = root / _LABELS_FILE
    if labels_path.is_file():
        cases = _apply_labels(cases, labels_path, problems)

    logger.info(
        "read_ddti %s: %d cases, %d views, %d problems",
        root,
        len(cases),
        sum(len(c.views) for c in cases),
        len(problems),
    )
    return cases, problems


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip()


def _read_case(
    path: Path,
    number: int,
    images: Mapping[int, Path],
    problems: list[str],
) -> Case | None:
    name = path.name
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        problems.append(f"{name}: not well-formed XML ({exc}); case skipped")
        return None
    if root.tag != "case":
        problems.append(f"{name}: root element is <{root.tag}>, expected <case>; case skipped")
        return None

    stated = _text(root.find("number"))
    if stated and not (stated.isdecimal() and int(stated) == number):
        # The file name wins because the images are named after it.
        problems.append(f"{name}: number: got {stated!r}; file name says {number}; using {number}")

    clinical: dict[str, str | float | None] = {}
    for field in FIELDS:
        raw = _text(root.find(field))
        try:
            clinical[field] = normalize_value(field, raw)
        except ClinicalValueError as exc:
            problems.append(f"{name}: {exc}; field set to missing")
            clinical[field] = None
    try:
        tirads = normalize_tirads(_text(root.find("tirads")))
    except ClinicalValueError as exc:
        problems.append(f"{name}: {exc}; grade set to missing")
        tirads = None

    views: dict[int, View] = {}
    marks = root.findall("mark")
    for position, mark in enumerate(marks, start=1):
        view = _read_view(mark, position, images, name, problems)
        if view is None:
            continue
        if view.index in views:
            problems.append(f"{name}: view {view.index}: listed twice; second mark dropped")
            continue
        views[view.index] = view

    referenced = {_mark_index(mark) for mark in marks}
    for index in sorted(set(images) - referenced):
        problems.append(f"{images[index].name}: not listed in {name}; skipped")

    if not views:
        why = "no <mark>" if not marks else "no view with a usable image"
        problems.append(f"{name}: {why}; case dropped")
        return None
    return Case(
        number=number,
        clinical=clinical,
        tirads=tirads,
        views=tuple(views[i] for i in sorted(views)),
        source=path,
    )


def _mark_index(mark: ET.Element) -> int | None:
    text = _text(mark.find("image"))
    return int(text) if text is not None and text.isdecimal() else None


def _read_view(
    mark: ET.Element,
    position: int,
    images: Mapping[int, Path],
    name: str,
    problems: list[str],
) -> View | None:
    index = _mark_index(mark)
    if index is None:
        raw = _text(mark.find("image"))
        problems.append(
            f"{name}: mark {position}: image: got {raw!r}; allowed: a view number; view dropped"
        )
        return None
    where = f"{name}: view {index}"
    image_path = images.get(index)
    if image_path is None:
        number = Path(name).stem
        problems.append(f"{where}: image {number}_{index}.jpg not found; view dropped")
        return None
    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        problems.append(f"{where}: image {image_path.name} cannot be read ({exc}); view dropped")
        return None
    raw_regions = _parse_svg(_text(mark.find("svg")) or "", where, problems)
    polygons = tuple(
        polygon
        for region_no, region in enumerate(raw_regions, start=1)
        if (polygon := _polygon(region, (width, height), f"{where}: region {region_no}", problems))
        is not None
    )
    return View(index=index, image_path=image_path, polygons=polygons)


def _parse_svg(text: str, where: str, problems: list[str]) -> list[object]:
    """The regions of one ``<svg>`` text, salvaging complete ones before a cut."""
    if not text:
        problems.append(f"{where}: svg is empty; view kept without outline")
        return []
    try:
        regions = json.loads(text)
    except json.JSONDecodeError as exc:
        # DDTI's export cut long SVG strings; the regions before the cut are intact.
        kind = "invalid" if text.endswith("]") else "truncated"
        salvaged = _complete_regions(text)
        outcome = (
            f"kept {len(salvaged)} complete region(s) before the cut"
            if salvaged
            else "view kept without outline"
        )
        problems.append(f"{where}: svg JSON is {kind} ({exc}); {outcome}")
        return salvaged
    if not isinstance(regions, list):
        problems.append(
            f"{where}: svg: got a JSON {type(regions).__name__}; allowed: a list of "
            "regions; view kept without outline"
        )
        return []
    return regions


def _complete_regions(text: str) -> list[object]:
    """Decode ``[obj, obj, ...`` one object at a time until the first broken one."""
    decoder = json.JSONDecoder()
    regions: list[object] = []
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        return regions
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            region, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return regions
        regions.append(region)


def _polygon(
    region: object, size: tuple[int, int], where: str, problems: list[str]
) -> Polygon | None:
    """One region as an outline inside the frame, or ``None`` (with a problem line)."""
    points = region.get("points") if isinstance(region, dict) else None
    if not isinstance(points, list):
        problems.append(f"{where}: no 'points' list; region dropped")
        return None
    coords: list[Point] = []
    for point in points:
        x = point.get("x") if isinstance(point, dict) else None
        y = point.get("y") if isinstance(point, dict) else None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)):
            problems.append(f"{where}: point {point!r} is not {{x: number, y: number}}; dropped")
            return None
        coords.append((float(x), float(y)))
    if len(coords) < 3:
        kind = region.get("regionType", "region")
        problems.append(f"{where}: {kind} with {len(coords)} point(s) is not an outline; dropped")
        return None
    width, height = size
    outside = [(x, y) for x, y in coords if not (0 <= x <= width and 0 <= y <= height)]
    if not outside:
        return tuple(coords)
    if len(outside) == len(coords):
        problems.append(f"{where}: every point is outside the {width}x{height} image; dropped")
        return None
    problems.append(
        f"{where}: {len(outside)} of {len(coords)} points outside the {width}x{height} image; "
        "clipped to the frame"
    )
    return tuple((min(max(x, 0.0), width), min(max(y, 0.0), height)) for x, y in coords)


def _apply_labels(cases: list[Case], path: Path, problems: list[str]) -> list[Case]:
    try:
        labels = _read_labels(path, problems)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path.name}: cannot be read ({exc}); labels ignored")
        return cases
    known = {case.number for case in cases}
    for number in sorted(set(labels) - known):
        problems.append(f"{path.name}: case {number} has a label but no usable case; ignored")
    return [
        replace(case, label=labels[case.number], label_source=_LABELS_FILE)
        if case.number in labels
        else case
        for case in cases
    ]


def _read_labels(path: Path, problems: list[str]) -> dict[int, int]:
    name = path.name
    labels: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in ("number", "label") if c not in columns]
        if missing:
            problems.append(
                f"{name}: missing column {', '.join(missing)}; columns found: "
                f"{', '.join(columns) or 'none'}; labels ignored"
            )
            return labels
        reader.fieldnames = columns
        for row in reader:
            where = f"{name}: line {reader.line_num}"
            raw_number = (row.get("number") or "").strip()
            if not raw_number.isdecimal():
                problems.append(
                    f"{where}: number: got {raw_number!r}; allowed: a case number; row ignored"
                )
                continue
            try:
                label = parse_label(row.get("label"))
            except DataError as exc:
                problems.append(f"{where}: {exc}; row ignored")
                continue
            number = int(raw_number)
            if number in labels:
                problems.append(f"{where}: case {number} labelled twice; first label kept")
                continue
            labels[number] = label
    return labels
