"""The heads on the page, in a real browser (Playwright + Debian's Chromium).

* A stand-in run whose outline head has a known answer: the proposed box is drawn
  dashed where the nodule is, the user can redraw it, the estimated descriptors and
  the TI-RADS line "from the image" are shown, and a descriptor target is explained.
* A run trained on the real DDTI sample (``../shared/ddti``): a real frame uploaded
  without a box gets the dashed automatic box and a non-empty map.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from browser_support import launch_chromium, serving
from thyrocam.clinical import default_cat_maps
from thyrocam.imaging import box_iou
from thyrocam.model import DESCRIPTOR_FIELDS, ThyroidNet
from thyrocam.web import create_app, get_state

pytestmark = pytest.mark.browser

ALL_HEADS = ("malignancy", "outline", "descriptors")
CAT_MAPS = default_cat_maps()
CLASSES = {f: len(CAT_MAPS["fields"][f]) for f in DESCRIPTOR_FIELDS}
NODULE = (300, 120, 400, 200)
AUTO_COLOUR = (0x4C, 0xC9, 0xF0)  # the page's colour for the proposed box (app.js)
# A run with an outline head trained on the real sample. THYROCAM_HEADS_RUN names one
# (e.g. the README's `--preset ddti` run); otherwise the fixture trains a short one.
HEADS_RUN_ENV = "THYROCAM_HEADS_RUN"
DDTI_EPOCHS = 6


class _DarkIsNodule(ThyroidNet):
    """A stand-in whose outline head calls dark tissue nodule (a known answer)."""

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        out["outline"] = (-1.0 - img.mean(dim=1, keepdim=True)) * 20.0
        return out


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "responded with a status of 4" not in msg.text
            else None
        ),
    )
    page.set_default_timeout(120_000)
    yield page
    context.close()
    assert problems == []


# What training records of its descriptor heads on held-out frames: the calcification
# head no better than always answering the commonest value, the others better.
STANDIN_QUALITY = {
    "split": "test",
    "fields": {
        f: {"accuracy": acc, "baseline": 0.5, "n": 40, "commonest": CAT_MAPS["fields"][f][0]}
        for f, acc in zip(DESCRIPTOR_FIELDS, (0.75, 0.7, 0.7, 0.55), strict=True)
    },
}


@pytest.fixture(scope="module")
def standin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    tmp = tmp_path_factory.mktemp("heads_browser")
    torch.manual_seed(4)
    net = _DarkIsNodule(
        arch="resnet18", clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES
    )
    run = save_run(
        tmp / "run",
        model=net,
        cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="roi", size=64),
        threshold=0.5,
        extra_meta={
            "outline_input": {"mode": "letterbox", "size": 128, "margin": 0.5},
            "descriptor_quality": STANDIN_QUALITY,
        },
    )
    app = create_app({"CHECKPOINT": str(run), "UPLOAD_DIR": str(tmp / "uploads")})
    state = get_state(app)
    assert state.predictor is not None, state.reason
    state.predictor.model = net.eval()  # the saved weights, with the known outline rule
    with serving(app) as url:
        yield url


def canvas_pixels(page, selector: str) -> np.ndarray:
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _dashes(pixels: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """Along the box's top edge: True where the proposed box's colour is drawn.

    The line is about 2 px wide, centred on a fractional ``y0``: of the rows it
    touches, the one it covers most (the others are anti-aliased into the image).
    """
    x0, y0, x1, _ = (int(round(v)) for v in box)
    rows = [
        np.abs(pixels[y, x0:x1] - np.array(AUTO_COLOUR)).max(axis=1) < 40
        for y in range(max(0, y0 - 1), min(pixels.shape[0], y0 + 2))
    ]
    return max(rows, key=lambda r: int(r.sum()))


def _upload_and_predict(page, server: str, image: Path) -> dict:
    page.goto(server + "/?lang=en")
    page.set_input_files("#file-input", str(image))
    page.wait_for_selector("#preview[data-frame]")
    with page.expect_response("**/predict") as answered:
        page.click("#predict-btn")
    assert answered.value.status == 200
    page.wait_for_selector("#result-label")
    return answered.value.json()


def test_proposed_box_estimates_and_descriptor_target(page, standin_server, tmp_path) -> None:
    frame = Image.new("RGB", (560, 360), (150, 150, 150))
    ImageDraw.Draw(frame).ellipse([300, 120, 399, 199], fill=(25, 25, 25))
    image = tmp_path / "frame.png"
    frame.save(image)
    body = _upload_and_predict(page, standin_server, image)
    assert body["roi_source"] == "auto"

    # The proposal, drawn dashed on the preview where the answer says.
    page.wait_for_selector("#preview[data-roi-source='auto']")
    drawn = [float(v) for v in page.get_attribute("#preview", "data-roi").split(",")]
    assert drawn == pytest.approx([round(v) for v in body["roi"]], abs=0.5)
    assert max(abs(a - b) for a, b in zip(drawn, NODULE, strict=True)) < 6
    dashes = _dashes(canvas_pixels(page, "#preview"), body["roi"])
    assert 0.3 < dashes.mean() < 0.8, dashes.mean()  # drawn, with gaps: dashed
    assert "proposed by the model" in page.inner_text("#roi-text")

    # The descriptors read from the image, and the TI-RADS line from them (none entered).
    rows = page.locator("#estimated-table tbody tr")
    assert rows.count() == 4
    calc = page.inner_text("#estimated-table tbody tr[data-field='calcifications']")
    assert "%" in calc
    # Each estimate with its head's held-out accuracy beside the commonest value's; the
    # calcification head's 22 of 40 against 20 is no proof of being better (binomial
    # test), so it is flagged and kept out of the TI-RADS line from the image.
    assert "55 % (50 %)" in calc and "n=40" in calc
    assert "not shown better than the commonest value" in calc
    margins = page.inner_text("#estimated-table tbody tr[data-field='margins']")
    assert "70 % (50 %)" in margins and "n=40" in margins and "not shown" not in margins
    assert body["estimated_withheld"] == ["calcifications"]
    assert body["tirads_estimated"]["from_image"] == ["composition", "echogenicity", "margins"]
    assert "Calcifications" in page.inner_text("#estimated-withheld")
    assert body["tirads_estimated"]["is_partial"]  # calcifications still missing
    assert "lower bound" in page.inner_text("#tirads-estimated-partial")
    level = page.inner_text("#tirads-estimated-level")
    assert level == body["tirads_estimated"]["level"]
    assert "estimate" in page.inner_text("#tirads-estimated")

    # A descriptor value as the explanation target.
    page.click("summary")
    page.select_option("#target", "calcifications:microcalcifications")
    with page.expect_response("**/explain") as explained:
        page.click("#explain-btn")
    assert explained.value.status == 200
    exp = explained.value.json()
    assert exp["target"] == "calcifications:microcalcifications" and exp["used_class_idx"] == 2
    page.wait_for_selector("#cam-overlay[data-ready='1']")
    assert "Calcifications" in page.inner_text("#cam-method")

    # Redrawing replaces the proposal: a user box, drawn in the user's colour.
    page.locator("#preview").scroll_into_view_if_needed()
    box = page.locator("#preview").bounding_box()
    page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.1 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.4 * box["height"], steps=5)
    page.mouse.up()
    assert page.get_attribute("#preview", "data-roi-source") == "user"
    with page.expect_response("**/predict") as again:
        page.click("#predict-btn")
    assert again.value.json()["roi_source"] == "user"


# -- a real DDTI frame, a run trained on the real sample ------------------------------------


def _nodule_boxes(ddti: Path) -> dict[Path, tuple[float, float, float, float]]:
    """Each frame with an outline -> the radiologist's nodule box (the largest outline)."""
    from thyrocam.data import read_ddti
    from thyrocam.imaging import nodule_box

    cases, _ = read_ddti(ddti)
    boxes = {}
    for case in cases:
        for view in case.views:
            box = nodule_box(view.polygons)
            if box is not None:
                boxes[Path(view.image_path)] = box
    return boxes


@pytest.fixture(scope="module")
def ddti_run(ddti_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(HEADS_RUN_ENV)
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("ddti_heads") / "run"
    # The real-data preset, shortened (no synthetic pretraining, fewer epochs): enough
    # for the outline head to find nodules.
    cmd = [sys.executable, "-m", "thyrocam", "train", str(ddti_sample), "--out", str(out),
           "--preset", "ddti", "--epochs", str(DDTI_EPOCHS), "--pretrain-synthetic", "0",
           "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _held_out_frames(run: Path, boxes: dict[Path, tuple]) -> list[Path]:
    """The frames of the run's test cases (all outlined frames if the run has no split)."""
    split_file = run / "split.json"
    test = set(json.loads(split_file.read_text())["test"]) if split_file.is_file() else None
    return sorted(p for p in boxes if test is None or p.stem.split("_")[0] in test)


def test_real_ddti_frame_without_a_box(page, ddti_sample: Path, ddti_run: Path, tmp_path) -> None:
    from thyrocam.predictor import Predictor

    assert "outline" in json.loads((ddti_run / "meta.json").read_text())["heads"]
    boxes = _nodule_boxes(ddti_sample)
    # In a fixed order, the first held-out frame whose automatic box overlaps the
    # radiologist's and whose map of the predicted class (what the page explains) has
    # some positive evidence is uploaded: this test is about the page; the rates over all
    # held-out frames are the benchmark's numbers (about a quarter of maps are empty
    # there; test_web_browser covers how the page shows an empty one).
    predictor = Predictor.load(ddti_run, device="cpu")
    chosen = None
    for frame in _held_out_frames(ddti_run, boxes)[:20]:
        pred = predictor.predict(frame)
        if pred.roi_source != "auto" or box_iou(pred.roi, boxes[frame]) < 0.3:
            continue
        if not predictor.explain(frame, target=pred.label).all_zero:
            chosen = frame
            break
    assert chosen is not None, "no box on the outline with a non-empty map in 20 held-out frames"

    app = create_app({"CHECKPOINT": str(ddti_run), "UPLOAD_DIR": str(tmp_path / "uploads")})
    with serving(app) as url:
        body = _upload_and_predict(page, url, chosen)
        assert body["roi_source"] == "auto" and box_iou(body["roi"], boxes[chosen]) >= 0.3
        page.wait_for_selector("#preview[data-roi-source='auto']")
        dashes = _dashes(canvas_pixels(page, "#preview"), body["roi"])
        assert 0.3 < dashes.mean() < 0.8, dashes.mean()
        with page.expect_response("**/explain") as explained:
            page.click("#explain-btn")
        assert explained.value.status == 200
        exp = explained.value.json()
        assert exp["roi_source"] == "auto" and exp["roi"] == body["roi"]
        assert not exp["cam"]["all_zero"]
        # A stacked fusion (the preset's) maps its image network and says with what weight
        # that network's logit enters the probability.
        stacked = json.loads((ddti_run / "meta.json").read_text()).get("fusion") == "stacked"
        assert ("image_weight" in exp) == stacked
        if stacked:
            note = page.locator("#cam-image-network")
            assert note.is_visible() and f"{exp['image_weight']:.2f}" in note.inner_text()
        page.wait_for_selector("#cam-overlay[data-ready='1']")
        grid = np.asarray(exp["cam"]["grid"])
        assert grid.max() == pytest.approx(1.0) and grid.min() < grid.max()
        shown = canvas_pixels(page, "#cam-overlay")
        original = canvas_pixels(page, "#cam-original")
        assert np.abs(shown - original).mean() > 1.0  # the map is drawn on the frame
