"""Synthetic B-mode thyroid ultrasound in DDTI's on-disk format.

A latent benign/malignant truth drives the nodule's true features (composition,
echogenicity, margins, calcifications, taller-than-wide shape, size); the frame
is rendered from those true features (speckle, attenuation, anatomy, burnt-in
marks) and the XML carries a noisy, partly blank copy of them, the way a
radiologist's report does. So an ideal image reader beats the descriptors, and
descriptors plus sex and age (which the image does not show) beat the image.

The modules, in the order a case is made:
:mod:`~thyrocam.data.synth.cases` (label, true features, the XML's reading),
:mod:`~thyrocam.data.synth.marks` (layout and burnt-in marks, drawn before the
features are seen), :mod:`~thyrocam.data.synth.anatomy` (the neck and the speckle,
on :mod:`~thyrocam.data.synth.raster`'s fields and masks),
:mod:`~thyrocam.data.synth.nodule`, :mod:`~thyrocam.data.synth.frame` (one frame)
and :mod:`~thyrocam.data.synth.writer` (the files). Every word written comes from
:mod:`thyrocam.clinical`.

Example:
    >>> from thyrocam.data.synth import make_synthetic_ddti
    >>> folder = make_synthetic_ddti("/tmp/synth", cases=20, seed=0)  # doctest: +SKIP
"""

from thyrocam.data.synth.cases import (
    CALCIFICATIONS,
    COMPOSITIONS,
    ECHOGENICITIES,
    MARGINS,
    SUSPICION_ORDER,
    NoduleFeatures,
    SynthConfig,
    sample_case_features,
)
from thyrocam.data.synth.frame import render_case
from thyrocam.data.synth.marks import draw_layout
from thyrocam.data.synth.writer import LABELS_HEADER, make_synthetic_ddti

__all__ = [
    "COMPOSITIONS",
    "ECHOGENICITIES",
    "MARGINS",
    "CALCIFICATIONS",
    "SUSPICION_ORDER",
    "LABELS_HEADER",
    "SynthConfig",
    "NoduleFeatures",
    "sample_case_features",
    "draw_layout",
    "render_case",
    "make_synthetic_ddti",
]
