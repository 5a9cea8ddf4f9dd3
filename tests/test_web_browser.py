"""The page in a real browser: Playwright's Python package driving Debian's Chromium."""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from thyrocam.web import create_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tiny_run: Path, synth_dir: Path, tmp_path_factory) -> Iterator[str]:
    app = create_app(
        {
            "CHECKPOINT": str(tiny_run),
            "EXAMPLES": str(synth_dir),
            "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        }
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright's Python package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-ES")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg) -> None:
        # Chromium logs every 4xx answer; the tests check those answers themselves.
        if msg.type == "error" and "responded with a status of 4" not in msg.text:
            problems.append(msg.text)

    page.on("console", on_console)
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert problems == []


def canvas_pixels(page, selector: str) -> np.ndarray:
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def data_url_pixels(url: str) -> np.ndarray:
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_upload_predict_explain_reblend_and_switch_language(page, server, synth_dir):
    frame = sorted(synth_dir.glob("*_1.jpg"))[0]
    page.goto(server + "/")
    # Accept-Language es-ES -> Spanish.
    assert page.inner_text("#explain-btn") == "Explicar predicción (Grad-CAM)"
    assert "no es un dispositivo de diagnóstico" in page.inner_text("#disclaimer")

    page.set_input_files("#file-input", str(frame))
    page.wait_for_selector("#preview[data-frame='560x360']")
    page.select_option("#f-composition", "solid")
    page.select_option("#f-echogenicity", "hypoechogenicity")
    page.select_option("#f-margins", "spiculated")
    page.select_option("#f-calcifications", "microcalcifications")
    page.select_option("#f-sex", "F")
    page.fill("#f-age", "54")

    with page.expect_response("**/predict") as predicted:
        page.click("#predict-btn")
    assert predicted.value.status == 200
    page.wait_for_selector("#result-label")
    answer = predicted.value.json()
    label = page.get_attribute("#result-label", "data-label")
    assert label == answer["label"]
    assert page.inner_text("#result-label") == {"benign": "Benigno", "malignant": "Maligno"}[label]
    assert page.inner_text("#result-prob") == f"{100 * answer['probability']:.1f} %"
    assert page.inner_text("#tirads-level") == "TR5"  # 2 + 2 + 2 + 3 = 9 points

    # Drag a box around the nodule on the preview.
    page.locator("#preview").scroll_into_view_if_needed()
    box = page.locator("#preview").bounding_box()
    page.mouse.move(box["x"] + 0.30 * box["width"], box["y"] + 0.25 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.60 * box["width"], box["y"] + 0.70 * box["height"], steps=6)
    page.mouse.up()
    roi_text = page.inner_text("#roi-text")
    x0, y0, x1, y1 = (float(v) for v in roi_text.split(","))
    assert 150 < x0 < x1 < 350 and 80 < y0 < y1 < 260

    with page.expect_response("**/explain") as explained:
        page.click("#explain-btn")
    body = explained.value.json()
    assert explained.value.status == 200
    assert body["roi"] == pytest.approx([x0, y0, x1, y1], abs=0.1)
    page.wait_for_selector("#cam-overlay[data-ready='1']")
    assert page.is_visible("#cam-card")
    shown = canvas_pixels(page, "#cam-overlay")
    server_overlay = data_url_pixels(body["overlay_png_base64"])
    assert shown.shape == server_overlay.shape == (360, 560, 3)
    assert np.abs(shown - server_overlay).mean() < 1.0  # the server's overlay, as sent

    # The slider re-blends in the page: pixels change, and nothing goes over the network.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.focus("#opacity")
    page.keyboard.press("End")
    assert page.input_value("#opacity") == "100"
    full = canvas_pixels(page, "#cam-overlay")
    assert np.abs(full - shown).mean() > 5.0
    page.keyboard.press("Home")
    for _ in range(35):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#opacity") == "35"
    reblended = canvas_pixels(page, "#cam-overlay")
    assert not np.array_equal(reblended, full)
    # The page's own blend from the raw grid agrees with the server's overlay at 0.35.
    assert np.abs(reblended - server_overlay).mean() < 1.5
    assert requests == []

    with page.expect_download() as download:
        page.click("#download-btn")
    assert download.value.suggested_filename.endswith(".png")

    # Switch language in place: labels change, the result stays.
    page.click("#lang-en")
    assert page.inner_text("#explain-btn") == "Explain prediction (Grad-CAM)"
    assert page.inner_text("#result-label") == {"benign": "Benign", "malignant": "Malignant"}[label]
    assert "not a diagnostic device" in page.inner_text("#disclaimer")
    assert page.is_visible("#cam-card")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies["thyrocam_lang"] == "en"
    page.reload()
    assert page.inner_text("#explain-btn") == "Explain prediction (Grad-CAM)"


def test_example_case_fills_the_form(page, server):
    page.goto(server + "/?lang=en")
    page.wait_for_selector(".example")
    examples = page.evaluate("fetch('examples').then(r => r.json())")
    first = examples[0]
    page.click(".example >> nth=0")
    page.wait_for_selector("#preview[data-frame]")
    page.wait_for_selector("#roi-text:has-text(',')")
    for field, value in first["clinical"].items():
        expected = "" if value is None else (str(int(value)) if field == "age" else value)
        shown = page.input_value(f"#f-{field}")
        assert (shown if field != "age" else shown.split(".")[0]) == expected, field
    box = [float(v) for v in page.inner_text("#roi-text").split(",")]
    assert box == pytest.approx(first["box"], abs=0.6)
    with page.expect_response("**/predict") as predicted:
        page.click("#predict-btn")
    assert predicted.value.status == 200
    assert predicted.value.json()["roi"] == pytest.approx(first["box"], abs=0.1)


def test_server_errors_are_shown_not_thrown(page, server, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    page.goto(server + "/?lang=en")
    page.set_input_files("#file-input", str(bad))
    page.click("#predict-btn")
    page.wait_for_selector("#error:not(.hidden)")
    assert page.inner_text("#error").startswith("415 · image:")
