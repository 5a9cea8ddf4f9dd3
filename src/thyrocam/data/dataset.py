"""A torch Dataset over samples, through the one preprocessing definition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from thyrocam.clinical import FIELDS, encode_clinical_with_mask
from thyrocam.data.samples import Sample
from thyrocam.imaging import Box, Preprocessing, load_image, nodule_box, to_tensor

__all__ = ["ThyroidDataset", "sample_roi"]


def sample_roi(sample: Sample) -> Box | None:
    """The box around the sample's (largest) nodule outline, if it has any."""
    return nodule_box(sample.polygons)


class ThyroidDataset(torch.utils.data.Dataset):
    """``(img (3, S, S), clin (D,), label ())`` triples.

    Decoded frames are kept in memory (a 560x360 frame is 0.6 MB), so each
    epoch costs only the crop/resize and the network.

    Args:
        samples: the examples (one image each).
        preprocessing: the run's preset; in ``"roi"`` mode the box comes from
            the sample's polygons (samples without one are letterboxed).
        cat_maps: the descriptor encoding.
        augment: training-time augmentation: horizontal flip, gain/contrast
            jitter, ROI jitter (shift and scale, so the model tolerates a
            user's loosely drawn box), and descriptors randomly set to missing
            (so the model learns to use the image when fields are absent, as in
            most of DDTI).
        field_dropout: per-field probability of hiding a descriptor when augmenting.
        seed: seeds the augmentation stream.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        preprocessing: Preprocessing,
        cat_maps: dict,
        augment: bool = False,
        field_dropout: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.preprocessing = preprocessing
        self.cat_maps = cat_maps
        self.augment = augment
        self.field_dropout = field_dropout
        self.rng = np.random.default_rng(seed)
        self._frames: dict[int, Image.Image] = {}
        self._encoded = [encode_clinical_with_mask(s.clinical, cat_maps)[0] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def frame(self, i: int) -> Image.Image:
        """The decoded RGB frame of sample ``i`` (cached)."""
        if i not in self._frames:
            self._frames[i] = load_image(self.samples[i].image_path)
        return self._frames[i]

    def preload(self) -> None:
        """Decode every frame now (so the first epoch is not also the decoding pass)."""
        for i in range(len(self)):
            self.frame(i)

    def roi(self, i: int) -> Box | None:
        return sample_roi(self.samples[i]) if self.preprocessing.mode == "roi" else None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sample = self.samples[i]
        roi = self.roi(i)
        if self.augment and roi is not None:
            roi = self._jitter_box(roi)
        img, _ = self.preprocessing.apply(self.frame(i), roi=roi)
        x = to_tensor(img)
        if self.augment:
            if self.rng.random() < 0.5:
                x = torch.flip(x, dims=[2])
            gain = float(self.rng.uniform(0.8, 1.2))
            bias = float(self.rng.uniform(-0.2, 0.2))
            x = x * gain + bias
            clin = self._encode_with_dropout(sample)
        else:
            clin = self._encoded[i]
        return x, torch.from_numpy(clin), torch.tensor(float(sample.label))

    def _jitter_box(self, box: Box) -> Box:
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        cx = (x0 + x1) / 2 + self.rng.uniform(-0.15, 0.15) * w
        cy = (y0 + y1) / 2 + self.rng.uniform(-0.15, 0.15) * h
        scale = self.rng.uniform(0.85, 1.25)
        return (cx - w * scale / 2, cy - h * scale / 2, cx + w * scale / 2, cy + h * scale / 2)

    def _encode_with_dropout(self, sample: Sample) -> np.ndarray:
        clinical = dict(sample.clinical)
        for field in FIELDS:
            if self.rng.random() < self.field_dropout:
                clinical[field] = None
        return encode_clinical_with_mask(clinical, self.cat_maps)[0]
