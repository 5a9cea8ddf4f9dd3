"""JSON bodies of ``/predict`` and ``/explain``: images as data URLs, the CAM grid, attributions.

Field names follow the rest of the package (``clinical``, ``roi``, ``all_zero``,
``target``, ``method``, ``attributions``). Two names are the seed's HTTP
contract and stay as they are, although Python says it differently:
``overlay_png_base64`` (a data URL, not bare base64) and ``used_class_idx``
(:attr:`~thyrocam.predictor.Explanation.used_idx`).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from thyrocam.predictor import Explanation, Prediction

__all__ = [
    "MAX_GRID_SIDE",
    "png_data_url",
    "cam_payload",
    "prediction_body",
    "explanation_body",
]

#: A CAM grid finer than this (layercam-fused is input-sized) is resampled before sending.
MAX_GRID_SIDE = 64


def png_data_url(img: Image.Image) -> str:
    """A PIL image as ``data:image/png;base64,...`` (grey RGB stored as one channel)."""
    if img.mode == "RGB":
        arr = np.asarray(img)
        # Ultrasound frames are grey: one channel is a third of the bytes, same pixels.
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
            img = img.convert("L")
    buf = io.BytesIO()
    # Level 1: measured here, under half the time of the default level for the same size.
    img.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def cam_payload(exp: Explanation) -> dict[str, Any]:
    """The map a page re-blends without a new request.

    Returns:
        ``{"grid": (h, w) nested lists in [0, 1], "box", "frame_size", "input_size",
        "all_zero"}``: ``grid`` is the layer-resolution map, min-max normalised as the
        overlay's map is; upsampled bilinearly (pixel centres) over ``box`` (frame pixels),
        it gives the overlay's map on the frame, zero outside ``box``.
    """
    raw = np.asarray(exp.raw, dtype=np.float32)
    if max(raw.shape) > MAX_GRID_SIDE:
        raw = np.asarray(
            Image.fromarray(raw, mode="F").resize((MAX_GRID_SIDE, MAX_GRID_SIDE), Image.BOX),
            dtype=np.float32,
        )
    lo, hi = float(raw.min()), float(raw.max())
    grid = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    mapping = exp.mapping
    return {
        # float64 first: rounded float32 values print as 0.43075001239...
        "grid": np.round(grid.astype(np.float64), 5).tolist(),
        "box": [float(v) for v in mapping.box],
        "frame_size": list(mapping.frame_size),
        "input_size": mapping.input_size,
        "all_zero": bool(exp.all_zero),
    }


def prediction_body(prediction: Prediction, *, filename: str | None) -> dict[str, Any]:
    """``/predict``'s answer: :meth:`Prediction.to_dict` plus the stored upload's name."""
    return {**prediction.to_dict(), "filename": filename}


def explanation_body(exp: Explanation, *, filename: str | None) -> dict[str, Any]:
    """``/explain``'s answer: the prediction, both images, the CAM grid, and attributions.

    ``attributions`` (``{field: Shapley value}`` for the six descriptors, logit units)
    is present only when the explanation computed them (``attributions=1``);
    ``image_weight`` and ``image_probability`` only for a stacked fusion's malignancy
    map (the map is the image network's; its logit's weight in the probability, and
    that network's own probability).
    """
    body = prediction_body(exp.prediction, filename=filename)
    body.update(
        {
            "overlay_png_base64": png_data_url(exp.overlay),
            "frame_png_base64": png_data_url(exp.image),
            "used_class_idx": exp.used_idx,
            "target": exp.target,
            "method": exp.method,
            "alpha": exp.alpha,
            "cam": cam_payload(exp),
        }
    )
    if exp.attributions is not None:
        body["attributions"] = {str(k): float(v) for k, v in exp.attributions.items()}
    if exp.image_weight is not None:
        body["image_weight"] = float(exp.image_weight)
        body["image_probability"] = float(exp.image_probability)
    return body
