"""The HTTP API through Flask's test client: every endpoint, every error code."""

from __future__ import annotations

import base64
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thyrocam.clinical import FIELDS, VOCABULARY
from thyrocam.data import read_ddti
from thyrocam.errors import ImageError, InputError, ThyrocamError
from thyrocam.explain import CAM_METHODS, METHODS
from thyrocam.explain.overlay import colorize_cam
from thyrocam.web import DEFAULTS, create_app, get_state
from thyrocam.web.form import TARGET_CHOICES
from thyrocam.web.i18n import STRINGS, VOCAB_LABELS

# Each checkpoint is loaded once per session (see conftest.load_predictors_once).
pytestmark = pytest.mark.usefixtures("load_predictors_once")


@pytest.fixture
def make_app(tiny_run: Path, synth_dir: Path, tmp_path: Path):
    def make(**overrides):
        config = {
            "TESTING": True,
            "CHECKPOINT": str(tiny_run),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "EXAMPLES": str(synth_dir),
        }
        config.update(overrides)
        return create_app(config)

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def frames(synth_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(synth_dir.glob("*_1.jpg"))[:4]]


def upload(data: bytes, name: str = "frame.jpg", **fields) -> dict:
    return {"file": (io.BytesIO(data), name), **fields}


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))


# -- /health --------------------------------------------------------------------------------
def test_health_with_model(client, tiny_run):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["model_loaded"] is True
    assert body["checkpoint"] == str(tiny_run) and body["reason"] is None
    assert body["model"]["preprocessing"]["size"] == 64
    assert body["examples"] > 0
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"])


@pytest.mark.parametrize(
    ("checkpoint", "reason"),
    [(None, "no checkpoint configured"), ("broken", "checkpoint")],
)
def test_health_without_model_says_why(make_app, tmp_path, checkpoint, reason):
    if checkpoint == "broken":
        broken = tmp_path / "broken_run"
        broken.mkdir()
        (broken / "model.safetensors").write_bytes(b"not weights")
        checkpoint = str(broken)
    client = make_app(CHECKPOINT=checkpoint).test_client()
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "no_model" and body["model_loaded"] is False
    assert reason in body["reason"]


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_model_endpoints_answer_503_without_model(make_app, frames, path):
    client = make_app(CHECKPOINT=None).test_client()
    response = client.post(path, data=upload(frames[0]))
    assert response.status_code == 503
    assert response.get_json()["code"] == "no_model"
    assert "no checkpoint configured" in response.get_json()["error"]


# -- configuration --------------------------------------------------------------------------
def test_config_from_environment_then_test_overrides(monkeypatch, make_app, tmp_path):
    monkeypatch.setenv("THYROCAM_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("THYROCAM_MAX_PIXELS", "12345")
    monkeypatch.setenv("THYROCAM_UPLOAD_DIR", str(tmp_path / "from_env"))
    app = create_app({"TESTING": True})
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    assert app.config["MAX_PIXELS"] == 12345
    assert get_state(app).upload_dir == (tmp_path / "from_env").resolve()
    assert get_state(app).predictor is None
    # Test overrides come last.
    app = make_app(MAX_PIXELS=777)
    assert app.config["MAX_PIXELS"] == 777
    assert get_state(app).predictor.max_pixels == 777


def test_defaults_apply_without_environment(monkeypatch, tmp_path):
    for var in ("THYROCAM_CHECKPOINT", "THYROCAM_MAX_UPLOAD_MB", "THYROCAM_UPLOAD_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    app = create_app()
    assert app.config["MAX_CONTENT_LENGTH"] == DEFAULTS["MAX_CONTENT_LENGTH"]
    assert get_state(app).upload_dir == (tmp_path / "uploads").resolve()
    assert not (tmp_path / "uploads").exists()  # created only when something is stored


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("THYROCAM_MAX_UPLOAD_MB", "lots"),
        ("THYROCAM_MAX_UPLOAD_MB", "-1"),
        ("THYROCAM_MAX_UPLOAD_MB", "0"),
        ("THYROCAM_MAX_PIXELS", "1e6"),
        ("THYROCAM_MAX_PIXELS", "0"),
    ],
)
def test_bad_environment_values_name_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(InputError, match=rf"{var}: got '{re.escape(value)}'; allowed"):
        create_app({"TESTING": True})


# -- /openapi.json --------------------------------------------------------------------------
def _resolve(spec: dict, ref: str) -> dict:
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document_is_valid_and_lists_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/")
        assert isinstance(_resolve(spec, ref), dict), ref
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in {"get", "post", "put", "delete", "patch"}
            assert op["responses"] and all(re.fullmatch(r"\d{3}", c) for c in op["responses"])
            for param in re.findall(r"{(\w+)}", path):
                assert any(p["name"] == param and p["in"] == "path" for p in op["parameters"])
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert routes == documented
    for path in ("/predict", "/explain"):
        codes = set(spec["paths"][path]["post"]["responses"])
        assert {"200", "400", "404", "413", "415", "422", "503"} <= codes


# -- /predict -------------------------------------------------------------------------------
def test_predict_returns_probability_label_tirads_and_descriptors(client, frames):
    fields = {
        "composition": "Solid",
        "echogenicity": "hypo",
        "margins": "spiculated",
        "calcifications": "microcalcification",
        "sex": "F",
        "age": "59",
    }
    response = client.post("/predict", data=upload(frames[0], use_clinical="1", **fields))
    assert response.status_code == 200
    body = response.get_json()
    assert 0.0 <= body["probability"] <= 1.0
    expected = "malignant" if body["probability"] >= body["threshold"] else "benign"
    assert body["label"] == expected
    assert body["clinical"] == {
        "composition": "solid",
        "echogenicity": "hypoechogenicity",
        "margins": "spiculated",
        "calcifications": "microcalcifications",
        "sex": "F",
        "age": 59.0,
    }
    assert body["missing"] == []
    # 2 (solid) + 2 (hypo) + 2 (spiculated) + 3 (punctate) = 9 -> TR5
    assert body["tirads"]["total"] == 9 and body["tirads"]["level"] == "TR5"
    assert body["filename"] is None


def test_descriptors_are_ignored_without_use_clinical(client, frames):
    data = {"composition": "solid", "age": "59"}
    off = client.post("/predict", data=upload(frames[0], **data)).get_json()
    on = client.post("/predict", data=upload(frames[0], use_clinical="1", **data)).get_json()
    assert off["missing"] == list(FIELDS)
    assert on["clinical"]["composition"] == "solid"
    assert on["missing"] == ["echogenicity", "margins", "calcifications", "sex"]
    assert off["logit"] != on["logit"]
    # Ignored really means ignored: an invalid value is not even validated.
    bad = client.post("/predict", data=upload(frames[0], composition="sollid"))
    assert bad.status_code == 200


def test_predict_with_roi_reports_it(client, frames):
    body = client.post("/predict", data=upload(frames[0], roi="100,50,300,250")).get_json()
    assert body["roi"] == [100.0, 50.0, 300.0, 250.0]


def test_roi_run_without_box_warns(make_app, tiny_roi_run, frames, monkeypatch):
    from thyrocam.predictor import Predictor

    # The fixture run also has an outline head, which finds the box itself; the
    # warning is for a roi run that cannot (no outline head), so it is hidden here.
    monkeypatch.setattr(Predictor, "heads", property(lambda self: ("malignancy",)))
    client = make_app(CHECKPOINT=str(tiny_roi_run)).test_client()
    body = client.post("/predict", data=upload(frames[0])).get_json()
    assert any("no nodule box" in w for w in body["warnings"])
    boxed = client.post("/predict", data=upload(frames[0], roi="100,50,300,250")).get_json()
    assert boxed["warnings"] == []


# -- /explain -------------------------------------------------------------------------------
def _reblend(body: dict, alpha: float) -> np.ndarray:
    """What the page does: the grid upsampled over the box, normalised, jet, blended."""
    cam = body["cam"]
    grid = np.asarray(cam["grid"], dtype=np.float64)
    gh, gw = grid.shape

    def sample(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        u = np.clip(fx * gw - 0.5, 0, gw - 1)
        v = np.clip(fy * gh - 0.5, 0, gh - 1)
        c0, r0 = np.floor(u).astype(int), np.floor(v).astype(int)
        c1, r1 = np.minimum(c0 + 1, gw - 1), np.minimum(r0 + 1, gh - 1)
        wx, wy = (u - c0)[None, :], (v - r0)[:, None]
        top = grid[r0][:, c0] * (1 - wx) + grid[r0][:, c1] * wx
        bottom = grid[r1][:, c0] * (1 - wx) + grid[r1][:, c1] * wx
        return top * (1 - wy) + bottom * wy

    centres = (np.arange(cam["input_size"]) + 0.5) / cam["input_size"]
    over_input = sample(centres, centres)
    lo, hi = over_input.min(), over_input.max()
    width, height = cam["frame_size"]
    x0, y0, x1, y1 = cam["box"]
    fx = (np.arange(width) + 0.5 - x0) / (x1 - x0)
    fy = (np.arange(height) + 0.5 - y0) / (y1 - y0)
    inside = ((fy >= 0) & (fy <= 1))[:, None] & ((fx >= 0) & (fx <= 1))[None, :]
    values = np.clip((sample(fx, fy) - lo) / (hi - lo), 0, 1) if hi > lo else 0.0
    values = np.where(inside, values, 0.0)
    base = np.asarray(decode_data_url(body["frame_png_base64"]).convert("RGB"), dtype=np.float64)
    heat = colorize_cam(values.astype(np.float32)).astype(np.float64)
    return (1 - alpha) * base + alpha * heat


def test_explain_answers_overlay_grid_and_prediction(client, frames):
    response = client.post("/explain", data=upload(frames[1], alpha="0.5"))
    assert response.status_code == 200
    body = response.get_json()
    overlay = decode_data_url(body["overlay_png_base64"])
    frame = decode_data_url(body["frame_png_base64"])
    assert overlay.size == frame.size == tuple(body["cam"]["frame_size"]) == (560, 360)
    assert body["used_class_idx"] == 0
    assert body["target"] == "malignant" and body["method"] == "gradcam"
    assert body["alpha"] == 0.5
    for key in ("probability", "label", "threshold", "tirads", "clinical", "missing", "warnings"):
        assert key in body
    grid = np.asarray(body["cam"]["grid"])
    assert grid.ndim == 2 and grid.shape[0] <= 64
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert len(body["cam"]["box"]) == 4
    assert "attributions" not in body
    # The page's re-blend from the grid reproduces the server's overlay.
    diff = np.abs(_reblend(body, 0.5) - np.asarray(overlay.convert("RGB"), dtype=np.float64))
    assert diff.mean() < 1.0


def test_explain_probability_matches_predict(client, frames):
    fields = {"use_clinical": "1", "composition": "solid", "age": "44"}
    explained = client.post("/explain", data=upload(frames[2], **fields)).get_json()
    predicted = client.post("/predict", data=upload(frames[2], **fields)).get_json()
    assert explained["probability"] == pytest.approx(predicted["probability"], abs=1e-6)
    assert explained["clinical"] == predicted["clinical"]


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_explain_every_method(client, frames, method):
    body = client.post("/explain", data=upload(frames[0], method=method)).get_json()
    assert body["method"] == method
    assert 1 <= len(body["cam"]["grid"]) <= 64
    overlay = np.asarray(decode_data_url(body["overlay_png_base64"]).convert("RGB"), dtype=float)
    assert np.abs(_reblend(body, body["alpha"]) - overlay).mean() < 2.5


def test_explain_benign_target(client, frames):
    malignant = client.post("/explain", data=upload(frames[0])).get_json()
    benign = client.post("/explain", data=upload(frames[0], target="benign")).get_json()
    assert benign["target"] == "benign" and benign["used_class_idx"] == 0
    assert benign["probability"] == malignant["probability"]
    assert benign["cam"]["grid"] != malignant["cam"]["grid"]


def test_explain_with_roi_places_the_map_on_the_whole_frame(client, frames):
    body = client.post("/explain", data=upload(frames[0], roi="200,100,300,200")).get_json()
    assert body["cam"]["frame_size"] == [560, 360]
    x0, y0, x1, y1 = body["cam"]["box"]
    assert x0 < 200 and x1 > 300 and (x1 - x0) < 560  # a crop around the box, not the frame
    assert decode_data_url(body["overlay_png_base64"]).size == (560, 360)


DESCRIPTORS = {
    "composition": "solid",
    "echogenicity": "hypoechogenicity",
    "margins": "spiculated",
    "sex": "F",
    "age": "61",
}


def test_explain_answers_the_predictors_shapley_values_with_attributions_1(app, frames):
    fields = {"use_clinical": "1", "attributions": "1", **DESCRIPTORS}
    body = app.test_client().post("/explain", data=upload(frames[1], **fields)).get_json()
    assert sorted(body["attributions"]) == sorted(FIELDS)
    predictor = get_state(app).predictor
    exp = predictor.explain(frames[1], DESCRIPTORS, attributions=True)
    assert body["attributions"] == pytest.approx(exp.attributions, abs=1e-9)
    assert body["attributions"]["calcifications"] == 0.0  # not recorded: exactly 0
    # Complete: they add up to the logit minus the logit with every descriptor missing.
    none = predictor.predict(frames[1], None).logit
    assert sum(body["attributions"].values()) == pytest.approx(body["logit"] - none, abs=1e-4)
    # Asked for, but no descriptors used: all six are 0.
    off = app.test_client().post("/explain", data=upload(frames[1], attributions="1"))
    assert off.get_json()["attributions"] == dict.fromkeys(FIELDS, 0.0)


@pytest.mark.parametrize(("threshold", "label"), [(1.0, "benign"), (0.0, "malignant")])
def test_target_auto_explains_the_predicted_class(app, frames, threshold, label):
    # The threshold decides the label, so both calls are reachable with any model.
    get_state(app).predictor.threshold = threshold
    client = app.test_client()
    auto = client.post("/explain", data=upload(frames[2], target="auto")).get_json()
    assert auto["label"] == label and auto["target"] == label
    explicit = client.post("/explain", data=upload(frames[2], target=label)).get_json()
    assert auto["cam"] == explicit["cam"]
    assert auto["overlay_png_base64"] == explicit["overlay_png_base64"]
    # Without `target`, HTTP keeps the seed's default: evidence for malignant.
    default = client.post("/explain", data=upload(frames[2])).get_json()
    assert default["target"] == "malignant"


def test_concurrent_explains_equal_sequential(app, frames):
    client = app.test_client()
    jobs = [(i % len(frames), m) for i, m in enumerate(["gradcam", "gradcam++"] * 4)]

    def call(job):
        index, method = job
        return (
            app.test_client().post("/explain", data=upload(frames[index], method=method)).get_json()
        )

    sequential = {
        job: client.post("/explain", data=upload(frames[job[0]], method=job[1])).get_json()
        for job in set(jobs)
    }
    results: list[tuple] = []
    errors: list[BaseException] = []

    def worker(job):
        try:
            results.append((job, call(job)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == len(threads)
    for job, body in results:
        assert body["cam"] == sequential[job]["cam"]
        assert body["probability"] == sequential[job]["probability"]
        assert body["overlay_png_base64"] == sequential[job]["overlay_png_base64"]


# -- bad requests ---------------------------------------------------------------------------
def _png(mode: str = "RGB", size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


BAD_UPLOADS = [
    ("empty file", b""),
    ("text", b"hello, this is not an image"),
    ("html", b"<html><body>x</body></html>"),
    ("png signature only", b"\x89PNG\r\n\x1a\n"),
    ("truncated png", _png()[:60]),
    ("jpeg header only", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("pdf", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"),
]


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize(("what", "data"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_undecodable_uploads_get_415(client, path, what, data):
    response = client.post(path, data=upload(data, "x.png"))
    assert response.status_code == 415, what
    body = response.get_json()
    assert body["code"] == "invalid_image"
    assert body["error"].startswith("image:")


def test_truncated_jpeg_gets_415(client, frames):
    response = client.post("/predict", data=upload(frames[0][: len(frames[0]) // 3]))
    assert response.status_code == 415
    assert response.get_json()["code"] == "invalid_image"


BAD_DESCRIPTORS = [
    ("composition", "sollid"),
    ("echogenicity", "bright"),
    ("margins", "wavy"),
    ("calcifications", "yes"),
    ("sex", "X"),
    ("age", "abc"),
    ("age", "-3"),
    ("age", "0"),
    ("age", "500"),
    ("age", "1e3"),
    ("age", "inf"),
]


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize(("field", "value"), BAD_DESCRIPTORS)
def test_bad_descriptor_values_get_422(client, frames, path, field, value):
    response = client.post(path, data=upload(frames[0], use_clinical="1", **{field: value}))
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "invalid_descriptor" and body["field"] == field
    assert body["error"].startswith(f"{field}: got {value!r}; allowed:")


MALFORMED = [
    ("/explain", {"alpha": "abc"}, "alpha"),
    ("/explain", {"alpha": "-0.1"}, "alpha"),
    ("/explain", {"alpha": "1.5"}, "alpha"),
    ("/explain", {"alpha": "nan"}, "alpha"),
    ("/explain", {"method": "gradcam3"}, "method"),
    ("/explain", {"target": "both"}, "target"),
    ("/explain", {"target": "automatic"}, "target"),
    ("/explain", {"attributions": "2"}, "attributions"),
    ("/explain", {"roi": "1,2,3"}, "roi"),
    ("/predict", {"roi": "a,b,c,d"}, "roi"),
    ("/predict", {"roi": "300,200,100,50"}, "roi"),
    ("/predict", {"roi": "1000,1000,2000,2000"}, "roi"),
    ("/predict", {"use_clinical": "maybe"}, "use_clinical"),
    ("/predict", {"store": "2"}, "store"),
]


@pytest.mark.parametrize(("path", "fields", "field"), MALFORMED)
def test_malformed_fields_get_400(client, frames, path, fields, field):
    response = client.post(path, data=upload(frames[0], **fields))
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_input" and body["field"] == field
    assert body["error"].startswith(f"{field}: got")


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize(
    "data",
    [{}, {"use_clinical": "1"}, {"file": b""}],
    ids=["nothing", "fields only", "empty unnamed part"],
)
def test_neither_file_nor_filename_gets_400(client, path, data):
    # A browser form with no file chosen sends an empty part with an empty name.
    data = {k: (io.BytesIO(v), "") if k == "file" else v for k, v in data.items()}
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert response.get_json()["code"] == "missing_image"


def test_both_file_and_filename_get_400(client, frames):
    response = client.post("/predict", data=upload(frames[0], filename="abc.png"))
    assert response.status_code == 400
    assert response.get_json()["code"] == "missing_image"


def test_unknown_filename_gets_404(client):
    response = client.post("/explain", data={"filename": "0123456789abcdef.png"})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "filename: got '0123456789abcdef.png'; allowed: a file in the upload folder",
        "code": "unknown_filename",
        "field": "filename",
    }


def test_request_too_large_gets_413_json(make_app, frames):
    client = make_app(MAX_CONTENT_LENGTH=4096).test_client()
    response = client.post("/predict", data=upload(frames[0]))
    assert response.status_code == 413
    body = response.get_json()
    assert body["code"] == "request_too_large"
    assert re.fullmatch(r"request: got \d+ bytes; allowed: at most 4096 bytes .*", body["error"])


def test_too_many_pixels_gets_413_json(make_app, frames):
    client = make_app(MAX_PIXELS=560 * 360 - 1).test_client()
    response = client.post("/explain", data=upload(frames[0]))
    assert response.status_code == 413
    body = response.get_json()
    assert body["code"] == "image_too_large" and "560x360" in body["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/predict", 405, "method_not_allowed"),
        ("get", "/explain", 405, "method_not_allowed"),
        ("post", "/health", 405, "method_not_allowed"),
        ("delete", "/", 405, "method_not_allowed"),
        ("get", "/nowhere", 404, "not_found"),
        ("get", "/examples/999/image", 404, "unknown_example"),
        ("get", "/examples/-1/image", 404, "not_found"),
        ("get", "/static/../web/__init__.py", 404, "not_found"),
    ],
)
def test_wrong_routes_answer_json(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["code"] == code
    if status == 405:
        assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]


def test_unexpected_errors_answer_500_json_without_traceback(make_app, frames, monkeypatch):
    app = make_app(TESTING=False)
    predictor = get_state(app).predictor

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(predictor, "predict", boom)
    response = app.test_client().post("/predict", data=upload(frames[0]))
    assert response.status_code == 500
    body = response.get_json()
    assert body["code"] == "internal_error"
    assert "secret" not in body["error"] and "Traceback" not in response.get_data(as_text=True)


class _TeapotError(InputError):
    """A class the web layer has never heard of, with its own status."""

    code = "teapot"
    http_status = 418


class _OddImageError(ImageError):
    """A subclass that says nothing: it answers like its parent."""

    code = "odd_image"


def _error_classes() -> list[type[ThyrocamError]]:
    import thyrocam.errors
    import thyrocam.web.errors

    found = {
        obj
        for module in (thyrocam.errors, thyrocam.web.errors)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ThyrocamError)
    }
    return sorted(found | {_TeapotError, _OddImageError}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_each_error_class_answers_its_own_status(make_app, frames, monkeypatch, cls):
    app = make_app(TESTING=False)

    def fail(*args, **kwargs):
        raise cls.__new__(cls)  # no __init__: only the class decides the answer

    monkeypatch.setattr(get_state(app).predictor, "predict", fail)
    response = app.test_client().post("/predict", data=upload(frames[0]))
    assert response.status_code == cls.http_status
    assert response.get_json()["code"] == cls.code
    expected = {"ThyrocamError": 500, "InputError": 400, "ClinicalValueError": 422}
    expected |= {"ImageError": 415, "ImageTooLargeError": 413, "_OddImageError": 415}
    expected |= {"UnknownFileError": 404, "ModelUnavailableError": 503, "_TeapotError": 418}
    if cls.__name__ in expected:
        assert cls.http_status == expected[cls.__name__]


# -- /examples ------------------------------------------------------------------------------
def test_examples_list_and_images(client, synth_dir):
    listed = client.get("/examples").get_json()
    assert 0 < len(listed) <= 8
    cases = {c.number: c for c in read_ddti(synth_dir)[0]}
    labels = {ex["label"] for ex in listed}
    assert labels == {"benign", "malignant"}  # both classes offered
    for ex in listed:
        case = cases[ex["case"]]
        view = next(v for v in case.views if v.index == ex["view"])
        assert ex["roi"] == pytest.approx(list(view.nodule_box), abs=0.05)
        assert ex["clinical"] == case.clinical
        with client.get(ex["image_url"]) as image:
            assert image.status_code == 200
            assert image.data == view.image_path.read_bytes()
            assert image.mimetype == "image/jpeg"


def test_example_images_are_named_by_case_number(client):
    listed = client.get("/examples").get_json()
    cases = [ex["case"] for ex in listed]
    for ex in listed:
        assert ex["image_url"] == f"/examples/{ex['case']}/image"
    # A list position that is not an offered case number is not an example.
    position = next(i for i in range(len(listed) + 1) if i not in cases)
    response = client.get(f"/examples/{position}/image")
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == "unknown_example" and body["field"] == "case"
    assert body["error"].startswith(f"case: got {position}; allowed: an example case number")


def test_no_examples_configured_gives_empty_list(make_app, tmp_path):
    assert make_app(EXAMPLES=None).test_client().get("/examples").get_json() == []
    missing = make_app(EXAMPLES=str(tmp_path / "nowhere")).test_client()
    assert missing.get("/examples").get_json() == []
    assert missing.get("/examples/0/image").status_code == 404


# -- the page -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "query", "lang"),
    [
        ({"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}, "", "es"),
        ({"Accept-Language": "en-GB,en;q=0.9"}, "", "en"),
        ({"Accept-Language": "fr-FR"}, "", "en"),
        ({"Accept-Language": "es"}, "?lang=en", "en"),
        ({"Accept-Language": "en"}, "?lang=es", "es"),
    ],
)
def test_page_language(client, headers, query, lang):
    response = client.get("/" + query, headers=headers)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html
    assert STRINGS[lang]["explain"] in html
    assert STRINGS[lang]["disclaimer"] in html
    other = "en" if lang == "es" else "es"
    assert f">{STRINGS[other]['predict']}<" not in html


def test_language_switch_is_remembered_in_a_cookie(client):
    first = client.get("/?lang=es", headers={"Accept-Language": "en"})
    assert "thyrocam_lang=es" in first.headers["Set-Cookie"]
    again = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Explicar predicción (Grad-CAM)" in again
    assert "solo para investigación" in again.lower()


def test_page_has_every_descriptor_and_no_external_assets(client):
    html = client.get("/?lang=en").get_data(as_text=True)
    for field in FIELDS:
        assert f'id="f-{field}"' in html
    for field, values in VOCABULARY.items():
        for value in values:
            assert f'<option value="{value}" data-vocab="{field}">' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for asset in re.findall(r"""(?:src|href)="(/static/[^"]+)""", html):
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            # An SVG's namespace is an identifier, not something fetched.
            text = response.get_data(as_text=True).replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, asset
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp


def test_page_choices_come_from_the_package(client):
    html = client.get("/?lang=en").get_data(as_text=True)
    methods = re.search(r'<select id="method">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="([^"]+)">([^<]+)<', methods) == [
        (m.name, m.label) for m in METHODS.values()
    ]
    targets = re.search(r'<select id="target">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="([^"]+)"', targets) == list(TARGET_CHOICES)
    assert TARGET_CHOICES[0] == "auto"  # the page explains the predicted class by default
    assert f">{STRINGS['en']['target_auto']}<" in targets


def test_translations_are_complete():
    assert STRINGS["es"].keys() == STRINGS["en"].keys()
    for lang in ("es", "en"):
        for field, values in VOCABULARY.items():
            assert set(VOCAB_LABELS[lang][field]) == set(values)
        for field in FIELDS:
            assert STRINGS[lang][f"f_{field}"]


# -- thyrocam serve -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [("port", 70000), ("port", -1), ("workers", 0), ("threads", 0), ("threads", True)],
)
def test_serve_rejects_bad_numbers_before_starting(option, value):
    from thyrocam.web.serve import serve

    with pytest.raises(InputError, match=rf"--{option}: got {value!r}; allowed: a whole number"):
        serve(**{option: value})


@pytest.mark.parametrize(("host", "bind"), [("127.0.0.1", "127.0.0.1:5001"), ("::1", "[::1]:5001")])
def test_gunicorn_options(host, bind):
    from thyrocam.web.serve import gunicorn_options

    options = gunicorn_options(host=host, port=5001, workers=2, threads=8)
    assert options["bind"] == bind
    assert (options["workers"], options["threads"], options["worker_class"]) == (2, 8, "gthread")


def test_examples_from_a_relative_folder_are_served(tmp_path, monkeypatch, synth_dir) -> None:
    """A relative THYROCAM_EXAMPLES (as `make demo` passes) must not resolve against the package."""
    import shutil

    from thyrocam.web import create_app

    shutil.copytree(synth_dir, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    app = create_app({"TESTING": True, "CHECKPOINT": None, "EXAMPLES": "examples"})
    client = app.test_client()
    listed = client.get("/examples").get_json()
    assert listed
    with client.get(listed[0]["image_url"]) as image:
        assert image.status_code == 200 and image.data[:3] == b"\xff\xd8\xff"
