"""Predictor: load a run once, then predict and explain single images.

The web app and the CLI call this; they do no tensor work themselves. One
``Predictor`` is safe to share between threads: it never mutates the model,
and each explanation captures its activations per call.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from thyrocam.checkpoint import load_run
from thyrocam.clinical import FIELDS, acr_tirads, encode_clinical_with_mask, normalize_clinical
from thyrocam.errors import InputError
from thyrocam.explain import get_method
from thyrocam.explain.attribution import descriptor_attributions
from thyrocam.explain.overlay import overlay_cam_on_pil
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

__all__ = ["Prediction", "Explanation", "Predictor", "ThyroidAppWrapper", "LABEL_NAMES"]

LABEL_NAMES = ("benign", "malignant")
# Guards the one-time hash of the weights in Predictor.model_identity (threads share a Predictor).
_IDENTITY_LOCK = threading.Lock()
ROI_FALLBACK_WARNING = (
    "no nodule box was given: the whole frame was used, but this run was trained on "
    "crops around the nodule; draw a box for a reliable result"
)


@dataclass(frozen=True)
class Prediction:
    """One image's prediction.

    Attributes:
        probability: P(malignant) from the model's logit.
        label: ``"malignant"`` when ``probability >= threshold``, else ``"benign"``.
        threshold: the run's threshold (chosen on validation).
        logit: the raw output.
        clinical: the six descriptors as understood (normalised; None = missing).
        missing: the descriptors that were missing.
        tirads: the ACR TI-RADS points and level computed from the descriptors.
        roi: the nodule box used, in frame pixels, if any.
        warnings: things the user should know (e.g. a ROI run used without a box).
        frame: the DICOM frame index explained (``None`` for an ordinary image file).
        spacing_mm: ``(dx, dy)`` mm per pixel from the DICOM header, ``None`` when unknown.
        region: the ultrasound tissue region the network saw, in frame pixels, if any.
    """

    probability: float
    label: str
    threshold: float
    logit: float
    clinical: dict[str, Any]
    missing: list[str]
    tirads: Any
    roi: Box | None = None
    warnings: list[str] = field(default_factory=list)
    frame: int | None = None
    spacing_mm: tuple[float, float] | None = None
    region: Box | None = None

    def roi_mm(self) -> list[float] | None:
        """:attr:`roi` in mm from the top-left corner of the tissue region (or frame)."""
        if self.roi is None or self.spacing_mm is None:
            return None
        dx, dy = self.spacing_mm
        ox, oy = (self.region[0], self.region[1]) if self.region else (0.0, 0.0)
        x0, y0, x1, y1 = self.roi
        mm = [(x0 - ox) * dx, (y0 - oy) * dy, (x1 - ox) * dx, (y1 - oy) * dy]
        return [round(v, 6) for v in mm]

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "label": self.label,
            "threshold": self.threshold,
            "logit": self.logit,
            "clinical": self.clinical,
            "missing": self.missing,
            "tirads": self.tirads.to_dict(),
            "roi": list(self.roi) if self.roi else None,
            "warnings": list(self.warnings),
            "frame": self.frame,
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "region": list(self.region) if self.region else None,
            "roi_mm": self.roi_mm(),
        }


@dataclass(frozen=True)
class Explanation:
    """A prediction with its class activation map.

    Attributes:
        prediction: the :class:`Prediction` from the same forward pass.
        method: the CAM method name.
        target: ``"malignant"`` or ``"benign"``.
        used_idx: the output column explained (0 for the one-logit model).
        cam: float32 ``(S, S)`` in [0, 1] over the network input.
        raw: float32 ``(h, w)`` the layer-resolution map before normalisation.
        cam_frame: float32 ``(H, W)`` the map placed back on the original frame.
        image: the original frame (RGB).
        mapping: where the input sits in the frame.
        all_zero: True when the map found no positive evidence.
        alpha: opacity used for :attr:`overlay`.
        attributions: when asked for, each descriptor's exact Shapley value for the
            logit (``{field: value}``, summing to logit(as given) - logit(all missing));
            see :mod:`thyrocam.explain.attribution`.
        source: the decoded input (DICOM header included, for :meth:`to_dicom`; it
            holds the patient's identity, so ``repr`` leaves it out).
        model: the model's identity for DICOM results: ``name``, ``version``,
            ``sha256`` (of ``model.safetensors``).
    """

    prediction: Prediction
    method: str
    target: str
    used_idx: int
    cam: np.ndarray
    raw: np.ndarray
    cam_frame: np.ndarray
    image: Image.Image
    mapping: FrameMapping
    all_zero: bool
    alpha: float = 0.35
    attributions: dict[str, float] | None = None
    source: Frame | None = field(default=None, repr=False, compare=False)
    model: Mapping[str, str] | None = None

    @property
    def overlay(self) -> Image.Image:
        """The CAM blended on the original frame at :attr:`alpha` (RGB, the frame's size)."""
        return overlay_cam_on_pil(
            self.image, self.cam_frame, alpha=self.alpha, where=self.mapping.visible_mask()
        )

    def to_dicom(self, out_dir: str | os.PathLike | None = None) -> Any:
        """The overlay as a Secondary Capture and the result as a Comprehensive SR.

        Both go in the source's study (a new study for a non-DICOM input), in a
        new series, referencing the source instance. With ``out_dir`` the two
        files are written there. Returns :class:`thyrocam.dicom.DicomResults`.
        """
        # Imported here, not at the top: the results layer sits above predictor
        # and pulls in highdicom, which predict()/explain() never need.
        from thyrocam.dicom.results import build_results

        results = build_results(self)
        if out_dir is not None:
            results.save(out_dir)
        return results


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
        )

    # -- inputs ------------------------------------------------------------------------
    def encode_clinical(
        self, clinical: Mapping[str, object] | None
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Normalise the descriptors and encode them -> ``(normalised, vec (1, D))``."""
        normalised = normalize_clinical(clinical)
        vec, _ = encode_clinical_with_mask(normalised, self.cat_maps)
        return normalised, torch.from_numpy(vec)[None].to(self.device)

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
                    with open(weights, "rb") as fh:
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
        self, logit: float, normalised: dict, roi: Box | None, warnings: list[str]
    ) -> Prediction:
        prob = float(1.0 / (1.0 + np.exp(-logit)))
        return Prediction(
            probability=prob,
            label=LABEL_NAMES[int(prob >= self.threshold)],
            threshold=self.threshold,
            logit=float(logit),
            clinical=normalised,
            missing=[f for f in FIELDS if normalised[f] is None],
            tirads=acr_tirads(normalised),
            roi=tuple(roi) if roi else None,  # type: ignore[arg-type]
            warnings=warnings,
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

        ``frame``: which frame of a multi-frame DICOM (0-based).
        """
        normalised, clin = self.encode_clinical(clinical)
        source = self.decode(image, frame=frame)
        _, x, _, warnings = self.prepare_image(source, roi=roi)
        with torch.no_grad():
            logit = float(self.model(x, clin)[0, 0])
        return _with_source(self._prediction(logit, normalised, roi, warnings), source)

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
            roi: optional nodule box ``(x0, y0, x1, y1)`` in frame pixels.
            method: a name or alias from :data:`thyrocam.explain.METHODS` (``gradcam``,
                ``gradcam++``, ``hirescam``, ``layercam``, ``layercam-fused``).
            target: ``"malignant"`` (evidence for) or ``"benign"`` (evidence against).
            alpha: overlay opacity in [0, 1].
            attributions: also compute the descriptors' Shapley values (64 passes of
                the small descriptor branch; the image features are computed once).
        """
        if not 0.0 <= float(alpha) <= 1.0:
            raise InputError(
                f"alpha: got {alpha!r}; allowed: a number from 0 to 1",
                field="alpha",
                value=alpha,
                allowed="0..1",
            )
        spec = get_method(method)
        normalised, clin = self.encode_clinical(clinical)
        source = self.decode(image, frame=frame)
        frame_img, x, mapping, warnings = self.prepare_image(source, roi=roi)
        engine = spec.cam_class(self.model, spec.layers(self.model))
        res = engine.compute(x, clinical=clin, target=target)  # type: ignore[arg-type]
        prediction = self._prediction(float(res.logits[0, 0]), normalised, roi, warnings)
        prediction = _with_source(prediction, source)
        shapley = (
            descriptor_attributions(self.model, x, clin, cat_maps=self.cat_maps).as_dict()
            if attributions
            else None
        )
        return Explanation(
            prediction=prediction,
            method=spec.name,
            target=target,
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
        )


def _with_source(prediction: Prediction, source: Frame) -> Prediction:
    """The prediction with what the input file said: DICOM frame, spacing, tissue region."""
    return replace(
        prediction, frame=source.index, spacing_mm=source.spacing_mm, region=source.region
    )


# The name the seed's web app uses for the same object.
ThyroidAppWrapper = Predictor
