"""A simulated crowd drawing masks of real images with known truth. Numpy only, deterministic.

Used by the fusion benchmarks (and reusable by any that needs crowd labels): given true masks,
:func:`simulate` returns each image's votes from a sparse crowd (each image seen by k of a pool
of annotators, a few of whom do most of the work), an AI suggestion, and a gold flag.

Annotator types (drawn once per annotator, so their habits hold across images):

- ``careful``: traces the boundary with ~1 px of smooth wobble;
- ``sloppy``: ~3 px wobble, punches holes and sometimes misses a whole part;
- ``biased``: careful, but systematically 1.5-3 px too wide (70 %) or too narrow (30 %);
- ``spammer``: one of ``empty``, ``random`` (blobs unrelated to the image), ``full`` (everything)
  or ``box`` (the structure's bounding box);
- ``ai``: anchored to the model: accepts the suggestion unchanged (flagged ``anchored``) 70 % of
  the time, otherwise nudges it a little (flagged ``edited``, as the product records it, and
  sharing its errors).

The model's suggestion imitates a SAM-like model's systematic errors: thin parts lost (a
morphological opening), the rest over-segmented by ~2 px, with a smooth wobble. Every anchored
annotator of an image gets the same suggestion.

A :class:`Style` makes a crowd harsher than the defaults: more boundary noise, pieces dropped,
wider biases, other spam, a different acceptance rate, and (through ``suggestions``) the real
model's masks in place of the imitation. :data:`HARSH` is the harsh, AI-anchored crowd of the
fusion benchmark: boundary noise 2.5x and dropped pieces, 30 % AI-anchored annotators who
accept the suggestion unchanged 60 % of the time, biases of 2.5-5 px either way, spammers that
leave it blank, draw random blobs or the bounding box.

Boundary moves use an approximate signed distance to the true boundary (octagonal metric, in px),
so "1 px wobble" means 1 px, thin structures survive a careful annotator, and a bias of 3 px is
a 3 px dilation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TYPES = ("careful", "sloppy", "biased", "spammer", "ai")
SPAM_KINDS = ("empty", "random", "full", "box")

# Crowd mixes: the share of each annotator type in the pool.
MIXES: dict[str, dict[str, float]] = {
    "mostly_careful": {"careful": 0.6, "sloppy": 0.2, "biased": 0.1, "spammer": 0.05, "ai": 0.05},
    "many_spammers": {"careful": 0.35, "sloppy": 0.15, "biased": 0.1, "spammer": 0.4, "ai": 0.0},
    "anchored_heavy": {"careful": 0.3, "sloppy": 0.1, "biased": 0.1, "spammer": 0.05, "ai": 0.45},
    "biased": {"careful": 0.3, "sloppy": 0.1, "biased": 0.5, "spammer": 0.05, "ai": 0.05},
}


@dataclass(frozen=True)
class Style:
    """How harshly a crowd draws, beyond its mix of types (the defaults are the gentle crowd).

    ``wobble_scale`` multiplies every hand's boundary noise; ``drop_piece`` is the chance that a
    hand-drawn mask (careful, sloppy, biased, edited AI) loses a piece of the structure (a disk of
    radius ``drop_radius_px``, at random inside it); ``bias_px`` the range of biased annotators'
    boundary offsets and ``bias_wide_share`` the share of them that over-segment; ``spam_kinds``
    what spammers draw; ``ai_accept`` how often an AI-anchored annotator accepts the suggestion
    unchanged (else they edit it lightly, with a careful hand's wobble times ``wobble_scale``).
    """

    wobble_scale: float = 1.0
    drop_piece: float = 0.0
    drop_radius_px: tuple[float, float] = (6.0, 14.0)
    bias_px: tuple[float, float] = (1.5, 3.0)
    bias_wide_share: float = 0.7
    spam_kinds: tuple[str, ...] = SPAM_KINDS
    ai_accept: float = 0.7


GENTLE = Style()
HARSH = Style(
    wobble_scale=2.5, drop_piece=0.2, drop_radius_px=(4.0, 10.0), bias_px=(2.5, 5.0), bias_wide_share=0.5,
    spam_kinds=("empty", "random", "box"), ai_accept=0.6,
)  # fmt: skip
# The harsh crowd's mix: 30 % anchored; of the rest half careful, a fifth sloppy, 15 % biased, 15 % spammers.
HARSH_MIX = {"careful": 0.35, "sloppy": 0.14, "biased": 0.105, "spammer": 0.105, "ai": 0.30}

_MAX_DISTANCE = 12  # px: the signed distance saturates here; no simulated move is larger


@dataclass(frozen=True)
class Annotator:
    """One simulated volunteer and their habits (fixed across images)."""

    id: str
    kind: str  # one of TYPES
    wobble_px: float = 1.0  # amplitude of the smooth boundary noise
    bias_px: float = 0.0  # > 0 over-segments, < 0 under-segments
    spam: str = ""  # one of SPAM_KINDS for spammers
    activity: float = 1.0  # relative chance of being sent an image


@dataclass
class SimVote:
    annotator: str
    mask: np.ndarray  # bool (H, W)
    anchored: bool = False  # the suggestion accepted unchanged
    edited: bool = False  # the suggestion, changed a little


@dataclass
class SimImage:
    key: str
    truth: np.ndarray  # bool (H, W)
    suggestion: np.ndarray  # bool (H, W), the model's
    gold: bool  # whether the truth is revealed to the fusion as a gold standard
    votes: list[SimVote] = field(default_factory=list)
    image: np.ndarray | None = None  # float (H, W), the intensities the truth was traced on, if known


# --- morphology without scipy --------------------------------------------------------------


def _shift_or(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """One step of dilation: 4-neighbourhood, or 8 with ``diagonal``."""
    p = np.pad(mask, 1)
    out = mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    if diagonal:
        out |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return out


def signed_distance(mask: np.ndarray, limit: int = _MAX_DISTANCE) -> np.ndarray:
    """Approximate signed distance (px) to the boundary: > 0 inside, <= 0 outside, saturating at
    +-``limit``. Alternating 4- and 8-neighbour steps give an octagonal metric, within ~8 % of
    Euclidean, which is plenty for simulated hand drawing. ``mask > -d`` dilates by ~d px."""
    mask = np.asarray(mask, dtype=bool)
    outside = np.full(mask.shape, float(limit), dtype=np.float32)
    inside = np.full(mask.shape, float(limit), dtype=np.float32)
    grow, shrink = mask.copy(), ~mask
    for step in range(limit):
        diagonal = step % 2 == 1
        grown, shrunk = _shift_or(grow, diagonal), _shift_or(shrink, diagonal)
        outside[grown & ~grow] = step + 1
        inside[shrunk & ~shrink] = step + 1
        grow, shrink = grown, shrunk
    # Boundary sits halfway between the last inside and the first outside pixel.
    return np.where(mask, inside - 0.5, -(outside - 0.5)).astype(np.float32)


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edges replicated), via cumulative sums: O(pixels)."""
    for axis in (0, 1):
        padded = np.pad(x, [(radius + 1, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        c = np.cumsum(padded, axis=axis, dtype=np.float64)
        size = 2 * radius + 1
        x = (
            np.take(c, np.arange(size, c.shape[axis]), axis=axis)
            - np.take(c, np.arange(0, c.shape[axis] - size), axis=axis)
        ) / size
    return x


def smooth_noise(shape: tuple[int, int], scale: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field with unit standard deviation and correlation length ~``scale`` px."""
    field_ = _box_blur(_box_blur(rng.standard_normal(shape), scale), scale)
    return (field_ / (field_.std() + 1e-12)).astype(np.float32)


def _disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius * radius


# --- the model and the annotators ----------------------------------------------------------


def model_suggestion(truth: np.ndarray, sdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A SAM-like suggestion: thin parts (< ~4 px wide) lost, the rest ~2 px too wide, smooth wobble."""
    opened = signed_distance(sdf > 2.0) > -2.0  # erode by 2 px, then dilate back: an opening
    opened_sdf = signed_distance(opened)
    return opened_sdf + 2.0 + 0.8 * smooth_noise(truth.shape, 8, rng) > 0


def draw(
    annotator: Annotator, truth: np.ndarray, sdf: np.ndarray, rng: np.random.Generator, style: Style = GENTLE
) -> np.ndarray:
    """One annotator's mask of one image (not for ``ai`` annotators: see :func:`simulate`)."""
    shape = truth.shape
    if annotator.kind == "spammer":
        if annotator.spam == "empty":
            return np.zeros(shape, dtype=bool)
        if annotator.spam == "full":
            return np.ones(shape, dtype=bool)
        if annotator.spam == "random":
            return smooth_noise(shape, 6, rng) > 0.5  # blobs over ~30 % of the image
        rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
        box = np.zeros(shape, dtype=bool)
        if len(rows):
            box[max(rows[0] - 3, 0) : rows[-1] + 4, max(cols[0] - 3, 0) : cols[-1] + 4] = True
        return box
    level = sdf + annotator.bias_px + style.wobble_scale * annotator.wobble_px * smooth_noise(shape, 5, rng)
    mask = drop_pieces(level > 0, truth, rng, style)
    if annotator.kind == "sloppy":
        inside = np.argwhere(truth)
        if len(inside):
            for _ in range(rng.integers(1, 4)):  # holes
                mask &= ~_disk(shape, tuple(inside[rng.integers(len(inside))]), rng.uniform(2, 5))
            if rng.random() < 0.3:  # a whole part missed
                mask &= ~_disk(shape, tuple(inside[rng.integers(len(inside))]), rng.uniform(12, 25))
    return mask


def drop_pieces(mask: np.ndarray, truth: np.ndarray, rng: np.random.Generator, style: Style) -> np.ndarray:
    """``mask`` with, at the chance ``style.drop_piece``, a disk of the structure left out."""
    if style.drop_piece <= 0 or rng.random() >= style.drop_piece:
        return mask
    inside = np.argwhere(truth)
    if not len(inside):
        return mask
    return mask & ~_disk(mask.shape, tuple(inside[rng.integers(len(inside))]), rng.uniform(*style.drop_radius_px))


def make_pool(
    mix: str | dict[str, float], size: int, rng: np.random.Generator, style: Style = GENTLE
) -> list[Annotator]:
    """``size`` annotators with types in the proportions of ``mix`` (rounded, in a shuffled order)
    and a long-tailed activity: a few volunteers do most of the work, as on every platform."""
    shares = MIXES[mix] if isinstance(mix, str) else mix
    kinds = [k for k in TYPES for _ in range(round(shares.get(k, 0.0) * size))]
    while len(kinds) < size:
        kinds.append("careful")
    kinds = list(rng.permutation(kinds[:size]))
    ranks = rng.permutation(size)  # activity rank, independent of type
    pool = []
    for n, kind in enumerate(kinds):
        activity = float(1.0 / (1 + ranks[n]) ** 0.7)
        if kind == "careful":
            a = Annotator(f"{kind}-{n}", kind, wobble_px=rng.uniform(0.6, 1.2), activity=activity)
        elif kind == "sloppy":
            a = Annotator(
                f"{kind}-{n}", kind, wobble_px=rng.uniform(2.5, 3.5), bias_px=rng.uniform(-1, 0), activity=activity
            )
        elif kind == "biased":
            sign = 1.0 if rng.random() < style.bias_wide_share else -1.0
            bias = sign * rng.uniform(*style.bias_px)
            a = Annotator(f"{kind}-{n}", kind, wobble_px=1.0, bias_px=bias, activity=activity)
        elif kind == "spammer":
            spam = style.spam_kinds[n % len(style.spam_kinds)]
            a = Annotator(f"{kind}-{spam}-{n}", kind, spam=spam, activity=activity)
        else:
            a = Annotator(f"{kind}-{n}", kind, wobble_px=0.7, activity=activity)
        pool.append(a)
    return pool


def simulate(
    truths: list[np.ndarray],
    *,
    mix: str | dict[str, float],
    per_image: int,
    seed: int,
    gold_share: float = 0.15,
    pool_size: int = 40,
    keys: list[str] | None = None,
    style: Style = GENTLE,
    suggestions: list[np.ndarray] | None = None,
    scans: list[np.ndarray] | None = None,
) -> tuple[list[SimImage], list[Annotator]]:
    """Votes of ``per_image`` distinct annotators (from a pool of ``pool_size``) on each true mask.

    Deterministic given ``seed``. ``gold_share`` of the images (rounded) are flagged gold.
    ``suggestions`` (one bool mask per truth) replace the imitated model's (a real model's masks).
    ``scans`` (one image per truth) ride along as ``SimImage.image``; the annotators never look at them.
    """
    rng = np.random.default_rng(seed)
    pool = make_pool(mix, pool_size, rng, style)
    activity = np.array([a.activity for a in pool])
    gold_idx = set(rng.choice(len(truths), size=round(gold_share * len(truths)), replace=False).tolist())
    images = []
    for i, truth in enumerate(truths):
        truth = np.asarray(truth, dtype=bool)
        sdf = signed_distance(truth)
        suggestion = model_suggestion(truth, sdf, rng)  # drawn either way: the same seed, the same crowd
        if suggestions is not None:
            suggestion = np.asarray(suggestions[i], dtype=bool)
        chosen = rng.choice(len(pool), size=per_image, replace=False, p=activity / activity.sum())
        image = SimImage(
            keys[i] if keys else f"img-{i}", truth, suggestion, i in gold_idx,
            image=None if scans is None else np.asarray(scans[i]),
        )  # fmt: skip
        for j in chosen:
            a = pool[j]
            if a.kind == "ai":
                if rng.random() < style.ai_accept:
                    image.votes.append(SimVote(a.id, suggestion, anchored=True))
                else:
                    wobble = style.wobble_scale * a.wobble_px * smooth_noise(truth.shape, 5, rng)
                    nudged = drop_pieces(signed_distance(suggestion) + wobble > 0, truth, rng, style)
                    image.votes.append(SimVote(a.id, nudged, edited=True))
            else:
                image.votes.append(SimVote(a.id, draw(a, truth, sdf, rng, style)))
        images.append(image)
    return images, pool


# --- real images with known truth ----------------------------------------------------------


def mni_slices(min_wm_pixels: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Axial slices of nilearn's MNI ICBM152 2009a template with tissue truth, inferior first,
    anterior at the top (233 x 197 px, H x W): the slices with at least ``min_wm_pixels``
    white-matter pixels (1,500: the set bench/fusion.py scores on).

    Returns T1 images (N, 233, 197) float32 in [0, 1] and masks (N, 2, 233, 197) bool: white
    matter, then grey matter, each probability >= 0.5 (they never overlap).
    """
    import nibabel as nib  # only this loader reads files: the simulator above stays numpy-only

    from annotations.io.samples import mni_path

    t1, wm, gm = (np.asarray(nib.load(mni_path(kind)).dataobj) for kind in ("t1", "wm", "gm"))
    zs = [z for z in range(wm.shape[2]) if (wm[:, :, z] >= 128).sum() >= min_wm_pixels]
    images = np.stack([np.flipud(t1[:, :, z].T) for z in zs]).astype(np.float32) / 255.0
    masks = np.stack([[np.flipud(v[:, :, z].T >= 128) for v in (wm, gm)] for z in zs])  # 128/255 ~ p 0.5
    return images, masks
