"""The automatic nodule box: the largest connected part of the predicted outline.

When no box is given and the run has an outline head, the whole frame goes
through the network once (``meta["outline_input"]`` preprocessing); the mask
probabilities are thresholded at 0.5, the largest 8-connected component is
kept, and its bounding box, mapped back to frame pixels through the
:class:`~thyrocam.imaging.FrameMapping`, becomes the ROI.

Components are found over horizontal runs of foreground pixels with a small
union-find (scipy is not a dependency): a mask has far fewer runs than pixels,
so this is a few hundred Python steps for a typical frame.
"""

from __future__ import annotations

import numpy as np

from thyrocam.imaging import Box, FrameMapping

__all__ = [
    "MASK_THRESHOLD",
    "MIN_NODULE_FRACTION",
    "NO_NODULE_WARNING",
    "largest_component",
    "nodule_box_from_mask",
]

#: Probability above which a pixel belongs to the predicted outline.
MASK_THRESHOLD = 0.5
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


def largest_component(mask: np.ndarray) -> tuple[int, tuple[int, int, int, int]] | None:
    """The largest 8-connected component of a boolean mask.

    Args:
        mask: bool ``(H, W)``.

    Returns:
        ``(area, (c0, r0, c1, r1))`` — its pixel count and bounding box in pixel
        edges (``c1``, ``r1`` exclusive) — or ``None`` when the mask is empty.
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
        return None
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
    lengths = ends - starts
    area = np.bincount(roots, weights=lengths, minlength=n)
    best = int(area.argmax())
    members = roots == best
    box = (
        int(starts[members].min()),
        int(rows[members].min()),
        int(ends[members].max()),
        int(rows[members].max()) + 1,
    )
    return int(area[best]), box


def nodule_box_from_mask(
    prob: np.ndarray,
    mapping: FrameMapping,
    *,
    threshold: float = MASK_THRESHOLD,
    min_fraction: float = MIN_NODULE_FRACTION,
) -> Box | None:
    """The box of the largest predicted nodule, in frame pixels.

    Args:
        prob: float ``(h, w)`` outline probabilities over the network input (any
            resolution; usually ``(S, S)``).
        mapping: where that input sits in the frame.
        threshold: probability from which a pixel is inside the outline.
        min_fraction: smallest component kept, as a share of the input's pixels.

    Returns:
        ``(x0, y0, x1, y1)`` clipped to the frame, or ``None`` when nothing large
        enough was found (the caller falls back to the whole frame).
    """
    prob = np.asarray(prob, dtype=np.float32)
    rows, cols = prob.shape
    x0, y0, x1, y1 = mapping.box
    width, height = mapping.frame_size
    # Pixel centres in frame coordinates: letterbox padding (outside the frame) is
    # never part of a nodule, whatever the decoder says there.
    xs = x0 + (np.arange(cols) + 0.5) * (x1 - x0) / cols
    ys = y0 + (np.arange(rows) + 0.5) * (y1 - y0) / rows
    visible = ((ys >= 0) & (ys <= height))[:, None] & ((xs >= 0) & (xs <= width))[None, :]
    found = largest_component((prob >= threshold) & visible)
    if found is None or found[0] < min_fraction * prob.size:
        return None
    c0, r0, c1, r1 = found[1]
    bx0, bx1 = x0 + c0 * (x1 - x0) / cols, x0 + c1 * (x1 - x0) / cols
    by0, by1 = y0 + r0 * (y1 - y0) / rows, y0 + r1 * (y1 - y0) / rows
    bx0, bx1 = max(0.0, bx0), min(float(width), bx1)
    by0, by1 = max(0.0, by0), min(float(height), by1)
    if bx1 - bx0 < 1.0 or by1 - by0 < 1.0:
        return None
    return (round(bx0, 1), round(by0, 1), round(bx1, 1), round(by1, 1))
