"""De-identification with the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

``deidentify(ds, uid_key=...)`` rewrites a pydicom dataset in place, at every sequence depth:

* every attribute of Table E.1-1 gets its basic-profile action (``ps315_basic_profile``);
* every private attribute (odd group) is removed, as are curve data and overlay
  data/comments (the repeating-group rows of the table);
* UIDs (action U, and any other UI attribute that is not a well-known class/syntax UID) are
  replaced by ``2.25.<HMAC-SHA256(uid_key, uid) truncated to 128 bits>``: the same original UID
  maps to the same new UID for every file imported with the same key (a study stays one
  study), while different keys give unlinkable UIDs;
* Patient Identity Removed (0012,0062) = "YES", De-identification Method (0012,0063) and its
  Code Sequence (0012,0064) = (113100, DCM, "Basic Application Confidentiality Profile").

Pixel data are left untouched: burned-in text is outside what this module can see.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .ps315_basic_profile import BASIC_PROFILE, PRIVATE_ACTION, REPEATING_GROUP_RULES

__all__ = ["deidentify", "remap_uid", "profile_action", "DUMMY_TEXT", "DUMMY_VALUES"]

# Compound codes choose between removing and keeping an attribute "to maintain IOD
# conformance". We never send the de-identified instance on as DICOM (only pixels and a JSON
# header are stored), so conformance never requires keeping it: take the most removing option.
_RESOLVE = {"Z/D": "Z", "X/Z": "X", "X/D": "X", "X/Z/D": "X", "X/Z/U*": "X"}

DUMMY_TEXT = "ANONYMOUS"
# Dummy values for action D, by VR. They carry no information about the original. Binary VRs
# (e.g. Encapsulated Document) get a zero-length value: no dummy document is meaningful.
DUMMY_VALUES: dict[str, object] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}

# UI attributes that name classes, syntaxes or schemes, not instances: they say nothing about
# the patient and readers need them, so they are kept even when the UID is vendor-private.
_KEEP_UI_TAGS = frozenset(
    {
        0x00020002,  # Media Storage SOP Class UID
        0x00020010,  # Transfer Syntax UID
        0x00020012,  # Implementation Class UID
        0x00041510,  # Referenced SOP Class UID in File
        0x00041512,  # Referenced Transfer Syntax UID in File
        0x00080016,  # SOP Class UID
        0x0008001A,  # Related General SOP Class UID
        0x0008001B,  # Original Specialized SOP Class UID
        0x0008010C,  # Coding Scheme UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x00081150,  # Referenced SOP Class UID
    }
)
# Every UID defined by the standard itself (SOP classes, transfer syntaxes, coding schemes,
# well-known frames of reference) lives under this root; instance UIDs never do.
_DICOM_ROOT = "1.2.840.10008."

# File meta attributes outside Table E.1-1 that name network nodes or carry free-form private
# data; removed for the same reason the table removes Station AE Title.
_FILE_META_REMOVE = frozenset(
    {0x00020016, 0x00020017, 0x00020018, 0x00020026, 0x00020027, 0x00020028, 0x00020100, 0x00020102}
)

_METHOD = [
    "DICOM PS3.15 Annex E Basic Profile (Table E.1-1)",
    "UIDs replaced by 2.25 HMAC-SHA256 of original",
    "Private attributes removed",
]


def remap_uid(uid: str, uid_key: bytes) -> str:
    """New UID for ``uid``: ``2.25.`` + decimal of the first 16 bytes of HMAC-SHA256(key, uid).

    At most 44 characters, so always a valid UI value (64 characters at most).
    """
    original = str(uid).strip("\x00 ").encode("ascii", "backslashreplace")
    digest = hmac.new(uid_key, original, hashlib.sha256).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


def profile_action(tag: int) -> str | None:
    """Basic-profile action code of ``tag`` as written in Table E.1-1, or None if not listed."""
    action = BASIC_PROFILE.get(tag)
    if action is not None:
        return action
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        return PRIVATE_ACTION
    for base, rule_element, rule_action in REPEATING_GROUP_RULES:
        if group & 0xFF00 == base and rule_element in (None, element):
            return rule_action
    return None


def deidentify(ds: Dataset, *, uid_key: bytes) -> None:
    """Apply the basic profile to ``ds`` (and its ``file_meta``) in place.

    uid_key: the dataset's secret (non-empty bytes); it alone decides the new UIDs.
    """
    if not uid_key:
        raise ValueError("uid_key must be non-empty bytes")
    _clean(ds, uid_key)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for tag in _FILE_META_REMOVE & set(meta.keys()):
            del meta[tag]
        _clean(meta, uid_key)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(_METHOD)
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    # Dates and times are removed or emptied by the profile; say so (defined term REMOVED).
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def _clean(ds: Dataset, key: bytes) -> None:
    for tag in list(ds.keys()):
        action = profile_action(tag)
        if action == "X" or _RESOLVE.get(action or "") == "X":
            del ds[tag]
            continue
        try:
            elem = ds[tag]  # decodes a raw element
        except Exception:
            # A value pydicom cannot decode cannot be vetted either: drop it.
            del ds[tag]
            continue
        if action is None:
            _clean_unlisted(ds, elem, key)
        else:
            _apply(ds, elem, _RESOLVE.get(action, action), key)


def _clean_unlisted(ds: Dataset, elem: DataElement, key: bytes) -> None:
    """Attributes the table keeps: recurse into sequences, remap instance UIDs."""
    tag = elem.tag
    if tag.element == 0 and tag.group != 0x0002:
        del ds[tag]  # group lengths are retired and would be wrong after our edits
    elif elem.VR == "SQ":
        for item in elem.value:
            _clean(item, key)
    elif elem.VR == "UN":
        # Not in pydicom's dictionary (else it would have a real VR): its content, maybe a
        # sequence holding names, cannot be checked.
        del ds[tag]
    elif elem.VR == "UI" and tag not in _KEEP_UI_TAGS:
        elem.value = _remap_values(elem.value, key)


def _apply(ds: Dataset, elem: DataElement, action: str, key: bytes) -> None:
    tag = elem.tag
    vr = _real_vr(elem)
    if action == "U" or (action == "D" and vr == "UI"):
        ds[tag] = DataElement(tag, "UI", _remap_values(elem.value, key))
    elif action == "Z" or vr == "SQ":
        # D on a sequence: we do not synthesise dummy items, an empty sequence says as little
        ds[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else empty_value_for_VR(vr))
    elif action == "D":
        ds[tag] = DataElement(tag, vr, _dummy(vr))
    else:  # pragma: no cover - the table holds no other code
        raise ValueError(f"unknown action {action!r} for {tag}")


def _dummy(vr: str) -> object:
    if vr in DUMMY_VALUES:
        return DUMMY_VALUES[vr]
    if vr in _TEXT_VRS:
        return DUMMY_TEXT
    return empty_value_for_VR(vr)  # binary, AT, UR: zero length


def _real_vr(elem: DataElement) -> str:
    if elem.VR not in ("UN", None):
        return str(elem.VR)
    try:
        return str(dictionary_VR(elem.tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _remap_values(value: object, key: bytes) -> object:
    """Remap one UID or a multi-valued list of UIDs; empty and well-known UIDs stay as they are.

    Well-known UIDs (e.g. a standard frame of reference) are constants of the standard and say
    nothing about the patient, while remapping them would destroy their meaning.
    """
    if value is None or value == "":
        return value
    values: Iterable[str] = [value] if isinstance(value, str) else value  # type: ignore[assignment]
    out = [v if (not v or str(v).startswith(_DICOM_ROOT)) else remap_uid(v, key) for v in values]
    return out[0] if isinstance(value, str) else out
