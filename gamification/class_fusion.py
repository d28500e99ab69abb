"""A class's label for one live round: the fusion engine on the class's masks. Pure numpy, no Django.

The engine (``annotations.fusion``) fuses at most ``fusion.MAX_VOTERS`` independent voters per
image, and a class has up to 100 pupils. So each round's votes are dealt into groups of at most
that many (as evenly as possible), every group of every round given to the engine as one image
of one joint fusion (so each pupil's sensitivity and precision are estimated over the whole
lesson so far, as the crowd's are over a campaign). A round's label is its groups' posteriors
averaged pixel by pixel, weighted by their voters: each group is a sample of the same class, so
the mean estimates what the whole class says. (Adding the groups' evidence instead, as if they
were independent witnesses, sharpens the posterior with every group and shrinks a big class's
label to the pixels nearly everyone marked.) With a single group this is the engine's own
posterior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotations import fusion


@dataclass(frozen=True)
class ClassLabel:
    """``probability``: float32 (H, W), P(foreground); ``mask``: bool (H, W), probability >= 0.5;
    ``confidence``: expected Dice of the mask against the truth drawn from the posterior
    (``fusion.ImageResult.confidence``'s definition), in [0, 1]."""

    probability: np.ndarray
    mask: np.ndarray
    confidence: float


def groups(voters: int, size: int = fusion.MAX_VOTERS) -> list[range]:
    """``voters`` split into as few consecutive groups of at most ``size`` as can be, their sizes
    differing by at most one."""
    if voters < 1:
        return []
    count = -(-voters // size)
    base, extra = divmod(voters, count)
    out, start = [], 0
    for g in range(count):
        end = start + base + (g < extra)
        out.append(range(start, end))
        start = end
    return out


def class_labels(rounds: Sequence[tuple[tuple[int, int], Sequence[fusion.Vote]]]) -> list[ClassLabel | None]:
    """The class's label for each round: ``rounds`` is ``[(shape (H, W), votes), ...]`` (each pupil
    at most once per round). Rounds are fused jointly; a round without votes gets None.
    Raises ValueError on malformed votes (the engine's checks)."""
    images, owners = [], []
    for index, (shape, votes) in enumerate(rounds):
        for g, members in enumerate(groups(len(votes))):
            images.append(fusion.FusionImage(f"{index}:{g}", tuple(shape), votes=[votes[i] for i in members]))
            owners.append(index)
    if not images:
        return [None] * len(rounds)
    result = fusion.fuse(images)
    labels: list[ClassLabel | None] = []
    for index in range(len(rounds)):
        parts = [result.images[image.key] for image, owner in zip(images, owners, strict=True) if owner == index]
        labels.append(_combine(parts) if parts else None)
    return labels


def _combine(parts: list[fusion.ImageResult]) -> ClassLabel:
    weights = np.array([part.votes for part in parts], np.float64)
    probability = sum(w * part.probability for w, part in zip(weights / weights.sum(), parts, strict=True))
    probability = np.asarray(probability, np.float32)
    mask = probability >= 0.5
    total = float(probability.sum())
    denominator = float(mask.sum()) + total
    confidence = 1.0 if denominator == 0 else 2 * float(probability[mask].sum()) / denominator
    return ClassLabel(probability=probability, mask=mask, confidence=confidence)
