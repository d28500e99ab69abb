"""The class's label of a live round (``gamification.class_fusion``): no database."""

from __future__ import annotations

import numpy as np
import pytest

from annotations import fusion
from gamification.class_fusion import class_labels, groups

SHAPE = (48, 64)


def square(x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


TRUTH = square(10, 10, 40, 30)


def a_class(pupils: int, wild: int, seed: int) -> list[fusion.Vote]:
    """Careful pupils draw the truth give or take 2 px per edge; wild ones mark a corner."""
    rng = np.random.default_rng(seed)
    votes = []
    for i in range(pupils - wild):
        x0, y0, x1, y1 = np.array([10, 10, 40, 30]) + rng.integers(-2, 3, 4)
        votes.append(fusion.Vote(f"p{i}", square(x0, y0, x1, y1)))
    votes += [fusion.Vote(f"w{i}", square(0, 0, 8, 8)) for i in range(wild)]
    return votes


@pytest.mark.parametrize(
    ("voters", "sizes"), [(1, [1]), (16, [16]), (17, [9, 8]), (30, [15, 15]), (100, [15] * 2 + [14] * 5)]
)
def test_groups_split_a_class_evenly_within_the_engines_limit(voters, sizes):
    split = groups(voters)
    assert [len(g) for g in split] == sizes
    assert [i for g in split for i in g] == list(range(voters))


@pytest.mark.parametrize("pupils", [4, 16, 30, 100])
def test_a_class_label_follows_the_careful_majority(pupils):
    wild = max(1, pupils // 5)
    label = class_labels([(SHAPE, a_class(pupils, wild, seed=pupils))])[0]
    dice = 2 * (label.mask & TRUTH).sum() / (label.mask.sum() + TRUTH.sum())
    assert dice > 0.85, dice
    assert not label.mask[0:8, 0:8].any()  # the wild corner is out
    assert 0.5 < label.confidence <= 1.0


def test_a_round_without_votes_has_no_label_and_rounds_fuse_jointly():
    votes = a_class(20, 3, seed=1)
    labels = class_labels([(SHAPE, votes), (SHAPE, []), (SHAPE, a_class(20, 3, seed=2))])
    assert labels[1] is None and labels[0] is not None and labels[2] is not None
    assert class_labels([(SHAPE, [])]) == [None]


def test_a_single_group_is_the_engines_own_posterior():
    votes = a_class(10, 2, seed=3)
    label = class_labels([(SHAPE, votes)])[0]
    engine = fusion.fuse([fusion.FusionImage("0:0", SHAPE, votes=votes)]).images["0:0"]
    assert np.allclose(label.probability, engine.probability)
