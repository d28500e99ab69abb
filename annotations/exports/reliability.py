"""The rater reliability table (``reliability.csv``), the same in every export and in the admin's
download: one row per rater and label class, raters named by their opaque rater id only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

FIELDS = ["sensitivity", "sensitivity_sd", "precision", "precision_sd", "specificity", "specificity_sd"]
HEADER = ["dataset", "label_class", "rater", "weight", *FIELDS, "images", "golds", "anchored"]
MODEL_RATER = "model"  # the AI model's row (votes that accepted its suggestion unchanged)


@dataclass(frozen=True)
class ReliabilityRow:
    dataset: str
    label_class: str
    rater: str
    weight: float
    rates: dict[str, float]
    images: int
    golds: int
    anchored: int


def reliability_csv(rows: Iterable[ReliabilityRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for r in rows:
        rates = [f"{r.rates[f]:.4f}" for f in FIELDS]
        writer.writerow([r.dataset, r.label_class, r.rater, f"{r.weight:.4f}", *rates, r.images, r.golds, r.anchored])
    return out.getvalue()
