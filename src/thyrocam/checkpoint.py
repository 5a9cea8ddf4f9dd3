"""Run folders: safetensors weights + JSON that describes them. Nothing is ever unpickled.

A run folder holds::

    model.safetensors   the state dict of ThyroidNet
    meta.json           architecture, preprocessing, threshold, label definition, versions, config
    cat_maps.json       the descriptor encoding the model was trained with
    metrics.json        validation/test metrics (updated by ``thyrocam evaluate``)
    split.json          the case ids of the train/val/test splits (written by training;
                        train_outline_only: unlabelled cases whose outlines it learnt;
                        locator_train: every case the locator learnt from)
    problems.txt        what the data reader skipped or degraded, one line each
    locator/            optional: the network that finds the nodule for the automatic
                        box (``train_config.locator``), itself a run folder; meta.json
                        then says ``"locator": "locator"``

:func:`save_run` writes the folder atomically; :func:`load_run` checks every
file against the others and names the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from thyrocam import __version__
from thyrocam.clinical import clinical_dim, load_cat_maps, save_cat_maps
from thyrocam.errors import CheckpointError, InputError
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
    "check_run_target",
    "RUN_FILES",
    "LOCATOR",
]

FORMAT = "thyrocam-run"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "meta.json"
CAT_MAPS = "cat_maps.json"
METRICS = "metrics.json"
SPLIT = "split.json"
PROBLEMS = "problems.txt"
RUN_FILES = (WEIGHTS, META, CAT_MAPS, METRICS, SPLIT, PROBLEMS)
LOCATOR = "locator"


class RunInfo:
    """What :func:`load_run` returns: the model and everything needed to use it.

    Attributes:
        model: the ``ThyroidNet`` in eval mode on CPU.
        meta: the parsed ``meta.json``.
        cat_maps: the descriptor encoding.
        preprocessing: the run's :class:`~thyrocam.imaging.Preprocessing`.
        threshold: probability above which a case is called malignant.
        path: the run folder.
        locator: the run's locator network (its own ``RunInfo``), or ``None``.
    """

    def __init__(
        self,
        *,
        model: ThyroidNet,
        meta: dict,
        cat_maps: dict,
        preprocessing: Preprocessing,
        path: Path,
        locator: RunInfo | None = None,
    ) -> None:
        self.model = model
        self.meta = meta
        self.cat_maps = cat_maps
        self.preprocessing = preprocessing
        self.threshold = float(meta.get("threshold", 0.5))
        self.path = path
        self.locator = locator


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
    split: dict | None = None,
    problems: list[str] | None = None,
    locator: ThyroidNet | None = None,
    locator_meta: dict | None = None,
) -> Path:
    """Write a run folder atomically: all of it appears at ``out`` at once, or nothing does.

    The files are written into a temporary sibling folder, flushed to disk, and
    renamed into place; an existing run at ``out`` is renamed away first and
    deleted last. A process killed at any point leaves either no run at ``out``
    (the old one then waits beside it as ``.NAME.old-*``) or a complete one.

    Args:
        split: the case ids per split (``split.json``), when training wrote one.
        problems: data problems, one per line (``problems.txt``).
        locator: a network that finds the nodule for the automatic box, written as the
            run folder ``locator/`` (same descriptor encoding and crop) with
            ``locator_meta`` in its ``meta.json``.

    Raises:
        InputError: ``out`` exists and is not a run folder (it is never replaced).
    """
    out = check_run_target(out)
    _remove_stale_siblings(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would make the run private to this user
        if locator is not None:
            (tmp / LOCATOR).mkdir(mode=0o755)
            _write_run_files(
                tmp / LOCATOR,
                model=locator,
                cat_maps=cat_maps,
                preprocessing=preprocessing,
                threshold=0.5,
                extra_meta=locator_meta,
                metrics=None,
                split=None,
                problems=None,
            )
            extra_meta = {**(extra_meta or {}), "locator": LOCATOR}
        _write_run_files(
            tmp,
            model=model,
            cat_maps=cat_maps,
            preprocessing=preprocessing,
            threshold=threshold,
            extra_meta=extra_meta,
            metrics=metrics,
            split=split,
            problems=problems,
        )
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_run_files(
    folder: Path,
    *,
    model: ThyroidNet,
    cat_maps: dict,
    preprocessing: Preprocessing,
    threshold: float,
    extra_meta: dict | None,
    metrics: dict | None,
    split: dict | None,
    problems: list[str] | None,
) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT, "arch": model.arch})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "modalities": model.modalities,
        "clinical_dim": model.clinical_dim,
        "hidden": model.hidden,
        "heads": list(model.heads),
        "descriptor_classes": dict(model.descriptor_classes),
        "pool": model.pool,
        "fusion": model.fusion,
        "decoder": model.decoder,
        "image_size": preprocessing.size,
        "preprocessing": preprocessing.to_dict(),
        "threshold": float(threshold),
        "versions": versions(),
    }
    meta.update(extra_meta or {})
    write_json(folder / META, meta)
    save_cat_maps(cat_maps, folder / CAT_MAPS)
    if metrics is not None:
        write_json(folder / METRICS, metrics)
    if split is not None:
        write_json(folder / SPLIT, split)
    if problems is not None:
        (folder / PROBLEMS).write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    for path in folder.iterdir():
        _fsync(path)
    _fsync(folder)


def check_run_target(out: str | os.PathLike) -> Path:
    """``out`` as an absolute path, checked to be a place a run may be written.

    Allowed: a path that does not exist, an empty folder, or an existing run
    folder holding only run files (it will be replaced). Training calls this
    before it starts, so a bad ``--out`` fails in a second, not after the fit.

    Raises:
        InputError: ``out`` is a file, or a folder with anything but run files.
    """
    path = Path(os.path.abspath(out))
    if path.exists() and not path.is_dir():
        raise InputError(
            f"out: got {path}, which is a file; allowed: a new path or an existing run folder",
            field="out",
            value=str(path),
            allowed="a new path or an existing run folder",
        )
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not _run_entry(p))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise InputError(
                f"out: got {path}, a folder holding {shown}, which are not run files; "
                "allowed: a new path, an empty folder or an existing run folder "
                "(a run replaces the folder as a whole)",
                field="out",
                value=str(path),
                allowed="a new path, an empty folder or an existing run folder",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run_entry(path: Path) -> bool:
    """Whether ``path`` (in a run folder) is part of a run: a run file, or a ``locator/``
    folder holding only run files."""
    if path.name == LOCATOR and path.is_dir():
        return all(p.name in RUN_FILES for p in path.iterdir())
    return path.name in RUN_FILES or path.suffix == ".tmp"


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is renamed away first, deleted last.

    POSIX cannot rename a folder over a non-empty one, so replacing is two renames;
    between them ``out`` is absent, never half-written.
    """
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}"
        os.rename(out, old)
    os.rename(tmp, out)
    _fsync(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_siblings(out: Path) -> None:
    """Delete temporary/old siblings of ``out`` left by a process that is no longer alive."""
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for path in out.parent.glob(pattern):
            pid = path.name[len(out.name) + 6 :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file or folder entry to disk (a crash after the rename keeps the contents)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


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
    kinds = {"arch": (str,), "clinical_dim": (int,), "threshold": (int, float)}
    for key, kind in kinds.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(
                f"{path}: {key} is {meta[key]!r}; expected {' or '.join(k.__name__ for k in kind)}"
            )
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
            pool=meta.get("pool", "mean"),  # runs written before pooling choices: "mean"
            fusion=meta.get("fusion", "joint"),  # and before the stacked fusion: "joint"
            decoder=meta.get("decoder", "fpn"),  # and before the U-Net decoder: "fpn"
        )
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder / META}: {exc}") from None
    state = _read_weights(folder / WEIGHTS, meta=meta, map_location=map_location)
    _check_weights_match(folder / WEIGHTS, state, model, meta)
    model.load_state_dict(state, strict=True)
    model.eval()
    return RunInfo(
        model=model,
        meta=meta,
        cat_maps=cat_maps,
        preprocessing=preprocessing,
        path=folder,
        locator=_load_locator(folder, meta, map_location=map_location),
    )


def _load_locator(
    folder: Path, meta: dict, *, map_location: str | torch.device
) -> RunInfo | None:
    """The run's locator (``meta["locator"]``: its folder inside the run), or ``None``."""
    name = meta.get("locator")
    if name is None:
        return None
    if name != LOCATOR:
        raise CheckpointError(
            f"{folder / META}: locator is {name!r}; expected {LOCATOR!r} (a folder in the run)"
        )
    if not (folder / LOCATOR).is_dir():
        raise CheckpointError(f"{folder}: meta.json names a locator but {LOCATOR}/ is missing")
    locator = load_run(folder / LOCATOR, map_location=map_location)
    if "outline" not in locator.model.heads:
        raise CheckpointError(f"{folder / LOCATOR}: the locator has no outline head")
    if locator.locator is not None:
        raise CheckpointError(f"{folder / LOCATOR}: a locator cannot have a locator of its own")
    return locator


def _read_weights(
    path: Path, *, meta: dict, map_location: str | torch.device
) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``; a truncated or foreign file is a CheckpointError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        size = path.stat().st_size if path.is_file() else 0
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt: {exc})"
        ) from None
    written_for = header.get("arch")
    if written_for is not None and written_for != meta["arch"]:
        raise CheckpointError(
            f"{path}: weights do not match a {meta['arch']} ThyroidNet "
            f"(the file was written for {written_for}; meta.json says {meta['arch']})"
        )
    return state


def _check_weights_match(
    path: Path, state: dict[str, torch.Tensor], model: ThyroidNet, meta: dict
) -> None:
    """Name what differs between the weights file and the model ``meta.json`` describes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (first: {mismatched[0]})")
    if problems:
        described = (
            f"arch {meta['arch']}, clinical_dim {meta['clinical_dim']}, heads {list(model.heads)}"
        )
        raise CheckpointError(
            f"{path}: weights do not match a {meta['arch']} ThyroidNet as meta.json describes "
            f"it ({described}): {'; '.join(problems)}"
        )
