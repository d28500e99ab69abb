"""Arrays to file bytes: gzipped NIfTI-1 for 2-D slices (with their spacing) and PNG.

A 2-D slice is written as a 2-D NIfTI image: array axis 0 (rows, H) is NIfTI's j and axis 1
(columns, W) its i, so SimpleITK and nnU-Net read back an (H, W) array with spacing
(column mm, row mm) in ITK's (x, y) order, and nibabel a (W, H) array.
"""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
from PIL import Image as PILImage


def nifti_gz(array: np.ndarray, spacing: tuple[float, float]) -> bytes:
    """(H, W) array (any numeric dtype) with (row, column) spacing in mm, as ``.nii.gz`` bytes."""
    if array.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {array.shape}")
    row_mm, col_mm = (float(s) for s in spacing)
    affine = np.diag([col_mm, row_mm, 1.0, 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(array.T), affine)
    image.header.set_xyzt_units("mm")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    # Level 1: images and label maps compress almost as well as at 9, several times faster.
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


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
