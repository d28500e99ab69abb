"""Which images should the crowd see next? Pure functions over one image's fusion result.

Votes are the scarce resource: an image whose label is already certain gains nothing from a
sixth volunteer, while one where voters disagree gains a lot from a second opinion. These
functions rank images for the task queue and decide when to stop sending one.
"""

from __future__ import annotations

from .types import ImageResult


def annotation_gain(image: ImageResult, n_votes: int) -> float:
    """Expected value of one more annotation of ``image``, in [0, 1] (higher = ask sooner).

    The Dice the fused label is still expected to lack (1 - confidence, its posterior expected
    Dice) times the share of the evidence one more vote would make up, 1 / (n_votes + 1). High
    where voters disagree and few have voted, falling as votes accumulate, 0 on gold images
    (their label is known). A ranking score for the task queue, not a calibrated gain: compare
    it between images, do not read it as Dice points.
    """
    if n_votes < 0:
        raise ValueError(f"n_votes must not be negative, not {n_votes!r}")
    if image.gold:
        return 0.0
    return (1.0 - image.confidence) / (n_votes + 1)


def is_settled(
    image: ImageResult,
    n_votes: int,
    target_confidence: float = 0.9,
    min_votes: int = 3,
    max_votes: int = 7,
) -> bool:
    """Whether ``image`` needs no more annotations.

    Gold images are always settled. Otherwise: never before ``min_votes`` votes (a lone careless
    voter can look perfectly confident), always at ``max_votes`` (some images stay ambiguous, and
    votes are better spent elsewhere), and in between once ``confidence`` (the label's posterior
    expected Dice) reaches ``target_confidence``. The confidence is experience-weighted: votes of
    annotators with a long good record move the posterior further than those of newcomers, whose
    rates sit near the prior, so a few trusted votes settle an image sooner than many unknown ones.
    """
    if not 0.0 <= target_confidence <= 1.0:
        raise ValueError(f"target_confidence must lie in [0, 1], not {target_confidence!r}")
    if not 0 <= min_votes <= max_votes:
        raise ValueError(f"need 0 <= min_votes <= max_votes, got {min_votes!r} and {max_votes!r}")
    if n_votes < 0:
        raise ValueError(f"n_votes must not be negative, not {n_votes!r}")
    if image.gold or n_votes >= max_votes:
        return True
    if n_votes < min_votes:
        return False
    return image.confidence >= target_confidence
