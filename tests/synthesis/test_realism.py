"""The realism figure reads ~1 for real against real and far more for noise."""

from __future__ import annotations

import numpy as np
import pytest

from synthesis.engine import realism_report, sample_grid_png

from . import toy


@pytest.fixture(scope="module")
def real():
    return toy(80, size=32, seed=9)[0]


def test_two_halves_of_the_real_set_read_about_one(real):
    report = realism_report(real[:40], real[40:])
    assert 0.6 < report["overall"] < 1.5
    assert report["real_images"] == 40 and report["synthetic_images"] == 40


def test_noise_and_blur_read_far_from_one(real):
    noise = np.random.default_rng(0).random(real[40:].shape).astype(np.float32)
    blurred = (real[40:] + np.roll(real[40:], 1, 1) + np.roll(real[40:], 1, 2) + np.roll(real[40:], (1, 1), (1, 2))) / 4
    assert realism_report(real[:40], noise)["overall"] > 5
    blur = realism_report(real[:40], blurred)
    assert blur["gradient"]["ratio"] > 3 and blur["spectrum"]["ratio"] > 3


def test_it_rejects_images_of_different_sizes(real):
    with pytest.raises(ValueError, match="one H, W"):
        realism_report(real, real[:, :16])


def test_the_sample_grid_is_a_png(real):
    _, masks = toy(4, size=32)
    assert sample_grid_png(real[:4], real[4:8], masks=masks, n=3).startswith(b"\x89PNG\r\n\x1a\n")


def test_against_a_held_out_reference_real_reads_about_one_and_noise_far(real):
    noise = np.random.default_rng(1).random(real[:30].shape).astype(np.float32)
    assert 0.6 < realism_report(real[:30], real[30:60], reference=real[60:])["overall"] < 1.5
    report = realism_report(real[:30], noise, reference=real[60:])
    assert report["overall"] > 5 and report["reference_images"] == 20
