"""Synthetic DDTI generator (thyrocam.data.synth)."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from thyrocam.clinical import (
    CATEGORICAL_FIELDS,
    DDTI_SPELLINGS,
    TIRADS_GRADES,
    VOCABULARY,
    normalize_value,
    tirads_to_label,
)
from thyrocam.data.ddti import read_ddti
from thyrocam.data.synth import (
    LABELS_HEADER,
    SUSPICION_ORDER,
    NoduleFeatures,
    SynthConfig,
    draw_layout,
    make_synthetic_ddti,
    render_case,
    sample_case_features,
)
from thyrocam.data.synth.cases import known, per_value
from thyrocam.errors import DataError

W, H = 560, 360
TAGS = [
    "number",
    "age",
    "sex",
    "composition",
    "echogenicity",
    "margins",
    "calcifications",
    "tirads",
    "reportbacaf",
    "reporteco",
]
# The four descriptors a frame shows, with their words, from thyrocam.clinical.
DESCRIPTORS = {f: VOCABULARY[f] for f in CATEGORICAL_FIELDS if f != "sex"}
# DDTI's own misspellings (thyrocam.clinical), which the generator writes now and then.
RAW_SPELLINGS = {raw for field in DESCRIPTORS for raw in DDTI_SPELLINGS[field]}
CASES = 10


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_ddti(tmp_path_factory.mktemp("synth") / "set", cases=CASES, seed=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _labels(folder: Path) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _features(y: int, **changes: object) -> NoduleFeatures:
    base = {
        0: dict(
            composition="predominantly cystic",
            echogenicity="isoechogenicity",
            margins="well defined smooth",
            calcifications="macrocalcifications",
            taller_than_wide=False,
            size_mm=22.0,
        ),
        1: dict(
            composition="solid",
            echogenicity="marked hypoechogenicity",
            margins="spiculated",
            calcifications="microcalcifications",
            taller_than_wide=True,
            size_mm=11.0,
        ),
    }[y]
    return NoduleFeatures(**{**base, **changes})


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = _files(make_synthetic_ddti(tmp_path / "a", cases=2, seed=11))
    b = _files(make_synthetic_ddti(tmp_path / "b", cases=2, seed=11))
    assert a == b
    assert {"1.xml", "1_1.jpg", "labels.csv"} <= set(a)


def test_different_seeds_differ(tmp_path: Path) -> None:
    a = _files(make_synthetic_ddti(tmp_path / "a", cases=1, seed=11))
    b = _files(make_synthetic_ddti(tmp_path / "b", cases=1, seed=12))
    assert a["1_1.jpg"] != b["1_1.jpg"]
    assert a["1.xml"] != b["1.xml"]


def test_case_depends_only_on_seed_and_number(tmp_path: Path) -> None:
    small = _files(make_synthetic_ddti(tmp_path / "small", cases=1, seed=5))
    large = _files(make_synthetic_ddti(tmp_path / "large", cases=2, seed=5))
    shared = {name for name in small if name != "labels.csv"}
    assert shared and all(small[name] == large[name] for name in shared)
    assert _labels(tmp_path / "small") == _labels(tmp_path / "large")[:1]


# ---------------------------------------------------------------- files and XML


def test_files_follow_ddti_naming(synth_set: Path) -> None:
    names = {p.name for p in synth_set.iterdir()}
    xmls = {n for n in names if n.endswith(".xml")}
    jpgs = {n for n in names if n.endswith(".jpg")}
    assert xmls == {f"{n}.xml" for n in range(1, CASES + 1)}
    assert names == xmls | jpgs | {"labels.csv"}
    assert all(re.fullmatch(r"[1-9]\d*_[1-9]\d*\.jpg", n) for n in jpgs)
    assert {f"{n}_1.jpg" for n in range(1, CASES + 1)} <= jpgs
    for name in jpgs:
        with Image.open(synth_set / name) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (W, H))


def test_xml_follows_ddti_tag_order_and_svg_format(synth_set: Path) -> None:
    for number in range(1, CASES + 1):
        root = ET.parse(synth_set / f"{number}.xml").getroot()
        tags = [child.tag for child in root]
        marks = root.findall("mark")
        assert root.tag == "case"
        assert tags == TAGS + ["mark"] * len(marks) and marks
        assert root.findtext("number") == str(number)
        views = [int(mark.findtext("image")) for mark in marks]
        assert views == list(range(1, len(marks) + 1))
        assert {f"{number}_{v}.jpg" for v in views} == {
            p.name for p in synth_set.glob(f"{number}_*.jpg")
        }
        for mark in marks:
            regions = json.loads(mark.findtext("svg"))
            assert len(regions) in (1, 2)
            for region in regions:
                assert list(region) == ["points", "annotation", "regionType"]
                assert region["annotation"] == {} and region["regionType"] == "freehand"
                points = region["points"]
                assert len(points) >= 20
                for point in points:
                    assert list(point) == ["x", "y"]
                    assert all(type(v) is int for v in point.values())
                    assert 0 <= point["x"] < W and 0 <= point["y"] < H


def test_xml_matches_the_real_sample_layout(synth_set: Path, ddti_sample: Path) -> None:
    real = ET.parse(ddti_sample / "67.xml").getroot()
    ours = ET.parse(synth_set / "1.xml").getroot()
    assert [c.tag for c in ours if c.tag != "mark"] == [c.tag for c in real if c.tag != "mark"]
    assert [c.tag for c in ours.find("mark")] == [c.tag for c in real.find("mark")]
    real_region = json.loads(real.find("mark").findtext("svg"))[0]
    our_region = json.loads(ours.find("mark").findtext("svg"))[0]
    assert list(our_region) == list(real_region)
    assert list(our_region["points"][0]) == list(real_region["points"][0])
    with Image.open(ddti_sample / "67_1.jpg") as img:
        assert img.size == (SynthConfig().width, SynthConfig().height)


def test_frames_have_real_gray_levels(synth_set: Path, ddti_sample: Path) -> None:
    def stats(paths: list[Path]) -> np.ndarray:
        rows = []
        for path in paths:
            gray = np.asarray(Image.open(path).convert("L"), dtype=float)[30:280, 120:400]
            rows.append([gray.mean(), gray.std()])
        return np.mean(rows, axis=0)

    real = stats(sorted(ddti_sample.glob("*_1.jpg"))[:20])
    ours = stats(sorted(synth_set.glob("*.jpg")))
    assert abs(ours[0] - real[0]) < 20 and abs(ours[1] - real[1]) < 12


def test_labels_csv_holds_the_true_features(synth_set: Path) -> None:
    with (synth_set / "labels.csv").open() as fh:
        assert fh.readline().rstrip("\n") == ",".join(LABELS_HEADER)
    rows = _labels(synth_set)
    assert [int(r["number"]) for r in rows] == list(range(1, CASES + 1))
    for row in rows:
        assert row["label_name"] == {"0": "benign", "1": "malignant"}[row["label"]]
        for field, allowed in DESCRIPTORS.items():
            assert row[field] in allowed
        assert row["taller_than_wide"] in ("0", "1")
        assert 5.0 <= float(row["size_mm"]) <= 30.0
    assert {r["label"] for r in rows} == {"0", "1"}


def test_read_ddti_reads_the_generated_set_without_problems(synth_set: Path) -> None:
    cases, problems = read_ddti(synth_set)
    assert problems == []
    assert [c.number for c in cases] == list(range(1, CASES + 1))
    labels = {int(r["number"]): int(r["label"]) for r in _labels(synth_set)}
    assert {c.number: c.label for c in cases} == labels
    for case in cases:
        root = ET.parse(synth_set / f"{case.number}.xml").getroot()
        assert len(case.views) == len(root.findall("mark"))
        for field, allowed in VOCABULARY.items():
            assert case.clinical[field] is None or case.clinical[field] in allowed
        for view, mark in zip(case.views, root.findall("mark"), strict=True):
            assert len(view.polygons) == len(json.loads(mark.findtext("svg")))


def test_raw_spellings_are_written_and_read_back(tmp_path: Path) -> None:
    config = SynthConfig(
        raw_spelling_rate=1.0,
        missing_composition_echogenicity=0.0,
        missing_margins_calcifications=0.0,
    )
    rng = np.random.default_rng(0)
    written = {sample_case_features(rng, config)[1][f] for _ in range(400) for f in DESCRIPTORS}
    assert RAW_SPELLINGS <= written
    folder = make_synthetic_ddti(tmp_path / "raw", cases=2, seed=1, config=config)
    cases, problems = read_ddti(folder)
    assert problems == [] and len(cases) == 2
    for case in cases:
        for field in DESCRIPTORS:
            assert case.clinical[field] in VOCABULARY[field]


def test_suspicion_order_covers_the_clinical_vocabulary() -> None:
    assert list(SUSPICION_ORDER) == list(DESCRIPTORS)
    for field, ours in SUSPICION_ORDER.items():
        assert sorted(ours) == sorted(VOCABULARY[field])
    # DDTI misspells each of the four descriptors: the raw-spelling test is not vacuous.
    assert all(DDTI_SPELLINGS[field] for field in DESCRIPTORS)


@pytest.mark.parametrize(
    "check",
    [
        lambda: known("margins", "ill- defined"),
        lambda: known("composition", "solid", "sollid"),
        lambda: per_value("calcifications", {"non": 0, "microcalcifications": 1}),
        lambda: per_value("sex", {"F": 0, "M": 1, "u": 2}),
    ],
)
def test_generator_tables_refuse_words_outside_the_vocabulary(check) -> None:
    with pytest.raises(DataError, match=r"^\w+: got .*; allowed: "):
        check()


# ---------------------------------------------------------------- descriptors


def test_blank_tags_and_unknown_sex_at_ddti_rates() -> None:
    config = SynthConfig()
    rng = np.random.default_rng(1)
    draws = [sample_case_features(rng, config)[1] for _ in range(3000)]

    def share(test) -> float:
        return float(np.mean([test(x) for x in draws]))

    assert share(lambda x: x["composition"] == "") == pytest.approx(0.40, abs=0.04)
    assert share(lambda x: (x["composition"] == "") == (x["echogenicity"] == "")) == 1.0
    assert share(lambda x: x["margins"] == "") == pytest.approx(0.20, abs=0.04)
    assert share(lambda x: x["calcifications"] == "") == pytest.approx(0.20, abs=0.04)
    assert share(lambda x: x["age"] == "") == pytest.approx(0.20, abs=0.04)
    assert share(lambda x: x["tirads"] == "") == pytest.approx(0.25, abs=0.04)
    assert 0.0 < share(lambda x: x["sex"] == "u") < 0.1
    assert {x["tirads"] for x in draws} == {"", *TIRADS_GRADES}
    for x in draws:
        for field in DESCRIPTORS:
            assert normalize_value(field, x[field]) in (None, *DESCRIPTORS[field])
        assert x["age"] == "" or 15 <= int(x["age"]) <= 90


def _onehot(value: object, options: tuple[str, ...]) -> list[float]:
    return [float(value == o) for o in options]


def _encode_xml(x: dict[str, str]) -> list[float]:
    row: list[float] = []
    for field, options in DESCRIPTORS.items():
        value = normalize_value(field, x[field])
        row += _onehot(value, options) + [float(value is None)]
    age = normalize_value("age", x["age"])
    bins = [0.0] * 4 if age is None else _onehot(int(np.digitize(age, [35, 45, 58])), (0, 1, 2, 3))
    return row + [float(x["sex"] == "M"), float(x["sex"] in ("", "u")), *bins, float(age is None)]


def _encode_true(f: NoduleFeatures) -> list[float]:
    row: list[float] = []
    for field, options in DESCRIPTORS.items():
        row += _onehot(getattr(f, field), options)
    return row + [float(f.taller_than_wide), float(np.log(f.size_mm))]


def _fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """L2 logistic regression by gradient descent on standardised columns."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(1500):
        g = 1 / (1 + np.exp(-(x @ w + b))) - y
        w -= 0.5 * (x.T @ g / len(y) + 1e-3 * w)
        b -= 0.5 * g.mean()
    return x_test @ w + b


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    pos = int(y.sum())
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def test_descriptors_plus_image_beat_either_alone() -> None:
    rng = np.random.default_rng(2024)
    config = SynthConfig()
    draws = [sample_case_features(rng, config) for _ in range(2000)]
    y = np.array([d[2] for d in draws], dtype=float)
    xml = np.array([_encode_xml(d[1]) for d in draws])
    image = np.array([_encode_true(d[0]) for d in draws])
    half = len(y) // 2
    aucs = {
        name: _auc(_fit_predict(x[:half], y[:half], x[half:]), y[half:])
        for name, x in (("xml", xml), ("image", image), ("both", np.hstack([xml, image])))
    }
    assert 0.40 < y.mean() < 0.50
    assert aucs["both"] > aucs["image"] > aucs["xml"], aucs
    assert aucs["both"] >= 0.96, aucs
    assert 0.85 <= aucs["xml"] <= 0.95, aucs


def test_tirads_grade_follows_the_written_descriptors() -> None:
    config = SynthConfig(
        missing_tirads=0.0,
        missing_composition_echogenicity=0.0,
        missing_margins_calcifications=0.0,
    )
    rng = np.random.default_rng(8)
    draws = [sample_case_features(rng, config) for _ in range(1500)]
    x = np.array([_encode_xml(d[1])[:-7] for d in draws])
    high = np.array([tirads_to_label(d[1]["tirads"]) == 1 for d in draws], dtype=float)
    assert _auc(_fit_predict(x[:750], high[:750], x[750:]), high[750:]) >= 0.95


# ---------------------------------------------------------------- the picture


def _inside_and_ring(img: Image.Image, polygon: list[tuple[int, int]]) -> tuple[float, float]:
    """Mean gray inside the nodule (eroded 2 px) and in a ring 4..10 px outside it."""
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    core = np.asarray(mask.filter(ImageFilter.MinFilter(5))) > 127
    near = np.asarray(mask.filter(ImageFilter.MaxFilter(9))) > 127
    far = np.asarray(mask.filter(ImageFilter.MaxFilter(21))) > 127
    gray = np.asarray(img.convert("L"), dtype=float)
    return float(gray[core].mean()), float(gray[far & ~near].mean())


PLAIN = SynthConfig(two_panel_rate=0.0, caliper_rate=0.0)


@pytest.mark.parametrize(
    ("composition", "echogenicity", "low", "high"),
    [
        ("solid", "hyperechogenicity", 10, 255),
        ("solid", "isoechogenicity", -15, 15),
        ("solid", "hypoechogenicity", -255, -8),
        ("solid", "marked hypoechogenicity", -255, -30),
        ("spongiform", "isoechogenicity", -255, -10),
        ("cystic", "isoechogenicity", -255, -40),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_nodule_contrast_follows_its_features(
    composition: str, echogenicity: str, low: float, high: float, seed: int
) -> None:
    features = NoduleFeatures(composition, echogenicity, "well defined smooth", "non", False, 15.0)
    img, polygons = render_case(np.random.default_rng(seed), features=features, config=PLAIN)
    inside, ring = _inside_and_ring(img, polygons[0])
    assert low < inside - ring < high, (inside, ring)


def test_marked_hypo_is_darker_than_hypo_and_cyst_darker_still() -> None:
    means = {}
    for composition, echogenicity in (
        ("solid", "hypoechogenicity"),
        ("solid", "marked hypoechogenicity"),
        ("cystic", "hypoechogenicity"),
    ):
        features = NoduleFeatures(composition, echogenicity, "well defined", "non", False, 15.0)
        img, polygons = render_case(np.random.default_rng(4), features=features, config=PLAIN)
        means[composition, echogenicity] = _inside_and_ring(img, polygons[0])[0]
    hypo, marked, cyst = means.values()
    assert hypo > marked > cyst


def test_taller_than_wide_shows_in_the_outline() -> None:
    ratios = {}
    for tall in (False, True):
        features = _features(1, taller_than_wide=tall, margins="well defined smooth")
        _, polygons = render_case(np.random.default_rng(6), features=features, config=PLAIN)
        points = np.array(polygons[0])
        width, height = np.ptp(points, axis=0)
        ratios[tall] = height / width
    assert ratios[True] > 1.05 and ratios[False] < 0.95


@pytest.mark.parametrize("size_mm", [5.0, 30.0])
def test_nodule_sizes_span_ddti_range(size_mm: float) -> None:
    features = _features(0, size_mm=size_mm)
    widths = []
    for seed in range(2):
        _, polygons = render_case(np.random.default_rng(seed), features=features, config=PLAIN)
        widths.append(max(np.ptp(np.array(polygons[0]), axis=0)))
    assert (25 <= min(widths) <= 60) if size_mm == 5.0 else (150 <= max(widths) <= 260)


@pytest.mark.parametrize(("width", "height"), [(160, 120), (800, 600)])
@pytest.mark.parametrize("y", [0, 1])
def test_other_frame_sizes_render(width: int, height: int, y: int) -> None:
    config = SynthConfig(width=width, height=height)
    for seed in range(2):
        rng = np.random.default_rng(seed)
        img, polygons = render_case(rng, features=_features(y), config=config)
        assert (img.mode, img.size) == ("RGB", (width, height))
        for polygon in polygons:
            xs, ys = np.array(polygon).T
            assert xs.min() >= 0 and xs.max() < width and ys.min() >= 0 and ys.max() < height


# ---------------------------------------------------------------- burnt-in marks


@pytest.mark.parametrize("seed", range(4))
def test_marks_are_the_same_for_benign_and_malignant(seed: int) -> None:
    config = SynthConfig()
    x0, y0, fw, fh = draw_layout(np.random.default_rng(seed), config).field
    outside = np.ones((H, W), dtype=bool)
    outside[y0 : y0 + fh, x0 : x0 + fw] = False
    frames = [
        np.asarray(render_case(np.random.default_rng(seed), features=f, config=config)[0])
        for f in (_features(0), _features(1))
    ]
    assert np.array_equal(frames[0][outside], frames[1][outside])
    assert (frames[0][outside] > 100).sum() > 200  # text, scale, body mark are there
    assert not np.array_equal(frames[0], frames[1])


def test_mark_rates_follow_the_config() -> None:
    config = SynthConfig()
    rng = np.random.default_rng(0)
    layouts = [draw_layout(rng, config) for _ in range(3000)]
    two_panel = np.mean([layout.two_panel for layout in layouts])
    calipers = np.mean([any(p.calipers for p in layout.panels) for layout in layouts])
    assert two_panel == pytest.approx(config.two_panel_rate, abs=0.03)
    # single: caliper_rate; same view twice: always one panel; two views: caliper_rate
    expected = (1 - 0.5 * two_panel) * config.caliper_rate + 0.5 * two_panel
    assert calipers == pytest.approx(expected, abs=0.03)
    assert {layout.side_text for layout in layouts} >= {"DER", "IZQ"}
    for layout in layouts:
        x0, y0, fw, fh = layout.field
        assert x0 >= 0 and y0 >= 0 and x0 + fw <= 0.93 * W and y0 + fh <= H
    always = SynthConfig(two_panel_rate=1.0)
    assert all(draw_layout(rng, always).two_panel for _ in range(50))


@pytest.mark.parametrize("y", [0, 1])
def test_calipers_are_drawn_on_the_nodule(y: int) -> None:
    def frame(rate: float) -> tuple[np.ndarray, np.ndarray]:
        config = SynthConfig(two_panel_rate=0.0, caliper_rate=rate)
        img, polygons = render_case(np.random.default_rng(9), features=_features(y), config=config)
        return np.asarray(img.convert("L"), dtype=int), np.array(polygons[0])

    with_marks, polygon = frame(1.0)
    without, _ = frame(0.0)
    rows, cols = np.nonzero(with_marks != without)
    assert len(rows) >= 10
    (left, top), (right, bottom) = polygon.min(0) - 10, polygon.max(0) + 10
    assert left <= cols.min() and cols.max() <= right
    assert top <= rows.min() and rows.max() <= bottom


def test_two_panel_frames_outline_the_nodule_in_each_panel() -> None:
    config = SynthConfig(two_panel_rate=1.0)
    for seed in range(3):
        x0, _, fw, _ = draw_layout(np.random.default_rng(seed), config).field
        rng = np.random.default_rng(seed)
        _, polygons = render_case(rng, features=_features(1), config=config)
        assert len(polygons) == 2
        for panel, polygon in enumerate(polygons):
            xs = np.array(polygon)[:, 0]
            left = x0 + panel * fw // 2
            assert left <= xs.min() and xs.max() < left + fw // 2


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cases": 0}, "cases"),
        ({"cases": -3}, "cases"),
        ({"cases": 2.5}, "cases"),
        ({"cases": True}, "cases"),
        ({"cases": 2, "seed": -1}, "seed"),
        ({"cases": 2, "seed": "7"}, "seed"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(DataError, match=rf"^{field}: got .*; allowed: ") as info:
        make_synthetic_ddti(tmp_path / "out", **kwargs)
    assert info.value.field == field
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("width", 100),
        ("height", 50.5),
        ("two_panel_rate", 1.5),
        ("caliper_rate", -0.1),
        ("descriptor_noise", "high"),
        ("missing_sex_age", True),
        ("jpeg_quality", 0),
        ("jpeg_quality", 100),
    ],
)
def test_bad_config_is_refused(field: str, value: object) -> None:
    with pytest.raises(DataError, match=rf"^{field}: got {re.escape(repr(value))}; allowed: "):
        SynthConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("composition", "sollid"),
        ("echogenicity", "hypo"),
        ("margins", "ill- defined"),
        ("calcifications", "microcalcification"),
        ("size_mm", 45.0),
        ("size_mm", "12"),
        ("taller_than_wide", 1),
    ],
)
def test_bad_features_are_refused(field: str, value: object) -> None:
    with pytest.raises(DataError, match=rf"^{field}: got {re.escape(repr(value))}; allowed: "):
        _features(0, **{field: value})


def test_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"^out: got .*notes\.txt"):
        make_synthetic_ddti(tmp_path, cases=1)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    file = tmp_path / "notes.txt"
    with pytest.raises(DataError, match=r"^out: got .*a file"):
        make_synthetic_ddti(file, cases=1)


def test_refuses_a_real_ddti_folder(tmp_path: Path) -> None:
    (tmp_path / "1.xml").write_text("<case><number>1</number></case>")
    with pytest.raises(DataError, match="labels.csv"):
        make_synthetic_ddti(tmp_path, cases=1)
    assert (tmp_path / "1.xml").read_text() == "<case><number>1</number></case>"


def test_rewrites_a_previous_synthetic_set(tmp_path: Path) -> None:
    make_synthetic_ddti(tmp_path, cases=2, seed=0)
    make_synthetic_ddti(tmp_path, cases=1, seed=0)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"labels.csv", "1.xml"} | {p.name for p in tmp_path.glob("1_*.jpg")}
    assert len(_labels(tmp_path)) == 1
