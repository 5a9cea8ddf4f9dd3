"""Explanations: CAM methods on one activation-only, thread-safe engine, and overlays."""

from thyrocam.explain.cam import (
    CAM_METHODS,
    BaseCAM,
    CamResult,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    get_cam_class,
)
from thyrocam.explain.overlay import colorize_cam, overlay_cam_on_pil

__all__ = [
    "CAM_METHODS",
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
