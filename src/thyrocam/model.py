"""ThyroidNet: a torchvision ResNet over the image plus a small branch over the descriptors.

``model.cnn`` is the torchvision ResNet itself (its ``fc`` replaced by
``Identity`` so it returns pooled features), so the usual Grad-CAM layer is
``model.cnn.layer4[-1].conv2`` (resnet18) or ``.conv3`` (resnet50).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision import models

from thyrocam.errors import CheckpointError, InputError, check_choice

__all__ = [
    "ARCHS",
    "DECODERS",
    "POOLS",
    "FUSIONS",
    "DESCRIPTOR_FIELDS",
    "HEADS",
    "MODALITIES",
    "OutlineDecoder",
    "ThyroidNet",
    "default_target_layer",
    "descriptor_classes_from",
    "last_conv",
    "load_backbone_weights",
    "resolve_device",
]

log = logging.getLogger(__name__)

# "resnet10n": a narrow ResNet-10 (one BasicBlock per stage, widths 16-128), still a
# torchvision ResNet. ~1/30 of resnet18's compute: trained from scratch on a few
# hundred real frames it overfits less, and a 5-fold CV fits 2 CPU cores.
# "resnet10n16": the same with layer4 at stride 16 instead of 32 (its first block does
# not downsample), so layer4 -- the Grad-CAM layer -- is a 6x6 grid on a 96 px crop
# rather than 3x3. Same parameters; only the arch name tells the two apart.
ARCHS = ("resnet18", "resnet50", "resnet10n", "resnet10n16")
MODALITIES = ("both", "image", "clinical")
# How layer4's map becomes the image features: "mean" (torchvision's global average);
# "outline": the mean inside the model's own predicted outline, weighted by its
# probability (needs the outline head). Still one weighted average per channel, so
# Grad-CAM's gradient average keeps its meaning (a mean inside beside a mean outside
# did not: their gradients cancelled and 93 % of maps were empty).
POOLS = ("mean", "outline")
HEADS = ("malignancy", "outline", "descriptors")
# The four sonographic descriptors a radiologist reads off the image (sex and age are not).
DESCRIPTOR_FIELDS = ("composition", "echogenicity", "margins", "calcifications")
Arch = Literal["resnet18", "resnet50", "resnet10n", "resnet10n16"]
Modalities = Literal["both", "image", "clinical"]
Pool = Literal["mean", "outline"]
# How a "both" model joins the modalities: "joint" (one network trained end to end) or
# "stacked" (thyrocam.train.stacking.stacked_fusion: a descriptor regression plus a weight
# on an image network's logit, which the model keeps as its "image" output).
FUSIONS = ("joint", "stacked")
Fusion = Literal["joint", "stacked"]
# The outline head's decoder (OutlineDecoder): "fpn" (the presets') or "unet".
DECODERS = ("fpn", "unet")
Decoder = Literal["fpn", "unet"]


def _resnet10n(*, weights: None = None, width: int = 16, last_stride: int = 2) -> models.ResNet:
    """torchvision's ResNet class with one BasicBlock per stage and narrow stages
    (``last_stride=1``: layer4 keeps layer3's resolution)."""
    net = models.ResNet(models.resnet.BasicBlock, [1, 1, 1, 1])
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    block = models.resnet.BasicBlock
    net.layer1 = net._make_layer(block, width, 1)
    net.layer2 = net._make_layer(block, 2 * width, 1, stride=2)
    net.layer3 = net._make_layer(block, 4 * width, 1, stride=2)
    net.layer4 = net._make_layer(block, 8 * width, 1, stride=last_stride)
    net.fc = nn.Linear(8 * width, 1000)
    for m in net.modules():  # torchvision's init for the replaced layers
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


_BUILDERS = {
    "resnet18": models.resnet18,
    "resnet50": models.resnet50,
    "resnet10n": _resnet10n,
    "resnet10n16": functools.partial(_resnet10n, last_stride=1),
}
_IMAGENET = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
}
_scratch_notice_given = False


class ThyroidNet(nn.Module):
    """Image branch + descriptor branch, fused into one malignancy logit.

    Args:
        arch: ``"resnet18"`` or ``"resnet50"``.
        clinical_dim: length ``D`` of ``encode_clinical_with_mask``'s ``vec``.
        hidden: width of the descriptor branch.
        dropout: dropout before the fusion head.
        modalities: ``"both"``; ``"image"`` ignores the descriptors; ``"clinical"``
            ignores the image (for the modality ablation).
        heads: ``"malignancy"`` plus any of ``"outline"``, ``"descriptors"``.
        pool: how layer4 becomes the image features (:data:`POOLS`).
        fusion: how a ``"both"`` model joins the modalities (:data:`FUSIONS`).
        decoder: the outline head's decoder (:data:`DECODERS`).

    Example:
        >>> model = ThyroidNet(arch="resnet18", clinical_dim=28)
        >>> model(torch.zeros(2, 3, 64, 64), torch.zeros(2, 28)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        *,
        arch: Arch = "resnet18",
        clinical_dim: int = 28,
        hidden: int = 64,
        dropout: float = 0.2,
        modalities: Modalities = "both",
        heads: tuple[str, ...] | list[str] = ("malignancy",),
        descriptor_classes: dict[str, int] | None = None,
        pool: Pool = "mean",
        fusion: Fusion = "joint",
        decoder: Decoder = "fpn",
    ) -> None:
        super().__init__()
        check_choice(arch, field="arch", allowed=ARCHS)
        check_choice(modalities, field="modalities", allowed=MODALITIES)
        check_choice(pool, field="pool", allowed=POOLS)
        if pool == "outline" and "outline" not in heads:
            raise InputError(
                f"pool: got 'outline' with heads {list(heads)!r}; allowed: 'mean', or "
                "'outline' for a model with the outline head",
                field="pool",
                value=pool,
                allowed=POOLS,
            )
        check_choice(fusion, field="fusion", allowed=FUSIONS)
        check_choice(decoder, field="decoder", allowed=DECODERS)
        self.pool = pool
        self.decoder = decoder
        self.fusion = fusion
        self.arch = arch
        self.clinical_dim = int(clinical_dim)
        self.modalities = modalities
        self.hidden = int(hidden)
        self.cnn = _BUILDERS[arch](weights=None)
        self.image_dim = self.cnn.fc.in_features
        self.cnn.fc = nn.Identity()
        self.clin_net = nn.Sequential(
            nn.Linear(self.clinical_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        # The image features are projected to the descriptor branch's width so
        # neither modality dominates the fusion by sheer number of inputs.
        self.img_proj = nn.Sequential(nn.Linear(self.image_dim, hidden), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))
        if fusion == "stacked":
            # The image network's own malignancy logit, kept beside the fused one (which
            # weighs it, possibly by 0): forward_heads(...)["image"], what Predictor.explain
            # maps for a stacked run. See thyrocam.train.stacking.stacked_fusion.
            self.image_head = nn.Linear(hidden, 1)
        self.heads, self.descriptor_classes = _check_heads(heads, descriptor_classes)
        if "outline" in self.heads:
            channels = _stage_channels(self.cnn)
            # The U-Net decoder at 64 channels whatever the backbone: at 32 (the narrow
            # ResNet-10's FPN width) it found the nodule less often than the FPN one.
            light = min(64, 2 * channels[0])
            self.outline = OutlineDecoder(
                channels, width=64 if decoder == "unet" else light, kind=decoder
            )
            if decoder == "unet":
                # Deep supervision (training only): a light head on the same outlines keeps
                # the backbone shaped by them (without it the image AUC fell; docs/ddti.md).
                self.outline_aux = OutlineDecoder(channels, width=light)
        if "descriptors" in self.heads:
            # One small linear head per field over the pooled image features: the
            # descriptor heads read the image only, never the entered descriptors.
            self.descriptor_heads = nn.ModuleDict(
                {
                    f: nn.Sequential(nn.Dropout(dropout), nn.Linear(self.image_dim, k))
                    for f, k in self.descriptor_classes.items()
                }
            )

    def forward_stages(self, img: torch.Tensor) -> list[torch.Tensor]:
        """``img (B, 3, H, W)`` -> ``[layer1, layer2, layer3, layer4]`` feature maps.

        Calls the same modules as ``model.cnn(img)``, so hooks on them (Grad-CAM) fire.
        """
        cnn = self.cnn
        x = cnn.maxpool(cnn.relu(cnn.bn1(cnn.conv1(img))))
        feats = []
        for stage in (cnn.layer1, cnn.layer2, cnn.layer3, cnn.layer4):
            x = stage(x)
            feats.append(x)
        return feats

    def forward_heads(
        self, img: torch.Tensor, clin: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every head of the model from one pass through the backbone.

        Args:
            img: ``(B, 3, H, W)``.
            clin: ``(B, D)`` or ``None`` (all missing); used by ``"malignancy"`` only.

        Returns:
            ``{"malignancy": (B, 1)}`` (equal to ``model(img, clin)``), plus
            ``"outline": (B, 1, H, W)`` mask logits when the model has that head,
            ``field: (B, k)`` logits per descriptor field (columns in the order
            of ``cat_maps["fields"][field]``) when it has ``"descriptors"``, and
            ``"image": (B, 1)``, the image network's own logit, for a stacked fusion.
            In training mode a ``"unet"`` model also returns ``"outline_aux"``
            ``(B, 1, H, W)``: its auxiliary outline logits, a training signal only.
        """
        batch = img.shape[0]
        out: dict[str, torch.Tensor] = {}
        needs_cnn = self.modalities != "clinical" or len(self.heads) > 1
        feats, outline, pooled = self._backbone(img) if needs_cnn else (None, None, None)
        if self.modalities == "clinical":
            weight = self.head[-1].weight
            f_img = torch.zeros(batch, self.hidden, dtype=weight.dtype, device=weight.device)
        else:
            f_img = self.img_proj(pooled)
        f_clin = self.forward_clinical(None if self.modalities == "image" else clin, batch)
        out["malignancy"] = self.head(torch.cat([f_img, f_clin], dim=1))
        if self.fusion == "stacked":
            out["image"] = self.image_head(f_img)
        if outline is not None:
            out["outline"] = outline
        if outline is not None and self.training and self.decoder == "unet":
            out["outline_aux"] = self.outline_aux(feats, size=tuple(img.shape[-2:]))
        if "descriptors" in self.heads:
            for f, head in self.descriptor_heads.items():
                out[f] = head(pooled)
        return out

    def _backbone(
        self, img: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor]:
        """``img (B, 3, H, W)`` -> ``(feats, outline, pooled)`` from one pass through the
        stages: the stages' maps (:meth:`forward_stages`), the outline head's logits
        ``(B, 1, H, W)`` (``None`` without that head) and the image features ``(B, C)``
        read from layer4 by :meth:`_pooled`."""
        feats = self.forward_stages(img)
        outline = None
        if "outline" in self.heads:
            outline = self.outline(feats, size=tuple(img.shape[-2:]))
        return feats, outline, self._pooled(feats[-1], outline)

    def _pooled(self, last: torch.Tensor, outline: torch.Tensor | None) -> torch.Tensor:
        """layer4's map ``(B, C, h, w)`` -> image features ``(B, C)``: its mean, or its mean
        weighted by the outline's probabilities (``outline``: logits ``(B, 1, H, W)``)."""
        if self.pool == "mean":
            return torch.flatten(self.cnn.avgpool(last), 1)
        # The outline is a constant to the malignancy loss (detached): the mask is
        # learnt from outlines only, and the classifier reads through it.
        w = nn.functional.adaptive_avg_pool2d(torch.sigmoid(outline.detach()), last.shape[-2:])
        return (last * w).sum((2, 3)) / (w.sum((2, 3)) + 1e-3)

    def forward_image(self, img: torch.Tensor) -> torch.Tensor:
        """``img (B, 3, H, W)`` -> image features ``(B, hidden)``."""
        if self.pool == "mean":
            return self.img_proj(self.cnn(img))  # no need to run the outline decoder
        return self.img_proj(self._backbone(img)[2])

    def forward_clinical(self, clin: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``clin (B, D)`` or ``None`` (all missing) -> descriptor features ``(B, hidden)``."""
        weight = self.clin_net[0].weight
        if clin is None:
            clin = torch.zeros(batch, self.clinical_dim, dtype=weight.dtype, device=weight.device)
        if clin.dim() != 2 or clin.shape[1] != self.clinical_dim:
            raise InputError(
                f"clin: got shape {tuple(clin.shape)}; allowed: (B, {self.clinical_dim})",
                field="clin",
                value=tuple(clin.shape),
                allowed=f"(B, {self.clinical_dim})",
            )
        return self.clin_net(clin.to(dtype=weight.dtype, device=weight.device))

    def forward(
        self, img: torch.Tensor, clin: torch.Tensor | None = None, *, all_heads: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """``img (B, 3, H, W)``, ``clin (B, D)`` or ``None`` -> logits ``(B, 1)``.

        ``all_heads=True`` returns :meth:`forward_heads` instead (so a wrapper that
        only calls ``forward``, such as DDP, can train every head).
        """
        if all_heads:
            return self.forward_heads(img, clin)
        batch = img.shape[0]
        if self.modalities == "clinical":
            # The ablation sees descriptors only; skipping the CNN makes it cheap to train.
            weight = self.head[-1].weight
            f_img = torch.zeros(batch, self.hidden, dtype=weight.dtype, device=weight.device)
        else:
            f_img = self.forward_image(img)
        if self.modalities == "image":
            clin = None
        f_clin = self.forward_clinical(clin, batch)
        return self.head(torch.cat([f_img, f_clin], dim=1))


class OutlineDecoder(nn.Module):
    """A light decoder: ResNet stages -> nodule mask logits.

    Each stage is projected to ``width`` channels and merged top-down (upsample
    and add, as in FPN), read out at stride 4 and upsampled bilinearly to the
    input size. ``kind="fpn"``: one 3x3 convolution after the last merge (about
    0.2 M parameters for resnet18). ``kind="unet"``: a 3x3 conv-BN-ReLU after
    every merge and two at stride 4, so each scale is refined before the next
    finer one is added (0.2 M parameters at width 64, trained beside an ``"fpn"``
    auxiliary head): on the DDTI folds it found the nodule on whole frames more
    often than ``"fpn"`` and trains about twice as slowly (docs/ddti.md).
    """

    def __init__(
        self, channels: tuple[int, ...], *, width: int = 64, kind: Decoder = "fpn"
    ) -> None:
        super().__init__()
        check_choice(kind, field="decoder", allowed=DECODERS)
        self.kind = kind
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        if kind == "unet":
            self.merge = nn.ModuleList(_conv_bn_relu(width) for _ in channels[:-1])
            self.smooth = nn.Sequential(_conv_bn_relu(width), _conv_bn_relu(width))
        else:
            self.smooth = _conv_bn_relu(width)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, feats: list[torch.Tensor], *, size: tuple[int, int]) -> torch.Tensor:
        """``feats`` (strides 4, 8, 16, 32) -> logits ``(B, 1, *size)``."""
        x = self.lateral[-1](feats[-1])
        for k in reversed(range(len(feats) - 1)):
            f = feats[k]
            x = self.lateral[k](f) + nn.functional.interpolate(
                x, size=f.shape[-2:], mode="bilinear", align_corners=False
            )
            if self.kind == "unet":
                x = self.merge[k](x)
        x = self.out(self.smooth(x))
        return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _conv_bn_relu(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


def _stage_channels(cnn: nn.Module) -> tuple[int, ...]:
    return tuple(
        last_conv(stage).out_channels for stage in (cnn.layer1, cnn.layer2, cnn.layer3, cnn.layer4)
    )


def _check_heads(
    heads: tuple[str, ...] | list[str], descriptor_classes: dict[str, int] | None
) -> tuple[tuple[str, ...], dict[str, int]]:
    heads = tuple(heads)
    bad = [h for h in heads if h not in HEADS]
    if bad or "malignancy" not in heads or len(set(heads)) != len(heads):
        raise InputError(
            f"heads: got {list(heads)!r}; allowed: a subset of {', '.join(HEADS)} "
            "that contains malignancy, each once",
            field="heads",
            value=list(heads),
            allowed=HEADS,
        )
    heads = tuple(h for h in HEADS if h in heads)  # canonical order
    classes: dict[str, int] = {}
    if "descriptors" in heads:
        given = dict(descriptor_classes or {})
        if set(given) != set(DESCRIPTOR_FIELDS) or any(int(k) < 1 for k in given.values()):
            raise InputError(
                f"descriptor_classes: got {given!r}; allowed: a count >= 1 for each of "
                f"{', '.join(DESCRIPTOR_FIELDS)}",
                field="descriptor_classes",
                value=given,
                allowed=DESCRIPTOR_FIELDS,
            )
        classes = {f: int(given[f]) for f in DESCRIPTOR_FIELDS}
    return heads, classes


def descriptor_classes_from(cat_maps: dict) -> dict[str, int]:
    """``{field: k}`` for the four image descriptors, ``k`` from ``cat_maps["fields"]``."""
    return {f: len(cat_maps["fields"][f]) for f in DESCRIPTOR_FIELDS}


def last_conv(stage: nn.Module) -> nn.Module:
    """The last convolution of a ResNet stage (BasicBlock ``conv2``, Bottleneck ``conv3``)."""
    block = stage[-1]
    return block.conv3 if hasattr(block, "conv3") else block.conv2


def default_target_layer(model: ThyroidNet) -> nn.Module:
    """The usual Grad-CAM layer: ``model.cnn.layer4[-1].conv2`` (resnet18) / ``.conv3`` (50)."""
    return last_conv(model.cnn.layer4)


def resolve_device(device: str | None) -> torch.device:
    """``None`` -> CUDA when present, else CPU; otherwise check the name."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(
            f"device: got {device!r}; allowed: cpu, cuda, cuda:N or auto",
            field="device",
            value=device,
            allowed="cpu, cuda, cuda:N, auto",
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device: got {device!r} but no CUDA device is available; allowed: cpu",
            field="device",
            value=device,
            allowed="cpu",
        )
    return dev


def load_backbone_weights(
    model: ThyroidNet, *, weights: str | os.PathLike | None = "imagenet"
) -> str:
    """Initialise ``model.cnn`` from ImageNet weights found on this machine, never downloading.

    Args:
        weights: ``"imagenet"`` (torchvision's file, used only if it is already
            in torch's hub cache), a path to a ``.safetensors`` or ``.pth`` state
            dict of the torchvision ResNet, or ``None``/``"none"`` for scratch.

    Returns:
        A short description of what was loaded (stored in the run's metadata).
    """
    global _scratch_notice_given
    if weights in (None, "none", "scratch"):
        return "scratch"
    if weights == "imagenet":
        if model.arch not in _IMAGENET:
            return "scratch"  # torchvision publishes no ImageNet weights for it
        enum = _IMAGENET[model.arch]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        if not cached.is_file():
            if not _scratch_notice_given:
                log.warning(
                    "No ImageNet weights for %s in %s (nothing is downloaded); "
                    "training the image branch from scratch.",
                    model.arch,
                    cached.parent,
                )
                _scratch_notice_given = True
            return "scratch"
        path: Path = cached
    else:
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"backbone weights: file not found: {path}")
    state = _read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.cnn.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise CheckpointError(
            f"backbone weights {path}: do not fit {model.arch} "
            f"(missing {len(missing)}, unexpected {len(unexpected)} keys)"
        )
    return f"imagenet:{path.name}"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only: a state dict of tensors, never arbitrary pickled objects.
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise CheckpointError(f"backbone weights {path}: cannot be read ({exc})") from exc
