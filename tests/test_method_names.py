"""Every CAM method name and alias, through the Python API, the CLI and HTTP.

Each face must run the method the name stands for: the map is compared with one
computed here from the engine class and target layers written out by hand (not
read from the method table), so a spelling that silently runs another method or
other layers fails, as ``"layercamfused"`` once ran plain LayerCAM on layer4.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thyrocam.cli import main
from thyrocam.explain import METHODS, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from thyrocam.web import create_app

pytestmark = pytest.mark.usefixtures("load_predictors_once")

# Canonical name -> (engine class, the stages whose last conv is a target layer).
EXPECTED = {
    "gradcam": (GradCAM, ("layer4",)),
    "gradcam++": (GradCAMPlusPlus, ("layer4",)),
    "hirescam": (HiResCAM, ("layer4",)),
    "layercam": (LayerCAM, ("layer4",)),
    "layercam-fused": (LayerCAM, ("layer2", "layer3", "layer4")),
}
SPELLINGS = [(s, m.name) for m in METHODS.values() for s in (m.name, *m.aliases)]
# What people type beyond the table: capitals and underscores.
SPELLINGS += [
    ("GradCAM", "gradcam"),
    ("LayerCAM_fused", "layercam-fused"),
    ("HiResCAM", "hirescam"),
]
TARGET = "benign"  # not the default, so a face that drops `target` fails too


def test_the_table_offers_exactly_the_expected_methods() -> None:
    assert set(METHODS) == set(EXPECTED)


@pytest.fixture(scope="module")
def setup(tiny_run: Path, synth_dir: Path):
    from thyrocam.predictor import Predictor

    predictor = Predictor.load(tiny_run, device="cpu")
    image = sorted(synth_dir.glob("*_1.jpg"))[2]
    clinical = {"composition": "solid", "age": 61}
    # Without a box the run (it has an outline head) finds the nodule itself: the
    # expected maps are taken on the same input.
    located = predictor.predict(image, clinical)
    x = predictor.prepare_image(image, roi=located.roi if located.roi_source == "auto" else None)[1]
    clin = predictor.encode_clinical(clinical)[1]
    cnn = predictor.model.cnn
    maps = {}
    for name, (cls, stages) in EXPECTED.items():
        layers = [getattr(cnn, stage)[-1].conv2 for stage in stages]
        maps[name] = cls(predictor.model, layers).compute(x, clinical=clin, target=TARGET).cam[0]
    assert not np.allclose(
        maps["layercam-fused"], maps["layercam"]
    )  # the check can tell them apart
    assert not np.allclose(maps["gradcam"], maps["gradcam++"])
    return predictor, image, clinical, maps


@pytest.mark.parametrize("spelling,name", SPELLINGS)
def test_api(setup, spelling: str, name: str) -> None:
    predictor, image, clinical, maps = setup
    exp = predictor.explain(image, clinical, method=spelling, target=TARGET)
    assert exp.method == name
    np.testing.assert_allclose(exp.cam, maps[name], atol=1e-5)


@pytest.mark.parametrize("spelling,name", SPELLINGS)
def test_cli(setup, tiny_run: Path, tmp_path: Path, capsys, spelling: str, name: str) -> None:
    predictor, image, clinical, _ = setup
    out = tmp_path / "overlay.png"
    argv = ["explain", str(tiny_run), str(image), "--out", str(out), "--device", "cpu"]
    argv += ["--method", spelling, "--target", TARGET, "--clinical", "composition=solid", "age=61"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == name and summary["target"] == TARGET
    # The overlay written is the one the canonical method makes (checked against the maps above).
    want = predictor.explain(image, clinical, method=name, target=TARGET).overlay
    got = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert np.abs(got - np.asarray(want, dtype=np.int16)).max() <= 1


@pytest.fixture(scope="module")
def client(tiny_run: Path, tmp_path_factory):
    app = create_app(
        {
            "TESTING": True,
            "CHECKPOINT": str(tiny_run),
            "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        }
    )
    return app.test_client()


@pytest.mark.parametrize("spelling,name", SPELLINGS)
def test_http(setup, client, spelling: str, name: str) -> None:
    predictor, image, clinical, maps = setup
    form = {"file": (io.BytesIO(image.read_bytes()), image.name), "method": spelling}
    form.update(target=TARGET, composition="solid", age="61")
    answer = client.post("/explain", data=form)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["method"] == name and body["target"] == TARGET
    # The grid is the layer-resolution map, min-max normalised; the API's raw map for the
    # canonical name is the one checked against the hand-built engines above.
    raw = predictor.explain(image, clinical, method=name, target=TARGET).raw
    lo, hi = float(raw.min()), float(raw.max())
    want = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    np.testing.assert_allclose(np.asarray(body["cam"]["grid"]), want, atol=1e-4)
