"""Decoding, the three preprocessing modes, and the CAM -> frame mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from thyrocam.errors import ImageError, ImageTooLargeError, InputError
from thyrocam.imaging import (
    Preprocessing,
    load_image,
    parse_box,
    polygons_bbox,
    polygons_to_mask,
    preprocess_image,
)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "img",
    [
        Image.new("L", (56, 36), 90),
        Image.new("RGBA", (56, 36), (10, 20, 30, 255)),
        Image.new("P", (56, 36), 3),
        Image.fromarray(np.full((36, 56), 40000, np.uint16)),
        Image.new("RGB", (56, 36), (1, 2, 3)),
    ],
    ids=["gray", "rgba", "palette", "16bit", "rgb"],
)
def test_load_image_accepts_common_modes(img: Image.Image) -> None:
    out = load_image(_png(img))
    assert out.mode == "RGB" and out.size == (56, 36)


def test_load_image_sources_and_exif(tmp_path) -> None:
    img = Image.new("RGB", (60, 30), (200, 0, 0))
    path = tmp_path / "a.png"
    img.save(path)
    assert load_image(path).size == (60, 30)
    assert load_image(str(path)).size == (60, 30)
    with open(path, "rb") as fh:
        assert load_image(fh).size == (60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (30, 60)


@pytest.mark.parametrize(
    "data,error",
    [
        (b"not an image", ImageError),
        (b"", ImageError),
        (_png(Image.new("L", (10, 10)))[:40], ImageError),
    ],
    ids=["text", "empty", "truncated"],
)
def test_load_image_rejects_garbage(data: bytes, error: type) -> None:
    with pytest.raises(error, match="image"):
        load_image(data)


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = _png(Image.new("L", (400, 300)))
    with pytest.raises(ImageTooLargeError, match="120000"):
        load_image(data, max_pixels=100_000)
    assert issubclass(ImageTooLargeError, ValueError)


def test_center_crop_matches_torchvision_resize_and_center_crop() -> None:
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (360, 560, 3), dtype=np.uint8))
    ours = preprocess_image(img, size=224, mode="center_crop")
    tv = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )(img)
    assert ours.shape == (3, 224, 224)
    # PIL bilinear vs torchvision's antialiased resize differ slightly, not in geometry.
    assert float((ours - tv).abs().mean()) < 0.05


def _marker_frame(x: int, y: int, size=(560, 360)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[y - 3 : y + 4, x - 3 : x + 4] = 255
    return Image.fromarray(arr)


@pytest.mark.parametrize("mode", ["center_crop", "letterbox", "roi"])
@pytest.mark.parametrize("size", [64, 224])
def test_cam_peak_in_the_input_lands_on_the_matching_frame_place(mode: str, size: int) -> None:
    """Put a bright mark in the frame, find it in the network input, build a CAM
    peaked there, map the CAM back: its peak must land on the mark."""
    fx, fy = 300, 170
    frame = _marker_frame(fx, fy)
    roi = (250.0, 120.0, 350.0, 230.0) if mode == "roi" else None
    pre = Preprocessing(mode=mode, size=size, margin=0.3)
    x, mapping = pre(frame, roi=roi)
    brightness = x.mean(0).numpy()
    v, u = np.unravel_index(np.argmax(brightness), brightness.shape)
    # a CAM (as the engine returns it, at input resolution) peaked where the mark is
    yy, xx = np.mgrid[0:size, 0:size]
    cam = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * (size / 40) ** 2)).astype(np.float32)
    on_frame = mapping.cam_to_frame(cam)
    assert on_frame.shape == (360, 560)
    py, px = np.unravel_index(np.argmax(on_frame), on_frame.shape)
    tolerance = 560 / size + 2  # one input pixel, in frame pixels
    assert abs(px - fx) <= tolerance and abs(py - fy) <= tolerance
    # and the explicit coordinate mapping agrees
    mx, my = mapping.input_to_frame(u + 0.5, v + 0.5)
    assert abs(mx - fx) <= tolerance and abs(my - fy) <= tolerance


def test_center_crop_cam_is_zero_where_the_frame_was_cut_away() -> None:
    pre = Preprocessing(mode="center_crop", size=224)
    _, mapping = pre(Image.new("RGB", (560, 360)))
    on_frame = mapping.cam_to_frame(np.ones((7, 7), np.float32))
    assert on_frame[:, :50].max() == 0.0 and on_frame[:, -50:].max() == 0.0
    assert on_frame[180, 280] == pytest.approx(1.0)


def test_letterbox_keeps_the_whole_frame_and_pads_black() -> None:
    x, mapping = Preprocessing(mode="letterbox", size=112)(Image.new("RGB", (560, 360), (255,) * 3))
    white = x.mean(0) > 2.0
    assert white[56].all()  # full width is frame
    assert not white[0].any() and not white[-1].any()  # top/bottom padding
    x0, y0, x1, y1 = mapping.box
    assert x0 == pytest.approx(0) and x1 == pytest.approx(560) and y0 < 0 < 360 < y1


def test_roi_mode_without_box_letterboxes_and_bad_boxes_are_errors() -> None:
    pre = Preprocessing(mode="roi", size=64)
    _, mapping = pre(Image.new("RGB", (560, 360)))
    assert mapping.box[2] - mapping.box[0] == pytest.approx(560)
    with pytest.raises(InputError, match="roi"):
        pre(Image.new("RGB", (560, 360)), roi=(10, 10, 5, 50))
    with pytest.raises(InputError, match="roi"):
        pre(Image.new("RGB", (560, 360)), roi=(600, 10, 700, 50))


@pytest.mark.parametrize(
    "kwargs,field",
    [({"mode": "fisheye"}, "mode"), ({"size": 4}, "size"), ({"margin": -1}, "margin")],
)
def test_preprocessing_rejects_bad_settings(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        Preprocessing(**kwargs)
    assert info.value.field == field and "allowed" in str(info.value)


def test_parse_box() -> None:
    assert parse_box("1, 2,3,4") == (1.0, 2.0, 3.0, 4.0)
    assert parse_box("") is None and parse_box(None) is None
    for bad in ("1,2,3", "a,b,c,d", "1,2,3,nan"):
        with pytest.raises(InputError, match="roi"):
            parse_box(bad)


def test_polygons_to_mask_and_bbox() -> None:
    square = ((10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 20.0))
    mask = polygons_to_mask([square], size=(40, 30))
    assert mask.shape == (30, 40) and mask[15, 15] and not mask[5, 5]
    assert polygons_bbox([square]) == (10.0, 10.0, 20.0, 20.0)
    assert polygons_bbox([]) is None
    assert torch.is_tensor(preprocess_image(Image.new("RGB", (40, 30)), size=32))


def test_nodule_box_is_the_largest_outline_not_both_panels() -> None:
    from thyrocam.imaging import nodule_box

    left = ((40.0, 100.0), (100.0, 100.0), (100.0, 160.0), (40.0, 160.0))
    right = ((320.0, 90.0), (400.0, 90.0), (400.0, 170.0), (320.0, 170.0))
    assert nodule_box([left, right]) == (320.0, 90.0, 400.0, 170.0)
    assert polygons_bbox([left, right]) == (40.0, 90.0, 400.0, 170.0)
    assert nodule_box([]) is None


def test_outlines_by_area_orders_by_polygon_area_and_drops_degenerate_ones() -> None:
    from thyrocam.imaging import outline_boxes, outlines_by_area

    # The wide, thin triangle has the larger box but the smaller area: area decides.
    thin = ((0.0, 0.0), (200.0, 0.0), (0.0, 10.0))  # area 1000, box 200 x 10
    square = ((50.0, 50.0), (90.0, 50.0), (90.0, 90.0), (50.0, 90.0))  # area 1600
    twin = ((150.0, 50.0), (190.0, 50.0), (190.0, 90.0), (150.0, 90.0))  # same area
    line = ((0.0, 0.0), (5.0, 5.0))
    assert outlines_by_area([thin, line, square, twin]) == [square, twin, thin]
    assert outline_boxes([thin, square]) == [(50.0, 50.0, 90.0, 90.0), (0.0, 0.0, 200.0, 10.0)]
    assert outlines_by_area([line]) == []
