"""Research exports: nnU-Net v2 raw datasets, COCO (RLE), DICOM SEG and plain masks, each with
a data card, streamed into one zip on disk.

Pure (numpy, nibabel, pycocotools, highdicom), no Django: ``annotations.services`` gathers the
cases from the database and runs ``export_write`` inside an export job. In a notebook::

    from annotations.exports import ExportCase, ExportClass, ExportSpec, export_write

One module per format (``nnunet``, ``coco``, ``dicom_seg``, ``masks``), ``datacard`` for the card,
``archive`` for the all-or-nothing zip.
"""

from . import archive
from .datacard import CardFacts
from .reliability import ReliabilityRow, reliability_csv
from .types import CONTENTS, FORMATS, ExportCase, ExportClass, ExportError, ExportSpec, SyntheticCase, slug
from .writer import export_write

__all__ = [
    "CONTENTS",
    "archive",
    "FORMATS",
    "CardFacts",
    "ExportCase",
    "ExportClass",
    "ExportError",
    "ExportSpec",
    "ReliabilityRow",
    "SyntheticCase",
    "export_write",
    "reliability_csv",
    "slug",
]
