"""DICOM reader: one file's bytes in, de-identified, preprocessed 2-D images out.

Order matters for safety: the header is de-identified (``deid.deidentify``: only the
allowlisted attributes stay) straight after parsing, then the image geometry is checked against
``ReadOptions`` limits (``check_size``, including the sizes claimed inside compressed
codestreams) before any pixel is decoded. Everything after de-identification reads only what
``deid.ALLOWLIST`` keeps.

Pixels: CT is converted to Hounsfield units (rescale slope/intercept) and windowed with
``options.ct_window``; RGB/YBR/PALETTE COLOR become RGB; other grey images are normalised
between intensity percentiles; MONOCHROME1 is inverted to the MONOCHROME2 convention (high
value = bright). Multi-frame files give one image per frame ("frame-0", "frame-1", ...,
0-based like ``SliceInfo.index``); single-frame files give one image with frame key "0".
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import warnings
from collections.abc import Iterator
from io import BytesIO

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_description, dictionary_has_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import check_size, preprocess
from .deid import deidentify
from .types import DecodedImage, ImageReadError, ReadOptions, SliceInfo

__all__ = ["read_dicom"]

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double, integer pixels
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
# Attributes that, if the file holds an invalid value in them, make the pixels unreadable or
# their values wrong (de-identification removes invalid values; see ``deid.deidentify``).
_NEEDED_VALID = frozenset(
    {
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "RescaleSlope",
        "RescaleIntercept",
    }
)
_JSON_BINARY_LIMIT = 1024  # bytes; larger binary attributes are left out of the metadata
# JPEG start-of-frame markers (ITU T.81 B.1.1.3) and JPEG-LS SOF55 (ISO 14495-1).
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF, 0xF7})


def read_dicom(data: bytes, name: str, options: ReadOptions, *, uid_key: bytes) -> list[DecodedImage]:
    """Decode every frame of one DICOM file into model-ready images.

    data: the whole file. name: used in error messages only (never stored: names may hold
    patient names). uid_key: dataset secret for UID remapping (see ``deid``).
    ``metadata["dicom"]`` is the de-identified header (allowlisted attributes only).
    Returns one ``DecodedImage`` per frame, ``pixels`` (H, W, 3) uint8 at native resolution.
    Raises ImageReadError for non-DICOM, corrupt or truncated files, DICOMDIRs and other files
    without pixel data, invalid values in the attributes decoding needs (``_NEEDED_VALID``),
    unsupported transfer syntaxes and images over the size limits.
    """
    with _quiet_pydicom():
        ds = _parse(data, name)
        try:
            rejected = deidentify(ds, uid_key=uid_key)
        except Exception as exc:  # never go on with a header we could not clean
            raise ImageReadError(name, f"could not de-identify the header ({type(exc).__name__})") from None
        invalid = sorted(_NEEDED_VALID & rejected)
        if invalid:  # going on without them would misread the pixels
            described = ", ".join(dictionary_description(tag_for_keyword(k)) for k in invalid)
            raise ImageReadError(name, f"invalid {described} in the header")
        _refuse_non_image(ds, name)
        rows, columns, frames = _geometry(ds, name, options)
        tsyntax = _transfer_syntax(ds, name)
        decoder = _decoder(tsyntax, name)
        _check_encoded(ds, tsyntax, frames, name, options)
        metadata = _metadata(ds, tsyntax, rows, columns, frames)
        images: list[DecodedImage] = []
        multi = frames > 1
        try:
            for index, (frame, photometric) in enumerate(_decode_frames(ds, decoder)):
                pixels, modality, record = _preprocess(ds, frame, photometric, index, options, name)
                images.append(
                    DecodedImage(
                        pixels=pixels,
                        modality=modality,
                        source_format="dicom",
                        frame_key=f"frame-{index}" if multi else "0",
                        metadata=dict(metadata),
                        preprocessing=record,
                        slice=SliceInfo(axis="frame", index=index, count=frames) if multi else None,
                    )
                )
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError(name, "image too large to decode") from None
        except Exception as exc:
            reason = f"could not decode {_label(tsyntax)} pixel data ({type(exc).__name__}: {exc})"
            raise ImageReadError(name, reason[:400]) from exc
    if not images:
        raise ImageReadError(name, "file holds no image")
    return images


_READING: contextvars.ContextVar[bool] = contextvars.ContextVar("annotations_io_dicom_reading", default=False)


class _NotWhileReading(logging.Filter):
    """Drops the "pydicom" logger's records while this module handles a file (see ``_quiet_pydicom``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _READING.get()


logging.getLogger("pydicom").addFilter(_NotWhileReading())


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records while a file is handled.

    They quote raw attribute values (a malformed birth date, an unknown character set) into
    warnings and the log while the file is parsed, before de-identification can remove them.
    """
    settings = pydicom_config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom_config.IGNORE
    reading = _READING.set(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _READING.reset(reading)
        settings.reading_validation_mode = previous


def _parse(data: bytes, name: str) -> Dataset:
    # force=True reads files without the 128-byte preamble; so that it does not also "read"
    # random bytes, such files must start with a file meta (0002) or identifying (0008) group.
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    first_group = {int.from_bytes(data[:2], "little"), int.from_bytes(data[:2], "big")} if len(data) >= 8 else set()
    if not preamble and not first_group & {0x0002, 0x0008}:
        raise ImageReadError(name, "not a DICOM file (no DICM marker and no DICOM header at the start)")
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as exc:
        raise ImageReadError(name, f"corrupt or truncated DICOM file ({type(exc).__name__})") from None
    if not any(map(dictionary_has_tag, ds.keys())):
        # random bytes after a DICM marker parse as a few unknown elements
        raise ImageReadError(name, "not a DICOM file or corrupt (no standard DICOM attribute found)")
    return ds


def _refuse_non_image(ds: Dataset, name: str) -> None:
    sop_class = str(ds.get("SOPClassUID", "") or "")
    meta_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    if _DICOMDIR_SOP_CLASS in (sop_class, meta_class):
        raise ImageReadError(name, "is a DICOMDIR (an index of a DICOM media set), not an image")
    if "PixelData" not in ds:
        kind = UID(sop_class).name if sop_class else "unknown SOP class"
        if "Image Storage" in kind:  # an image class without pixels: the file was cut short
            raise ImageReadError(name, f"holds no image: no pixel data in a {kind} file (truncated?)")
        raise ImageReadError(name, f"holds no image: no pixel data ({kind})")


def _geometry(ds: Dataset, name: str, options: ReadOptions) -> tuple[int, int, int]:
    """(rows, columns, frames) from the header, refused if over the limits."""
    required = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
    missing = [keyword for keyword in required if ds.get(keyword) in (None, "")]
    if missing:
        raise ImageReadError(name, "incomplete image header: missing " + ", ".join(missing))
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise ImageReadError(name, "invalid Rows, Columns or Number of Frames in the header") from None
    check_size(name, rows, columns, options)
    if frames < 1 or rows * columns * frames > options.max_volume_voxels:
        raise ImageReadError(
            name, f"{frames} frames of {columns}x{rows} pixels exceed the limit of {options.max_volume_voxels} voxels"
        )
    return rows, columns, frames


def _transfer_syntax(ds: Dataset, name: str) -> UID:
    """The file's transfer syntax; for files without one, the encoding pydicom read them in."""
    meta = ds.file_meta
    tsyntax = meta.get("TransferSyntaxUID")
    if tsyntax:
        return UID(str(tsyntax))
    implicit, little = ds.original_encoding
    if implicit is None:
        raise ImageReadError(name, "no transfer syntax and no readable encoding")
    tsyntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    meta.TransferSyntaxUID = tsyntax  # the decoder reads it from here
    return tsyntax


def _label(tsyntax: UID) -> str:
    return f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else str(tsyntax)


def _decoder(tsyntax: UID, name: str) -> Decoder:
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ImageReadError(name, f"unsupported transfer syntax {_label(tsyntax)}") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise ImageReadError(name, f"no decoder installed for transfer syntax {_label(tsyntax)} ({needs})")
    return decoder


def _check_encoded(ds: Dataset, tsyntax: UID, frames: int, name: str, options: ReadOptions) -> None:
    """Refuse truncated native pixel data and compressed frames claiming oversized images."""
    if not tsyntax.is_encapsulated:
        expected, actual = get_expected_length(ds, "bytes"), len(ds.PixelData)
        if actual < expected:
            raise ImageReadError(name, f"pixel data truncated ({actual} of {expected} bytes)")
        return
    try:
        for frame in generate_frames(ds.PixelData, number_of_frames=frames):
            size = _codestream_size(frame)
            if size is not None:  # a codestream decodes to its own size, whatever the header says
                check_size(name, size[0], size[1], options)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(name, f"corrupt encapsulated pixel data ({type(exc).__name__})") from None


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(height, width) declared by a JPEG, JPEG-LS or JPEG 2000 codestream, if found."""
    if frame[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(frame) and frame[i] == 0xFF:
            marker = frame[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
            elif marker in _SOF_MARKERS:
                height = int.from_bytes(frame[i + 5 : i + 7], "big")  # 0 means "set by DNL"
                return (height, int.from_bytes(frame[i + 7 : i + 9], "big")) if height else None
            else:
                i += 2 + int.from_bytes(frame[i + 2 : i + 4], "big")
        return None
    siz = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ (ISO 15444-1 A.5.1)
    if siz < 0 or len(frame) < siz + 24:
        return None
    x, y, x0, y0 = (int.from_bytes(frame[siz + o : siz + o + 4], "big") for o in (8, 12, 16, 20))
    return y - y0, x - x0


def _decode_frames(ds: Dataset, decoder: Decoder) -> Iterator[tuple[np.ndarray, str]]:
    """Yield (frame array, photometric interpretation after decoding) one frame at a time."""
    for array, properties in decoder.iter_array(ds):
        yield array, str(properties.get("photometric_interpretation") or ds.PhotometricInterpretation)


def _preprocess(
    ds: Dataset, frame: np.ndarray, photometric: str, index: int, options: ReadOptions, name: str
) -> tuple[np.ndarray, str, dict]:
    """One decoded frame to ((H, W, 3) uint8, modality, preprocessing record)."""
    original = str(ds.PhotometricInterpretation).strip()
    if photometric == "PALETTE COLOR":
        pixels, record = preprocess.rgb_passthrough(apply_color_lut(frame, ds))
        return pixels, "RGB", {**record, "photometric": original, "palette_applied": True}
    if frame.ndim == 3:
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            frame = convert_color_space(frame, photometric, "RGB")
        elif photometric not in ("RGB", "YBR_ICT", "YBR_RCT"):  # ICT/RCT: the codec returns RGB
            raise ImageReadError(name, f"unsupported colour photometric interpretation {photometric}")
        pixels, record = preprocess.rgb_passthrough(frame)
        return pixels, "RGB", {**record, "photometric": original}
    if original not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(name, f"unsupported photometric interpretation {original}")
    values, lut = _modality_values(ds, frame, index)
    dicom_modality = str(ds.get("Modality", "") or "").upper()
    if dicom_modality == "CT":
        grey, record = preprocess.ct_window(values, options.ct_window)
        modality = "CT"
    else:
        grey, record = _normalise(values)
        modality = "MR" if dicom_modality == "MR" else "OT"
    record = {**lut, **record, "photometric": original}
    if original == "MONOCHROME1":  # minimum is white: invert so that high = bright, as in MONOCHROME2
        grey = 255 - grey
        record["inverted"] = True
    return preprocess.grey_to_rgb(grey), modality, record


def _modality_values(ds: Dataset, frame: np.ndarray, index: int) -> tuple[np.ndarray, dict]:
    """Stored values to modality units (HU for CT) as float32, and the record of how."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(frame, ds).astype(np.float32), {"modality_lut": "sequence"}
    slope, intercept = _rescale(ds, index)
    return preprocess.to_hu(frame, slope, intercept), {"rescale_slope": slope, "rescale_intercept": intercept}


def _rescale(ds: Dataset, index: int) -> tuple[float, float]:
    """Rescale slope and intercept of frame ``index``: per-frame, shared, then top level."""
    for group in _functional_groups(ds, index):
        for item in group.get("PixelValueTransformationSequence") or []:
            if "RescaleSlope" in item:
                return float(item.RescaleSlope), float(item.get("RescaleIntercept", 0) or 0)
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return float(slope if slope not in (None, "") else 1.0), float(intercept if intercept not in (None, "") else 0.0)


def _functional_groups(ds: Dataset, index: int) -> list[Dataset]:
    """Enhanced multi-frame functional group items that apply to frame ``index``."""
    groups: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    if shared:
        groups.append(shared[0])
    return groups


def _normalise(values: np.ndarray) -> tuple[np.ndarray, dict]:
    grey, record = preprocess.percentile_normalise(values)
    if record["high"] <= record["low"] and values.size and float(np.nanmax(values)) > float(np.nanmin(values)):
        # sparse images (masks, dose grids) have equal percentiles but are not blank
        grey, record = preprocess.percentile_normalise(values, 0.0, 100.0)
    return grey, record


def _metadata(ds: Dataset, tsyntax: UID, rows: int, columns: int, frames: int) -> dict:
    """JSON-serialisable, de-identified header plus a few normalised keys (lengths in mm)."""
    return {
        "dicom": _header_json(ds),
        "rows": rows,
        "columns": columns,
        "number_of_frames": frames,
        "pixel_spacing_mm": _spacing(ds),
        "slice_thickness_mm": _thickness(ds),
        "transfer_syntax": str(tsyntax),
        "transfer_syntax_name": tsyntax.name,
        "modality": str(ds.get("Modality", "") or "") or None,
        "photometric": str(ds.PhotometricInterpretation).strip(),
        "bits_stored": _int(ds.get("BitsStored")),
        "sop_class_uid": str(ds.get("SOPClassUID", "") or "") or None,
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or "") or None,
        "study_uid": str(ds.get("StudyInstanceUID", "") or "") or None,
        "series_uid": str(ds.get("SeriesInstanceUID", "") or "") or None,
    }


def _spacing(ds: Dataset) -> list[float] | None:
    """(row spacing, column spacing) in mm: Pixel Spacing, else the functional groups'."""
    candidates = [ds] + [m for g in _functional_groups(ds, 0) for m in g.get("PixelMeasuresSequence") or []]
    for item in candidates:
        value = item.get("PixelSpacing")
        if value is not None and len(value) == 2:
            pair = [_float(v) for v in value]
            if all(p is not None and p > 0 for p in pair):
                return pair  # type: ignore[return-value]
    return None


def _thickness(ds: Dataset) -> float | None:
    candidates = [ds] + [m for g in _functional_groups(ds, 0) for m in g.get("PixelMeasuresSequence") or []]
    for item in candidates:
        value = _float(item.get("SliceThickness"))
        if value is not None and value > 0:
            return value
    return None


def _float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _header_json(ds: Dataset) -> dict:
    """DICOM JSON model (PS3.18 F) of ``ds`` without pixel data or binary values over 1 KiB.

    Attributes whose value cannot be encoded are skipped; non-finite floats become null.
    """
    out: dict = {}
    for elem in ds:
        if elem.tag in _PIXEL_TAGS:
            continue
        if elem.VR == "SQ":
            items = [_header_json(item) for item in elem.value]
            out[f"{elem.tag:08X}"] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if elem.VR in _BINARY_VRS and elem.value is not None and len(elem.value) > _JSON_BINARY_LIMIT:
            continue
        try:
            out[f"{elem.tag:08X}"] = _finite(elem.to_json_dict(None, _JSON_BINARY_LIMIT))
        except Exception:
            continue
    return out


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
