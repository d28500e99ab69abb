"""PNG, JPEG and TIFF to model input with Pillow, refusing oversized images before decoding.

Pillow opens files lazily: the header is read first, so the declared size is checked
(``annotations.io.check_size``: 8192 pixels a side, 40 megapixels) before ``load()`` decodes any
pixel. ``_open_header`` opens without Pillow's own decompression-bomb guard, whose limits (89 and
179 megapixels) are far above ours and whose message would otherwise answer first; the guard stays
mapped to ImageReadError, should anything else trip it.

Metadata is limited to width, height, mode and page count: EXIF, text chunks, ICC profiles
and every other free-form field are dropped, since they can hold patient names.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import check_size
from .preprocess import grey_to_rgb, percentile_normalise, rgb_passthrough
from .types import DecodedImage, ImageReadError, ReadOptions, SliceInfo

_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
_OPENERS = ["PNG", "JPEG", "TIFF"]  # Pillow's JPEG opener also returns MPO (camera) files
_GREY_HIGH_DEPTH = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # normalised, full precision
_GREY_8BIT = {"L", "1"}  # shown as stored
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def read_raster(data: bytes, name: str, options: ReadOptions) -> list[DecodedImage]:
    """Decode a PNG, JPEG or TIFF file into (H, W, 3) uint8 images, one per TIFF page.

    Colour (RGB, RGBA, palette, CMYK, grey+alpha) -> ``rgb_passthrough``, modality "RGB";
    transparent pixels are composited over black (the background of medical viewers).
    8-bit grey -> unchanged ("grey_passthrough"); 16-bit, 32-bit and float grey ->
    ``percentile_normalise`` on the full-precision values; both modality "OT".
    JPEG EXIF orientation is applied. Only the first frame of a PNG/JPEG is read.
    frame_key: "0" for a single image, "page-N" (N from 0) for each page of a multi-page TIFF.
    The sum of pixels over all pages may not exceed ``options.max_volume_voxels``.
    Raises ImageReadError for unreadable, truncated or oversized files.
    """
    # Turn Pillow's bomb warning into an error so it cannot be silently ignored. Note that
    # catch_warnings is process-global; the worst a concurrent thread sees is an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _read(data, name, options)
        except ImageReadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageReadError(name, f"image too large to decode ({exc})") from None
        except UnidentifiedImageError:
            raise ImageReadError(name, "not a readable PNG, JPEG or TIFF file") from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError) as exc:
            # Pillow reports truncated or corrupt data with any of these
            raise ImageReadError(name, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def _open_header(data: bytes) -> Image.Image:
    """``Image.open(..., formats=_OPENERS)`` less its decompression-bomb check: the header is parsed,
    no pixel decoded, and the caller checks the size against the product's (lower) limits."""
    Image.init()
    for fmt in _OPENERS:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(data[:16]) if accept else True
        if not verdict or isinstance(verdict, str):  # a string: not this format, and why
            continue
        try:
            return factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all; as Image.open, try the next
    raise UnidentifiedImageError("cannot identify image file")


def _read(data: bytes, name: str, options: ReadOptions) -> list[DecodedImage]:
    img = _open_header(data)
    source_format = _FORMATS[img.format or ""]
    pages = int(getattr(img, "n_frames", 1)) if source_format == "tiff" else 1
    images: list[DecodedImage] = []
    total_pixels = 0
    for page in range(pages):
        if page:
            img.seek(page)
        width, height = img.size
        check_size(name, height, width, options)  # before load(): nothing decoded yet
        total_pixels += width * height
        if total_pixels > options.max_volume_voxels:
            raise ImageReadError(name, f"{pages} pages exceed the limit of {options.max_volume_voxels} pixels in all")
        mode = img.mode
        img.load()
        frame = ImageOps.exif_transpose(img) if source_format == "jpeg" else img
        pixels, modality, record = _to_model_input(frame)
        multi = pages > 1
        images.append(
            DecodedImage(
                pixels=pixels,
                modality=modality,
                source_format=source_format,
                frame_key=f"page-{page}" if multi else "0",
                metadata={"width": frame.width, "height": frame.height, "mode": mode, "pages": pages},
                preprocessing=record,
                slice=SliceInfo(axis="frame", index=page, count=pages) if multi else None,
            )
        )
    return images


def _to_model_input(img: Image.Image) -> tuple[np.ndarray, str, dict]:
    """(H, W, 3) uint8 pixels, modality and preprocessing record for one decoded frame."""
    mode = img.mode
    if mode in _GREY_8BIT:
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        return grey_to_rgb(grey), "OT", {"method": "grey_passthrough"}
    if mode in _GREY_HIGH_DEPTH or mode.startswith("I;16"):
        values = np.asarray(img)
        grey, record = percentile_normalise(values)  # float32 holds 16-bit values exactly
        return grey_to_rgb(grey), "OT", record
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        # composite over black: colour * alpha / 255, rounded
        rgb = ((rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255).astype(np.uint8)
        pixels, record = rgb_passthrough(rgb)
        return pixels, "RGB", {**record, "alpha": "composited_on_black"}
    pixels, record = rgb_passthrough(np.asarray(img.convert("RGB")))
    return pixels, "RGB", record
