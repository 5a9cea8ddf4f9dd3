"""thyrocam: thyroid-nodule classification on ultrasound, with Grad-CAM you can check.

    >>> from thyrocam import Predictor, GradCAM, overlay_cam_on_pil
    >>> p = Predictor.load(".demo/run")
    >>> exp = p.explain("case_1.jpg", {"composition": "solid", "age": 59})
    >>> exp.overlay.save("overlay.png")
"""

__version__ = "0.1.0"

from thyrocam.explain import (  # noqa: E402 - __version__ first: submodules read it
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    overlay_cam_on_pil,
)
from thyrocam.imaging import Preprocessing, load_image, preprocess_image  # noqa: E402
from thyrocam.model import ThyroidNet  # noqa: E402
from thyrocam.predictor import Predictor, ThyroidAppWrapper  # noqa: E402

__all__ = [
    "__version__",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "overlay_cam_on_pil",
    "Preprocessing",
    "load_image",
    "preprocess_image",
    "ThyroidNet",
    "Predictor",
    "ThyroidAppWrapper",
]
