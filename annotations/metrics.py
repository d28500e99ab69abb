"""How close two masks are: Dice for overlap, surface Dice for boundaries. Pure numpy.

Masks are (H, W) arrays, truthy = foreground, both of the same shape. Every measure lies in
[0, 1], 1 meaning identical; two empty masks agree perfectly (1.0), an empty mask against a
non-empty one scores 0.0. Used by the game's scoring, the fusion engine and the benchmarks, so
they all mean the same thing by "Dice".
"""

from __future__ import annotations

import numpy as np

BOUNDARY_TOLERANCE_PX = 2  # a fingertip on a phone is ~40 px wide; 2 px forgives rasterisation, not sloppiness


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|)."""
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour in the background (image edges count as background)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels (Euclidean, radius 0 = unchanged)."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius, constant_values=False)
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def surface_dice(a: np.ndarray, b: np.ndarray, tolerance: int = BOUNDARY_TOLERANCE_PX) -> float:
    """Normalised surface Dice: the share of both boundaries lying within ``tolerance`` pixels of
    the other boundary (Nikolov et al. 2021). Insensitive to the bulk of a large structure, so it
    rewards tracing the edge, which is where volunteers differ."""
    a, b = _pair(a, b)
    edge_a, edge_b = boundary(a), boundary(b)
    total = int(edge_a.sum()) + int(edge_b.sum())
    if total == 0:
        return 1.0
    near = int((edge_a & dilate(edge_b, tolerance)).sum()) + int((edge_b & dilate(edge_a, tolerance)).sum())
    return near / total


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return a, b
