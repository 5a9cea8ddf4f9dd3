"""A CSV manifest of frames whose label the pixels inside the outline may decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def disc_manifest(folder: Path, *, dark_is_malignant: bool, n: int = 24) -> Path:
    """``n`` frames, each a disc in its mask; with ``dark_is_malignant`` a malignant disc is
    darker than its surroundings and a benign one brighter, otherwise the level is random."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:120, :160]
    rows = ["image,label,case,mask"]
    for i in range(n):
        label = i % 2
        cy, cx, r = rng.integers(45, 75), rng.integers(50, 110), rng.integers(18, 30)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        dark = label == 1 if dark_is_malignant else rng.random() < 0.5
        level = rng.uniform(0.15, 0.3) if dark else rng.uniform(0.7, 0.85)
        gray = np.where(disc, level, 0.5) + 0.03 * rng.normal(size=disc.shape)
        Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(folder / f"f{i}.png")
        Image.fromarray(disc.astype(np.uint8) * 255).save(folder / f"m{i}.png")
        rows.append(f"f{i}.png,{label},c{i},m{i}.png")
    path = folder / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
