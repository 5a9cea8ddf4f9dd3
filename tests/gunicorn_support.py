"""What the gunicorn tests share: a free loopback port, a standard-library multipart POST,
and starting / gracefully stopping ``thyrocam serve`` in its own process group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(image: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    """``(body, content type)`` of a form with ``file`` and text fields (standard library only)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_form(
    base: str, path: str, image: bytes, fields: dict[str, str], *, timeout: float
) -> dict:
    """POST ``image`` and ``fields`` to ``base + path``; the JSON of a 200 answer."""
    body, ctype = multipart(image, fields)
    request = urllib.request.Request(
        base + path, data=body, headers={"Content-Type": ctype}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200
        return json.loads(response.read())


def start_gunicorn(
    run: Path, tmp_path: Path, *, workers: int, threads: int
) -> tuple[str, int, subprocess.Popen, Path]:
    """``thyrocam serve`` on a free port -> ``(base URL, port, process, log file)``.

    No examples, uploads under ``tmp_path``; a new session, so the whole group can be
    killed if a graceful stop hangs.
    """
    port = free_port()
    env = {**os.environ, "THYROCAM_UPLOAD_DIR": str(tmp_path / "uploads")}
    env.pop("THYROCAM_EXAMPLES", None)
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "thyrocam.cli", "serve", "--checkpoint", str(run)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--threads", str(threads)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    return f"http://127.0.0.1:{port}", port, proc, log


def stop_gunicorn(proc: subprocess.Popen, log: Path) -> None:
    """SIGTERM (SIGKILL to the group after 30 s); gunicorn's arbiter must exit 0."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()[-3000:]
