"""PNG / JPEG / TIFF reader: conversions, safety limits and metadata hygiene (no Django)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from annotations.io import ImageReadError, ReadOptions, read_images
from annotations.io.raster import read_raster

OPTS = ReadOptions()
KEY = b"test-key"


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_8bit_grey_passes_through():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    [out] = read_raster(encode(Image.fromarray(grey, "L"), "PNG"), "g.png", OPTS)
    assert out.pixels.shape == (6, 8, 3)
    assert np.array_equal(out.pixels[:, :, 0], grey) and np.array_equal(out.pixels[:, :, 2], grey)
    assert out.modality == "OT" and out.source_format == "png" and out.frame_key == "0"
    assert out.preprocessing == {"method": "grey_passthrough"}
    assert out.metadata == {"width": 8, "height": 6, "mode": "L", "pages": 1}
    assert out.slice is None


def test_png_16bit_grey_is_normalised_at_full_precision():
    # values differ only below the top byte: a reader that truncated to 8 bits would see a
    # constant image
    values = (np.arange(200, dtype=np.uint16) + 1000).reshape(10, 20)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    [out] = read_raster(data, "g16.png", OPTS)
    assert out.modality == "OT"
    assert out.preprocessing["method"] == "percentile"
    assert out.preprocessing["low"] == pytest.approx(1000 + 0.005 * 199, abs=0.01)
    grey = out.pixels[:, :, 0]
    assert grey[0, 0] == 0 and grey[-1, -1] == 255
    assert np.all(np.diff(grey.ravel().astype(int)) >= 0)  # monotonic ramp preserved
    assert len(np.unique(grey)) > 150


def test_png_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    [out] = read_raster(encode(Image.fromarray(rgb, "RGB"), "PNG"), "c.png", OPTS)
    assert np.array_equal(out.pixels, rgb)
    assert out.modality == "RGB" and out.preprocessing == {"method": "rgb_passthrough"}
    assert out.metadata["mode"] == "RGB"


def test_png_rgba_composited_on_black():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque
    rgba[0, 1] = (200, 100, 50, 0)  # fully transparent
    rgba[1, 0] = (200, 100, 50, 128)  # half
    [out] = read_raster(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png", OPTS)
    assert tuple(out.pixels[0, 0]) == (200, 100, 50)
    assert tuple(out.pixels[0, 1]) == (0, 0, 0)
    assert tuple(out.pixels[1, 0]) == (100, 50, 25)
    assert out.modality == "RGB" and out.metadata["mode"] == "RGBA"


def test_png_palette():
    img = Image.new("P", (4, 3))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putpixel((1, 1), 1)
    img.putpixel((2, 2), 2)
    [out] = read_raster(encode(img, "PNG"), "p.png", OPTS)
    assert out.modality == "RGB" and out.metadata["mode"] == "P"
    assert tuple(out.pixels[1, 1]) == (255, 0, 0) and tuple(out.pixels[2, 2]) == (0, 255, 0)
    assert tuple(out.pixels[0, 0]) == (0, 0, 0)


def test_jpeg_exif_orientation_applied():
    # stored 40 wide x 20 high, red block at the stored top-left; EXIF 6 = rotate 90 deg CW
    # for display, so the displayed image is 20 wide x 40 high with red at the top-right
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "Patient: DOE^JANE"  # ImageDescription must not leak
    data = encode(Image.fromarray(rgb), "JPEG", exif=exif.tobytes(), quality=95)
    [out] = read_raster(data, "photo.jpg", OPTS)
    assert out.source_format == "jpeg" and out.modality == "RGB"
    assert out.pixels.shape == (40, 20, 3)
    assert out.metadata == {"width": 20, "height": 40, "mode": "RGB", "pages": 1}
    assert out.pixels[2, 17, 0] > 200 and out.pixels[2, 2, 0] < 50
    assert "DOE" not in json.dumps([out.metadata, out.preprocessing])


def test_multipage_tiff_one_image_per_page():
    pages = [Image.fromarray(np.full((3, 5), v, np.uint8), "L") for v in (10, 20, 30)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    out = read_raster(data, "stack.tif", OPTS)
    assert [o.frame_key for o in out] == ["page-0", "page-1", "page-2"]
    assert [int(o.pixels[0, 0, 0]) for o in out] == [10, 20, 30]
    assert all(o.source_format == "tiff" and o.metadata["pages"] == 3 for o in out)
    assert out[1].slice is not None and (out[1].slice.index, out[1].slice.count) == (1, 3)


def test_tiff_pages_total_limit():
    pages = [Image.fromarray(np.zeros((10, 10), np.uint8), "L") for _ in range(3)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageReadError, match="pages"):
        read_raster(data, "stack.tif", ReadOptions(max_volume_voxels=250))


def test_png_text_chunk_not_in_metadata():
    info = PngImagePlugin.PngInfo()
    info.add_text("PatientName", "DOE^JOHN")
    info.add_itxt("Comment", "seen by DOE^JOHN")
    data = encode(Image.new("L", (4, 4), 7), "PNG", pnginfo=info)
    assert b"DOE^JOHN" in data
    [out] = read_raster(data, "t.png", OPTS)
    assert "DOE" not in json.dumps([out.metadata, out.preprocessing])
    assert set(out.metadata) == {"width", "height", "mode", "pages"}


def _huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_png_declaring_50000_squared_refused_before_decode(monkeypatch):
    def no_load(self):  # decoding would be the failure we guard against
        raise AssertionError("load() called on an oversized image")

    monkeypatch.setattr(Image.Image, "load", no_load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_load)
    data = _huge_png(50_000, 50_000)
    assert len(data) < 2000
    with pytest.raises(ImageReadError):
        read_raster(data, "bomb.png", OPTS)
    # below Pillow's own bomb limit: our check_size refuses it, still before load()
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_raster(_huge_png(9000, 10), "wide.png", OPTS)


def test_truncated_png_refused():
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), np.uint8)), "PNG")
    with pytest.raises(ImageReadError):
        read_raster(data[: len(data) // 2], "cut.png", OPTS)


def test_garbage_refused():
    with pytest.raises(ImageReadError):
        read_raster(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "junk.png", OPTS)


@pytest.mark.parametrize(("fmt", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("TIFF", "tiff")])
def test_dispatcher_routes_raster(fmt: str, expected: str):
    data = encode(Image.new("RGB", (6, 4), (10, 20, 30)), fmt)
    [out] = read_images(data, "whatever.bin", uid_key=KEY)
    assert out.source_format == expected and out.pixels.shape == (4, 6, 3)


def test_dispatcher_refuses_truncated_png():
    data = encode(Image.new("RGB", (64, 64), (10, 20, 30)), "PNG")
    with pytest.raises(ImageReadError):
        read_images(data[:60], "cut.png", uid_key=KEY)


def test_float_tiff_and_cmyk_jpeg():
    values = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(5, 6)
    [grey] = read_raster(encode(Image.fromarray(values, "F"), "TIFF"), "f.tif", OPTS)
    assert grey.modality == "OT" and grey.metadata["mode"] == "F"
    assert grey.pixels[0, 0, 0] == 0 and grey.pixels[-1, -1, 0] == 255
    [colour] = read_raster(encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG"), "c.jpg", OPTS)
    assert colour.modality == "RGB" and colour.metadata["mode"] == "CMYK"
    assert colour.pixels[0, 0, 0] > 200 and colour.pixels[0, 0, 1] < 60


@pytest.mark.parametrize("side", [10_000, 13_000, 30_000, 50_000])
def test_the_products_size_check_runs_before_pillows_bomb_guard(side):
    # Pillow warns from 89 and refuses from 179 megapixels, with its own message; the product's
    # limit (8192 a side, 40 megapixels, from the header) comes first for every size above it.
    with pytest.raises(ImageReadError, match=rf"{side}x{side} pixels exceeds the limit of 8192 pixels a side"):
        read_raster(_huge_png(side, side), "huge.png", OPTS)


def test_a_huge_tiff_is_refused_by_the_products_size_check():
    big = encode(Image.new("1", (30_000, 30_000)), "TIFF", compression="group4")  # a few kilobytes
    with pytest.raises(ImageReadError, match="30000x30000 pixels exceeds the limit"):
        read_raster(big, "huge.tif", OPTS)
