"""The OpenAPI 3 description of the HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from thyrocam.clinical import AGE_RANGE, FIELDS, VOCABULARY
from thyrocam.explain.methods import METHOD_CHOICES, METHOD_NAMES
from thyrocam.predictor import LABEL_NAMES
from thyrocam.web import form
from thyrocam.web.i18n import LANGUAGES

__all__ = ["build_spec"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_IMAGE_ERRORS = {
    "400": _error("neither `file` nor `filename` (or both), or a malformed field"),
    "404": _error("`filename` is not a file in the upload folder"),
    "413": _error("request or image too large (bytes or pixels)"),
    "415": _error(
        "not a decodable image; DICOM: truncated, no pixel data, unsupported transfer syntax"
    ),
    "422": _error(
        "a descriptor outside its vocabulary or range; a `target` naming an unknown field "
        "or value, or a head the run lacks; DICOM: zero frames, `frame` out "
        "of range, an ultrasound region outside the image"
    ),
    "503": _error("no model loaded (see /health)"),
}


def _image_form(*, explain: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "the image"},
        "filename": {
            "type": "string",
            "description": "instead of `file`: a name returned by an earlier `store=1` call",
        },
        "store": {
            "type": "string",
            "enum": ["0", "1"],
            "description": "1: keep the upload under a random name, returned as `filename`",
        },
        "use_clinical": {
            "type": "string",
            "enum": ["0", "1"],
            "description": "1: use the six descriptors; otherwise they are ignored (missing)",
        },
        "roi": {
            "type": "string",
            "example": "120,80,300,240",
            "description": "nodule box x0,y0,x1,y1 in frame pixels",
        },
        "frame": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "which frame of a multi-frame DICOM upload (from 0)",
        },
    }
    for name in FIELDS[:-1]:
        props[name] = {"type": "string", "enum": ["", *VOCABULARY[name]]}
    props["age"] = {
        "type": "string",
        "description": f"years, {AGE_RANGE[0]:g} to {AGE_RANGE[1]:g}; empty = missing",
    }
    if explain:
        props["alpha"] = {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": form.DEFAULT_ALPHA,
        }
        props["method"] = {
            "type": "string",
            "enum": list(METHOD_CHOICES),  # canonical names first, then aliases
            "default": form.DEFAULT_METHOD,
        }
        props["target"] = {
            "type": "string",
            "default": form.DEFAULT_TARGET,
            "description": "the class whose evidence the map shows "
            f"({', '.join(form.TARGET_CHOICES)}; "
            f"`{form.AUTO_TARGET}`: the predicted class, the answer's `target` says which), or, "
            "for a run with descriptor heads, `field:value` "
            "(`calcifications:microcalcifications`: where the network sees that value); an "
            "unknown field or value, or a head the run lacks, is a 422 `unknown_target`",
        }
        props["attributions"] = {
            "type": "string",
            "enum": ["0", "1"],
            "description": "1: also each descriptor's exact Shapley value for the logit",
        }
        props["dicom"] = {
            "type": "string",
            "enum": ["0", "1"],
            "description": "1: answer `application/zip` (thyrocam-dicom.zip) holding a "
            "Secondary Capture of the overlay and a Comprehensive SR of the result, in the "
            "source's study (a new study for a non-DICOM image), instead of JSON",
        }
    return {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "properties": props}}},
    }


def _schemas() -> dict[str, Any]:
    # long: one literal table of the answer schemas, read top to bottom like the spec it
    # becomes; cutting it into pieces would scatter each schema away from its neighbours.
    number = {"type": "number"}
    clinical = {
        "type": "object",
        "description": "the descriptors as understood (normalised; null = missing)",
        "properties": {
            **{
                f: {"type": "string", "nullable": True, "enum": [*VOCABULARY[f], None]}
                for f in FIELDS[:-1]
            },
            "age": {"type": "number", "nullable": True},
        },
    }
    prediction = {
        "type": "object",
        "required": ["probability", "label", "threshold", "clinical", "missing", "tirads"],
        "properties": {
            "probability": {**number, "description": "P(malignant)"},
            "label": {"type": "string", "enum": list(LABEL_NAMES)},
            "threshold": number,
            "logit": number,
            "clinical": clinical,
            "missing": {"type": "array", "items": {"type": "string", "enum": list(FIELDS)}},
            "tirads": {"$ref": "#/components/schemas/Tirads"},
            "roi": {"type": "array", "items": number, "nullable": True},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "frame": {
                "type": "integer",
                "nullable": True,
                "description": "the DICOM frame used; null for an ordinary image",
            },
            "spacing_mm": {
                "type": "array",
                "items": number,
                "nullable": True,
                "description": "[dx, dy] mm per pixel from the DICOM header; null when unknown",
            },
            "region": {
                "type": "array",
                "items": number,
                "nullable": True,
                "description": "the ultrasound tissue region the network saw (frame pixels)",
            },
            "roi_mm": {
                "type": "array",
                "items": number,
                "nullable": True,
                "description": "`roi` in mm from the region's top-left corner",
            },
            "filename": {
                "type": "string",
                "nullable": True,
                "description": "the stored upload's name (store=1), else null",
            },
            "roi_source": {
                "type": "string",
                "enum": ["user", "auto", "frame"],
                "description": "where `roi` came from: given, the largest nodule of the "
                "run's predicted outline, or none (the whole frame)",
            },
            "estimated": {
                "type": "object",
                "nullable": True,
                "description": "per image descriptor, the descriptor heads' most likely "
                "`value`, its `probability`, `held_out` (the head's `accuracy` on the run's "
                "test frames, the `baseline` of always answering the commonest value, and "
                "`n`; null for runs that did not record it) and `beats_baseline` (better than "
                "that baseline beyond chance: one-sided exact binomial test at 5 %); null for "
                "a run without descriptor heads",
            },
            "estimated_withheld": {
                "type": "array",
                "items": {"type": "string"},
                "description": "missing descriptors not taken into `tirads_estimated` because "
                "their head was not shown better than the commonest value on held-out frames",
            },
            "tirads_estimated": {
                "allOf": [{"$ref": "#/components/schemas/Tirads"}],
                "nullable": True,
                "description": "ACR TI-RADS with the missing descriptors taken from "
                "`estimated` (listed in `from_image`): an estimate; null when none was "
                "missing or every missing one was withheld",
            },
        },
    }
    explanation = {
        "allOf": [
            {"$ref": "#/components/schemas/Prediction"},
            {
                "type": "object",
                "required": ["overlay_png_base64", "used_class_idx", "target", "method", "cam"],
                "properties": {
                    "overlay_png_base64": {
                        "type": "string",
                        "description": "data:image/png;base64,... (the frame's size)",
                    },
                    "frame_png_base64": {
                        "type": "string",
                        "description": "the decoded frame the map is blended on (data URL)",
                    },
                    "used_class_idx": {"type": "integer"},
                    "target": {
                        "type": "string",
                        "description": "the class explained (`auto` resolved to the predicted one)",
                    },
                    "method": {"type": "string", "enum": list(METHOD_NAMES)},
                    "alpha": number,
                    "cam": {"$ref": "#/components/schemas/CamGrid"},
                    "image_weight": {
                        **number,
                        "description": "a stacked-fusion run explaining malignancy: the map "
                        "is the image network's own, and this is its logit's weight in the "
                        "probability (0: the descriptors alone decided it)",
                    },
                    "image_probability": {
                        **number,
                        "description": "with `image_weight`: the image network's own "
                        "probability of malignancy for this crop",
                    },
                    "attributions": {
                        "type": "object",
                        "properties": {f: number for f in FIELDS},
                        "description": "with attributions=1: per descriptor, its exact "
                        "Shapley value for the logit (0 when missing); they sum to the "
                        "logit minus the logit with every descriptor missing",
                    },
                },
            },
        ]
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string", "description": "field, value received, allowed"},
                "code": {"type": "string", "example": "invalid_descriptor"},
                "field": {"type": "string"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "model_loaded", "version"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "no_model"]},
                "model_loaded": {"type": "boolean"},
                "checkpoint": {"type": "string", "nullable": True},
                "reason": {"type": "string", "nullable": True},
                "version": {"type": "string"},
                "model": {"type": "object", "nullable": True},
                "examples": {"type": "integer"},
            },
        },
        "Tirads": {
            "type": "object",
            "properties": {
                "points": {"type": "object", "additionalProperties": {"type": "integer"}},
                "total": {"type": "integer"},
                "level": {"type": "string", "enum": ["TR1", "TR2", "TR3", "TR4", "TR5"]},
                "missing": {"type": "array", "items": {"type": "string"}},
                "fna_threshold_cm": {**number, "nullable": True},
                "follow_up_threshold_cm": {**number, "nullable": True},
                "recommendation": {"type": "string"},
                "is_partial": {"type": "boolean"},
            },
        },
        "CamGrid": {
            "type": "object",
            "description": "the layer-resolution map in [0, 1]; upsample it bilinearly "
            "(pixel centres) over `box` to place it on the frame; zero outside `box`",
            "required": ["grid", "box", "frame_size"],
            "properties": {
                "grid": {"type": "array", "items": {"type": "array", "items": number}},
                "box": {"type": "array", "items": number, "minItems": 4, "maxItems": 4},
                "frame_size": {"type": "array", "items": {"type": "integer"}},
                "input_size": {"type": "integer"},
                "all_zero": {"type": "boolean"},
            },
        },
        "Prediction": prediction,
        "Explanation": explanation,
        "Example": {
            "type": "object",
            "properties": {
                "case": {"type": "integer", "description": "the DDTI case number"},
                "view": {"type": "integer"},
                "image_url": {"type": "string"},
                "clinical": clinical,
                "tirads": {"type": "string", "nullable": True},
                "label": {"type": "string", "nullable": True},
                "roi": {
                    "type": "array",
                    "items": number,
                    "nullable": True,
                    "description": "the nodule box x0,y0,x1,y1 (frame pixels), as `roi=` takes it",
                },
            },
        },
    }


def build_spec(*, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document (a JSON-serialisable dict) for this app."""
    # long: the paths table as one literal, in the order the document lists them.
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "thyrocam",
            "version": version,
            "description": "Thyroid-nodule classification on ultrasound with Grad-CAM. "
            "Research use only; not a diagnostic device.",
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "the page (Spanish or English: ?lang=es|en, cookie, "
                    "Accept-Language)",
                    "parameters": [
                        {
                            "name": "lang",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(LANGUAGES)},
                        }
                    ],
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
            "/health": {
                "get": {
                    "summary": "service status, whether a model is loaded and why not",
                    "responses": {"200": _json("status", "Health")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {
                        "200": {"description": "OpenAPI 3", "content": {"application/json": {}}}
                    },
                }
            },
            "/predict": {
                "post": {
                    "summary": "P(malignant), label, threshold, ACR TI-RADS, descriptors",
                    "requestBody": _image_form(explain=False),
                    "responses": {"200": _json("the prediction", "Prediction"), **_IMAGE_ERRORS},
                }
            },
            "/explain": {
                "post": {
                    "summary": "the prediction plus a CAM overlay and the raw CAM grid",
                    "requestBody": _image_form(explain=True),
                    "responses": {
                        "200": {
                            "description": "the explanation (JSON); with dicom=1 a zip "
                            "of the DICOM SC and SR (application/zip)",
                            "content": {
                                **_json("", "Explanation")["content"],
                                "application/zip": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                            },
                        },
                        **_IMAGE_ERRORS,
                    },
                }
            },
            "/examples": {
                "get": {
                    "summary": "example cases (THYROCAM_EXAMPLES)",
                    "responses": {
                        "200": {
                            "description": "a list",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Example"},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/examples/{case}/image": {
                "get": {
                    "summary": "an example's frame",
                    "parameters": [
                        {
                            "name": "case",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "the example's `case` number",
                        }
                    ],
                    "responses": {
                        "200": {"description": "the image", "content": {"image/*": {}}},
                        "404": _error("no such example"),
                    },
                }
            },
        },
        "components": {"schemas": _schemas()},
    }
