"""Cross-modal preprocessing: raw scanner values to the (H, W, 3) uint8 model input.

CT is windowed in Hounsfield units, MR normalised between intensity percentiles, RGB passed
through. Display renditions for phones are made from the model input, so what a volunteer sees
is what the model sees.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# (centre, width) in HU; common radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

DISPLAY_MAX_SIDE = 1024  # pixels; longest side of the rendition sent to phones


def to_hu(raw: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Stored pixel values to Hounsfield units: ``raw * slope + intercept`` (float32)."""
    return raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def ct_window(hu: np.ndarray, preset: str) -> tuple[np.ndarray, dict]:
    """Window a 2-D HU array with a named preset; returns (H, W) uint8 and the record of it.

    Values at or below ``centre - width/2`` map to 0, at or above ``centre + width/2`` to 255,
    linearly in between.
    """
    if preset not in CT_WINDOWS:
        raise ValueError(f"unknown CT window {preset!r}; choose one of {sorted(CT_WINDOWS)}")
    centre, width = CT_WINDOWS[preset]
    low = centre - width / 2.0
    scaled = (hu.astype(np.float32) - np.float32(low)) * np.float32(255.0 / width)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out, {"method": "ct_window", "preset": preset, "centre_hu": centre, "width_hu": width}


def percentile_range(values: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """The ``low_pct`` and ``high_pct`` intensity percentiles over finite values; (0, 0) if none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 0.0
    lo, hi = (float(x) for x in np.percentile(finite, [low_pct, high_pct]))
    return lo, hi


def scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``values`` linearly so ``low`` -> 0 and ``high`` -> 255, clipped, to uint8 (same shape).

    NaN and -inf map to 0, +inf to 255; if ``high <= low`` the result is all zeros.
    """
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    v = np.nan_to_num(values.astype(np.float32), nan=low, posinf=high, neginf=low)
    return np.clip(np.rint((v - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def percentile_normalise(values: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[np.ndarray, dict]:
    """Scale an MR (or other grey) image between two intensity percentiles to uint8.

    Percentiles are taken over finite values; a constant image becomes all zeros.
    """
    lo, hi = percentile_range(values, low_pct, high_pct)
    record = {"method": "percentile", "low_pct": low_pct, "high_pct": high_pct, "low": lo, "high": hi}
    return scale_to_uint8(values, lo, hi), record


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) uint8 to (H, W, 3) uint8 by repeating the channel."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"expected (H, W) uint8, got {grey.shape} {grey.dtype}")
    return np.repeat(grey[:, :, None], 3, axis=2)


def rgb_passthrough(rgb: np.ndarray) -> tuple[np.ndarray, dict]:
    """Colour images are already model input once they are (H, W, 3) uint8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        # 16-bit colour: keep the top byte, as viewers do
        top = rgb.astype(np.float64) * (255.0 / max(float(np.iinfo(rgb.dtype).max), 1.0))
        rgb = np.clip(np.rint(top), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb), {"method": "rgb_passthrough"}


def display_rendition(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> tuple[bytes, str]:
    """Encode the model input for phones: lossless WebP, longest side at most ``max_side``.

    Returns (bytes, file extension). Only pixels are written: no metadata chunks survive.
    """
    img = Image.fromarray(pixels, mode="RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", lossless=True, quality=80, method=4)
    return buf.getvalue(), "webp"
