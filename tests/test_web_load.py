"""A bounded load test: gunicorn (1 worker, 8 threads), 8 clients x 25 ``/explain`` requests."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pytest

from gunicorn_support import post_form, start_gunicorn, stop_gunicorn

CLIENTS = 8
REQUESTS_PER_CLIENT = 25
OVERALL_TIMEOUT_S = 240.0
EXPLAIN_FIELDS = {"use_clinical": "1", "composition": "solid"}
log = logging.getLogger(__name__)


def post_explain(base: str, image: bytes, *, timeout: float) -> dict:
    """POST one image to /explain as multipart, with the standard library only."""
    return post_form(base, "/explain", image, EXPLAIN_FIELDS, timeout=timeout)


@pytest.fixture
def gunicorn_server(tiny_run: Path, tmp_path: Path):
    base, _, proc, log_path = start_gunicorn(tiny_run, tmp_path, workers=1, threads=8)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not answer /health:\n{log_path.read_text()}")
                time.sleep(0.25)
        assert health["model_loaded"] is True, health
        yield base
    finally:
        stop_gunicorn(proc, log_path)  # a graceful stop: gunicorn's arbiter exits 0 on SIGTERM


def test_concurrent_explains_under_gunicorn_equal_sequential(gunicorn_server, synth_dir):
    images = [p.read_bytes() for p in sorted(synth_dir.glob("*_1.jpg"))[:4]]
    assert len(images) == 4
    start = time.monotonic()
    sequential = [post_explain(gunicorn_server, image, timeout=60) for image in images]
    sequential_s = time.monotonic() - start

    def client(index: int) -> list[tuple[int, dict]]:
        out = []
        for i in range(REQUESTS_PER_CLIENT):
            which = (index + i) % len(images)
            remaining = OVERALL_TIMEOUT_S - (time.monotonic() - start)
            if remaining <= 0:
                raise TimeoutError("the load test ran out of time")
            out.append((which, post_explain(gunicorn_server, images[which], timeout=remaining)))
        return out

    load_start = time.monotonic()
    results: list[tuple[int, dict]] = []
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, i) for i in range(CLIENTS)]
        for future in as_completed(futures, timeout=OVERALL_TIMEOUT_S):
            results.extend(future.result())
    load_s = time.monotonic() - load_start
    log.info(
        "sequential: %.3f s/request; %d concurrent requests in %.1f s (%.1f requests/s)",
        sequential_s / len(images),
        len(results),
        load_s,
        len(results) / load_s,
    )

    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    for which, body in results:
        expected = sequential[which]
        assert body["cam"] == expected["cam"]
        assert body["probability"] == expected["probability"]
        assert body["overlay_png_base64"] == expected["overlay_png_base64"]
    # The four images give four different answers, so a mix-up could not pass unnoticed
    # (the tiny model's maps may all be empty; its probabilities still differ).
    answers = {(s["probability"], json.dumps(s["cam"]["grid"])) for s in sequential}
    assert len(answers) == len(images)
