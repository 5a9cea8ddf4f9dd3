"""Matplotlib figures of the report (and of the notebook), drawn without pyplot.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, so no
global pyplot state or GUI backend is touched (safe in a server or a thread).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from thyrocam.explain.measures import cam_peak
from thyrocam.imaging import load_image, polygons_to_mask
from thyrocam.predictor import Explanation
from thyrocam.report.attributions import AttributionSummary
from thyrocam.report.boxes import HIT_IOU, BoxMeasures
from thyrocam.report.explanations import CENTRE_BASELINE, RANDOM_BASELINE, MethodCurves
from thyrocam.report.scoring import Calibration, ModelScore

__all__ = [
    "figure_to_data_uri",
    "roc_figure",
    "calibration_figure",
    "confusion_figure",
    "attribution_figure",
    "attribution_bars",
    "faithfulness_figure",
    "explanation_figure",
    "box_figure",
]

OUTLINE_COLOR = "#39ff14"  # the radiologist's outline, distinct from the jet colormap
_BASELINE_STYLES = {
    RANDOM_BASELINE: {"ls": "--", "color": "black"},
    CENTRE_BASELINE: {"ls": ":", "color": "#777777"},
}
MODEL_COLORS = {"combined": "#1f4e9c", "image-only": "#d9730d", "clinical-only": "#2e8b57"}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_data_uri(fig: Figure) -> str:
    """PNG of ``fig`` as a ``data:image/png;base64,...`` URI (self-contained HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(models: Mapping[str, ModelScore]) -> Figure:
    """ROC curves of every model on the same images, AUC in the legend."""
    fig = _figure(3.7, 3.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--", label="chance")
    for name, m in models.items():
        auc = m.metrics.get("auc")
        label = f"{name}  AUC {auc:.3f}" if auc is not None else f"{name}  AUC n/a"
        ax.plot(
            m.fpr,
            m.tpr,
            drawstyle="steps-post",
            lw=2,
            color=MODEL_COLORS.get(name),
            label=label,
        )
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ROC on the held-out images", fontsize=10)
    return fig


def calibration_figure(calibration: Calibration) -> Figure:
    """Reliability diagram (observed malignant share per predicted-probability bin)."""
    fig = _figure(3.7, 3.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--", label="perfect calibration")
    mean_p, observed = calibration.mean_predicted, calibration.observed
    ax.plot(mean_p, observed, "o-", color=MODEL_COLORS["combined"], label="combined model")
    for p, o, n in zip(mean_p, observed, calibration.count, strict=True):
        ax.annotate(f"n={n}", (p, o), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("predicted P(malignant), bin mean")
    ax.set_ylabel("observed share malignant")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Calibration (10 equal-width bins)", fontsize=10)
    return fig


def confusion_figure(confusion: Mapping[str, int], *, threshold: float) -> Figure:
    """2x2 confusion matrix at the run's threshold, counts and row percentages."""
    cells = np.array(
        [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=float
    )
    rows = cells.sum(1, keepdims=True)
    share = np.divide(cells, rows, out=np.zeros_like(cells), where=rows > 0)
    fig = _figure(3.3, 3.0)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = ("benign", "malignant")
    for i in range(2):
        for j in range(2):
            color = "white" if share[i, j] > 0.6 else "black"
            text = f"{int(cells[i, j])}\n({share[i, j]:.0%})"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=11)
    ax.set_xticks([0, 1], [f"called\n{n}" for n in names])
    ax.set_yticks([0, 1], [f"truly\n{n}" for n in names])
    ax.set_title(f"Confusion matrix\nat threshold {threshold:.3f}", fontsize=10)
    return fig


def attribution_bars(attributions: Mapping[str, float], *, title: str | None = None) -> Figure:
    """One case's descriptor Shapley values as horizontal bars (red pushes to malignant)."""
    fields = list(attributions)
    values = np.array([attributions[f] for f in fields], dtype=float)
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    colors = ["#c0392b" if v > 0 else "#2471a3" for v in values]
    ax.barh(fields[::-1], values[::-1], color=colors[::-1])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("contribution to the malignancy logit")
    ax.set_title(title or "Descriptor attributions (exact Shapley values)", fontsize=10)
    return fig


def attribution_figure(summary: AttributionSummary) -> Figure:
    """Mean |Shapley| per field, and the mean signed value for malignant / benign cases."""
    fields = list(summary.fields)
    y = np.arange(len(fields))
    fig = _figure(9.0, 2.9)
    left, right = fig.subplots(1, 2, sharey=True)
    left.barh(y, summary.mean_abs, color="#555555")
    left.set_yticks(y, fields)
    left.invert_yaxis()
    left.set_xlabel("mean |contribution| (logit units)")
    left.set_title("How much each descriptor moves the logit", fontsize=10)
    h = 0.38
    if summary.mean_malignant is not None:
        right.barh(y - h / 2, summary.mean_malignant, h, color="#c0392b", label="malignant cases")
    if summary.mean_benign is not None:
        right.barh(y + h / 2, summary.mean_benign, h, color="#2471a3", label="benign cases")
    right.axvline(0, color="black", lw=0.8)
    right.set_xlabel("mean contribution (+ pushes to malignant)")
    right.set_title("Direction, by true class", fontsize=10)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def faithfulness_figure(curves: Mapping[str, MethodCurves], methods: Sequence[str]) -> Figure:
    """Mean deletion and insertion curves per method (the random map as a dashed line)."""
    fig = _figure(9.0, 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for method in methods:
            c = curves.get(method)
            if c is None:
                continue
            style = _BASELINE_STYLES.get(method, {})
            mean = getattr(c, kind).mean(0)
            ax.plot(c.fractions, mean, lw=1.6, label=method, **style)
        word = "removed (blurred)" if kind == "deletion" else "restored"
        ax.set_xlabel(f"share of pixels {word}, highest-ranked first")
        better = "lower" if kind == "deletion" else "higher"
        ax.set_title(f"{kind.capitalize()}: {better} area is better", fontsize=10)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("P(true class)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _field_of_view(exp: Explanation) -> tuple[float, float, float, float]:
    width, height = exp.image.size
    x0, y0, x1, y1 = exp.mapping.box
    return max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))


def explanation_figure(
    exp: Explanation,
    *,
    mask: np.ndarray | None = None,
    title: str | None = None,
    width: float = 5.6,
) -> Figure:
    """The frame as it is (left) and the map over what the network saw (right).

    Both panels show the nodule outline in green and the map's peak as a white
    circle; the left one marks what the network saw with a dashed box when it saw
    a crop (``roi`` runs), and the right one is zoomed to that box.

    Args:
        exp: from :meth:`Predictor.explain`.
        mask: ``(H, W)`` bool nodule mask on the frame, drawn as an outline.
        title: text above the panels.
        width: figure width in inches.
    """
    frame = np.asarray(exp.image.convert("RGB"))
    height, frame_width = frame.shape[:2]
    x0, y0, x1, y1 = _field_of_view(exp)
    shown = np.asarray(exp.overlay)  # tinted only where the network saw
    partial = (x1 - x0) * (y1 - y0) < 0.95 * frame_width * height
    bx0, by0, bx1, by1 = exp.mapping.box if partial else (0, 0, frame_width, height)
    ratios = [frame_width / height, (bx1 - bx0) / (by1 - by0)]
    fig = _figure(width, width / sum(ratios) + (0.35 if title else 0.1))
    axes = fig.subplots(1, 2, width_ratios=ratios)
    peak = cam_peak(exp.cam_frame)
    for ax, picture in zip(axes, (frame, shown), strict=True):
        ax.imshow(picture)
        ax.set_facecolor("black")
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=OUTLINE_COLOR, linewidths=1.2)
        if peak is not None:
            ax.plot(*peak, marker="o", ms=11, mfc="none", mec="black", mew=3.0)
            ax.plot(*peak, marker="o", ms=11, mfc="none", mec="white", mew=1.6)
        ax.set_xticks([])
        ax.set_yticks([])
    if partial:
        axes[0].add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", ls="--", lw=1)
        )
        axes[1].set_xlim(bx0, bx1)
        axes[1].set_ylim(by1, by0)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


AUTOBOX_COLOR = "#00e5ff"  # the automatic box, dashed as on the page


def box_figure(measures: BoxMeasures, *, worst: int = 3, width: float = 11.0) -> Figure:
    """The automatic box's IoU per frame (left), then the ``worst`` frames it boxed
    worst: outline in green, its box thin green, the automatic box dashed cyan."""
    rows = sorted(measures.rows, key=lambda r: r.iou)[:worst]
    fig = _figure(width, 2.9)
    axes = fig.subplots(1, 1 + len(rows), width_ratios=[1.0] + [1.45] * len(rows))
    axes = np.atleast_1d(axes)
    ious = np.array([r.iou for r in measures.rows])
    axes[0].hist(ious, bins=np.linspace(0, 1, 21), color="#5b7db1", edgecolor="white")
    axes[0].axvline(HIT_IOU, color="#b3261e", ls="--", lw=1.2)
    axes[0].set_xlabel("IoU with the outline's box")
    axes[0].set_ylabel("frames")
    axes[0].set_title(f"{100 * measures.hit_rate:.0f}% of {measures.frames} at IoU ≥ {HIT_IOU}",
                      fontsize=10)
    for ax, row in zip(axes[1:], rows, strict=True):
        image = load_image(row.sample.image_path).convert("RGB")
        ax.imshow(np.asarray(image))
        mask = polygons_to_mask(row.sample.polygons, size=image.size)
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=OUTLINE_COLOR, linewidths=1.2)
        x0, y0, x1, y1 = row.outline_box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=OUTLINE_COLOR, lw=0.6))
        if row.box is not None:
            x0, y0, x1, y1 = row.box
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=AUTOBOX_COLOR, ls="--", lw=1.6)
            )
        found = "no nodule found" if row.box is None else f"IoU {row.iou:.2f}"
        ax.set_title(f"case {row.sample.case_id} · {found}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
