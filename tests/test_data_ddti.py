"""DDTI folder reader, labels.csv, and samples/splits (thyrocam.data.ddti, .samples)."""

from __future__ import annotations

import json
import os
import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from thyrocam.clinical import FIELDS
from thyrocam.data.ddti import Case, View, parse_label, read_ddti
from thyrocam.data.samples import (
    Sample,
    cases_to_samples,
    label_counts,
    load_cases,
    split_by_case,
)
from thyrocam.errors import DataError

DDTI_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "ddti"
TRUNCATED_IN_SAMPLE = (62, 127, 142, 166, 176, 197, 203, 205, 230, 389)
WIDTH, HEIGHT = 560, 360

SQUARE = [(100, 100), (200, 100), (200, 180), (100, 180)]
TRIANGLE = [(300, 50), (400, 60), (350, 150)]


def _svg(*polygons: list[tuple[float, float]]) -> str:
    return json.dumps(
        [
            {
                "points": [{"x": x, "y": y} for x, y in polygon],
                "annotation": {},
                "regionType": "freehand",
            }
            for polygon in polygons
        ]
    )


def _write_case(
    folder: Path,
    number: int,
    marks: list[tuple[int, str]],
    *,
    fields: dict[str, str | None] | None = None,
    stated_number: str | None = None,
    images: tuple[int, ...] | None = None,
) -> None:
    """Write N.xml (``None`` field -> ``<tag />``) and N_V.jpg for ``images`` (default: marks)."""
    values = {"age": "", "sex": "", "composition": "", "echogenicity": "", "margins": ""}
    values |= {"calcifications": "", "tirads": "", "reportbacaf": "", "reporteco": ""}
    values |= fields or {}
    tags = "".join(
        f"<{tag} />" if value is None else f"<{tag}>{value}</{tag}>"
        for tag, value in values.items()
    )
    number_text = str(number) if stated_number is None else stated_number
    body = "".join(f"<mark><image>{v}</image><svg>{svg}</svg></mark>" for v, svg in marks)
    xml = f"<case>\n<number>{number_text}</number>{tags}\n{body}\n</case>\n"
    (folder / f"{number}.xml").write_text(xml, encoding="utf-8")
    for view in images if images is not None else tuple(v for v, _ in marks):
        _write_jpeg(folder / f"{number}_{view}.jpg")


def _write_jpeg(path: Path) -> None:
    Image.new("L", (WIDTH, HEIGHT), 90).save(path, quality=70)


CLEAN_FIELDS = {
    "age": "45",
    "sex": "F",
    "composition": "solid",
    "echogenicity": "hypoechogenicity",
    "margins": "well defined",
    "calcifications": "non",
    "tirads": "2",
}


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddti")
    # 1: clean, two views, two outlines on view 1; marks written out of order.
    _write_case(folder, 1, [(2, _svg(TRIANGLE)), (1, _svg(SQUARE, TRIANGLE))], fields=CLEAN_FIELDS)
    # 2: SVG cut inside its second polygon: the first one is salvaged.
    two = _svg(SQUARE, TRIANGLE)
    _write_case(folder, 2, [(1, two[: len(two) - 30])], fields={"tirads": "4b"})
    # 3: SVG cut inside its only polygon.
    _write_case(folder, 3, [(1, _svg(SQUARE)[:40])], fields={"tirads": "3"})
    # 4: empty tags both ways, unknown sex, no grade.
    _write_case(
        folder,
        4,
        [(1, _svg(SQUARE))],
        fields={"sex": "u", "composition": None, "echogenicity": "", "age": None},
    )
    # 5: DDTI's misspellings.
    misspelled = {
        "composition": "spongiform appareance",
        "margins": "ill- defined",
        "calcifications": "microcalcification",
        "echogenicity": "marked hypoechogenecity",
        "tirads": "4c",
    }
    _write_case(folder, 5, [(1, _svg(SQUARE))], fields=misspelled)
    # 6: values outside the vocabulary.
    _write_case(folder, 6, [(1, _svg(SQUARE))], fields={"margins": "wavy", "tirads": "7"})
    # 7: view 2's image is missing.
    _write_case(
        folder, 7, [(1, _svg(SQUARE)), (2, _svg(SQUARE))], images=(1,), fields={"tirads": "5"}
    )
    # 8: no view has an image.
    _write_case(folder, 8, [(1, _svg(SQUARE))], images=())
    # 9: not well-formed XML, with its image.
    (folder / "9.xml").write_text("<case><number>9</number><mark>", encoding="utf-8")
    _write_jpeg(folder / "9_1.jpg")
    # 10: empty svg.
    _write_case(folder, 10, [(1, "")], fields={"tirads": "4a"})
    # 11: an arrow (2 points), an outline partly outside the frame, one wholly outside.
    outside = [(500, 300), (600, 300), (600, 400), (500, 400)]
    far = [(900, 900), (950, 900), (950, 950)]
    _write_case(folder, 11, [(1, _svg([(10, 10), (20, 20)], outside, far))])
    # 12: <number> disagrees with the file name.
    _write_case(folder, 12, [(1, _svg(SQUARE))], stated_number="13")
    # 13: an image on disk that no <mark> lists.
    _write_case(folder, 13, [(1, _svg(SQUARE))], images=(1, 2))
    _write_jpeg(folder / "999_1.jpg")
    (folder / "labels.csv").write_text(
        "number,label,note\n1,malignant,x\n2,0,\n5,maybe,\nseven,1,\n77,1,\n1,0,again\n",
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="module")
def fixture_read(fixture_folder: Path) -> tuple[dict[int, Case], list[str]]:
    cases, problems = read_ddti(fixture_folder)
    return {case.number: case for case in cases}, problems


def test_cases_kept_and_sorted(fixture_folder: Path) -> None:
    cases, _ = read_ddti(fixture_folder)
    assert [c.number for c in cases] == [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13]
    for case in cases:
        assert [v.index for v in case.views] == sorted(v.index for v in case.views)


def test_clean_case(fixture_read: tuple[dict[int, Case], list[str]], fixture_folder: Path) -> None:
    cases, problems = fixture_read
    case = cases[1]
    assert case.clinical == {
        "composition": "solid",
        "echogenicity": "hypoechogenicity",
        "margins": "well defined",
        "calcifications": "non",
        "sex": "F",
        "age": 45.0,
    }
    assert case.tirads == "2"
    assert case.source == fixture_folder / "1.xml"
    assert case.case_id is None
    assert (case.label, case.label_source) == (1, "labels.csv")
    assert [v.index for v in case.views] == [1, 2]
    assert [v.image_path.name for v in case.views] == ["1_1.jpg", "1_2.jpg"]
    as_float = [[(float(x), float(y)) for x, y in p] for p in (SQUARE, TRIANGLE)]
    assert [list(p) for p in case.views[0].polygons] == as_float
    assert case.views[0].bbox == (100.0, 50.0, 400.0, 180.0)
    assert case.views[1].bbox == (300.0, 50.0, 400.0, 150.0)
    assert not [p for p in problems if p.startswith("1.xml")]


def test_truncated_svg_salvages_complete_polygons(
    fixture_read: tuple[dict[int, Case], list[str]],
) -> None:
    cases, _ = fixture_read
    assert cases[2].views[0].polygons == (tuple((float(x), float(y)) for x, y in SQUARE),)
    assert cases[3].views[0].polygons == ()
    assert cases[3].views[0].bbox is None


def test_empty_tags_are_missing_without_problem(
    fixture_read: tuple[dict[int, Case], list[str]],
) -> None:
    cases, problems = fixture_read
    assert cases[4].clinical == dict.fromkeys(FIELDS)
    assert cases[4].tirads is None
    assert not [p for p in problems if p.startswith("4.xml")]


def test_misspellings_normalised(fixture_read: tuple[dict[int, Case], list[str]]) -> None:
    cases, problems = fixture_read
    clinical = cases[5].clinical
    assert clinical["composition"] == "spongiform"
    assert clinical["margins"] == "ill defined"
    assert clinical["calcifications"] == "microcalcifications"
    assert clinical["echogenicity"] == "marked hypoechogenicity"
    assert not [p for p in problems if p.startswith("5.xml")]


def test_out_of_vocabulary_degrades_field(fixture_read: tuple[dict[int, Case], list[str]]) -> None:
    cases, _ = fixture_read
    assert cases[6].clinical["margins"] is None
    assert cases[6].tirads is None
    assert len(cases[6].views) == 1


def test_missing_image_drops_view_only(fixture_read: tuple[dict[int, Case], list[str]]) -> None:
    cases, _ = fixture_read
    assert [v.index for v in cases[7].views] == [1]
    assert [v.index for v in cases[13].views] == [1]


def test_outline_clipped_to_frame(fixture_read: tuple[dict[int, Case], list[str]]) -> None:
    cases, _ = fixture_read
    (polygon,) = cases[11].views[0].polygons
    assert polygon == ((500.0, 300.0), (560.0, 300.0), (560.0, 360.0), (500.0, 360.0))


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("2.xml: view 1:", "svg JSON is truncated"),
        ("2.xml: view 1:", "kept 1 complete region"),
        ("3.xml: view 1:", "svg JSON is truncated"),
        ("3.xml: view 1:", "view kept without outline"),
        ("6.xml: margins:", "got 'wavy'; allowed: well defined"),
        ("6.xml: margins:", "field set to missing"),
        ("6.xml: tirads:", "got '7'"),
        ("7.xml: view 2:", "image 7_2.jpg not found; view dropped"),
        ("8.xml:", "case dropped"),
        ("9.xml:", "not well-formed XML"),
        ("10.xml: view 1:", "svg is empty"),
        ("11.xml: view 1: region 1:", "2 point(s) is not an outline"),
        ("11.xml: view 1: region 2:", "clipped to the frame"),
        ("11.xml: view 1: region 3:", "outside the 560x360 image; dropped"),
        ("12.xml: number:", "got '13'; file name says 12"),
        ("13_2.jpg:", "not listed in 13.xml"),
        ("999_1.jpg:", "image has no case XML; skipped"),
        ("labels.csv: line 4:", "label: got 'maybe'"),
        ("labels.csv: line 5:", "number: got 'seven'"),
        ("labels.csv:", "case 77 has a label but no usable case"),
        ("labels.csv: line 7:", "case 1 labelled twice"),
    ],
)
def test_problem_reported(
    fixture_read: tuple[dict[int, Case], list[str]], prefix: str, reason: str
) -> None:
    _, problems = fixture_read
    assert [p for p in problems if p.startswith(prefix) and reason in p], problems


def test_malformed_xml_images_not_reported_as_orphans(
    fixture_read: tuple[dict[int, Case], list[str]],
) -> None:
    _, problems = fixture_read
    assert not [p for p in problems if p.startswith("9_1.jpg")]


def test_labels_csv_sets_explicit_labels(fixture_read: tuple[dict[int, Case], list[str]]) -> None:
    cases, _ = fixture_read
    labelled = {n: c.label for n, c in cases.items() if c.label_source == "labels.csv"}
    assert labelled == {1: 1, 2: 0}
    assert cases[5].label is None and cases[5].label_source is None


@pytest.mark.parametrize(
    "header",
    ["case,label\n1,1\n", "number,diagnosis\n1,1\n", ""],
)
def test_labels_csv_without_columns_is_a_problem(tmp_path: Path, header: str) -> None:
    _write_case(tmp_path, 1, [(1, _svg(SQUARE))])
    (tmp_path / "labels.csv").write_text(header, encoding="utf-8")
    cases, problems = read_ddti(tmp_path)
    assert cases[0].label is None
    assert [p for p in problems if p.startswith("labels.csv: missing column")], problems


@pytest.mark.parametrize(
    ("target", "written", "reason"),
    [
        ("absent", None, "does not exist"),
        ("notes.txt", "notes.txt", "is not a directory"),
        (".", None, "no N.xml or N_V.jpg"),
        (".", "notes.csv", "no N.xml or N_V.jpg"),
        (".", "12.png", "no N.xml or N_V.jpg"),
    ],
)
def test_unusable_folder_raises(
    tmp_path: Path, target: str, written: str | None, reason: str
) -> None:
    if written is not None:
        (tmp_path / written).write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=f"folder: got .*{reason}"):
        read_ddti(tmp_path / target)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1", 1), (" Benign ", 0), ("MALIGNANT", 1), ("b", 0), ("M", 1), (1, 1)],
)
def test_parse_label(value: object, expected: int) -> None:
    assert parse_label(value) == expected


@pytest.mark.parametrize("value", ["", "2", "maybe", "0.5", None, "benign?"])
def test_parse_label_rejects(value: object) -> None:
    with pytest.raises(DataError, match=r"label: got .*; allowed: 0, 1, benign, malignant"):
        parse_label(value)


def test_bbox_spans_all_polygons() -> None:
    view = View(
        index=1,
        image_path=Path("x.jpg"),
        polygons=(((1, 2), (3, 9), (2, 4)), ((7, 0), (8, 1), (5, 5))),
    )
    assert view.bbox == (1, 0, 8, 9)
    assert View(index=1, image_path=Path("x.jpg")).bbox is None


# --- samples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label_source", "expected", "left_out"),
    [
        (
            "auto",
            {"1": 1, "2": 0, "3": 0, "5": 1, "7": 1, "10": 1},
            "cases have no TI-RADS grade and no label",
        ),
        (
            "tirads",
            {"1": 0, "2": 1, "3": 0, "5": 1, "7": 1, "10": 1},
            "cases have no TI-RADS grade",
        ),
        ("labels", {"1": 1, "2": 0}, "cases have no label"),
    ],
)
def test_cases_to_samples_label_sources(
    fixture_read: tuple[dict[int, Case], list[str]],
    label_source: str,
    expected: dict[str, int],
    left_out: str,
) -> None:
    cases, _ = fixture_read
    samples, problems = cases_to_samples(cases.values(), label_source=label_source)
    assert {s.case_id: s.label for s in samples} == expected
    n_views = sum(len(cases[int(cid)].views) for cid in expected)
    assert len(samples) == n_views
    assert len(problems) == 1
    assert problems[0].startswith(f"{len(cases) - len(expected)} {left_out}; left out")


def test_cases_to_samples_carries_view_data(
    fixture_read: tuple[dict[int, Case], list[str]],
) -> None:
    cases, _ = fixture_read
    samples, _ = cases_to_samples([cases[1]])
    assert [s.image_path for s in samples] == [v.image_path for v in cases[1].views]
    assert [s.polygons for s in samples] == [v.polygons for v in cases[1].views]
    assert all(s.clinical == cases[1].clinical and s.tirads == "2" for s in samples)
    samples[0].clinical["age"] = 99.0
    assert cases[1].clinical["age"] == 45.0


def test_cases_to_samples_rejects_unknown_source() -> None:
    with pytest.raises(DataError, match="label_source: got 'pathology'; allowed: auto"):
        cases_to_samples([], label_source="pathology")  # type: ignore[arg-type]


def test_load_cases_reads_folder(fixture_folder: Path) -> None:
    cases, problems = load_cases(fixture_folder)
    assert (len(cases), problems) == (
        len(read_ddti(fixture_folder)[0]),
        read_ddti(fixture_folder)[1],
    )


def _toy_samples(n_benign: int, n_malignant: int, *, views: int = 2) -> list[Sample]:
    labels = [0] * n_benign + [1] * n_malignant
    return [
        Sample(f"c{i}", Path(f"c{i}_{v}.jpg"), (), dict.fromkeys(FIELDS), label, None)
        for i, label in enumerate(labels)
        for v in range(1 + i % views)
    ]


def _case_sets(splits: tuple[list[Sample], ...]) -> list[set[str]]:
    return [{s.case_id for s in split} for split in splits]


def test_split_keeps_cases_together_and_covers_all() -> None:
    samples = _toy_samples(10, 20, views=3)
    splits = split_by_case(samples, seed=3)
    train, val, test = _case_sets(splits)
    assert not (train & val or train & test or val & test)
    assert sorted(map(id, [s for split in splits for s in split])) == sorted(map(id, samples))


def test_split_deterministic_and_order_independent() -> None:
    samples = _toy_samples(12, 25)
    first = _case_sets(split_by_case(samples, seed=7))
    assert first == _case_sets(split_by_case(samples, seed=7))
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    assert first == _case_sets(split_by_case(shuffled, seed=7))
    others = [_case_sets(split_by_case(samples, seed=s)) for s in range(8, 12)]
    assert any(other != first for other in others)


def test_split_every_split_has_each_class_from_three_per_class() -> None:
    splits = split_by_case(_toy_samples(3, 3))
    for split in splits:
        assert label_counts(split)["benign"] > 0 and label_counts(split)["malignant"] > 0


def test_split_fractions_respected() -> None:
    splits = split_by_case(_toy_samples(40, 60, views=1), fractions=(0.6, 0.2, 0.2))
    assert [len(s) for s in splits] == [60, 20, 20]
    assert [label_counts(s)["benign"] for s in splits] == [24, 8, 8]


@pytest.mark.parametrize("n_cases", [0, 1])
def test_split_needs_two_cases(n_cases: int) -> None:
    with pytest.raises(DataError, match=f"samples: got {n_cases} case"):
        split_by_case(_toy_samples(n_cases, 0, views=3))


@pytest.mark.parametrize(
    "fractions",
    [
        (0.5, 0.5),
        (0.7, 0.2, 0.2),
        (1.2, -0.1, -0.1),
        (0.7, float("nan"), 0.15),
        (0.5, 0.25, 0.25, 0.0),
    ],
)
def test_split_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(DataError, match="fractions: got"):
        split_by_case(_toy_samples(5, 5), fractions=fractions)  # type: ignore[arg-type]


def test_label_counts() -> None:
    samples = _toy_samples(2, 3, views=1)
    assert label_counts(samples) == {"benign": 2, "malignant": 3}
    assert label_counts([]) == {"benign": 0, "malignant": 0}


# --- the real DDTI sample ------------------------------------------------------------


@pytest.fixture(scope="module")
def ddti_sample() -> tuple[list[Case], list[str]]:
    if not DDTI_SAMPLE.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the DDTI sample is missing at {DDTI_SAMPLE}")
        pytest.skip(f"DDTI sample not found at {DDTI_SAMPLE}")
    return read_ddti(DDTI_SAMPLE)


def test_sample_counts(ddti_sample: tuple[list[Case], list[str]]) -> None:
    cases, _ = ddti_sample
    assert len(cases) == len(list(DDTI_SAMPLE.glob("*.xml"))) == 260
    assert sum(len(c.views) for c in cases) == len(list(DDTI_SAMPLE.glob("*.jpg"))) == 316


@pytest.mark.parametrize("number", TRUNCATED_IN_SAMPLE)
def test_sample_reports_cut_svg(ddti_sample: tuple[list[Case], list[str]], number: int) -> None:
    _, problems = ddti_sample
    assert [p for p in problems if p.startswith(f"{number}.xml: view") and ": svg " in p], problems


def test_sample_problems_name_only_known_files(ddti_sample: tuple[list[Case], list[str]]) -> None:
    _, problems = ddti_sample
    svg_cases = {int(p.split(".")[0]) for p in problems if ": svg " in p}
    assert svg_cases == set(TRUNCATED_IN_SAMPLE)


def test_sample_polygons_inside_frame(ddti_sample: tuple[list[Case], list[str]]) -> None:
    cases, _ = ddti_sample
    points = [pt for c in cases for v in c.views for poly in v.polygons for pt in poly]
    assert len(points) > 1000
    assert all(-2 <= x <= WIDTH + 2 and -2 <= y <= HEIGHT + 2 for x, y in points)
    outlined = sum(1 for c in cases for v in c.views if v.polygons)
    assert outlined >= 316 - len(TRUNCATED_IN_SAMPLE)


def test_sample_tirads_labels_match_xml(ddti_sample: tuple[list[Case], list[str]]) -> None:
    cases, _ = ddti_sample
    grades = Counter(
        (ET.parse(p).getroot().findtext("tirads") or "").strip().lower()
        for p in DDTI_SAMPLE.glob("*.xml")
    )
    samples, problems = cases_to_samples(cases, label_source="tirads")
    case_labels = {s.case_id: s.label for s in samples}
    assert Counter(case_labels.values()) == {
        0: grades["2"] + grades["3"],
        1: grades["4a"] + grades["4b"] + grades["4c"] + grades["5"],
    }
    assert len(problems) == 1
    assert problems[0].startswith(f"{grades['']} cases have no TI-RADS grade; left out")


def test_sample_split_by_case(ddti_sample: tuple[list[Case], list[str]]) -> None:
    cases, _ = ddti_sample
    samples, _ = cases_to_samples(cases)
    whole = label_counts(samples)["malignant"] / len(samples)
    splits = split_by_case(samples, seed=0)
    train, val, test = _case_sets(splits)
    assert not (train & val or train & test or val & test)
    assert sum(map(len, splits)) == len(samples)
    assert _case_sets(split_by_case(samples, seed=0)) == [train, val, test]
    for split in splits:
        assert abs(label_counts(split)["malignant"] / len(split) - whole) <= 0.1
