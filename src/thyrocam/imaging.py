"""Decode and validate images, and the one preprocessing definition.

Every face of thyrocam (training, evaluation, CLI, web, notebook) goes through
:class:`Preprocessing`, which turns a frame into the network input *and* records
where that input sits in the frame (:class:`FrameMapping`), so a CAM computed on
the input can be put back on the original frame exactly.

Three modes:

* ``"center_crop"`` — the seed's ``Resize(S*256/224)`` + ``CenterCrop(S)``;
  cheap, but on a 560x360 two-panel DDTI frame it cuts the sides away.
* ``"letterbox"`` — the whole frame scaled to fit ``S x S``, padded with black.
* ``"roi"`` — a square crop around a region of interest (the nodule polygon in
  training, a box given at inference) with a margin, scaled to ``S x S``.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import IO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from thyrocam.errors import ImageError, ImageTooLargeError, InputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_MAX_PIXELS",
    "PREPROCESS_MODES",
    "Box",
    "ImageSource",
    "FrameMapping",
    "Preprocessing",
    "load_image",
    "preprocess_image",
    "to_tensor",
    "denormalize",
    "polygons_to_mask",
    "polygons_bbox",
    "nodule_box",
    "parse_box",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# 40 Mpx: far above any ultrasound frame (DDTI is 0.2 Mpx), far below what a
# decompression bomb expands to.
DEFAULT_MAX_PIXELS = 40_000_000
PREPROCESS_MODES = ("center_crop", "letterbox", "roi")

PreprocessMode = Literal["center_crop", "letterbox", "roi"]
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in frame pixels
ImageSource = str | os.PathLike | bytes | bytearray | IO[bytes] | Image.Image


def load_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``src`` into an 8-bit RGB PIL image, EXIF orientation applied.

    Accepts a path, bytes, a binary file object or a PIL image. Grayscale,
    palette, RGBA (composited on black) and 16-bit images are converted.

    Raises:
        ImageError: not a decodable image (or the path does not exist).
        ImageTooLargeError: more than ``max_pixels`` pixels (checked before decoding).
    """
    if isinstance(src, Image.Image):
        img = src
    else:
        try:
            if isinstance(src, (bytes, bytearray)):
                fp: IO[bytes] | str | os.PathLike = io.BytesIO(bytes(src))
            else:
                fp = src
            with warnings.catch_warnings():
                # Pillow warns between its limit and twice it; the explicit pixel
                # check below decides instead (with a clear error), so silence it.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(fp)
        except FileNotFoundError:
            raise ImageError(
                f"image: file not found: {os.fspath(src)!s}",  # type: ignore[arg-type]
                field="image",
                value=str(src),
                allowed="an existing image file",
            ) from None
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                f"image: too many pixels ({exc}); allowed: at most {max_pixels} pixels",
                field="image",
                value=None,
                allowed=f"<= {max_pixels} pixels",
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageError(
                f"image: not a decodable image ({exc.__class__.__name__}); "
                "allowed: PNG, JPEG, BMP, TIFF, GIF or WebP",
                field="image",
                value=None,
                allowed="PNG, JPEG, BMP, TIFF, GIF, WebP",
            ) from None
    width, height = img.size
    # The header is read lazily, so the size is known before any pixel is decoded.
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image: {width}x{height} = {width * height} pixels; allowed: at most {max_pixels}",
            field="image",
            value=f"{width}x{height}",
            allowed=f"<= {max_pixels} pixels",
        )
    try:
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(
            f"image: the data is truncated or corrupt ({exc}); allowed: a complete image file",
            field="image",
            value=None,
            allowed="a complete image file",
        ) from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float scans: stretch the used range to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


@dataclass(frozen=True)
class FrameMapping:
    """Where the ``S x S`` network input sits in the original frame.

    Input pixel ``u`` (centre ``u + 0.5``) shows frame position
    ``x = box[0] + (u + 0.5) * (box[2] - box[0]) / S``; likewise for ``v``/``y``.
    The box may reach past the frame's edges (letterbox padding, a ROI near a
    border): that part of the input is black padding.
    """

    frame_size: tuple[int, int]  # (W, H) of the original frame
    input_size: int  # S
    box: Box

    def input_to_frame(self, u: float, v: float) -> tuple[float, float]:
        """Input pixel coordinates (continuous, pixel centres at +0.5) -> frame coordinates."""
        x0, y0, x1, y1 = self.box
        s = self.input_size
        return x0 + u * (x1 - x0) / s, y0 + v * (y1 - y0) / s

    def frame_to_input(self, x: float, y: float) -> tuple[float, float]:
        """Frame coordinates -> input pixel coordinates (inverse of :meth:`input_to_frame`)."""
        x0, y0, x1, y1 = self.box
        s = self.input_size
        return (x - x0) * s / (x1 - x0), (y - y0) * s / (y1 - y0)

    def cam_to_frame(self, cam: np.ndarray) -> np.ndarray:
        """Resample a map over the input (``(h, w)``, any resolution) onto the frame.

        Returns:
            float32 ``(H, W)`` at the frame's size; zero where the frame lies
            outside what the network saw (the cropped-away sides).
        """
        width, height = self.frame_size
        x0, y0, x1, y1 = self.box
        xs = (np.arange(width, dtype=np.float64) + 0.5 - x0) / (x1 - x0) * 2.0 - 1.0
        ys = (np.arange(height, dtype=np.float64) + 0.5 - y0) / (y1 - y0) * 2.0 - 1.0
        grid = torch.empty(1, height, width, 2, dtype=torch.float32)
        grid[..., 0] = torch.from_numpy(xs).float()[None, :]
        grid[..., 1] = torch.from_numpy(ys).float()[:, None]
        src = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
        # align_corners=False: the map's pixel centres sit at (i + 0.5) / n, like the
        # input's. Border padding holds the edge value up to the edge of what the
        # network saw; past it (the cropped-away part of the frame) the map is zero.
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = (np.abs(xs)[None, :] <= 1.0) & (np.abs(ys)[:, None] <= 1.0)
        return np.where(inside, out[0, 0].numpy(), 0.0).astype(np.float32)

    def visible_mask(self) -> np.ndarray:
        """Boolean ``(H, W)``: the part of the frame the network saw."""
        width, height = self.frame_size
        x0, y0, x1, y1 = self.box
        xs = np.arange(width) + 0.5
        ys = np.arange(height) + 0.5
        return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]

    def frame_box_to_input(self, box: Box) -> Box:
        """A box in frame pixels -> the same box in input pixels."""
        u0, v0 = self.frame_to_input(box[0], box[1])
        u1, v1 = self.frame_to_input(box[2], box[3])
        return (u0, v0, u1, v1)

    def to_dict(self) -> dict:
        return {
            "frame_size": list(self.frame_size),
            "input_size": self.input_size,
            "box": list(self.box),
        }


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing preset stored with every run.

    Attributes:
        mode: ``"center_crop"`` (seed), ``"letterbox"`` (whole frame) or ``"roi"``.
        size: side ``S`` of the square network input, in pixels.
        margin: for ``"roi"``, context added on each side, as a fraction of the
            box's longer side (0.5 adds half the box on every side).
    """

    mode: PreprocessMode = "letterbox"
    size: int = 224
    margin: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise InputError(
                f"preprocessing mode: got {self.mode!r}; allowed: {', '.join(PREPROCESS_MODES)}",
                field="mode",
                value=self.mode,
                allowed=PREPROCESS_MODES,
            )
        if not (16 <= int(self.size) <= 2048):
            raise InputError(
                f"image size: got {self.size!r}; allowed: an integer from 16 to 2048",
                field="size",
                value=self.size,
                allowed="16..2048",
            )
        if not (0.0 <= float(self.margin) <= 5.0):
            raise InputError(
                f"roi margin: got {self.margin!r}; allowed: a number from 0 to 5",
                field="margin",
                value=self.margin,
                allowed="0..5",
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(mode=data["mode"], size=int(data["size"]), margin=float(data.get("margin", 0.5)))

    def source_box(self, frame_size: tuple[int, int], *, roi: Box | None = None) -> Box:
        """The frame region (possibly past its edges) that becomes the input.

        In ``"roi"`` mode without a ``roi`` the whole frame is letterboxed.
        """
        width, height = frame_size
        s = self.size
        if self.mode == "roi" and roi is not None:
            x0, y0, x1, y1 = _check_box(roi, frame_size)
            side = max(x1 - x0, y1 - y0, 8.0) * (1.0 + 2.0 * self.margin)
            cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
            left, top = round(cx - side / 2.0), round(cy - side / 2.0)
            side_i = max(round(side), 1)
            return (float(left), float(top), float(left + side_i), float(top + side_i))
        if self.mode == "center_crop":
            rw, rh, left, top = _center_crop_geometry(frame_size, s)
            sx, sy = width / rw, height / rh
            return (left * sx, top * sy, (left + s) * sx, (top + s) * sy)
        rw, rh = _letterbox_size(frame_size, s)
        ox, oy = (s - rw) // 2, (s - rh) // 2
        sx, sy = width / rw, height / rh
        return (-ox * sx, -oy * sy, (s - ox) * sx, (s - oy) * sy)

    def apply(
        self, img: Image.Image, *, roi: Box | None = None
    ) -> tuple[Image.Image, FrameMapping]:
        """Crop/scale an RGB frame to the ``S x S`` input image (still PIL, 8-bit)."""
        s = self.size
        frame_size = img.size
        box = self.source_box(frame_size, roi=roi)
        if self.mode == "roi" and roi is not None:
            left, top, right, bottom = (int(v) for v in box)
            pad = max(0, -left, -top, right - img.width, bottom - img.height)
            padded = ImageOps.expand(img, border=pad, fill=(0, 0, 0)) if pad else img
            out = padded.crop((left + pad, top + pad, right + pad, bottom + pad)).resize(
                (s, s), Image.BILINEAR, reducing_gap=None
            )
        elif self.mode == "center_crop":
            rw, rh, left, top = _center_crop_geometry(frame_size, s)
            out = img.resize((rw, rh), Image.BILINEAR).crop((left, top, left + s, top + s))
        else:
            rw, rh = _letterbox_size(frame_size, s)
            out = Image.new("RGB", (s, s), (0, 0, 0))
            out.paste(img.resize((rw, rh), Image.BILINEAR), ((s - rw) // 2, (s - rh) // 2))
        return out, FrameMapping(frame_size=frame_size, input_size=s, box=box)

    def __call__(
        self, src: ImageSource, *, roi: Box | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> tuple[torch.Tensor, FrameMapping]:
        """Decode and preprocess one image.

        Returns:
            ``(x, mapping)`` with ``x`` a float32 ``(3, S, S)`` tensor normalised
            with the ImageNet mean/std.
        """
        img = load_image(src, max_pixels=max_pixels)
        out, mapping = self.apply(img, roi=roi)
        return to_tensor(out), mapping


def _center_crop_geometry(frame_size: tuple[int, int], s: int) -> tuple[int, int, int, int]:
    """The seed's Resize(S*256/224) + CenterCrop(S), as torchvision computes it."""
    width, height = frame_size
    resize = int(s * 256 / 224)
    # torchvision Resize(int): shorter side -> R, longer side -> int(R * long / short).
    if width <= height:
        rw, rh = resize, int(resize * height / width)
    else:
        rw, rh = int(resize * width / height), resize
    return rw, rh, int(round((rw - s) / 2.0)), int(round((rh - s) / 2.0))


def _letterbox_size(frame_size: tuple[int, int], s: int) -> tuple[int, int]:
    width, height = frame_size
    scale = s / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_box(box: Sequence[float], frame_size: tuple[int, int]) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(
            f"roi: got {box!r}; allowed: four numbers x0, y0, x1, y1 in frame pixels",
            field="roi",
            value=box,
            allowed="x0,y0,x1,y1",
        ) from None
    width, height = frame_size
    finite = all(math.isfinite(v) for v in (x0, y0, x1, y1))
    if not finite or x1 <= x0 or y1 <= y0 or x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InputError(
            f"roi: got {box!r}; allowed: x0 < x1, y0 < y1, overlapping the {width}x{height} frame",
            field="roi",
            value=box,
            allowed=f"a box overlapping the {width}x{height} frame",
        )
    return (x0, y0, x1, y1)


def parse_box(text: str | Sequence[float] | None) -> Box | None:
    """``"x0,y0,x1,y1"`` (or a sequence of four numbers) -> a box; ``None``/``""`` -> ``None``."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(
            f"roi: got {text!r}; allowed: four numbers 'x0,y0,x1,y1' in frame pixels",
            field="roi",
            value=text,
            allowed="x0,y0,x1,y1",
        )
    return values  # type: ignore[return-value]


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 ``(3, H, W)`` normalised with the ImageNet mean/std."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (arr - mean) / std


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Normalised ``(3, H, W)`` tensor -> uint8 ``(H, W, 3)`` array (for display)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    arr = (x.detach() * std + mean).clamp(0, 1).mul(255).round().byte()
    return arr.permute(1, 2, 0).cpu().numpy()


def preprocess_image(
    src: ImageSource,
    *,
    size: int = 224,
    mode: PreprocessMode = "center_crop",
    roi: Box | None = None,
    margin: float = 0.5,
) -> torch.Tensor:
    """Decode and preprocess one image to the network input.

    Args:
        src: a path, bytes, a binary file object or a PIL image.
        size: side ``S`` of the square output.
        mode: ``"center_crop"`` (the seed's Resize+CenterCrop), ``"letterbox"`` or ``"roi"``.
        roi: ``(x0, y0, x1, y1)`` in frame pixels, for ``mode="roi"``.
        margin: context around the ROI, as a fraction of its longer side.

    Returns:
        float32 tensor ``(3, S, S)``, ImageNet-normalised. Use
        :class:`Preprocessing` directly to also get the :class:`FrameMapping`.
    """
    x, _ = Preprocessing(mode=mode, size=size, margin=margin)(src, roi=roi)
    return x


def polygons_to_mask(
    polygons: Sequence[Sequence[tuple[float, float]]], *, size: tuple[int, int]
) -> np.ndarray:
    """Rasterise nodule outlines into a boolean ``(H, W)`` mask (``size`` is ``(W, H)``)."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for poly in polygons:
        if len(poly) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in poly], fill=1, outline=1)
    return np.asarray(mask, dtype=bool)


def polygons_bbox(polygons: Sequence[Sequence[tuple[float, float]]]) -> Box | None:
    """Bounding box ``(x0, y0, x1, y1)`` around all points, or ``None`` without points."""
    points = [p for poly in polygons for p in poly]
    if not points:
        return None
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def nodule_box(polygons: Sequence[Sequence[tuple[float, float]]]) -> Box | None:
    """The box around the largest outline: the region of interest of one view.

    A two-panel DDTI frame outlines the same nodule once per panel; a box around
    every outline would span both panels and shrink the nodule in the crop.
    """
    outlines = [poly for poly in polygons if len(poly) >= 3]
    if not outlines:
        return polygons_bbox(polygons)

    def area(poly: Sequence[tuple[float, float]]) -> float:
        xs = np.array([float(p[0]) for p in poly])
        ys = np.array([float(p[1]) for p in poly])
        return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))

    return polygons_bbox([max(outlines, key=area)])

