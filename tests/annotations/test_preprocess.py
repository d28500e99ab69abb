"""Windowing and normalisation against values computed by hand (pure, no database)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from annotations.io.preprocess import (
    ct_window,
    display_rendition,
    grey_to_rgb,
    percentile_normalise,
    rgb_passthrough,
    to_hu,
)


def test_rescale_slope_and_intercept_give_hounsfield_units():
    raw = np.array([[0, 1024, 2048]], np.uint16)
    assert to_hu(raw, slope=1.0, intercept=-1024.0).tolist() == [[-1024.0, 0.0, 1024.0]]
    assert to_hu(raw, slope=0.5, intercept=-100.0).tolist() == [[-100.0, 412.0, 924.0]]


@pytest.mark.parametrize(
    ("preset", "hu", "expected"),
    [
        # soft tissue: centre 40, width 400 -> [-160, 240] HU onto [0, 255]
        ("soft_tissue", [-1000, -160, 40, 240, 1000], [0, 0, 128, 255, 255]),
        # (0 - -160) * 255 / 400 = 102.0
        ("soft_tissue", [0], [102]),
        # lung: centre -600, width 1500 -> [-1350, 150]
        ("lung", [-1350, -600, 150, -1000], [0, 128, 255, 60]),  # (-1000 + 1350) * 0.17 = 59.5 -> 60
        # bone: centre 400, width 1800 -> [-500, 1300]
        ("bone", [-500, 400, 1300, 0], [0, 128, 255, 71]),  # 500 * 255 / 1800 = 70.8 -> 71
        # brain: centre 40, width 80 -> [0, 80]
        ("brain", [0, 40, 80, 20, -5, 100], [0, 128, 255, 64, 0, 255]),  # 40*255/80 = 127.5 -> 128
    ],
)
def test_ct_window_presets_match_hand_computed_values(preset, hu, expected):
    out, record = ct_window(np.array([hu], np.float32), preset)
    assert out.dtype == np.uint8
    assert out[0].tolist() == expected
    assert record["preset"] == preset


def test_unknown_window_is_refused_by_name():
    with pytest.raises(ValueError, match="abdomen"):
        ct_window(np.zeros((2, 2)), "abdomen")


def test_percentile_normalisation_ignores_outliers_and_nan():
    values = np.concatenate([np.linspace(0, 100, 1000), [1e6, np.nan]]).reshape(2, 501).astype(np.float32)
    out, record = percentile_normalise(values, 1.0, 99.0)
    assert record["high"] < 200  # the outlier does not set the scale
    assert out.max() == 255 and out.min() == 0
    assert out.reshape(-1)[-1] == 0  # NaN becomes black


def test_constant_image_becomes_black():
    out, _ = percentile_normalise(np.full((4, 4), 7.0))
    assert not out.any()


def test_grey_and_rgb_become_three_channel_uint8():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert grey_to_rgb(grey).shape == (2, 3, 3)
    rgb16 = np.full((2, 2, 3), 65535, np.uint16)
    out, _ = rgb_passthrough(rgb16)
    assert out.dtype == np.uint8 and (out == 255).all()


def test_display_rendition_is_bounded_lossless_webp():
    pixels = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    data, ext = display_rendition(pixels)
    assert ext == "webp"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), pixels)  # lossless
    small, _ = display_rendition(np.zeros((3000, 1500, 3), np.uint8))
    assert Image.open(io.BytesIO(small)).size == (512, 1024)
