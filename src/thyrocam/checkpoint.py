"""Run folders: safetensors weights + JSON that describes them. Nothing is ever unpickled.

A run folder holds::

    model.safetensors   the state dict of ThyroidNet
    meta.json           architecture, preprocessing, threshold, label definition, versions, config
    cat_maps.json       the descriptor encoding the model was trained with
    metrics.json        validation/test metrics (updated by ``thyrocam evaluate``)
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from thyrocam import __version__
from thyrocam.clinical import clinical_dim, load_cat_maps, save_cat_maps
from thyrocam.errors import CheckpointError
from thyrocam.imaging import Preprocessing
from thyrocam.model import ThyroidNet

__all__ = [
    "FORMAT",
    "RunInfo",
    "save_run",
    "load_run",
    "read_meta",
    "write_json",
    "resolve_run_dir",
]

FORMAT = "thyrocam-run"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "meta.json"
CAT_MAPS = "cat_maps.json"
METRICS = "metrics.json"


class RunInfo:
    """What :func:`load_run` returns: the model and everything needed to use it.

    Attributes:
        model: the ``ThyroidNet`` in eval mode on CPU.
        meta: the parsed ``meta.json``.
        cat_maps: the descriptor encoding.
        preprocessing: the run's :class:`~thyrocam.imaging.Preprocessing`.
        threshold: probability above which a case is called malignant.
        path: the run folder.
    """

    def __init__(
        self,
        *,
        model: ThyroidNet,
        meta: dict,
        cat_maps: dict,
        preprocessing: Preprocessing,
        path: Path,
    ) -> None:
        self.model = model
        self.meta = meta
        self.cat_maps = cat_maps
        self.preprocessing = preprocessing
        self.threshold = float(meta.get("threshold", 0.5))
        self.path = path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    return {
        "thyrocam": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def save_run(
    out: str | os.PathLike,
    *,
    model: ThyroidNet,
    cat_maps: dict,
    preprocessing: Preprocessing,
    threshold: float,
    extra_meta: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Write a run folder (creating it). Returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "arch": model.arch})
    os.replace(tmp, out / WEIGHTS)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "modalities": model.modalities,
        "clinical_dim": model.clinical_dim,
        "hidden": model.hidden,
        "heads": list(model.heads),
        "descriptor_classes": dict(model.descriptor_classes),
        "image_size": preprocessing.size,
        "preprocessing": preprocessing.to_dict(),
        "threshold": float(threshold),
        "versions": versions(),
    }
    meta.update(extra_meta or {})
    write_json(out / META, meta)
    save_cat_maps(cat_maps, out / CAT_MAPS)
    if metrics is not None:
        write_json(out / METRICS, metrics)
    return out


def resolve_run_dir(run: str | os.PathLike) -> Path:
    """A run folder, or its ``model.safetensors`` / ``meta.json`` -> the folder."""
    path = Path(run)
    if path.is_file() and path.name in (WEIGHTS, META):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(
            f"run: {path} is not a run folder (expected a folder with {WEIGHTS} and {META})"
        )
    for name in (WEIGHTS, META, CAT_MAPS):
        if not (path / name).is_file():
            raise CheckpointError(
                f"run: {path} has no {name}; is it a folder `thyrocam train` wrote?"
            )
    return path


def read_meta(run: str | os.PathLike) -> dict:
    """Parse and check a run's ``meta.json``."""
    path = resolve_run_dir(run) / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a thyrocam run (format is {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {meta['format_version']} is newer than this thyrocam "
            f"understands ({FORMAT_VERSION}); upgrade thyrocam"
        )
    for key in ("arch", "clinical_dim", "preprocessing", "threshold"):
        if key not in meta:
            raise CheckpointError(f"{path}: missing key {key!r}")
    return meta


def load_run(run: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> RunInfo:
    """Load a run folder without unpickling anything.

    Raises:
        CheckpointError: missing files, corrupt JSON or safetensors, or weights
            that do not match the architecture the metadata describes.
    """
    folder = resolve_run_dir(run)
    meta = read_meta(folder)
    cat_maps = load_cat_maps(folder / CAT_MAPS)
    if clinical_dim(cat_maps) != int(meta["clinical_dim"]):
        raise CheckpointError(
            f"{folder}: cat_maps.json encodes {clinical_dim(cat_maps)} values but the model "
            f"expects {meta['clinical_dim']}"
        )
    try:
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / META}: bad preprocessing entry ({exc})") from None
    try:
        model = ThyroidNet(
            arch=meta["arch"],
            clinical_dim=int(meta["clinical_dim"]),
            hidden=int(meta.get("hidden", 64)),
            modalities=meta.get("modalities", "both"),
            # Runs written before the outline/descriptor heads are malignancy-only.
            heads=tuple(meta.get("heads", ("malignancy",))),
            descriptor_classes=meta.get("descriptor_classes") or None,
        )
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder / META}: {exc}") from None
    try:
        state = load_file(str(folder / WEIGHTS), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{folder / WEIGHTS}: not a readable safetensors file ({exc})"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{folder / WEIGHTS}: weights do not match a {meta['arch']} ThyroidNet ({first})"
        ) from None
    model.eval()
    return RunInfo(
        model=model, meta=meta, cat_maps=cat_maps, preprocessing=preprocessing, path=folder
    )
