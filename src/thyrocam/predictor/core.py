"""The Predictor: load a run once, then predict and explain single images.

The web app and the CLI call this; they do no tensor work themselves. One
``Predictor`` is safe to share between threads: it never mutates the model,
and each explanation captures its activations per call.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from thyrocam.checkpoint import LOCATOR, RunInfo, load_run
from thyrocam.clinical import FIELDS, acr_tirads, encode_clinical_with_mask, normalize_clinical
from thyrocam.errors import CheckpointError
from thyrocam.explain import get_method
from thyrocam.explain.attribution import descriptor_attributions
from thyrocam.explain.overlay import check_alpha
from thyrocam.explain.targets import (
    HeadOutput,
    available_targets,
    explained_head,
    parse_target,
)
from thyrocam.imaging import (
    DEFAULT_MAX_PIXELS,
    Box,
    Frame,
    FrameMapping,
    ImageSource,
    Preprocessing,
    load_frame,
    to_tensor,
)
from thyrocam.model import ThyroidNet, resolve_device
from thyrocam.predictor.autobox import (
    MASK_THRESHOLD,
    NO_NODULE_WARNING,
    components_apart,
    find_nodule,
)
from thyrocam.predictor.heads import (
    estimate_descriptors,
    model_heads,
    outline_probability,
    run_heads,
    tirads_from_image,
)
from thyrocam.predictor.results import LABEL_NAMES, Explanation, Prediction

__all__ = ["Located", "Predictor", "ThyroidAppWrapper", "ROI_FALLBACK_WARNING", "NO_NODULE_WARNING"]
# Guards the one-time hash of the weights in Predictor.model_identity (threads share a Predictor).
_IDENTITY_LOCK = threading.Lock()
ROI_FALLBACK_WARNING = (
    "no nodule box was given: the whole frame was used, but this run was trained on "
    "crops around the nodule; draw a box for a reliable result"
)


@dataclass(frozen=True)
class Located:
    """Where the nodule is, before the prediction.

    Attributes:
        roi: the box to crop around, in frame pixels (``None``: the whole frame).
        source: ``"user"``, ``"auto"`` or ``"frame"`` (see ``Prediction.roi_source``).
        warnings: what the user should know about it.
        outline_frame: float32 ``(H, W)`` outline probabilities from the whole-frame
            pass that looked for the nodule (``None`` when there was no such pass).
    """

    roi: Box | None
    source: str
    warnings: list[str]
    outline_frame: np.ndarray | None = None


class Predictor:
    """A loaded run, ready to predict and explain.

    Example:
        >>> p = Predictor.load("runs/demo")
        >>> p.predict("67_1.jpg", {"composition": "solid", "age": 59}).probability
        >>> p.explain("67_1.jpg").overlay.save("overlay.png")
    """

    def __init__(
        self,
        *,
        model: ThyroidNet,
        cat_maps: dict,
        preprocessing: Preprocessing,
        threshold: float = 0.5,
        device: torch.device | str | None = None,
        meta: dict | None = None,
        path: os.PathLike | str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        locator: RunInfo | None = None,
    ) -> None:
        self.device = resolve_device(str(device) if device is not None else None)
        self.model = model.to(self.device).eval()
        self.cat_maps = cat_maps
        self.preprocessing = preprocessing
        self.threshold = float(threshold)
        self.meta = meta or {}
        self.path = path
        self.max_pixels = max_pixels
        self._identity: dict[str, str] | None = None
        self.outline_preprocessing = _outline_input(self.meta, preprocessing)
        # The network that finds the nodule when no box is given: the run's locator
        # (meta.json "locator": an outline network trained for that alone), else the
        # model's own outline head.
        self.locator = None if locator is None else locator.model.to(self.device).eval()
        self._locator_search = (
            None if locator is None else _outline_input(locator.meta, locator.preprocessing)
        )
        self._locator_crop = None if locator is None else locator.preprocessing

    @classmethod
    def load(
        cls, run_or_checkpoint: str | os.PathLike, device: str | torch.device | None = None
    ) -> Predictor:
        """Load a run folder (or its ``model.safetensors``). ``device``: None -> CUDA if present."""
        info = load_run(run_or_checkpoint)
        return cls(
            model=info.model,
            cat_maps=info.cat_maps,
            preprocessing=info.preprocessing,
            threshold=info.threshold,
            device=device,
            meta=info.meta,
            path=info.path,
            locator=info.locator,
        )

    # -- inputs ------------------------------------------------------------------------
    def encode_clinical(
        self, clinical: Mapping[str, object] | None
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Normalise the descriptors and encode them -> ``(normalised, vec (1, D))``."""
        normalised = normalize_clinical(clinical)
        vec, _ = encode_clinical_with_mask(normalised, self.cat_maps)
        return normalised, torch.from_numpy(vec)[None].to(self.device)

    @property
    def heads(self) -> tuple[str, ...]:
        """The run's heads: ``"malignancy"``, and ``"outline"`` / ``"descriptors"`` if trained."""
        return model_heads(self.model)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every explanation target of this run: ``malignant``, ``benign``, ``field:value``."""
        return available_targets(heads=self.heads, cat_maps=self.cat_maps)

    def locate(self, source: Frame, clin: torch.Tensor, *, roi: Box | None = None) -> Located:
        """The nodule box: the user's; else the one the locator or the outline head finds.

        With no box, :func:`~thyrocam.predictor.autobox.find_nodule` runs the run's
        locator network when it has one, else the model's outline head: it searches the
        whole frame (``meta["outline_input"]`` preprocessing) and, for a run that crops,
        outlines the nodule again in that crop; none found -> the whole frame, with a
        warning. With neither, the whole frame is used, as before.
        """
        if roi is not None:
            return Located(roi=tuple(roi), source="user", warnings=[])  # type: ignore[arg-type]
        if self.locator is not None:
            finder, search, crop = self.locator, self._locator_search, self._locator_crop
        elif "outline" in self.heads:
            finder, search, crop = self.model, self.outline_preprocessing, self.preprocessing
        else:
            return Located(roi=None, source="frame", warnings=[])
        box, outline = find_nodule(
            finder, source.image, clin=clin, search=search, crop=crop, region=source.region
        )
        if box is None:
            return Located(None, "frame", [NO_NODULE_WARNING], outline)
        return Located(box, "auto", [], outline)

    def _prepare(
        self, source: Frame, located: Located
    ) -> tuple[Image.Image, torch.Tensor, FrameMapping, list[str]]:
        """:meth:`prepare_image` around the located box, with both steps' warnings."""
        frame_img, x, mapping, warnings = self.prepare_image(source, roi=located.roi)
        if NO_NODULE_WARNING in located.warnings:
            # It already says the whole frame was used and a box should be drawn.
            warnings = [w for w in warnings if w != ROI_FALLBACK_WARNING]
        return frame_img, x, mapping, [*located.warnings, *warnings]

    def decode(self, image: ImageSource | Frame, *, frame: int = 0) -> Frame:
        """Decode an image or DICOM frame ``frame`` (a :class:`Frame` passes through)."""
        if isinstance(image, Frame):
            return image
        return load_frame(image, frame=frame, max_pixels=self.max_pixels)

    def prepare_image(
        self, image: ImageSource | Frame, *, roi: Box | None = None, frame: int = 0
    ) -> tuple[Image.Image, torch.Tensor, FrameMapping, list[str]]:
        """Decode and preprocess -> ``(frame, x (1, 3, S, S), mapping, warnings)``.

        ``frame`` is the whole image; a DICOM ultrasound tissue region is what the
        network sees, and ``roi`` is in whole-frame pixels either way.
        """
        source = self.decode(image, frame=frame)
        frame, region = source.image, source.region
        warnings = []
        if self.preprocessing.mode == "roi" and roi is None:
            warnings.append(ROI_FALLBACK_WARNING)
        elif self.preprocessing.mode != "roi" and roi is not None:
            # A box on a whole-frame run: crop around it, with the run's size.
            pre = Preprocessing(mode="roi", size=self.preprocessing.size, margin=0.5)
            inp, mapping = pre.apply(frame, roi=roi, region=region)
            return frame, to_tensor(inp)[None].to(self.device), mapping, warnings
        inp, mapping = self.preprocessing.apply(frame, roi=roi, region=region)
        return frame, to_tensor(inp)[None].to(self.device), mapping, warnings

    @property
    def image_weight(self) -> float | None:
        """A stacked fusion's weight on its image network's logit (``meta.json``
        ``"stacking"``; 0: the probability comes from the descriptors alone), else ``None``."""
        stacking = self.meta.get("stacking")
        if getattr(self.model, "fusion", "joint") != "stacked" or not stacking:
            return None
        return float(stacking["image_weight"])

    def model_identity(self) -> dict[str, str]:
        """``name``, ``version``, ``sha256`` of the weights (hashed once; for DICOM results)."""
        with _IDENTITY_LOCK:
            if self._identity is None:
                folder = Path(self.path) if self.path is not None else None
                if folder is not None and folder.is_file():
                    folder = folder.parent
                digest = hashlib.sha256()
                weights = folder / "model.safetensors" if folder is not None else None
                if weights is not None and weights.is_file():
                    # The locator's weights too: they decide the box of a frame given none.
                    for path in (weights, folder / LOCATOR / weights.name):
                        if path.is_file():
                            with open(path, "rb") as fh:
                                for chunk in iter(lambda: fh.read(1 << 20), b""):
                                    digest.update(chunk)
                    sha = digest.hexdigest()
                else:  # a Predictor built in memory: no file to hash
                    sha = "unknown"
                arch = str(self.meta.get("arch", type(self.model).__name__))
                name = f"thyrocam {arch}" + (f" ({folder.name})" if folder is not None else "")
                version = str(self.meta.get("versions", {}).get("thyrocam", "unknown"))
                self._identity = {"name": name, "version": version, "sha256": sha}
            return dict(self._identity)

    def _prediction(
        self,
        outputs: Mapping[str, torch.Tensor],
        normalised: dict,
        located: Located,
        warnings: list[str],
        source: Frame,
    ) -> Prediction:
        logit = float(outputs["malignancy"][0, 0])
        prob = float(1.0 / (1.0 + np.exp(-logit)))
        estimated = estimate_descriptors(
            outputs, self.cat_maps, quality=self.meta.get("descriptor_quality")
        )
        from_image, filled, withheld = tirads_from_image(normalised, estimated)
        return Prediction(
            probability=prob,
            label=LABEL_NAMES[int(prob >= self.threshold)],
            threshold=self.threshold,
            logit=logit,
            clinical=normalised,
            missing=[f for f in FIELDS if normalised[f] is None],
            tirads=acr_tirads(normalised),
            roi=located.roi,
            warnings=warnings,
            frame=source.index,
            spacing_mm=source.spacing_mm,
            region=source.region,
            roi_source=located.source,
            estimated=estimated,
            tirads_estimated=from_image,
            estimated_fields=filled,
            estimated_withheld=withheld,
        )

    # -- public ------------------------------------------------------------------------
    def predict(
        self,
        image: ImageSource,
        clinical: Mapping[str, object] | None = None,
        *,
        roi: Box | None = None,
        frame: int = 0,
    ) -> Prediction:
        """P(malignant) for one image and its descriptors (``None``: all missing).

        ``roi``: the nodule box in frame pixels; without one, a run with an outline
        head finds the nodule itself (``Prediction.roi_source`` says which).
        ``frame``: which frame of a multi-frame DICOM (0-based).
        """
        normalised, clin = self.encode_clinical(clinical)
        source = self.decode(image, frame=frame)
        located = self.locate(source, clin, roi=roi)
        _, x, _, warnings = self._prepare(source, located)
        with torch.no_grad():
            outputs = run_heads(self.model, x, clin)
        return self._prediction(outputs, normalised, located, warnings, source)

    def target_layers(self, method: str) -> list[torch.nn.Module]:
        """The layers a method reads, from :data:`thyrocam.explain.METHODS` (any spelling)."""
        return get_method(method).layers(self.model)

    def explain(
        self,
        image: ImageSource,
        clinical: Mapping[str, object] | None = None,
        *,
        roi: Box | None = None,
        method: str = "gradcam",
        target: str = "malignant",
        alpha: float = 0.35,
        attributions: bool = False,
        frame: int = 0,
    ) -> Explanation:
        """Prediction and CAM from one forward pass (plus the gradient to the target layer).

        Args:
            image: path, bytes, file object or PIL image.
            clinical: the six descriptors (``None``: all missing); the gradient is
                taken with them, in the prediction's context.
            roi: optional nodule box ``(x0, y0, x1, y1)`` in frame pixels; without
                one, a run with an outline head finds the nodule (see :meth:`locate`).
            method: a name or alias from :data:`thyrocam.explain.METHODS` (``gradcam``,
                ``gradcam++``, ``hirescam``, ``layercam``, ``layercam-fused``).
            target: ``"malignant"`` (evidence for), ``"benign"`` (evidence against), or
                ``"field:value"`` for a run with descriptor heads
                (``"calcifications:microcalcifications"``: where the network sees that
                value); :attr:`targets` lists them. An unknown field or value, or a
                head the run lacks, raises :class:`~thyrocam.errors.TargetError`.
            alpha: overlay opacity in [0, 1].
            attributions: also compute the descriptors' Shapley values (64 passes of
                the small descriptor branch; the image features are computed once).
        """
        check_alpha(alpha)
        goal = parse_target(target, heads=self.heads, cat_maps=self.cat_maps)
        spec = get_method(method)
        normalised, clin = self.encode_clinical(clinical)
        source = self.decode(image, frame=frame)
        located = self.locate(source, clin, roi=roi)
        frame_img, x, mapping, warnings = self._prepare(source, located)
        # A multi-head run is explained through a proxy that outputs the target's head
        # and keeps every head of the same pass (the prediction comes from it).
        head = explained_head(self.model, goal.head)
        plain = head == "malignancy" and self.heads == ("malignancy",)
        proxy = None if plain else HeadOutput(self.model, head)
        engine = spec.cam_class(self.model if proxy is None else proxy, spec.layers(self.model))
        res = engine.compute(x, clinical=clin, **goal.engine_kwargs())
        outputs = (
            proxy.outputs if proxy is not None else {"malignancy": torch.from_numpy(res.logits)}
        )
        prediction = self._prediction(outputs, normalised, located, warnings, source)
        shapley = (
            descriptor_attributions(self.model, x, clin, cat_maps=self.cat_maps).as_dict()
            if attributions
            else None
        )
        return Explanation(
            prediction=prediction,
            method=spec.name,
            target=goal.name,
            used_idx=res.used_idx[0],
            cam=res.cam[0],
            raw=res.raw[0],
            cam_frame=mapping.cam_to_frame(res.cam[0]),
            image=frame_img,
            mapping=mapping,
            all_zero=res.all_zero[0],
            alpha=float(alpha),
            attributions=shapley,
            source=source,
            model=self.model_identity(),
            mask_frame=_outline_on_frame(located, outputs, mapping),
            image_weight=self.image_weight if head == "image" else None,
            image_probability=(
                float(torch.sigmoid(outputs["image"][0, 0])) if head == "image" else None
            ),
        )


def _outline_on_frame(
    located: Located, outputs: Mapping[str, torch.Tensor], mapping: FrameMapping
) -> np.ndarray | None:
    """The outline on the frame: where the explained pass cropped around an automatic
    box, its close-up outline (the one the box agrees with), plus the whole-frame
    search's other nodules (components that never enter that crop, so no outline is
    cut at the crop's edge). Either alone when there is only one."""
    prob = outline_probability(outputs)
    close = None if prob is None else mapping.cam_to_frame(prob)
    search = located.outline_frame
    if search is None:
        return close
    if close is None or located.source != "auto":
        return search
    seen = mapping.visible_mask()
    others = np.where(components_apart(search >= MASK_THRESHOLD, seen), search, 0.0)
    return np.where(seen, close, others).astype(np.float32)


def _outline_input(meta: Mapping[str, Any], preprocessing: Preprocessing) -> Preprocessing:
    """The whole-frame preprocessing of the nodule search (``meta["outline_input"]``)."""
    spec = meta.get("outline_input")
    if spec is None:
        # A whole-frame letterbox at the run's size: what the outline head sees in training.
        return Preprocessing(mode="letterbox", size=preprocessing.size)
    try:
        return Preprocessing.from_dict(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"meta.json: bad outline_input entry ({exc})") from None


# The name the seed's web app uses for the same object.
ThyroidAppWrapper = Predictor
