"""HTTP side of the heads: roi/roi_source and estimated descriptors in the answers,
descriptor targets (and the 422 for unknown ones), the page's target choices."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from thyrocam.clinical import default_cat_maps
from thyrocam.model import DESCRIPTOR_FIELDS, ThyroidNet
from thyrocam.web import create_app, get_state

ALL_HEADS = ("malignancy", "outline", "descriptors")
CAT_MAPS = default_cat_maps()
CLASSES = {f: len(CAT_MAPS["fields"][f]) for f in DESCRIPTOR_FIELDS}
NODULE = (300, 120, 400, 200)
BOX_TOLERANCE = 560 / 128 + 1


class _DarkIsNodule(ThyroidNet):
    """A stand-in whose outline head calls dark tissue nodule (a known answer)."""

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        out["outline"] = (-1.0 - img.mean(dim=1, keepdim=True)) * 20.0
        return out


def _frame_png(*, nodule: bool = True) -> bytes:
    img = Image.new("RGB", (560, 360), (150, 150, 150))
    if nodule:
        x0, y0, x1, y1 = NODULE
        ImageDraw.Draw(img).ellipse([x0, y0, x1 - 1, y1 - 1], fill=(25, 25, 25))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _save(tmp: Path, name: str, *, heads: tuple[str, ...]) -> Path:
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    torch.manual_seed(4)
    classes = CLASSES if "descriptors" in heads else None
    net = ThyroidNet(arch="resnet18", clinical_dim=28, heads=heads, descriptor_classes=classes)
    run = save_run(
        tmp / name,
        model=net,
        cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="roi", size=64),
        threshold=0.5,
        extra_meta={"outline_input": {"mode": "letterbox", "size": 128, "margin": 0.5}},
    )
    if heads == ("malignancy",):
        # As written before the heads existed: meta.json does not mention them.
        meta = json.loads((run / "meta.json").read_text())
        for key in ("heads", "descriptor_classes", "outline_input"):
            meta.pop(key, None)
        (run / "meta.json").write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("heads_runs")
    return {
        "heads": _save(tmp, "heads", heads=ALL_HEADS),
        "old": _save(tmp, "old", heads=("malignancy",)),
    }


def _client(run: Path, tmp_path: Path, *, dark_rule: bool = False):
    app = create_app({"CHECKPOINT": str(run), "UPLOAD_DIR": str(tmp_path / "uploads")})
    state = get_state(app)
    assert state.predictor is not None, state.reason
    if dark_rule:
        # The saved weights, in the stand-in whose outline head has a known answer.
        loaded = state.predictor.model
        net = _DarkIsNodule(
            arch="resnet18", clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES
        )
        net.load_state_dict(loaded.state_dict())
        state.predictor.model = net.eval()
    return app.test_client()


def _post(client, path: str, png: bytes, **fields):
    return client.post(path, data={"file": (io.BytesIO(png), "frame.png"), **fields})


def test_predict_answers_the_automatic_box_and_the_estimates(runs, tmp_path: Path) -> None:
    client = _client(runs["heads"], tmp_path, dark_rule=True)
    body = _post(client, "/predict", _frame_png(), use_clinical="1", composition="solid").get_json()
    assert body["roi_source"] == "auto"
    assert max(abs(a - b) for a, b in zip(body["roi"], NODULE, strict=True)) <= BOX_TOLERANCE
    assert set(body["estimated"]) == set(DESCRIPTOR_FIELDS)
    for field, guess in body["estimated"].items():
        assert guess["value"] in CAT_MAPS["fields"][field] and 0 < guess["probability"] <= 1
    assert body["tirads_estimated"]["from_image"] == ["echogenicity", "margins", "calcifications"]
    nothing = _post(client, "/predict", _frame_png(nodule=False)).get_json()
    assert nothing["roi"] is None and nothing["roi_source"] == "frame"
    assert any("found no nodule" in w for w in nothing["warnings"])
    given = _post(client, "/predict", _frame_png(), roi="10,10,100,100").get_json()
    assert given["roi"] == [10.0, 10.0, 100.0, 100.0] and given["roi_source"] == "user"


def test_explain_a_descriptor_target(runs, tmp_path: Path) -> None:
    client = _client(runs["heads"], tmp_path)
    response = _post(
        client, "/explain", _frame_png(), roi="300,120,400,200",
        target="calcifications:microcalcifications",
    )  # fmt: skip
    assert response.status_code == 200
    body = response.get_json()
    assert body["target"] == "calcifications:microcalcifications" and body["used_class_idx"] == 2
    assert body["roi_source"] == "user" and body["cam"]["grid"]


@pytest.mark.parametrize(
    ("which", "target", "why"),
    [
        ("heads", "colour:red", "'colour' is not a descriptor field"),
        ("heads", "calcifications:big", "'big' is not a value of calcifications"),
        ("old", "calcifications:microcalcifications", "this run has no descriptor heads"),
    ],
)
def test_unknown_targets_get_422(runs, tmp_path: Path, which: str, target: str, why: str) -> None:
    client = _client(runs[which], tmp_path)
    response = _post(client, "/explain", _frame_png(), target=target)
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "unknown_target" and body["field"] == "target"
    assert body["error"].startswith(f"target: got {target!r} (") and why in body["error"]


def test_an_old_run_still_predicts_over_http(runs, tmp_path: Path) -> None:
    client = _client(runs["old"], tmp_path)
    body = _post(client, "/predict", _frame_png()).get_json()
    assert body["roi"] is None and body["roi_source"] == "frame"
    assert body["estimated"] is None and body["tirads_estimated"] is None
    assert 0 <= body["probability"] <= 1


def _page_config(client) -> dict:
    html = client.get("/?lang=en").get_data(as_text=True)
    start = html.index('<script id="thyrocam-config" type="application/json">')
    text = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(text)


def test_the_page_offers_descriptor_targets_only_when_the_run_has_them(
    runs, tmp_path: Path
) -> None:
    from thyrocam.explain.targets import available_targets

    config = _page_config(_client(runs["heads"], tmp_path))
    expected = available_targets(heads=ALL_HEADS, cat_maps=CAT_MAPS)[2:]
    assert config["descriptorTargets"] == list(expected)
    assert "calcifications:microcalcifications" in config["descriptorTargets"]
    assert config["descriptorTargets"] and config["noNoduleWarning"].startswith("no nodule box")
    assert _page_config(_client(runs["old"], tmp_path))["descriptorTargets"] == []
