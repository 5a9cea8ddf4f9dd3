"""Explanations: CAM methods on one activation-only, thread-safe engine, and overlays."""

from thyrocam.explain.cam import (
    BaseCAM,
    CamResult,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    get_cam_class,
)
from thyrocam.explain.methods import (
    CAM_METHODS,
    METHOD_NAMES,
    METHODS,
    CamMethod,
    canonical_method,
    get_method,
)
from thyrocam.explain.overlay import colorize_cam, overlay_cam_on_pil

__all__ = [
    "CAM_METHODS",
    "METHODS",
    "METHOD_NAMES",
    "CamMethod",
    "canonical_method",
    "get_method",
    "BaseCAM",
    "CamResult",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "get_cam_class",
    "colorize_cam",
    "overlay_cam_on_pil",
]
