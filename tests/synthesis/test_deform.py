"""New masks by deformation: repeatable, the right shape, plausible, classes kept consistent."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.metrics import dice
from synthesis.engine import deform_masks

from . import toy


def test_the_same_generator_state_gives_the_same_masks():
    _, masks = toy(6)
    a = deform_masks(masks, 10, np.random.default_rng(7))
    b = deform_masks(masks, 10, np.random.default_rng(7))
    c = deform_masks(masks, 10, np.random.default_rng(8))
    assert a.shape == (10, 2, 32, 32) and a.dtype == bool
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_new_masks_resemble_the_real_ones_without_copying_them():
    _, masks = toy(6)
    new = deform_masks(masks, 20, np.random.default_rng(0))
    union = masks.any(axis=1)
    for m in new.any(axis=1):
        closest = max(dice(m, real) for real in union)
        assert 0.75 < closest < 1.0  # near some real anatomy, yet not a copy
    assert 0.7 < new.sum() / 20 / (masks.sum() / 6) < 1.3  # areas on the same scale


def test_classes_that_never_overlap_stay_apart():
    _, masks = toy(6)
    new = deform_masks(masks, 30, np.random.default_rng(1), mix_share=1.0)  # blends overlap most
    assert not (new[:, 0] & new[:, 1]).any()


def test_a_class_inside_another_stays_inside():
    _, masks = toy(6)
    nested = np.stack([masks.any(axis=1), masks[:, 0]], axis=1)  # class 1 (inner) inside class 0 (whole)
    new = deform_masks(nested, 30, np.random.default_rng(2), mix_share=1.0)
    assert not (new[:, 1] & ~new[:, 0]).any()
    assert new[:, 1].any()


def test_zero_new_masks_is_an_empty_array():
    _, masks = toy(2)
    assert deform_masks(masks, 0, np.random.default_rng(0)).shape == (0, 2, 32, 32)


def test_it_rejects_masks_without_a_class_axis():
    with pytest.raises(ValueError, match="shape"):
        deform_masks(np.zeros((3, 32, 32), dtype=bool), 2, np.random.default_rng(0))
