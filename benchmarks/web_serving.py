"""``/explain`` through gunicorn vs the same calls in-process, and a soak of the gunicorn worker.

Both sides get the same requests (multipart upload of one 560x360 frame) from
the same number of concurrent clients: threads posting over HTTP on 127.0.0.1
to ``thyrocam serve`` (gunicorn, one worker with as many threads as clients),
or threads calling the same Flask app in-process through its test client. The
soak then sends more requests to the warmed-up worker and reports how much
its resident memory grew.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks._common import Row, percentile

__all__ = ["run"]

_SERVE = "import sys; from thyrocam.cli import main; sys.exit(main())"


def _hammer(make_call: Callable[[], Callable[[], int]], *, total: int, clients: int):
    """``total`` calls from ``clients`` threads -> ``(seconds, latencies, failures)``."""
    per_client = [total // clients + (i < total % clients) for i in range(clients)]

    def client(n: int) -> tuple[list[float], int]:
        call = make_call()
        latencies, failures = [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            failures += call() != 200
            latencies.append(time.perf_counter() - t0)
        return latencies, failures

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, per_client))
    seconds = time.perf_counter() - t0
    return seconds, [x for lat, _ in results for x in lat], sum(f for _, f in results)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {master}, found {children}")
    return int(children[0])


def _start_gunicorn(run_dir: Path, *, port: int, threads: int, uploads: Path):
    env = dict(os.environ, THYROCAM_UPLOAD_DIR=str(uploads))
    cmd = [sys.executable, "-c", _SERVE, "serve", "--checkpoint", str(run_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"thyrocam serve exited with {proc.returncode}")
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("thyrocam serve did not answer /health within 120 s")


def _stats(seconds: float, latencies: list[float]) -> str:
    return (
        f"{len(latencies) / seconds:.1f} req/s, p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms"
    )


def run(
    run_dir: Path, image: Path, *, requests_n: int, clients: int, soak: int, tmp: Path
) -> list[Row]:
    from thyrocam.web import create_app

    data = image.read_bytes()
    uploads = tmp / "uploads"
    uploads.mkdir(exist_ok=True)
    app = create_app({"CHECKPOINT": str(run_dir), "UPLOAD_DIR": str(uploads)})

    def in_process() -> Callable[[], int]:
        client = app.test_client()

        def call() -> int:
            files = {"file": (io.BytesIO(data), "frame.jpg")}
            return client.post(
                "/explain", data=files, content_type="multipart/form-data"
            ).status_code

        return call

    port = _free_port()
    proc = _start_gunicorn(run_dir, port=port, threads=clients, uploads=uploads)
    try:
        url = f"http://127.0.0.1:{port}/explain"

        def over_http() -> Callable[[], int]:
            session = requests.Session()

            def call() -> int:
                files = {"file": ("frame.jpg", data, "image/jpeg")}
                return session.post(url, files=files, timeout=120).status_code

            return call

        warm = max(clients, requests_n // 8)
        _hammer(in_process, total=warm, clients=clients)
        _hammer(over_http, total=warm, clients=clients)
        local_s, local_lat, local_fail = _hammer(in_process, total=requests_n, clients=clients)
        http_s, http_lat, http_fail = _hammer(over_http, total=requests_n, clients=clients)
        worker = _worker_pid(proc.pid)
        rss0 = _rss_mib(worker)
        _, _, soak_fail = _hammer(over_http, total=soak, clients=clients)
        rss1 = _rss_mib(worker)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    ratio = (len(http_lat) / http_s) / (len(local_lat) / local_s)
    what = f"{requests_n} requests, {clients} clients"
    return [
        Row(f"/explain in-process ({what})", _stats(local_s, local_lat),
            f"{local_fail} failed" if local_fail else ""),
        Row(f"/explain via gunicorn, 127.0.0.1 ({what})", _stats(http_s, http_lat),
            f"{http_fail} failed" if http_fail else ""),
        Row("/explain throughput gunicorn / in-process", f"{ratio:.2f}x", "target >= 0.80"),
        Row(f"soak: gunicorn worker RSS over {soak} /explain", f"{rss1 - rss0:+.1f} MiB "
            f"({rss0:.0f} -> {rss1:.0f} MiB)",
            "target < 50 MB" + (f"; {soak_fail} failed" if soak_fail else "")),
    ]  # fmt: skip
