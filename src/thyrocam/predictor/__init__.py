"""Predictor: load a run once, then predict and explain single images.

The web app and the CLI call this; they do no tensor work themselves. One
``Predictor`` is safe to share between threads: it never mutates the model,
and each explanation captures its activations per call.

Modules:

* :mod:`~thyrocam.predictor.core` — :class:`Predictor` (alias ``ThyroidAppWrapper``).
* :mod:`~thyrocam.predictor.results` — :class:`Prediction`, :class:`Explanation`.
* :mod:`~thyrocam.predictor.autobox` — the automatic nodule box from the outline head.
* :mod:`~thyrocam.predictor.heads` — estimated descriptors and the TI-RADS line from them.
"""

from thyrocam.predictor.autobox import NO_NODULE_WARNING
from thyrocam.predictor.core import ROI_FALLBACK_WARNING, Located, Predictor, ThyroidAppWrapper
from thyrocam.predictor.results import LABEL_NAMES, Explanation, Prediction

__all__ = [
    "LABEL_NAMES",
    "NO_NODULE_WARNING",
    "ROI_FALLBACK_WARNING",
    "Explanation",
    "Located",
    "Prediction",
    "Predictor",
    "ThyroidAppWrapper",
]
