"""What goes into the fusion engine and what comes out. Plain dataclasses, numpy arrays, no Django.

Masks are (H, W) arrays, row-major, truthy = foreground: ``bool``, or any integer/float dtype
holding only 0 and 1 (a 0/255 PNG must be converted by the caller: the engine will not guess).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODEL = "model"  # the pseudo-annotator that stands for the AI suggestion (reserved annotator id)


@dataclass(frozen=True)
class Vote:
    """One annotator's mask for one image.

    ``anchored`` says the volunteer accepted the AI suggestion unchanged: the mask is the model's,
    not an independent opinion, so all anchored votes of an image collapse into one vote of
    :data:`MODEL`. ``edited`` says they started from the suggestion and changed it: a light edit
    (Dice with the model's mask at least ``engine.LIGHT_EDIT_DICE``) still carries the model's
    errors and collapses like an acceptance; a heavier one is the volunteer's own vote. A vote
    is at most one of the two.
    """

    annotator: str
    mask: np.ndarray
    anchored: bool = False
    edited: bool = False


@dataclass(frozen=True)
class FusionImage:
    """One image of one label class: its crowd votes, and optionally an expert gold standard, the
    AI suggestion that anchored votes accepted, and the image's own intensities. ``shape`` is
    (H, W) in pixels; every mask has it.

    ``intensity``: the (H, W) grey levels the masks were drawn on (any real scale: 8-bit display
    values, HU; only their order counts, but the images fused together should share it: one
    volume's slices, CT in HU, images normalised alike), or None. With it, the engine learns
    which intensities the crowd's structure has, on each image and over all of them, and weighs
    that as evidence beside the votes (see the engine's docstring); an image whose intensities
    do not tell the structure from its surroundings gets next to no evidence from them.
    """

    key: str
    shape: tuple[int, int]
    votes: Sequence[Vote] = ()
    gold: np.ndarray | None = None
    suggestion: np.ndarray | None = None
    intensity: np.ndarray | None = None


@dataclass(frozen=True)
class Prior:
    """Beliefs held before any evidence, in units of *images* (see the engine's docstring).

    - ``sensitivity``, ``precision``, ``specificity``: prior means of every annotator's rates
      (the model's too);
    - ``images``: the prior's weight, as if the annotator had already labelled this many images
      with exactly those rates. Small, so a handful of images outweighs it, yet an annotator with
      3 perfect images stays visibly less certain than one with 50;
    - ``gold_weight``: how much more a rate measured on a gold image weighs in an annotator's
      estimate than one measured on a consensus image. A consensus image measures an annotator
      against a label they helped to make (and that shares the crowd's common errors, even a
      colluding majority's); a gold image measures them against the truth. The standard
      deviations still count a gold image once: it is one image's worth of information. 10
      (it was 3): with golds on 15-20 % of the images, an annotator's gold record then outweighs
      their consensus record: in the fusion benchmark this lifted the worst decile under many
      spammers and heavy anchoring (by up to 0.04 Dice) and cost no setting more than 0.006
      (docs/fusion.md);
    - ``min_pixels``: an image whose (expected) true foreground has m pixels gives m/(m+min_pixels)
      of an image of evidence about sensitivity (likewise the marked area and precision, the
      background near the structure and specificity): a 3-pixel structure says little about how
      carefully someone traces;
    - ``intensity_images``: how much the other images' intensity histograms weigh in an image's
      own, in units of the image's voted region (2: as if it had been seen twice more, drawn as
      the rest of the label class is). Its own posterior can follow a wrong majority, and its
      histograms learned from that posterior then side with the majority; the other images
      (and their golds) say which grey levels the structure has. 0: every image on its own.
      This assumes a label class's images share a grey scale (slices of one volume, CT in HU,
      the model input that ``annotations.consensus`` passes); see docs/fusion.md.
    """

    sensitivity: float = 0.8
    precision: float = 0.8
    specificity: float = 0.8
    images: float = 2.0
    gold_weight: float = 10.0
    min_pixels: float = 25.0
    intensity_images: float = 2.0

    def __post_init__(self) -> None:
        for name in ("sensitivity", "precision", "specificity"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"prior {name} must lie strictly between 0 and 1, not {value!r}")
        for name in ("images", "gold_weight", "min_pixels"):
            value = getattr(self, name)
            if not value > 0.0:
                raise ValueError(f"prior {name} must be positive, not {value!r}")
        if not self.intensity_images >= 0.0:
            raise ValueError(f"prior intensity_images must be zero or positive, not {self.intensity_images!r}")


@dataclass(frozen=True)
class AnnotatorEstimate:
    """An annotator's estimated reliability for this label class (posterior means, and posterior
    standard deviations in the ``*_sd`` fields: the less evidence, the larger).

    - ``sensitivity``: share of the true foreground they mark;
    - ``precision``: share of what they mark that is truly foreground. With sensitivity, this is
      what the fusion weighs votes by; an annotator's expected Dice is their harmonic mean;
    - ``specificity``: share of the true background *near the structure* (within
      ``SPECIFICITY_BAND_PX`` = 3 px of the fused mask, or of the gold) that they leave empty.
      Far background is trivially right for everyone, so it is left out; a mask that floods
      the structure's surroundings (everything, a box, random blobs) is caught here.

    ``images`` counts the images the annotator independently voted on in this fusion, ``golds``
    those with a gold standard, ``anchored`` their votes that were collapsed into :data:`MODEL`'s
    (acceptances and light edits).

    ``weight`` is a cautious Youden's J: sensitivity + specificity - 1, each rate taken one
    standard deviation below its mean, clipped to [0, 1]. About 0 for anyone whose marks do not
    follow the structure (empty, everything, random blobs, a bounding box); near 1 for a
    perfect annotator with a long record, while 3 perfect images earn less than 50 good ones;
    lower the further someone's edge strays outwards (1 px too wide costs about a third). Use
    it to rank and score; the fusion itself weighs votes by sensitivity and precision.
    """

    sensitivity: float
    precision: float
    specificity: float
    sensitivity_sd: float
    precision_sd: float
    specificity_sd: float
    images: int
    golds: int
    anchored: int = 0

    @property
    def weight(self) -> float:
        sure = (self.sensitivity - self.sensitivity_sd) + (self.specificity - self.specificity_sd) - 1.0
        return min(1.0, max(0.0, sure))


@dataclass(frozen=True, eq=False)
class ImageResult:
    """The fused label of one image.

    The pixel maps are computed on access from the image's pixel cells (vote pattern x intensity
    level, see the engine) and a per-cell table (a cheap look-up), so a result for thousands of
    images stays small:

    - ``probability``: float32 (H, W), posterior P(foreground); exactly the gold mask on gold images;
    - ``mask``: bool (H, W), probability >= 0.5;
    - ``uncertainty``: float32 (H, W), binary entropy of the probability in bits, in [0, 1].

    ``confidence`` is the expected Dice of ``mask`` against the truth, were the truth drawn from
    the posterior: 2 sum_mask(P) / (|mask| + sum(P)), in [0, 1]; 1.0 on gold images and where
    nobody marked anything. Unlike a mean of the uncertainty map, it does not depend on how much
    empty or spam-covered area surrounds the structure, and it reads on the scale the bars are
    set on. ``annotators`` lists the independent voters (with :data:`MODEL` when anchored votes
    were collapsed); ``votes`` counts them.
    ``foreground_prior`` is the estimated share of the voted region that is foreground.

    ``crowd`` (gold images only, else None): the label the votes alone give under the estimated
    rates, exactly as an image without a gold standard would be fused (``gold`` False, its own
    confidence); the gold mask takes no part in it except through the rates it helped estimate.
    """

    key: str
    shape: tuple[int, int]
    confidence: float
    foreground_prior: float
    annotators: tuple[str, ...]
    gold: bool
    _cells: np.ndarray = field(repr=False)
    _table: np.ndarray = field(repr=False)
    _entropy: np.ndarray = field(repr=False)
    crowd: ImageResult | None = field(default=None, repr=False)

    @property
    def probability(self) -> np.ndarray:
        return self._table[self._cells]

    @property
    def mask(self) -> np.ndarray:
        return (self._table >= 0.5)[self._cells]

    @property
    def uncertainty(self) -> np.ndarray:
        return self._entropy[self._cells]

    @property
    def votes(self) -> int:
        """Independent votes: anchored acceptances count once, as the model's."""
        return len(self.annotators)


@dataclass(frozen=True, eq=False)
class FusionResult:
    """Everything one fusion run estimated. ``images`` and ``annotators`` are keyed by id;
    ``iterations`` is the number of EM rounds run, ``converged`` whether the estimates stopped
    moving by more than ``tol`` before ``max_iter``. Pass it back as ``init`` (or to
    :func:`~annotations.fusion.update`) to continue from it (its rates, its intensity levels and
    each image's intensity histograms)."""

    images: dict[str, ImageResult]
    annotators: dict[str, AnnotatorEstimate]
    iterations: int
    converged: bool
    prior: Prior
    _packed: Mapping[str, Any] = field(repr=False, default_factory=dict)
    _level_shares: Mapping[str, np.ndarray] = field(repr=False, default_factory=dict)
    _level_edges: np.ndarray | None = field(repr=False, default=None)
