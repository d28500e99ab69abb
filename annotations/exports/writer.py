"""One pass over the cases, every chosen format written side by side into one zip on disk.

The cases arrive one at a time (a generator): at no point are all images or masks in memory.
Besides the formats' folders every export holds ``datacard.json`` and ``README.md`` (the data
card), ``cases.csv`` (each case's id, volume group, source and per-class confidence),
``reliability.csv`` (raters by opaque id) and, when chosen, ``synthetic/`` (generated pairs,
flagged, never mixed with the real images).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from .archive import ZipWriter
from .coco import CocoWriter
from .codecs import png
from .datacard import CardFacts, card, readme
from .dicom_seg import DicomSegWriter
from .masks import MasksWriter
from .nnunet import NnUNetWriter
from .types import ExportCase, ExportError, ExportSpec, SyntheticCase

PROGRESS_EVERY = 50  # cases between progress reports


def export_write(
    target: Path,
    spec: ExportSpec,
    cases: Iterable[ExportCase],
    *,
    facts: CardFacts,
    reliability_csv: str,
    modality: str,
    synthetic: Iterable[SyntheticCase] = (),
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write the export to ``target`` (a ``.zip``), all or nothing. Returns a summary per format.

    ``progress(cases_done)`` is called every ``PROGRESS_EVERY`` cases and at the end; an exception
    it raises (a cancellation) stops the export and, like any error, leaves no file behind.
    Raises ExportError for an empty selection or a case a format cannot hold.
    """
    with ZipWriter(target) as sink:
        writers = _writers(sink, spec, modality=modality, version=facts.crowdseg_version, scratch=target.parent)
        try:
            done = training = 0
            rows = io.StringIO()
            table = csv.writer(rows, lineterminator="\n")
            table.writerow(["case", "group", "source", "source_format", "spacing_mm", *_confidence_header(spec)])
            for case in cases:
                for writer in writers.values():
                    writer.add(case)
                training += all(c.index in case.fused for c in spec.classes)
                table.writerow(_case_row(spec, case))
                done += 1
                if progress and done % PROGRESS_EVERY == 0:
                    progress(done)
            if done == 0:
                raise ExportError("the selection is empty: no image matches the chosen classes and filters")
            outputs = {name: writer.finish() for name, writer in writers.items()}
        finally:
            for writer in writers.values():
                getattr(writer, "close", lambda: None)()
        if spec.wants("synthetic"):
            outputs["synthetic"] = _write_synthetic(sink, spec, synthetic)
        sink.write("cases.csv", rows.getvalue())
        sink.write("reliability.csv", reliability_csv)
        facts.cases, facts.training_cases, facts.outputs = done, training, outputs
        document = card(facts)
        sink.write("datacard.json", json.dumps(document, indent=2, default=str))
        sink.write("README.md", readme(document))
        if progress:
            progress(done)
    return outputs


def _writers(sink: ZipWriter, spec: ExportSpec, *, modality: str, version: str, scratch: Path) -> dict:
    writers: dict = {}
    if "nnunet" in spec.formats:
        writers["nnunet"] = NnUNetWriter(sink, spec, modality=modality)
    if "coco" in spec.formats:
        writers["coco"] = CocoWriter(sink, spec, scratch=scratch)
    if "dicom-seg" in spec.formats:
        writers["dicom-seg"] = DicomSegWriter(sink, spec, version=version)
    if "masks" in spec.formats:
        writers["masks"] = MasksWriter(sink, spec)
    return writers


def _confidence_header(spec: ExportSpec) -> list[str]:
    return [f"confidence_{c.slug}" for c in spec.classes]


def _case_row(spec: ExportSpec, case: ExportCase) -> list:
    confidence = [f"{case.confidence[c.index]:.4f}" if c.index in case.confidence else "" for c in spec.classes]
    spacing = f"{case.spacing[0]:g}x{case.spacing[1]:g}"
    return [case.case_id, case.group, case.source, case.source_format, spacing, *confidence]


def _write_synthetic(sink: ZipWriter, spec: ExportSpec, synthetic: Iterable[SyntheticCase]) -> dict:
    """``synthetic/images/{id}.png``, ``synthetic/masks/{class}/{id}.png`` and ``synthetic.json``
    (every pair flagged ``synthetic: true`` with its generator version and seed)."""
    records = []
    for pair in synthetic:
        sink.write(f"synthetic/images/{pair.case_id}.png", png(pair.image))
        for c in spec.classes:
            if c.index in pair.masks:
                sink.write(f"synthetic/masks/{c.slug}/{pair.case_id}.png", png(pair.masks[c.index]))
        records.append(
            {"case": pair.case_id, "synthetic": True, "generator_version": pair.generator_version, "seed": pair.seed}
        )
    sink.write("synthetic/synthetic.json", json.dumps(records, indent=1))
    return {"pairs": len(records)}
