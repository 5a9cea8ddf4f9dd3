"""The per-batch function both backends run: decode, one forward + one gradient, summarise.

:class:`BatchExplainer` loads a run once (per process, or per Ray actor) and
turns a collated batch of :class:`~thyrocam.batch.items.Item` into
:class:`ItemResult` records. Decoding and preprocessing happen in
:class:`ItemDataset` (so a DataLoader's workers can do them), with exactly the
steps :meth:`thyrocam.Predictor.explain` takes for one image: the same decoder,
the run's preprocessing, the outline's box when the run crops (as ``thyrocam
evaluate`` does), and the same descriptor encoding. The CAM comes from the same
engine, on the whole batch at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from thyrocam.batch.items import Item
from thyrocam.checkpoint import WEIGHTS, resolve_run_dir
from thyrocam.clinical import encode_clinical_with_mask, normalize_clinical
from thyrocam.errors import InputError
from thyrocam.explain import get_method
from thyrocam.explain.cam import CamResult
from thyrocam.explain.measures import cam_peak, energy_in_mask
from thyrocam.explain.overlay import overlay_cam_on_pil
from thyrocam.imaging import FrameMapping, load_frame, nodule_box, polygons_to_mask, to_tensor
from thyrocam.predictor import LABEL_NAMES, Predictor

__all__ = ["ItemResult", "ItemDataset", "BatchExplainer", "collate_items", "weights_sha256"]


def weights_sha256(run: str | os.PathLike) -> str:
    """sha256 (hex) of the run's ``model.safetensors``: which weights made a result."""
    digest = hashlib.sha256()
    with open(resolve_run_dir(run) / WEIGHTS, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ItemResult:
    """One explained image.

    Attributes:
        item: what was explained.
        row: its ``index.parquet`` columns that do not depend on where files go
            (probability, label, peak, energy, error, ...).
        cam: float16 ``(S, S)`` in [0, 1] at the network input's resolution, or
            ``None`` when the image could not be read (``row["error"]`` says why).
        overlay_png: the overlay on the frame as PNG bytes (only when asked for).
    """

    item: Item
    row: dict[str, Any]
    cam: np.ndarray | None
    overlay_png: bytes | None = None


class ItemDataset(torch.utils.data.Dataset):
    """``Item`` -> ``{"x": (3, S, S), "clin": (D,), "item", "mapping", "frame", "error"}``.

    An unreadable image does not stop the job: its entry carries the error
    message (and no tensor), and becomes an index row with ``error`` set.
    """

    def __init__(self, items: Sequence[Item], *, predictor: Predictor, keep_frames: bool) -> None:
        self.items = list(items)
        self.preprocessing = predictor.preprocessing
        self.cat_maps = predictor.cat_maps
        self.max_pixels = predictor.max_pixels
        self.keep_frames = keep_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        entry: dict[str, Any] = {"item": item, "error": None}
        try:
            source = load_frame(item.path, max_pixels=self.max_pixels)
            vec, _ = encode_clinical_with_mask(normalize_clinical(item.clinical), self.cat_maps)
        except InputError as exc:
            entry["error"] = str(exc)
            return entry
        # evaluate's ROI policy: the outline's box only when the run was trained on crops.
        roi = nodule_box(item.polygons) if self.preprocessing.mode == "roi" else None
        inp, mapping = self.preprocessing.apply(source.image, roi=roi, region=source.region)
        entry.update(
            x=to_tensor(inp),
            clin=torch.from_numpy(vec),
            roi=roi,
            mapping=mapping,
            frame=source.image if self.keep_frames else None,
        )
        return entry


def collate_items(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the readable entries' tensors: ``x (B', 3, S, S)``, ``clin (B', D)``; keep the rest."""
    ok = [e for e in entries if e["error"] is None]
    return {
        "x": torch.stack([e["x"] for e in ok]) if ok else None,
        "clin": torch.stack([e["clin"] for e in ok]) if ok else None,
        "entries": entries,
    }


class BatchExplainer:
    """A run loaded once, explaining collated batches.

    Args:
        run: the run folder.
        method: a CAM method name (see :data:`thyrocam.explain.CAM_METHODS`).
        target: ``"malignant"`` or ``"benign"``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda[:N]"``.
        overlays: also render each overlay PNG.
        alpha: overlay opacity.

    On CUDA the batch runs in channels_last under autocast (bf16 where the card
    supports it, else fp16); the CAM itself is computed in float32 from the
    autocast activations and gradients. On CPU nothing changes: float32 throughout.
    """

    def __init__(
        self,
        run: str | os.PathLike,
        *,
        method: str = "gradcam",
        target: str = "malignant",
        device: str | None = "auto",
        overlays: bool = False,
        alpha: float = 0.35,
    ) -> None:
        self.predictor = Predictor.load(run, device=device)
        self.device = self.predictor.device
        spec = get_method(method)
        self.method = spec.name
        self.target = target
        self.overlays = overlays
        self.alpha = float(alpha)
        if self.device.type == "cuda":
            self.predictor.model.to(memory_format=torch.channels_last)
        self.engine = spec.cam_class(self.predictor.model, spec.layers(self.predictor.model))
        self.input_size = self.predictor.preprocessing.size

    def dataset(self, items: Sequence[Item]) -> ItemDataset:
        """The Dataset that decodes and preprocesses ``items`` for this run."""
        return ItemDataset(items, predictor=self.predictor, keep_frames=self.overlays)

    def compute(self, x: torch.Tensor, clin: torch.Tensor) -> CamResult:
        """One forward and one gradient for the batch: ``x (B, 3, S, S)``, ``clin (B, D)``."""
        x = x.to(self.device, non_blocking=True)
        clin = clin.to(self.device, non_blocking=True)
        autocast: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            autocast = torch.autocast("cuda", dtype=dtype)
        with autocast:
            return self.engine.compute(x, clinical=clin, target=self.target)  # type: ignore[arg-type]

    def explain_collated(self, batch: dict[str, Any]) -> list[ItemResult]:
        """A batch from :func:`collate_items` -> one :class:`ItemResult` per entry, in order."""
        res = self.compute(batch["x"], batch["clin"]) if batch["x"] is not None else None
        results = []
        j = 0
        for entry in batch["entries"]:
            if entry["error"] is not None:
                results.append(ItemResult(item=entry["item"], row=self._row(entry), cam=None))
                continue
            assert res is not None
            results.append(self._summarise(entry, res, j))
            j += 1
        return results

    def _row(self, entry: dict[str, Any], **values: Any) -> dict[str, Any]:
        item: Item = entry["item"]
        roi = entry.get("roi")
        return {
            "id": item.id,
            "order": item.order,
            "path": str(item.path),
            "case_id": item.case_id,
            "true_label": item.true_label,
            "method": self.method,
            "target": self.target,
            "threshold": self.predictor.threshold,
            "roi": [float(v) for v in roi] if roi is not None else None,
            "error": entry["error"],
            **values,
        }

    def _summarise(self, entry: dict[str, Any], res: CamResult, j: int) -> ItemResult:
        item: Item = entry["item"]
        mapping = entry["mapping"]
        cam = res.cam[j]
        logit = float(res.logits[j, 0])
        # The formula Predictor uses, so a batch row and a single prediction agree exactly.
        prob = float(1.0 / (1.0 + np.exp(-logit)))
        peak, energy = _peak_and_energy(cam, mapping, item.polygons)
        row = self._row(
            entry,
            probability=prob,
            logit=logit,
            label=LABEL_NAMES[int(prob >= self.predictor.threshold)],
            cam_all_zero=bool(res.all_zero[j]),
            peak_x=peak[0] if peak else None,
            peak_y=peak[1] if peak else None,
            energy_in_outline=energy,
        )
        png = None
        if self.overlays:
            frame: Image.Image = entry["frame"]
            image = overlay_cam_on_pil(
                frame, mapping.cam_to_frame(cam), alpha=self.alpha, where=mapping.visible_mask()
            )
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            png = buf.getvalue()
        return ItemResult(item=item, row=row, cam=cam.astype(np.float16), overlay_png=png)


def _peak_and_energy(
    cam: np.ndarray, mapping: FrameMapping, polygons: Sequence[Sequence[tuple[float, float]]]
) -> tuple[tuple[float, float] | None, float | None]:
    """The map's peak in frame pixels, and its mass share inside the outline (``None`` without one).

    Both are read on the ``(S, S)`` input-resolution map: the outline is moved into
    input pixels rather than the map onto the frame (a frame-sized resample per
    image would cost more than the CAM itself at small input sizes).
    """
    peak = cam_peak(cam)
    frame_peak = None
    if peak is not None:
        # cam_peak answers pixel indices; input_to_frame takes positions (centres at +0.5).
        x, y = mapping.input_to_frame(peak[0] + 0.5, peak[1] + 0.5)
        frame_peak = (x - 0.5, y - 0.5)
    outlines = [poly for poly in polygons if len(poly) >= 3]
    if not outlines:
        return frame_peak, None
    size = mapping.input_size

    def to_input(px: float, py: float) -> tuple[float, float]:
        u, v = mapping.frame_to_input(float(px) + 0.5, float(py) + 0.5)
        return u - 0.5, v - 0.5

    moved = [[to_input(px, py) for px, py in poly] for poly in outlines]
    mask = polygons_to_mask(moved, size=(size, size))
    return frame_peak, energy_in_mask(cam, mask)
