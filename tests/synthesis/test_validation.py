"""The dataset-value experiment: it learns, it reports, and it never trains on a test image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthesis.engine import (
    History,
    SegmenterConfig,
    loss_curve_png,
    report_png,
    run_validation,
    train_segmenter,
)
from synthesis.engine.pix2pix import EpochStats

from . import toy

FAST = SegmenterConfig(steps=30, batch_size=4, base_channels=4, depth=2, lr=1e-2)  # a toy moves in 30 steps
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    images, masks = toy(16, size=16, seed=4)
    return {"train": (images[:8], masks[:8]), "small": (images[:3], masks[:3]), "test": (images[8:], masks[8:])}


def test_the_segmenter_learns_and_repeats_itself(data):
    images, masks = data["train"]
    a = train_segmenter(images, masks, FAST, seed=1)
    b = train_segmenter(images, masks, FAST, seed=1)
    assert a.losses[-1] < 0.8 * a.losses[0]
    assert a.losses == b.losses
    assert np.array_equal(a.predict(images), b.predict(images))
    assert a.predict(images).shape == masks.shape


def test_the_report_has_spread_gains_and_is_json(data):
    report = run_validation(
        arms={"small": data["small"], "train": data["train"]},
        test=data["test"],
        seeds=[0, 1],
        config=FAST,
        baseline="small",
        class_names=["wm", "gm"],
    )
    json.dumps(report, allow_nan=False)
    small, train = report["arms"]["small"], report["arms"]["train"]
    assert (small["train_size"], train["train_size"]) == (3, 8)
    assert train["seeds"] == 2 and len(train["per_seed"]) == 2
    assert 0 <= train["dice_mean"] <= 1 and train["dice_sd"] is not None
    assert set(train["per_class"]) == {"wm", "gm"}
    gain = report["relative_gain"]["train"]
    assert gain["dice"] == pytest.approx((train["dice_mean"] - small["dice_mean"]) / small["dice_mean"])
    assert len(gain["per_seed_dice"]) == 2
    assert "small" not in report["relative_gain"]
    assert report_png(report).startswith(PNG)


@pytest.mark.parametrize("copy", [lambda im: im, lambda im: im.astype(np.float64)])
def test_it_refuses_an_arm_holding_a_test_image(data, copy):
    images, masks = data["train"]
    test_images, test_masks = data["test"]
    leaky = (np.concatenate([images, copy(test_images[2:3])]), np.concatenate([masks, test_masks[2:3]]))
    with pytest.raises(ValueError, match="test image"):
        run_validation(arms={"leaky": leaky}, test=data["test"], seeds=[0], config=FAST)


def test_cancelling_returns_the_runs_done_so_far(data):
    updates = []

    def cancel(update):
        updates.append(update)
        return True

    report = run_validation(
        arms={"small": data["small"], "train": data["train"]},
        test=data["test"],
        seeds=[0],
        config=FAST,
        baseline="small",
        progress=cancel,
    )
    assert report["cancelled"]
    assert [(u["run"], u["runs"], u["arm"]) for u in updates] == [(1, 2, "small")]
    assert report["arms"]["train"]["seeds"] == 0 and report["arms"]["train"]["dice_mean"] is None


def test_it_rejects_arms_of_another_size_and_unknown_baselines(data):
    images, masks = toy(4, size=24)
    with pytest.raises(ValueError, match="test set"):
        run_validation(arms={"big": (images, masks)}, test=data["test"], seeds=[0], config=FAST)
    with pytest.raises(ValueError, match="baseline"):
        run_validation(arms={"train": data["train"]}, test=data["test"], seeds=[0], config=FAST, baseline="nope")


def test_the_loss_curve_is_a_png():
    history = History([EpochStats(e, 3, 10.0 - e, 0.5, 0.3 / e, 1.0, 3.0 - e) for e in (1, 2, 3)])
    assert loss_curve_png(history).startswith(PNG)
    assert loss_curve_png(history.to_dict()).startswith(PNG)
