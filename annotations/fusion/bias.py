"""How the AI suggestion errs: the model's systematic bias, measured against gold and against the
fused labels. Pure numpy.

Anchored volunteers pass the model's errors on unchanged, so the model's bias is what fusion must
correct rather than inherit; this report tells a researcher whether it over- or under-segments
and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..metrics import dice
from .engine import model_mask
from .types import MODEL, FusionImage, FusionResult


def model_bias(images: Sequence[FusionImage], result: FusionResult) -> dict:
    """The model's masks (an image's suggestion, else its anchored votes' majority) compared with
    the gold standard on gold images and with the fused label on the other images.

    Returns ``{"gold": {...}, "fused": {...}, "sensitivity": s, "precision": p, "specificity": s}``
    where each
    comparison holds ``images`` (how many were compared), ``dice`` (mean Dice) and
    ``area_error``: the mean signed area error (|model| - |reference|) / |reference|, positive
    when the model over-segments (images with an empty reference are left out of this mean, as
    the ratio is undefined there). Means are None when nothing was compared. The rates are the
    ``"model"`` pseudo-annotator's from ``result`` (None when no vote was anchored).
    Raises ValueError for an image that ``result`` does not know.
    """
    compared: dict[str, list[tuple[float, float | None]]] = {"gold": [], "fused": []}
    for image in images:
        if image.key not in result.images:
            raise ValueError(f"image {image.key!r} is not in the fusion result")
        model = model_mask(image)
        if model is None:
            continue
        if image.gold is not None:
            reference, kind = np.asarray(image.gold, dtype=bool), "gold"
        else:
            reference, kind = result.images[image.key].mask, "fused"
        area = int(reference.sum())
        error = (int(model.sum()) - area) / area if area else None
        compared[kind].append((dice(model, reference), error))

    def summary(rows: list[tuple[float, float | None]]) -> dict:
        errors = [e for _, e in rows if e is not None]
        return {
            "images": len(rows),
            "dice": float(np.mean([d for d, _ in rows])) if rows else None,
            "area_error": float(np.mean(errors)) if errors else None,
        }

    estimate = result.annotators.get(MODEL)
    return {
        "gold": summary(compared["gold"]),
        "fused": summary(compared["fused"]),
        "sensitivity": estimate.sensitivity if estimate else None,
        "precision": estimate.precision if estimate else None,
        "specificity": estimate.specificity if estimate else None,
    }
