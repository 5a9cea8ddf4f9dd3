"""The one blueprint: the page, ``/health``, ``/openapi.json``, ``/predict``, ``/explain``.

Views parse the form, call the :class:`~thyrocam.Predictor` and format JSON;
validation of descriptors and images happens in the layers that own them.
"""

from __future__ import annotations

import io
import zipfile

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

from thyrocam import __version__
from thyrocam.clinical import AGE_RANGE, FIELDS, TIRADS_FEATURES, VOCABULARY
from thyrocam.explain import METHODS
from thyrocam.predictor import NO_NODULE_WARNING, ROI_FALLBACK_WARNING, Explanation, Predictor
from thyrocam.web import form
from thyrocam.web.errors import ModelUnavailableError, UnknownExampleError
from thyrocam.web.i18n import LANG_COOKIE, LANGUAGES, STRINGS, VOCAB_LABELS, pick_language
from thyrocam.web.openapi import build_spec
from thyrocam.web.payload import explanation_body, prediction_body
from thyrocam.web.state import WebState, get_state
from thyrocam.web.uploads import store_upload

__all__ = ["bp"]

bp = Blueprint("thyrocam", __name__)


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


def _image() -> tuple[bytes, str | None]:
    return form.image_bytes(
        request,
        upload_dir=_state().upload_dir,
        max_bytes=int(current_app.config["MAX_CONTENT_LENGTH"]),
    )


def _stored_name(data: bytes, name: str | None) -> str | None:
    """Keep the upload only when asked (``store=1``); an upload read by name is kept already."""
    if not form.flag(request, "store"):
        return name
    return name or store_upload(_state().upload_dir, data)


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
        "noNoduleWarning": NO_NODULE_WARNING,
        # A run with descriptor heads also explains each value ("field:value"); the
        # page adds them to the target choices.
        "descriptorTargets": [
            t
            for t in (state.predictor.targets if state.predictor is not None else ())
            if ":" in t
        ],
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
        methods=[(m.name, m.label) for m in METHODS.values()],
        targets=form.TARGET_CHOICES,
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
    data, name = _image()
    prediction = predictor.predict(
        data, form.clinical(request), roi=form.roi(request), frame=form.frame(request)
    )
    return jsonify(prediction_body(prediction, filename=_stored_name(data, name)))


@bp.post("/explain")
def explain() -> Response:
    """The CAM for ``target`` (``auto``: the predicted class), with ``attributions=1``
    also each descriptor's Shapley value."""
    predictor = _predictor()
    data, name = _image()
    clinical, roi, frame = form.clinical(request), form.roi(request), form.frame(request)
    alpha, attributions = form.alpha(request), form.flag(request, "attributions")
    target = form.target(request)
    if target == form.AUTO_TARGET:
        # One extra forward pass: the gradient needs its target before it is taken.
        target = predictor.predict(data, clinical, roi=roi, frame=frame).label
    exp = predictor.explain(
        data,
        clinical,
        roi=roi,
        method=form.method(request),
        target=target,
        alpha=alpha,
        attributions=attributions,
        frame=frame,
    )
    if form.flag(request, "dicom"):
        # The DICOM results (SC + SR) as one zip download; see openapi.py.
        return _dicom_zip_response(exp)
    return jsonify(explanation_body(exp, filename=_stored_name(data, name)))


def _dicom_zip_response(exp: Explanation) -> Response:
    """``dicom=1``: the Secondary Capture and Comprehensive SR as ``thyrocam-dicom.zip``.

    They carry the source's patient and study (to be filed in its PACS), so they
    go only to whoever sent the file, as a download, never into JSON or logs.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in exp.to_dicom().files().items():
            zf.writestr(name, data)
    response = make_response(buf.getvalue())
    response.headers["Content-Type"] = "application/zip"
    response.headers["Content-Disposition"] = 'attachment; filename="thyrocam-dicom.zip"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/examples")
def examples() -> Response:
    return jsonify(
        [
            ex.to_dict(image_url=url_for("thyrocam.example_image", case=ex.case))
            for ex in _state().examples
        ]
    )


@bp.get("/examples/<int:case>/image")
def example_image(case: int) -> Response:
    """An example's frame, by its DDTI case number (as ``/examples`` lists it)."""
    found = {ex.case: ex for ex in _state().examples}
    if case not in found:
        offered = ", ".join(str(c) for c in found) or "none are configured"
        raise UnknownExampleError(
            f"case: got {case}; allowed: an example case number ({offered})",
            field="case",
            value=case,
            allowed=tuple(found),
        )
    return send_file(found[case].image_path, max_age=3600)
