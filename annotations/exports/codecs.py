"""Arrays to file bytes: gzipped NIfTI-1 for 2-D slices (with their spacing) and PNG.

A 2-D slice is written as a 2-D NIfTI image: array axis 0 (rows, H) is NIfTI's j and axis 1
(columns, W) its i, so SimpleITK and nnU-Net read back an (H, W) array with spacing
(column mm, row mm) in ITK's (x, y) order, and nibabel a (W, H) array.
"""

from __future__ import annotations

import gzip
import io
from functools import lru_cache

import nibabel as nib
import numpy as np
from PIL import Image as PILImage


def nifti_gz(array: np.ndarray, spacing: tuple[float, float]) -> bytes:
    """(H, W) uint8 (or bool: 0/1) array with (row, column) spacing in mm, as ``.nii.gz`` bytes."""
    if array.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {array.shape}")
    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"NIfTI export writes uint8, got {array.dtype}")
    height, width = array.shape
    head = _nifti_header(height, width, float(spacing[0]), float(spacing[1]))
    # NIfTI's first index (i = columns) varies fastest: the (H, W) array's C order.
    # Level 1: images and label maps compress almost as well as at 9, several times faster.
    return gzip.compress(head + np.ascontiguousarray(array).tobytes(), compresslevel=1, mtime=0)


@lru_cache(maxsize=64)
def _nifti_header(height: int, width: int, row_mm: float, col_mm: float) -> bytes:
    """The NIfTI-1 header (and extension flag) of a uint8 (H, W) slice: nibabel's own, made once
    per shape and spacing (the header of a uint8 image does not depend on its values), since
    building it costs several times more than compressing the pixels."""
    affine = np.diag([col_mm, row_mm, 1.0, 1.0])
    image = nib.Nifti1Image(np.zeros((width, height), np.uint8), affine)
    image.header.set_xyzt_units("mm")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    whole = image.to_bytes()
    offset = int(nib.Nifti1Header.from_fileobj(io.BytesIO(whole))["vox_offset"])
    if len(whole) != offset + height * width:  # nibabel wrote something other than header + pixels
        raise AssertionError(f"unexpected NIfTI layout: {len(whole)} bytes, pixels from {offset}")
    return whole[:offset]


def png(array: np.ndarray) -> bytes:
    """(H, W) uint8 (or bool: 0/255) or (H, W, 3) uint8 as PNG bytes."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"PNG export needs uint8 or bool, got {array.dtype}")
    mode = "RGB" if array.ndim == 3 else "L"
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array), mode=mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
