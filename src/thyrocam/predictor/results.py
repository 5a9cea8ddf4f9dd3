"""What a prediction and an explanation return: :class:`Prediction`, :class:`Explanation`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from thyrocam.explain.overlay import overlay_cam_on_pil
from thyrocam.imaging import Box, Frame, FrameMapping

__all__ = ["Prediction", "Explanation", "LABEL_NAMES"]

LABEL_NAMES = ("benign", "malignant")


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
        roi_source: where :attr:`roi` came from: ``"user"`` (given), ``"auto"`` (the
            largest nodule of the run's predicted outline) or ``"frame"`` (no box: the
            whole frame was used).
        estimated: the four image descriptors as the run's descriptor heads read them,
            ``{field: {"value": str, "probability": float, "held_out": {...} | None,
            "beats_baseline": bool | None}}`` (the most likely value; ``held_out``: the
            head's accuracy on the run's test frames beside always answering the
            commonest value); ``None`` for a run without descriptor heads.
        tirads_estimated: ACR TI-RADS with the missing descriptors taken from
            :attr:`estimated` (an estimate, not the radiologist's reading); ``None``
            when nothing was missing or the run cannot estimate.
        estimated_fields: the fields :attr:`tirads_estimated` took from the image.
        estimated_withheld: missing fields not taken from the image because their
            head did no better than the commonest value on held-out frames.
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
    roi_source: str = "frame"
    estimated: dict[str, dict[str, Any]] | None = None
    tirads_estimated: Any = None
    estimated_fields: list[str] = field(default_factory=list)
    estimated_withheld: list[str] = field(default_factory=list)

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
            "roi_source": self.roi_source,
            "estimated": self.estimated,
            "tirads_estimated": (
                None
                if self.tirads_estimated is None
                else {**self.tirads_estimated.to_dict(), "from_image": self.estimated_fields}
            ),
            "estimated_withheld": list(self.estimated_withheld),
        }


@dataclass(frozen=True)
class Explanation:
    """A prediction with its class activation map.

    Attributes:
        prediction: the :class:`Prediction` from the same forward pass.
        method: the CAM method name.
        target: ``"malignant"``, ``"benign"`` or ``"field:value"`` (a descriptor head's
            value; see :mod:`thyrocam.explain.targets`).
        used_idx: the output column explained (0 for the malignancy logit; the value's
            column of the field's logits for a descriptor target).
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
        mask_frame: float32 ``(H, W)`` the predicted nodule outline (probabilities) on
            the original frame, or ``None`` for a run without an outline head. With an
            automatic box: the close-up outline inside the crop, and the whole-frame
            search's other nodules outside it.
        image_weight: for a run with the stacked fusion, explaining malignancy: the
            map is of the image network's own logit, and this is that logit's weight in
            the probability (0: the descriptors alone decided it); ``None`` otherwise
            (the map is of the explained logit itself).
        image_probability: with ``image_weight``: the image network's own probability
            of malignancy for this crop (what its map explains).
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
    mask_frame: np.ndarray | None = field(default=None, repr=False, compare=False)
    image_weight: float | None = None
    image_probability: float | None = None

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
