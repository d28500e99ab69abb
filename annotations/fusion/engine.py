"""Crowd masks in, one fused label per image and a reliability per annotator out (STAPLE family).

The model (Warfield et al. 2004's STAPLE, estimated jointly over all images instead of one at a
time): each pixel has a hidden true label T; annotator j marks a true-foreground pixel with
probability p_j (sensitivity), and of everything j marks, a share v_j (precision) is truly
foreground; votes are independent given T. EM alternates the posterior P(T=1 | votes) (E) with
new p, v (M). The same p_j, v_j serve every image an annotator touched, which is what lets a
volunteer's record on 50 images, and on the gold standards among them, decide how much their
vote counts on the 51st.

Choices that make it work for a crowd:

- *The voted region.* Pixels that nobody marked are background (no vote claims otherwise) and
  take no part in the estimates; errors crowd along the structure's edge, not over the whole
  image, so the rates below are per pixel of the voted region.
- *Sensitivity and precision, not sensitivity and specificity.* A specificity is a rate per
  background pixel, and how much background an image's voted region holds depends on who else
  voted there: it does not carry over from one image to the next. Segmentation errors scale with
  the structure instead (a boundary drawn 2 px wide adds area in proportion to the structure),
  and so do p and v. The E-step turns them into the image's per-pixel false-positive rate,
  p_j f_i (1 - v_j) / (v_j (1 - f_i)) with f_i the structure's share of the voted region, capped
  at p_j: a mark never counts against foreground (an annotator that marks background as often
  as foreground is simply uninformative).
- *The image prior f_i* is the median, over the image's voters, of the structure size their
  marks imply (marked area x v_j / p_j), not the EM update: that one can slide to a degenerate
  fixed point on an image that the pooled rates fit badly (f_i near 1, every voter explained
  away, the label = the union of the votes). The median shrugs off a minority of wild voters.
- *Vote patterns, not pixels.* With no spatial term, a pixel's posterior depends only on which
  of the image's k voters marked it (a k-bit code), f_i and, when the image's intensities are
  given, the pixel's intensity level. Each image is packed once into a histogram of its cells
  (code x level); EM runs on those histograms (a few thousand rows for a whole campaign, a few
  hundred per image with intensities) and the pixel maps are a per-cell table look-up at the end.
- *The image's intensities* (``FusionImage.intensity``), a voter that never tires. Crowd errors
  (a wobbling or biased edge, a dropped piece, a copied poor suggestion) rarely follow the
  image's own edges; the structure usually does. The intensities of all images' voted regions
  are cut into ``INTENSITY_LEVELS`` levels that each hold as many marks (only the order of
  the values counts: 8-bit, HU or any scale, as long as the label class's images share it),
  and the M-step learns, per image, the share of the posterior foreground and of the posterior
  background at each level. Their log ratio is the level's evidence, added to each pixel's vote
  evidence in the E-step as that of one more voter, independent of the others given the truth
  (a naive Bayes term, as the votes are). Learned from the crowd's own posterior it needs no
  training: where the intensities do not tell the structure from its surroundings, both
  histograms come out alike and the evidence near zero; where they do, it sides with the
  voters who traced the image's edge.
- *One image's histograms lean on the others'.* Learned from one image's posterior alone, the
  histograms side with whatever the posterior says: where copies of a poor suggestion outvote
  the one careful voter, they call the neighbouring tissue foreground too. So each image's
  histograms start from the other images' (their posteriors, or their golds' truth on gold
  images), worth ``Prior.intensity_images`` times its own voted region, plus
  ``INTENSITY_PSEUDOCOUNT`` pixels at every level: the label class says which grey levels the
  structure has, the image where exactly it lies. Every image leans on the sum of all images'
  histograms less its own; a gold image's crowd label, likewise, on that sum less the crowd
  label's own histograms, so that it is exactly what an image without the gold, with the same
  votes and intensities, would get (the gold reaches it only through the shared estimates, as
  through the rates). The levels are cut once, by the first
  fusion; ``update`` and a warm-started ``fuse`` keep them. On a harsh, AI-anchored crowd this
  lifted the worst decile past what any labelling by vote pattern alone can reach
  (docs/fusion.md).
- *Evidence counted in images.* Errors within one image are strongly correlated (a boundary
  drawn 2 px too wide misses thousands of pixels at once), so pixels are not independent
  evidence and pooling raw pixel counts would make one image look like a thousand observations.
  Instead each image yields the annotator's sensitivity and precision *on that image* (from the
  posterior-weighted confusion counts), and these per-image rates are the observations: an image
  adds up to one unit of evidence (less when its true foreground, or the marked area, is only a
  few pixels: m/(m + min_pixels)); a gold image's rates weigh ``gold_weight`` times as much in
  the mean (they are measured against the truth, not the crowd; 10 by default, so that a
  fifth of gold images outweighs the rest: a consensus record flatters whoever shares the
  crowd's errors). With a Beta prior worth
  ``Prior.images`` images, each estimate is a Beta posterior mean over images, and its standard
  deviation says how much evidence there is: 3 perfect golds do not make anyone as trusted as
  50 good images. (This is the moment estimate of a hierarchical model in which per-image rates
  scatter around the annotator's own rate.)
- *Gold anchors.* On a gold image the posterior is the gold mask itself; its rates are exact,
  and a part that every voter missed counts against everyone's sensitivity. The crowd's own label
  of a gold image (``ImageResult.crowd``: its votes under the estimated rates, the gold not
  consulted) is computed exactly as an image without a gold would be, for whoever must be shown
  what the crowd made of an image without learning whether it had a gold.
- *Anchored votes.* Volunteers who accepted the AI suggestion unchanged did not vote
  independently: their votes on an image collapse into one vote of the pseudo-annotator
  ``"model"`` (the image's suggestion if given, else the pixel-wise majority of those anchored
  masks), whose own sensitivity and precision then measure the model's systematic bias.
- *Edited suggestions.* A volunteer who started from the suggestion and changed it a little
  (``Vote.edited``, Dice with the model's mask at least ``LIGHT_EDIT_DICE``) kept most of its
  errors: counted as an independent voter, two light edits and the model would outvote one
  careful annotator with the model's own mistakes, which is what sank the worst images of a
  harsh, AI-anchored crowd with a poor suggestion (docs/fusion.md). Light edits collapse into
  the model's vote like acceptances; heavier edits (real corrections) stay independent votes.
  Without a model's mask on the image (no suggestion given, no acceptance) an edit stays
  independent: there is nothing to compare it with.
- *Specificity for ranking.* Reported per annotator, estimated the same way but in a band of
  ``SPECIFICITY_BAND_PX`` around each fused mask (see ``AnnotatorEstimate``); it feeds the
  ranking weight, not the fusion.

Input rules: at least one image; unique image keys; (H, W) masks of the image's shape, boolean
or 0/1; each annotator at most once per image; at most ``MAX_VOTERS`` independent voters per
image; ``"model"`` is reserved. An image needs votes or a gold standard: one with neither has no
evidence to fuse, and is refused rather than answered with the prior.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import dice, dilate
from .types import MODEL, AnnotatorEstimate, FusionImage, FusionResult, ImageResult, Prior

MAX_VOTERS = 16  # 2**16 vote patterns per image: the histogram stays small, and no real image has more
LIGHT_EDIT_DICE = 0.8  # an edited suggestion this close (Dice) to the model's mask collapses into its vote
SPECIFICITY_BAND_PX = 3  # specificity is judged this close to the structure (see AnnotatorEstimate)
INTENSITY_LEVELS = 16  # equal-count intensity levels per image (docs/fusion.md: 8, 16 and 32 fuse alike)
INTENSITY_PSEUDOCOUNT = 1.0  # pixels added to each level's histograms: a level seen a few times says little
_EDGE_SAMPLE = 1 << 20  # voted pixels read to cut the intensity levels (a stride over larger fusions)
_EPS = 1e-6  # keeps rates and priors off 0 and 1, where log-odds blow up


@dataclass(frozen=True, eq=False)
class _Packed:
    """One image reduced to what EM needs. ``cells`` are the (H, W) pixel cells, vote pattern
    (bit s = voter s) x ``levels`` + intensity level (``levels`` is 1 without intensities);
    ``gold`` the gold mask as uint8, if any (a gold image's maps are the gold itself). The rows
    are the cells present (as pattern and level) with their pixel counts and, on gold images,
    the truth (a cell can then appear twice: over gold foreground and over gold background)."""

    key: str
    shape: tuple[int, int]
    voters: tuple[str, ...]
    anchored_by: tuple[str, ...]
    levels: int
    cells: np.ndarray
    gold: np.ndarray | None
    patterns: np.ndarray  # (R,) int64
    bins: np.ndarray  # (R,) int64 intensity level, 0 .. levels - 1
    counts: np.ndarray  # (R,) float64
    truth: np.ndarray | None  # (R,) float64 0/1 on gold images


def fuse(
    images: Sequence[FusionImage],
    *,
    prior: Prior | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
    init: FusionResult | None = None,
) -> FusionResult:
    """Fuse the crowd's masks of one label class over all ``images`` jointly.

    ``init`` warm-starts EM from an earlier result's annotator rates and intensity histograms
    (annotators and images it does not know start from the majority vote), and cuts the
    intensities at its levels: same fixed point, fewer rounds. Without it the levels are cut
    from ``images`` themselves. ``tol`` is the largest change of any rate, image prior or
    intensity level's share (a probability) that still counts as converged. ``max_iter``: the fusion benchmark's
    settings settle in 5-30 rounds; with ``Prior(intensity_images=0)`` the histograms creep, up
    to ~190 rounds on its harshest crowd.
    Raises ValueError on malformed input (see the module docstring).
    """
    images = list(images)
    if not images:
        raise ValueError("no images to fuse")
    packed, edges = _pack_all(images, init._level_edges if init else None)
    return _run(packed, edges, prior or (init.prior if init else Prior()), max_iter, tol, init)


def update(
    previous: FusionResult,
    images: Sequence[FusionImage],
    *,
    prior: Prior | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> FusionResult:
    """``previous`` with ``images`` added or replaced (matched by key), re-estimated.

    Only the given images are read pixel by pixel; the others are reused in their packed form, and
    EM warm-starts from ``previous``. The given images' intensities are cut at ``previous``'s
    levels (fuse afresh to cut new ones, say after adding images on another grey scale). The
    answer equals ``fuse`` over the union of images with ``init=previous`` (to within ``tol``),
    and running the same update twice gives the same result.
    """
    images = list(images)
    if not images:
        raise ValueError("no images to update")
    fresh, edges = _pack_all(images, previous._level_edges)
    merged = dict(previous._packed)
    merged.update((p.key, p) for p in fresh)
    return _run(list(merged.values()), edges, prior or previous.prior, max_iter, tol, previous)


# --- packing -------------------------------------------------------------------------------


def _pack_all(images: list[FusionImage], edges: np.ndarray | None = None) -> tuple[list[_Packed], np.ndarray | None]:
    """The images packed, with the intensity level edges they were cut at: ``edges`` if given
    (an earlier fusion's), else cut here over all of the images' voted regions (see
    ``intensity_edges``); None when no image has intensities."""
    drawn, seen = [], set()
    for image in images:
        if image.key in seen:
            raise ValueError(f"image key {image.key!r} appears more than once")
        seen.add(image.key)
        drawn.append(_draw(image))
    if edges is None:
        with_intensity = [(d.intensity, d.marks) for d in drawn if d.intensity is not None]
        edges = intensity_edges(with_intensity) if with_intensity else None
    return [_pack(d, edges) for d in drawn], edges


def _mask(value: object, shape: tuple[int, int], what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) mask, got an array of shape {array.shape}")
    if array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, but the image's shape is {shape}")
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
        raise ValueError(f"{what} must be boolean or hold only 0 and 1 (dtype {array.dtype})")
    return array.astype(bool)


def _shape(image: FusionImage) -> tuple[int, int]:
    shape = tuple(image.shape)
    if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
        raise ValueError(f"image {image.key!r}: shape must be (H, W) with positive integers, not {image.shape!r}")
    return int(shape[0]), int(shape[1])


def model_mask(image: FusionImage) -> np.ndarray | None:
    """The mask the model pseudo-annotator stands for on ``image``: its suggestion if given, else
    the pixel-wise majority of its anchored votes (which should all be the same suggestion);
    None when neither exists."""
    shape = _shape(image)
    if image.suggestion is not None:
        return _mask(image.suggestion, shape, f"image {image.key!r}: suggestion")
    anchored = [v for v in image.votes if v.anchored]
    if not anchored:
        return None
    stack = [_mask(v.mask, shape, f"image {image.key!r}: vote of {v.annotator!r}") for v in anchored]
    return 2 * np.sum(stack, axis=0, dtype=np.int32) >= len(stack)


@dataclass(frozen=True, eq=False)
class _Drawn:
    """One image's votes checked and coded, before its intensities are cut into levels: ``codes``
    holds each pixel's vote pattern (bit s = ``voters[s]``), ``marks`` how many voters marked it."""

    key: str
    shape: tuple[int, int]
    voters: tuple[str, ...]
    anchored_by: tuple[str, ...]
    codes: np.ndarray
    marks: np.ndarray
    gold: np.ndarray | None
    intensity: np.ndarray | None


def _draw(image: FusionImage) -> _Drawn:
    if not isinstance(image.key, str) or not image.key:
        raise ValueError(f"image key must be a non-empty string, not {image.key!r}")
    key, shape = image.key, _shape(image)
    independent: dict[str, np.ndarray] = {}
    anchored_by: list[str] = []
    edited: dict[str, np.ndarray] = {}
    for vote in image.votes:
        who = vote.annotator
        if not isinstance(who, str) or not who:
            raise ValueError(f"image {key!r}: annotator id must be a non-empty string, not {who!r}")
        if who == MODEL:
            raise ValueError(f"image {key!r}: annotator id {MODEL!r} is reserved for the AI suggestion")
        if who in independent or who in anchored_by or who in edited:
            raise ValueError(f"image {key!r}: annotator {who!r} voted more than once")
        if vote.anchored and vote.edited:
            raise ValueError(f"image {key!r}: the vote of {who!r} is marked both anchored and edited")
        mask = _mask(vote.mask, shape, f"image {key!r}: vote of {who!r}")
        if vote.anchored:
            anchored_by.append(who)
        elif vote.edited:
            edited[who] = mask
        else:
            independent[who] = mask
    model = model_mask(image)  # validates the suggestion even when it goes unused
    for who, mask in edited.items():
        if model is not None and dice(mask, model) >= LIGHT_EDIT_DICE:
            anchored_by.append(who)  # a light edit carries the model's errors: it is the model's vote
        else:
            independent[who] = mask
    if anchored_by:
        independent[MODEL] = model
    gold = None if image.gold is None else _mask(image.gold, shape, f"image {key!r}: gold")
    if not independent and gold is None:
        raise ValueError(f"image {key!r} has no votes and no gold standard: nothing to fuse")
    if len(independent) > MAX_VOTERS:
        raise ValueError(f"image {key!r} has {len(independent)} independent votes; at most {MAX_VOTERS} are supported")

    voters = tuple(sorted(independent))  # sorted: the result must not depend on the order votes arrived in
    codes = np.zeros(shape, dtype=np.uint8 if len(voters) <= 8 else np.uint16)
    marks = np.zeros(shape, dtype=np.uint8)
    for slot, who in enumerate(voters):
        codes |= independent[who].astype(codes.dtype) << slot
        marks += independent[who]
    intensity = None
    if image.intensity is not None:
        intensity = _intensity(image.intensity, shape, f"image {key!r}: intensity")
    return _Drawn(key, shape, voters, tuple(anchored_by), codes, marks, gold, intensity)


def _pack(drawn: _Drawn, edges: np.ndarray | None) -> _Packed:
    k = len(drawn.voters)
    levels = 1 if drawn.intensity is None or edges is None else len(edges) + 1
    cells = drawn.codes.astype(np.uint16 if levels << k <= 1 << 16 else np.uint32)
    if levels > 1:
        cells = cells * cells.dtype.type(levels) + np.searchsorted(edges, drawn.intensity, side="right").astype(
            cells.dtype
        )
    flat = cells.ravel().astype(np.int64)
    size = levels << k
    gold = drawn.gold
    if gold is not None:
        flat, size = flat * 2 + gold.ravel(), size * 2
    if size <= 1 << 20:
        hist = np.bincount(flat, minlength=size)
        rows = np.flatnonzero(hist)
        counts = hist[rows].astype(np.float64)
    else:  # 16 voters with intensities: too many cells for a dense histogram
        rows, counts = np.unique(flat, return_counts=True)
        counts = counts.astype(np.float64)
    truth = None
    if gold is not None:
        rows, truth = rows >> 1, (rows & 1).astype(np.float64)
    return _Packed(
        drawn.key, drawn.shape, drawn.voters, drawn.anchored_by, levels, cells,
        None if gold is None else gold.astype(np.uint8), rows // levels, rows % levels, counts, truth,
    )  # fmt: skip


def _intensity(value: object, shape: tuple[int, int], what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, but the image's shape is {shape} (H, W)")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must hold real numbers, not {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def intensity_edges(images: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The cuts between intensity levels, shared by all of a fusion's images: ascending values,
    at most ``INTENSITY_LEVELS - 1`` of them; a pixel's level is how many cuts are at or below
    its intensity.

    ``images`` holds each image's (H, W) intensities with its marks ((H, W), how many voters
    marked each pixel). The cuts are the quantiles of the voted regions' intensities, each pixel
    weighed by its marks, so that each level holds about as many marks. Weighing by marks puts
    the levels where the crowd draws: one voter who marks the whole image (a spammer) would
    otherwise spend most levels on the air around a head and leave one or two for the tissue the
    others argue over (docs/fusion.md). Shared cuts let an image's histograms lean on the other
    images' (see ``Prior.intensity_images``). Large fusions are read at a regular stride, at
    most ``_EDGE_SAMPLE`` voted pixels in all. No voted pixel, or a single value, gives no cuts.
    """
    total = sum(np.count_nonzero(marks) for _, marks in images)
    if total == 0:
        return np.zeros(0)
    stride = -(-total // _EDGE_SAMPLE)
    values, weights = [], []
    for intensity, marks in images:
        voted = marks > 0
        values.append(intensity[voted][::stride])
        weights.append(marks[voted][::stride])
    values, weights = np.concatenate(values).astype(np.float64), np.concatenate(weights).astype(np.float64)
    order = np.argsort(values, kind="stable")
    inside, share = values[order], np.cumsum(weights[order])
    share /= share[-1]
    # Cuts at values the regions hold (not between them), above their minimum: no level is empty.
    at = np.searchsorted(share, np.arange(1, INTENSITY_LEVELS) / INTENSITY_LEVELS)
    edges = np.unique(inside[np.minimum(at, len(inside) - 1)])
    return edges[edges > inside[0]]


# --- EM ------------------------------------------------------------------------------------


def _run(
    packed: list[_Packed], edges: np.ndarray | None, prior: Prior, max_iter: int, tol: float, init: FusionResult | None
) -> FusionResult:
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, not {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, not {tol!r}")
    names = sorted({who for p in packed for who in (*p.voters, *p.anchored_by)})
    index = {who: a for a, who in enumerate(names)}
    n_annot = len(names)  # index n_annot marks an empty slot (images have different numbers of voters)
    width = max(1, max(len(p.voters) for p in packed))

    # Rows: every (image, vote pattern, intensity level[, gold value]) with its pixel count, images
    # one after another.
    slot_annot = np.full((len(packed), width), n_annot, dtype=np.int64)
    for i, p in enumerate(packed):
        slot_annot[i, : len(p.voters)] = [index[v] for v in p.voters]
    slot_used = slot_annot < n_annot
    sizes = np.array([len(p.patterns) for p in packed], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    row_img = np.repeat(np.arange(len(packed)), sizes)
    patterns = np.concatenate([p.patterns for p in packed])
    counts = np.concatenate([p.counts for p in packed])
    n_levels = max(p.levels for p in packed)
    row_level = row_img * n_levels + np.concatenate([p.bins for p in packed])  # into (images, levels), flat
    level_used = np.arange(n_levels) < np.array([p.levels for p in packed])[:, None]
    pooled = np.array([p.levels > 1 for p in packed])  # images whose histograms the others lean on
    bits = ((patterns[:, None] >> np.arange(width)) & 1).astype(np.float64)
    is_gold = np.array([p.truth is not None for p in packed], dtype=bool)
    gold_rows = is_gold[row_img]
    truth = np.concatenate([p.truth if p.truth is not None else np.zeros(len(p.patterns)) for p in packed])
    voted_region = (patterns != 0) | (truth == 1)
    # Rows whose truth is not estimated: gold, and background outside the voted region.
    fixed = gold_rows | ~voted_region
    pixels = np.add.reduceat(counts * voted_region, starts)
    marked = np.add.reduceat(counts[:, None] * bits, starts)  # (images, slots): pixels each voter marked
    scale = np.where(is_gold, prior.gold_weight, 1.0)[:, None]  # trust in a rate measured on the image
    flat_annot = slot_annot.ravel()

    def beta(evidence: np.ndarray, rates: np.ndarray, mean: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-annotator (mean, sd) from per-image rates, each worth ``evidence`` images. Gold
        images weigh ``gold_weight`` times more in the mean (they are unbiased), but count once
        in the sd (one gold image is still one image's worth of information)."""
        trusted = evidence * scale
        hits = np.bincount(flat_annot, (trusted * rates).ravel(), n_annot + 1)[:n_annot]
        weight = np.bincount(flat_annot, trusted.ravel(), n_annot + 1)[:n_annot]
        count = np.bincount(flat_annot, evidence.ravel(), n_annot + 1)[:n_annot]
        m = (mean * prior.images + hits) / (prior.images + weight)
        return m, np.sqrt(m * (1 - m) / (prior.images + count + 1))

    def e_step(p: np.ndarray, v: np.ndarray, f: np.ndarray, by_level: np.ndarray) -> np.ndarray:
        sens = np.clip(np.append(p, 0.5)[slot_annot], _EPS, 1 - _EPS)
        prec = np.clip(np.append(v, 0.5)[slot_annot], _EPS, 1 - _EPS)
        odds = f / (1 - f)
        if_marked, if_empty = _vote_evidence(sens, prec, odds[:, None])
        if_marked, if_empty = np.where(slot_used, if_marked, 0.0), np.where(slot_used, if_empty, 0.0)
        llr = (bits * if_marked[row_img] + (1 - bits) * if_empty[row_img]).sum(axis=1)
        llr += by_level.ravel()[row_level]
        return np.where(fixed, truth, _logistic(np.log(odds)[row_img] + llr))

    def intensity_step(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each image's evidence per intensity level, from the posterior ``w`` over its voted
        region and the other images' histograms; the level shares it came from (for the
        convergence test); and all images' histograms summed, (2, levels)."""
        in_region = counts * voted_region
        fg = np.bincount(row_level, in_region * w, len(packed) * n_levels).reshape(len(packed), n_levels)
        bg = np.bincount(row_level, in_region * (1 - w), len(packed) * n_levels).reshape(len(packed), n_levels)
        own = np.stack((fg, bg)) * pooled[None, :, None]
        pool = own.sum(axis=1)
        others = pool[:, None] - own
        return (*_level_evidence(fg, bg, level_used, others, prior.intensity_images * pixels), pool)

    def m_step(w: np.ndarray) -> tuple[np.ndarray, ...]:
        fg_px = counts * w
        fg = np.add.reduceat(fg_px, starts)
        tp = np.add.reduceat(fg_px[:, None] * bits, starts)
        sens = np.divide(tp, fg[:, None], out=np.zeros_like(tp), where=fg[:, None] > 0)
        prec = np.divide(tp, marked, out=np.zeros_like(tp), where=marked > 0)
        p, p_sd = beta((fg / (fg + prior.min_pixels))[:, None] * slot_used, sens, prior.sensitivity)
        v, v_sd = beta(marked / (marked + prior.min_pixels), prec, prior.precision)
        return p, v, image_prior(p, v), p_sd, v_sd

    def image_prior(p: np.ndarray, v: np.ndarray) -> np.ndarray:
        """f_i: the median over the image's voters of the structure size their marks imply
        (M marked pixels x v / p), as a share of the voted region (see the module docstring)."""
        sens = np.append(p, np.nan)[slot_annot]
        area = np.where(slot_used, marked * np.append(v, np.nan)[slot_annot] / sens, np.nan)
        known = slot_used.any(axis=1) & (pixels > 0)  # else f_i is never used: gold, or nothing marked
        f = np.full(len(packed), 0.5)
        f[known] = np.nanmedian(area[known], axis=1) / pixels[known]
        return np.clip(f, _EPS, 1 - _EPS)

    # Start from the soft majority vote (share of voters marking each pattern); gold rows are truth.
    voters_per_row = slot_used.sum(axis=1)[row_img]
    w = np.where(fixed, truth, bits.sum(axis=1) / np.maximum(voters_per_row, 1))
    p, v, f, p_sd, v_sd = m_step(w)
    by_level, shares, pool = intensity_step(w)
    if init is not None:
        for who, est in init.annotators.items():
            if who in index:
                p[index[who]], v[index[who]] = est.sensitivity, est.precision
        f = image_prior(p, v)
        # Intensity histograms are slow to settle (one EM round moves them a little): start an
        # image from its last ones where its levels are the same.
        for i, image in enumerate(packed):
            known = init._level_shares.get(image.key)
            if known is not None and known.shape == (2, image.levels):
                shares[:, i, : image.levels] = known
        by_level = _share_evidence(shares, level_used)

    iterations, converged = 0, False
    while iterations < max_iter:
        iterations += 1
        w = e_step(p, v, f, by_level)
        new_p, new_v, new_f, p_sd, v_sd = m_step(w)
        by_level, new_shares, pool = intensity_step(w)
        change = max(
            float(np.abs(a - b).max(initial=0.0)) for a, b in ((new_p, p), (new_v, v), (new_f, f), (new_shares, shares))
        )
        p, v, f, shares = new_p, new_v, new_f, new_shares
        if change < tol:
            converged = True
            break
    w = e_step(p, v, f, by_level)  # posteriors consistent with the reported rates

    row_w = np.split(w, starts[1:])
    results = {p_.key: _image_result(p_, row_w[i], float(f[i])) for i, p_ in enumerate(packed)}
    for image in packed:
        if image.truth is not None:
            voter_rates = [(p[index[who]], v[index[who]]) for who in image.voters]
            crowd = _crowd_result(image, voter_rates, pool[:, : image.levels], prior.intensity_images, max_iter, tol)
            results[image.key] = _with_crowd(results[image.key], crowd)

    # Specificity for ranking (see AnnotatorEstimate): in a band around each fused structure.
    band_bg = np.zeros(len(packed))
    band_fp = np.zeros((len(packed), width))
    for i, image in enumerate(packed):
        fused = results[image.key].mask
        band = dilate(fused, SPECIFICITY_BAND_PX) & ~fused
        hist = np.bincount(image.cells[band] // image.levels, minlength=1 << len(image.voters))
        band_bg[i] = hist.sum()
        band_fp[i, : len(image.voters)] = ((np.arange(len(hist))[:, None] >> np.arange(len(image.voters))) & 1).T @ hist
    spec = np.divide(
        band_bg[:, None] - band_fp, band_bg[:, None], out=np.zeros_like(band_fp), where=band_bg[:, None] > 0
    )
    q, q_sd = beta((band_bg / (band_bg + prior.min_pixels))[:, None] * slot_used, spec, prior.specificity)
    estimates = _annotators(names, packed, (p, v, q), (p_sd, v_sd, q_sd))
    level_shares = {
        image.key: shares[:, i, : image.levels].copy() for i, image in enumerate(packed) if image.levels > 1
    }
    return FusionResult(
        results, estimates, iterations, converged, prior, {p_.key: p_ for p_ in packed}, level_shares, edges
    )


def entropy_bits(probability: np.ndarray) -> np.ndarray:
    """Binary entropy of P(foreground), in bits, elementwise: 0 where P is 0 or 1, 1 at P = 0.5.
    The formula of ``ImageResult.uncertainty`` (for rebuilding it from a stored probability map)."""
    prob = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    h = -(prob * np.log2(prob) + (1 - prob) * np.log2(1 - prob))
    return np.where((prob <= 1e-12) | (prob >= 1 - 1e-12), 0.0, h).astype(np.float32)


def _image_result(packed: _Packed, w: np.ndarray, foreground_prior: float) -> ImageResult:
    if packed.truth is not None:  # gold: the maps are the gold mask, fully certain
        table = np.array([0.0, 1.0], dtype=np.float32)
        return ImageResult(
            packed.key, packed.shape, 1.0, foreground_prior, packed.voters, True,
            packed.gold, table, np.zeros(2, dtype=np.float32),
        )  # fmt: skip
    table = np.zeros(packed.levels << len(packed.voters), dtype=np.float32)
    table[packed.patterns * packed.levels + packed.bins] = w
    # Expected Dice of the fused mask M against a truth drawn from the posterior P:
    # 2 sum_M P / (|M| + sum P) (the ratio of expectations), from the cell histogram.
    chosen = w >= 0.5
    expected_fg = float((packed.counts * w).sum())
    denominator = float(packed.counts[chosen].sum()) + expected_fg
    confidence = 2.0 * float((packed.counts * w)[chosen].sum()) / denominator if denominator > 0 else 1.0
    return ImageResult(
        packed.key, packed.shape, confidence, foreground_prior, packed.voters, False,
        packed.cells, table, entropy_bits(table),
    )  # fmt: skip


def _crowd_result(
    image: _Packed,
    voter_rates: list[tuple[float, float]],
    pool: np.ndarray,
    intensity_images: float,
    max_iter: int,
    tol: float,
) -> ImageResult:
    """What the votes alone say about gold image ``image`` under the final rates: the E-step an
    image without a gold runs (its prior f from the votes' implied sizes, its voted region the
    marked pixels), on the cells with the gold's split undone, alternating with its intensity
    step until that settles. ``voter_rates`` holds (sensitivity, precision) per voter slot.
    ``pool`` holds all images' intensity histograms summed, (2, levels); like any image, the
    crowd label leans on the pool less its own histograms (here the crowd label's, where the
    pool holds the gold's), so it is the same function of the fusion's estimates as the label of
    an image without a gold with the same votes and intensities."""
    cells, where = np.unique(image.patterns * image.levels + image.bins, return_inverse=True)
    counts = np.bincount(where, weights=image.counts, minlength=len(cells))
    patterns, bins = cells // image.levels, cells % image.levels
    crowd = _Packed(
        image.key, image.shape, image.voters, image.anchored_by, image.levels, image.cells, None,
        patterns, bins, counts, None,
    )  # fmt: skip
    k = len(image.voters)
    bits = ((patterns[:, None] >> np.arange(k)) & 1).astype(np.float64)
    voted = patterns != 0
    pixels = float(counts[voted].sum())
    f = 0.5
    if k and pixels > 0:
        sens, prec = (np.array([rate[j] for rate in voter_rates]) for j in (0, 1))
        marked = counts @ bits
        f = float(np.median(marked * prec / sens) / pixels)
    f = min(max(f, _EPS), 1 - _EPS)
    w = np.zeros(len(patterns))
    if k:
        sens, prec = (np.clip(np.array([rate[j] for rate in voter_rates]), _EPS, 1 - _EPS) for j in (0, 1))
        odds = f / (1 - f)
        if_marked, if_empty = _vote_evidence(sens, prec, odds)
        votes = np.log(odds) + bits @ if_marked + (1 - bits) @ if_empty
        w = np.where(voted, _logistic(votes), 0.0)
        used = np.ones((1, image.levels), dtype=bool)
        shares = None
        for _ in range(max_iter if image.levels > 1 else 0):
            fg = np.bincount(bins, counts * voted * w, image.levels)[None]
            bg = np.bincount(bins, counts * voted * (1 - w), image.levels)[None]
            others = np.maximum(pool[:, None] - np.stack((fg, bg)), 0.0)
            by_level, new_shares = _level_evidence(fg, bg, used, others, np.array([intensity_images * pixels]))
            w = np.where(voted, _logistic(votes + by_level[0, bins]), 0.0)
            settled = shares is not None and float(np.abs(new_shares - shares).max()) < tol
            shares = new_shares
            if settled:
                break
    return _image_result(crowd, w, f)


def _level_evidence(
    fg: np.ndarray, bg: np.ndarray, used: np.ndarray, others: np.ndarray, lean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per image and intensity level, the log ratio of the level's share of the foreground to its
    share of the background (``fg``, ``bg``: (images, levels) posterior pixel counts; ``used``
    marks each image's levels). Every used level gets ``INTENSITY_PSEUDOCOUNT`` pixels of both,
    and each image the other images' histograms (``others``, (2, images, levels) pixel counts)
    scaled to ``lean`` pixels, (images,): their shares are the prior of its own. Returns that
    evidence, 0 at unused levels and on one-level images, and the shares stacked (2, images,
    levels)."""
    total = others.sum(axis=2, keepdims=True)
    prior = np.divide(others, total, out=np.zeros_like(others), where=total > 0) * lean[None, :, None]
    fg = np.where(used, fg + prior[0] + INTENSITY_PSEUDOCOUNT, 0.0)
    bg = np.where(used, bg + prior[1] + INTENSITY_PSEUDOCOUNT, 0.0)
    shares = np.stack((fg / fg.sum(axis=1, keepdims=True), bg / bg.sum(axis=1, keepdims=True)))
    return _share_evidence(shares, used), shares


def _share_evidence(shares: np.ndarray, used: np.ndarray) -> np.ndarray:
    """log(foreground share / background share) per image and level, 0 at unused levels."""
    return np.log(np.where(used, shares[0], 1.0)) - np.log(np.where(used, shares[1], 1.0))


def _vote_evidence(sens: np.ndarray, prec: np.ndarray, odds) -> tuple[np.ndarray, np.ndarray]:
    """The log-likelihood ratio (foreground against background) of a voter's mark and of their
    blank, from their sensitivity and precision and the image's prior odds of foreground (the E-step
    of every image, and of a gold image's crowd label)."""
    false_pos = np.clip(sens * odds * (1 - prec) / prec, _EPS, sens)
    return np.log(sens) - np.log(false_pos), np.log1p(-sens) - np.log1p(-false_pos)


def _logistic(logit: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logit))  # without overflow warnings


def _with_crowd(result: ImageResult, crowd: ImageResult) -> ImageResult:
    return ImageResult(
        result.key, result.shape, result.confidence, result.foreground_prior, result.annotators, result.gold,
        result._cells, result._table, result._entropy, crowd,
    )  # fmt: skip


def _annotators(
    names: list[str], packed: Iterable[_Packed], means: tuple[np.ndarray, ...], sds: tuple[np.ndarray, ...]
) -> dict[str, AnnotatorEstimate]:
    images = dict.fromkeys(names, 0)
    golds = dict.fromkeys(names, 0)
    anchored = dict.fromkeys(names, 0)
    for image in packed:
        for who in image.voters:
            images[who] += 1
            golds[who] += image.truth is not None
        for who in image.anchored_by:
            anchored[who] += 1
    (p, v, q), (p_sd, v_sd, q_sd) = means, sds
    return {
        who: AnnotatorEstimate(
            sensitivity=float(p[a]),
            precision=float(v[a]),
            specificity=float(q[a]),
            sensitivity_sd=float(p_sd[a]),
            precision_sd=float(v_sd[a]),
            specificity_sd=float(q_sd[a]),
            images=images[who],
            golds=golds[who],
            anchored=anchored[who],
        )
        for a, who in enumerate(names)
    }
