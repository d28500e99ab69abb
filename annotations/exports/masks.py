"""Plain masks, named so that each pairs with its image by file name:

``masks/images/{case}``, ``masks/fused/{class}/{case}``, ``masks/gold/{class}/{case}``,
``masks/probability/{class}/{case}`` (P(foreground) x 255, 8-bit), ``masks/uncertainty/{class}/{case}``
(binary entropy in bits x 255, 8-bit), ``masks/raters/{class}/{rater id}/{case}``. Binary masks
are 0/255 PNGs, or 0/1 NIfTI. Images that came from NIfTI volumes are written as ``.nii.gz`` with
their spacing (as are all their masks), everything else as ``.png``.
"""

from __future__ import annotations

import numpy as np

from annotations.fusion.engine import entropy_bits

from .archive import ZipWriter
from .codecs import nifti_gz, png
from .types import ExportCase, ExportSpec


def as_byte(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 0..255."""
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


class MasksWriter:
    def __init__(self, sink: ZipWriter, spec: ExportSpec, *, prefix: str = "masks/"):
        self.sink, self.spec, self.prefix = sink, spec, prefix
        self.files = 0

    def _put(self, path: str, case: ExportCase, array: np.ndarray) -> None:
        if case.source_format == "nifti":
            data = nifti_gz(array, case.spacing)
            self.sink.write(f"{self.prefix}{path}/{case.case_id}.nii.gz", data)
        else:
            self.sink.write(f"{self.prefix}{path}/{case.case_id}.png", png(array))
        self.files += 1

    def add(self, case: ExportCase) -> None:
        spec = self.spec
        if spec.wants("images"):
            if case.source_format == "nifti" and case.is_rgb:
                raise ValueError(f"{case.case_id}: an RGB image cannot have come from a NIfTI volume")
            self._put("images", case, case.image)
        for c in spec.classes:
            if spec.wants("fused") and c.index in case.fused:
                self._put(f"fused/{c.slug}", case, case.fused[c.index])
            if spec.wants("gold") and c.index in case.golds:
                self._put(f"gold/{c.slug}", case, case.golds[c.index])
            probability = case.probability.get(c.index)
            if spec.wants("probability") and probability is not None:
                self._put(f"probability/{c.slug}", case, as_byte(probability))
            if spec.wants("uncertainty") and probability is not None:
                self._put(f"uncertainty/{c.slug}", case, as_byte(entropy_bits(probability)))
            if spec.wants("raters"):
                for rater, mask in sorted(case.raters.get(c.index, {}).items()):
                    self._put(f"raters/{c.slug}/{rater}", case, mask)

    def finish(self) -> dict:
        return {"files": self.files}
