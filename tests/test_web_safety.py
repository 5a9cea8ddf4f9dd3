"""Upload safety: traversal, storage, stray files, decompression bombs, size limits, image modes."""

from __future__ import annotations

import base64
import io
import os
import re
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from thyrocam.web import create_app, get_state
from thyrocam.web import uploads as uploads_module

# Each checkpoint is loaded once per session (see conftest.load_predictors_once).
pytestmark = pytest.mark.usefixtures("load_predictors_once")


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def make_app(tiny_run: Path, upload_dir: Path):
    def make(**overrides):
        config = {"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(upload_dir)}
        config.update(overrides)
        return create_app(config)

    return make


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def image_bytes(mode: str = "RGB", size=(96, 64), fmt: str = "PNG", **save) -> bytes:
    img = Image.new(mode, size)
    if mode not in ("1", "P"):
        # Some structure, so the image is not constant.
        img.paste(Image.linear_gradient("L").resize(size).convert(mode))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def snapshot(*folders: Path) -> dict[str, float]:
    return {
        str(p): p.stat().st_mtime
        for folder in folders
        if folder.exists()
        for p in folder.rglob("*")
    }


# -- traversal ------------------------------------------------------------------------------
TRAVERSAL = [
    "../../etc/passwd",
    "../secret.png",
    "..",
    ".",
    "/etc/passwd",
    "/tmp/secret.png",
    "sub/file.png",
    "sub\\file.png",
    "..\\..\\windows\\win.ini",
    "C:\\secret.png",
    "file.png\x00.jpg",
    "\x00",
    "..%2F..%2Fetc%2Fpasswd",
    "..%252F..%252Fetc%252Fpasswd",
    "%2e%2e%2fsecret.png",
    "%2Fetc%2Fpasswd",
    "..%5csecret.png",
    "....//secret.png",
    "..;/secret.png",
    "~/secret.png",
    ".hidden.png",
    "secret.png/",
    "a..png",
    "name with space.png",
    "a" * 200,
    "\u2025\u2215secret.png",
]


@pytest.fixture
def outside_secret(tmp_path: Path) -> Path:
    """A *valid image* outside the upload folder: reading it would answer 200."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(image_bytes())
    return secret


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the upload reader opens."""
    paths: list[str] = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        paths.append(os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(uploads_module.os, "open", spy)
    return paths


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize("name", TRAVERSAL, ids=[ascii(n)[:40] for n in TRAVERSAL])
def test_traversal_names_are_rejected_without_reading(client, outside_secret, opened, path, name):
    response = client.post(path, data={"filename": name})
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_filename" and body["field"] == "filename"
    assert body["error"].startswith("filename: got ")
    assert opened == []


@pytest.mark.parametrize(
    "body",
    [
        b"filename=..%2F..%2Fetc%2Fpasswd",
        b"filename=%2Fetc%2Fpasswd",
        b"filename=..%252F..%252Fsecret.png",
        b"filename=secret.png%00.jpg",
        b"filename=%2E%2E",
    ],
)
def test_url_encoded_forms_are_decoded_once_and_rejected(client, outside_secret, opened, body):
    response = client.post("/predict", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_filename"
    assert opened == []


def test_symlinks_are_refused_wherever_they_point(client, upload_dir, outside_secret, opened):
    (upload_dir / "link.png").symlink_to(outside_secret)
    inside = upload_dir / "real.png"
    inside.write_bytes(image_bytes())
    (upload_dir / "inner_link.png").symlink_to(inside)
    for name in ("link.png", "inner_link.png"):
        response = client.post("/predict", data={"filename": name})
        assert response.status_code == 404, name
        assert response.get_json()["code"] == "unknown_filename"
    # The regular file next to them is served, so the refusals above are about the links.
    assert client.post("/predict", data={"filename": "real.png"}).status_code == 200
    assert all(Path(p).parent == upload_dir.resolve() for p in opened)


def test_a_configured_upload_folder_link_is_resolved_once(make_app, tmp_path, outside_secret):
    linked = tmp_path / "linked_uploads"
    linked.symlink_to(tmp_path)  # the folder that holds secret.png
    client = make_app(UPLOAD_DIR=str(linked)).test_client()
    # The configured folder is the administrator's choice; links *inside* it are refused.
    assert client.post("/predict", data={"filename": "secret.png"}).status_code == 200
    assert get_state(client.application).upload_dir == tmp_path.resolve()


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing"])
def test_non_regular_names_get_404(client, upload_dir, kind):
    name = f"thing_{kind}"
    if kind == "directory":
        (upload_dir / name).mkdir()
    elif kind == "fifo":
        os.mkfifo(upload_dir / name)
    response = client.post("/predict", data={"filename": name})
    assert response.status_code == 404
    assert response.get_json()["code"] == "unknown_filename"


# -- storage --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_store_saves_under_a_random_name_and_nothing_else(client, upload_dir, path):
    data = image_bytes(fmt="PNG")
    before = snapshot(upload_dir)
    response = client.post(
        path, data={"file": (io.BytesIO(data), "../../evil name.png"), "store": "1"}
    )
    assert response.status_code == 200
    name = response.get_json()["filename"]
    assert re.fullmatch(r"[0-9a-f]{32}\.png", name)
    added = set(snapshot(upload_dir)) - set(before)
    assert added == {str(upload_dir / name)}
    assert (upload_dir / name).read_bytes() == data
    assert (upload_dir / name).stat().st_mode & 0o777 == 0o600
    assert not any("evil" in p for p in snapshot(upload_dir.parent))
    # The stored name works in a later call and gives the same answer.
    again = client.post(path, data={"filename": name}).get_json()
    assert again["probability"] == response.get_json()["probability"]
    assert again["filename"] == name
    # Storing the same bytes twice gives two names.
    second = client.post(path, data={"file": (io.BytesIO(data), "x.png"), "store": "1"})
    assert second.get_json()["filename"] != name


def test_store_creates_the_folder_only_when_needed(make_app, tmp_path):
    folder = tmp_path / "later"
    client = make_app(UPLOAD_DIR=str(folder)).test_client()
    client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.png")})
    assert not folder.exists()
    client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.png"), "store": "1"})
    assert folder.is_dir() and len(list(folder.iterdir())) == 1


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"), ("TIFF", ".tif")]
)
def test_stored_extension_comes_from_the_content(client, upload_dir, fmt, suffix):
    data = image_bytes(fmt=fmt)
    response = client.post(
        "/predict", data={"file": (io.BytesIO(data), "claims.exe"), "store": "1"}
    )
    assert response.get_json()["filename"].endswith(suffix)


def test_failed_requests_store_nothing(client, upload_dir):
    bad = [
        {"file": (io.BytesIO(b"not an image"), "x.png"), "store": "1"},
        {
            "file": (io.BytesIO(image_bytes()), "x.png"),
            "store": "1",
            "use_clinical": "1",
            "composition": "sollid",
        },
        {"file": (io.BytesIO(image_bytes()), "x.png"), "store": "1", "roi": "1,2"},
    ]
    for data in bad:
        assert client.post("/explain", data=data).status_code in (400, 415, 422)
    assert list(upload_dir.iterdir()) == []


def test_no_stray_files_anywhere(client, upload_dir, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", str(temp))

    # Werkzeug spools uploads over 500 kB to a temporary file unless the app keeps them in
    # memory; make that path fail loudly.
    def no_temp_files(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr("werkzeug.formparser.SpooledTemporaryFile", no_temp_files)
    big = io.BytesIO()
    Image.frombytes("L", (1200, 900), os.urandom(1200 * 900)).save(big, format="PNG")
    assert len(big.getvalue()) > 600_000
    before = snapshot(upload_dir, work, temp)
    requests = [
        ("/predict", {"file": FileStorage(io.BytesIO(big.getvalue()), "big.png")}),
        ("/explain", {"file": FileStorage(io.BytesIO(image_bytes()), "a.png")}),
        ("/explain", {"file": FileStorage(io.BytesIO(b"junk"), "a.png")}),
        ("/predict", {"filename": "../x"}),
        ("/predict", {"filename": "absent.png"}),
    ]
    statuses = []
    for path, data in requests:
        # Encoded here: the test client would itself spool a large body to a temporary file.
        boundary, body = encode_multipart(data)
        content_type = f"multipart/form-data; boundary={boundary}"
        statuses.append(client.post(path, data=body, content_type=content_type).status_code)
    assert statuses == [200, 200, 415, 400, 404]
    assert snapshot(upload_dir, work, temp) == before


# -- decompression bombs and limits ---------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A real, fully valid 1-bit PNG of zeros: a few kB on the wire, ``width*height`` pixels."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (8_000, 6_000)])
def test_decompression_bombs_get_413_without_decoding(client, monkeypatch, path, width, height):
    data = bomb_png(width, height)
    assert len(data) < 200_000
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    response = client.post(path, data={"file": (io.BytesIO(data), "bomb.png")})
    assert response.status_code == 413
    body = response.get_json()
    assert body["code"] == "image_too_large" and body["error"].startswith("image:")
    assert decoded == []  # refused from the header, before any pixel was decoded


def test_pixel_limit_from_the_environment(monkeypatch, tiny_run, upload_dir):
    monkeypatch.setenv("THYROCAM_MAX_PIXELS", str(100 * 100))
    app = create_app({"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(upload_dir)})
    client = app.test_client()
    ok = client.post("/predict", data={"file": (io.BytesIO(image_bytes(size=(100, 100))), "a.png")})
    assert ok.status_code == 200
    big = client.post(
        "/predict", data={"file": (io.BytesIO(image_bytes(size=(101, 100))), "a.png")}
    )
    assert big.status_code == 413 and big.get_json()["code"] == "image_too_large"


def test_request_size_limit_from_the_environment(monkeypatch, tiny_run, upload_dir):
    monkeypatch.setenv("THYROCAM_MAX_UPLOAD_MB", "0.05")  # 52 428 bytes
    app = create_app({"TESTING": True, "CHECKPOINT": str(tiny_run), "UPLOAD_DIR": str(upload_dir)})
    client = app.test_client()
    small = image_bytes(size=(64, 64))
    assert client.post("/predict", data={"file": (io.BytesIO(small), "a.png")}).status_code == 200
    large = os.urandom(60_000)
    response = client.post("/predict", data={"file": (io.BytesIO(large), "a.png")})
    assert response.status_code == 413
    assert response.is_json and response.get_json()["code"] == "request_too_large"


def test_stored_file_over_the_limit_gets_413(make_app, upload_dir):
    (upload_dir / "huge.png").write_bytes(image_bytes() + b"\x00" * 5000)
    client = make_app(MAX_CONTENT_LENGTH=4096).test_client()
    response = client.post("/predict", data={"filename": "huge.png"})
    assert response.status_code == 413
    assert response.get_json()["code"] == "image_too_large"


# -- what decoding accepts ------------------------------------------------------------------
def _exif_rotated_jpeg() -> bytes:
    img = Image.new("RGB", (80, 40))
    img.paste((255, 255, 255), (0, 0, 20, 40))  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_applied(client):
    response = client.post(
        "/explain", data={"file": (io.BytesIO(_exif_rotated_jpeg()), "phone.jpg")}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["cam"]["frame_size"] == [40, 80]  # displayed upright: 40 wide, 80 tall
    frame = Image.open(io.BytesIO(base64.b64decode(body["frame_png_base64"].split(",")[1])))
    assert frame.size == (40, 80)
    # Rotated clockwise, the left band is now at the top.
    assert frame.convert("L").getpixel((20, 5)) > 200 and frame.convert("L").getpixel((20, 75)) < 50


def _sixteen_bit_png() -> bytes:
    img = Image.new("I;16", (64, 48))
    img.putdata([(i * 37) % 65536 for i in range(64 * 48)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


MODES = [
    ("grayscale", image_bytes("L")),
    ("grayscale+alpha", image_bytes("LA")),
    ("rgba", image_bytes("RGBA")),
    ("palette", image_bytes("P")),
    ("1-bit", image_bytes("1")),
    ("16-bit", _sixteen_bit_png()),
    ("cmyk jpeg", image_bytes("CMYK", fmt="JPEG")),
    ("tiff", image_bytes("RGB", fmt="TIFF")),
    ("bmp", image_bytes("RGB", fmt="BMP")),
    ("gif", image_bytes("P", fmt="GIF")),
    ("webp", image_bytes("RGB", fmt="WEBP")),
]


@pytest.mark.parametrize(("what", "data"), MODES, ids=[m[0] for m in MODES])
def test_image_modes_are_accepted(client, what, data):
    response = client.post("/explain", data={"file": (io.BytesIO(data), "image")})
    assert response.status_code == 200, (what, response.get_json())
    assert response.get_json()["cam"]["frame_size"] == list(Image.open(io.BytesIO(data)).size)
