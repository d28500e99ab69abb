"""PNG figures for researchers: masks over images, uncertainty maps, reliability plots.

Pure (numpy, Pillow, matplotlib), no Django: each function takes arrays or numbers and returns
PNG bytes.  matplotlib is imported only by the plots: the game's request path imports this module
for the greyscale PNG codec, and matplotlib would add ~42,000 objects to every server process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image as PILImage

from .metrics import boundary


def _png(image: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _hex_rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    return np.array([int(color[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


def grey_png(values: np.ndarray) -> bytes:
    """An (H, W) array of values in [0, 1] (probabilities, intensities) as an 8-bit greyscale PNG."""
    return _png(PILImage.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8), mode="L"))


def grey_from_png(data: bytes) -> np.ndarray:
    """Inverse of ``grey_png``: float32 (H, W) in [0, 1], to 1/255."""
    return np.asarray(PILImage.open(io.BytesIO(bytes(data))), dtype=np.float32) / 255.0


def mask_overlay(image: np.ndarray, mask: np.ndarray, color: str = "#ff5a36", alpha: float = 0.35) -> bytes:
    """``mask`` ((H, W) bool) tinted over ``image`` ((H, W) or (H, W, 3) uint8), outline drawn solid."""
    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    mask = np.asarray(mask, dtype=bool)
    tint = _hex_rgb(color)
    out = rgb.copy()
    out[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    out[boundary(mask)] = tint
    return _png(PILImage.fromarray(np.clip(out, 0, 255).astype(np.uint8)))


def uncertainty_overlay(image: np.ndarray, uncertainty: np.ndarray) -> bytes:
    """Per-pixel uncertainty in [0, 1] as a heat map (yellow = unsure) over a darkened image."""
    grey = np.asarray(image, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    u = np.clip(np.asarray(uncertainty, dtype=np.float32), 0, 1)[..., None]
    base = np.repeat(grey[..., None] * 0.5, 3, axis=2)
    heat = np.array([255, 220, 0], dtype=np.float32)
    out = (1 - u) * base + u * heat
    return _png(PILImage.fromarray(np.clip(out, 0, 255).astype(np.uint8)))


def reliability_histogram(weights: Sequence[float], title: str) -> bytes:
    """How many annotators have which reliability weight (0 = no signal, 1 = expert)."""
    fig, ax = _figure(6, 3.2)
    ax.hist(np.asarray(weights, dtype=float), bins=np.linspace(0, 1, 21), color="#3b7dd8", edgecolor="white")
    ax.set_xlabel("reliability weight")
    ax.set_ylabel("annotators")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    return _figure_png(fig)


def agreement_plot(
    sensitivity: Sequence[float], precision: Sequence[float], evidence: Sequence[int], title: str
) -> bytes:
    """Each annotator as a dot: how much of the structure they mark (sensitivity) against how much
    of what they mark is right (precision); dot area grows with the images behind the estimate.
    Careful annotators sit top right, over-painters bottom right, timid ones top left."""
    fig, ax = _figure(5, 5)
    size = 10 + 6 * np.sqrt(np.asarray(evidence, dtype=float))
    ax.scatter(sensitivity, precision, s=size, alpha=0.6, color="#d8533b", edgecolors="none")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("sensitivity (share of the structure marked)")
    ax.set_ylabel("precision (share of marks on the structure)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _figure_png(fig)


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a request thread

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    return fig, fig.subplots()


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()
