"""The one preprocessing definition and the mapping back to the frame.

Three modes:

* ``"center_crop"`` — the seed's ``Resize(S*256/224)`` + ``CenterCrop(S)``;
  cheap, but on a 560x360 two-panel DDTI frame it cuts the sides away.
* ``"letterbox"`` — the whole frame scaled to fit ``S x S``, padded with black.
* ``"roi"`` — a square crop around a region of interest (the nodule polygon in
  training, a box given at inference) with a margin, scaled to ``S x S``.

When the frame has an ultrasound tissue region (DICOM), each mode works on that
region alone, as if it were the whole image; the mapping still refers to the
whole frame, so overlays land on the original.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from thyrocam.errors import InputError, check_choice
from thyrocam.imaging.decode import DEFAULT_MAX_PIXELS, ImageSource, load_frame, load_image
from thyrocam.imaging.geometry import (
    Box,
    check_box,
    nodule_box,
    parse_box,
    polygons_bbox,
    polygons_to_mask,
)

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
PREPROCESS_MODES = ("center_crop", "letterbox", "roi")

PreprocessMode = Literal["center_crop", "letterbox", "roi"]


@dataclass(frozen=True)
class FrameMapping:
    """Where the ``S x S`` network input sits in the original frame.

    Input pixel ``u`` (centre ``u + 0.5``) shows frame position
    ``x = box[0] + (u + 0.5) * (box[2] - box[0]) / S``; likewise for ``v``/``y``.
    The box may reach past the frame's edges (letterbox padding, a ROI near a
    border): that part of the input is black padding. With a ``region`` (the
    ultrasound tissue region of a DICOM frame) the network was given that region
    alone, so everything outside it was black padding too.
    """

    frame_size: tuple[int, int]  # (W, H) of the original frame
    input_size: int  # S
    box: Box
    region: Box | None = None  # (x0, y0, x1, y1) the part of the frame the input was cut from

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
        inside &= self._region_mask()
        return np.where(inside, out[0, 0].numpy(), 0.0).astype(np.float32)

    def _region_mask(self) -> np.ndarray:
        """Boolean ``(H, W)``: inside :attr:`region` (everywhere without one)."""
        width, height = self.frame_size
        if self.region is None:
            return np.ones((height, width), dtype=bool)
        x0, y0, x1, y1 = self.region
        xs = np.arange(width) + 0.5
        ys = np.arange(height) + 0.5
        return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]

    def visible_mask(self) -> np.ndarray:
        """Boolean ``(H, W)``: the part of the frame the network saw."""
        width, height = self.frame_size
        x0, y0, x1, y1 = self.box
        xs = np.arange(width) + 0.5
        ys = np.arange(height) + 0.5
        seen = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
        return seen & self._region_mask()

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
            "region": list(self.region) if self.region is not None else None,
        }


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing preset stored with every run.

    Attributes:
        mode: ``"center_crop"`` (seed), ``"letterbox"`` (whole frame) or ``"roi"``.
        size: side ``S`` of the square network input, in pixels.
        margin: for ``"roi"``, context added on each side, as a fraction of the
            box's longer side (0.5 adds half the box on every side).
        min_side: for ``"roi"``, the crop's smallest side in frame pixels (0: no
            minimum). A nodule smaller than that keeps its size in the input
            instead of being scaled up to fill it: nodule size is a malignancy
            cue that margin-only crops normalise away.
    """

    mode: PreprocessMode = "letterbox"
    size: int = 224
    margin: float = 0.5
    min_side: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.mode, field="mode", allowed=PREPROCESS_MODES, label="preprocessing mode")
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
        if not (0.0 <= float(self.min_side) <= 100000.0):
            raise InputError(
                f"roi min_side: got {self.min_side!r}; allowed: a number of pixels >= 0",
                field="min_side",
                value=self.min_side,
                allowed=">= 0",
            )

    def to_dict(self) -> dict:
        data = asdict(self)
        if not self.min_side:
            data.pop("min_side")  # runs without it keep their three-key dict
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            mode=data["mode"],
            size=int(data["size"]),
            margin=float(data.get("margin", 0.5)),
            min_side=float(data.get("min_side", 0.0)),  # absent in runs before it existed
        )

    def source_box(self, frame_size: tuple[int, int], *, roi: Box | None = None) -> Box:
        """The frame region (possibly past its edges) that becomes the input.

        In ``"roi"`` mode without a ``roi`` the whole frame is letterboxed.
        """
        width, height = frame_size
        s = self.size
        if self.mode == "roi" and roi is not None:
            x0, y0, x1, y1 = check_box(roi, frame_size)
            side = max(max(x1 - x0, y1 - y0, 8.0) * (1.0 + 2.0 * self.margin), self.min_side)
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
        self, img: Image.Image, *, roi: Box | None = None, region: Box | None = None
    ) -> tuple[Image.Image, FrameMapping]:
        """Crop/scale an RGB frame to the ``S x S`` input image (still PIL, 8-bit).

        Args:
            img: the whole frame.
            roi: a box in whole-frame pixels (``"roi"`` mode; others crop around it too
                only through :class:`thyrocam.Predictor`).
            region: the part of the frame the network may see (an ultrasound tissue
                region); the mode is applied to that crop as if it were the image.
        """
        if region is not None:
            return self._apply_in_region(img, roi=roi, region=region)
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

    def _apply_in_region(
        self, img: Image.Image, *, roi: Box | None, region: Box
    ) -> tuple[Image.Image, FrameMapping]:
        """:meth:`apply` on the region's crop; the mapping shifted back to the whole frame."""
        rx0, ry0, rx1, ry1 = (int(round(v)) for v in region)
        crop = img.crop((rx0, ry0, rx1, ry1))
        local_roi = None
        if roi is not None:
            x0, y0, x1, y1 = check_box(roi, img.size)
            # The user's box is in whole-frame pixels; it must touch what the network sees.
            if x1 <= rx0 or y1 <= ry0 or x0 >= rx1 or y0 >= ry1:
                raise InputError(
                    f"roi: got {tuple(roi)!r}; allowed: a box overlapping the ultrasound "
                    f"tissue region ({rx0}, {ry0}, {rx1}, {ry1}) in frame pixels",
                    field="roi",
                    value=roi,
                    allowed=f"a box overlapping ({rx0}, {ry0}, {rx1}, {ry1})",
                )
            local_roi = (x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0)
        out, local = self.apply(crop, roi=local_roi)
        bx0, by0, bx1, by1 = local.box
        box = (bx0 + rx0, by0 + ry0, bx1 + rx0, by1 + ry0)
        mapping = FrameMapping(
            frame_size=img.size,
            input_size=self.size,
            box=box,
            region=(float(rx0), float(ry0), float(rx1), float(ry1)),
        )
        return out, mapping

    def __call__(
        self,
        src: ImageSource,
        *,
        roi: Box | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        frame: int = 0,
    ) -> tuple[torch.Tensor, FrameMapping]:
        """Decode and preprocess one image (or frame ``frame`` of a DICOM).

        A DICOM frame's ultrasound tissue region, when it has one, is what the
        network sees; ``roi`` is in whole-frame pixels either way.

        Returns:
            ``(x, mapping)`` with ``x`` a float32 ``(3, S, S)`` tensor normalised
            with the ImageNet mean/std.
        """
        got = load_frame(src, frame=frame, max_pixels=max_pixels)
        out, mapping = self.apply(got.image, roi=roi, region=got.region)
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
