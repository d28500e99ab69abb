"""The image's intensities as evidence in the fusion engine. No database."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.fusion import FusionImage, Prior, Vote, engine, fuse, update
from annotations.fusion.engine import INTENSITY_LEVELS, intensity_edges
from annotations.metrics import dice

from . import crowd
from .crowd import careful, wide
from .test_engine import assert_same, mean_dice


def levels_of(intensity: np.ndarray, marks: np.ndarray) -> tuple[int, np.ndarray]:
    """How many levels one image's intensities are cut into, and each pixel's level."""
    edges = intensity_edges([(intensity, marks)])
    return len(edges) + 1, np.searchsorted(edges, intensity, side="right")


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


def gold_and_twins() -> tuple[list[FusionImage], list[np.ndarray]]:
    """Twelve images, of which 0, 4 and 8 carry their gold and have a twin without it (the same
    votes and intensities, keys twin-0, twin-4, twin-8)."""
    images, truths = crowd.crowd(BIASED_MAJORITY, 12)
    images = crowd.with_intensity(images, truths)
    twins = []
    for i in (0, 4, 8):
        twins.append(FusionImage(f"twin-{i}", images[i].shape, images[i].votes, intensity=images[i].intensity))
        images[i] = FusionImage(
            images[i].key, images[i].shape, images[i].votes, gold=truths[i], intensity=images[i].intensity
        )
    return [*images, *twins], truths


@pytest.mark.parametrize("intensity_images", [0.0, 2.0])
def test_a_gold_images_crowd_label_reads_its_image_as_a_twin_without_the_gold_does(intensity_images):
    """The crowd's label of a gold image is the same function of the fusion's estimates (rates,
    the pooled intensity histograms) as the label of a twin without the gold: each leans on the
    pool less its own histograms. The gold takes no part in its intensity levels."""
    images, truths = gold_and_twins()
    result = fuse(images, tol=1e-7, prior=Prior(intensity_images=intensity_images))
    for i in (0, 4, 8):
        gold, twin = result.images[f"img-{i}"], result.images[f"twin-{i}"]
        assert np.array_equal(gold.mask, truths[i])
        assert np.allclose(gold.crowd.probability, twin.probability, atol=1e-4)
        assert np.array_equal(gold.crowd.mask, twin.mask)
        assert dice(gold.crowd.mask, truths[i]) > 0.9


def test_a_gold_and_its_twin_alone_get_the_same_label():
    """Two images only, each the other's whole prior: the twin leans on the gold's truth, the
    gold's crowd label on the pool less its own crowd histograms, and they still agree."""
    images, truths = gold_and_twins()
    result = fuse([images[4], images[-2]], tol=1e-7)
    gold, twin = result.images["img-4"], result.images["twin-4"]
    assert np.allclose(gold.crowd.probability, twin.probability, atol=1e-4)
    assert np.array_equal(gold.crowd.mask, twin.mask)


def test_update_keeps_the_levels_starts_from_the_last_histograms_and_matches_a_full_run():
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
    # The levels are cut once, by the first fusion; a warm-started one keeps them too.
    full = fuse(grown + images[2:], tol=1e-6, init=before)
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
    levels, level = levels_of(intensity, marks)
    assert levels == INTENSITY_LEVELS and level.max() < levels
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
    tissue_levels = len(np.unique(levels_of(intensity, marks)[1][15:45, 15:45]))
    by_pixels = len(np.unique(levels_of(intensity, everyone)[1][15:45, 15:45]))
    assert by_pixels <= 5 and tissue_levels >= 9  # a quarter of the pixels, five eighths of the marks


def test_a_flat_or_empty_region_is_one_level():
    marks = np.zeros((6, 5), dtype=np.uint8)
    marks[1:3, 1:3] = 1
    assert levels_of(np.full((6, 5), 7.0), marks)[0] == 1
    assert levels_of(np.arange(30.0).reshape(6, 5), np.zeros((6, 5), np.uint8))[0] == 1
    # A binary image has two levels, however the quantiles fall.
    two = (np.arange(30) % 2).reshape(6, 5).astype(float)
    assert levels_of(two, np.ones((6, 5), np.uint8))[0] == 2


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


def test_the_other_images_overrule_a_trusted_majority_that_draws_the_neighbouring_tissue():
    """Three hands draw ten images carefully. On three more, two of them trace the structure
    together with the ring of darker tissue around it (as if copying a poor suggestion), the
    third the structure alone. There the votes, and the image's own histograms learned from
    them, side with the trusted pair; the other ten images show that the ring's grey level is
    background."""

    def with_ring(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return crowd.edge_noise(crowd.dilate(t, 3), rng, 0.15)

    rng = np.random.default_rng(5)
    easy, easy_truths = crowd.crowd({"x": careful, "y": careful, "z": careful}, 10, seed=1)
    hard, hard_truths = [], []
    for i in range(3):
        t = crowd.truth(rng)
        votes = [Vote("z", careful(t, rng)), Vote("x", with_ring(t, rng)), Vote("y", with_ring(t, rng))]
        hard.append(FusionImage(f"hard-{i}", t.shape, votes))
        hard_truths.append(t)
    images, truths = [*easy, *hard], [*easy_truths, *hard_truths]
    scans = []
    for t in truths:
        ring = crowd.dilate(t, 3) & ~t
        scans.append(0.4 + 0.3 * t + 0.15 * ring + rng.normal(0.0, 0.06, t.shape))
    images = [FusionImage(im.key, im.shape, im.votes, intensity=s) for im, s in zip(images, scans, strict=True)]

    def hard_dice(prior: Prior) -> float:
        return mean_dice(fuse(images, prior=prior), hard, hard_truths)

    assert hard_dice(Prior(intensity_images=0)) < 0.8
    assert hard_dice(Prior()) > 0.9


def test_a_large_fusion_cuts_its_levels_from_a_regular_sample(monkeypatch):
    monkeypatch.setattr(engine, "_EDGE_SAMPLE", 500)
    rng = np.random.default_rng(2)
    images = [(rng.random((40, 40)), np.ones((40, 40), dtype=np.uint8)) for _ in range(4)]
    edges = intensity_edges(images)
    assert len(edges) == INTENSITY_LEVELS - 1
    sample = np.concatenate([i.ravel()[:: -(-4 * 1600 // 500)] for i, _ in images])  # every 13th voted pixel
    assert np.isin(edges, sample).all()  # cut from the sample, not from every pixel
    level = np.searchsorted(edges, np.stack([i for i, _ in images]), side="right")
    per_level = np.bincount(level.ravel(), minlength=INTENSITY_LEVELS) / level.size
    assert np.abs(per_level - 1 / INTENSITY_LEVELS).max() < 0.02
