"""A worker killed mid-request: gunicorn (2 workers) answers on, replaces it, stays correct.

The test starts ``thyrocam serve`` on 127.0.0.1 (a free port), opens a request
whose body it leaves unfinished (so the request is certainly in progress),
finds the worker holding that connection through ``/proc`` and SIGKILLs it.
Then: the other worker answers at once, the master starts a replacement, and
every later answer equals the in-process one. Linux only (``/proc``); every
wait has a deadline.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from gunicorn_support import multipart, post_form, start_gunicorn, stop_gunicorn
from thyrocam.web import create_app

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0
FIELDS = {"use_clinical": "1", "composition": "solid", "age": "47", "attributions": "1"}


def post(base: str, path: str, image: bytes) -> dict:
    return post_form(base, path, image, FIELDS, timeout=REQUEST_TIMEOUT_S)


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (gunicorn's workers, for the master)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def server_socket_inode(server_port: int, client_port: int) -> int:
    """The inode of the accepted server-side socket of one connection (0 until accepted)."""
    want_local, want_remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want_local and cols[2] == want_remote:
            return int(cols[9])
    return 0


def holder_of(inode: int, pids: set[int]) -> int | None:
    """Which of ``pids`` has the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


def wait_for(what: str, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture
def gunicorn(tiny_run: Path, tmp_path: Path) -> Iterator[tuple[str, int, subprocess.Popen, Path]]:
    base, port, proc, log = start_gunicorn(tiny_run, tmp_path, workers=2, threads=2)

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                return json.loads(response.read())["model_loaded"] and len(children(proc.pid)) == 2
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_for("gunicorn's two workers", healthy, START_TIMEOUT_S, log)
        yield base, port, proc, log
    finally:
        stop_gunicorn(proc, log)


def assert_same(answer: dict, expected: dict) -> None:
    assert answer["label"] == expected["label"]
    assert answer["probability"] == pytest.approx(expected["probability"], abs=1e-6)
    if "cam" in expected:  # an /explain answer
        assert answer["target"] == expected["target"]
        assert answer["attributions"] == pytest.approx(expected["attributions"], abs=1e-5)
        grid = np.asarray(answer["cam"]["grid"])
        assert np.abs(grid - np.asarray(expected["cam"]["grid"])).max() < 1e-3
        assert answer["cam"]["box"] == expected["cam"]["box"]


def test_a_worker_killed_mid_request_is_replaced_and_answers_stay_correct(
    gunicorn, tiny_run: Path, synth_dir: Path
):
    base, port, proc, log = gunicorn
    images = [p.read_bytes() for p in sorted(synth_dir.glob("*_1.jpg"))[:3]]
    # What the same code answers in this process: the reference for every later answer.
    local = create_app({"TESTING": True, "CHECKPOINT": str(tiny_run)}).test_client()
    expected = {
        (path, i): local.post(path, data={**FIELDS, "file": (io.BytesIO(img), "f.jpg")}).get_json()
        for path in ("/predict", "/explain")
        for i, img in enumerate(images)
    }
    workers = children(proc.pid)
    assert len(workers) == 2

    # A request in progress: headers sent, body promised but only half delivered.
    body, ctype = multipart(images[0], FIELDS)
    slow = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S)
    try:
        head = (
            f"POST /explain HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        slow.sendall(head + body[: len(body) // 2])
        client_port = slow.getsockname()[1]
        inode = wait_for(
            "a worker to accept the request",
            lambda: server_socket_inode(port, client_port),
            30,
            log,
        )
        victim = wait_for("the worker holding it", lambda: holder_of(inode, workers), 30, log)
        os.kill(victim, signal.SIGKILL)
        # The killed worker's request ends without an answer (reset or closed).
        try:
            assert slow.recv(1024) == b""
        except ConnectionResetError:
            pass
    finally:
        slow.close()

    # The other worker keeps answering, before any replacement exists.
    for i in range(len(images)):
        assert_same(post(base, "/predict", images[i]), expected["/predict", i])

    # The master replaces the killed worker.
    def replaced() -> set[int]:
        now = children(proc.pid)
        return now if len(now) == 2 and victim not in now else set()

    now = wait_for("a replacement worker", replaced, START_TIMEOUT_S, log)
    (new,) = now - workers
    text = log.read_text()
    assert f"Worker (pid:{victim}) was sent SIGKILL" in text
    assert f"Booting worker with pid: {new}" in text

    # Every later answer is correct, concurrent ones included (both workers serve them).
    jobs = [(path, i) for path in ("/predict", "/explain") for i in range(len(images))] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda job: post(base, job[0], images[job[1]]), jobs))
    for job, answer in zip(jobs, answers, strict=True):
        assert_same(answer, expected[job])
    assert proc.poll() is None  # the master itself never went down
