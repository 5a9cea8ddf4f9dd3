"""Outline statistics: each one moves the way its descriptor says, on frames drawn to order."""

from __future__ import annotations

import numpy as np
import pytest

from thyrocam.imaging import OUTLINE_STATISTICS, outline_statistics

SIZE = 160


def _disc(radius: float = 30.0) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 <= radius**2


def _frame(
    inside: float, *, outside: float = 0.5, seed: int = 0, noise: float = 0.02
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.where(_disc(), inside, outside) + noise * rng.normal(size=(SIZE, SIZE))
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _blur(gray: np.ndarray, k: int = 9) -> np.ndarray:
    out = gray.copy()
    for axis in (0, 1):
        out = sum(np.roll(out, s, axis=axis) for s in range(-(k // 2), k // 2 + 1)) / k
    return out


def test_statistics_are_named_and_in_order() -> None:
    stats = outline_statistics(gray=_frame(0.3), mask=_disc())
    assert tuple(stats) == OUTLINE_STATISTICS
    assert all(np.isfinite(v) for v in stats.values())


def test_a_darker_nodule_has_a_lower_surround_ratio() -> None:
    hypo = outline_statistics(gray=_frame(0.25), mask=_disc())["surround_ratio"]
    iso = outline_statistics(gray=_frame(0.5), mask=_disc())["surround_ratio"]
    hyper = outline_statistics(gray=_frame(0.7), mask=_disc())["surround_ratio"]
    assert hypo < 0.6 < iso < 1.1 < hyper
    assert iso == pytest.approx(1.0, abs=0.05)


def test_fluid_parts_widen_the_texture_and_lower_the_dark_percentile() -> None:
    solid = _frame(0.4)
    mixed = solid.copy()
    mixed[SIZE // 2 - 12 : SIZE // 2 + 4, SIZE // 2 - 12 : SIZE // 2 + 12] = 0.03  # a cyst
    a = outline_statistics(gray=solid, mask=_disc())
    b = outline_statistics(gray=mixed, mask=_disc())
    assert b["texture_sd"] > 3 * a["texture_sd"]
    assert b["level_p10"] < 0.5 * a["level_p10"]


def test_bright_foci_are_counted_and_raise_the_top_percentile() -> None:
    plain = _frame(0.3)
    foci = plain.copy()
    for dy, dx in ((-10, -10), (5, 12), (12, -4), (-6, 8)):
        y, x = SIZE // 2 + dy, SIZE // 2 + dx
        foci[y - 1 : y + 2, x - 1 : x + 2] = 1.0  # 3 px echogenic foci
    a = outline_statistics(gray=plain, mask=_disc())
    b = outline_statistics(gray=foci, mask=_disc())
    assert a["bright_spots"] == 0.0 and b["bright_spots"] > 0.005
    assert b["bright_p99"] > a["bright_p99"] + 0.3


def test_a_blurred_edge_has_a_smaller_gradient() -> None:
    sharp = _frame(0.2, noise=0.0)
    soft = _blur(sharp)
    assert (
        outline_statistics(gray=soft, mask=_disc())["edge_gradient"]
        < 0.6 * outline_statistics(gray=sharp, mask=_disc())["edge_gradient"]
    )


def test_an_outline_filling_the_image_takes_the_border_as_its_edge() -> None:
    # A nodule box that is the whole (small) frame: no pixel outside the outline.
    gray = _frame(0.2)
    stats = outline_statistics(gray=gray, mask=np.ones_like(gray, dtype=bool))
    assert all(np.isfinite(v) for v in stats.values()), stats
    ref = np.percentile(gray[gray > 0.02], 90)
    gy, gx = np.gradient(gray / ref)
    edge = np.ones_like(gray, dtype=bool)
    edge[1:-1, 1:-1] = False
    assert stats["edge_gradient"] == pytest.approx(np.hypot(gx, gy)[edge].mean(), rel=1e-5)


def test_statistics_ignore_the_frame_gain() -> None:
    a = outline_statistics(gray=_frame(0.3, outside=0.6, noise=0.0), mask=_disc())
    b = outline_statistics(gray=0.5 * _frame(0.3, outside=0.6, noise=0.0), mask=_disc())
    for name in OUTLINE_STATISTICS:
        assert b[name] == pytest.approx(a[name], rel=0.02, abs=1e-3), name


@pytest.mark.parametrize(
    ("gray", "mask", "field"),
    [
        (np.zeros((20, 30)), np.ones((30, 20), bool), "gray, mask"),
        (np.zeros((20, 30)), np.zeros((20, 30), bool), "mask"),
        (np.zeros((2, 20, 30)), np.ones((2, 20, 30), bool), "gray, mask"),
    ],
)
def test_bad_inputs_name_the_argument(gray: np.ndarray, mask: np.ndarray, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        outline_statistics(gray=gray, mask=mask)
