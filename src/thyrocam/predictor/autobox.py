"""The automatic nodule box: find the nodule on the whole frame, then outline it again up close.

When no box is given and the run has an outline head (or a locator network: a
second, image-only outline network trained for this alone, which the ``ddti``
presets add), :func:`find_nodule` runs two passes of the same network:

1. *Search*: the whole frame (``meta["outline_input"]`` preprocessing). The
   largest 8-connected component of the mask's confident core (probability >=
   :data:`SEED_THRESHOLD`) is the nodule; only if the core is empty is the
   ordinary 0.5 mask used. On real DDTI frames the 0.5 mask often joins the two
   panels of a two-view frame, or a nodule and the tissue beside it, through a
   faint bridge; the core does not.
2. *Refine* (runs whose crops are ``"roi"``): the run's own crop around that box
   grown :data:`REFINE_CONTEXT` times (the core lies inside the nodule, so the
   crop must leave room for its rim), where the nodule is several times larger
   in the input, is outlined again; the component at :data:`REFINE_THRESHOLD`
   that overlaps the first box most gives the final box. Nothing overlapping ->
   the first box stands.

Both passes cut the mask at the seam of a two-panel frame (:func:`panel_seam`:
the scanner shows two views side by side, and the nodule in both): a mask that
crosses the seam joins two views of one nodule, and its box fits neither.

Measured by 5-fold CV on ``../shared/ddti`` (the README's table): the share of
whole frames whose box overlaps an outline's box with IoU >= 0.5 rose from 0.47
(one pass at 0.5) to 0.57 with the same networks; cutting at the seam took the
preset's networks from 0.55 to 0.58 (the seam is found on 72 of the 231 frames).
Training the outline with a box term (``outline_box_weight``: the Dice of the
mask's row and column maxima) took the box from 0.54 to 0.61 on the table's
folds and from 0.53 to 0.56 on a second set, on one machine. Cutting the close-up
crop around the core grown 1.5 times rather than around the core itself took the
same networks from 0.61 to 0.64 (seed 0's folds, where 1.3-1.6 did equally well
and 1.5 was chosen) and from 0.56 to 0.63 on the second set (5 of 5 folds up).
Averaging each pass's outline with its mirror image's (:func:`frame_outline`)
raised the outline's Dice on 14 of 15 folds and the box hit by 0.02 over three
sets of networks. The box, mapped back to frame pixels through the
:class:`~thyrocam.imaging.FrameMapping`, becomes the ROI.

Components are found over horizontal runs of foreground pixels with a small
union-find (scipy is not a dependency): a mask has far fewer runs than pixels,
so this is a few hundred Python steps for a typical frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from thyrocam.data.samples import Sample
from thyrocam.imaging import Box, FrameMapping, Preprocessing, box_iou, outline_boxes, to_tensor
from thyrocam.model import ThyroidNet

__all__ = [
    "sample_outline_boxes",
    "FLIP_AVERAGE",
    "MASK_THRESHOLD",
    "MIN_NODULE_FRACTION",
    "NO_NODULE_WARNING",
    "REFINE_CONTEXT",
    "REFINE_THRESHOLD",
    "SEED_THRESHOLD",
    "SEAM_SHARE",
    "autobox_ious",
    "components_apart",
    "find_nodule",
    "frame_outline",
    "grown_box",
    "largest_component",
    "nodule_box_from_mask",
    "panel_seam",
    "search_core",
]

#: Probability above which a pixel belongs to the predicted outline.
MASK_THRESHOLD = 0.5
#: The whole-frame search keeps the mask's confident core (chosen by 5-fold CV on DDTI
#: among 0.5-0.95; 0.85-0.95 did equally well).
SEED_THRESHOLD = 0.9
#: The close-up pass outlines the nodule at this probability (CV among 0.2-0.7; the
#: crop-level mask is less confident at the nodule's rim than inside it).
REFINE_THRESHOLD = 0.3
#: The close-up crop is cut around the search box grown this many times about its
#: centre: the confident core underestimates the nodule by construction, and a crop
#: cut tight around it cannot show the rim that the close-up pass is there to find.
REFINE_CONTEXT = 1.5
#: Both passes average the outline with the outline of the mirrored input, mirrored
#: back (a left-right flip is a view the scanner could have shown; depth, top to
#: bottom, has a direction, so no vertical flip). A mask that leaks to one side of
#: the nodule is halved there, so the confident core and the close-up's component
#: follow the nodule rather than the leak. On three sets of saved fold networks (the
#: README): outline Dice up on 14 of 15 folds (+0.01 to +0.016), mean box IoU up on
#: all three, box hit 0.637 -> 0.655, 0.627 -> 0.679 and 0.625 -> 0.612.
FLIP_AVERAGE = True
#: A column is the seam between two panels when the jump across it is a sharp step
#: (at least twice the larger jump beside it, plus 4 gray levels) on this share of the
#: rows. On the 231 DDTI frames: 0.29-0.95 at the seam of two-panel frames, at most
#: 0.23 anywhere in the middle of one-panel frames (texture, JPEG block edges).
SEAM_SHARE = 0.27
#: A component smaller than this share of the input is speckle, not a nodule.
MIN_NODULE_FRACTION = 0.001
NO_NODULE_WARNING = (
    "no nodule box was given and the model found no nodule in the image: the whole "
    "frame was used; draw a box for a reliable result"
)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The horizontal runs of a boolean mask and their 8-connected component roots.

    Returns:
        ``(rows, starts, ends, roots)``, one entry per run (``ends`` exclusive).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected (H, W), got shape {mask.shape}")
    height, width = mask.shape
    edges = np.zeros((height, width + 2), dtype=np.int8)
    edges[:, 1:-1] = mask
    steps = np.diff(edges, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)  # exclusive; row-major order pairs them with starts
    n = len(rows)
    if n == 0:
        return rows, starts, ends, np.zeros(0, dtype=np.int64)
    parent = list(range(n))
    first = np.searchsorted(rows, np.arange(height + 1))  # runs of row r: first[r]:first[r+1]
    for r in range(1, height):
        i, i_end = int(first[r - 1]), int(first[r])
        j, j_end = int(first[r]), int(first[r + 1])
        # Two-pointer sweep over two sorted rows of runs; 8-connectivity lets runs that
        # touch diagonally (start == other's exclusive end) join.
        while i < i_end and j < j_end:
            if starts[i] <= ends[j] and starts[j] <= ends[i]:
                a, b = _find(parent, i), _find(parent, j)
                if a != b:
                    parent[b] = a
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([_find(parent, k) for k in range(n)])
    return rows, starts, ends, roots


def largest_component(
    mask: np.ndarray, *, near: tuple[int, int, int, int] | None = None
) -> tuple[int, tuple[int, int, int, int]] | None:
    """The largest 8-connected component of a boolean mask (or the one nearest a box).

    Args:
        mask: bool ``(H, W)``.
        near: ``(c0, r0, c1, r1)`` in pixel edges: pick instead the component with
            the most pixels inside this box (``None`` if no component reaches it).

    Returns:
        ``(area, (c0, r0, c1, r1))`` — its pixel count and bounding box in pixel
        edges (``c1``, ``r1`` exclusive) — or ``None`` when the mask is empty.
    """
    rows, starts, ends, roots = _runs(mask)
    n = len(rows)
    if n == 0:
        return None
    lengths = ends - starts
    area = np.bincount(roots, weights=lengths, minlength=n)
    if near is None:
        best = int(area.argmax())
    else:
        c0, r0, c1, r1 = near
        inside = np.clip(np.minimum(ends, c1) - np.maximum(starts, c0), 0, None)
        inside = np.where((rows >= r0) & (rows < r1), inside, 0)
        overlap = np.bincount(roots, weights=inside, minlength=n)
        if overlap.max() <= 0:
            return None
        best = int(overlap.argmax())
    members = roots == best
    box = (
        int(starts[members].min()),
        int(rows[members].min()),
        int(ends[members].max()),
        int(rows[members].max()) + 1,
    )
    return int(area[best]), box


def panel_seam(image: Image.Image, *, region: Box | None = None) -> int | None:
    """Where the two views of a two-panel frame meet: the first column of the right panel.

    A seam is a vertical line at which many rows step sharply at once (at least
    :data:`SEAM_SHARE` of them; 29-95 % at DDTI's seams); anatomy, speckle and JPEG
    block edges make at most 23 % of rows step at any one column of a one-panel frame.
    Searched in the middle 40 % of the frame's width (``region``'s, when given) over
    the middle 80 % of its rows; the edge of a narrow image inside the frame may also
    count, which is harmless (nothing beyond it is tissue).

    Args:
        image: the whole frame.
        region: the part of the frame that holds the image (``(x0, y0, x1, y1)``).

    Returns:
        The column in frame pixels, or ``None`` when the frame has one panel.
    """
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    x0, y0, x1, y1 = (0, 0, gray.shape[1], gray.shape[0]) if region is None else region
    x0, x1, y0, y1 = int(x0), int(x1), int(y0), int(y1)
    rows = gray[y0 + (y1 - y0) // 10 : y1 - (y1 - y0) // 10, x0:x1]
    if rows.shape[0] < 10 or rows.shape[1] < 10:
        return None
    jump = np.abs(np.diff(rows, axis=1))  # jump[:, j]: between columns j and j + 1
    step = jump[:, 1:-1] >= 2 * np.maximum(jump[:, :-2], jump[:, 2:]) + 4
    share = step.mean(axis=0)  # share[j]: rows stepping between columns j + 1 and j + 2
    lo, hi = int(0.3 * share.size), int(0.7 * share.size)
    if hi <= lo:
        return None
    j = lo + int(share[lo:hi].argmax())
    return x0 + j + 2 if share[j] >= SEAM_SHARE else None


def _cut_at_seams(mask: np.ndarray, mapping: FrameMapping, seams: Sequence[float]) -> None:
    """Clear, in place, the input column that holds each seam (frame ``x``): with a
    column gone, 8-connected components cannot cross it."""
    x0, _, x1, _ = mapping.box
    cols = mask.shape[1]
    for seam in seams:
        j = int(np.floor((seam - x0) * cols / (x1 - x0)))
        if 0 <= j < cols:
            mask[:, j] = False


def nodule_box_from_mask(
    prob: np.ndarray,
    mapping: FrameMapping,
    *,
    threshold: float = MASK_THRESHOLD,
    min_fraction: float = MIN_NODULE_FRACTION,
    near: Box | None = None,
    seams: Sequence[float] = (),
) -> Box | None:
    """The box of the largest predicted nodule, in frame pixels.

    Args:
        prob: float ``(h, w)`` outline probabilities over the network input (any
            resolution; usually ``(S, S)``).
        mapping: where that input sits in the frame.
        threshold: probability from which a pixel is inside the outline.
        min_fraction: smallest component kept, as a share of the input's pixels.
        near: a box in frame pixels: take the component overlapping it most rather
            than the largest (``None`` when none overlaps it).
        seams: frame columns no component may cross (:func:`panel_seam`).

    Returns:
        ``(x0, y0, x1, y1)`` clipped to the frame (to ``mapping.region`` when the
        input was cut from one), or ``None`` when nothing large
        enough was found (the caller falls back to the whole frame).
    """
    prob = np.asarray(prob, dtype=np.float32)
    rows, cols = prob.shape
    x0, y0, x1, y1 = mapping.box
    width, height = mapping.frame_size
    # What the network was shown: the frame, or the DICOM tissue region cut from it.
    vx0, vy0, vx1, vy1 = (0.0, 0.0, float(width), float(height))
    if mapping.region is not None:
        vx0, vy0, vx1, vy1 = (float(v) for v in mapping.region)
    # Pixel centres in frame coordinates: letterbox padding (outside what was shown) is
    # never part of a nodule, whatever the decoder says there.
    xs = x0 + (np.arange(cols) + 0.5) * (x1 - x0) / cols
    ys = y0 + (np.arange(rows) + 0.5) * (y1 - y0) / rows
    visible = ((ys >= vy0) & (ys <= vy1))[:, None] & ((xs >= vx0) & (xs <= vx1))[None, :]
    cells = None
    if near is not None:
        # The box in input pixels (edges), so overlap is counted where the mask is.
        n0, n1 = (np.array(near[0::2]) - x0) * cols / (x1 - x0)
        m0, m1 = (np.array(near[1::2]) - y0) * rows / (y1 - y0)
        cells = (int(np.floor(n0)), int(np.floor(m0)), int(np.ceil(n1)), int(np.ceil(m1)))
    mask = (prob >= threshold) & visible
    _cut_at_seams(mask, mapping, seams)
    found = largest_component(mask, near=cells)
    if found is None or found[0] < min_fraction * prob.size:
        return None
    c0, r0, c1, r1 = found[1]
    bx0, bx1 = x0 + c0 * (x1 - x0) / cols, x0 + c1 * (x1 - x0) / cols
    by0, by1 = y0 + r0 * (y1 - y0) / rows, y0 + r1 * (y1 - y0) / rows
    bx0, bx1 = max(vx0, bx0), min(vx1, bx1)
    by0, by1 = max(vy0, by0), min(vy1, by1)
    if bx1 - bx0 < 1.0 or by1 - by0 < 1.0:
        return None
    return (round(bx0, 1), round(by0, 1), round(bx1, 1), round(by1, 1))


@torch.no_grad()
def frame_outline(
    model: ThyroidNet, img: torch.Tensor, clin: torch.Tensor | None = None
) -> torch.Tensor:
    """The outline the automatic box is read from: probabilities ``(B, 1, S, S)`` of
    ``img`` ``(B, 3, S, S)``, averaged with those of its mirror image (:data:`FLIP_AVERAGE`).

    ``clin``: ``(B, D)`` descriptors or ``None`` (the outline head does not read them).
    """
    if not FLIP_AVERAGE:
        return torch.sigmoid(model.forward_heads(img, clin)["outline"].float())
    # The input and its mirror image in one batch (eval mode: BatchNorm uses its
    # running statistics, so no row depends on another).
    n = img.shape[0]
    both = torch.cat([img, img.flip(-1)])
    logits = model.forward_heads(both, None if clin is None else clin.repeat(2, 1))["outline"]
    prob = torch.sigmoid(logits.float())
    return (prob[:n] + prob[n:].flip(-1)) / 2


@torch.no_grad()
def find_nodule(
    model: ThyroidNet,
    image: Image.Image,
    *,
    clin: torch.Tensor | None,
    search: Preprocessing,
    crop: Preprocessing,
    region: Box | None = None,
) -> tuple[Box | None, np.ndarray]:
    """Where the nodule is on a whole frame, by the model's outline head.

    Args:
        model: a ``ThyroidNet`` with the ``"outline"`` head, in eval mode.
        image: the whole frame (RGB).
        clin: ``(1, D)`` descriptors or ``None`` (the outline head does not read them).
        search: the whole-frame preprocessing (the run's ``outline_input``).
        crop: the run's preprocessing; a ``"roi"`` one is used for the close-up pass.
        region: the part of the frame the network may see (DICOM tissue region).

    Returns:
        ``(box, outline)``: the box in frame pixels (``None``: no nodule found) and
        the search pass's outline probabilities on the frame, float32 ``(H, W)``.
    """
    device = next(model.parameters()).device

    def outline(inp: Image.Image) -> np.ndarray:
        prob = frame_outline(model, to_tensor(inp)[None].to(device), clin)
        return prob[0, 0].cpu().numpy()

    inp, mapping = search.apply(image, region=region)
    prob = outline(inp)
    seam = panel_seam(image, region=region)
    seams = () if seam is None else (float(seam),)
    box = search_core(prob, mapping, seams=seams)
    if box is not None and crop.mode == "roi":
        close, close_map = crop.apply(image, roi=grown_box(box, REFINE_CONTEXT), region=region)
        refined = nodule_box_from_mask(
            outline(close), close_map, threshold=REFINE_THRESHOLD, near=box, seams=seams
        )
        box = refined or box
    return box, mapping.cam_to_frame(prob)


def search_core(
    prob: np.ndarray, mapping: FrameMapping, *, seams: Sequence[float] = ()
) -> Box | None:
    """The search pass's box in frame pixels: its confident core (:data:`SEED_THRESHOLD`),
    or for a less confident model its ordinary mask; ``None``: no nodule found.

    ``prob``: the whole-frame outline probabilities ``(h, w)``; ``mapping``: where that
    input sits in the frame; ``seams``: frame columns no component may cross."""
    box = nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD, seams=seams)
    if box is None:
        box = nodule_box_from_mask(prob, mapping, threshold=MASK_THRESHOLD, seams=seams)
    return box


def grown_box(box: Box, factor: float) -> Box:
    """``box`` scaled ``factor`` times about its centre (may leave the frame: the crop pads)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = factor * (box[2] - box[0]) / 2, factor * (box[3] - box[1]) / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def components_apart(mask: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` (bool ``(H, W)``) whose 8-connected component never enters
    ``region`` (bool ``(H, W)``): what to keep of one outline where another replaces it."""
    rows, starts, ends, roots = _runs(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if len(rows) == 0:
        return out
    inside = np.array(
        [region[r, s:e].any() for r, s, e in zip(rows, starts, ends, strict=True)], dtype=bool
    )
    touched = set(roots[inside].tolist())
    for r, s, e, root in zip(rows, starts, ends, roots, strict=True):
        if root not in touched:
            out[r, s:e] = True
    return out


def autobox_ious(box: Box | None, outlines: Sequence[Box]) -> tuple[float, float]:
    """``(best, largest)``: IoU of the automatic box with the best-matching outline's box
    and with the largest outline's box (0 when no box was found).

    A two-panel DDTI frame outlines the same nodule once per panel, so a box on
    either panel has found the nodule; the training crop uses the largest outline.
    """
    if box is None or not outlines:
        return 0.0, 0.0
    ious = [box_iou(box, o) for o in outlines]
    return max(ious), ious[0]


def sample_outline_boxes(sample: Sample) -> list[Box]:
    """The box of each outline of a frame (frame pixels), the largest outline first
    (the one training crops use); a manifest's mask file gives its largest component."""
    boxes = outline_boxes(sample.polygons)
    if not boxes and sample.mask_path is not None:
        found = largest_component(np.asarray(Image.open(sample.mask_path).convert("L")) > 127)
        boxes = [tuple(float(v) for v in found[1])] if found else []  # type: ignore[misc]
    return boxes
