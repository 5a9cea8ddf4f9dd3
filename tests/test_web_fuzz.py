"""Property tests of the HTTP form parser: any form gets a 200 or a documented 4xx, never a 500.

Hypothesis draws whole ``/predict`` and ``/explain`` forms (descriptors, ``alpha``,
``method``, ``target``, ``roi``, ``filename``, flags, file bytes) from a mix of
valid values, near misses and arbitrary text; the tiny 64 px model keeps each
request to milliseconds, so a few hundred forms run in seconds.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from thyrocam.clinical import FIELDS, VOCABULARY
from thyrocam.explain import METHOD_NAMES
from thyrocam.web import create_app
from thyrocam.web.form import TARGET_CHOICES

pytestmark = pytest.mark.usefixtures("load_predictors_once")

#: What the API documents for a bad request (see /openapi.json); 500 is never one.
DOCUMENTED = {400, 404, 413, 415, 422}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 90).save(buf, format="PNG")
    return buf.getvalue()


VALID_PNG = _png((64, 48))
# Text multipart can carry: no lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)


def _one_of_or_text(values) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(list(values)), TEXT)


def _number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**6), 10**6).map(str),
        TEXT,
    )


FLAGS = st.sampled_from(["", "0", "1", "true", "off", "yes", "maybe", " 1 ", "ON"])
DESCRIPTOR = {
    f: st.one_of(
        _one_of_or_text(["", *VOCABULARY[f]]),
        st.sampled_from(VOCABULARY[f]).map(lambda v: f"  {v.upper()} "),
    )
    for f in FIELDS[:-1]
}
ROI = st.one_of(
    st.lists(st.floats(-20, 90, allow_nan=False), min_size=4, max_size=4).map(
        lambda v: ",".join(f"{x:.1f}" for x in v)
    ),
    st.lists(_number_text(), min_size=0, max_size=6).map(",".join),
    TEXT,
)
FILE_BYTES = st.one_of(
    st.just(VALID_PNG),
    st.just(_png((40, 40), "L")),
    st.integers(0, len(VALID_PNG)).map(lambda n: VALID_PNG[:n]),
    st.binary(max_size=512),
)


@st.composite
def forms(draw, *, explain: bool) -> dict:
    """A multipart form: each field present or absent, valid or not."""
    form: dict = {}
    optional = {
        "use_clinical": FLAGS,
        "store": FLAGS,
        "roi": ROI,
        "age": _number_text(),
        **DESCRIPTOR,
    }
    if explain:
        optional |= {
            "alpha": _number_text(),
            "method": _one_of_or_text(METHOD_NAMES),
            "target": _one_of_or_text([*TARGET_CHOICES, "calcifications:non", "Auto"]),
            "attributions": FLAGS,
        }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            form[name] = draw(strategy)
    # Mostly one file, so most forms get past the image and exercise the other fields.
    source = draw(st.sampled_from(["file"] * 6 + ["filename", "both", "neither"]))
    if source in ("file", "both"):
        name = draw(st.sampled_from(["frame.png", "x", "", "../../etc/passwd"]))
        form["file"] = (io.BytesIO(draw(FILE_BYTES)), name)
    if source in ("filename", "both"):
        form["filename"] = draw(TEXT)
    return form


@pytest.fixture
def client(tiny_run: Path, tmp_path: Path):
    app = create_app(
        {"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(tmp_path / "up")}
    )
    return app.test_client()


def _check(response) -> None:
    assert response.is_json, response.get_data(as_text=True)[:200]
    body = response.get_json()
    if response.status_code == 200:
        assert 0.0 <= body["probability"] <= 1.0
        return
    assert response.status_code in DOCUMENTED, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_any_form_gets_200_or_a_documented_error(client, path):
    @FUZZ
    @given(form=forms(explain=path == "/explain"))
    def run(form: dict) -> None:
        _check(client.post(path, data=form, content_type="multipart/form-data"))

    run()


@FUZZ
@given(body=st.binary(max_size=600), boundary=st.sampled_from(["xyz", "", "a" * 80]))
def test_any_raw_body_gets_a_documented_error(client, body: bytes, boundary: str):
    response = client.post(
        "/explain",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    _check(response)
    assert response.status_code != 200 or b"Content-Disposition" in body
