"""A torch Dataset over samples, through the one preprocessing definition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from thyrocam.clinical import FIELDS, encode_clinical_with_mask
from thyrocam.data.augment import ultrasound_augmentation
from thyrocam.data.samples import Sample
from thyrocam.imaging import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    FrameMapping,
    Preprocessing,
    load_frame,
    nodule_box,
    polygons_to_mask,
    to_tensor,
)

__all__ = ["DESCRIPTOR_FIELDS", "ThyroidDataset", "descriptor_targets", "sample_roi"]

# The four descriptors the image heads learn (same tuple as thyrocam.model's; the
# data layer sits below the model and cannot import it).
DESCRIPTOR_FIELDS = ("composition", "echogenicity", "margins", "calcifications")
Augmentation = Literal["basic", "ultrasound"]


def sample_roi(sample: Sample) -> Box | None:
    """The box around the sample's (largest) nodule outline, if it has any."""
    return nodule_box(sample.polygons)


def descriptor_targets(clinical: dict, cat_maps: dict) -> np.ndarray:
    """``(4,)`` int64: each field's index in ``cat_maps["fields"][field]``; -1: not recorded."""
    out = np.full(len(DESCRIPTOR_FIELDS), -1, dtype=np.int64)
    for j, field in enumerate(DESCRIPTOR_FIELDS):
        values = cat_maps["fields"][field]
        if clinical.get(field) in values:
            out[j] = values.index(clinical[field])
    return out


class ThyroidDataset(torch.utils.data.Dataset):
    """``(img (3, S, S), clin (D,), label ())`` triples, or dicts with every target.

    Decoded frames are kept in memory (a 560x360 frame is 0.6 MB), so each
    epoch costs only the crop/resize and the network.

    Args:
        samples: the examples (one image each).
        preprocessing: the run's preset; in ``"roi"`` mode the box comes from
            the sample's polygons (samples without one are letterboxed).
        cat_maps: the descriptor encoding.
        augment: training-time augmentation (see ``augmentation``), ROI jitter
            (shift and scale, so the model tolerates a user's loosely drawn
            box), and descriptors randomly set to missing (so the model learns
            to use the image when fields are absent, as in most of DDTI).
        augmentation: ``"basic"`` (horizontal flip, gain/offset on the
            normalised tensor: the seed's recipe) or ``"ultrasound"``
            (:func:`~thyrocam.data.augment.ultrasound_augmentation`: affine and
            scale jitter, depth gain, speckle, gain/contrast/gamma).
        field_dropout: per-field probability of hiding a descriptor when augmenting.
        roi_jitter: ``(shift, zoom)`` of the ROI jitter: the box's centre moves up to
            ``shift`` of its side each way, its side is scaled by ``0.85``-``zoom``.
        seed: seeds the augmentation stream.
        targets: yield dicts ``{"image", "clinical", "label" (NaN for a sample without
            one), "mask" (1, S, S),
            "has_mask" (), "descriptors" (4,) int64 (-1: not recorded)}``, plus
            ``"frame"`` (3, F, F) and ``"frame_mask"`` (1, F, F) when
            ``outline_input`` is given, instead of triples.
        outline_input: the whole-frame preprocessing the outline head also
            learns from (the input the automatic box is computed on).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        preprocessing: Preprocessing,
        cat_maps: dict,
        augment: bool = False,
        augmentation: Augmentation = "basic",
        field_dropout: float = 0.15,
        roi_jitter: tuple[float, float] = (0.15, 1.25),
        seed: int = 0,
        targets: bool = False,
        outline_input: Preprocessing | None = None,
    ) -> None:
        self.samples = list(samples)
        self.preprocessing = preprocessing
        self.cat_maps = cat_maps
        self.augment = augment
        self.augmentation = augmentation
        self.field_dropout = field_dropout
        self.roi_jitter = roi_jitter
        self.rng = np.random.default_rng(seed)
        self.targets = targets
        self.outline_input = outline_input
        self._us_augment = ultrasound_augmentation()
        self._frames: dict[int, Image.Image] = {}
        self._regions: dict[int, Box | None] = {}  # DICOM ultrasound tissue regions
        self._masks: dict[int, Image.Image | None] = {}
        self._encoded = [encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in self.samples]
        self._descriptors = [descriptor_targets(s.clinical, cat_maps) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def frame(self, i: int) -> Image.Image:
        """The decoded RGB frame of sample ``i`` (cached)."""
        if i not in self._frames:
            got = load_frame(self.samples[i].image_path)
            self._frames[i], self._regions[i] = got.image, got.region
        return self._frames[i]

    def region(self, i: int) -> Box | None:
        """The DICOM tissue region of sample ``i``: what the network sees, as at inference."""
        self.frame(i)
        return self._regions[i]

    def mask(self, i: int) -> Image.Image | None:
        """The nodule mask of sample ``i`` at the frame's size (``"L"``, 0/255), or ``None``.

        From the manifest's mask file when there is one, else the polygons.
        """
        if i not in self._masks:
            sample, size = self.samples[i], self.frame(i).size
            mask: Image.Image | None = None
            if sample.mask_path is not None:
                mask = Image.open(sample.mask_path).convert("L").resize(size, Image.NEAREST)
                mask = mask.point(lambda v: 255 if v > 127 else 0)
            elif any(len(p) >= 3 for p in sample.polygons):
                arr = polygons_to_mask(sample.polygons, size=size)
                mask = Image.fromarray(arr.astype(np.uint8) * 255)
            self._masks[i] = mask
        return self._masks[i]

    def preload(self) -> None:
        """Decode every frame now (so the first epoch is not also the decoding pass)."""
        for i in range(len(self)):
            self.frame(i)
            if self.targets:
                self.mask(i)

    def roi(self, i: int) -> Box | None:
        return sample_roi(self.samples[i]) if self.preprocessing.mode == "roi" else None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | dict:
        sample = self.samples[i]
        roi = self.roi(i)
        if self.augment and roi is not None:
            roi = self._jitter_box(roi)
        img, mapping = self.preprocessing.apply(self.frame(i), roi=roi, region=self.region(i))
        clin = self._encode_with_dropout(sample) if self.augment else self._encoded[i]
        # NaN: an unlabelled, outlined frame (the multi-task loss leaves it out of the BCE).
        label = torch.tensor(float("nan") if sample.label is None else float(sample.label))
        if not self.targets:
            x = to_tensor(img)
            if self.augment:
                x = self._basic_augment(x) if self.augmentation == "basic" else self._us(x)
            return x, torch.from_numpy(clin), label
        x, m = self._with_mask(i, img, mapping)
        item = {
            "image": x,
            "clinical": torch.from_numpy(clin),
            "label": label,
            "mask": m,
            "has_mask": torch.tensor(float(self.mask(i) is not None)),
            "descriptors": torch.from_numpy(self._descriptors[i]),
        }
        if self.outline_input is not None:
            frame_img, frame_map = self.outline_input.apply(
                self.frame(i), roi=None, region=self.region(i)
            )
            item["frame"], item["frame_mask"] = self._with_mask(i, frame_img, frame_map)
        return item

    def _with_mask(
        self, i: int, img: Image.Image, mapping: FrameMapping
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input tensor and its ``(1, S, S)`` mask in [0, 1], augmented together."""
        s = mapping.input_size
        mask = self.mask(i)
        if mask is None:
            m = torch.zeros(1, s, s)
        else:
            # The mask is resampled through the same frame box as the image.
            warped = mask.transform((s, s), Image.EXTENT, mapping.box, Image.BILINEAR, fillcolor=0)
            m = torch.from_numpy(np.asarray(warped, dtype=np.float32) / 255.0)[None]
        if not self.augment:
            return to_tensor(img), m
        if self.augmentation == "basic":
            x = to_tensor(img)
            if self.rng.random() < 0.5:
                x, m = torch.flip(x, dims=[2]), torch.flip(m, dims=[2])
            return self._gain(x), m
        raw = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        xi, mi = self._us_augment(tv_tensors.Image(raw), tv_tensors.Mask(m))
        return _normalise(xi.as_subclass(torch.Tensor)), mi.as_subclass(torch.Tensor)

    def _us(self, x: torch.Tensor) -> torch.Tensor:
        raw = (x * _STD + _MEAN).clamp(0.0, 1.0)
        return _normalise(self._us_augment(tv_tensors.Image(raw)).as_subclass(torch.Tensor))

    def _basic_augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.rng.random() < 0.5:
            x = torch.flip(x, dims=[2])
        return self._gain(x)

    def _gain(self, x: torch.Tensor) -> torch.Tensor:
        gain = float(self.rng.uniform(0.8, 1.2))
        bias = float(self.rng.uniform(-0.2, 0.2))
        return x * gain + bias

    def _jitter_box(self, box: Box) -> Box:
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        shift, zoom = self.roi_jitter
        cx = (x0 + x1) / 2 + self.rng.uniform(-shift, shift) * w
        cy = (y0 + y1) / 2 + self.rng.uniform(-shift, shift) * h
        scale = self.rng.uniform(0.85, zoom)
        return (cx - w * scale / 2, cy - h * scale / 2, cx + w * scale / 2, cy + h * scale / 2)

    def _encode_with_dropout(self, sample: Sample) -> np.ndarray:
        clinical = dict(sample.clinical)
        for field in FIELDS:
            if self.rng.random() < self.field_dropout:
                clinical[field] = None
        return encode_clinical_with_mask(clinical, self.cat_maps)[0]


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` RGB -> ImageNet-normalised, like :func:`~thyrocam.imaging.to_tensor`."""
    return (x - _MEAN) / _STD
