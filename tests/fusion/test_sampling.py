"""Active sampling: which image deserves the next vote, and when an image needs no more."""

from __future__ import annotations

import pytest

from annotations.fusion import annotation_gain, fuse, is_settled

from . import crowd
from .crowd import careful, sloppy


@pytest.fixture(scope="module")
def results():
    """Image results where voters agree (careful) and where they do not (sloppy and random)."""
    agreeing, _ = crowd.crowd({f"c{i}": careful for i in range(3)}, 6)
    disputed, _ = crowd.crowd({"s1": sloppy, "s2": sloppy, "n": crowd.noise}, 6, seed=1)
    golds, _ = crowd.crowd({"c0": careful}, 2, gold_every=1, seed=2)
    renamed = [type(im)(f"disputed-{im.key}", im.shape, im.votes) for im in disputed]
    renamed += [type(im)(f"gold-{im.key}", im.shape, im.votes, gold=im.gold) for im in golds]
    result = fuse(agreeing + renamed)
    return (
        [result.images[im.key] for im in agreeing],
        [result.images[f"disputed-{im.key}"] for im in disputed],
        [result.images[f"gold-{im.key}"] for im in golds],
    )


def test_disputed_images_are_less_confident_than_agreed_ones(results):
    agreed, disputed, _ = results
    assert max(r.confidence for r in disputed) < min(r.confidence for r in agreed)


def test_a_vote_is_worth_more_where_voters_disagree(results):
    agreed, disputed, _ = results
    assert min(annotation_gain(r, 3) for r in disputed) > max(annotation_gain(r, 3) for r in agreed)


def test_a_vote_is_worth_less_the_more_votes_an_image_has(results):
    _, disputed, _ = results
    gains = [annotation_gain(disputed[0], n) for n in (1, 3, 5, 9)]
    assert gains == sorted(gains, reverse=True) and gains[-1] < gains[0] / 3


def test_a_gold_image_needs_no_votes(results):
    *_, golds = results
    assert annotation_gain(golds[0], 1) == 0.0
    assert is_settled(golds[0], 0)


def test_an_image_settles_once_confident_between_min_and_max_votes(results):
    agreed, disputed, _ = results
    confident = max(agreed, key=lambda r: r.confidence)
    target = confident.confidence - 0.01
    assert not is_settled(confident, 2, target, min_votes=3, max_votes=7)  # too few votes to trust anyone
    assert is_settled(confident, 3, target, min_votes=3, max_votes=7)
    assert not is_settled(disputed[0], 6, target, min_votes=3, max_votes=7)
    assert is_settled(disputed[0], 7, target, min_votes=3, max_votes=7)  # votes are better spent elsewhere


def test_sampling_rejects_nonsense_arguments(results):
    agreed, *_ = results
    with pytest.raises(ValueError, match="n_votes"):
        annotation_gain(agreed[0], -1)
    with pytest.raises(ValueError, match="target_confidence"):
        is_settled(agreed[0], 3, target_confidence=1.5)
    with pytest.raises(ValueError, match="min_votes <= max_votes"):
        is_settled(agreed[0], 3, min_votes=5, max_votes=3)
