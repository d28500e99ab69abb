"""How real do the synthetic images look? A figure that needs no downloaded network.

FID and its kin measure distances in the feature space of an ImageNet network: a download, a
domain (photos) far from medical greyscale, and a number that is meaningless at the tens of
images a crowd project has. Instead, three families of hand-made statistics, each a known way
GANs fail:

- ``intensity``: the histogram of pixel intensities (32 bins on [0, 1]): wrong contrast or
  tissue brightness;
- ``gradient``: the histogram of gradient magnitudes (32 bins on [0, 0.5] intensity per pixel,
  the last bin open): blur, or speckle and checkerboard artefacts;
- ``spectrum``: the radially averaged log power spectrum (16 bands up to Nyquist): missing
  fine texture, or high-frequency noise.

Each image becomes one vector per family. The distance between two sets of vectors is the
energy distance (Székely & Rizzo), 2E|X-Y| - E|X-X'| - E|Y-Y'|: zero only for equal
distributions, no kernel or bandwidth to tune. Its size depends on the units and on the number
of images, so it is read relative to sampling noise: ``ratio`` = distance(synthetic, real half
B) / distance(real half A, real half B), with A and the synthetic subset of equal size, averaged
over random half-splits. ~1 means as different as two halves of the real set (indistinguishable
at this sample size); 3 means three times as different. ``overall`` is the mean of the three.
With a held-out ``reference`` set, both sets are measured against it instead (see
:func:`realism_report`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

_BINS = 32
_GRADIENT_MAX = 0.5  # intensity per pixel; a steeper edge falls in the last bin
_BANDS = 16


def realism_report(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    splits: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Realism of ``synthetic`` against ``real``, all (N, H, W) float in [0, 1] of one H, W.

    Without ``reference``: ratio = distance(synthetic, real half B) / distance(real half A,
    real half B), over ``splits`` random half-splits. Beware a real set of near-duplicates
    (neighbouring slices of one volume): its halves are nearly identical, so every synthetic
    set looks far. ``reference``, real images independent of both sets (a held-out test set),
    avoids that: ratio = distance(synthetic, reference) / distance(real, reference), subsets
    of equal size drawn ``splits`` times; ~1 then means the synthetic images are as close to
    unseen real images as the real training images are.

    Returns a JSON-able dict: per family (``intensity``, ``gradient``, ``spectrum``) the
    ``ratio`` and the two mean energy distances behind it (``real_vs_real``,
    ``synthetic_vs_real``); ``overall``, the mean ratio; the set sizes. Needs at least 4 real
    and 2 synthetic images; more than 20 real ones make it steady.
    """
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    if real.ndim != 3 or synthetic.ndim != 3 or real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real and synthetic must be (N, H, W) of one H, W, not {real.shape} and {synthetic.shape}")
    if len(real) < 4 or len(synthetic) < 2:
        raise ValueError(f"need >= 4 real and >= 2 synthetic images, not {len(real)} and {len(synthetic)}")
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 3 or reference.shape[1:] != real.shape[1:] or len(reference) < 2:
            raise ValueError(f"reference must be (N >= 2, H, W) of one H, W with real, not {reference.shape}")
    feats_real, feats_synth = features(real), features(synthetic)
    feats_ref = features(reference) if reference is not None else None
    rng = np.random.default_rng(seed)
    draws = []  # (real subset, synthetic subset, reference rows: a real half, or None for the reference set)
    for _ in range(splits):
        if feats_ref is None:
            half = len(real) // 2
            k = min(half, len(synthetic))
            perm = rng.permutation(len(real))
            draws.append((perm[:k], rng.choice(len(synthetic), size=k, replace=False), perm[half:]))
        else:
            k = min(len(real), len(synthetic))
            draws.append((rng.choice(len(real), k, replace=False), rng.choice(len(synthetic), k, replace=False), None))
    out: dict[str, Any] = {}
    for family in feats_real:
        fr, fs = feats_real[family], feats_synth[family]
        ref = [feats_ref[family] if b is None else fr[b] for _, _, b in draws]
        rr = float(np.mean([energy_distance(fr[a], r) for (a, _, _), r in zip(draws, ref, strict=True)]))
        sr = float(np.mean([energy_distance(fs[s], r) for (_, s, _), r in zip(draws, ref, strict=True)]))
        out[family] = {"ratio": sr / rr if rr > 0 else None, "real_vs_real": rr, "synthetic_vs_real": sr}
    ratios = [v["ratio"] for v in out.values() if v["ratio"] is not None]
    out["overall"] = float(np.mean(ratios)) if ratios else None
    out["real_images"], out["synthetic_images"], out["splits"] = len(real), len(synthetic), splits
    out["reference_images"] = len(reference) if reference is not None else None
    return out


def features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics (N, D) of each family; see the module docstring."""
    images = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    n = len(images)
    intensity = np.stack([np.histogram(im, _BINS, (0.0, 1.0))[0] for im in images]) / images[0].size
    gy, gx = np.gradient(images, axis=(1, 2))
    magnitude = np.minimum(np.hypot(gx, gy), _GRADIENT_MAX * (1 - 1e-9))
    gradient = np.stack([np.histogram(m, _BINS, (0.0, _GRADIENT_MAX))[0] for m in magnitude]) / images[0].size

    h, w = images.shape[1:]
    power = np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True))) ** 2 / (h * w)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    band = np.minimum((np.hypot(fy, fx) / 0.5 * _BANDS).astype(int), _BANDS)  # band _BANDS: the corners
    keep = band < _BANDS
    counts = np.bincount(band[keep], minlength=_BANDS)
    spectrum = np.stack(
        [np.bincount(band[keep], weights=np.log10(p[keep] + 1e-10), minlength=_BANDS) / counts for p in power]
    )
    return {"intensity": intensity.reshape(n, -1), "gradient": gradient.reshape(n, -1), "spectrum": spectrum}


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance between the rows of ``x`` (n, D) and ``y`` (m, D), Euclidean, as the
    V-statistic (self-pairs included, so it is >= 0 and its bias depends only on n and m)."""

    def mean_dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)).mean())

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def sample_grid_png(
    real: np.ndarray, synthetic: np.ndarray, masks: np.ndarray | None = None, n: int = 6, title: str = ""
) -> bytes:
    """PNG bytes: up to ``n`` columns, real images on the top row and synthetic below (with
    ``masks`` (N, C, H, W), a row of label maps on top: pass the synthetic images' masks so each
    column shows one mask, a real image, and the image generated from that mask)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a worker thread

    real, synthetic = np.asarray(real), np.asarray(synthetic)
    cols = max(1, min(n, len(real), len(synthetic)))
    rows = [("real", real[:cols]), ("synthetic", synthetic[:cols])]
    if masks is not None:
        masks = np.asarray(masks)[:cols]
        labels = (masks * np.arange(1, masks.shape[1] + 1)[None, :, None, None]).max(axis=1)
        rows.insert(0, ("mask", labels / max(1, masks.shape[1])))
    fig = Figure(figsize=(1.4 * cols, 1.5 * len(rows) + (0.3 if title else 0)), dpi=110)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (label, ims) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(ims[c], cmap="viridis" if label == "mask" else "gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
