"""A tiny deterministic crowd on small synthetic images, for the fusion tests (fast, numpy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from annotations.fusion import FusionImage, Vote
from annotations.metrics import dilate

SIZE = 48

Drawer = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def truth(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One to three overlapping ellipses: a blob with some shape to it."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.3, 0.7, size=2) * size
        ry, rx = rng.uniform(0.1, 0.25, size=2) * size
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~dilate(~mask, radius)


def edge_noise(mask: np.ndarray, rng: np.random.Generator, flip: float) -> np.ndarray:
    """Flip a share ``flip`` of the pixels within 1 px of the boundary: a hand's wobble."""
    band = dilate(mask, 1) & ~erode(mask, 1)
    return mask ^ (band & (rng.random(mask.shape) < flip))


def careful(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return edge_noise(t, rng, 0.15)


def sloppy(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wobbly, a pixel too narrow, and the right half of the structure missed now and then."""
    mask = edge_noise(erode(t, 1), rng, 0.5)
    if rng.random() < 0.5:
        mask[:, SIZE // 2 :] = False
    return mask


def empty(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.zeros_like(t)


def full(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ones_like(t)


def noise(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.random(t.shape) < 0.3


def box(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.flatnonzero(t.any(axis=1)), np.flatnonzero(t.any(axis=0))
    out = np.zeros_like(t)
    out[max(rows[0] - 2, 0) : rows[-1] + 3, max(cols[0] - 2, 0) : cols[-1] + 3] = True
    return out


def shifted(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same wrong answer every time: the structure moved 5 px down and right."""
    return np.roll(t, (5, 5), axis=(0, 1))


def crowd(
    drawers: dict[str, Drawer],
    n_images: int,
    *,
    seed: int = 0,
    gold_every: int = 0,
    per_image: int | None = None,
) -> tuple[list[FusionImage], list[np.ndarray]]:
    """Images where annotators (id -> how they draw) vote; ``per_image`` of them at random per
    image (all when None); every ``gold_every``-th image carries its gold. Returns the images and
    their true masks."""
    rng = np.random.default_rng(seed)
    ids = sorted(drawers)
    images, truths = [], []
    for i in range(n_images):
        t = truth(rng)
        chosen = (
            ids if per_image is None else sorted(str(who) for who in rng.choice(ids, size=per_image, replace=False))
        )
        votes = [Vote(who, drawers[who](t, rng)) for who in chosen]
        gold = t if gold_every and i % gold_every == 0 else None
        images.append(FusionImage(f"img-{i}", t.shape, votes, gold=gold))
        truths.append(t)
    return images, truths


def wide(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A biased hand: the edge drawn 2 px outside the structure, with a wobble."""
    return edge_noise(dilate(t, 2), rng, 0.3)


def scan(t: np.ndarray, rng: np.random.Generator, contrast: float = 0.3) -> np.ndarray:
    """An image of ``t``: the structure ``contrast`` brighter than its surroundings (0.4), with
    noise of sd 0.05; contrast 0 is an image that says nothing about the structure."""
    return 0.4 + contrast * t + rng.normal(0.0, 0.05, t.shape)


def with_intensity(images: list[FusionImage], truths: list[np.ndarray], *, contrast: float = 0.3, seed: int = 0):
    """``images`` with a :func:`scan` of each truth as their intensity."""
    rng = np.random.default_rng(seed)
    return [
        FusionImage(
            im.key, im.shape, im.votes, gold=im.gold, suggestion=im.suggestion, intensity=scan(t, rng, contrast)
        )
        for im, t in zip(images, truths, strict=True)
    ]
