"""Image, coordinate and mask transforms between an image and MedSAM's square input, in numpy.

The one place where the geometry of MedSAM's preprocessing lives (like segment-anything's
``utils/transforms.py``): the encoder, the decoder, the exporter and the torch reference all
call these functions, so the model sees the same pixels and prompts whichever runs it.

Conventions used throughout:

* Sizes are ``(H, W)`` = ``(height, width)`` = ``(rows, columns)`` in pixels.
* Coordinates are ``(x, y)`` = ``(column, row)`` on the continuous image plane, in pixels of the
  original image, where pixel ``(r, c)`` covers the square ``[c, c+1] x [r, r+1]``; so a whole
  image spans ``[0, W] x [0, H]``.  Boxes are ``[x0, y0, x1, y1]``.
* The model input is a square of ``S = spec.input_size`` pixels; "input frame" coordinates are
  pixels of that square.

Two preprocessing modes, each reproducing the model's own inference code:

``"longest_side"`` (LiteMedSAM, S = 256; bowang-lab MedSAM, LiteMedSAM branch,
    ``CVPR24_LiteMedSAM_infer.py``): the longest side is resized to S keeping the aspect ratio,
    the new size rounded with ``int(x + 0.5)``, with area interpolation (``cv2.INTER_AREA``
    there); the resized uint8 image is min-max normalised to [0, 1] and zero-padded at the
    bottom and right to S x S.  Coordinates scale by ``S / max(H, W)`` on both axes.
``"stretch"`` (MedSAM ViT-B, S = 1024; ``MedSAM_Inference.py``): the image is resized to S x S
    ignoring the aspect ratio with ``skimage.transform.resize(order=3, preserve_range=True,
    anti_aliasing=True)`` then ``astype(np.uint8)``, and min-max normalised to [0, 1].  x scales
    by ``S / W`` and y by ``S / H``.

Neither mode subtracts a pixel mean or divides by a std: both models call ``image_encoder`` on
the [0, 1] image directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MODES",
    "PreprocessSpec",
    "apply_boxes",
    "apply_coords",
    "area_resize",
    "mask_from_low_res",
    "prepare_image",
    "resized_size",
    "scale_factors",
]

MODES = ("longest_side", "stretch")
_NORM_EPS = 1e-8  # the min-max denominator floor both models' inference code uses


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the model's square input.

    input_size: S, the side of the square the image encoder takes, in pixels (256 for
        LiteMedSAM, 1024 for MedSAM ViT-B).
    mode: "longest_side" (keep the aspect ratio, pad bottom/right) or "stretch" (resize to
        S x S, no padding); see the module docstring.
    """

    input_size: int
    mode: str

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"input_size must be a positive int, got {size!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def to_dict(self) -> dict:
        return {"input_size": int(self.input_size), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        if not isinstance(data, dict) or set(data) != {"input_size", "mode"}:
            raise ValueError(f"a preprocess spec is {{'input_size': int, 'mode': str}}, got {data!r}")
        return cls(input_size=data["input_size"], mode=data["mode"])


def _check_size(original_size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = original_size
    except (TypeError, ValueError):
        raise ValueError(f"original_size must be (H, W), got {original_size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"original_size must be two positive ints (H, W), got {original_size!r}")
    return int(h), int(w)


def resized_size(original_size: tuple[int, int], spec: PreprocessSpec) -> tuple[int, int]:
    """``(h, w)`` of the resized image inside the S x S input, before padding, in pixels.

    longest_side: ``int(H * s + 0.5), int(W * s + 0.5)`` with ``s = S / max(H, W)`` (so the
    longest side is exactly S), at least 1; stretch: ``(S, S)``.
    """
    h, w = _check_size(original_size)
    size = spec.input_size
    if spec.mode == "stretch":
        return size, size
    scale = size * 1.0 / max(h, w)
    # At least one pixel: a sliver (e.g. 3 x 2000) would otherwise round to nothing.
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def scale_factors(original_size: tuple[int, int], spec: PreprocessSpec) -> tuple[float, float]:
    """``(sx, sy)``: input-frame pixels per original pixel along x (columns) and y (rows).

    longest_side: both ``S / max(H, W)``, as LiteMedSAM scales its boxes (not the slightly
    different ``w / W``, ``h / H`` of the rounded resized size); stretch: ``S / W``, ``S / H``.
    """
    h, w = _check_size(original_size)
    size = spec.input_size
    if spec.mode == "stretch":
        return size / w, size / h
    scale = size / max(h, w)
    return scale, scale


def apply_coords(coords: np.ndarray, original_size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """Map points from original-image pixels to input-frame pixels.

    Args:
        coords: ``(N, 2)`` array-like of ``(x, y)`` in original pixels (x = column, y = row).
        original_size: ``(H, W)`` of the image the coordinates refer to.

    Returns:
        ``(N, 2)`` float32 ``(x, y)`` in pixels of the S x S model input.  No rounding: the
        original LiteMedSAM script truncated boxes to ints, which only loses precision.

    Raises:
        ValueError: for a wrongly shaped ``coords`` or a bad ``original_size``.
    """
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"coords must be an (N, 2) array of (x, y), got shape {arr.shape}")
    sx, sy = scale_factors(original_size, spec)
    return (arr * np.array([sx, sy])).astype(np.float32)


def apply_boxes(boxes: np.ndarray, original_size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """Map ``(B, 4)`` boxes ``[x0, y0, x1, y1]`` from original pixels to input-frame pixels.

    Returns ``(B, 4)`` float32; corners are mapped as by :func:`apply_coords`.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be a (B, 4) array of [x0, y0, x1, y1], got shape {arr.shape}")
    return apply_coords(arr.reshape(-1, 2), original_size, spec).reshape(-1, 4)


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------


def prepare_image(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The image encoder's input for an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (grey images are three equal channels).

    Returns:
        ``(1, 3, S, S)`` float32, channels first, values in [0, 1] (exactly 0 in the padding of
        "longest_side"; an image of one constant value becomes all zeros).

    Raises:
        ValueError: if ``image`` is not ``(H, W, 3)`` uint8 with H, W >= 1.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    size = spec.input_size
    h, w = resized_size(arr.shape[:2], spec)
    # Grey images (CT, MR: three equal channels) are resized once, not three times.
    grey = bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all())
    planes = arr[..., :1] if grey else arr
    if spec.mode == "longest_side":
        resized = _round_to_uint8(area_resize(planes, (h, w)))
    else:
        resized = _skimage_bicubic_uint8(planes, (h, w))
    if grey:
        resized = np.repeat(resized, 3, axis=2)
    lo, hi = float(resized.min()), float(resized.max())
    norm = (resized.astype(np.float32) - np.float32(lo)) / np.float32(max(hi - lo, _NORM_EPS))
    out = np.zeros((1, 3, size, size), dtype=np.float32)
    out[0, :, :h, :w] = norm.transpose(2, 0, 1)
    return out


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact area-average resize of an ``(H, W, C)`` array to ``size = (h, w)``; float64 out.

    Each output pixel is the mean of the original image over the output pixel's footprint,
    with partly covered pixels weighted by the covered fraction, when shrinking and when
    enlarging alike.  That is what OpenCV's ``INTER_AREA`` computes in both directions (its
    enlarging branch blends the at most two source pixels an output pixel straddles by their
    overlap).  Checked against OpenCV 5.0: after rounding to uint8, identical when shrinking
    and for integer enlargements (128 -> 256), and within 1 grey level when enlarging by other
    factors, where OpenCV rounds its weights to 11-bit fixed point (3.9 % of the pixels of an
    MNI slice differ by 1; LiteMedSAM's masks then agree on >= 99.8 % of pixels, IoU >= 0.97).
    Pillow's ``BOX`` filter is not used: when enlarging (MNI slices of 197 x 233 pixels go to
    256) it degenerates to nearest-neighbour, unlike INTER_AREA.

    Work and memory are O(H * W * C) (prefix sums), so very large images stay cheap.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {arr.shape}")
    h, w = size
    return _area_resize_axis(_area_resize_axis(arr, h, 0), w, 1)


def _area_resize_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = a.shape[axis]
    if n_out == n_in:
        return a
    a = np.moveaxis(a, axis, 0)
    # F(x) = integral of the piecewise-constant signal over [0, x], x in input pixels.
    prefix = np.concatenate((np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)), axis=0)
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    edges[-1] = n_in  # exact, whatever the division rounded to
    base = np.minimum(np.floor(edges).astype(np.int64), n_in - 1)
    frac = (edges - base).reshape((-1,) + (1,) * (a.ndim - 1))
    integral = prefix[base] + frac * a[base]
    out = (integral[1:] - integral[:-1]) * (n_out / n_in)
    return np.moveaxis(out, 0, axis)


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    # OpenCV's saturate_cast<uchar> rounds half to even, like np.rint.
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _skimage_bicubic_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(image, size, order=3, preserve_range=True, anti_aliasing=True)
    .astype(np.uint8)`` (MedSAM ViT-B's preprocessing), written against scipy.ndimage as
    skimage 0.19+ does it, so scikit-image is not needed.

    Anti-aliasing is a Gaussian blur of sigma ``max(0, (factor - 1) / 2)`` per axis (only when
    shrinking), then a cubic spline zoom with ``grid_mode=True`` and mirror boundaries; values
    are clipped to the input range and truncated to uint8 as MedSAM's ``astype`` does.
    """
    # scipy is only needed for ViT-B models; imported here so LiteMedSAM never loads it.
    from scipy import ndimage

    src = image.astype(np.float64)
    factors = np.array(src.shape[:2], dtype=np.float64) / np.array(size, dtype=np.float64)
    sigma = np.maximum(0.0, (factors - 1) / 2)
    filtered = ndimage.gaussian_filter(src, (sigma[0], sigma[1], 0.0), mode="mirror") if sigma.any() else src
    zoom = (1 / factors[0], 1 / factors[1], 1.0)
    out = ndimage.zoom(filtered, zoom, order=3, mode="mirror", grid_mode=True)
    # zoom rounds the output shape itself; force the exact size the spec asks for.
    if out.shape[:2] != tuple(size):
        raise AssertionError(f"ndimage.zoom gave {out.shape[:2]}, expected {size}")
    np.clip(out, src.min(), src.max(), out=out)
    return out.astype(np.uint8)


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------


def mask_from_low_res(low_res_logits: np.ndarray, original_size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """The decoder's low-resolution mask logits to a mask of the original image.

    The same steps as the models' own post-processing (``F.interpolate(..., "bilinear",
    align_corners=False)`` throughout, no anti-aliasing), then ``logits > 0`` (which is
    ``sigmoid > 0.5``):

    * longest_side: bilinear to the S x S input frame (skipped when the logits already are
      S x S, as for LiteMedSAM), crop to :func:`resized_size` (drop the padding), bilinear to
      ``(H, W)``;
    * stretch: bilinear straight to ``(H, W)``, as ``MedSAM_Inference.py`` does (it resizes
      sigmoid probabilities rather than logits, which can move the border by a fraction of a
      low-res pixel; thresholding resized logits is what segment-anything and LiteMedSAM do).

    Bilinear interpolation only reads the 2 x 2 source pixels around each output pixel, so an
    output pixel can only be positive if one of those is; the last (largest) resize is
    therefore only computed over the output rows and columns that can reach a positive
    logit, which is exact and makes small masks on large images cheap.

    Args:
        low_res_logits: ``(h, w)`` float logits, or with leading size-1 axes (e.g. the
            decoder's ``(1, 1, 256, 256)``).
        original_size: ``(H, W)`` of the mask to return.

    Returns:
        ``(H, W)`` bool mask, C-ordered.
    """
    h, w = _check_size(original_size)
    logits = np.asarray(low_res_logits, dtype=np.float32)
    while logits.ndim > 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.ndim != 2:
        raise ValueError(f"low_res_logits must be (h, w) or (1, 1, h, w), got shape {np.shape(low_res_logits)}")
    if spec.mode == "longest_side":
        size = spec.input_size
        if logits.shape != (size, size):
            logits = _bilinear(logits, (size, size))
        rh, rw = resized_size((h, w), spec)
        logits = logits[:rh, :rw]
    return _bilinear_threshold(logits, (h, w))


def _source_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``align_corners=False`` source positions: lower index, upper index, upper weight."""
    scale = np.float32(n_in / n_out)
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    lo = src.astype(np.int64)  # src >= 0, so truncation is floor
    lo = np.minimum(lo, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo.astype(np.float32)).astype(np.float32)


def _bilinear(values: np.ndarray, size: tuple[int, int], rows: slice = slice(None), cols: slice = slice(None)):
    """Bilinear resize (torch semantics) of a 2-D float32 array, for output rows/cols only."""
    r_lo, r_hi, r_w = (v[rows] for v in _source_index(values.shape[0], size[0]))
    c_lo, c_hi, c_w = (v[cols] for v in _source_index(values.shape[1], size[1]))
    # Along x first, then y, as torch's separable CPU kernel does (same products, same sums,
    # so the same float32 results).  Along x only the few source rows needed are resized.
    first, last = int(r_lo[0]), int(r_hi[-1]) + 1
    src = values[first:last]
    across = src[:, c_lo] * (1 - c_w)
    across += src[:, c_hi] * c_w
    out = across[r_lo - first] * (1 - r_w)[:, None]
    out += across[r_hi - first] * r_w[:, None]
    return out


def _bilinear_threshold(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    positive = values > 0
    pos_rows = np.flatnonzero(positive.any(axis=1))
    if pos_rows.size == 0:
        return out
    pos_cols = np.flatnonzero(positive.any(axis=0))
    rows = _reach(values.shape[0], size[0], int(pos_rows[0]), int(pos_rows[-1]))
    cols = _reach(values.shape[1], size[1], int(pos_cols[0]), int(pos_cols[-1]))
    out[rows, cols] = _bilinear(values, size, rows, cols) > 0
    return out


def _reach(n_in: int, n_out: int, first: int, last: int) -> slice:
    """Output indices whose two source pixels touch ``[first, last]`` (a contiguous range)."""
    lo, hi, _ = _source_index(n_in, n_out)
    inside = np.flatnonzero((hi >= first) & (lo <= last))
    return slice(int(inside[0]), int(inside[-1]) + 1)
