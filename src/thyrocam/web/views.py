"""The one blueprint: the page, ``/health``, ``/openapi.json``, ``/predict``, ``/explain``.

Views parse the form, call the :class:`~thyrocam.Predictor` and format JSON;
validation of descriptors and images happens in the layers that own them.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    send_file,
    url_for,
)
from PIL import Image

from thyrocam import __version__
from thyrocam.clinical import AGE_RANGE, FIELDS, TIRADS_FEATURES, VOCABULARY
from thyrocam.errors import InputError
from thyrocam.explain import CAM_METHODS
from thyrocam.imaging import parse_box
from thyrocam.predictor import ROI_FALLBACK_WARNING, Explanation, Predictor
from thyrocam.web.errors import MissingImageError, ModelUnavailableError, error_response
from thyrocam.web.i18n import LANG_COOKIE, LANGUAGES, STRINGS, VOCAB_LABELS, pick_language
from thyrocam.web.openapi import build_spec
from thyrocam.web.state import WebState, get_state
from thyrocam.web.uploads import read_upload, store_upload

__all__ = ["bp", "MAX_GRID_SIDE", "cam_payload", "png_data_url"]

bp = Blueprint("thyrocam", __name__)

#: A CAM grid finer than this (layercam-fused is input-sized) is resampled before sending.
MAX_GRID_SIDE = 64
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("", "0", "false", "off", "no")
_METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "layercam-fused": "LayerCAM (layer2–4)",
}


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    # Everything the page needs is served from here; data:/blob: carry the images.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _state() -> WebState:
    return get_state(current_app)  # type: ignore[arg-type]


def _predictor() -> Predictor:
    state = _state()
    if state.predictor is None:
        raise ModelUnavailableError(f"no model loaded: {state.reason}")
    return state.predictor


def _flag(name: str) -> bool:
    text = request.form.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(
        f"{name}: got {text!r}; allowed: 1 or 0 (also true/false, on/off, yes/no)",
        field=name,
        value=text,
        allowed=("1", "0"),
    )


def _image_bytes() -> tuple[bytes, str | None]:
    """The request's image -> ``(bytes, filename)``; ``filename`` only when it came by name."""
    upload = request.files.get("file")
    data = upload.read() if upload is not None else b""
    # A browser form with no file chosen still sends an empty, unnamed part.
    has_file = upload is not None and (bool(upload.filename) or bool(data))
    name = request.form.get("filename", "")
    if has_file and name:
        raise MissingImageError(
            "file/filename: got both; allowed: exactly one of them", field="file"
        )
    if has_file:
        return data, None
    if name:
        limit = int(current_app.config["MAX_CONTENT_LENGTH"])
        return read_upload(_state().upload_dir, name, max_bytes=limit), name
    raise MissingImageError(
        "file: got neither a file nor a filename; allowed: a multipart 'file' or a form "
        "'filename' from an earlier store=1 answer",
        field="file",
    )


def _clinical() -> dict[str, str] | None:
    if not _flag("use_clinical"):
        return None
    return {f: request.form.get(f, "") for f in FIELDS}


def _alpha() -> float:
    text = request.form.get("alpha", "").strip()
    if not text:
        return 0.35
    try:
        alpha = float(text)
    except ValueError:
        alpha = math.nan
    if not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise InputError(
            f"alpha: got {text!r}; allowed: a number from 0 to 1",
            field="alpha",
            value=text,
            allowed="0..1",
        )
    return alpha


def _stored_name(data: bytes, name: str | None) -> str | None:
    """Keep the upload only when asked (``store=1``); an upload read by name is kept already."""
    if not _flag("store"):
        return name
    return name or store_upload(_state().upload_dir, data)


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


@bp.get("/")
def index() -> Response:
    lang, explicit = pick_language(request)
    state = _state()
    model = None
    if state.predictor is not None:
        meta = state.predictor.meta
        pre = state.predictor.preprocessing
        model = f"{meta.get('arch', 'model')} · {pre.size} px · {pre.mode}"
    config = {
        "lang": lang,
        "strings": STRINGS,
        "vocabLabels": VOCAB_LABELS,
        "vocabulary": {f: list(v) for f, v in VOCABULARY.items()},
        "fields": list(FIELDS),
        "ageRange": list(AGE_RANGE),
        "maxUploadBytes": int(current_app.config["MAX_CONTENT_LENGTH"]),
        "roiWarning": ROI_FALLBACK_WARNING,
        "langCookie": LANG_COOKIE,
        "tiradsFeatures": list(TIRADS_FEATURES),
    }
    html = render_template(
        "index.html",
        lang=lang,
        languages=LANGUAGES,
        s=STRINGS[lang],
        vocab=VOCAB_LABELS[lang],
        vocabulary=VOCABULARY,
        categorical=FIELDS[:-1],
        age_range=AGE_RANGE,
        methods=[(m, _METHOD_NAMES.get(m, m)) for m in CAM_METHODS],
        model=model,
        reason=state.reason,
        version=__version__,
        config=config,
    )
    response = make_response(html)
    if explicit:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="Lax")
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


@bp.get("/health")
def health() -> Response:
    state = _state()
    model = None
    if state.predictor is not None:
        p = state.predictor
        model = {
            "arch": p.meta.get("arch"),
            "modalities": p.meta.get("modalities"),
            "preprocessing": p.preprocessing.to_dict(),
            "threshold": p.threshold,
            "device": str(p.device),
            "label_definition": p.meta.get("label_definition"),
        }
    return jsonify(
        {
            "status": "ok" if state.predictor is not None else "no_model",
            "model_loaded": state.predictor is not None,
            "checkpoint": state.checkpoint,
            "reason": state.reason,
            "version": __version__,
            "model": model,
            "examples": len(state.examples),
        }
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_spec(version=__version__))


@bp.post("/predict")
def predict() -> Response:
    predictor = _predictor()
    data, name = _image_bytes()
    prediction = predictor.predict(data, _clinical(), roi=parse_box(request.form.get("roi")))
    body = prediction.to_dict()
    body["filename"] = _stored_name(data, name)
    return jsonify(body)


@bp.post("/explain")
def explain() -> Response:
    predictor = _predictor()
    data, name = _image_bytes()
    exp = predictor.explain(
        data,
        _clinical(),
        roi=parse_box(request.form.get("roi")),
        method=request.form.get("method", "gradcam"),
        target=request.form.get("target", "malignant"),
        alpha=_alpha(),
    )
    body = exp.prediction.to_dict()
    body.update(
        {
            "overlay_png_base64": png_data_url(exp.overlay),
            "frame_png_base64": png_data_url(exp.image),
            "used_class_idx": exp.used_idx,
            "target": exp.target,
            "method": exp.method,
            "alpha": exp.alpha,
            "cam": cam_payload(exp),
            "filename": _stored_name(data, name),
        }
    )
    # Descriptor attributions come with newer predictors; older ones simply lack them.
    attributions = getattr(exp, "attributions", None)
    if attributions is not None:
        body["attributions"] = {str(k): float(v) for k, v in attributions.items()}
    return jsonify(body)


@bp.get("/examples")
def examples() -> Response:
    return jsonify(
        [
            ex.to_dict(index=i, image_url=url_for("thyrocam.example_image", number=i))
            for i, ex in enumerate(_state().examples)
        ]
    )


@bp.get("/examples/<int:number>/image")
def example_image(number: int) -> Response:
    examples_ = _state().examples
    if not 0 <= number < len(examples_):
        return error_response(
            f"example: got {number}; allowed: 0 to {len(examples_) - 1}"
            if examples_
            else f"example: got {number}; no examples are configured",
            "unknown_example",
            404,
            field="number",
        )  # type: ignore[return-value]
    return send_file(examples_[number].image_path, max_age=3600)
