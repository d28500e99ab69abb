"""DICOM Segmentation objects (highdicom) for images that came from DICOM.

Built on the de-identified source header stored at import (``Image.metadata["dicom"]``: the
allowlist of ``annotations.io.deid``, UIDs remapped), so the SEG references the de-identified
instance and carries no more about the patient than it does: the patient and study attributes
that DICOM requires but de-identification removed are present and empty.

Per case: ``dicom-seg/{case}_fused.dcm``, a BINARY segmentation with one segment per class that
has a fused label, and with probability maps chosen ``dicom-seg/{case}_probability.dcm``, a
FRACTIONAL (probability) one. Segments are numbered 1, 2, ... in class order among the classes
the case has, and labelled with the class names.
"""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from .archive import ZipWriter
from .types import ExportCase, ExportError, ExportSpec

# Type 2 attributes of the patient and study modules: required, may be empty.
_EMPTY_REQUIRED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip
_CATEGORY = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
_TYPE = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
_FAMILY = hd.sr.CodedConcept("123109", "DCM", "Manual Processing")


def source_dataset(header: dict) -> Dataset:
    """The de-identified source header (PS3.18 JSON) as a pydicom dataset highdicom accepts."""
    ds = Dataset.from_json(header)
    ds.file_meta = FileMetaDataset()
    for keyword in _EMPTY_REQUIRED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def check_source(case: ExportCase) -> None:
    """Raise ExportError unless ``case`` can have a DICOM SEG."""
    if case.dicom is None:
        raise ExportError(
            f"DICOM SEG needs images imported from DICOM; {case.case_id} came from {case.source_format.upper()}: "
            "export it as nnU-Net, COCO or masks, or leave it out of the selection"
        )
    if case.frame_count > 1:
        raise ExportError(
            f"{case.case_id} is one frame of a multi-frame DICOM file, which DICOM SEG export does not cover"
        )


class DicomSegWriter:
    def __init__(self, sink: ZipWriter, spec: ExportSpec, *, version: str, prefix: str = "dicom-seg/"):
        self.sink, self.spec, self.version, self.prefix = sink, spec, version, prefix
        self.objects = 0
        self.series_uid = hd.UID()  # one SEG series per kind and export
        self.fractional_series_uid = hd.UID()

    def add(self, case: ExportCase) -> None:
        check_source(case)
        classes = [c for c in self.spec.classes if c.index in case.fused]
        if not classes:
            return
        source = source_dataset(case.dicom)
        if self.spec.wants("fused"):
            masks = np.stack([case.fused[c.index] for c in classes], axis=-1)[None].astype(np.uint8)
            self._write(f"{case.case_id}_fused.dcm", source, classes, masks, binary=True)
        present = [c for c in classes if c.index in case.probability]
        if self.spec.wants("probability") and present:
            maps = np.stack([case.probability[c.index] for c in present], axis=-1)[None].astype(np.float32)
            self._write(f"{case.case_id}_probability.dcm", source, present, maps, binary=False)

    def _write(self, name: str, source: Dataset, classes, pixels: np.ndarray, *, binary: bool) -> None:
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=c.name[:64],
                segmented_property_category=_CATEGORY,
                segmented_property_type=_TYPE,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
                algorithm_identification=hd.AlgorithmIdentificationSequence(
                    name="crowdseg crowd fusion", version=self.version, family=_FAMILY
                ),
            )
            for number, c in enumerate(classes, start=1)
        ]
        kind = hd.seg.SegmentationTypeValues.BINARY if binary else hd.seg.SegmentationTypeValues.FRACTIONAL
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=pixels,
            segmentation_type=kind,
            segment_descriptions=descriptions,
            series_instance_uid=self.series_uid if binary else self.fractional_series_uid,
            series_number=100 if binary else 101,
            sop_instance_uid=hd.UID(),
            instance_number=self.objects + 1,
            manufacturer="crowdseg",
            manufacturer_model_name="crowdseg",
            software_versions=self.version,
            device_serial_number="crowdseg",
            series_description="crowd fused label" if binary else "crowd probability",
            **({} if binary else {"fractional_type": hd.seg.SegmentationFractionalTypeValues.PROBABILITY}),
        )
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, seg, enforce_file_format=True)
        self.sink.write(self.prefix + name, buf.getvalue())
        self.objects += 1

    def finish(self) -> dict:
        return {"objects": self.objects}
