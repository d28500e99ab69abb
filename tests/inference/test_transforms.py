"""Geometry of MedSAM's preprocessing: image resize/pad, prompt coordinates, mask upscaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.engine.transforms import (
    PreprocessSpec,
    apply_boxes,
    apply_coords,
    area_resize,
    mask_from_low_res,
    prepare_image,
    resized_size,
    scale_factors,
)

LITE = PreprocessSpec(256, "longest_side")
STRETCH = PreprocessSpec(128, "stretch")  # MedSAM ViT-B's mode, at a size that keeps tests fast


def bright_rectangle(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A dark (H, W, 3) uint8 image with a bright rectangle covering pixel edges box = x0, y0, x1, y1."""
    image = np.full((h, w, 3), 20, dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 220
    return image


def bright_bbox(model_input: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel-edge bounding box (x0, y0, x1, y1) of the bright part of a (1, 3, S, S) input."""
    fg = model_input[0, 0] > 0.5
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# --- spec and sizes ------------------------------------------------------------------------


def test_spec_round_trips_and_refuses_bad_values():
    assert PreprocessSpec.from_dict(LITE.to_dict()) == LITE
    with pytest.raises(ValueError, match="'square'"):
        PreprocessSpec(256, "square")
    for size in (0, -1, 2.5, True, "256"):
        with pytest.raises(ValueError, match="input_size"):
            PreprocessSpec(size, "stretch")
    with pytest.raises(ValueError, match="preprocess spec"):
        PreprocessSpec.from_dict({"input_size": 256})


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((233, 197), (256, 216)),  # an MNI axial slice: enlarged, 197 * 256 / 233 = 216.4
        ((197, 233), (216, 256)),
        ((128, 128), (256, 256)),
        ((512, 512), (256, 256)),
        ((100, 300), (85, 256)),  # 85.33 rounds down
        ((3, 2000), (1, 256)),  # 0.38 rows: kept at one
        ((1, 1), (256, 256)),
    ],
)
def test_resized_size_longest_side(size, expected):
    assert resized_size(size, LITE) == expected
    assert max(resized_size(size, LITE)) == 256


def test_resized_size_stretch_is_square():
    assert resized_size((233, 197), STRETCH) == (128, 128)


@pytest.mark.parametrize("bad", [(0, 5), (5,), (5, -1), (2.0, 3), None, "ab"])
def test_sizes_are_validated(bad):
    with pytest.raises(ValueError, match="original_size"):
        resized_size(bad, LITE)


def test_scale_factors():
    assert scale_factors((100, 400), LITE) == (0.64, 0.64)  # one factor: 256 / max(H, W)
    assert scale_factors((100, 400), STRETCH) == (128 / 400, 128 / 100)  # (sx, sy)


def test_apply_coords_scales_x_by_width_and_y_by_height():
    coords = np.array([[400.0, 100.0], [0.0, 0.0], [200.0, 50.0]])  # (x, y)
    np.testing.assert_allclose(apply_coords(coords, (100, 400), LITE), [[256, 64], [0, 0], [128, 32]])
    np.testing.assert_allclose(apply_coords(coords, (100, 400), STRETCH), [[128, 128], [0, 0], [64, 64]])
    out = apply_boxes(np.array([[0, 0, 400, 100]]), (100, 400), STRETCH)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out, [[0, 0, 128, 128]])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        apply_coords(np.zeros((3, 3)), (10, 10), LITE)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        apply_boxes(np.zeros(4), (10, 10), LITE)


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [LITE, STRETCH], ids=["longest_side", "stretch"])
@pytest.mark.parametrize(("h", "w"), [(150, 400), (400, 150), (90, 70)])
def test_a_box_around_a_region_maps_onto_that_region_in_the_model_input(spec, h, w):
    box = (w // 4, h // 5, w // 4 + w // 3, h // 5 + h // 2)
    model_input = prepare_image(bright_rectangle(h, w, box), spec)
    assert model_input.shape == (1, 3, spec.input_size, spec.input_size) and model_input.dtype == np.float32
    mapped = apply_boxes(np.array([box], dtype=float), (h, w), spec)[0]
    # Resampling blurs the edges by at most a pixel or two of the model input.
    np.testing.assert_allclose(bright_bbox(model_input), mapped, atol=2)
    rh, rw = resized_size((h, w), spec)
    # Padding (longest_side) is exactly zero, below and right of the resized image.
    assert not model_input[:, :, rh:, :].any() and not model_input[:, :, :, rw:].any()


def test_prepare_image_min_max_normalises_the_resized_image_before_padding():
    rng = np.random.default_rng(0)
    image = rng.integers(30, 200, size=(100, 300, 3), dtype=np.uint8)
    out = prepare_image(image, LITE)
    rh, rw = resized_size((100, 300), LITE)
    inside = out[:, :, :rh, :rw]
    assert inside.min() == 0.0 and inside.max() == 1.0  # not 30/255..200/255
    assert np.array_equal(prepare_image(np.full((50, 60, 3), 77, np.uint8), LITE), np.zeros((1, 3, 256, 256)))


def test_grey_images_keep_equal_channels_and_colour_images_do_not():
    grey = np.repeat(np.arange(0, 250, 2, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(40, axis=0)
    out = prepare_image(grey, LITE)
    assert np.array_equal(out[0, 0], out[0, 1]) and np.array_equal(out[0, 0], out[0, 2])
    colour = grey.copy()
    colour[..., 1] //= 2
    out = prepare_image(colour, LITE)
    assert not np.array_equal(out[0, 0], out[0, 1])
    np.testing.assert_array_equal(out[0, 0], prepare_image(grey, LITE)[0, 0])  # same joint min-max


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 5, 3), np.uint8),
    ],
)
def test_prepare_image_refuses_what_is_not_an_rgb_uint8_image(bad):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        prepare_image(bad, LITE)


def _area_resize_brute_force(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each output pixel's footprint, integrated over the input pixels it overlaps."""

    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for j in range(n_out):
            lo, hi = j * n_in / n_out, (j + 1) * n_in / n_out
            for i in range(n_in):
                m[j, i] = max(0.0, min(hi, i + 1) - max(lo, i))
        return m / m.sum(axis=1, keepdims=True)

    wr, wc = weights(a.shape[0], size[0]), weights(a.shape[1], size[1])
    return np.einsum("ri,ijc,sj->rsc", wr, a.astype(np.float64), wc)


@pytest.mark.parametrize(
    ("src", "dst"), [((23, 19), (10, 7)), ((7, 5), (16, 13)), ((10, 30), (17, 9)), ((4, 4), (4, 4))]
)
def test_area_resize_is_the_exact_area_average(src, dst):
    a = np.random.default_rng(1).integers(0, 256, size=(*src, 2)).astype(np.uint8)
    np.testing.assert_allclose(area_resize(a, dst), _area_resize_brute_force(a, dst), atol=1e-9)


def test_area_resize_integer_factors():
    a = np.random.default_rng(2).integers(0, 256, size=(8, 6, 1)).astype(np.float64)
    blocks = a.reshape(4, 2, 3, 2, 1).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(a, (4, 3)), blocks, atol=1e-12)
    np.testing.assert_allclose(area_resize(a, (24, 12)), a.repeat(3, axis=0).repeat(2, axis=1), atol=1e-12)


# --- masks -----------------------------------------------------------------------------------


def torch_mask(low_res: np.ndarray, size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """LiteMedSAM's / MedSAM's own post-processing, in torch."""
    t = torch.from_numpy(low_res)[None, None]
    if spec.mode == "longest_side":
        s = spec.input_size
        if t.shape[-1] != s:
            t = F.interpolate(t, (s, s), mode="bilinear", align_corners=False)
        rh, rw = resized_size(size, spec)
        t = t[..., :rh, :rw]
    return (F.interpolate(t, size, mode="bilinear", align_corners=False)[0, 0] > 0).numpy()


def smooth_logits(seed: int, offset: float) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, 12, 12, generator=g) * 4 + offset
    return F.interpolate(coarse, (256, 256), mode="bilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("spec", [LITE, PreprocessSpec(1024, "stretch"), PreprocessSpec(1024, "longest_side")])
@pytest.mark.parametrize("size", [(233, 197), (512, 512), (100, 300), (700, 1000), (3, 5), (1, 1), (256, 256)])
def test_masks_match_torch_bilinear_upscaling_exactly(spec, size):
    for seed, offset in ((0, 0.0), (1, -5.0), (2, 3.0)):
        logits = smooth_logits(seed, offset)
        mask = mask_from_low_res(logits[None, None], size, spec)
        assert mask.shape == size and mask.dtype == bool
        np.testing.assert_array_equal(mask, torch_mask(logits, size, spec))


def test_mask_upscaling_skips_all_negative_logits_and_handles_a_single_positive_pixel():
    logits = np.full((256, 256), -3.0, dtype=np.float32)
    assert not mask_from_low_res(logits, (300, 200), LITE).any()
    logits[100, 50] = 5.0
    mask = mask_from_low_res(logits, (600, 600), LITE)
    np.testing.assert_array_equal(mask, torch_mask(logits, (600, 600), LITE))
    assert 0 < mask.sum() < 40


def test_mask_upscaling_refuses_bad_shapes():
    with pytest.raises(ValueError, match="low_res_logits"):
        mask_from_low_res(np.zeros((2, 256, 256)), (10, 10), LITE)
