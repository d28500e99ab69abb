"""De-identification by allowlist: a DICOM header keeps only what the product uses.

``deidentify(ds, uid_key=...)`` rewrites a pydicom dataset (and its ``file_meta``) in place.
``ALLOWLIST`` names every attribute that may stay, each with the reason it is kept; every other
attribute is removed, at any depth: names, dates, times, free text, descriptions, device and
institution attributes, overlays, curves, private tags, attributes unknown to the dictionary,
and the content of every sequence not listed. What stays is held to its dictionary's value
representation (a kept attribute that a file declares as text is removed), numbers must be
numbers, and coded strings must be one of their defined terms. No person name, date, time or
free text is kept.

UIDs that stay are replaced by ``2.25.<HMAC-SHA256(uid_key, uid) truncated to 128 bits>``: the
same original UID maps to the same new UID for every file imported with the same key (a study
stays one study), while different keys give unlinkable UIDs. UIDs that the standard itself
defines (SOP classes, well-known frames of reference) stay as they are, and so does the
Transfer Syntax UID, which selects the decoder (a file in an unknown syntax is refused).

Then the dataset says what was done: Patient Identity Removed (0012,0062) = "YES",
De-identification Method (0012,0063) and its Code Sequence (0012,0064) = (113100, DCM, "Basic
Application Confidentiality Profile"): everything PS3.15 Table E.1-1 removes or replaces is
removed or remapped here, and much more. Longitudinal Temporal Information Modified = REMOVED.

Pixel data are left untouched: burned-in text is outside what this module can see.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

__all__ = ["ALLOWLIST", "METHOD", "Keep", "deidentify", "remap_uid"]


@dataclass(frozen=True)
class Keep:
    """One attribute that survives de-identification.

    keyword: pydicom's keyword of the attribute. why: what reads it, or why a researcher needs it.
    terms: for coded strings (CS, and an LO with defined terms), the values it may hold; any
        other value removes the attribute. items: for sequences, what their items keep (the
        allowlist of the next level down).
    verbatim_uid: a UI attribute kept as it is, not remapped.
    tag and vrs are looked up in pydicom's dictionary: the value representations an element of
    this attribute may have ("US or SS" too, until pydicom resolves it from the pixel module).
    """

    keyword: str
    why: str
    terms: frozenset[str] | None = None
    items: dict[int, Keep] | None = None
    verbatim_uid: bool = False
    tag: int = field(init=False)
    vrs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        tag = tag_for_keyword(self.keyword)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword {self.keyword!r}")
        vr = dictionary_VR(tag)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "vrs", frozenset([vr, *vr.split(" or ")]))


def _level(*entries: Keep) -> dict[int, Keep]:
    return {entry.tag: entry for entry in entries}


# Defined terms, from PS3.3 (2024): C.7.3.1.1.1 Modality (with retired terms, which old files
# carry), C.7.6.3.1.2 Photometric Interpretation, C.11.1.1.2 Rescale Type, C.11.2.1.3 VOI LUT
# Function.
MODALITIES = frozenset({
    "ANN", "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DG", "DMS", "DOC", "DX",
    "ECG", "EEG", "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO",
    "LEN", "LS", "M3D", "MG", "MR", "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT",
    "PA", "PLAN", "POS", "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN",
    "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF", "STAIN", "TEXTUREMAP",
    "TG", "US", "VA", "XA", "XAPROTOCOL", "XC",
    # retired
    "AS", "CD", "CF", "CP", "CS", "DD", "DF", "DM", "DS", "EC", "FA", "FS", "LP", "MA", "MS", "OPR", "ST", "VF",
})  # fmt: skip
PHOTOMETRIC = frozenset({
    "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT",
    "YBR_RCT", "XYB",
    "YBR_PARTIAL_422", "HSV", "ARGB", "CMYK",  # retired
})  # fmt: skip
RESCALE_TYPES = frozenset({"OD", "HU", "US", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT"})
VOI_LUT_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})

_PIXEL_MEASURES = _level(
    Keep("PixelSpacing", "row and column spacing in mm of enhanced multi-frame images: metadata"),
    Keep("SliceThickness", "slice thickness in mm of enhanced multi-frame images: metadata"),
    Keep("SpacingBetweenSlices", "geometry: stacking slices into a volume on export"),
)
_PIXEL_VALUE_TRANSFORMATION = _level(
    Keep("RescaleSlope", "per-frame stored value to modality units (HU for CT): preprocessing"),
    Keep("RescaleIntercept", "per-frame stored value to modality units (HU for CT): preprocessing"),
    Keep("RescaleType", "units of the rescaled values; a defined term or dropped", terms=RESCALE_TYPES),
)
_FUNCTIONAL_GROUP = _level(
    Keep("PixelMeasuresSequence", "pixel spacing of enhanced multi-frame images", items=_PIXEL_MEASURES),
    Keep(
        "PixelValueTransformationSequence",
        "rescale of enhanced multi-frame images: HU for CT windowing",
        items=_PIXEL_VALUE_TRANSFORMATION,
    ),
    Keep(
        "PlanePositionSequence",
        "geometry of each frame",
        items=_level(Keep("ImagePositionPatient", "geometry: frame position in mm")),
    ),
    Keep(
        "PlaneOrientationSequence",
        "geometry of each frame",
        items=_level(Keep("ImageOrientationPatient", "geometry: frame orientation")),
    ),
)
_MODALITY_LUT = _level(
    Keep("LUTDescriptor", "read by pydicom's apply_modality_lut: entries, first value, bits"),
    Keep("LUTData", "read by pydicom's apply_modality_lut: the table"),
)

# Everything that survives, at the top level of a dataset and of its file meta; a sequence's
# items keep what its ``items`` lists.
ALLOWLIST: dict[int, Keep] = _level(
    # File meta
    Keep("TransferSyntaxUID", "selects the pixel decoder; only standard syntaxes decode", verbatim_uid=True),
    Keep("MediaStorageSOPClassUID", "recognises DICOMDIRs, which are refused"),
    Keep("MediaStorageSOPInstanceUID", "remapped like SOP Instance UID, so the header stays consistent"),
    # Identity of the instance, remapped (study, series, instance; frame of reference)
    Keep("SOPClassUID", "what kind of object the file is: refusing non-images, metadata"),
    Keep("SOPInstanceUID", "remapped: tells frames of one instance apart across imports, metadata"),
    Keep("StudyInstanceUID", "remapped: groups images of one study, metadata"),
    Keep("SeriesInstanceUID", "remapped: groups images of one series, metadata"),
    Keep("FrameOfReferenceUID", "remapped: images that share a patient coordinate system"),
    Keep("Modality", "CT is windowed in HU, MR normalised: preprocessing, metadata", terms=MODALITIES),
    # Image Pixel module: what the decoder needs (pydicom's as_pixel_options, our size checks)
    Keep("SamplesPerPixel", "decoding: 1 for grey, 3 for colour"),
    Keep("PhotometricInterpretation", "decoding, colour conversion, MONOCHROME1 inversion", terms=PHOTOMETRIC),
    Keep("PlanarConfiguration", "decoding: colour pixels interleaved or by plane"),
    Keep("NumberOfFrames", "decoding, one image per frame, size limits"),
    Keep("Rows", "decoding, image size limits"),
    Keep("Columns", "decoding, image size limits"),
    Keep("BitsAllocated", "decoding: bits per stored value"),
    Keep("BitsStored", "decoding, metadata: significant bits"),
    Keep("HighBit", "decoding: where the significant bits lie"),
    Keep("PixelRepresentation", "decoding: signed or unsigned values"),
    Keep("PixelData", "the image itself, decoded into the model input"),
    Keep("FloatPixelData", "the image itself, as 32-bit floats"),
    Keep("DoubleFloatPixelData", "the image itself, as 64-bit floats"),
    Keep("ExtendedOffsetTable", "decoding: where each encapsulated frame starts"),
    Keep("ExtendedOffsetTableLengths", "decoding: how long each encapsulated frame is"),
    # Palette Color LUT: PALETTE COLOR images become RGB (pydicom's apply_color_lut)
    Keep("RedPaletteColorLookupTableDescriptor", "PALETTE COLOR to RGB"),
    Keep("GreenPaletteColorLookupTableDescriptor", "PALETTE COLOR to RGB"),
    Keep("BluePaletteColorLookupTableDescriptor", "PALETTE COLOR to RGB"),
    Keep("AlphaPaletteColorLookupTableDescriptor", "PALETTE COLOR to RGB"),
    Keep("RedPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("GreenPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("BluePaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("AlphaPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("SegmentedRedPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("SegmentedGreenPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("SegmentedBluePaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    Keep("SegmentedAlphaPaletteColorLookupTableData", "PALETTE COLOR to RGB"),
    # Stored values to modality units, and the display window the scanner suggested
    Keep("ModalityLUTSequence", "stored values to modality units by a table", items=_MODALITY_LUT),
    Keep("RescaleSlope", "stored value to modality units (HU for CT): preprocessing"),
    Keep("RescaleIntercept", "stored value to modality units (HU for CT): preprocessing"),
    Keep("RescaleType", "units of the rescaled values; a defined term or dropped", terms=RESCALE_TYPES),
    Keep("WindowCenter", "the display window the scanner suggested, for researchers' presets"),
    Keep("WindowWidth", "the display window the scanner suggested, for researchers' presets"),
    Keep("VOILUTFunction", "how that window applies; a defined term or dropped", terms=VOI_LUT_FUNCTIONS),
    # Geometry: spacing in mm and where the slice lies, for measurements and volume exports
    Keep("PixelSpacing", "row and column spacing in mm: metadata"),
    Keep("SliceThickness", "slice thickness in mm: metadata"),
    Keep("SpacingBetweenSlices", "geometry: stacking slices into a volume on export"),
    Keep("ImagePositionPatient", "geometry: slice position in mm"),
    Keep("ImageOrientationPatient", "geometry: slice orientation"),
    Keep("SliceLocation", "geometry: slice order within a series"),
    # Enhanced multi-frame images keep the same, per frame or shared by all frames
    Keep("SharedFunctionalGroupsSequence", "geometry and rescale shared by all frames", items=_FUNCTIONAL_GROUP),
    Keep("PerFrameFunctionalGroupsSequence", "geometry and rescale of each frame", items=_FUNCTIONAL_GROUP),
)

# Written by ``deidentify`` after the allowlist has removed whatever the file held in them.
PATIENT_IDENTITY_REMOVED = "YES"
METHOD = [
    "Allowlist: only pixel, geometry, rescale and windowing attributes kept",
    "UIDs replaced by 2.25 HMAC-SHA256 of original",
]
METHOD_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")  # PS3.16 CID 7050
TEMPORAL_INFORMATION = "REMOVED"  # no date or time is kept

_NUMERIC_TEXT_VRS = frozenset({"DS", "IS"})


def remap_uid(uid: str, uid_key: bytes) -> str:
    """New UID for ``uid``: ``2.25.`` + decimal of the first 16 bytes of HMAC-SHA256(key, uid).

    At most 44 characters, so always a valid UI value (64 characters at most).
    """
    original = str(uid).strip("\x00 ").encode("ascii", "backslashreplace")
    digest = hmac.new(uid_key, original, hashlib.sha256).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


def deidentify(ds: Dataset, *, uid_key: bytes) -> frozenset[str]:
    """Keep only ``ALLOWLIST``'s attributes in ``ds`` and its ``file_meta``, in place.

    uid_key: the dataset's secret (non-empty bytes); it alone decides the new UIDs.
    Afterwards every attribute at any depth is an allowlisted one, in its dictionary VR, with
    vetted values, plus the de-identification attributes written here. The preamble is zeroed.
    Returns the keywords of allowlisted attributes removed because their value was invalid
    (another VR, text in a number, not a defined term, undecodable): a reader that needs one of
    them should refuse the file rather than go on as if it were absent.
    """
    if not uid_key:
        raise ValueError("uid_key must be non-empty bytes")
    rejected: set[str] = set()
    _filter(ds, ALLOWLIST, uid_key, rejected)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _filter(meta, ALLOWLIST, uid_key, rejected)
    if getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128
    ds.PatientIdentityRemoved = PATIENT_IDENTITY_REMOVED
    ds.DeidentificationMethod = list(METHOD)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = METHOD_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = TEMPORAL_INFORMATION
    return frozenset(rejected)


def _filter(ds: Dataset, allowed: dict[int, Keep], key: bytes, rejected: set[str]) -> None:
    """Remove every element of ``ds`` that ``allowed`` does not keep; vet and remap the rest.

    Keywords of allowlisted elements removed for their value are added to ``rejected``.
    """
    for tag in list(ds.keys()):
        keep = allowed.get(int(tag))
        if keep is None:
            del ds[tag]  # not decoded: what is removed is never read
            continue
        try:
            elem = ds[tag]  # decodes a raw element, resolves ambiguous VRs
            kept = _vet(elem, keep, key, rejected)
        except Exception:
            kept = False  # a value pydicom cannot decode cannot be vetted either
        if not kept:
            del ds[tag]
            rejected.add(keep.keyword)


def _vet(elem: DataElement, keep: Keep, key: bytes, rejected: set[str]) -> bool:
    """Whether ``elem`` may stay as ``keep`` says; remaps UIDs and filters sequence items."""
    vr = str(elem.VR)
    if vr not in keep.vrs:
        return False  # e.g. Rows declared as text: explicit VR lets a file say anything
    if vr == "SQ":
        for item in elem.value:
            _filter(item, keep.items or {}, key, rejected)
        return True
    values = _values(elem.value)
    if keep.terms is not None:
        return all(str(v).strip() in keep.terms for v in values)
    if vr in _NUMERIC_TEXT_VRS:
        return all(isinstance(v, int | float) and math.isfinite(float(v)) for v in values)
    if vr == "UI" and not keep.verbatim_uid:
        elem.value = _remap_values(elem.value, key)
    return True


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _remap_values(value: object, key: bytes) -> object:
    """Remap one UID or a multi-valued list of UIDs; empty and standard UIDs stay as they are.

    Standard UIDs (pydicom knows their names: a SOP class, a well-known frame of reference) are
    constants of the standard and say nothing about the patient, while remapping them would
    destroy their meaning. Anything else, valid UID or not, is remapped.
    """
    values = _values(value)
    out = [v if (not v or UID(str(v)).name != str(v)) else remap_uid(str(v), key) for v in values]
    return out[0] if isinstance(value, str) else out
