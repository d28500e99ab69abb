"""Canary corpus: every attribute that pydicom's data dictionary knows, filled with a value that
can be recognised, plus private tags, overlays, nested sequences, hostile value representations
and canaries in file names and in PNG/NIfTI text fields. The files go through the real import
(the service and the API); afterwards no canary may be found in any byte that was stored (files
under the storage folders, every row of every model) or served (API answers, admin pages).

What survives de-identification is only what the product needs to show and segment an image:
the test fills those attributes (``IMAGE``) with real values and checks that the stored header
holds nothing else (``EXPECTED_HEADER``).
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from collections.abc import Iterator

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.apps import apps
from django.core import serializers
from django.test import Client
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo
from pydicom.datadict import DicomDictionary, RepeatersDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from annotations import services
from annotations.models import Image
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore")]

ROWS, COLUMNS = 24, 32

# Recognisable values, one per kind of value representation. Text canaries name their tag
# ("CANARY0014_0104": Secondary Reviewer Name), so a failure says which attribute leaked.
DATE, TIME = "18610412", "235917.123456"
DATETIME = DATE + TIME
AGE = "097Y"
DECIMAL, INTEGER = "31415926.535897", "1414213562"  # DS (16 characters at most), IS (32-bit)
NUMBERS = {"US": 51799, "SS": -13737, "UL": 3405691582, "SL": -889275714, "FL": 31337.3125, "FD": 2718281.828125}
NUMBERS |= {"UV": 14627333968688430831, "SV": -3819410105021120785}
ATTRIBUTE_TAG = 0xCAFEBABE  # AT: a tag that is no attribute
UID_ROOT = "1.3.6.1.4.1.99999.14014"


def canary(tag: int, suffix: str = "") -> str:
    """Text canary of ``tag``: 15 characters, so it fits every string VR (CS, SH, AE: 16)."""
    return f"CANARY{tag >> 16:04X}_{tag & 0xFFFF:04X}{suffix}"


def canary_uid(tag: int) -> str:
    return f"{UID_ROOT}.{tag >> 16}.{tag & 0xFFFF}"


# Needles searched for: in every stored byte (files included) only long ones, so that image
# bytes cannot match by chance; in text (database rows, API answers, pages, the log) every one.
# Short numbers must stand alone: not inside a longer number, a hex id or a remapped UID.
def token(text: str) -> re.Pattern:
    return re.compile(rf"(?<![0-9A-Za-z.]){re.escape(text)}(?![0-9A-Za-z])")


FILE_NEEDLES = [
    re.compile(rb"canary", re.IGNORECASE),
    re.compile("canary".encode("utf-16-le"), re.IGNORECASE),
    re.compile(re.escape(UID_ROOT.encode())),
    re.compile(DATE.encode()),
    re.compile(re.escape(TIME.encode())),
]
TEXT_NEEDLES = [
    re.compile(r"canary", re.IGNORECASE),
    re.compile(re.escape(UID_ROOT)),
    token(DATE),
    re.compile(re.escape(TIME)),
    re.compile(re.escape(DATETIME)),
    token(AGE),
    re.compile("CAFEBABE", re.IGNORECASE),  # AT in the DICOM JSON model
    *(token(str(value).lstrip("-")) for value in [*NUMBERS.values(), DECIMAL[:8], INTEGER]),
]


def value_for(tag: int, vr: str) -> object:
    """The canary value of ``tag`` for its value representation."""
    vr = vr.split(" or ")[0]  # OB or OW -> OB, US or SS -> US
    text = canary(tag)
    if vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UT", "UC"):
        return text
    if vr == "PN":
        return f"{text}^{text}^MIDDLE"
    if vr == "UR":
        return f"https://canary.example/{text}"
    if vr == "UI":
        return canary_uid(tag)
    if vr in NUMBERS:
        return NUMBERS[vr]
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return (text + "\0").encode() * 2  # 32 bytes: a whole number of values of every binary VR
    return {"DA": DATE, "TM": TIME, "DT": DATETIME, "AS": AGE, "DS": DECIMAL, "IS": INTEGER, "AT": ATTRIBUTE_TAG}[vr]


def nested_item(tag: int, depth: int = 2) -> Dataset:
    """An item for sequence ``tag``: a name, a date, a private block and, below, one more level."""
    item = Dataset()
    item.PatientName = f"{canary(tag, 'N')}^{depth}"
    item.StudyDate = DATE
    item.TextValue = canary(tag, "T")
    item.add_new(0x00090010, "LO", canary(tag, "C"))  # private creator
    item.add_new(0x00091001, "LO", canary(tag, "P"))
    if depth:
        item.ContentSequence = Sequence([nested_item(tag, depth - 1)])
    return item


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (ROWS, COLUMNS), dtype=np.uint16)


def palette(entries: int = 256) -> bytes:
    return (np.arange(entries, dtype=np.uint16) * 257).tobytes()


def image_attributes(seed: int) -> dict[str, object]:
    """What an image needs, with real values: the attributes a de-identified header may keep."""
    return {
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "PlanarConfiguration": 0,
        "NumberOfFrames": "1",
        "Rows": ROWS,
        "Columns": COLUMNS,
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "PixelData": pixels(seed).tobytes(),
        "Modality": "CT",
        "RescaleSlope": "1",
        "RescaleIntercept": "-1024",
        "RescaleType": "HU",
        "WindowCenter": "40",
        "WindowWidth": "400",
        "VOILUTFunction": "LINEAR",
        "PixelSpacing": [0.5, 0.5],
        "SliceThickness": "2.5",
        "SpacingBetweenSlices": "2.5",
        "SliceLocation": "-7.5",
        "ImagePositionPatient": [-8, -6, -7.5],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        **{f"{c}PaletteColorLookupTableDescriptor": [256, 0, 16] for c in ("Red", "Green", "Blue")},
        **{f"{c}PaletteColorLookupTableData": palette() for c in ("Red", "Green", "Blue", "Alpha")},
        "AlphaPaletteColorLookupTableDescriptor": [256, 0, 16],
        # a linear segment from 0 to 65535 over 256 entries (PS3.3 C.7.9.2)
        **{
            f"Segmented{c}PaletteColorLookupTableData": np.array([0, 1, 0, 1, 255, 65535], np.uint16).tobytes()
            for c in ("Red", "Green", "Blue", "Alpha")
        },
    }


IMAGE = set(image_attributes(0))
# Tags of the DICOM JSON header stored in Image.metadata["dicom"] for a corpus file: the image
# attributes but Pixel Data and the LUT data over 1 KiB, the remapped UIDs, and what the
# de-identification writes. Anything else in the header is a kept attribute nobody asked for.
EXPECTED_HEADER = {
    *(f"{tag_for_keyword(k):08X}" for k in IMAGE - {"PixelData"}),
    *(f"{tag_for_keyword(k):08X}" for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")),
    *(f"{tag_for_keyword(k):08X}" for k in ("SeriesInstanceUID", "FrameOfReferenceUID")),
    *(f"{tag_for_keyword(k):08X}" for k in ("ModalityLUTSequence", "SharedFunctionalGroupsSequence")),
    *(f"{tag_for_keyword(k):08X}" for k in ("PerFrameFunctionalGroupsSequence",)),
    *(f"{tag_for_keyword(k):08X}" for k in ("PatientIdentityRemoved", "DeidentificationMethod")),
    *(f"{tag_for_keyword(k):08X}" for k in ("DeidentificationMethodCodeSequence",)),
    *(f"{tag_for_keyword(k):08X}" for k in ("LongitudinalTemporalInformationModified",)),
}

# Dictionary attributes not filled, and why.
NOT_FILLED = {
    # A file with a Directory Record Sequence is a DICOMDIR: refused whatever its header holds.
    tag_for_keyword("DirectoryRecordSequence"): "makes the file a DICOMDIR",
    # One pixel data element per file: pydicom refuses to decode a file with two.
    tag_for_keyword("FloatPixelData"): "second pixel data element",
    tag_for_keyword("DoubleFloatPixelData"): "second pixel data element",
    # They index the frames of encapsulated pixel data; in a native file they are meaningless.
    tag_for_keyword("ExtendedOffsetTable"): "only for encapsulated pixel data",
    tag_for_keyword("ExtendedOffsetTableLengths"): "only for encapsulated pixel data",
}


def dictionary_tags() -> Iterator[tuple[int, str]]:
    """(tag, VR) of every attribute of the data dictionary that a stored instance can hold.

    Left out: the command group 0000 (DIMSE messages, never part of a stored instance: pydicom
    refuses to write it into a file), the file meta group 0002 (filled in ``file_meta``), item
    and sequence delimiters (FFFE,E0xx: structure, VR "NONE"). Repeating groups (50xx, 60xx, ...)
    are filled in their first group, and overlays also in a second (6002).
    """
    for tag, entry in DicomDictionary.items():
        if tag >> 16 not in (0x0000, 0x0002, 0xFFFE):
            yield tag, entry[0]
    for mask, entry in RepeatersDictionary.items():
        yield int(mask.replace("x", "0"), 16), entry[0]
        if mask.startswith("60xx"):
            yield int(mask.replace("xx", "02", 1).replace("x", "0"), 16), entry[0]


def corpus_dataset(seed: int) -> Dataset:
    """Every dictionary attribute: the image's with real values, every other one a canary."""
    ds = Dataset()
    real = image_attributes(seed)
    for tag, vr in dictionary_tags():
        if tag in NOT_FILLED:
            continue
        keyword = pydicom.datadict.keyword_for_tag(tag)
        if keyword in real:
            ds.add_new(tag, vr.split(" or ")[0], real[keyword])
        elif vr == "SQ":
            ds.add_new(tag, "SQ", Sequence([nested_item(tag)]))
        else:
            ds.add_new(tag, vr.split(" or ")[0], value_for(tag, vr))
    # Sequences the reader looks into get real content (and canaries beside it).
    lut = nested_item(tag_for_keyword("ModalityLUTSequence"))
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new(tag_for_keyword("LUTData"), "OW", np.arange(4096, dtype=np.uint16).tobytes())
    lut.ModalityLUTType = canary(tag_for_keyword("ModalityLUTType"), "M")
    lut.LUTExplanation = canary(tag_for_keyword("LUTExplanation"), "M")
    ds.ModalityLUTSequence = Sequence([lut])
    groups = nested_item(tag_for_keyword("SharedFunctionalGroupsSequence"))
    measures = nested_item(tag_for_keyword("PixelMeasuresSequence"))
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], "2.5"
    transformation = nested_item(tag_for_keyword("PixelValueTransformationSequence"))
    transformation.RescaleSlope, transformation.RescaleIntercept = "1", "-1024"
    transformation.RescaleType = canary(tag_for_keyword("RescaleType"), "F")
    groups.PixelMeasuresSequence = Sequence([measures])
    groups.PixelValueTransformationSequence = Sequence([transformation])
    ds.SharedFunctionalGroupsSequence = Sequence([groups])
    # Private tags: a creator, text, a binary value and a private sequence.
    ds.add_new(0x00090010, "LO", "CANARY PRIVATE CREATOR")
    ds.add_new(0x00091001, "LO", canary(0x00091001))
    ds.add_new(0x00091002, "UN", value_for(0x00091002, "UN"))
    ds.add_new(0x00110010, "LO", "CANARY OTHER CREATOR")
    ds.add_new(0x00111001, "SQ", Sequence([nested_item(0x00111001)]))
    ds.preamble = b"CANARY-PREAMBLE-".ljust(128, b"\0")
    return ds


def file_meta(transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    for tag, entry in DicomDictionary.items():
        if tag >> 16 == 0x0002 and tag not in (0x00020000, 0x00020001, 0x00020010):
            meta.add_new(tag, entry[0], value_for(tag, entry[0]))
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def dicom_bytes(ds: Dataset, transfer_syntax: str) -> bytes:
    ds.file_meta = file_meta(transfer_syntax)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def hostile_dicom() -> bytes:
    """RLE-compressed, with attributes the product keeps declared in value representations that
    hold text (explicit VR lets a file say so), and coded values that are no defined term."""
    ds = Dataset()
    for keyword, value in image_attributes(7).items():
        if "Palette" not in keyword:
            ds.add_new(tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword)).split(" or ")[0], value)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SOPInstanceUID = canary(tag_for_keyword("SOPInstanceUID"))  # text where a UID belongs
    ds.Modality = canary(tag_for_keyword("Modality"))  # not a defined term
    ds.VOILUTFunction = canary(tag_for_keyword("VOILUTFunction"))
    ds.RescaleType = canary(tag_for_keyword("RescaleType"))
    ds.add_new(tag_for_keyword("SliceThickness"), "LT", canary(tag_for_keyword("SliceThickness")))
    ds.add_new(tag_for_keyword("WindowCenter"), "PN", canary(tag_for_keyword("WindowCenter")))
    # written raw: pydicom would refuse a DS that is no number, and give UN its dictionary VR
    for keyword, vr in (("WindowWidth", "DS"), ("SliceLocation", "UN")):
        tag = tag_for_keyword(keyword)
        ds[tag] = RawDataElement(Tag(tag), vr, 16, canary(tag).encode() + b" ", 0, False, True)
    ds.add_new(tag_for_keyword("PatientName"), "PN", canary(tag_for_keyword("PatientName")))
    ds.add_new(0x00190010, "LO", "CANARY RLE CREATOR")
    ds.add_new(0x00191001, "UT", canary(0x00191001))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.file_meta.ImplementationVersionName = canary(0x00020013)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def png_with_text() -> bytes:
    info = PngInfo()
    info.add_text("Author", "CANARY PNG AUTHOR Jane Doe")
    info.add_itxt("Comment", "CANARY PNG COMMENT born 18610412")
    buffer = io.BytesIO()
    grey = np.random.default_rng(11).integers(0, 256, (ROWS, COLUMNS), dtype=np.uint8)
    PILImage.fromarray(grey).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def nifti_with_text() -> bytes:
    volume = np.random.default_rng(12).integers(0, 1000, (8, 9, 3)).astype(np.int16)
    img = nib.Nifti1Image(volume, np.eye(4))
    img.header["descrip"] = b"CANARY NIFTI DESCRIP Jane Doe"
    img.header["aux_file"] = b"CANARY AUX"
    img.header["intent_name"] = b"CANARY INTENT"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"CANARY NIFTI EXTENSION"))
    return gzip.compress(img.to_bytes())


def corpus() -> list[tuple[str, bytes]]:
    """(file name, bytes): the names are canaries too."""
    return [
        ("CANARYFILE Doe^Jane 18610412.dcm", dicom_bytes(corpus_dataset(1), ExplicitVRLittleEndian)),
        ("CANARYFILE-implicit-Jane-Doe.dcm", dicom_bytes(corpus_dataset(2), ImplicitVRLittleEndian)),
        ("CANARYFILE-rle-Jane-Doe.dcm", hostile_dicom()),
        ("CANARYFILE-Jane-Doe.png", png_with_text()),
        ("CANARYFILE-Jane-Doe.nii.gz", nifti_with_text()),
    ]


def found(needles: list[re.Pattern], haystack, where: str) -> list[str]:
    hits = []
    for needle in needles:
        for match in needle.finditer(haystack):
            context = haystack[max(0, match.start() - 60) : match.end() + 60]
            hits.append(f"{where}: {context!r}")
    return hits


def summary(hits: list[str]) -> str:
    """How many canaries where, and the first one found in each place."""
    places: dict[str, list[str]] = {}
    for hit in hits:
        where, _, context = hit.partition(": ")
        places.setdefault(where, []).append(context)
    lines = [f"{len(contexts)} in {where}, e.g. {contexts[0]}" for where, contexts in places.items()]
    return f"{len(hits)} canaries survive:\n" + "\n".join(lines)


def stored_file_hits(settings) -> list[str]:
    roots = [settings.MEDIA_ROOT, settings.DATA_DIR / "private"]
    hits: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                hits += found(FILE_NEEDLES, path.read_bytes(), str(path))
    return hits


def database_dump() -> str:
    """Every row of every model, as JSON text."""
    return "\n".join(
        serializers.serialize("json", model._base_manager.all()) for model in apps.get_models() if model._meta.managed
    )


def served_pages(alice, datasets) -> Iterator[tuple[str, str]]:
    client = client_for(alice)
    urls = ["/api/v1/datasets"]
    for dataset in datasets:
        urls += [f"/api/v1/datasets/{dataset.pk}", f"/api/v1/datasets/{dataset.pk}/images?page_size=100"]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:300])
        yield url, response.content.decode()
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True, role="staff"))
    pages = ["/admin/annotations/image/"]
    pages += [f"/admin/annotations/image/{pk}/change/" for pk in Image.objects.values_list("pk", flat=True)]
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page
        yield page, response.content.decode()


def test_corpus_fills_the_whole_dictionary() -> None:
    ds = corpus_dataset(1)
    filled = {int(elem.tag) for elem in ds}
    wanted = {tag for tag, _ in dictionary_tags()} - set(NOT_FILLED)
    assert wanted <= filled
    assert len(wanted) > 4900
    names = {elem.VR for elem in ds.iterall()}
    assert {"PN", "DA", "DT", "TM", "LO", "LT", "ST", "UT", "UC", "SH", "UR", "AS", "UN", "SQ"} <= names
    # the canaries are in the bytes the import receives
    data = dicom_bytes(ds, ExplicitVRLittleEndian)
    assert b"CANARY0014_0104" in data and b"CANARY0010_0033" in data and DATE.encode() in data


def test_no_canary_survives_the_import_anywhere(alice, settings, caplog) -> None:
    files = corpus()
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    # through the service, as the import command and the admin call it
    by_service = DatasetFactory(owner=alice, label_classes=["lesion"])
    result = services.images_import(
        dataset=by_service, sources=[services.BytesSource(name, data) for name, data in files]
    )
    assert len(result.created) == 3 + 1 + 3  # three DICOM files, a PNG, three NIfTI slices
    # through the API
    by_api = DatasetFactory(owner=alice, label_classes=["lesion"])
    uploads = []
    for name, data in files:
        upload = io.BytesIO(data)
        upload.name = name
        uploads.append(upload)
    response = client_for(alice).post(f"/api/v1/datasets/{by_api.pk}/images", {"files": uploads}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    assert response.json()["created"] == 7

    hits = found(TEXT_NEEDLES, response.content.decode(), "POST images answer")
    hits += found(TEXT_NEEDLES, caplog.text, "log")
    hits += found(TEXT_NEEDLES, database_dump(), "database")
    hits += stored_file_hits(settings)
    for url, body in served_pages(alice, [by_service, by_api]):
        hits += found(TEXT_NEEDLES, body, url)
    assert not hits, summary(hits)

    # and the stored DICOM header holds what an image needs, nothing else
    for image in Image.objects.filter(source_format="dicom"):
        header = image.metadata["dicom"]
        assert set(header) <= EXPECTED_HEADER, sorted(set(header) - EXPECTED_HEADER)
        assert header["00120062"]["Value"] == ["YES"]
