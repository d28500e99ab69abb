"""DICOM reading and allowlist de-identification, over pydicom's own test files.

Pure tests: no database, no Django. Test files are read from pydicom's installed
``data/test_files`` folder only (nothing is downloaded).
"""

from __future__ import annotations

import base64
import json
import math
import os
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from annotations.io import ImageReadError, ReadOptions, read_images
from annotations.io import dicom as dicom_reader
from annotations.io.deid import ALLOWLIST, METHOD, Keep, deidentify, remap_uid
from annotations.io.dicom import read_dicom
from annotations.io.preprocess import CT_WINDOWS

# pydicom warns about the malformed values some of its test files hold on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

KEY = b"test-dataset-secret"
OTHER_KEY = b"another-dataset-secret"
TEST_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
OPTIONS = ReadOptions()


def _load(name: str) -> bytes:
    return (TEST_DIR / name).read_bytes()


def _parse(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(BytesIO(data), force=True)


def _pixel_files() -> list[str]:
    """Every .dcm test file that pydicom reads and that has pixel data (all of them parse)."""
    names = []
    for path in sorted(TEST_DIR.glob("*.dcm")):
        ds = _parse(path.read_bytes())
        if "PixelData" in ds:
            names.append(path.name)
    return names


PIXEL_FILES = _pixel_files()

# Files with pixel data that read_dicom must refuse, and why.
EXPECTED_REFUSALS = {
    "JPEG-lossy.dcm": "could not decode",  # libjpeg rejects its scan header; pydicom's tests need GDCM
    "JPEG2000-embedded-sequence-delimiter.dcm": "exceeds",  # corrupt codestream claims a huge image
    "MR_truncated.dcm": "truncated",
    "badVR.dcm": "Number of Frames",  # Number of Frames is "1A"
    "meta_missing_tsyntax.dcm": "incomplete image header",  # Pixel Data without Rows/Columns
    "nested_priv_SQ.dcm": "incomplete image header",
}


# ----------------------------------------------------------------------- the allowlist


def _levels(allowed: dict[int, Keep]) -> Iterator[tuple[int, Keep]]:
    for tag, keep in allowed.items():
        yield tag, keep
        yield from _levels(keep.items or {})


# What no allowlisted attribute may be: names, dates, times, ages, free text, addresses.
_IDENTIFYING_VRS = {"PN", "DA", "DT", "TM", "AS", "AE", "UR", "LO", "LT", "SH", "ST", "UC", "UT", "UN"}


def test_allowlist_keeps_no_name_date_time_or_free_text() -> None:
    entries = list(_levels(ALLOWLIST))
    assert len(entries) < 80  # an allowlist, not a dictionary
    for tag, keep in entries:
        assert tag == keep.tag == tag_for_keyword(keep.keyword)
        assert len(keep.why) > 10, keep.keyword  # every entry says why it is kept
        vrs = set(dictionary_VR(tag).split(" or "))
        if vrs & {"CS", "LO"}:  # coded strings: only their defined terms
            assert keep.terms, keep.keyword
        else:
            assert not vrs & _IDENTIFYING_VRS, keep.keyword
        assert (keep.items is not None) == (vrs == {"SQ"}), keep.keyword
    keywords = {keep.keyword for _, keep in entries}
    assert not keywords & {"PatientName", "PatientID", "StudyDate", "AccessionNumber", "SpecificCharacterSet"}
    # what the reader needs
    assert {"Rows", "Columns", "PixelData", "PhotometricInterpretation", "PixelSpacing", "Modality"} <= keywords


# ----------------------------------------------------------- de-identification, every file


def _text_values(elem: pydicom.DataElement) -> list[str]:
    """String forms of a text-like element's values (numbers stored as binary are skipped)."""
    if elem.VR in ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "SQ") or elem.value is None:
        return []
    if isinstance(elem.value, (bytes, bytearray)):
        return []
    values = elem.value if elem.VM > 1 else [elem.value]
    out: list[str] = []
    for value in values:
        text = str(value)
        out.append(text)
        if elem.VR == "PN":
            out.extend(part for part in text.replace("=", "^").split("^") if part)
    return out


# Attributes de-identification writes itself (after removing what the file held in them).
_WRITTEN_TAGS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}


def _walk(ds: Dataset, allowed: dict[int, Keep] | None = ALLOWLIST) -> Iterator[tuple[pydicom.DataElement, bool]]:
    """Every element at any depth, with whether the allowlist keeps it where it is.

    Everything inside a sequence that is not kept is dropped with it. Attributes that
    de-identification writes count as kept (``_WRITTEN_TAGS``; original values are replaced).
    """
    for elem in ds:
        if allowed is ALLOWLIST and int(elem.tag) in _WRITTEN_TAGS:
            yield elem, True
            continue
        keep = allowed.get(int(elem.tag)) if allowed is not None else None
        yield elem, keep is not None
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item, keep.items if keep is not None else None)


def _meaningful(text: str) -> bool:
    """Worth searching for: long enough not to occur by chance, and not a generic filler.

    Under 4 characters ("M", "1", "CT") or fewer than 3 distinct characters ("0000", "    ")
    such strings occur naturally in any header or pixel stream and identify nobody.
    """
    text = text.strip("\x00 ")
    return len(text) >= 4 and len(set(text)) >= 3


# What de-identification writes; finding it is not a leak.
_WRITTEN = {*METHOD, "Basic Application Confidentiality Profile", "REMOVED"}


def _sensitive_values(original: Dataset, kept: Dataset) -> tuple[set[str], set[bytes]]:
    """Values of attributes the allowlist drops (any depth) that must not survive.

    Exclusions, each because finding the value would not show a leak:
    * not ``_meaningful`` (see there) or written by the de-identification;
    * standard UIDs (1.2.840.10008.*): public constants, e.g. a SOP class UID inside a dropped
      Referenced Image Sequence that is also this file's SOP Class UID;
    * values that an allowlisted attribute also holds (looked up in the de-identified dataset
      ``kept``), e.g. a dropped Imager Pixel Spacing equal to the kept Pixel Spacing.
    """
    kept_text = [t for elem, allowed in _walk(kept) if allowed for t in _text_values(elem)]
    kept_bytes = [
        bytes(elem.value) for elem, allowed in _walk(kept) if allowed and isinstance(elem.value, (bytes, bytearray))
    ]
    texts: set[str] = set()
    blobs: set[bytes] = set()
    for elem, allowed in _walk(original):
        if allowed:
            continue
        if isinstance(elem.value, (bytes, bytearray)):
            blob = bytes(elem.value)
            # binary: long and varied enough not to be padding, and not inside retained binary
            if len(blob) >= 16 and len(set(blob)) >= 3 and not any(blob in k for k in kept_bytes):
                blobs.add(blob)
            continue
        for text in _text_values(elem):
            text = text.strip("\x00 ")
            if (
                _meaningful(text)
                and text not in _WRITTEN
                and not text.startswith("1.2.840.10008.")
                and not any(text in k for k in kept_text)
            ):
                texts.add(text)
    return texts, blobs


def _deidentified(data: bytes) -> Dataset:
    ds = _parse(data)
    deidentify(ds, uid_key=KEY)
    return ds


def _written(ds: Dataset) -> bytes:
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


@pytest.mark.parametrize("filename", PIXEL_FILES)
def test_no_dropped_value_survives_in_stored_bytes(filename: str) -> None:
    data = _load(filename)
    original = _parse(data)
    deidentified = _deidentified(data)
    written = _written(deidentified)
    try:
        images = read_dicom(data, filename, OPTIONS, uid_key=KEY)
    except ImageReadError as exc:
        assert filename in EXPECTED_REFUSALS, f"unexpected refusal: {exc}"
        assert EXPECTED_REFUSALS[filename] in exc.reason
        images = []
    else:
        assert filename not in EXPECTED_REFUSALS
    stored_json = json.dumps([[im.metadata, im.preprocessing] for im in images], ensure_ascii=False)
    texts, blobs = _sensitive_values(original, deidentified)
    charset = original.get("SpecificCharacterSet") or "ISO_IR 6"
    encodings = convert_encodings([charset] if isinstance(charset, str) else list(charset))
    for text in texts:
        assert text not in stored_json, f"{text!r} survives in the metadata"
        assert encode_string(text, encodings) not in written, f"{text!r} survives in the de-identified file"
    for blob in blobs:
        assert blob not in written
        assert base64.b64encode(blob).decode() not in stored_json
    # only allowlisted attributes, and the markers of a de-identified instance
    reread = _parse(written)
    assert not [elem for elem, allowed in _walk(reread) if not allowed]
    assert reread.PatientIdentityRemoved == "YES"
    assert reread.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert reread.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
    for image in images:
        header = image.metadata["dicom"]
        assert header["00120062"]["Value"] == ["YES"]
        assert not set(header) - {f"{tag:08X}" for tag in {*ALLOWLIST, *_WRITTEN_TAGS}}
        assert "7FE00010" not in header
        json.dumps(image.metadata, allow_nan=False)  # strict JSON, storable as jsonb


def test_every_pixel_file_is_read_or_refused_for_a_stated_reason() -> None:
    assert len(PIXEL_FILES) > 50
    assert set(EXPECTED_REFUSALS) <= set(PIXEL_FILES)


def _raw(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    """Put a value pydicom would refuse or convert (text in a number, an explicit UN) as the file has it."""
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def test_only_allowlisted_attributes_survive_at_any_depth() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Doe^Jane"
    ds.ContentSequence = Sequence([Dataset()])
    ds.ContentSequence[0].TextValue = "Jane Doe has a lump"
    ds.Rows, ds.Columns = 4, 5
    ds.add_new(0x60024000, "LT", "overlay drawn by Dr Who")
    ds.add_new(0x50000010, "US", 3)  # curve data group
    ds.add_new(0x00090010, "LO", "VENDOR")
    ds.add_new(0x00091001, "LO", "private secret")
    ds.PatientIdentityRemoved = "NO"  # whatever the file says, de-identification writes its own
    frame = Dataset()
    frame.FrameContentSequence = Sequence([Dataset()])
    frame.FrameContentSequence[0].FrameAcquisitionDateTime = "20200101120000"
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.25]
    measures.SliceThickness = "2"
    measures.PatientName = "Deep^Name"
    measures.Rows = 7  # allowlisted at the top level, not inside Pixel Measures
    measures.add_new(0x00111001, "LO", "private deep")
    frame.PixelMeasuresSequence = Sequence([measures])
    ds.PerFrameFunctionalGroupsSequence = Sequence([frame, Dataset()])
    deidentify(ds, uid_key=KEY)

    assert set(ds.keys()) == {
        tag_for_keyword(k)
        for k in (
            "SOPClassUID",
            "SOPInstanceUID",
            "Rows",
            "Columns",
            "PerFrameFunctionalGroupsSequence",
            "PatientIdentityRemoved",
            "DeidentificationMethod",
            "DeidentificationMethodCodeSequence",
            "LongitudinalTemporalInformationModified",
        )
    }
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # a standard UID stays
    assert ds.SOPInstanceUID == remap_uid("1.2.3.4.5.6.7", KEY)
    frames = ds.PerFrameFunctionalGroupsSequence
    assert len(frames) == 2  # items stay, emptied: frame i is still item i
    assert list(frames[0].keys()) == [tag_for_keyword("PixelMeasuresSequence")]
    kept = frames[0].PixelMeasuresSequence[0]
    assert set(kept.keys()) == {tag_for_keyword("PixelSpacing"), tag_for_keyword("SliceThickness")}
    assert list(kept.PixelSpacing) == [0.5, 0.25]
    assert not list(frames[1].keys())


def test_kept_attributes_must_hold_what_their_dictionary_says() -> None:
    ds = Dataset()
    ds.Rows = 4
    ds.Modality = "PATIENT DOE"  # not a defined term
    ds.PhotometricInterpretation = "MONOCHROME2 "  # padded, still a defined term
    ds.VOILUTFunction = "SIGMOID"
    ds.RescaleType = "Dr Who's units"
    _raw(ds, "Columns", "LT", b"Jane Doe")  # a US attribute declared as text
    _raw(ds, "SliceThickness", "DS", b"Jane Doe")  # a DS that is no number
    _raw(ds, "SliceLocation", "UN", b"Jane Doe")  # UN: pydicom decodes it as the DS it is, and fails
    _raw(ds, "WindowCenter", "DS", b"40\\NaN ")  # not finite
    _raw(ds, "WindowWidth", "DS", b"400 ")
    deidentify(ds, uid_key=KEY)
    kept = {elem.keyword for elem in ds} - {"PatientIdentityRemoved", "DeidentificationMethod"}
    kept -= {"DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified"}
    assert kept == {"Rows", "PhotometricInterpretation", "VOILUTFunction", "WindowWidth"}
    assert ds.WindowWidth == 400


def test_uids_are_remapped_unless_the_standard_defines_them() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.3.4.99"  # a private class
    ds.StudyInstanceUID = "not a uid at all"
    ds.FrameOfReferenceUID = "1.2.840.10008.1.4.1.1"  # Talairach Brain Atlas Frame of Reference
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.ImplementationVersionName = "DR DOE'S PACS"
    ds.file_meta.SourceApplicationEntityTitle = "WARD7"
    deidentify(ds, uid_key=KEY)
    assert ds.SOPClassUID == remap_uid("1.2.3.4.99", KEY)
    assert ds.StudyInstanceUID == remap_uid("not a uid at all", KEY)
    assert ds.FrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert set(ds.file_meta.keys()) == {0x00020002, 0x00020010}
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_file_meta_instance_uid_is_remapped_like_the_sop_instance_uid() -> None:
    original = _parse(_load("CT_small.dcm"))
    ds = _deidentified(_load("CT_small.dcm"))
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID == remap_uid(original.SOPInstanceUID, KEY)
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.file_meta.MediaStorageSOPClassUID == original.file_meta.MediaStorageSOPClassUID


def test_uids_are_consistent_per_key_and_unlinkable_across_keys() -> None:
    data = _load("CT_small.dcm")
    original = _parse(data)
    first = read_dicom(data, "a.dcm", OPTIONS, uid_key=KEY)[0].metadata
    again = read_dicom(data, "b.dcm", OPTIONS, uid_key=KEY)[0].metadata
    other = read_dicom(data, "a.dcm", OPTIONS, uid_key=OTHER_KEY)[0].metadata
    assert first["study_uid"] == again["study_uid"] == first["dicom"]["0020000D"]["Value"][0]
    assert first["series_uid"] == again["series_uid"]
    assert first["study_uid"] == remap_uid(original.StudyInstanceUID, KEY)
    assert first["study_uid"].startswith("2.25.") and len(first["study_uid"]) <= 64
    assert first["study_uid"] != original.StudyInstanceUID
    assert other["study_uid"] != first["study_uid"]
    assert other["series_uid"] != first["series_uid"]


def test_frames_of_one_file_share_study_and_series() -> None:
    images = read_dicom(_load("examples_ybr_color.dcm"), "cine.dcm", OPTIONS, uid_key=KEY)
    assert len(images) == 30
    assert len({im.metadata["study_uid"] for im in images}) == 1
    assert len({im.metadata["series_uid"] for im in images}) == 1
    assert [im.frame_key for im in images] == [f"frame-{i}" for i in range(30)]
    assert images[7].slice is not None and (images[7].slice.axis, images[7].slice.index) == ("frame", 7)
    assert images[7].slice.count == 30


# ----------------------------------------------------------------------------- decoding


DECODE_CASES = [
    # (file, transfer syntax UID, expected pixels shape, modality)
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", (100, 100, 3), "RGB"),  # JPEG baseline
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", (1024, 256, 3), "OT"),  # JPEG extended 12-bit
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", (100, 100, 3), "RGB"),  # JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", (64, 64, 3), "MR"),  # JPEG-LS
    ("JPEGLSNearLossless_08.dcm", "1.2.840.10008.1.2.4.81", (45, 10, 3), "OT"),  # JPEG-LS near
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", (50, 10, 3), "OT"),
    ("SC_rgb_jls_lossy_line.dcm", "1.2.840.10008.1.2.4.81", (100, 100, 3), "RGB"),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", (64, 64, 3), "MR"),  # J2K lossless
    ("GDCMJ2K_TextGBR.dcm", "1.2.840.10008.1.2.4.90", (400, 400, 3), "RGB"),  # YBR_RCT
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", (1024, 256, 3), "OT"),  # J2K
    ("693_J2KI.dcm", "1.2.840.10008.1.2.4.91", (512, 512, 3), "CT"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", (64, 64, 3), "MR"),  # RLE
    ("SC_rgb_rle_16bit.dcm", "1.2.840.10008.1.2.5", (100, 100, 3), "RGB"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", (512, 512, 3), "OT"),  # deflated
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2", (64, 64, 3), "MR"),  # big endian
    ("SC_ybr_full_422_uncompressed.dcm", "1.2.840.10008.1.2.1", (100, 100, 3), "RGB"),
    ("examples_palette.dcm", "1.2.840.10008.1.2.1", (350, 800, 3), "RGB"),  # PALETTE COLOR
]


@pytest.mark.parametrize(("filename", "tsyntax", "shape", "modality"), DECODE_CASES)
def test_transfer_syntaxes_decode_to_the_right_shape(filename: str, tsyntax: str, shape: tuple, modality: str) -> None:
    assert _parse(_load(filename)).file_meta.TransferSyntaxUID == tsyntax  # the case covers it
    (image,) = read_dicom(_load(filename), filename, OPTIONS, uid_key=KEY)
    assert image.pixels.shape == shape and image.pixels.dtype == np.uint8
    assert image.modality == modality
    assert image.source_format == "dicom" and image.frame_key == "0" and image.slice is None
    assert image.metadata["transfer_syntax"] == tsyntax
    assert image.metadata["rows"] == shape[0] and image.metadata["columns"] == shape[1]
    assert image.pixels.std() > 0  # not blank


def _pixels(filename: str, index: int = 0) -> np.ndarray:
    return read_dicom(_load(filename), filename, OPTIONS, uid_key=KEY)[index].pixels


@pytest.mark.parametrize(
    "filename",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_encodings_equal_the_uncompressed_reference(filename: str) -> None:
    np.testing.assert_array_equal(_pixels(filename), _pixels("MR_small.dcm"))


def test_lossless_colour_encodings_agree_and_pass_rgb_through() -> None:
    reference = _pixels("SC_rgb_rle.dcm")
    raw = _parse(_load("SC_rgb_rle.dcm")).pixel_array
    np.testing.assert_array_equal(reference, raw)  # 8-bit RGB is the model input as it is
    for other in ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm", "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"):
        np.testing.assert_array_equal(_pixels(other), reference)
    np.testing.assert_array_equal(_pixels("SC_rgb_rle_2frame.dcm", 0), reference)


@pytest.mark.parametrize(
    "filename",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL in JPEG
        "SC_rgb_dcmtk_+eb+cr.dcm",  # RGB in JPEG
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422 in JPEG
        "SC_rgb_dcmtk_+eb+cy+n1.dcm",
        "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422 native
        "SC_rgb_jls_lossy_sample.dcm",
    ],
)
def test_lossy_and_ybr_colour_files_convert_to_the_same_rgb(filename: str) -> None:
    difference = np.abs(_pixels(filename).astype(int) - _pixels("SC_rgb_rle.dcm").astype(int))
    assert difference.mean() < 4  # lossy, but colours right: a wrong YBR->RGB is off by ~100


def test_ct_is_windowed_from_hand_computed_hounsfield_units() -> None:
    data = _load("CT_small.dcm")
    raw_ds = _parse(data)
    raw = raw_ds.pixel_array
    slope, intercept = float(raw_ds.RescaleSlope), float(raw_ds.RescaleIntercept)
    assert (slope, intercept) == (1.0, -1024.0)
    (image,) = read_dicom(data, "CT_small.dcm", OPTIONS, uid_key=KEY)
    assert image.modality == "CT"
    assert image.preprocessing["preset"] == "soft_tissue"
    assert (image.preprocessing["rescale_slope"], image.preprocessing["rescale_intercept"]) == (slope, intercept)
    centre, width = CT_WINDOWS["soft_tissue"]
    assert (centre, width) == (40.0, 400.0)
    low = centre - width / 2  # -160 HU maps to 0, +240 HU to 255
    hu = raw.astype(float) * slope + intercept
    inside = np.argwhere((hu > low) & (hu < centre + width / 2))
    positions = [tuple(p) for p in inside[:: max(1, len(inside) // 6)][:6]]
    positions += [tuple(np.argwhere(hu <= low)[0]), tuple(np.argwhere(hu >= centre + width / 2)[0])]
    for r, c in positions:
        value = int(raw[r, c]) * slope + intercept  # by hand from the header values
        exact = (value - low) * 255.0 / width
        expected = min(255, max(0, math.floor(exact + 0.5)))
        got = image.pixels[r, c]
        assert got[0] == got[1] == got[2]
        tolerance = 1 if exact % 1 == 0.5 else 0  # round-half-even versus half-up
        assert abs(int(got[0]) - expected) <= tolerance, (r, c, value, expected, got)


def test_ct_window_option_is_applied() -> None:
    data = _load("CT_small.dcm")
    soft = read_dicom(data, "CT_small.dcm", OPTIONS, uid_key=KEY)[0]
    lung = read_dicom(data, "CT_small.dcm", ReadOptions(ct_window="lung"), uid_key=KEY)[0]
    assert lung.preprocessing["preset"] == "lung"
    assert not np.array_equal(soft.pixels, lung.pixels)


def test_monochrome1_is_inverted() -> None:
    ds = _parse(_load("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    (image,) = read_dicom(_written(ds), "mono1.dcm", OPTIONS, uid_key=KEY)
    np.testing.assert_array_equal(image.pixels, 255 - _pixels("MR_small.dcm"))
    assert image.preprocessing["inverted"] is True


def test_metadata_normalised_keys() -> None:
    (image,) = read_dicom(_load("CT_small.dcm"), "CT_small.dcm", OPTIONS, uid_key=KEY)
    meta = image.metadata
    assert meta["pixel_spacing_mm"] == pytest.approx([0.661468, 0.661468])
    assert meta["slice_thickness_mm"] == pytest.approx(5.0)
    assert (meta["rows"], meta["columns"], meta["number_of_frames"]) == (128, 128, 1)
    assert meta["modality"] == "CT" and meta["photometric"] == "MONOCHROME2"
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert "00100010" not in meta["dicom"]  # Patient's Name: not allowlisted, gone
    assert meta["dicom"]["00280030"]["Value"] == pytest.approx([0.661468, 0.661468])


def test_multiframe_rtdose_gives_one_image_per_frame() -> None:
    images = read_dicom(_load("rtdose.dcm"), "rtdose.dcm", OPTIONS, uid_key=KEY)
    assert len(images) == 15
    assert {im.pixels.shape for im in images} == {(10, 10, 3)}
    assert images[-1].frame_key == "frame-14" and images[-1].slice.count == 15


def test_through_the_dispatcher() -> None:
    images = read_images(_load("CT_small.dcm"), "CT_small.dcm", uid_key=KEY)
    assert len(images) == 1 and images[0].modality == "CT"
    assert images[0].metadata["study_uid"] == remap_uid(_parse(_load("CT_small.dcm")).StudyInstanceUID, KEY)
    with pytest.raises(ImageReadError, match="rtplan.dcm: holds no image"):
        read_images(_load("rtplan.dcm"), "rtplan.dcm", uid_key=KEY)


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel is decoded: refusals must come from the header alone."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(dicom_reader, "_decode_frames", refuse)


def _refusal(data: bytes, name: str, options: ReadOptions = OPTIONS) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_dicom(data, name, options, uid_key=KEY)
    assert info.value.name == name and str(info.value).startswith(f"{name}: ")
    return info.value


@pytest.mark.usefixtures("no_decoding")
def test_corrupt_bytes_are_refused() -> None:
    assert "not a DICOM file" in _refusal(os.urandom(4096), "noise.dcm").reason
    assert "not a DICOM file" in _refusal(b"\x00" * 128 + b"DICM" + os.urandom(4096), "noise2.dcm").reason
    assert "not a DICOM file" in _refusal(b"", "empty.dcm").reason


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("MR_truncated.dcm", "pixel data truncated"),
        ("rtplan_truncated.dcm", "holds no image"),
        ("rtplan.dcm", "holds no image"),
        ("test-SR.dcm", "holds no image"),
    ],
)
def test_truncated_and_imageless_files_are_refused(filename: str, reason: str) -> None:
    assert reason in _refusal(_load(filename), filename).reason


@pytest.mark.usefixtures("no_decoding")
def test_files_cut_short_are_refused() -> None:
    data = _load("CT_small.dcm")
    assert "truncated" in _refusal(data[:20000], "half.dcm").reason  # inside the pixel data
    assert "truncated" in _refusal(data[:600], "head.dcm").reason  # inside the header


@pytest.mark.usefixtures("no_decoding")
def test_dicomdir_is_refused() -> None:
    data = (TEST_DIR / "dicomdirtests" / "DICOMDIR").read_bytes()
    assert "DICOMDIR" in _refusal(data, "DICOMDIR").reason


@pytest.mark.usefixtures("no_decoding")
def test_huge_header_is_refused_before_decoding() -> None:
    ds = _parse(_load("MR_small.dcm"))
    ds.Rows = ds.Columns = 60000
    reason = _refusal(_written(ds), "huge.dcm").reason
    assert "60000x60000" in reason and "exceeds" in reason


@pytest.mark.usefixtures("no_decoding")
def test_too_many_frames_are_refused_before_decoding() -> None:
    ds = _parse(_load("MR_small.dcm"))
    ds.NumberOfFrames = 100000
    assert "exceed" in _refusal(_written(ds), "frames.dcm", ReadOptions(max_volume_voxels=10_000_000)).reason


@pytest.mark.usefixtures("no_decoding")
def test_codestream_claiming_a_huge_image_is_refused_before_decoding() -> None:
    ds = _parse(_load("MR_small_jpeg_ls_lossless.dcm"))
    (frame,) = list(generate_frames(ds.PixelData, number_of_frames=1))
    sof = frame.index(b"\xff\xf7")  # JPEG-LS start of frame: height and width follow the precision
    bomb = frame[: sof + 5] + (60000).to_bytes(2, "big") * 2 + frame[sof + 9 :]
    ds.PixelData = encapsulate([bomb])
    reason = _refusal(_written(ds), "bomb.dcm").reason
    assert "60000x60000" in reason


@pytest.mark.usefixtures("no_decoding")
def test_unsupported_transfer_syntax_is_named() -> None:
    ds = _parse(_load("MR_small_jpeg_ls_lossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    assert "MPEG2" in _refusal(_written(ds), "video.dcm").reason


@pytest.mark.usefixtures("no_decoding")
def test_missing_decoder_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg-libjpeg"]

    monkeypatch.setattr(dicom_reader, "get_decoder", lambda uid: Unavailable())
    reason = _refusal(_load("SC_rgb_jpeg_dcmtk.dcm"), "jpeg.dcm").reason
    assert "no decoder installed" in reason and "JPEG Baseline" in reason and "pylibjpeg-libjpeg" in reason
