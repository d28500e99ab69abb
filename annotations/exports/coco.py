"""COCO instances JSON with RLE masks exactly as pycocotools writes them.

One file per kind of mask, each a complete COCO file with the same ``images`` and ``categories``:
``coco/annotations/fused.json`` (the crowd's fused labels), ``gold.json`` (expert gold standards),
``raters.json`` (each rater's own mask, ``rater`` holding the opaque rater id). Every annotation is
``iscrowd`` 0 with ``segmentation`` an RLE whose ``counts`` is a string, and ``area`` and ``bbox``
computed by ``pycocotools.mask``; an empty mask gets no annotation. With images exported, they are
``coco/images/{case}.png`` (``file_name`` relative to ``coco/images``).

Annotations are streamed to temporary files as cases arrive and copied into the archive at the
end, so memory holds only the (small) image records.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .archive import ZipWriter
from .codecs import png
from .types import ExportCase, ExportSpec

KINDS = ("fused", "gold", "raters")


class CocoWriter:
    def __init__(self, sink: ZipWriter, spec: ExportSpec, *, scratch: Path, prefix: str = "coco/"):
        self.sink, self.spec, self.prefix = sink, spec, prefix
        self.kinds = [k for k in KINDS if spec.wants(k)]
        self.images: list[dict] = []
        self.counts = dict.fromkeys(self.kinds, 0)
        self._files = {
            kind: tempfile.TemporaryFile("w+", encoding="utf-8", dir=scratch)  # noqa: SIM115  (closed in finish/close)
            for kind in self.kinds
        }

    def add(self, case: ExportCase) -> None:
        image_id = len(self.images) + 1
        height, width = case.shape
        self.images.append({"id": image_id, "file_name": f"{case.case_id}.png", "height": height, "width": width})
        if self.spec.wants("images"):
            self.sink.write(f"{self.prefix}images/{case.case_id}.png", png(case.image))
        for c in self.spec.classes:
            if "fused" in self._files and c.index in case.fused:
                extra = {"confidence": round(case.confidence.get(c.index, 0.0), 4)}
                self._annotation("fused", image_id, c.index, case.fused[c.index], extra)
            if "gold" in self._files and c.index in case.golds:
                self._annotation("gold", image_id, c.index, case.golds[c.index], {})
            if "raters" in self._files:
                for rater, mask in sorted(case.raters.get(c.index, {}).items()):
                    self._annotation("raters", image_id, c.index, mask, {"rater": rater})

    def _annotation(self, kind: str, image_id: int, category: int, mask: np.ndarray, extra: dict) -> None:
        if not mask.any():
            return
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        self.counts[kind] += 1
        record = {
            "id": self.counts[kind],
            "image_id": image_id,
            "category_id": category,
            "iscrowd": 0,
            "segmentation": {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")},
            "area": float(mask_utils.area(encoded)),
            "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
            **extra,
        }
        self._files[kind].write(json.dumps(record, separators=(",", ":")) + "\n")

    def finish(self) -> dict:
        categories = [{"id": c.index, "name": c.name, "supercategory": "structure"} for c in self.spec.classes]
        head = {"info": {"description": f"{self.spec.name}, exported by crowdseg", "version": "1.0"}, "licenses": []}
        for kind, spool in self._files.items():
            spool.seek(0)
            with self.sink.open(f"{self.prefix}annotations/{kind}.json") as out:
                prefix = json.dumps(head)[:-1] + ', "categories": ' + json.dumps(categories)
                out.write((prefix + ', "images": ' + json.dumps(self.images) + ', "annotations": [').encode())
                first = True
                for line in spool:
                    out.write((("" if first else ",") + line.rstrip("\n")).encode())
                    first = False
                out.write(b"]}")
            spool.close()
        return {"images": len(self.images), "annotations": dict(self.counts)}

    def close(self) -> None:
        for spool in self._files.values():
            spool.close()
