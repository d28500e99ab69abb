"""Tests of the synthesis engine (no database). ``toy`` makes the data they share."""

from __future__ import annotations

import numpy as np


def toy(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` brain-like pairs: images (n, size, size) float32 in [0, 1] and masks
    (n, 2, size, size) bool, class 0 an inner ellipse ("white matter"), class 1 the ring around
    it ("grey matter"), never overlapping. Images: tissue intensities plus pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5
    images = np.zeros((n, size, size), dtype=np.float32)
    masks = np.zeros((n, 2, size, size), dtype=bool)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, size=2)
        a, b = rng.uniform(0.28, 0.42, size=2) * size
        inner = rng.uniform(0.5, 0.7)
        r = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2
        masks[i, 0] = r <= inner**2
        masks[i, 1] = (r <= 1) & ~masks[i, 0]
        image = 0.05 + 0.45 * masks[i, 1] + 0.75 * masks[i, 0] + rng.normal(0, 0.04, (size, size))
        images[i] = np.clip(image, 0, 1)
    return images, masks
