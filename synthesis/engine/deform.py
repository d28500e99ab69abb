"""New label masks from real ones, by deformations a real anatomy could plausibly show.

Each new mask starts from a randomly chosen real mask, optionally blended with a second one
(a shape half-way between two slices or two patients), then warped by a small affine map
(rotation, scale, shift) composed with a smooth elastic displacement field. Masks are warped as
soft maps and thresholded at 1/2, so boundaries stay smooth and thin parts are not torn.

Class consistency is taken from the data, not hard-coded: two classes that never overlap in
the input (grey and white matter) never overlap in the output, and a class that always lies
inside another (a tumour inside an organ) stays inside it.

All randomness comes from the numpy Generator passed in; torch only resamples (deterministic on
the CPU), so the same masks, count and generator state give the same output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def deform_masks(
    masks: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    elastic: float = 0.03,
    control_points: int = 5,
    rotate_deg: float = 10.0,
    scale: float = 0.08,
    shift: float = 0.05,
    mix_share: float = 0.3,
) -> np.ndarray:
    """``n`` new masks (n, C, H, W) bool from ``masks`` (N, C, H, W) bool.

    - ``elastic``: standard deviation of the elastic displacement, as a fraction of the image
      side (0.03 = ~2 px at 64 px); ``control_points`` per side set its smoothness (a
      displacement drawn on a coarse grid, bicubically interpolated);
    - ``rotate_deg``, ``scale``, ``shift``: uniform ranges of the affine part: +-degrees,
      +-relative size, +-fraction of the image side;
    - ``mix_share``: share of the outputs blended from two inputs, with a weight drawn in
      [0.3, 0.7] (blurred masks averaged, so the blend's outline lies between the two).
    """
    masks = np.asarray(masks)
    if masks.ndim != 4 or len(masks) == 0:
        raise ValueError(f"masks must be a non-empty (N, C, H, W) array, not shape {masks.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n!r}")
    count, classes, h, w = masks.shape
    source = torch.as_tensor(masks.astype(np.float32))
    disjoint, inside = _relations(masks.astype(bool))

    out = np.zeros((n, classes, h, w), dtype=bool)
    for k in range(n):
        soft = source[rng.integers(count)]
        if count > 1 and rng.random() < mix_share:
            t = rng.uniform(0.3, 0.7)
            soft = t * _blur(soft, h) + (1 - t) * _blur(source[rng.integers(count)], h)
        grid = _grid(h, w, rng, elastic, control_points, rotate_deg, scale, shift)
        warped = F.grid_sample(soft[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        out[k] = _consistent(warped.numpy(), disjoint, inside)
    return out


def _relations(masks: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Class pairs (a, b) that never overlap, and (a, b) with a always inside b, in every mask."""
    classes = masks.shape[1]
    area = masks.sum(axis=(0, 2, 3))
    disjoint, inside = [], []
    for a in range(classes):
        for b in range(classes):
            if a == b or not area[a] or not area[b]:
                continue
            if a < b and not (masks[:, a] & masks[:, b]).any():
                disjoint.append((a, b))
            elif not (masks[:, a] & ~masks[:, b]).any():
                inside.append((a, b))
    return disjoint, inside


def _consistent(soft: np.ndarray, disjoint: list[tuple[int, int]], inside: list[tuple[int, int]]) -> np.ndarray:
    """Threshold soft maps (C, H, W) at 1/2, keeping the input's class relations: an overlap of
    disjoint classes goes to the class with the higher soft value, a nested class is cut to its
    container."""
    hard = soft >= 0.5
    for a, b in disjoint:
        both = hard[a] & hard[b]
        a_wins = soft[a] >= soft[b]
        hard[a] &= ~both | a_wins
        hard[b] &= ~both | ~a_wins
    for a, b in inside:
        hard[a] &= hard[b]
    return hard


def _blur(x: torch.Tensor, side: int) -> torch.Tensor:
    """Gaussian blur of (C, H, W) with sigma ~2 % of the side: enough to blend, not to erase."""
    sigma = max(0.5, 0.02 * side)
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    c = x.shape[0]
    y = x[:, None]
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return y.view(c, *x.shape[1:])


def _grid(
    h: int,
    w: int,
    rng: np.random.Generator,
    elastic: float,
    control_points: int,
    rotate_deg: float,
    scale: float,
    shift: float,
) -> torch.Tensor:
    """A sampling grid (1, H, W, 2) in grid_sample's [-1, 1] coordinates: output pixel -> source."""
    angle = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    zoom = 1.0 + rng.uniform(-scale, scale)
    dy, dx = rng.uniform(-shift, shift, size=2) * 2  # fraction of the side -> [-1, 1] units
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.tensor([[cos, -sin, dx], [sin, cos, dy]], dtype=torch.float32)[None]
    grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False)
    coarse = torch.as_tensor(rng.standard_normal((1, 2, control_points, control_points)), dtype=torch.float32)
    displacement = F.interpolate(coarse * elastic * 2, size=(h, w), mode="bicubic", align_corners=True)
    return grid + displacement.permute(0, 2, 3, 1)
