"""Readers for medical images: bytes in, de-identified preprocessed 2-D images out.

``read_images`` is the one entry point; it recognises the format from the bytes (not the
name) and hands over to the reader for DICOM, NIfTI or PNG/JPEG/TIFF. Every failure is an
``ImageReadError`` naming the file.
"""

from __future__ import annotations

import struct

from .types import DecodedImage, ImageReadError, ReadOptions, SliceInfo

__all__ = ["DecodedImage", "ImageReadError", "ReadOptions", "SliceInfo", "read_images", "sniff_format"]


def sniff_format(data: bytes, name: str) -> str:
    """Return "dicom", "nifti", "png", "jpeg" or "tiff" from the file's first bytes.

    DICOM files without the 128-byte preamble are recognised by their ``.dcm`` name only.
    """
    lower = name.lower()
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:2] == b"\x1f\x8b":
        if lower.endswith(".nii.gz"):
            return "nifti"
        raise ImageReadError(name, "gzip file is not a .nii.gz volume")
    if len(data) >= 348:
        for endian in "<>":
            if struct.unpack(endian + "i", data[:4])[0] in (348, 540):
                return "nifti"
    if lower.endswith((".dcm", ".dicom")):
        return "dicom"
    raise ImageReadError(name, "unsupported file type (expected DICOM, NIfTI, PNG, JPEG or TIFF)")


def read_images(data: bytes, name: str, options: ReadOptions | None = None, *, uid_key: bytes) -> list[DecodedImage]:
    """Decode every 2-D image in one file.

    data: the whole file. name: its name, used in error messages and for preamble-less DICOM.
    uid_key: secret of the dataset, so DICOM UIDs are remapped the same way for every file of
        a study and cannot be linked across datasets.
    Raises ImageReadError (a ValueError) for anything that is not a readable, safe image.
    """
    options = options or ReadOptions()
    kind = sniff_format(data, name)
    try:
        if kind == "dicom":
            from .dicom import read_dicom

            images = read_dicom(data, name, options, uid_key=uid_key)
        elif kind == "nifti":
            from .nifti import read_nifti

            images = read_nifti(data, name, options)
        else:
            from .raster import read_raster

            images = read_raster(data, name, options)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(name, "image too large to decode") from None
    except Exception as exc:  # a reader library failed on corrupt input
        raise ImageReadError(name, f"could not read {kind} file ({type(exc).__name__}: {exc})") from exc
    if not images:
        raise ImageReadError(name, "file holds no image")
    return images


def check_size(name: str, height: int, width: int, options: ReadOptions) -> None:
    """Refuse a 2-D image larger than the options allow, before any pixel is decoded."""
    if height <= 0 or width <= 0:
        raise ImageReadError(name, f"image has no pixels ({width}x{height})")
    if max(height, width) > options.max_side or height * width > options.max_pixels:
        raise ImageReadError(
            name,
            f"image of {width}x{height} pixels exceeds the limit of {options.max_side} pixels a side "
            f"and {options.max_pixels} pixels in all",
        )
