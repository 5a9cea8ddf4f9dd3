"""Predictor: load a run once, then predict and explain single images.

The web app and the CLI call this; they do no tensor work themselves. One
``Predictor`` is safe to share between threads: it never mutates the model,
and each explanation captures its activations per call.

Modules:

* :mod:`~thyrocam.predictor.core` — :class:`Predictor` (alias ``ThyroidAppWrapper``).
* :mod:`~thyrocam.predictor.results` — :class:`Prediction`, :class:`Explanation`.
"""

from thyrocam.predictor.core import ROI_FALLBACK_WARNING, Predictor, ThyroidAppWrapper
from thyrocam.predictor.results import LABEL_NAMES, Explanation, Prediction

__all__ = [
    "LABEL_NAMES",
    "ROI_FALLBACK_WARNING",
    "Explanation",
    "Prediction",
    "Predictor",
    "ThyroidAppWrapper",
]
