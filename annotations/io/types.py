"""What every reader returns: one 2-D image, preprocessed for the model, plus safe metadata.

No Django here: readers are pure functions over bytes, reusable in a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ImageReadError(ValueError):
    """A file could not be read as a medical image; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


@dataclass(frozen=True)
class ReadOptions:
    """Choices a researcher makes at import time, and the limits that protect the server.

    ct_window: key of ``preprocess.CT_WINDOWS`` applied to CT pixel values in HU.
    nifti_axis: "axial", "coronal" or "sagittal": the plane NIfTI volumes are sliced in.
    max_side / max_pixels: largest 2-D image accepted (pixels), checked before decoding.
    max_volume_voxels: largest volume accepted, checked from the header before loading.
    """

    ct_window: str = "soft_tissue"
    nifti_axis: str = "axial"
    max_side: int = 8192
    max_pixels: int = 40_000_000
    max_volume_voxels: int = 200_000_000


@dataclass(frozen=True)
class SliceInfo:
    """Where a 2-D image came from inside a volume (NIfTI slice or DICOM frame)."""

    axis: str  # "axial" | "coronal" | "sagittal" | "frame"
    index: int  # 0-based position along the axis
    count: int  # number of slices along the axis


@dataclass(frozen=True)
class DecodedImage:
    """One 2-D image ready to store.

    pixels: the model input, (H, W, 3) uint8 at native resolution, after windowing or
        normalisation (``preprocessing`` says which). Resizing for a model happens later, in
        ``inference``.
    modality: "CT", "MR", "RGB" (photographs, screenshots, colour DICOM) or "OT" (other grey).
    source_format: "dicom", "nifti", "png", "jpeg" or "tiff".
    frame_key: stable name of this image inside its source file ("0", "frame-3", "axial-42"),
        so importing the same file twice finds the same rows.
    metadata: JSON-serialisable, de-identified, no free text.
    preprocessing: JSON-serialisable record of how raw values became ``pixels``.
    slice: set for slices of volumes and frames of multi-frame files.
    No file name: readers use the name in error messages only; what is stored is the import's
    choice (``annotations.services.images_import``).
    """

    pixels: np.ndarray
    modality: str
    source_format: str
    frame_key: str
    metadata: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    slice: SliceInfo | None = None

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"pixels must be (H, W, 3) uint8, got {p.shape} {p.dtype}")
