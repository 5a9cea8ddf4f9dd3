"""Ultrasound-appropriate augmentation, applied jointly to an image and its nodule mask.

Built on ``torchvision.transforms.v2`` rather than albumentations or usaugment:
it is already a dependency (no new package for users to install), it transforms
an image and a :class:`~torchvision.tv_tensors.Mask` together with the same
random geometry (so an outline stays on its nodule), and it works on tensors.
The two ultrasound-specific effects it lacks (speckle, depth attenuation) are
small :class:`~torchvision.transforms.v2.Transform` subclasses below that touch
the image only.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["Speckle", "DepthGain", "GainContrast", "ultrasound_augmentation"]


class Speckle(v2.Transform):
    """Multiplicative noise ``x * (1 + sigma * n)``, ``sigma ~ U(0, max_sigma)``.

    Speckle is multiplicative (bright tissue is noisier than dark fluid); its
    strength varies with the scanner, probe frequency and post-processing.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, *, max_sigma: float = 0.15) -> None:
        super().__init__()
        self.max_sigma = float(max_sigma)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"sigma": float(torch.empty(1).uniform_(0.0, self.max_sigma))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        noise = torch.randn_like(inpt[:1])  # one field for all channels: the frame is grey
        return (inpt * (1.0 + params["sigma"] * noise)).clamp(0.0, 1.0)


class DepthGain(v2.Transform):
    """A smooth gain ramp over depth (rows): ``x * exp(a * (y - 0.5))``, ``a ~ U(-s, s)``.

    Mimics depth attenuation left uncorrected by the time-gain compensation a
    sonographer sets by hand: frames differ in how much darker the deep rows are.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, *, strength: float = 0.4) -> None:
        super().__init__()
        self.strength = float(strength)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"a": float(torch.empty(1).uniform_(-self.strength, self.strength))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        rows = inpt.shape[-2]
        ramp = torch.exp(params["a"] * (torch.linspace(0.0, 1.0, rows) - 0.5)).view(rows, 1)
        return (inpt * ramp).clamp(0.0, 1.0)


class GainContrast(v2.Transform):
    """Overall gain, offset and gamma (the dynamic-range / gain knobs of the scanner)."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(
        self, *, gain: float = 0.2, offset: float = 0.08, gamma: tuple[float, float] = (0.7, 1.4)
    ) -> None:
        super().__init__()
        self.gain, self.offset, self.gamma = float(gain), float(offset), gamma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        u = torch.rand(3).tolist()
        return {
            "gain": 1.0 + self.gain * (2 * u[0] - 1),
            "offset": self.offset * (2 * u[1] - 1),
            "gamma": self.gamma[0] + (self.gamma[1] - self.gamma[0]) * u[2],
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = inpt.clamp(0.0, 1.0) ** params["gamma"] * params["gain"] + params["offset"]
        return out.clamp(0.0, 1.0)


def ultrasound_augmentation() -> v2.Compose:
    """Flip, small affine/scale jitter, depth gain, speckle and gain/contrast.

    Call it on ``(tv_tensors.Image, tv_tensors.Mask)`` with the image in ``[0, 1]``:
    the geometry moves both, the intensity effects the image only. No vertical
    flip or large rotation: depth is meaningful in ultrasound (skin at the top,
    shadows below calcifications).
    """
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(0.5),
            v2.RandomAffine(degrees=8.0, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            DepthGain(strength=0.4),
            Speckle(max_sigma=0.15),
            GainContrast(),
        ]
    )
