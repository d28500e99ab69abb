"""What an export is made of: the cases (one 2-D image each, with its masks) and the choices.

Arrays follow the product's conventions: an image is (H, W) uint8 greyscale or (H, W, 3) uint8
RGB; a mask is (H, W) bool; a probability map is (H, W) float32 P(foreground) in [0, 1]. H, W are
rows, columns; spacings are (row, column) in millimetres. People are named only by their opaque
rater id (``accounts.services.rater_id``), never by a username, pseudonym or database id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

FORMATS = ("nnunet", "coco", "dicom-seg", "masks")
CONTENTS = ("images", "fused", "raters", "probability", "uncertainty", "gold", "synthetic")


class ExportError(ValueError):
    """The export cannot be made as asked (empty selection, DICOM SEG of a PNG, ...): the message
    says what to change. Nothing is left on disk when it is raised."""


@dataclass(frozen=True)
class ExportClass:
    """A label class as exported: ``index`` is its label value (1, 2, ...; 0 is background)."""

    index: int
    name: str
    color: str = "#ff5a36"

    @property
    def slug(self) -> str:
        return slug(self.name)


@dataclass
class ExportCase:
    """One 2-D image and what is known about it, for every exported class.

    ``case_id`` names every file of the case (``case_00001``); ``group`` is the volume or patient
    the image belongs to (slices of one volume share it: cross-validation folds keep them together);
    ``source`` where it came from, as the import named it (opaque unless the researcher kept names);
    ``dicom`` the de-identified DICOM header (PS3.18 JSON model) where the image came from DICOM.
    ``fused``, ``probability``, ``golds`` and ``raters`` are keyed by class index; ``raters`` maps
    a class to {rater id: mask}; ``confidence`` is the fusion's per-image confidence per class.
    """

    case_id: str
    image: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    group: str = ""
    source: str = ""
    source_format: str = "png"
    frame_count: int = 1
    dicom: dict | None = None
    fused: dict[int, np.ndarray] = field(default_factory=dict)
    probability: dict[int, np.ndarray] = field(default_factory=dict)
    confidence: dict[int, float] = field(default_factory=dict)
    golds: dict[int, np.ndarray] = field(default_factory=dict)
    raters: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def is_rgb(self) -> bool:
        return self.image.ndim == 3


@dataclass
class SyntheticCase:
    """A generated image (pix2pix) with the masks it was generated from, keyed by class index.
    Exported in its own ``synthetic/`` folder, never mixed with real images."""

    case_id: str
    image: np.ndarray
    masks: dict[int, np.ndarray]
    generator_version: str
    seed: int


@dataclass(frozen=True)
class ExportSpec:
    """What to write. ``formats`` from ``FORMATS``, ``contents`` from ``CONTENTS``.

    ``name`` names the dataset inside the export (nnU-Net's ``DatasetNNN_<name>``);
    ``nnunet_id`` is the NNN (1..999); ``ignore_above_bits``: pixels whose fused uncertainty (binary
    entropy, bits) exceeds it get nnU-Net's ``ignore`` label (None: no ignore label); ``folds``
    the number of cross-validation folds in ``splits_final.json``.
    """

    name: str
    classes: tuple[ExportClass, ...]
    formats: tuple[str, ...] = ("nnunet",)
    contents: tuple[str, ...] = ("images", "fused")
    nnunet_id: int = 501
    ignore_above_bits: float | None = None
    folds: int = 5

    def __post_init__(self):
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ExportError(f"unknown format {unknown or self.formats}: choose from {', '.join(FORMATS)}")
        unknown = [c for c in self.contents if c not in CONTENTS]
        if unknown:
            raise ExportError(f"unknown content {unknown}: choose from {', '.join(CONTENTS)}")
        if not self.classes:
            raise ExportError("no label class to export")
        if not 1 <= self.nnunet_id <= 999:
            raise ExportError(f"the nnU-Net dataset id must be in 1..999, not {self.nnunet_id}")
        if self.ignore_above_bits is not None and not 0 < self.ignore_above_bits < 1:
            raise ExportError(f"the ignore threshold is in bits, in (0, 1), not {self.ignore_above_bits}")
        if not 2 <= self.folds <= 10:
            raise ExportError(f"folds must be in 2..10, not {self.folds}")

    def wants(self, content: str) -> bool:
        return content in self.contents


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_") or "unnamed"
