"""CSV manifest reader (thyrocam.data.manifest) and load_cases dispatch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from thyrocam.clinical import FIELDS
from thyrocam.data.ddti import Case
from thyrocam.data.manifest import read_manifest
from thyrocam.data.samples import cases_to_samples, load_cases, split_by_case
from thyrocam.errors import DataError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (64, 48), 100).save(path)
    return path


def _write(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_tn3k_name_label_with_image_root(tmp_path: Path) -> None:
    for name in ("0000.jpg", "0001.jpg", "0002.jpg"):
        _image(tmp_path / "trainval-image" / name)
    csv_path = _write(
        tmp_path / "label4trainval.csv", "name,label\n0002.jpg,1\n0000.jpg,0\n0001.jpg,1\n"
    )
    cases, problems = read_manifest(csv_path, image_root=tmp_path / "trainval-image")
    assert problems == []
    assert [(c.number, c.case_id, c.label) for c in cases] == [
        (1, "0002", 1),
        (2, "0000", 0),
        (3, "0001", 1),
    ]
    for case in cases:
        assert case.label_source == "manifest"
        assert case.source == csv_path
        assert case.tirads is None
        assert case.clinical == dict.fromkeys(FIELDS)
        assert [(v.index, v.image_path, v.polygons, v.mask_path) for v in case.views] == [
            (1, tmp_path / "trainval-image" / f"{case.case_id}.jpg", (), None)
        ]


def test_relative_paths_default_to_csv_folder(tmp_path: Path) -> None:
    _image(tmp_path / "imgs" / "a.png")
    absolute = _image(tmp_path / "elsewhere" / "b.png")
    csv_path = _write(tmp_path / "m.csv", f"image,label\nimgs/a.png,benign\n{absolute},malignant\n")
    cases, problems = read_manifest(csv_path)
    assert problems == []
    assert [c.views[0].image_path for c in cases] == [tmp_path / "imgs" / "a.png", absolute]
    assert [c.label for c in cases] == [0, 1]


FULL_HEADER = "Case,Image,Mask,Label,TIRADS,Composition,Echogenicity,Margins,Calcifications,Sex,Age"


@pytest.fixture
def full_manifest(tmp_path: Path) -> Path:
    for name in ("p1_a.png", "p1_b.png", "p2_a.png", "p3_a.png", "p1_mask.png"):
        _image(tmp_path / name)
    rows = [
        FULL_HEADER,
        "P1,p1_a.png,p1_mask.png,M,4b,solid,hypoechogenicity,ill- defined,microcalcification,F,52",
        "P2,p2_a.png,,b,3,spongiform appareance,isoechogenicity,well defined,non,M,",
        "P1,p1_b.png,,malignant,4b,,,,,,",
        "P3,p3_a.png,,1,,,,,,u,",
    ]
    # A BOM, as Excel writes it, must not end up in the first column's name.
    return _write(tmp_path / "export.csv", "\n".join(rows) + "\n", encoding="utf-8-sig")


def _by_id(cases: list[Case]) -> dict[str, Case]:
    return {c.case_id: c for c in cases if c.case_id is not None}


def test_full_manifest_groups_cases(full_manifest: Path) -> None:
    cases, problems = read_manifest(full_manifest)
    assert problems == []
    assert [(c.number, c.case_id) for c in cases] == [(1, "P1"), (2, "P2"), (3, "P3")]
    p1 = _by_id(cases)["P1"]
    assert p1.label == 1 and p1.tirads == "4b"
    assert p1.clinical == {
        "composition": "solid",
        "echogenicity": "hypoechogenicity",
        "margins": "ill defined",
        "calcifications": "microcalcifications",
        "sex": "F",
        "age": 52.0,
    }
    assert [(v.index, v.image_path.name) for v in p1.views] == [(1, "p1_a.png"), (2, "p1_b.png")]
    assert [v.mask_path for v in p1.views] == [full_manifest.parent / "p1_mask.png", None]
    p2 = _by_id(cases)["P2"]
    assert (p2.label, p2.tirads, p2.clinical["composition"], p2.clinical["age"]) == (
        0,
        "3",
        "spongiform",
        None,
    )
    assert _by_id(cases)["P3"].clinical == dict.fromkeys(FIELDS)


def test_manifest_samples_group_by_case_id(full_manifest: Path) -> None:
    cases, _ = read_manifest(full_manifest)
    samples, problems = cases_to_samples(cases, label_source="labels")
    assert problems == []
    assert [(s.case_id, s.label) for s in samples] == [("P1", 1), ("P1", 1), ("P2", 0), ("P3", 1)]
    assert samples[0].mask_path == full_manifest.parent / "p1_mask.png"
    for seed in range(5):
        splits = split_by_case(samples, seed=seed)
        assert sorted(sum(s.case_id == "P1" for s in split) for split in splits) == [0, 0, 2]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_other_delimiters(tmp_path: Path, delimiter: str) -> None:
    _image(tmp_path / "a.jpg")
    csv_path = _write(
        tmp_path / "m.csv", f"image{delimiter}label{delimiter}age\na.jpg{delimiter}0{delimiter}61\n"
    )
    cases, problems = read_manifest(csv_path)
    assert problems == []
    assert (cases[0].label, cases[0].clinical["age"]) == (0, 61.0)


@pytest.mark.parametrize(
    ("text", "missing", "found"),
    [
        ("image,diagnosis\na.jpg,1\n", "label", "image, diagnosis"),
        ("file,label\na.jpg,1\n", "image (or name)", "file, label"),
        ("case\n", "image (or name)", "case"),
        ("", "image (or name)", "none"),
    ],
)
def test_missing_column_raises(tmp_path: Path, text: str, missing: str, found: str) -> None:
    csv_path = _write(tmp_path / "m.csv", text)
    with pytest.raises(DataError, match=re.escape(f"m.csv: missing column {missing};")) as info:
        read_manifest(csv_path)
    assert f"columns found: {found};" in str(info.value)


@pytest.mark.parametrize("make", ["absent", "folder", "latin-1"])
def test_unreadable_manifest_raises(tmp_path: Path, make: str) -> None:
    target = tmp_path / "m.csv"
    if make == "folder":
        target.mkdir()
    elif make == "latin-1":
        target.write_bytes("image,label\nñ.jpg,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="manifest: got .*cannot be read"):
        read_manifest(target)


BAD_ROWS = [
    # (row after the good one, expected problem fragment, rows kept as views in total)
    ("missing.jpg,1,A2", "line 3: image 'missing.jpg' not found", 1),
    (",1,A2", "line 3: image is empty; row skipped", 1),
    ("b.jpg,maybe,A2", "line 3: label: got 'maybe'; allowed: 0, 1, benign, malignant", 1),
    ("b.jpg,,A2", "line 3: label: got ''", 1),
    ("a.jpg,1,A2", "line 3: image 'a.jpg' already listed on line 2; row skipped", 1),
    ("b.jpg,1,A2,,,wavy", "line 3: margins: got 'wavy'; allowed: well defined", 2),
    ("b.jpg,1,A2,,,,,,200", "line 3: age: got '200'", 2),
    ("b.jpg,1,A2,TR4", "line 3: tirads: got 'TR4'; allowed: 2, 3, 4a", 2),
    ("b.jpg,1,A2,,nomask.png", "line 3: mask 'nomask.png' not found; view kept without mask", 2),
    ("b.jpg,0,A1", "line 3: case 'A1': label: got 0, but line 2 says 1; line 2 kept", 2),
    ("b.jpg,1,A1,,,,,,61", "line 3: case 'A1': age: got 61.0, but line 2 says 60.0", 2),
]


@pytest.mark.parametrize(("row", "fragment", "n_views"), BAD_ROWS)
def test_bad_rows_become_problems(tmp_path: Path, row: str, fragment: str, n_views: int) -> None:
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    header = "image,label,case,tirads,mask,margins,sex,composition,age"
    good = "a.jpg,1,A1,,,,F,,60"
    csv_path = _write(tmp_path / "m.csv", f"{header}\n{good}\n{row}\n")
    cases, problems = read_manifest(csv_path)
    assert [p for p in problems if p.startswith("m.csv: ") and fragment in p], problems
    assert sum(len(c.views) for c in cases) == n_views
    first = _by_id(cases)["A1"]
    assert (first.label, first.clinical["age"], first.clinical["sex"]) == (1, 60.0, "F")


def test_bad_descriptor_sets_field_missing(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    csv_path = _write(tmp_path / "m.csv", "image,label,margins,sex\na.jpg,1,wavy,F\n")
    cases, problems = read_manifest(csv_path)
    assert (cases[0].clinical["margins"], cases[0].clinical["sex"]) == (None, "F")
    assert len(problems) == 1 and problems[0].endswith("; field set to missing")


def test_later_row_fills_missing_value_silently(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    csv_path = _write(
        tmp_path / "m.csv", "image,label,case,age,tirads\na.jpg,1,X,,\nb.jpg,1,X,70,5\n"
    )
    cases, problems = read_manifest(csv_path)
    assert problems == []
    assert (cases[0].clinical["age"], cases[0].tirads, len(cases[0].views)) == (70.0, "5", 2)


def test_load_cases_dispatches(tmp_path: Path, full_manifest: Path) -> None:
    assert load_cases(full_manifest) == read_manifest(full_manifest)
    notes = _write(tmp_path / "notes.txt", "image,label\n")
    for target, reason in (
        (notes, "is not a folder or a .csv file"),
        (tmp_path / "x.csv", "does not exist"),
    ):
        with pytest.raises(DataError, match=f"data: got .*{reason}"):
            load_cases(target)
