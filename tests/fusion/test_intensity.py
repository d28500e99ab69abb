"""The image's intensities as evidence in the fusion engine. No database."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.fusion import FusionImage, Vote, fuse, update
from annotations.fusion.engine import INTENSITY_LEVELS, intensity_levels
from annotations.metrics import dice

from . import crowd
from .crowd import careful, wide
from .test_engine import assert_same, mean_dice

# Two biased hands outvote one careful one: by votes alone the label is drawn 2 px too wide.
BIASED_MAJORITY = {"a": careful, "b": wide, "c": wide}


def test_an_image_that_shows_the_structure_overrules_a_biased_majority():
    images, truths = crowd.crowd(BIASED_MAJORITY, 12)
    votes_only = mean_dice(fuse(images), images, truths)
    with_image = mean_dice(fuse(crowd.with_intensity(images, truths)), images, truths)
    assert votes_only < 0.85
    assert with_image > 0.95


def test_an_image_that_says_nothing_about_the_structure_changes_next_to_nothing():
    images, truths = crowd.crowd({"a": careful, "b": crowd.sloppy, "c": careful, "d": wide}, 12)
    plain = fuse(images)
    blind = fuse(crowd.with_intensity(images, truths, contrast=0.0))
    for key, result in plain.images.items():
        assert dice(result.mask, blind.images[key].mask) > 0.97
    assert abs(mean_dice(plain, images, truths) - mean_dice(blind, images, truths)) < 0.01


def test_only_the_order_of_intensities_counts():
    images, truths = crowd.crowd(BIASED_MAJORITY, 6)
    grey = crowd.with_intensity(images, truths)
    hounsfield = [
        FusionImage(im.key, im.shape, im.votes, intensity=np.rint(im.intensity * 4000 - 1000).astype(np.int16))
        for im in grey
    ]
    rescaled = [FusionImage(im.key, im.shape, im.votes, intensity=im.intensity * 4000 - 1000) for im in grey]
    assert_same(fuse(grey), fuse(rescaled))
    # Rounded to whole HU the levels move by a pixel here and there, not the label.
    for key, result in fuse(grey).images.items():
        assert dice(result.mask, fuse(hounsfield).images[key].mask) > 0.99


def test_a_gold_images_crowd_label_reads_the_image_as_if_it_had_no_gold():
    """The crowd's label of a gold image uses the image as a twin without the gold does, and the
    gold takes no part in it (nor in its intensity levels)."""
    images, truths = crowd.crowd(BIASED_MAJORITY, 12)
    images = crowd.with_intensity(images, truths)
    twins = []
    for i in (0, 4, 8):
        twins.append(FusionImage(f"twin-{i}", images[i].shape, images[i].votes, intensity=images[i].intensity))
        images[i] = FusionImage(
            images[i].key, images[i].shape, images[i].votes, gold=truths[i], intensity=images[i].intensity
        )
    result = fuse([*images, *twins], tol=1e-7)
    for i in (0, 4, 8):
        gold, twin = result.images[images[i].key], result.images[f"twin-{i}"]
        assert np.array_equal(gold.mask, truths[i])
        assert np.allclose(gold.crowd.probability, twin.probability, atol=1e-4)
        assert np.array_equal(gold.crowd.mask, twin.mask)
        assert dice(gold.crowd.mask, truths[i]) > 0.9


def test_update_starts_from_the_last_intensity_histograms_and_matches_a_full_run():
    drawers = {"a": careful, "b": wide, "c": careful, "d": crowd.sloppy, "e": wide}
    images, truths = crowd.crowd(drawers, 16, per_image=3, gold_every=5)
    images = crowd.with_intensity(images, truths)
    before = fuse(images[:14], tol=1e-6)
    rng = np.random.default_rng(3)
    grown = [
        FusionImage(
            im.key, im.shape, [*im.votes, Vote("f", careful(truths[i], rng))], gold=im.gold, intensity=im.intensity
        )
        for i, im in enumerate(images[:2])
    ]
    updated = update(before, grown + images[14:], tol=1e-6)
    full = fuse(grown + images[2:], tol=1e-6)
    assert updated.converged and full.converged
    assert_same(updated, full, atol=2e-3)
    again = update(updated, grown + images[14:], tol=1e-6)
    assert again.iterations < full.iterations


def test_levels_hold_about_as_many_marks_each():
    rng = np.random.default_rng(0)
    intensity = rng.random((40, 40))
    marks = np.zeros((40, 40), dtype=np.uint8)
    marks[5:25, 5:25] = 1
    marks[5:25, 5:15] = 3  # a third of the region, marked by three voters: half of all marks
    levels, level = intensity_levels(intensity, marks, "intensity")
    assert levels == INTENSITY_LEVELS and level.dtype == np.uint8 and level.max() < levels
    per_level = np.bincount(level[marks > 0], weights=marks[marks > 0], minlength=levels)
    assert np.abs(per_level - marks.sum() / levels).max() <= 6  # within two pixels of three marks


def test_one_voter_marking_everything_leaves_the_levels_to_the_contested_pixels():
    """A spammer who marks the whole image must not spend the levels on the air around the head."""
    rng = np.random.default_rng(1)
    intensity = rng.uniform(0.0, 0.1, (60, 60))  # air
    intensity[15:45, 15:45] = rng.uniform(0.4, 0.9, (30, 30))  # tissue, where the others draw
    everyone = np.ones((60, 60), dtype=np.uint8)
    marks = everyone.copy()
    marks[15:45, 15:45] = 5
    tissue_levels = len(np.unique(intensity_levels(intensity, marks, "intensity")[1][15:45, 15:45]))
    by_pixels = len(np.unique(intensity_levels(intensity, everyone, "intensity")[1][15:45, 15:45]))
    assert by_pixels <= 5 and tissue_levels >= 9  # a quarter of the pixels, five eighths of the marks


def test_a_flat_or_empty_region_is_one_level():
    marks = np.zeros((6, 5), dtype=np.uint8)
    marks[1:3, 1:3] = 1
    assert intensity_levels(np.full((6, 5), 7.0), marks, "intensity")[0] == 1
    assert intensity_levels(np.arange(30.0).reshape(6, 5), np.zeros((6, 5), np.uint8), "intensity")[0] == 1
    # A binary image has two levels, however the quantiles fall.
    two = (np.arange(30) % 2).reshape(6, 5).astype(float)
    assert intensity_levels(two, np.ones((6, 5), np.uint8), "intensity")[0] == 2


MASK = np.zeros((6, 5), dtype=bool)


@pytest.mark.parametrize(
    ("intensity", "message"),
    [
        (np.zeros((5, 6)), r"intensity has shape \(5, 6\), but the image's shape is \(6, 5\)"),
        (np.zeros((6, 5, 3)), "intensity has shape"),
        (np.full((6, 5), np.nan), "NaN or infinite"),
        (np.full((6, 5), "a"), "real numbers"),
    ],
)
def test_it_rejects_malformed_intensities(intensity, message):
    with pytest.raises(ValueError, match=message):
        fuse([FusionImage("a", (6, 5), [Vote("u", MASK)], intensity=intensity)])
