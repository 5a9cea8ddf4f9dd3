"""Property-based tests: parsers of user data raise only documented errors, never crash.

Hypothesis drives the descriptor normaliser and encoder, the DDTI XML/SVG reader and
the image decoder with arbitrary input. Each may accept the input or refuse it with
the ``ValueError`` subclass its docstring names (which names the field and the value);
anything else (a ``KeyError``, ``json`` or ``XML`` error, a PIL exception, NaN in an
encoding) is a bug. The HTTP form parser has its own in ``test_web_fuzz.py``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from thyrocam.clinical import (
    CATEGORICAL_FIELDS,
    FIELDS,
    VOCABULARY,
    clinical_dim,
    default_cat_maps,
    encode_clinical_with_mask,
    normalize_clinical,
    normalize_value,
)
from thyrocam.data import read_ddti
from thyrocam.errors import ClinicalValueError, ImageError
from thyrocam.imaging import load_image

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values a form, a CSV cell or an XML tag can carry.
cell_values = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([v for f in CATEGORICAL_FIELDS for v in VOCABULARY[f]]),
)


# -- descriptors ----------------------------------------------------------------------
@FUZZ
@given(field=st.sampled_from(FIELDS), value=cell_values)
def test_normalize_value_accepts_or_names_field_and_value(field: str, value: object) -> None:
    try:
        got = normalize_value(field, value)
    except ClinicalValueError as exc:
        assert exc.field == field
        assert exc.allowed
        assert field in str(exc)
        return
    if got is None:
        return
    if field == "age":
        assert isinstance(got, float) and math.isfinite(got)
    else:
        assert got in VOCABULARY[field]
    # Normalising is idempotent: a normalised value normalises to itself.
    assert normalize_value(field, got) == got


@FUZZ
@given(payload=st.dictionaries(st.sampled_from(FIELDS), cell_values, max_size=6))
def test_encoding_is_finite_and_the_mask_matches_what_is_present(payload: dict) -> None:
    cat_maps = default_cat_maps()
    try:
        normalised = normalize_clinical(payload)
    except ClinicalValueError as exc:
        assert exc.field in payload
        return
    vec, mask = encode_clinical_with_mask(normalised, cat_maps)
    assert vec.dtype == np.float32 and vec.shape == (clinical_dim(cat_maps),)
    assert np.isfinite(vec).all()
    assert set(np.unique(mask)) <= {0.0, 1.0}
    present = [f for f in FIELDS if normalised[f] is not None]
    assert int(mask.sum()) == len(present)


@FUZZ
@given(
    known=st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["", "solid", "F", "59"])),
    extra=st.dictionaries(
        st.text(max_size=12).filter(lambda k: k not in FIELDS), cell_values, max_size=3
    ),
)
def test_keys_outside_the_six_fields_are_ignored(known: dict, extra: dict) -> None:
    # Documented: a web form carries other fields, so unknown keys do not count.
    try:
        expected = normalize_clinical(known)
    except ClinicalValueError:
        return
    assert normalize_clinical({**extra, **known}) == expected


# -- DDTI XML and SVG ------------------------------------------------------------------
_TAGS = ("number", "age", "sex", "composition", "echogenicity", "margins", "calcifications")
_TAGS += ("tirads", "reportbacaf", "reporteco")

points = st.lists(
    st.fixed_dictionaries(
        {
            "x": st.one_of(st.integers(-50, 700), st.floats(allow_nan=True), st.text(max_size=3)),
            "y": st.one_of(st.integers(-50, 500), st.none()),
        }
    ),
    max_size=8,
)
svg_json = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda regions, cut: (
            str([{"points": p, "annotation": {}, "regionType": "freehand"} for p in regions])
            .replace("'", '"')
            .replace("None", "null")
            .replace("nan", "NaN")[: cut or None]
        ),
        st.lists(points, max_size=3),
        st.integers(0, 200),
    ),
)


@st.composite
def ddti_xml(draw) -> str:
    parts = ["<?xml version='1.0' encoding='utf-8'?>", "<case>"]
    for tag in _TAGS:
        if draw(st.booleans()):
            value = draw(st.one_of(st.text(max_size=20), st.sampled_from(["", "u", "4a", "7"])))
            parts.append(f"<{tag}>{escape(value)}</{tag}>")
    for _ in range(draw(st.integers(0, 3))):
        image = draw(st.one_of(st.integers(-2, 4).map(str), st.text(max_size=3)))
        parts.append(
            f"<mark><image>{escape(image)}</image><svg>{escape(draw(svg_json))}</svg></mark>"
        )
    parts.append("</case>")
    text = "".join(parts)
    # Also truncated files, as disks and downloads leave them.
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


@pytest.fixture(scope="module")
def tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (56, 36), (90, 90, 90)).save(buf, format="JPEG")
    return buf.getvalue()


@FUZZ
@given(xml=ddti_xml())
def test_ddti_reader_reports_problems_never_raises(
    tmp_path_factory: pytest.TempPathFactory, tiny_jpeg: bytes, xml: str
) -> None:
    folder = tmp_path_factory.mktemp("ddti")
    (folder / "7.xml").write_text(xml, encoding="utf-8")
    (folder / "7_1.jpg").write_bytes(tiny_jpeg)
    cases, problems = read_ddti(folder)
    assert all(isinstance(p, str) and p.startswith(("7.xml", "7_1.jpg")) for p in problems)
    assert len(cases) <= 1
    for case in cases:
        assert case.number == 7
        for f in FIELDS:
            value = case.clinical[f]
            assert value is None or (value in VOCABULARY[f] if f != "age" else value > 0)
        for view in case.views:
            for polygon in view.polygons:
                arr = np.asarray(polygon, dtype=float)
                assert arr.ndim == 2 and arr.shape[1] == 2 and np.isfinite(arr).all()
    if not cases:
        assert problems, "a skipped case must say why"


# -- image bytes -----------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")}


def _check_decoded_or_refused(data: bytes) -> None:
    try:
        img = load_image(data)
    except ImageError as exc:
        assert exc.field is not None and str(exc)
        return
    assert img.mode == "RGB" and img.width > 0 and img.height > 0


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_image_error(data: bytes) -> None:
    _check_decoded_or_refused(data)


@FUZZ
@given(
    fmt=st.sampled_from(sorted(VALID)),
    cut=st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_damaged_image_files_decode_or_raise_image_error(
    fmt: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(VALID[fmt])
    for pos, byte in flips:
        data[pos % len(data)] = byte
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    assume(data)
    _check_decoded_or_refused(data)


def test_a_path_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not an image", encoding="utf-8")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "notes.jpg" in str(info.value)
