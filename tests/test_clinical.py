"""Tests for thyrocam.clinical: vocabulary, normalisation, encoding, cat_maps, TI-RADS."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import os
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import thyrocam.clinical as clinical
from thyrocam.clinical import (
    AGE_RANGE,
    CATEGORICAL_FIELDS,
    FIELDS,
    TIRADS_FEATURES,
    TIRADS_GRADES,
    VOCABULARY,
    acr_tirads,
    clinical_dim,
    default_cat_maps,
    encode_clinical_with_mask,
    feature_slices,
    fit_cat_maps,
    load_cat_maps,
    mask_slice,
    normalize_clinical,
    normalize_tirads,
    normalize_value,
    save_cat_maps,
    tirads_to_label,
)
from thyrocam.errors import CheckpointError, ClinicalValueError

DDTI = Path(__file__).resolve().parents[2] / "shared" / "ddti"


@pytest.fixture
def ddti_dir() -> Path:
    """The real DDTI sample; skipped when absent, except under CI where it must exist."""
    if not DDTI.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the DDTI sample is missing at {DDTI} (required when CI=true)")
        pytest.skip(f"no DDTI sample at {DDTI}")
    return DDTI


def read_case_values(xml_path: Path) -> tuple[dict[str, str | None], str | None]:
    """Raw text of the six descriptor tags and of <tirads> in one DDTI case file."""
    root = ET.parse(xml_path).getroot()
    raw = {field: root.findtext(field) for field in FIELDS}
    return raw, root.findtext("tirads")


# --- normalisation -----------------------------------------------------------------------

# Every raw spelling DESIGN.md lists for DDTI (the sample holds most of them).
DDTI_SPELLINGS = [
    ("composition", "solid", "solid"),
    ("composition", "predominantly solid", "predominantly solid"),
    ("composition", "spongiform", "spongiform"),
    ("composition", "spongiform appareance", "spongiform"),
    ("composition", "predominantly cystic", "predominantly cystic"),
    ("composition", "dense", "dense"),
    ("composition", "cystic", "cystic"),
    ("echogenicity", "isoechogenicity", "isoechogenicity"),
    ("echogenicity", "hypoechogenicity", "hypoechogenicity"),
    ("echogenicity", "hyperechogenicity", "hyperechogenicity"),
    ("echogenicity", "marked hypoechogenicity", "marked hypoechogenicity"),
    ("echogenicity", "marked hypoechogenecity", "marked hypoechogenicity"),
    ("echogenicity", "hypoechogenecity", "hypoechogenicity"),
    ("margins", "well defined", "well defined"),
    ("margins", "well defined smooth", "well defined smooth"),
    ("margins", "ill defined", "ill defined"),
    ("margins", "ill- defined", "ill defined"),
    ("margins", "microlobulated", "microlobulated"),
    ("margins", "spiculated", "spiculated"),
    ("margins", "macrolobulated", "macrolobulated"),
    ("calcifications", "microcalcifications", "microcalcifications"),
    ("calcifications", "microcalcification", "microcalcifications"),
    ("calcifications", "non", "non"),
    ("calcifications", "macrocalcifications", "macrocalcifications"),
    ("calcifications", "macrocalcification", "macrocalcifications"),
    ("sex", "F", "F"),
    ("sex", "M", "M"),
    ("sex", "u", None),
    ("sex", "", None),
    ("composition", "", None),
    ("age", "59", 59.0),
    ("age", "40 ", 40.0),
    ("age", "", None),
]

SYNONYMS = [
    ("margins", "ill-defined", "ill defined"),
    ("margins", "ill_defined", "ill defined"),
    ("margins", "  Well   DEFINED  ", "well defined"),
    ("margins", "well-defined smooth", "well defined smooth"),
    ("composition", "Predominantly-Solid", "predominantly solid"),
    ("echogenicity", "hypoechoic", "hypoechogenicity"),
    ("echogenicity", "iso", "isoechogenicity"),
    ("echogenicity", "isoechoic", "isoechogenicity"),
    ("echogenicity", "hyper", "hyperechogenicity"),
    ("echogenicity", "very hypoechoic", "marked hypoechogenicity"),
    ("calcifications", "none", "non"),
    ("calcifications", "No", "non"),
    ("sex", "female", "F"),
    ("sex", "f", "F"),
    ("sex", "Mujer", "F"),
    ("sex", "male", "M"),
    ("sex", "m", "M"),
    ("sex", "hombre", "M"),
    ("age", 59, 59.0),
    ("age", 59.5, 59.5),
    ("age", " 59 ", 59.0),
    ("age", "59.0", 59.0),
    ("age", np.int64(71), 71.0),
    ("age", 1, 1.0),
    ("age", "110", 110.0),
]


@pytest.mark.parametrize(("field", "raw", "expected"), DDTI_SPELLINGS + SYNONYMS)
def test_normalize_value_maps_spellings_to_canonical(field, raw, expected):
    assert normalize_value(field, raw) == expected


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "raw", [None, "", "   ", "u", "U", "unknown", "nan", "NaN", float("nan"), np.float32("nan")]
)
def test_missing_values_normalize_to_none(field, raw):
    assert normalize_value(field, raw) is None


@pytest.mark.parametrize("field", CATEGORICAL_FIELDS)
def test_canonical_values_are_fixed_points(field):
    assert [normalize_value(field, v) for v in VOCABULARY[field]] == list(VOCABULARY[field])


BAD_VALUES = [
    ("composition", "sollid"),
    ("composition", 3),
    ("composition", ["solid"]),
    ("echogenicity", "anechoic"),
    ("margins", "wavy"),
    ("margins", "lobulated"),
    ("calcifications", "rim"),
    ("sex", "X"),
    ("sex", True),
    ("age", "abc"),
    ("age", "5O"),
    ("age", 0),
    ("age", -3),
    ("age", "-3"),
    ("age", 200),
    ("age", 110.5),
    ("age", True),
    ("age", "1_0"),
    ("age", "inf"),
    ("age", float("inf")),
    ("age", "59 years"),
    ("age", [59]),
]


@pytest.mark.parametrize(("field", "raw"), BAD_VALUES)
def test_bad_values_raise_naming_field_value_and_allowed(field, raw):
    with pytest.raises(ClinicalValueError) as info:
        normalize_value(field, raw)
    err = info.value
    message = str(err)
    assert isinstance(err, ValueError)
    assert err.field == field
    assert err.value == raw
    assert message.startswith(f"{field}: ")
    assert repr(raw) in message
    if field == "age":
        assert f"between {AGE_RANGE[0]:g} and {AGE_RANGE[1]:g}" in message
    else:
        assert err.allowed == VOCABULARY[field]
        assert all(value in message for value in VOCABULARY[field])


def test_unknown_field_raises_listing_the_fields():
    with pytest.raises(ClinicalValueError) as info:
        normalize_value("shape", "taller than wide")
    assert "'shape'" in str(info.value)
    assert info.value.allowed == FIELDS
    assert all(field in str(info.value) for field in FIELDS)


def test_normalize_clinical_keeps_exactly_the_six_fields():
    out = normalize_clinical(
        {"margins": "ill- defined", "age": "40 ", "filename": "a.jpg", "use_clinical": "1"}
    )
    assert list(out) == list(FIELDS)
    assert out["margins"] == "ill defined"
    assert out["age"] == 40.0
    assert [out[f] for f in ("composition", "echogenicity", "calcifications", "sex")] == [None] * 4


def test_normalize_clinical_none_is_all_missing():
    assert normalize_clinical(None) == dict.fromkeys(FIELDS)


def test_normalize_clinical_raises_on_first_bad_field_in_field_order():
    with pytest.raises(ClinicalValueError) as info:
        normalize_clinical({"age": "abc", "margins": "wavy", "sex": "F"})
    assert info.value.field == "margins"


def test_normalize_clinical_is_idempotent():
    once = normalize_clinical({"composition": "spongiform appareance", "sex": "u", "age": "59"})
    assert normalize_clinical(once) == once


# --- DDTI grades -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", "2"),
        ("4A", "4a"),
        (" 4b ", "4b"),
        ("4c", "4c"),
        (3, "3"),
        (np.int64(5), "5"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_tirads(raw, expected):
    assert normalize_tirads(raw) == expected


@pytest.mark.parametrize("raw", ["TR4", "4", 4, "6", "4d", "4 a", 4.5, True, "TR4a"])
def test_bad_tirads_raise(raw):
    with pytest.raises(ClinicalValueError) as info:
        normalize_tirads(raw)
    assert info.value.field == "tirads"
    assert repr(raw) in str(info.value)
    assert "4a" in str(info.value)


@pytest.mark.parametrize(
    ("grade", "label"),
    [("2", 0), ("3", 0), ("4a", 1), ("4b", 1), ("4c", 1), ("5", 1), (None, None), ("4A", 1)],
)
def test_tirads_to_label(grade, label):
    assert tirads_to_label(grade) == label


def test_every_grade_has_a_label():
    assert {tirads_to_label(g) for g in TIRADS_GRADES} == {0, 1}


# --- encoding ----------------------------------------------------------------------------

FULL = {
    "composition": "solid",
    "echogenicity": "hypoechogenicity",
    "margins": "spiculated",
    "calcifications": "microcalcifications",
    "sex": "F",
    "age": 65,
}


def test_default_dim_is_28():
    maps = default_cat_maps()
    assert clinical_dim(maps) == 28
    vec, mask = encode_clinical_with_mask(FULL, maps)
    assert vec.shape == (28,) and mask.shape == (len(FIELDS),)
    assert vec.dtype == np.float32 and mask.dtype == np.float32


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f in CATEGORICAL_FIELDS for v in VOCABULARY[f]]
)
def test_one_hot_position_and_mask(field, value):
    maps = default_cat_maps()
    vec, mask = encode_clinical_with_mask({field: value}, maps)
    block = vec[feature_slices(maps)[field]]
    expected_block = np.zeros(len(VOCABULARY[field]), dtype=np.float32)
    expected_block[VOCABULARY[field].index(value)] = 1.0
    np.testing.assert_array_equal(block, expected_block)
    expected_mask = np.array([f == field for f in FIELDS], dtype=np.float32)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(vec[mask_slice(maps)], mask)
    assert vec.sum() == 2.0  # one one-hot entry and one mask entry, nothing else


def test_age_is_z_scored_with_the_maps_statistics():
    maps = default_cat_maps()
    maps["age"] = {"mean": 40.0, "std": 10.0}
    vec, mask = encode_clinical_with_mask({"age": "65"}, maps)
    assert vec[feature_slices(maps)["age"]].tolist() == [pytest.approx(2.5)]
    assert mask.tolist() == [0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("payload", [None, {}, dict.fromkeys(FIELDS, ""), {"sex": "u"}])
def test_all_missing_encodes_to_zeros(payload):
    vec, mask = encode_clinical_with_mask(payload, default_cat_maps())
    assert vec.shape == (28,)
    assert not vec.any() and not mask.any()


def test_full_record_sets_every_mask_entry():
    maps = default_cat_maps()
    vec, mask = encode_clinical_with_mask(FULL, maps)
    assert mask.tolist() == [1.0] * len(FIELDS)
    one_hots = vec[: feature_slices(maps)["age"].start]
    assert one_hots.sum() == len(CATEGORICAL_FIELDS)
    assert vec[feature_slices(maps)["age"]].item() == pytest.approx((65 - 50) / 15)


def test_slices_tile_the_vector():
    maps = default_cat_maps()
    slices = feature_slices(maps)
    assert list(slices) == list(FIELDS)
    starts = [s.start for s in slices.values()] + [mask_slice(maps).start]
    stops = [0] + [s.stop for s in slices.values()]
    assert starts == stops
    assert mask_slice(maps) == slice(22, 28)


@pytest.mark.parametrize("field", FIELDS)
def test_zeroing_slice_and_mask_entry_equals_encoding_without_the_field(field):
    maps = default_cat_maps()
    vec, _ = encode_clinical_with_mask(FULL, maps)
    vec[feature_slices(maps)[field]] = 0.0
    vec[mask_slice(maps).start + FIELDS.index(field)] = 0.0
    without = {k: v for k, v in FULL.items() if k != field}
    np.testing.assert_array_equal(vec, encode_clinical_with_mask(without, maps)[0])


def test_custom_maps_follow_their_order_and_reject_unknown_categories():
    maps = default_cat_maps()
    maps["fields"]["composition"] = ["solid", "cystic"]
    assert clinical_dim(maps) == 24
    vec, _ = encode_clinical_with_mask({"composition": "cystic"}, maps)
    assert vec[feature_slices(maps)["composition"]].tolist() == [0.0, 1.0]
    with pytest.raises(ClinicalValueError) as info:
        encode_clinical_with_mask({"composition": "spongiform appareance"}, maps)
    assert info.value.field == "composition"
    assert "'spongiform appareance'" in str(info.value)
    assert "solid, cystic" in str(info.value)


@pytest.mark.parametrize(("field", "raw"), BAD_VALUES)
def test_encode_raises_the_normalisation_errors(field, raw):
    with pytest.raises(ClinicalValueError) as info:
        encode_clinical_with_mask({field: raw}, default_cat_maps())
    assert info.value.field == field


# --- cat_maps ----------------------------------------------------------------------------


def test_fit_cat_maps_uses_non_missing_ages():
    records = [{"age": 30}, {"age": "50"}, {"age": 70.0}, {"age": None}, {"sex": "F"}]
    maps = fit_cat_maps(records)
    assert maps["age"]["mean"] == pytest.approx(50.0)
    assert maps["age"]["std"] == pytest.approx(statistics.pstdev([30, 50, 70]))
    assert maps["fields"] == default_cat_maps()["fields"]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([{"age": 42}], {"mean": 42.0, "std": 1.0}),
        ([{"age": 42}, {"age": 42.5}], {"mean": 42.25, "std": 1.0}),
        ([{"sex": "F"}, {}], default_cat_maps()["age"]),
        ([], default_cat_maps()["age"]),
    ],
)
def test_fit_cat_maps_std_floor_and_fallback(records, expected):
    assert fit_cat_maps(records)["age"] == pytest.approx(expected)


def test_fit_cat_maps_rejects_bad_records():
    with pytest.raises(ClinicalValueError):
        fit_cat_maps([{"age": 30}, {"age": 300}])


def test_cat_maps_save_load_round_trip(tmp_path):
    maps = fit_cat_maps([{"age": 30}, {"age": 61}])
    maps["fields"]["margins"] = ["spiculated", "well defined"]
    path = tmp_path / "cat_maps.json"
    save_cat_maps(maps, path)
    loaded = load_cat_maps(str(path))
    assert loaded == maps
    assert json.loads(path.read_text(encoding="utf-8")) == maps
    np.testing.assert_array_equal(
        encode_clinical_with_mask(FULL, loaded)[0], encode_clinical_with_mask(FULL, maps)[0]
    )


def _broken(change):
    maps = default_cat_maps()
    change(maps)
    return json.dumps(maps)


CORRUPT_FILES = [
    ("not json", '{"version": 1, "fields": '),
    ("not an object", "[1, 2]"),
    ("wrong version", _broken(lambda m: m.update(version=2))),
    ("field missing", _broken(lambda m: m["fields"].pop("sex"))),
    ("extra field", _broken(lambda m: m["fields"].update(shape=["wider"]))),
    ("unknown category", _broken(lambda m: m["fields"].update(sex=["F", "X"]))),
    ("duplicate category", _broken(lambda m: m["fields"].update(sex=["F", "F"]))),
    ("empty categories", _broken(lambda m: m["fields"].update(sex=[]))),
    ("nested category", _broken(lambda m: m["fields"].update(sex=[["F"]]))),
    ("zero std", _broken(lambda m: m["age"].update(std=0))),
    ("text mean", _broken(lambda m: m["age"].update(mean="50"))),
    ("no age", _broken(lambda m: m.pop("age"))),
]


@pytest.mark.parametrize(("why", "text"), CORRUPT_FILES, ids=[c[0] for c in CORRUPT_FILES])
def test_corrupt_cat_maps_raise_checkpoint_error_naming_the_file(tmp_path, why, text):
    path = tmp_path / "cat_maps.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CheckpointError) as info:
        load_cat_maps(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("content", [None, b"\xff\xfe\x00bad"])
def test_unreadable_cat_maps_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "cat_maps.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cat_maps.json"):
        load_cat_maps(path)


def test_save_refuses_invalid_maps(tmp_path):
    maps = default_cat_maps()
    maps["age"]["std"] = -1.0
    path = tmp_path / "cat_maps.json"
    with pytest.raises(CheckpointError, match="age"):
        save_cat_maps(maps, path)
    assert not path.exists()


def test_encode_with_invalid_maps_raises_checkpoint_error():
    maps = default_cat_maps()
    maps["version"] = 3
    with pytest.raises(CheckpointError, match="version"):
        encode_clinical_with_mask(FULL, maps)


# --- ACR TI-RADS -------------------------------------------------------------------------


def _case(composition, echogenicity, margins, calcifications):
    return {
        "composition": composition,
        "echogenicity": echogenicity,
        "margins": margins,
        "calcifications": calcifications,
    }


# (descriptors, points for composition/echogenicity/margins/foci, level)
WORKED = [
    (
        _case("solid", "marked hypoechogenicity", "spiculated", "microcalcifications"),
        (2, 3, 2, 3),
        "TR5",
    ),
    (_case("solid", "hypoechogenicity", "ill defined", "microcalcifications"), (2, 2, 0, 3), "TR5"),
    (_case("dense", "hypoechogenicity", "microlobulated", "non"), (2, 2, 2, 0), "TR4"),
    (
        _case("solid", "hypoechogenicity", "well defined", "macrocalcifications"),
        (2, 2, 0, 1),
        "TR4",
    ),
    (
        _case("predominantly solid", "hyperechogenicity", "macrolobulated", "non"),
        (1, 1, 2, 0),
        "TR4",
    ),
    (_case("solid", "isoechogenicity", "well defined smooth", "non"), (2, 1, 0, 0), "TR3"),
    (_case("predominantly cystic", "hyperechogenicity", "ill defined", "non"), (1, 1, 0, 0), "TR2"),
    (_case("predominantly solid", "isoechogenicity", "well defined", "non"), (1, 1, 0, 0), "TR2"),
    # The ACR chart adds no further points to spongiform (or cystic) nodules.
    (_case("spongiform", "isoechogenicity", "well defined", "non"), (0, 0, 0, 0), "TR1"),
    (
        _case("spongiform", "hypoechogenicity", "spiculated", "microcalcifications"),
        (0, 0, 0, 0),
        "TR1",
    ),
    (
        _case("cystic", "hyperechogenicity", "well defined", "macrocalcifications"),
        (0, 0, 0, 0),
        "TR1",
    ),
    # Raw DDTI spellings are normalised first.
    (
        _case("solid", "marked hypoechogenecity", "ill- defined", "microcalcification"),
        (2, 3, 0, 3),
        "TR5",
    ),
]


@pytest.mark.parametrize(("descriptors", "points", "level"), WORKED)
def test_acr_tirads_worked_examples(descriptors, points, level):
    result = acr_tirads(descriptors)
    expected = dict(
        zip(("composition", "echogenicity", "margins", "echogenic_foci"), points, strict=True)
    )
    assert result.points == {**expected, "shape": None}
    assert list(result.points) == list(TIRADS_FEATURES)
    assert result.total == sum(points)
    assert result.level == level
    assert result.missing == ("shape",)
    assert result.is_partial is False


@pytest.mark.parametrize(
    ("level", "fna", "follow_up"),
    [
        ("TR1", None, None),
        ("TR2", None, None),
        ("TR3", 2.5, 1.5),
        ("TR4", 1.5, 1.0),
        ("TR5", 1.0, 0.5),
    ],
)
def test_thresholds_per_level(level, fna, follow_up):
    descriptors = next(d for d, _, lvl in WORKED if lvl == level)
    result = acr_tirads(descriptors)
    assert (result.fna_threshold_cm, result.follow_up_threshold_cm) == (fna, follow_up)
    if fna is None:
        assert "no FNA" in result.recommendation
    else:
        assert (
            result.recommendation == f"FNA if >= {fna:.1f} cm; follow-up if >= {follow_up:.1f} cm"
        )


@pytest.mark.parametrize(
    ("level", "size_cm", "action"),
    [
        ("TR3", 2.5, "FNA"),
        ("TR3", 2.4, "follow-up"),
        ("TR3", 1.5, "follow-up"),
        ("TR3", 1.4, "neither"),
        ("TR4", 1.5, "FNA"),
        ("TR4", 1.0, "follow-up"),
        ("TR4", 0.9, "neither"),
        ("TR5", 1.0, "FNA"),
        ("TR5", 0.5, "follow-up"),
        ("TR5", 0.4, "neither"),
    ],
)
def test_recommendation_with_size_says_which_applies(level, size_cm, action):
    descriptors = next(d for d, _, lvl in WORKED if lvl == level)
    result = acr_tirads(descriptors, size_cm=size_cm)
    assert result.recommendation.endswith(f"at {size_cm:g} cm: {action}")


@pytest.mark.parametrize(
    ("descriptors", "total", "level", "missing"),
    [
        ({}, 0, "TR1", TIRADS_FEATURES),
        (
            {"composition": "predominantly cystic"},
            1,
            "TR1",
            ("echogenicity", "shape", "margins", "echogenic_foci"),
        ),
        (
            {"composition": "solid", "echogenicity": "hypo"},
            4,
            "TR4",
            ("shape", "margins", "echogenic_foci"),
        ),
        (
            {"calcifications": "microcalcification", "margins": "spiculated"},
            5,
            "TR4",
            ("composition", "echogenicity", "shape"),
        ),
    ],
)
def test_missing_features_make_a_partial_lower_bound(descriptors, total, level, missing):
    result = acr_tirads(descriptors)
    assert (result.total, result.level, result.missing) == (total, level, missing)
    assert result.is_partial is True
    assert all(result.points[f] is None for f in missing)
    assert "lower bound" in result.recommendation
    assert missing[-1] in result.recommendation or missing[0] in result.recommendation


def test_spongiform_with_missing_features_is_not_partial():
    result = acr_tirads({"composition": "spongiform appareance"})
    assert (result.level, result.is_partial) == ("TR1", False)
    assert result.missing == ("echogenicity", "shape", "margins", "echogenic_foci")


def test_tirads_result_is_frozen_and_json_ready():
    result = acr_tirads(WORKED[0][0], size_cm=1.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.level = "TR1"  # type: ignore[misc]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["level"] == "TR5" and data["total"] == 10
    assert data["missing"] == ["shape"]
    assert data["points"]["shape"] is None
    assert data["recommendation"] == result.recommendation


@pytest.mark.parametrize("size_cm", [0, -1.0, "2", float("nan"), float("inf"), True])
def test_bad_size_raises(size_cm):
    with pytest.raises(ClinicalValueError) as info:
        acr_tirads(WORKED[0][0], size_cm=size_cm)
    assert info.value.field == "size_cm"
    assert "centimetres" in str(info.value)


def test_acr_tirads_rejects_bad_descriptors():
    with pytest.raises(ClinicalValueError, match="echogenicity: got 'anechoic'"):
        acr_tirads({"composition": "cystic", "echogenicity": "anechoic"})


# --- DDTI files --------------------------------------------------------------------------


def test_docstring_examples_run():
    for module in (clinical, clinical.encoding, clinical.tirads, clinical.vocabulary):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(clinical).attempted > 0


def test_public_api_is_exported():
    for name in clinical.__all__:
        assert hasattr(clinical, name), name
    assert CATEGORICAL_FIELDS == FIELDS[:5]


def test_hand_written_ddti_xml_with_rare_spellings(tmp_path):
    xml = tmp_path / "7.xml"
    xml.write_text(
        "<case><number>7</number><age>40 </age><sex>u</sex>"
        "<composition>spongiform appareance</composition>"
        "<echogenicity>marked hypoechogenecity</echogenicity>"
        "<margins>ill- defined</margins><calcifications>microcalcification</calcifications>"
        "<tirads>4A</tirads><reportbacaf /><reporteco /></case>",
        encoding="utf-8",
    )
    raw, grade = read_case_values(xml)
    assert normalize_clinical(raw) == {
        "composition": "spongiform",
        "echogenicity": "marked hypoechogenicity",
        "margins": "ill defined",
        "calcifications": "microcalcifications",
        "sex": None,
        "age": 40.0,
    }
    assert normalize_tirads(grade) == "4a"


def test_every_value_in_the_ddti_sample_normalises(ddti_dir):
    xml_files = sorted(ddti_dir.glob("*.xml"))
    assert len(xml_files) > 0
    maps = default_cat_maps()
    present = dict.fromkeys(FIELDS, 0)
    for xml_path in xml_files:
        raw, grade = read_case_values(xml_path)
        values = normalize_clinical(raw)
        for field in FIELDS:
            text = (raw[field] or "").strip()
            # Only empty tags and "u" are missing: every other text maps to a value.
            assert (values[field] is None) == (text in ("", "u")), (xml_path.name, field, text)
            if values[field] is not None:
                present[field] += 1
                allowed = VOCABULARY.get(field)
                assert allowed is None or values[field] in allowed
        normalize_tirads(grade)
        vec, mask = encode_clinical_with_mask(raw, maps)
        assert vec.shape == (28,) and int(mask.sum()) == sum(v is not None for v in values.values())
        assert not math.isnan(float(vec.sum()))
        acr_tirads(raw)
    assert all(count > 0 for count in present.values()), present
