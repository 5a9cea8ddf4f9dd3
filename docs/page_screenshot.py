"""The README's picture of the page: a run, one frame uploaded whole, predicted and explained.

Run from the project root (needs Debian's Chromium and Playwright, as the browser tests)::

    python docs/page_screenshot.py RUN FRAME --out docs/img/web_ddti_es.png [--lang es]

The frame is uploaded without a box and without descriptors (so a run with an outline
head proposes the box and reads the descriptors from the image), predicted, then
explained with the page's default options; the whole page is saved as a PNG.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server

from thyrocam.web import create_app

CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("frame", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lang", choices=("es", "en"), default="es")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as uploads:
        app = create_app({"CHECKPOINT": str(args.run), "UPLOAD_DIR": uploads})
        httpd = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)
                page.goto(f"http://127.0.0.1:{httpd.server_port}/?lang={args.lang}")
                page.set_input_files("#file-input", str(args.frame))
                page.wait_for_selector("#preview[data-frame]")
                with page.expect_response("**/predict"):
                    page.click("#predict-btn")
                page.wait_for_selector("#result-label")
                with page.expect_response("**/explain"):
                    page.click("#explain-btn")
                page.wait_for_selector("#cam-overlay[data-ready='1']")
                # A viewport as tall as the page, so the sticky action bar sits where it
                # belongs instead of over the form in a stitched full-page capture.
                height = page.evaluate("document.documentElement.scrollHeight")
                page.set_viewport_size({"width": 1280, "height": int(height)})
                page.wait_for_timeout(300)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            httpd.shutdown()
    print(args.out)


if __name__ == "__main__":
    main()
