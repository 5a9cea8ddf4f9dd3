"""The page in a real browser: Playwright's Python package driving Debian's Chromium."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_support import launch_chromium, serving
from thyrocam.clinical import FIELDS as FIELD_ORDER
from thyrocam.web import create_app, get_state
from thyrocam.web.i18n import STRINGS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_run: Path, synth_dir: Path, tmp_path_factory):
    """The app the browser talks to (tests may adjust its predictor, e.g. the threshold)."""
    return create_app(
        {
            "CHECKPOINT": str(tiny_run),
            "EXAMPLES": str(synth_dir),
            "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        }
    )


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


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
    assert box == pytest.approx(first["roi"], abs=0.6)
    with page.expect_response("**/predict") as predicted:
        page.click("#predict-btn")
    assert predicted.value.status == 200
    assert predicted.value.json()["roi"] == pytest.approx(first["roi"], abs=0.1)


def test_server_errors_are_shown_not_thrown(page, server, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    page.goto(server + "/?lang=en")
    page.set_input_files("#file-input", str(bad))
    page.click("#predict-btn")
    page.wait_for_selector("#error:not(.hidden)")
    assert page.inner_text("#error").startswith("415 · image:")


# -- descriptor contributions and the explained class (issue 7, items 9 and 10) ---------------
DESCRIPTORS = {
    "composition": "solid",
    "echogenicity": "hypoechogenicity",
    "margins": "spiculated",
    "sex": "F",
    "age": "54",
}  # calcifications left "not recorded": its contribution must be exactly 0


def signed(value: float) -> str:
    """How the page writes a contribution: two decimals, a sign unless it rounds to 0."""
    digits = f"{abs(value):.2f}"
    return digits if digits == "0.00" else f"{'+' if value > 0 else '−'}{digits}"


def fill_descriptors(page) -> None:
    for field, value in DESCRIPTORS.items():
        if field == "age":
            page.fill("#f-age", value)
        else:
            page.select_option(f"#f-{field}", value)


# Chromium gives no post data for a multipart body with a file, so the page's own
# fetch calls are recorded: the text fields of each FormData it sends.
RECORD_FORMS = """
(() => {
  const fetch = window.fetch.bind(window);
  window.__sent = [];
  window.fetch = (url, options) => {
    const body = options && options.body;
    if (body instanceof FormData) {
      const fields = {};
      for (const [k, v] of body.entries()) if (typeof v === "string") fields[k] = v;
      window.__sent.push({ url: String(url), fields });
    }
    return fetch(url, options);
  };
})();
"""

EMPTY_MAP = """
(() => {
  const fetch = window.fetch.bind(window);
  window.fetch = async (url, options) => {
    const response = await fetch(url, options);
    if (String(url) !== "explain" || !response.ok) return response;
    const body = await response.json();
    body.cam.all_zero = true;
    body.cam.grid = body.cam.grid.map((row) => row.map(() => 0));
    return new Response(JSON.stringify(body), { status: 200, headers: response.headers });
  };
})();
"""


def explain(page) -> tuple[dict, dict]:
    """Press Explain; -> (the form the page sent, the JSON it received).

    The page must have been opened after ``page.add_init_script(RECORD_FORMS)``.
    """
    page.evaluate("document.querySelector('#cam-overlay').dataset.ready = '0'")
    with page.expect_response("**/explain") as answered:
        page.click("#explain-btn")
    assert answered.value.status == 200
    page.wait_for_selector("#cam-overlay[data-ready='1']")
    sent = page.evaluate("window.__sent.at(-1)")
    assert sent["url"] == "explain"
    return sent["fields"], answered.value.json()


def test_an_explanation_with_descriptors_shows_the_contribution_bars(page, server, synth_dir):
    frame = sorted(synth_dir.glob("*_1.jpg"))[1]
    page.add_init_script(RECORD_FORMS)
    page.goto(server + "/?lang=es")
    page.set_input_files("#file-input", str(frame))
    page.wait_for_selector("#preview[data-frame]")
    fill_descriptors(page)
    sent, body = explain(page)
    assert sent["attributions"] == "1" and sent["use_clinical"] == "1"
    assert set(body["attributions"]) == {*DESCRIPTORS, "calcifications"}
    assert body["attributions"]["calcifications"] == 0.0

    assert page.is_visible("#attributions")
    assert page.inner_text("#attributions h3").lower() == "contribución de los descriptores"
    rows = page.locator("#attributions .attr-row[data-field]")
    fields = [rows.nth(i).get_attribute("data-field") for i in range(rows.count())]
    assert fields == [*FIELD_ORDER, "total"]
    widths = {}
    for i, field in enumerate(fields):
        row = rows.nth(i)
        attributions = body["attributions"]
        value = sum(attributions.values()) if field == "total" else attributions[field]
        shown = row.locator(".attr-value").inner_text()
        assert shown == signed(value), field
        bar = row.locator(".attr-bar")
        side = "attr-bar--pos" if value >= 0 else "attr-bar--neg"
        assert side in bar.get_attribute("class").split(), field
        widths[field] = bar.bounding_box()["width"]
    # Bars are to scale: the largest |value| has the longest bar; a missing field has none.
    largest = max(body["attributions"], key=lambda f: abs(body["attributions"][f]))
    assert widths[largest] == max(widths[f] for f in FIELD_ORDER) > 0
    assert widths["calcifications"] == 0
    assert "sólido" in rows.nth(0).inner_text()  # each bar names the value it stands for
    assert "hacia maligno" in page.inner_text("#attributions")

    page.click("#lang-en")
    assert page.inner_text("#attributions h3").lower() == "descriptor contributions"
    assert "toward malignant" in page.inner_text("#attributions")
    assert page.locator("#attributions .attr-row[data-field]").count() == 7

    # Without descriptors there is nothing to attribute: not asked for, not shown.
    page.uncheck("#use-clinical")
    sent, body = explain(page)
    assert "attributions" not in sent and "attributions" not in body
    assert not page.is_visible("#attributions")


@pytest.mark.parametrize(("threshold", "label"), [(1.0, "benign"), (0.0, "malignant")])
def test_the_page_explains_the_predicted_class_by_default(
    page, server, app, synth_dir, monkeypatch, threshold, label
):
    # The run's threshold decides the call, so both calls are reachable with any model.
    monkeypatch.setattr(get_state(app).predictor, "threshold", threshold)
    frame = sorted(synth_dir.glob("*_1.jpg"))[2]
    page.add_init_script(RECORD_FORMS)
    page.goto(server + "/?lang=es")
    page.set_input_files("#file-input", str(frame))
    page.wait_for_selector("#preview[data-frame]")
    sent, body = explain(page)
    assert sent["target"] == "auto"
    assert body["label"] == label and body["target"] == label
    assert page.get_attribute("#cam-method", "data-target") == label
    caption = page.inner_text("#cam-method")
    assert STRINGS["es"][f"target_{label}"] in caption and "(la clase predicha)" in caption
    # The map is that class's evidence: the same as asking for it by name.
    direct = app.test_client().post(
        "/explain", data={"file": (io.BytesIO(frame.read_bytes()), "f.jpg"), "target": label}
    )
    assert direct.get_json()["cam"] == body["cam"]


@pytest.mark.parametrize("lang", ["es", "en"])
def test_an_empty_map_says_which_way_the_image_pushed(page, server, app, synth_dir, lang):
    frame = sorted(synth_dir.glob("*_1.jpg"))[3]

    # The page's handling of an empty map, whatever this tiny model's maps are: the
    # answer reaches the page with the map emptied (Chromium cannot re-send the
    # multipart body, so this wraps the page's fetch instead of routing the request).
    page.add_init_script(EMPTY_MAP)
    page.add_init_script(RECORD_FORMS)
    page.goto(server + f"/?lang={lang}")
    page.set_input_files("#file-input", str(frame))
    page.wait_for_selector("#preview[data-frame]")
    fill_descriptors(page)
    _, body = explain(page)
    # Which way the image alone pushed, computed independently: descriptors all missing.
    predictor = get_state(app).predictor
    alone = predictor.predict(frame.read_bytes(), None).probability
    direction = "malignant" if alone >= predictor.threshold else "benign"
    assert page.is_visible("#cam-all-zero")
    assert page.get_attribute("#cam-all-zero", "data-image-push") == direction
    text = page.inner_text("#cam-all-zero")
    assert f"{100 * alone:.1f} %" in text
    assert STRINGS[lang][f"toward_{direction}"] in text
    # ... and points at the descriptors' contributions, which are on the page.
    delta = sum(body["attributions"].values())
    assert signed(delta) in text
    assert page.is_visible("#attributions")
