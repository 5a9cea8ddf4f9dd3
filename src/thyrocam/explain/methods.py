"""The one table of CAM methods: name -> (class, target layers, label, aliases).

The Python API (:meth:`thyrocam.Predictor.explain`), the CLI (``--method``
choices), HTTP (``method=``) and the report all read this table, so a name
always runs the method and layers it says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from thyrocam.errors import InputError
from thyrocam.explain.cam import BaseCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from thyrocam.model import last_conv

__all__ = [
    "CAM_METHODS",
    "CamMethod",
    "METHODS",
    "METHOD_NAMES",
    "METHOD_CHOICES",
    "canonical_method",
    "get_method",
]


def _layer4(model: nn.Module) -> list[nn.Module]:
    return [last_conv(model.cnn.layer4)]


def _layers_2_to_4(model: nn.Module) -> list[nn.Module]:
    cnn = model.cnn
    return [last_conv(cnn.layer2), last_conv(cnn.layer3), last_conv(cnn.layer4)]


@dataclass(frozen=True)
class CamMethod:
    """One CAM method as the product offers it.

    Attributes:
        name: the canonical name (``"layercam-fused"``).
        cam_class: the engine class (:class:`~thyrocam.explain.cam.BaseCAM` subclass).
        layers: ``model -> [target layers]`` on a ``ThyroidNet`` (``model.cnn`` a ResNet).
        label: the name people read (page, report).
        aliases: other spellings accepted everywhere (compared after lower-casing and
            dropping ``_``, ``-``, spaces and ``+`` signs spelt out).
    """

    name: str
    cam_class: type[BaseCAM]
    layers: Callable[[nn.Module], list[nn.Module]]
    label: str
    aliases: tuple[str, ...] = ()


METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod("gradcam", GradCAM, _layer4, "Grad-CAM", ("grad-cam", "grad_cam")),
        CamMethod(
            "gradcam++",
            GradCAMPlusPlus,
            _layer4,
            "Grad-CAM++",
            ("gradcamplusplus", "gradcampp", "grad-cam++"),
        ),
        CamMethod("hirescam", HiResCAM, _layer4, "HiResCAM", ("hires-cam",)),
        CamMethod("layercam", LayerCAM, _layer4, "LayerCAM", ("layer-cam",)),
        CamMethod(
            "layercam-fused",
            LayerCAM,
            _layers_2_to_4,
            "LayerCAM (layer2–4)",
            ("layercamfused", "layercam_fused", "layercam-fusion"),
        ),
    )
}

#: Canonical name -> engine class (the seed's mapping, derived from :data:`METHODS`).
CAM_METHODS: dict[str, type[BaseCAM]] = {name: m.cam_class for name, m in METHODS.items()}

#: Canonical names, in the order menus show them.
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)

#: Every accepted spelling (canonical names first), for the CLI's ``choices=``.
METHOD_CHOICES: tuple[str, ...] = METHOD_NAMES + tuple(
    a for m in METHODS.values() for a in m.aliases
)


def _key(text: str) -> str:
    return text.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


_BY_KEY: dict[str, str] = {
    _key(spelling): m.name for m in METHODS.values() for spelling in (m.name, *m.aliases)
}


def canonical_method(method: str) -> str:
    """Any accepted spelling -> the canonical name; unknown names raise ``InputError``."""
    name = _BY_KEY.get(_key(method)) if isinstance(method, str) else None
    if name is None:
        raise InputError(
            f"method: got {method!r}; allowed: {', '.join(METHOD_NAMES)}",
            field="method",
            value=method,
            allowed=METHOD_NAMES,
        )
    return name


def get_method(method: str) -> CamMethod:
    """Any accepted spelling -> its :class:`CamMethod`."""
    return METHODS[canonical_method(method)]
